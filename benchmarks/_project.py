"""Helpers for benchmarks that run the real flows: a throwaway copy of the repository and a
local Prefect server, the way `./run.sh` runs them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import yaml

from adapters.servers import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]


def copy_repository(dest: Path) -> Path:
    """The tracked and untracked-but-not-ignored files, without pipeline outputs."""
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    for name in filter(None, names):
        source = REPO / name
        if source.is_file() and not name.startswith(("results/", "dvc.lock")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def write_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@contextlib.contextmanager
def _server(command: list[str], env: dict, cwd: Path, health: str, log_path: Path, seconds: float):
    """A server process (its own process group) until the block ends, once `health` answers."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            wait_for(health, seconds, process, log_path)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def prefect_server(home: Path):
    """A local `prefect server start` (not counted in any timing: run.sh starts one per run)."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    url = f"http://127.0.0.1:{port}/api"
    command = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with _server(command, env, REPO, f"{url}/health", home / "server.log", 90):
        yield {**env, "PREFECT_API_URL": url}


@contextlib.contextmanager
def mlflow_server(root: Path, env: dict):
    """`root`'s sqlite store served on loopback, as ./run.sh serves it for the whole pipeline
    (not counted in any timing). Yields `env` with MLFLOW_TRACKING_URI pointing at it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "adapters.servers", str(port)]
    with _server(command, {**env, "PYTHONPATH": str(root)}, root, f"{url}/health",
                 root / ".slowfast" / "mlflow-server.log", 120):
        yield {**env, "MLFLOW_TRACKING_URI": url, "SLOWFAST_SERVED_STORE": f"sqlite:///{root / 'mlflow.db'}"}


def timed_run(args: list[str], cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one process, start-up included, until it exits (as DVC waits for a
    stage; output goes through files, so a child still closing does not count); fails
    loudly if the process does."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        code = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=err).returncode
        seconds = time.perf_counter() - start
        out.seek(0), err.seek(0)
        result = subprocess.CompletedProcess(args, code, out.read(), err.read())
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return seconds, result

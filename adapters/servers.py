"""Loopback servers that let several worker processes share one store, zero-setup.

A sqlite file takes one writer at a time: worker processes writing to it directly would
meet "database is locked". So when units run in other processes, the stage serves the
store from one `mlflow server` on 127.0.0.1 (artifacts still go straight to the store's
`mlartifacts/`, as without a server), unless MLFLOW_TRACKING_URI already names a server.
Likewise Prefect: a stage run without PREFECT_API_URL would give every worker its own
temporary Prefect server (8-10 s each); one is started here and shared instead.
./run.sh starts both once for the whole pipeline, so a stage finds them set.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from adapters.mlflow_store import artifact_root, relocate_artifacts, tracking_uri
from components.errors import SlowfastError


class ServerDidNotStart(SlowfastError):
    """A loopback server did not answer its health check in time."""


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    where = f"; see {log}" if log else ""
    raise ServerDidNotStart(f"{url} did not answer within {seconds:.0f} s{where}")


def mlflow_server_command(backend_uri: str, port: int, artifacts: str | None) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-serve-artifacts"]
    return command + (["--default-artifact-root", artifacts] if artifacts else [])


@contextlib.contextmanager
def shared_tracking(log_dir: Path, startup_seconds: float = 120,
                    meanwhile: contextlib.AbstractContextManager | None = None) -> Iterator[str]:
    """The tracking URI every unit writes to: MLFLOW_TRACKING_URI when it names a server (or
    PostgreSQL, which takes many writers), else a loopback `mlflow server` over the local sqlite store for
    the duration of the block (MLFLOW_TRACKING_URI points at it meanwhile). `meanwhile` (say,
    another server) is entered while this one boots, so their start-ups overlap."""
    uri = tracking_uri()
    with contextlib.ExitStack() as stack:
        if not uri.startswith("sqlite:"):
            if meanwhile is not None:
                stack.enter_context(meanwhile)
            yield uri
            return
        relocate_artifacts(uri)  # before the server opens the file
        port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / "mlflow-server.log"
        # MLflow 3's server also starts a job runner (eight more processes) for UI-launched
        # jobs such as prompt optimisation; this server only records runs.
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with log.open("w") as out:  # guarded: it stops when this process is gone, however it ends
            process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("server_guard.py")),
                                        *mlflow_server_command(uri, port, artifact_root(uri))],
                                       stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        stack.callback(_stop, process)
        if meanwhile is not None:
            stack.enter_context(meanwhile)
        served = f"http://127.0.0.1:{port}"
        wait_for(f"{served}/health", startup_seconds, process, log)
        stack.enter_context(_environment("MLFLOW_TRACKING_URI", served))
        stack.enter_context(_environment("SLOWFAST_SERVED_STORE", uri))
        yield served


@contextlib.contextmanager
def shared_prefect_api(startup_seconds: float | None = None) -> Iterator[str | None]:
    """PREFECT_API_URL for this block: as set, or a temporary server shared by the flow and
    its workers (started here when none is set)."""
    current = os.environ.get("PREFECT_API_URL")
    if current:
        yield current
        return
    from prefect.server.api.server import SubprocessASGIServer

    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    timeout = startup_seconds or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90"))
    server.start(timeout=int(timeout))
    try:  # this process (settings are read at import) and the workers it starts (environment)
        with _environment("PREFECT_API_URL", server.api_url), temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _stop(process: subprocess.Popen) -> None:
    """The guard, the server and the uvicorn process it started (one process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait()


if __name__ == "__main__":
    # ./run.sh: `python -m adapters.servers PORT` serves this checkout's sqlite store on
    # loopback for the whole pipeline (artifact locations fixed first if the store moved).
    store = tracking_uri()
    relocate_artifacts(store)
    command = mlflow_server_command(store, int(sys.argv[1]), artifact_root(store))
    os.execve(command[0], command, os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})

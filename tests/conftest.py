"""Shared fixtures: one Prefect test server per session, tiny streams, temporary MLflow stores."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import copy  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tiny_method_settings(config: type) -> dict:
    """Settings that make a method run in a second, derived from its Config alone (a new
    method needs no edit here): every epoch count 1, every row count (an int field whose
    default is 100 or more) 100. A field may name its own with json_schema_extra={"tiny": v}."""
    out = {}
    for name, field in config.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "tiny" in extra:
            out[name] = extra["tiny"]
        elif name == "epochs" or name.endswith("_epochs"):
            out[name] = 1
        elif isinstance(field.default, int) and not isinstance(field.default, bool) and field.default >= 100:
            out[name] = 100
    return out


def _tiny_methods() -> dict:
    from components.methods import REGISTRY

    return {name: tiny_method_settings(cls.Config) for name, cls in sorted(REGISTRY.items())}


# Small enough to run every method in seconds, large enough that every window has rows
# of each of its classes in both splits.
TINY_PARAMS = {
    "seed": 0,
    "seeds": [0],
    "device": "cpu",
    "threads": 1,
    "stream": {"name": "tiny-classinc", "num_samples": 1200, "test_fraction": 0.25},
    "model": {"channels": 8, "hidden": 32},
    "pretrain": {"epochs": 3, "batch_size": 64, "lr": 0.003},
    "methods": _tiny_methods(),  # every registered method
    "evaluation": {"every_steps": 1, "subset_rows": 40},
    "compare": {"champion_metric": "acc"},
    "tracking": {"ui_url": "http://127.0.0.1:5000"},
    # Units in the test's own process: a Dask cluster costs seconds to start, and most tests
    # are about what a unit does. tests/test_parallel.py and the e2e project run on clusters.
    "parallel": {"workers": 0},
}


def tiny_params(**overrides) -> dict:
    params = copy.deepcopy(TINY_PARAMS)
    params.update(overrides)
    return params


def write_params(root: Path, params: dict) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def pytest_collection_modifyitems(config, items):
    """`slow`: a test that runs flows on a Prefect server or the pipeline through DVC.
    `./test.sh -m "not slow"` runs the rest (unit tests, about a minute)."""
    for item in items:
        if "prefect_api_url" in item.fixturenames or item.get_closest_marker("e2e") or item.get_closest_marker("dvc"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def prefect_api_url():
    """One temporary Prefect server for the whole session (it costs seconds to start). Flows
    called in-process run as the command line runs them: without heartbeats (flows/_cli.py)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows._cli import heartbeats_unless_asked

    with prefect_test_harness(server_startup_timeout=90), heartbeats_unless_asked():
        yield PREFECT_API_URL.value()


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A real sqlite MLflow store in a temporary directory, used through MLFLOW_TRACKING_URI."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A project root holding tiny params and a prepared tiny stream (no Prefect needed)."""
    from components.config import load_params
    from components.data.mnist1d_source import class_incremental_windows
    from components.data.stream_io import write_stream

    root = tmp_path_factory.mktemp("tiny")
    write_params(root, TINY_PARAMS)
    params = load_params(root / "params.yaml")
    write_stream(params.stream_dir(root), params.stream.name, class_incremental_windows(params.stream),
                 [str(c) for c in range(10)], {"generator": "mnist1d"})
    return root


STREAM = TINY_PARAMS["stream"]["name"]


def live_params(**ops) -> dict:
    """Tiny params for the live loop: a pretrained model worth protecting, replay that learns
    in a few steps, and `wrecked`, a finetune whose learning rate destroys what it knew."""
    params = tiny_params()
    params["pretrain"] = {**params["pretrain"], "epochs": 30}
    params["methods"] = {
        "replay": {"epochs": 10, "lr": 0.005, "buffer_size": 300},
        "wrecked": {"method": "finetune", "lr": 0.5, "epochs": 5},
    }
    params["ops"] = {"method": "replay", "challenger_min_acc": 0.0, "promotion_tolerance": 0.02,
                     "reproduce_prepare": False, **ops}
    return params


def make_root(base: Path, params: dict) -> Path:
    """A project root with `params`, its stream prepared and the slow model pretrained
    (in-process flows: needs the Prefect test server and an MLflow store)."""
    from flows.prepare import prepare_flow
    from flows.pretrain import pretrain_flow

    base.mkdir(parents=True, exist_ok=True)
    write_params(base, params)
    prepare_flow(root=str(base))
    pretrain_flow(root=str(base))
    return base


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@pytest.fixture
def postgres(tmp_path):
    """A real PostgreSQL server (the Debian package; .ci/run installs it) on loopback in a
    temporary directory, for as long as the test runs. Yields its SQLAlchemy URI."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    from adapters.servers import free_port

    home = Path(tempfile.mkdtemp(prefix="slowfast-pg-"))  # not under pytest's root-only folder
    data, sockets = home / "pg", home / "sock"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        for path in (home, sockets):
            shutil.chown(path, "postgres")
    port = free_port()
    run = lambda *a: subprocess.run([*as_user, *a], capture_output=True, text=True, timeout=120)  # noqa: E731
    init = run(str(binaries / "initdb"), "-D", str(data), "-U", "slowfast", "--auth=trust", "-E", "UTF8")
    assert init.returncode == 0, init.stderr
    start = run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(home / "pg.log"), "-w", "-o",
                f"-p {port} -k {sockets} -h 127.0.0.1", "start")
    assert start.returncode == 0, start.stderr + (home / "pg.log").read_text()
    try:
        yield f"postgresql+psycopg2://slowfast@127.0.0.1:{port}/postgres"  # the database initdb creates
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)

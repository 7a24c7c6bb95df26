"""MLflow conventions in one place: where the store is, how runs are named and tagged.

Runs are addressed by explicit run ids through `MlflowClient`: MLflow's "active run" is
per thread and Prefect runs tasks in worker threads, so nothing here relies on it (models
are logged into a logged model created for the run, not into an active run).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import logging
import os
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from components.config import TrackingParams
from components.data.stream_io import Manifest
from components.errors import SlowfastError
from components.layout import REPO_ROOT
from components.models import ClassProbabilities
from components.retry import RetriesExhausted, retry

# MLflow is imported where it is used, not here: a stage's own process (which submits units
# and writes files, never a run) then starts without it (0.8 s of a stage's start on one core).
if TYPE_CHECKING:
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

T = TypeVar("T")


class TrackingUnavailable(SlowfastError):
    """The tracking store stayed unreachable through every retry."""

MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call
TORCH_REQUIREMENT = f"torch=={torch.__version__.split('+')[0]}"  # pinned in every logged model
SERIALIZATION_FORMAT = "pt2"  # registered models: torch.export archives, loadable without pickle
# MLflow calls made by this process, their time (of which logging + registering models), retries
CALLS = {"count": 0, "seconds": 0.0, "model_seconds": 0.0, "retries": 0}
# Transient tracking failures are retried with exponential backoff (params.yaml `tracking:`
# sets these through `configure_retries`); MLflow's own HTTP retries are turned off here so
# this is the one policy, and a permanent failure ends in one line.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
RETRY = {"attempts": 6, "backoff_seconds": 1.0, "max_backoff_seconds": 30.0}
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
_TRANSIENT_TEXT = ("database is locked", "failed with exception", "connection refused", "max retries exceeded",
                   "temporarily unavailable", "timed out")
# A store that refuses every write (a read-only or immutable file, a full disk, no
# permission): no retry helps, and the user needs the reason, not SQLAlchemy's traceback.
_REFUSED_TEXT = ("readonly database", "read-only file system", "permission denied", "database or disk is full",
                 "disk i/o error", "unable to open database file")


class StoreRefusesWrites(SlowfastError):
    """The tracking store answers but refuses to write."""


def refusal(error: BaseException) -> str | None:
    """The line of `error` that says why the store refuses writes, or None."""
    for line in str(error).splitlines():
        if any(t in line.lower() for t in _REFUSED_TEXT):
            return line.strip()
    return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def configure_retries(tracking: TrackingParams, max_backoff_seconds: float = 30.0) -> None:
    """The retry policy of params.yaml's `tracking:` block."""
    RETRY.update(attempts=tracking.retry_attempts, backoff_seconds=tracking.retry_backoff_seconds,
                 max_backoff_seconds=max_backoff_seconds)


def is_transient(error: BaseException) -> bool:
    """A failure worth retrying: the store unreachable, busy or locked; not a bad request."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, OSError) and error.errno in (errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT):
        return True  # a file lock or a busy artifact store
    if isinstance(error, _mlflow_exception()) and error.error_code in _TRANSIENT_CODES:
        return True
    text = str(error).lower()
    return type(error).__module__.startswith(("requests", "urllib3")) or any(t in text for t in _TRANSIENT_TEXT)


def with_retries(call: Callable[[], T], what: str) -> T:
    """`call()`, retried on transient failures with exponential backoff; after the last
    attempt a TrackingUnavailable error that names the store and the call."""

    def once() -> T:
        try:
            return call()
        except Exception as error:
            reason = refusal(error)
            if reason is None:
                raise
            raise StoreRefusesWrites(
                f"MLflow store {tracking_uri()}: {what} refused: {reason}; nothing was promoted, and the stage's "
                "earlier checkpoints are kept: make the store writable and rerun"
            ) from None

    def note(attempt: int, error: BaseException, delay: float) -> None:
        CALLS["retries"] += 1
        logging.getLogger("slowfast.tracking").warning(
            "MLflow %s failed (%s); retry %d in %.1f s", what, type(error).__name__, attempt, delay
        )

    try:
        return retry(once, attempts=int(RETRY["attempts"]), backoff_seconds=RETRY["backoff_seconds"],
                     max_backoff_seconds=RETRY["max_backoff_seconds"], transient=is_transient, on_retry=note)
    except RetriesExhausted as exhausted:
        raise TrackingUnavailable(
            f"MLflow store {tracking_uri()}: {what} {exhausted}; nothing was promoted; rerun when the store is back"
        ) from None


class _TimedClient:
    """An MlflowClient whose every method call is counted, timed into CALLS and retried
    on transient failures (`with_retries`)."""

    def __init__(self, inner: MlflowClient) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return with_retries(lambda: attribute(*args, **kwargs), name)
            finally:
                CALLS["count"] += 1
                CALLS["seconds"] += time.perf_counter() - start

        return timed


def tracking_uri(root: Path = REPO_ROOT) -> str:
    """`MLFLOW_TRACKING_URI` if set, else a sqlite store in the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def store_uri() -> str:
    """The store itself, for `mlflow ui`: the sqlite file a loopback server (./run.sh, the
    stream stage) serves for a while (SLOWFAST_SERVED_STORE), else the tracking URI."""
    return os.environ.get("SLOWFAST_SERVED_STORE") or tracking_uri()


def use_store(uri: str) -> None:
    """Make `uri` this process's store (a worker handed the flow's choice)."""
    os.environ["MLFLOW_TRACKING_URI"] = uri


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local sqlite store go beside its database file; a server decides its own."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()


# Where a sqlite store keeps artifact URIs (MLflow 3.17's schema): each is rewritten when the
# store has moved (`relocate_artifacts`).
_ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("logged_models", "artifact_location"), ("model_versions", "storage_location"))
_RELOCATED: set[str] = set()


def relocate_artifacts(uri: str) -> list[str]:
    """A local sqlite store's artifacts live in `mlartifacts/` beside its database file.
    MLflow records them as absolute file URIs, so a repository that was copied or moved
    would still write to (and load registered models from) the old folder. Once per process,
    URIs under another `.../mlartifacts` are rewritten to this store's: returns the old
    prefixes. Stores on a server are left alone (the server decides)."""
    if not uri.startswith("sqlite:///") or uri in _RELOCATED:
        return []
    _RELOCATED.add(uri)
    db = Path(uri.removeprefix("sqlite:///"))
    here = artifact_root(uri)
    if not db.is_file() or here is None:
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        tables = {name for (name,) in con.execute("select name from sqlite_master where type = 'table'")}
        if "experiments" not in tables:
            return []
        old = sorted({loc.rstrip("/") for (loc,) in con.execute("select artifact_location from experiments")
                      if loc and loc.startswith("file://") and loc.rstrip("/").endswith("/mlartifacts")
                      and loc.rstrip("/") != here})
        with con:
            for prefix in old:
                for table, column in _ARTIFACT_COLUMNS:
                    if table in tables:
                        con.execute(f"update {table} set {column} = ? || substr({column}, ?) "
                                    f"where {column} = ? or substr({column}, 1, ?) = ?",
                                    (here, len(prefix) + 1, prefix, len(prefix) + 1, prefix + "/"))
    if old:
        logging.getLogger("slowfast.tracking").warning(
            "MLflow store %s was moved: artifact locations %s now point at %s", db, ", ".join(old), here)
    return old


_CLIENTS: dict[str, MlflowClient] = {}


def client() -> MlflowClient:
    """The client of the current store (one per store and process)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    found = _CLIENTS.get(uri)
    if found is None:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # MLflow logs every database error with its traceback before raising it; the failure
        # is reported here, in one line (`with_retries`), so its own report is dropped.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        relocate_artifacts(uri)
        found = _CLIENTS[uri] = _TimedClient(MlflowClient(tracking_uri=uri))  # type: ignore[assignment]
    mlflow.set_tracking_uri(uri)
    return found


_EXPERIMENTS: dict[tuple[str, str], str] = {}


def experiment_id(name: str) -> str:
    """One experiment per stream (looked up once per store and process). Artifacts sit
    beside a local sqlite store."""
    key = (tracking_uri(), name)
    if key not in _EXPERIMENTS:
        c = client()
        found = c.get_experiment_by_name(name)
        if found is None:
            try:
                _EXPERIMENTS[key] = c.create_experiment(name, artifact_location=artifact_root(tracking_uri()))
                return _EXPERIMENTS[key]
            except _mlflow_exception():
                # two workers' first units create it at once: the other one won the race
                found = c.get_experiment_by_name(name)
                if found is None:
                    raise
        _EXPERIMENTS[key] = found.experiment_id
    return _EXPERIMENTS[key]


@functools.lru_cache(maxsize=8)
def git_commit(root: Path = REPO_ROOT) -> str:
    """The checkout's commit, read once per process (each run is tagged with it)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: str(value)}


def dvc_experiment_tags() -> dict[str, str]:
    """Inside `dvc exp run`, the experiment's name and baseline commit (DVC sets them in the
    environment), so a variant's runs are told apart from the baseline's in the UI."""
    names = {"DVC_EXP_NAME": "dvc_exp", "DVC_EXP_BASELINE_REV": "dvc_exp_baseline"}
    return {tag: os.environ[var] for var, tag in names.items() if os.environ.get(var)}


def start_run(
    experiment: str,
    run_name: str,
    *,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    metrics: Mapping[str, float] | None = None,
) -> str:
    """A new run with its tags, and its params and step-0 `metrics` in one call."""
    from mlflow.entities import Param

    c = client()
    all_tags = {"git_commit": git_commit(), **dvc_experiment_tags(), **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = c.create_run(experiment_id(experiment), run_name=run_name, tags=all_tags)
    if params or metrics:
        flat = flatten("", params or {})
        c.log_batch(run.info.run_id, params=[Param(k, v[:6000]) for k, v in sorted(flat.items())],
                    metrics=_metrics([(0, metrics or {})]))
    return run.info.run_id


def log_stream_input(run_id: str, manifest: Manifest, stream_dir: Path, context: str) -> None:
    """Name the stream version a run used: an MLflow dataset input whose digest is the
    stream's content hash (its first 36 hex digits: the registry's column width), so the
    UI's Datasets column shows the data version. (All of the hash is the `stream_hash` tag
    callers give the run when they start it.)"""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    rows = {split: sum(w["rows"][split] for w in manifest.windows) for split in ("train", "test")}
    dataset = Dataset(
        name=manifest.name,
        digest=manifest.content_hash[:36],
        source_type="local",
        source=json.dumps({"uri": Path(stream_dir).resolve().as_uri()}),
        schema=json.dumps({"x": f"float32[{manifest.num_features}]", "y": f"int64 ({manifest.num_classes} classes)"}),
        profile=json.dumps({"windows": manifest.num_windows, "rows": rows, "content_hash": manifest.content_hash}),
    )
    c = client()
    inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])]
    try:
        c.log_inputs(run_id, datasets=inputs)
    except _mlflow_exception() as error:
        if not _lost_dataset_race(error):
            raise
        # MLflow's store looks the dataset up, then inserts it: units starting together in a
        # fresh experiment race on that insert and all but one fail. The winner's row now
        # exists, so the second call finds it and links this run to it.
        c.log_inputs(run_id, datasets=inputs)


def _lost_dataset_race(error: MlflowException) -> bool:
    """The store refused a dataset row another writer inserted a moment before (sqlite's
    or PostgreSQL's unique-constraint error on the `datasets` table)."""
    text = str(error).lower()
    return "datasets" in text and ("unique constraint failed" in text or "duplicate key value" in text)


def _mlflow_exception() -> type[MlflowException]:
    from mlflow.exceptions import MlflowException

    return MlflowException


def _metrics(points: Iterable[tuple[int, Mapping[str, float]]], model_id: str | None = None) -> list[Metric]:
    """MLflow metrics, timestamped now: (step, {name: value}) pairs, linked to `model_id`."""
    from mlflow.entities import Metric

    now = _now_ms()
    return [Metric(k, float(v), now, step, model_id=model_id) for step, values in points for k, v in values.items()]


def _log_batched(run_id: str, items: list[Metric], using: MlflowClient | None = None) -> None:
    """As few `log_batch` calls as MLflow's per-call limit allows (through `using`, else the
    counted client)."""
    c = using or client()
    for i in range(0, len(items), MAX_BATCH):
        c.log_batch(run_id, metrics=items[i : i + MAX_BATCH])


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """All scalars of one step in one call (one sqlite round trip instead of one per scalar)."""
    _log_batched(run_id, _metrics([(step, metrics)]))


def log_series(run_id: str, series: Mapping[str, list[float]]) -> None:
    """Curves such as per-epoch losses: each list logged with step = position."""
    _log_batched(run_id, _metrics((step, {name: v}) for name, values in series.items() for step, v in enumerate(values)))


def log_points(run_id: str, points: list[tuple[int, Mapping[str, float]]]) -> None:
    """Many (step, metrics) points in as few calls as the batch limit allows."""
    _log_batched(run_id, _metrics(points))


def log_artifact(run_id: str, path: Path, artifact_path: str | None = None) -> None:
    client().log_artifact(run_id, str(path), artifact_path)


def log_text(run_id: str, text: str, filename: str) -> None:
    client().log_text(run_id, text, filename)


def end_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status)


def mark_interrupted(run_id: str) -> None:
    """A run whose process was killed stays RUNNING forever; mark it and its RUNNING child
    runs FAILED, tagged `interrupted`. A run the store does not hold is left alone."""
    c = client()
    try:
        run = c.get_run(run_id)
    except _mlflow_exception() as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return
        raise
    children = c.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'"
    )
    for stale in [*children, run] if run.info.status == "RUNNING" else children:
        c.set_tag(stale.info.run_id, "interrupted", "true")
        c.set_terminated(stale.info.run_id, "FAILED")


def log_and_register_model(
    run_id: str, model: torch.nn.Module, example: np.ndarray, registered_name: str, tags: Mapping[str, str],
    class_names: list[str], *, step: int = 0, metrics: Mapping[str, float] | None = None,
) -> str:
    """Log with the pytorch flavour as the run's model at `step`, register it, end the run
    (FINISHED); returns the new registry version. `metrics`, the model's figures, are logged
    on the run at `step` and shown on the model's page.

    What is served is `ClassProbabilities(model)`: rows of float32 features in, one
    probability per class out (column i = `class_names[i]`, kept in the model's metadata)."""
    import mlflow.pytorch

    cpu_model = ClassProbabilities(model.to("cpu")).eval()

    def log(model_id: str) -> Any:
        return mlflow.pytorch.log_model(
            cpu_model,
            name="model",
            model_id=model_id,
            input_example=example.astype(np.float32),
            # torch.export's archive, never pickle: it loads with
            # MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false (MLflow checks it holds no pickle
            # payload). Pinned rather than left to MLflow's default, which has changed.
            serialization_format=SERIALIZATION_FORMAT,
            # Pinned explicitly: requirement inference imports the model in a subprocess (slow).
            pip_requirements=[TORCH_REQUIREMENT],
            # No code_paths: the archive holds the graph and weights, and loads and serves
            # without this project's code (tests/test_models.py loads one from elsewhere);
            # copying components/ into every version cost 62 files and 0.5 MB each.
            registered_model_name=registered_name,
            tags=dict(tags),  # on the new version (the logged model has them from its creation)
            metadata={"class_names": list(class_names), "output": "class probabilities, column i = class_names[i]"},
            # MLflow's check that the input example serves loads the model back (0.19 s a
            # registration, a third of it); its only outcome is a warning, which the quiet
            # block in `_registered` would swallow. The registered models are served for real
            # in tests/test_e2e.py.
            validate_serving_input=False,
        )

    return _registered(run_id, tags, step, metrics or {}, log)


def log_and_register_text_model(
    run_id: str, slow_state: Path, spec: Mapping[str, Any], registered_name: str, tags: Mapping[str, str],
    columns: tuple[str, ...], *, step: int = 0, metrics: Mapping[str, float] | None = None,
) -> str:
    """Log a text entry as a pyfunc model from code (adapters/text_model.py: nothing is
    pickled) holding the slow model's weights and the entry's spec; register it, end the run
    and return the new version (`step`, `metrics`: as `log_and_register_model`). Served, it
    reads each document prequentially with the entry's fast learner
    (components/text/serving.py), answering `columns` per document."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(inputs=Schema([ColSpec("string", "text")]),
                               outputs=Schema([ColSpec("double", c) for c in columns]))

    def log(model_id: str) -> Any:
        with tempfile.TemporaryDirectory() as scratch:
            spec_path = Path(scratch) / "spec.json"
            spec_path.write_text(json.dumps(dict(spec), indent=1))
            return mlflow.pyfunc.log_model(
                name="model", model_id=model_id, python_model=str(Path(__file__).with_name("text_model.py")),
                artifacts={"slow": str(slow_state), "spec": str(spec_path)}, signature=signature,
                # pinned: requirement inference would import the model in a subprocess (slow)
                pip_requirements=[TORCH_REQUIREMENT,
                                  *(f"{p}=={metadata.version(p)}" for p in ("mlflow", "peft", "pandas"))],
                code_paths=[str(REPO_ROOT / "components")], registered_model_name=registered_name,
                tags=dict(tags), metadata={"input": "a `text` column, one document per row",
                          "output": "bytes, bpb_static, bpb_fast, gain per document (bits per byte: lower is better)"},
            )

    return _registered(run_id, tags, step, metrics or {}, log)


def _registered(run_id: str, tags: Mapping[str, str], step: int, metrics: Mapping[str, float],
                log: Callable[[str], Any]) -> str:
    """The run's model: a logged model created for run `run_id` (its params and `tags`), filled
    by `log(model_id)` (a flavour's log_model that registers a tagged version), linked to the
    run at `step` with `metrics`; then the run ends. Retried as a whole and counted as one
    call; returns the new version.

    Done by hand rather than by log_model inside an active run, because that reads the run's
    whole metric history back, one request per metric key (about 30 of a registration's 44
    requests on a stream unit), to re-log the figures at `step`, which are here already."""
    import mlflow
    from mlflow.entities import LoggedModelOutput
    from mlflow.tracking import MlflowClient

    def once() -> Any:
        client()  # sets the tracking URI for the flavour's log_model (and relocates a moved store)
        c = MlflowClient(tracking_uri())  # not the counted client: this whole block is one call
        run = c.get_run(run_id)
        logged = mlflow.initialize_logged_model(name="model", source_run_id=run_id, tags=dict(tags),
                                                params=run.data.params, experiment_id=run.info.experiment_id)
        c.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
        # The registry announces each new version on stderr; the stage prints its own summary.
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            info = log(logged.model_id)
        _log_batched(run_id, _metrics([(step, metrics)], model_id=logged.model_id), using=c)
        c.set_terminated(run_id, "FINISHED")
        return info

    start = time.perf_counter()
    info = with_retries(once, "log_model")  # retried as a whole: a version left by a failed try is never aliased
    seconds = time.perf_counter() - start
    CALLS["count"] += 1
    CALLS["seconds"] += seconds
    CALLS["model_seconds"] += seconds
    return str(info.registered_model_version)


def crown_versions(name: str, crowned: list[tuple[str, str, str, Mapping[str, str]]]) -> None:
    """Point each alias at its version of registered model `name` (`crowned`: alias,
    version, description, tags; champion first), with the version's description and tags
    (the registry's list shows tags: the numbers at a glance). With fewer than two, an
    earlier comparison's `challenger` is removed rather than left stale."""
    c = client()
    for alias, version, description, tags in crowned:
        c.set_registered_model_alias(name, alias, version)
        c.update_model_version(name, version, description=description)
        for key, value in tags.items():
            c.set_model_version_tag(name, version, key, value)
    if len(crowned) < 2:
        with contextlib.suppress(_mlflow_exception()):
            c.delete_registered_model_alias(name, "challenger")


def find_model_version(name: str, tags: Mapping[str, str]) -> str | None:
    """The newest version of registered model `name` carrying all of `tags`, or None."""
    try:
        versions = client().search_model_versions(f"name = '{name}'")
    except _mlflow_exception() as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    matching = [v for v in versions if all(v.tags.get(k) == value for k, value in tags.items())]
    return str(max(matching, key=lambda v: int(v.version)).version) if matching else None


def registered_model_name(stream_name: str) -> str:
    return f"slowfast-{stream_name}"

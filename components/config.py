"""Typed view of params.yaml: every knob the stages read, validated in one place.

A mistake in params.yaml becomes one line naming the key and what was expected, instead of
a traceback from deep inside a training loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import re

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


from components.errors import ParamsError
from components.layout import Layout
from components.metrics import HIGHER_IS_BETTER


# A name that becomes a path, a run name or a registry name (stream, method entry, live
# method): letters, digits, '.', '_', '-', starting with a letter or digit, so it can never
# climb out of its folder ("..", "/"), become shell syntax (";", "$", quotes) or hide.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PLAIN_NAME_RULE = "a plain name (letters, digits, '.', '_', '-'; starting with a letter or digit; at most 64)"


def is_plain_name(name: object) -> bool:
    return isinstance(name, str) and bool(_PLAIN_NAME.fullmatch(name)) and ".." not in name


def check_plain_name(name: object) -> str:
    if not is_plain_name(name):
        raise ValueError(f"must be {PLAIN_NAME_RULE}")
    return name


PlainName = Annotated[str, AfterValidator(check_plain_name)]


class Strict(BaseModel):
    """Unknown keys are refused, and types are strict: `epochs: true` or `lr: "fast"` is an
    error, not 1 or a guess (an int is still a valid float)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# The MNIST-1D generator's corruption knobs that a drift schedule may change.
DRIFT_KEYS = ("scale_coeff", "max_translation", "corr_noise_scale", "iid_noise_scale", "shear_scale")


class RiverParams(Strict):
    """A tabular concept-drift stream from `river.datasets.synth`, cut into windows in time order.

    Window k is drawn from concept `concepts[k]` (Agrawal's classification function, SEA's
    variant). Where the concept changes, river's `ConceptDriftStream` blends the previous
    concept into the new one over `drift_width` rows from the window's start (1 = abrupt).
    """

    generator: Literal["agrawal", "sea"] = "agrawal"
    concepts: list[int] = Field([0, 2, 5, 8], min_length=2, description="concept per window; window 0 = pretrain")
    rows_per_window: int = Field(5000, ge=10)
    drift_width: int = Field(500, ge=1, description="rows over which a new concept takes over; 1 = abrupt")
    noise: float = Field(0.0, ge=0.0, le=1.0, description="label noise (SEA) / feature perturbation (Agrawal)")


class WindowCut(Strict):
    """How a user's table is cut into windows: exactly one of `column`, `timestamp` + `length`,
    `rows` or `classes` (class groups `pretrain_classes`, `window_classes`, by class name)."""

    column: str | None = Field(None, description="a column whose sorted values name the windows")
    timestamp: str | None = Field(None, description="a datetime (or parseable string) column")
    length: str | None = Field(None, description="window length for `timestamp`: 30s, 15m, 6h, 1d, 2w")
    time_format: str | None = Field(None, description="strftime format when the timestamp column is a string")
    rows: int | None = Field(None, ge=1, description="a fixed number of rows per window, in file order")
    classes: bool = Field(False, description="class-incremental: window k holds the k-th class group")

    @model_validator(mode="after")
    def _exactly_one(self) -> "WindowCut":
        chosen = [n for n, on in (("column", self.column), ("timestamp", self.timestamp), ("rows", self.rows),
                                  ("classes", self.classes)) if on]
        if len(chosen) != 1:
            raise ValueError(f"set exactly one of column, timestamp (+ length), rows, classes; got {chosen or 'none'}")
        if (self.timestamp is None) != (self.length is None):
            raise ValueError("timestamp and length go together")
        return self


class TableParams(Strict):
    """A user's parquet or CSV file (path relative to the repository root, e.g. under data/raw/)."""

    path: str = Field(description="parquet/CSV file, or a glob (data/raw/events-*.csv): files join in name order")
    format: Literal["auto", "parquet", "csv"] = Field("auto", description="auto: from the file suffix")
    label: str = "label"
    features: list[str] | None = Field(
        None, description="feature columns (or one list column); default: all but label, window and exclude"
    )
    exclude: list[str] = Field(default_factory=list)
    classes: list[str] | None = Field(None, description="class order; default: sorted label values")
    window: WindowCut = WindowCut(rows=10000)
    invalid_rows: Literal["fail", "drop"] = Field("fail", description="rows with NaN/inf features: fail or drop")
    normalize: bool = Field(True, description="standardize features with window 0's training rows")


class IdxParams(Strict):
    """MNIST-style IDX files (optionally .gz); pixels scaled to [0, 1], one feature per pixel."""

    images: str
    labels: str
    window: WindowCut = WindowCut(classes=True)


class FashionMnistParams(Strict):
    """Fashion-MNIST (28x28 greyscale, 10 classes), read from data/external/fashion-mnist, which the
    `fetch` stage fills. Train rows come from its training set, test rows from its test set.

    `split`: class-incremental, window k holds the classes of `window_classes[k]` (window 0 the
    pretrain split). `permuted` / `rotated`: domain-incremental, all ten classes in each of
    `windows` windows, each window a disjoint draw of rows whose pixels are permuted by a
    seeded permutation (identity in window 0) or rotated by `rotations[k]` degrees.
    """

    variant: Literal["split", "permuted", "rotated"] = "split"
    window_classes: list[list[int]] = Field([[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]], min_length=2,
                                            description="split: class indices per window, window 0 first")
    windows: int = Field(5, ge=2, description="permuted: how many windows")
    rotations: list[float] = Field([0.0, 30.0, 60.0, 90.0, 120.0], min_length=2,
                                   description="rotated: degrees per window, window 0 first")
    train_per_class: int | None = Field(500, ge=1, description="training rows per class and window; null: all")
    test_per_class: int | None = Field(200, ge=1, description="test rows per class and window; null: all")


class AcsParams(Strict):
    """The ACS employment census table for Massachusetts (folktables' ACSEmployment task as
    NannyML ships it): 16 person features, label `employed`, one window per year (2015 is
    window 0, the pretrain split; 2016-2018 follow). Read from data/external/acs-employment-ma."""

    rows_per_year: int | None = Field(10000, ge=10, description="a seeded sample per year; null: every row")
    years: list[int] = Field([2015, 2016, 2017, 2018], min_length=2, description="the windows, in order")


class RiverDatasetParams(Strict):
    """A real dataset of river's: bundled in its wheel (ImageSegments: 2,310 rows, 7 classes;
    Shuttle: 49,097 rows) or one river downloads (Elec2, Insects), read here from
    data/raw/river/<Name>/ (river's own layout under RIVER_DATA), never downloaded at run time.
    Windows: `{rows: N}` in file order, or `{classes: true}` by stream.pretrain_classes /
    window_classes (class names as river yields them)."""

    name: Literal["ImageSegments", "Shuttle", "Phishing", "Bananas", "Elec2", "Insects"] = "ImageSegments"
    window: WindowCut = WindowCut(rows=500)
    max_rows: int | None = Field(None, ge=10, description="the first rows only; null: all")


class StreamParams(Strict):
    """The stream `prepare` writes; window 0 is always the slow model's pretrain split.

    `mnist1d` (alias `mnist1d-classinc`): class-incremental, cut by `pretrain_classes` and `window_classes` from one
    generated set of `num_samples` rows. `mnist1d-drift`: domain-incremental, all ten classes
    in every window, each window generated with `num_samples` rows and the generator settings
    in its `drift` entry (window 0 = the first entry, usually `{}`: the generator's defaults).
    `river-drift`: the `river` block. `table`: the `table` block. `idx`: the `idx` block.
    """

    name: PlainName = Field("mnist1d-classinc", description="the stream's folder under data/streams/ and its MLflow experiment")
    source: Literal["mnist1d", "mnist1d-classinc", "mnist1d-drift", "river-drift", "table", "idx",
                    "fashion-mnist", "acs-employment", "river-dataset"] = "mnist1d"
    num_samples: int = Field(12000, ge=100)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    pretrain_classes: list[int | str] = [0, 1, 2, 3]
    window_classes: list[list[int | str]] = [[4, 5], [6, 7], [8, 9]]
    drift: list[dict[str, float]] = Field(
        default_factory=lambda: [{}, {"corr_noise_scale": 0.5}, {"shear_scale": 1.5}, {"iid_noise_scale": 0.1}],
        min_length=2,
        description=f"per window, generator settings to change; keys among {DRIFT_KEYS}",
    )
    river: RiverParams | None = None
    table: TableParams | None = None
    idx: IdxParams | None = None
    fashion_mnist: FashionMnistParams | None = None
    acs: AcsParams | None = None
    river_dataset: RiverDatasetParams | None = None
    seed: int = 42

    @model_validator(mode="after")
    def _source_block(self) -> "StreamParams":
        if self.source == "river-drift" and self.river is None:
            object.__setattr__(self, "river", RiverParams())
        if self.source == "fashion-mnist" and self.fashion_mnist is None:
            object.__setattr__(self, "fashion_mnist", FashionMnistParams())
        if self.source == "acs-employment" and self.acs is None:
            object.__setattr__(self, "acs", AcsParams())
        if self.source == "river-dataset" and self.river_dataset is None:
            object.__setattr__(self, "river_dataset", RiverDatasetParams())
        for source in ("table", "idx"):
            if self.source == source and getattr(self, source) is None:
                raise ValueError(f"source {source!r} needs a `{source}:` block")
        return self


class ModelParams(Strict):
    kind: Literal["cnn1d", "mlp", "cnn2d", "custom"] = Field(
        "cnn1d", description="cnn1d for signals, mlp for tabular features, cnn2d for images, custom for your own model"
    )
    channels: int = Field(32, ge=1)
    hidden: int = Field(128, ge=1)
    depth: int = Field(2, ge=1, le=5, description="cnn2d: conv + pool blocks, each halving the image")
    image_shape: list[int] | None = Field(
        None, min_length=3, max_length=3, description="cnn2d: [channels, height, width] of a row; default one square channel"
    )
    factory: str | None = Field(
        None, pattern=r"^custom_models(\.[A-Za-z_][A-Za-z0-9_]*)+:[A-Za-z_][A-Za-z0-9_]*$",
        description="custom: 'custom_models.<module>:<function>', called as function(in_features, num_classes, **kwargs)",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="custom: keyword arguments of the factory")
    checkpoint: str | None = Field(
        None, description="a state dict under data/raw/ (.pt loaded with weights_only=True, or .safetensors) "
                          "that the slow model starts from; pretrain.epochs: 0 keeps it as it is",
    )

    @model_validator(mode="after")
    def _factory_for_custom(self) -> "ModelParams":
        if (self.kind == "custom") != (self.factory is not None):
            raise ValueError("model.factory: give 'package.module:function' exactly when kind is custom")
        return self


class TrainParams(Strict):
    epochs: int = Field(30, ge=0, description="0: the slow model as model.checkpoint holds it, no training")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class EvaluationParams(Strict):
    """Continual evaluation inside each window (see components/evaluation.py)."""

    every_steps: int = Field(10, ge=0, description="evaluate every k optimizer steps; 0 = window ends only")
    subset_rows: int = Field(100, ge=1, description="fixed, seeded test rows per window")
    gap_tolerance: float = Field(0.01, ge=0, description="how close to the pre-window accuracy counts as recovered")
    prequential: bool = Field(False, description="test-then-train accuracy on each first-epoch batch")


class TrackingParams(Strict):
    ui_url: str = Field("http://127.0.0.1:5000", description="where `mlflow ui` serves, for links from Prefect")
    retry_attempts: int = Field(6, ge=1, description="tries per tracking call when the store is unreachable or locked")
    retry_backoff_seconds: float = Field(1.0, ge=0, description="first wait between tries; doubles, at most 30 s")


class ParallelParams(Strict):
    """Where the stream stage's units (one method entry x one seed) run: a Dask cluster.

    None of this changes a number (tests/test_parallel.py), so it is not part of any unit's
    fingerprint and DVC does not rerun the stage when it changes."""

    workers: int = Field(2, ge=0, description="processes of the local Dask cluster; 0 = one after another in the flow's process")
    threads_per_worker: int = Field(1, ge=1, description="units at a time per worker (each unit uses `threads` torch threads)")
    scheduler: str = Field("", description="address of a running Dask scheduler (tcp://host:8786); empty = start a local cluster")
    unit_resources: dict[str, float] = Field(
        default_factory=dict, description="Dask resources each unit holds, e.g. {GPU: 1} for workers started with --resources GPU=1"
    )

    @field_validator("scheduler")
    @classmethod
    def _address(cls, address: str) -> str:
        if address and not address.startswith(("tcp://", "tls://")):
            raise ValueError("must be empty (a local cluster) or a Dask scheduler address such as tcp://host:8786")
        return address


class DriftTrigger(Strict):
    """A river drift detector on the serving model's errors; a drift starts consolidation early."""

    detector: Literal["off", "adwin", "page_hinkley"] = "off"

    @field_validator("detector", mode="before")
    @classmethod
    def _yaml_11_off(cls, value: Any) -> Any:
        """`dvc exp run -S` rewrites params.yaml as YAML 1.1, where `off` is false."""
        return "off" if value is False else value
    delta: float = Field(0.002, gt=0, lt=1, description="ADWIN's confidence / Page-Hinkley's tolerated change")
    threshold: float = Field(50.0, gt=0, description="Page-Hinkley's alarm threshold")


class OpsParams(Strict):
    """Scheduled operation (flows/ops.py): which method runs live and the gates it must pass."""

    method: PlainName = Field("replay", description="entry under methods: that the scheduled loop runs")
    seed: int = 0
    challenger_min_acc: float = Field(
        0.5, ge=0, le=1, description="fast-adapt registers a challenger only at this accuracy over seen windows or above"
    )
    promotion_tolerance: float = Field(
        0.02, ge=0, le=1, description="consolidate promotes unless accuracy over seen windows drops by more than this"
    )
    on_busy: Literal["wait", "skip"] = Field("wait", description="another run holds this stream: wait for it, or skip")
    lock_lease_seconds: float = Field(
        120.0, ge=60, description="a killed run's hold on the stream expires after this long"
    )
    reproduce_prepare: bool = Field(True, description="ingest runs `dvc repro prepare` first (new files in data/raw/)")
    drift: DriftTrigger = DriftTrigger()


class CompareParams(Strict):
    champion_metric: str = Field("acc", description="the metric that ranks methods (components/metrics.py HIGHER_IS_BETTER)")

    @field_validator("champion_metric")
    @classmethod
    def _rankable(cls, metric: str) -> str:
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"cannot rank methods by {metric!r}; choose one of {sorted(HIGHER_IS_BETTER)}")
        return metric


class TuneParams(Strict):
    """The tune stage (flows/tune.py): each listed method's hyperparameters searched with
    Optuna on a tuning stream that shares no row with the evaluation stream; the stream
    stage then evaluates `<entry>-tuned` beside each default entry (README "Tuning")."""

    methods: list[PlainName] = Field(default_factory=list, description="entries under methods: to tune; [] = tune nothing")
    trials: int = Field(8, ge=1, description="finished (complete or pruned) trials per method")
    startup_trials: int = Field(3, ge=1, description="random trials before TPE models the results")
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = Field(0, description="the sampler's seed and every trial's training seed")
    objective: str = Field("acc", description="what each trial maximises (or minimises), the same for every method")
    pruning: bool = Field(True, description="stop a trial whose seen-window accuracy falls below the median at that window")
    storage: str = Field("", description="Optuna RDB storage URL; empty = sqlite in .slowfast/tune/optuna.db")
    stream: dict[str, Any] = Field(
        default_factory=dict, description="the tuning stream: keys of `stream:` that differ (name, seed, class order, windows)",
    )
    space: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description="per entry, knob -> {low, high, log, integer} or {choices}: narrows or overrides "
                                          "the method's own search space; an empty mapping drops that knob",
    )

    @field_validator("objective")
    @classmethod
    def _rankable(cls, metric: str) -> str:
        return CompareParams._rankable(metric)

    @field_validator("storage")
    @classmethod
    def _rdb_url(cls, url: str) -> str:
        if url and not url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg2://", "mysql://")):
            raise ValueError("must be empty (sqlite in .slowfast/tune/) or an RDB URL such as postgresql://user@host/db")
        return url


def _stays_under_raw(path: str) -> str:
    if ".." in path.split("/"):
        raise ValueError("must stay under data/raw/ (no '..')")
    return path


# A file pattern or path under data/raw/: relative, no '..', no characters a shell or a URL would read.
RawGlob = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.*?\[\]-][A-Za-z0-9_.*?/\[\]-]*$",
                               description="a pattern under data/raw/, e.g. text/notes/*.md (no '..', not absolute)"),
                    AfterValidator(_stays_under_raw)]


class TextWindowFiles(Strict):
    """One window of your own corpus: the files under data/raw/ that `glob` matches."""

    name: PlainName
    glob: RawGlob


class TextTable(Strict):
    """Your own corpus as a table (parquet or CSV under data/raw/): one document per row,
    windows by the values of `window_column` in sorted order (the first is window 0)."""

    path: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-][A-Za-z0-9_./-]*\.(parquet|csv)$",
                               description="a .parquet or .csv file under data/raw/, e.g. text/tickets.parquet"),
                    AfterValidator(_stays_under_raw)]
    text_column: str = Field("text", min_length=1, description="each row's document")
    window_column: str = Field("window", min_length=1, description="which window a row belongs to")
    name_column: str = Field("", description="each document's name (unique); empty: its row number")


class TextFileOrder(Strict):
    """Your own corpus cut by file order: the files `glob` matches, sorted by path, in
    `windows` consecutive runs of (nearly) equal count, named part0, part1, ..."""

    glob: RawGlob
    windows: int = Field(ge=2, description="how many windows (window 0 pretrains)")


class TextParams(Strict):
    """The text stream and its fast learners (flows/text.py; README "Learning while reading").
    `methods: {}` (the default) runs no text stream."""

    name: PlainName = Field("stdlib-text", description="results/text/ and the MLflow experiment")
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict, description="entry -> {learner, knobs}")
    corpus: Literal["stdlib", "files", "file_order", "table"] = Field(
        "stdlib", description="stdlib: the standard library's source and prose")
    windows: list[TextWindowFiles] = Field(default_factory=list, description="corpus files: windows, window 0 first")
    table: TextTable | None = Field(None, description="corpus table: the file and its columns")
    file_order: TextFileOrder | None = Field(None, description="corpus file_order: the files and how many windows")
    seeds: list[int] = Field([0], min_length=1)
    test_share: float = Field(0.2, gt=0, lt=1, description="share of each window's documents held out, by name")
    test_docs: int = Field(6, ge=1, description="held-out documents read per window")
    doc_bytes: int = Field(4096, ge=64, description="bytes read of each held-out document")
    segment: int = Field(128, ge=8, description="bytes scored before the fast learner may learn from them")
    width: int = Field(128, ge=8)
    hidden: int = Field(256, ge=8)
    pretrain_steps: int = Field(400, ge=1, description="Adam steps of 32 x 128 bytes on window 0")
    pretrain_lr: float = Field(3e-3, gt=0)
    consolidation: float = Field(0.1, ge=0, le=1, description="slow += this x (fast - slow) after each window")
    consolidate_bytes: int = Field(16384, ge=64, description="training bytes of each window the fast learner reads "
                                                             "before consolidation")
    replay_bytes: int = Field(8192, ge=0, description="earlier windows' training bytes read with them (replay; 0: none)")

    @model_validator(mode="after")
    def _windows_for_files(self) -> "TextParams":
        if self.corpus == "files" and len(self.windows) < 2:
            raise ValueError("corpus 'files' needs `windows:` with at least two entries (window 0 pretrains)")
        if self.corpus == "file_order" and self.file_order is None:
            raise ValueError("corpus 'file_order' needs `file_order: {glob: text/<folder>/*.txt, windows: 4}`")
        if self.corpus == "table" and self.table is None:
            raise ValueError("corpus 'table' needs `table: {path: text/<file>.parquet, text_column: ..., "
                             "window_column: ...}`")
        for entry in self.methods:
            check_plain_name(entry)
        return self


class Params(Strict):
    seed: int = 0
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="one run of every method per seed")
    device: str = "auto"
    threads: int = Field(1, ge=0, description="torch CPU threads per unit (fixed: part of every result's fingerprint)")
    stream: StreamParams = StreamParams()
    model: ModelParams = ModelParams()
    pretrain: TrainParams = TrainParams()
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)
    evaluation: EvaluationParams = EvaluationParams()
    compare: CompareParams = CompareParams()
    tracking: TrackingParams = TrackingParams()
    parallel: ParallelParams = ParallelParams()
    ops: OpsParams = OpsParams()
    tune: TuneParams = TuneParams()
    text: TextParams = TextParams()

    @field_validator("methods", mode="before")
    @classmethod
    def _entry_names(cls, methods: Any) -> Any:
        """Entry names become result folders and run names: plain names only."""
        if isinstance(methods, dict):
            for entry in methods:
                if not is_plain_name(entry):
                    raise ValueError(f"entry name {entry!r} must be {PLAIN_NAME_RULE}")
        return methods

    @model_validator(mode="after")
    def _tuned_entries_exist(self) -> "Params":
        for entry in self.tune.methods:
            if entry not in self.methods:
                raise ValueError(f"tune.methods: no entry {entry!r} under methods:; entries: {sorted(self.methods)}")
        for entry in self.tune.space:
            if entry not in self.tune.methods:
                raise ValueError(f"tune.space.{entry}: {entry!r} is not listed in tune.methods")
        return self

    @model_validator(mode="after")
    def _text_has_its_own_name(self) -> "Params":
        taken = {self.stream.name: "stream.name", f"{self.stream.name}-live": "the live loop's",
                 f"{self.stream.name}-tuning": "the tuning runs'"}
        if self.text.name in taken:
            raise ValueError(f"text.name: {self.text.name!r} is {taken[self.text.name]} MLflow experiment and "
                             "registered model name too; give the text stream a name of its own")
        return self

    @model_validator(mode="after")
    def _untrained_needs_a_checkpoint(self) -> "Params":
        if self.pretrain.epochs == 0 and not self.model.checkpoint:
            raise ValueError("pretrain.epochs: 0 keeps the slow model as model.checkpoint holds it; set model.checkpoint")
        return self

    def stream_dir(self, root: Path) -> Path:
        return Layout(Path(root), self.stream.name).stream_dir


def _describe(error: ValidationError, source: str, prefix: str = "") -> str:
    first = error.errors()[0]
    where = ".".join([prefix, *map(str, first["loc"])] if prefix else map(str, first["loc"])) or "(top level)"
    got = first.get("input")
    message = first["msg"].removeprefix("Value error, ")
    if isinstance(got, (dict, list)):  # a whole block says nothing the message does not
        return f"{source}: {where}: {message}"
    return f"{source}: {where}: {message} (got {got!r})"


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_describe(error, source)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return parse_params(raw, str(path))


def validate_model(model_cls: type[BaseModel], raw: dict[str, Any], source: str, prefix: str) -> BaseModel:
    """Validate one config block (a method's, found at `prefix`) with the same one-line errors."""
    try:
        return model_cls.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_describe(error, source, prefix)) from None

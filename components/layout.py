"""Every path the pipeline reads or writes under a project root, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout this code runs from: the default project root


@dataclass(frozen=True)
class Layout:
    """Every path the pipeline reads or writes under a project root."""

    root: Path
    stream_name: str

    @property
    def stream_dir(self) -> Path:
        return self.root / "data" / "streams" / self.stream_name

    @property
    def slow_dir(self) -> Path:
        return self.root / "models" / "slow"

    @property
    def slow_model(self) -> Path:
        return self.slow_dir / "model.pt"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def methods_results(self) -> Path:
        return self.results / "methods"

    def method_results(self, entry: str) -> Path:
        return self.methods_results / entry

    def seed_results(self, entry: str, seed: int) -> Path:
        return self.method_results(entry) / f"seed{seed}"

    @property
    def state_root(self) -> Path:
        """Per-window checkpoints of running methods (not a DVC output; survives a crash)."""
        return self.root / ".slowfast" / "state" / self.stream_name

    def seed_state(self, entry: str, seed: int) -> Path:
        return self.state_root / entry / f"seed{seed}"

    def window_state(self, entry: str, seed: int, window: int) -> Path:
        return self.seed_state(entry, seed) / f"window-{window:04d}.pt"

    def flow_marker(self, entry: str) -> Path:
        return self.state_root / entry / "flow.json"

    @property
    def run_records(self) -> Path:
        """What a run did that its inputs do not determine (tracking run ids, registry
        versions, timings): beside the results, never inside a DVC output, so that DVC's
        hashes and git see only what the inputs determine."""
        return self.root / ".slowfast" / "runs" / self.stream_name

    @property
    def pretrain_record(self) -> Path:
        return self.run_records / "pretrain.json"

    def method_record(self, entry: str) -> Path:
        return self.run_records / f"{entry}.json"

    def seed_record(self, entry: str, seed: int) -> Path:
        return self.run_records / entry / f"seed{seed}.json"

    @property
    def ops_dir(self) -> Path:
        """The live loop's durable state (flows/ops.py)."""
        return self.root / ".slowfast" / "ops" / self.stream_name

    @property
    def compare_json(self) -> Path:
        return self.results / "compare.json"

    @property
    def tuning_comparison(self) -> Path:
        """Defaults vs tuned, side by side (tasks/compare.py; only when something was tuned)."""
        return self.results / "tuning_comparison.json"

    @property
    def compare_md(self) -> Path:
        return self.results / "compare.md"

    @property
    def plots(self) -> Path:
        return self.results / "plots"

    @property
    def tune_results(self) -> Path:
        """results/tune/: what the tune stage chose (chosen.json) and how (trials/)."""
        return self.results / "tune"

    @property
    def chosen_configs(self) -> Path:
        return self.tune_results / "chosen.json"

    @property
    def tune_state(self) -> Path:
        """The Optuna studies (sqlite) and the tuning stream's own workspace: kept between
        runs, never a DVC output (DVC would delete the studies a killed run resumes)."""
        return self.root / ".slowfast" / "tune"

    @property
    def tune_records(self) -> Path:
        """Per tuned entry, its tuning run in MLflow (what the evaluation runs are tagged with)."""
        return self.run_records / "tune"

    @property
    def headline_metrics(self) -> Path:
        """results/metrics/: one small JSON per method, DVC's metrics (tasks/compare.py)."""
        return self.results / "metrics"

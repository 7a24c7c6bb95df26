"""`python -m benchmarks --summary`: the targets table read from the committed results.

The benchmarks themselves are scripts (minutes each), not tests; what is tested here is that
the table reads what the scripts write and judges each target the way the issue states it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks.__main__ as suite

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", suite.SCRIPTS)
def test_every_committed_result_gives_its_targets(name):
    result = json.loads((suite.RESULTS / f"{name}.json").read_text())
    rows = suite.checks(name, result)
    judged = [met for *_, met in rows if met is not None]
    assert judged and all(isinstance(met, bool) for met in judged)


def test_a_target_is_judged_against_the_measured_figure():
    result = {"methods": {"lora": {"median_s": 0.51}, "error_memory": {"median_s": 0.004}},
              "error_memory_correction": {"added": 0.199}}
    verdicts = {what: met for what, _, _, met in suite.checks("adaptation_latency", result)}
    assert verdicts == {"lora: absorb 1,000 rows": False, "error_memory: absorb 1,000 rows": True, "its correction, 256 rows": True}


def test_summary_command_prints_every_benchmark_and_says_when_results_are_missing(tmp_path, monkeypatch):
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--summary"], cwd=REPO, capture_output=True, text=True,
                         env={"COLUMNS": "160", "PATH": str(Path(sys.executable).parent)})
    assert out.returncode == 0, out.stderr
    for title in ("flows / bare", "adaptation_latency", "scaling", "prepare_table", "wall, start-up included"):
        assert title in out.stdout
    (tmp_path / "scaling.json").write_text((suite.RESULTS / "scaling.json").read_text())
    monkeypatch.setattr(suite, "RESULTS", tmp_path)
    console = suite.Console(width=160, record=True)
    suite.summary(suite.SCRIPTS, console)
    text = console.export_text()
    assert "orchestration: no results, run python -m benchmarks.orchestration" in text
    assert "replay step" in text


def test_a_failing_script_is_named_and_the_others_still_run():
    ran = []

    def runner(args):
        ran.append(args[-1])
        return 1 if args[-1] == "benchmarks.scaling" else 0

    failed = suite.run(("adaptation_latency", "scaling", "prepare_table"), suite.Console(quiet=True), runner)
    assert failed == ["scaling"] and ran == ["benchmarks.adaptation_latency", "benchmarks.scaling", "benchmarks.prepare_table"]

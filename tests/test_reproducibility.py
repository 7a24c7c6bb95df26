"""The committed dvc.lock (and with it results/compare.* and README's table) belongs to the
committed code and params: `dvc repro` on a fresh clone reproduces them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.dvc


def _produced_paths() -> list[str]:
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    return [out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]


def test_dvc_lock_matches_the_code_and_params():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["dvc", "status", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    produced = _produced_paths()

    def is_pipeline_output(path: str) -> bool:
        # Outputs (and folders holding them) are absent on a fresh clone; their own stages
        # vouch for them. Only source deps and params are checked here.
        return any(out == path or out.startswith(path.rstrip("/") + "/") for out in produced)

    stale = []
    for stage, changes in json.loads(result.stdout or "{}").items():
        for change in changes:
            if not isinstance(change, dict):
                continue
            for path, status in change.get("changed deps", {}).items():
                if not is_pipeline_output(path):
                    stale.append(f"{stage}: {path} {status}")
            for path, status in change.get("changed params", {}).items():
                stale.append(f"{stage}: param {path} {status}")
    assert not stale, "dvc.lock is stale; run ./run.sh and commit dvc.lock and results: " + "; ".join(stale)

"""A shared params.yaml is untrusted input: no name in it may become a path outside its
folder or shell syntax, through the stages' own commands or through `dvc repro`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._project import copy_repository
from tests.conftest import tiny_params, write_params

pytestmark = pytest.mark.dvc


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of the repository (git, DVC) inside tmp_path/outer/, with a victim folder beside it."""
    root = tmp_path / "outer" / "repo"
    root.mkdir(parents=True)
    copy_repository(root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    for victim in (tmp_path / "victim", tmp_path / "outer" / "victim", root / "victim"):
        victim.mkdir()
        (victim / "notes.txt").write_text("keep me\n")
    return root


def _run(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _one_error_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def _victims_intact(root: Path) -> None:
    tmp = root.parents[1]
    for victim in (tmp / "victim", tmp / "outer" / "victim", root / "victim"):
        assert sorted(p.name for p in victim.iterdir()) == ["notes.txt"], victim
        assert (victim / "notes.txt").read_text() == "keep me\n"


@pytest.mark.parametrize("name", ["../../victim", "../../../../evil", ".."])
def test_a_stream_name_that_is_a_path_is_refused_by_dvc_repro(repo, name):
    params = tiny_params()
    params["stream"]["name"] = name
    write_params(repo, params)
    result = _run(repo, "dvc", "repro", "prepare")
    assert result.returncode != 0
    _one_error_line(result, "params.yaml: stream.name: must be a plain name")
    _victims_intact(repo)
    assert not (repo.parents[2] / "evil").exists() and not (repo / "data" / "streams").exists()


def test_a_method_entry_with_shell_syntax_never_reaches_a_shell(repo):
    params = tiny_params()
    params["methods"] = {"replay;touch pwned;echo": {"method": "replay"}, "$(touch pwned2)": {"method": "lora"}}
    write_params(repo, params)
    for args in (("dvc", "repro"), ("dvc", "repro", "stream")):
        result = _run(repo, *args)
        assert result.returncode != 0
        _one_error_line(result, "params.yaml: methods: entry name", "must be a plain name")
    assert not list(repo.rglob("pwned*"))
    assert not (repo / "results").exists() and not (repo / "data" / "streams").exists()


def test_an_entry_that_climbs_out_of_results_is_refused(repo):
    params = tiny_params()
    params["methods"] = {"../../victim": {"method": "finetune"}}
    write_params(repo, params)
    result = _run(repo, "dvc", "repro")
    assert result.returncode != 0
    _one_error_line(result, "entry name '../../victim' must be a plain name")
    _victims_intact(repo)


def test_the_command_line_refuses_an_entry_that_is_not_in_params(repo):
    write_params(repo, tiny_params())
    result = _run(repo, sys.executable, "-m", "flows.stream", "--method", "../../victim")
    assert result.returncode == 2
    _one_error_line(result, "no entry '../../victim'")
    _victims_intact(repo)


def test_live_loop_method_must_be_a_plain_name(repo):
    params = tiny_params()
    params["ops"] = {"method": "../victim"}
    write_params(repo, params)
    result = _run(repo, sys.executable, "-m", "flows.prepare")
    assert result.returncode == 2
    _one_error_line(result, "params.yaml: ops.method: must be a plain name")

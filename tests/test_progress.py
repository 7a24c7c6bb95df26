"""A unit's progress on disk (components/progress.py): records appended window by window,
read back as written, a line a kill cut short dropped and overwritten, and the order in
which windows' metrics reach the store kept. The SIGKILL tests (tests/test_recovery.py,
tests/test_parallel.py) resume from it for real."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from components.progress import PROGRESS_FILE, WINDOWS_FILE, Progress, WindowRecord, load_progress, save_progress


def _record(window: int) -> WindowRecord:
    return WindowRecord(window, [0.5, 0.25 * window], [{"step": window, "acc": 0.5}], 10 * window,
                        {"seconds": 0.1}, {"train": [0.3, 0.2]}, 120)


def test_records_are_appended_window_by_window_and_read_back_as_written(tmp_path):
    progress = Progress("fp", "run", [0.5, 0.1])
    save_progress(tmp_path, progress)
    for k in (1, 2, 3):
        progress = load_progress(tmp_path)
        progress.windows.append(_record(k))
        save_progress(tmp_path, progress)
        assert len((tmp_path / WINDOWS_FILE).read_text().splitlines()) == k
    progress = load_progress(tmp_path)
    for record in progress.unlogged()[:2]:
        record.logged = True
    save_progress(tmp_path, progress)
    again = load_progress(tmp_path)
    assert again.windows == [replace(_record(1), logged=True), replace(_record(2), logged=True), _record(3)]
    assert again.next_window == 4
    assert json.loads((tmp_path / PROGRESS_FILE).read_text())["logged_windows"] == 2


def test_a_line_cut_short_by_a_kill_is_dropped_and_the_window_written_again(tmp_path):
    progress = Progress("fp", "run", [0.5])
    progress.windows.append(_record(1))
    save_progress(tmp_path, progress)
    with (tmp_path / WINDOWS_FILE).open("ab") as out:
        out.write(b'{"window": 2, "accur')  # killed mid-write
    progress = load_progress(tmp_path)
    assert progress.next_window == 2
    progress.windows.append(_record(2))
    save_progress(tmp_path, progress)
    assert load_progress(tmp_path).windows == [_record(1), _record(2)]


def test_a_new_or_resumed_run_writes_its_records_anew(tmp_path):
    old = Progress("fp", "run-1", [0.5], [_record(1), _record(2)])
    save_progress(tmp_path, old)
    resumed = Progress("fp", "run-2", [0.5], load_progress(tmp_path).windows[:1], resumed_from=["run-1"])
    save_progress(tmp_path, resumed)
    again = load_progress(tmp_path)
    assert again.run_id == "run-2" and again.windows == [_record(1)]


def test_windows_reach_the_store_in_order(tmp_path):
    progress = Progress("fp", "run", [0.5], [_record(1), _record(2)])
    progress.windows[1].logged = True
    with pytest.raises(ValueError, match="window 1 was not logged"):
        save_progress(tmp_path, progress)


def test_progress_written_before_windows_jsonl_still_resumes(tmp_path):
    inline = {"fingerprint": "fp", "run_id": "run", "baseline": [0.5], "complete": False, "resumed_from": [],
              "record": None, "flow_id": "", "windows": [{**_record(1).__dict__, "logged": True}]}
    (tmp_path / PROGRESS_FILE).write_text(json.dumps(inline))
    progress = load_progress(tmp_path)
    assert progress.windows == [replace(_record(1), logged=True)] and progress.next_window == 2

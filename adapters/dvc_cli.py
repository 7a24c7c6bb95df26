"""DVC's command line, for the live loop's `ingest`: `dvc repro prepare` turns new files
under data/raw/ into a new version of the stream."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from components.errors import SlowfastError
from components.retry import RetriesExhausted, retry


class _DvcFailed(Exception):
    pass


def reproduce_prepare(root: Path, attempts: int, backoff_seconds: float, say: Callable[[str], None] = print) -> None:
    """`dvc repro prepare` in `root`. Another DVC process holding the repository lock is
    waited out with backoff; any other failure ends in one line."""

    def once() -> None:
        done = subprocess.run([sys.executable, "-m", "dvc", "repro", "prepare"], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            raise _DvcFailed(lines[-1] if lines else "no output")

    try:
        retry(once, attempts=attempts, backoff_seconds=backoff_seconds, transient=lambda e: "lock" in str(e).lower(),
              on_retry=lambda n, e, delay: say(f"[ingest] dvc is busy ({e}); retry {n} in {delay:.1f} s"))
    except (_DvcFailed, RetriesExhausted) as error:
        raise SlowfastError(f"`dvc repro prepare` in {root} failed: {error}") from None

"""Retry with exponential backoff, for failures that pass (a store briefly down, a file
lock held by another process). Written here rather than taken from tenacity: fifteen lines,
and the project would otherwise carry a dependency for them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class RetriesExhausted(Exception):
    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"failed {attempts} times ({_first_line(last)})")
        self.attempts, self.last = attempts, last


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:300]


def retry(
    call: Callable[[], T], *, attempts: int, backoff_seconds: float, transient: Callable[[BaseException], bool],
    max_backoff_seconds: float = 30.0, on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """`call()`; a transient failure is retried after backoff_seconds, then twice that, ...
    (at most max_backoff_seconds); any other failure is raised at once. After the last
    attempt: RetriesExhausted with the last error."""
    delay = backoff_seconds
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as error:
            if not transient(error):
                raise
            if attempt == attempts:
                raise RetriesExhausted(attempts, error) from error
            if on_retry is not None:
                on_retry(attempt, error, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_backoff_seconds)
    raise AssertionError("attempts must be at least 1")

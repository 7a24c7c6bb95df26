"""One run at a time per stream: a Prefect global concurrency limit of 1 slot.

Every flow that touches a stream's live state holds the slot `slowfast-stream-<name>`
for its whole run. A second run either waits for it or skips (params.yaml `ops.on_busy`).
The slot is a lease the holder renews; a run killed with SIGKILL stops renewing, and the
slot frees itself after `ops.lock_lease_seconds`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists


def limit_name(stream: str) -> str:
    return f"slowfast-stream-{stream}"


def ensure_limit(name: str) -> None:
    """Create the one-slot limit on first use (an existing one is left as the user set it)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except Exception:
            try:
                client.upsert_global_concurrency_limit_by_name(name, 1)
            except ObjectAlreadyExists:  # another run created it a moment ago
                pass


@contextmanager
def stream_lock(stream: str, on_busy: str, lease_seconds: float) -> Iterator[bool]:
    """Yields True holding the stream's slot, or False at once when busy and `on_busy` is skip."""
    name = limit_name(stream)
    ensure_limit(name)
    with ExitStack() as stack:
        try:
            stack.enter_context(concurrency(
                name, occupy=1, lease_duration=lease_seconds, strict=True,
                max_retries=0 if on_busy == "skip" else None,
            ))
        except ConcurrencySlotAcquisitionError as error:
            cause = error.__cause__
            busy = isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423
            if on_busy != "skip" or not busy:
                raise
            yield False
            return
        yield True

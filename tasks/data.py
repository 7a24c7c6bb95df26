"""Task: build the configured stream and write it per the data contract."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from components.config import load_params
from components.data.sources import build_stream
from components.data.stream_io import remove_other_streams, write_stream
from components.layout import REPO_ROOT

# The prepare line names at most this many windows (the first ones, then the last): a stream
# cut into 200 daily windows printed a line of 10,000 characters. stream.json lists them all.
SHOWN_WINDOWS = 8


@task(name="prepare-stream", cache_policy=NO_CACHE)
def prepare_stream(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> dict:
    root_path = Path(root)
    params = load_params(root_path / params_path)
    s = params.stream
    prepared = build_stream(s, root_path)
    manifest = write_stream(
        params.stream_dir(root_path), s.name, prepared.windows, prepared.class_names,
        source={"generator": s.source, **s.model_dump(exclude_none=True)}, extra=prepared.extra,
    )
    for gone in remove_other_streams(params.stream_dir(root_path).parent, s.name):
        print(f"[prepare] data/streams/{gone}: another stream (stream.name is now {s.name!r}), removed", flush=True)
    shown = manifest.windows if len(manifest.windows) <= SHOWN_WINDOWS else \
        [*manifest.windows[:SHOWN_WINDOWS - 2], None, manifest.windows[-1]]
    sizes = ", ".join(
        f"... ({len(manifest.windows) - SHOWN_WINDOWS + 1} more)" if w is None else
        f"w{w['window']} {_classes(w['classes'], manifest.class_names)} {w['rows']['train']}/{w['rows']['test']}"
        for w in shown
    )
    print(f"[prepare] {s.name}: {manifest.num_windows} windows (train/test rows) {sizes}; hash {manifest.content_hash[:12]}", flush=True)
    return {"name": manifest.name, "content_hash": manifest.content_hash, "num_windows": manifest.num_windows}


def _classes(indices: list[int], names: list[str]) -> str:
    shown = [names[i] for i in indices]
    return "[" + ",".join(shown[:6]) + (",…" if len(shown) > 6 else "") + "]"

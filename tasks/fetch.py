"""Task: make the files a built-in real dataset reads present under data/external/."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from components.config import load_params
from components.data.fetch import fetch_for_stream
from components.layout import REPO_ROOT


@task(name="fetch-data", cache_policy=NO_CACHE)
def fetch_external(params_path: str = "params.yaml", root: str = str(REPO_ROOT)) -> str:
    """Fetch what the configured source reads and say, in one line, where it came from."""
    root_path = Path(root)
    params = load_params(root_path / params_path)
    line = fetch_for_stream(params.stream.source, root_path / "data" / "external")
    line = line.replace(f"{root_path.resolve()}/", "").replace(f"{root_path}/", "")  # paths as the user sees them
    print(f"[fetch] {line}", flush=True)
    return line

"""Entry point shared by the flows' `__main__` blocks.

A user error (bad params, a stream that breaks the data contract) ends with one line on
stderr and exit code 2; a bug ends with its traceback and exit code 1. Either way Prefect
records the flow run as failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.errors import SlowfastError


def quiet_libraries() -> None:
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "prefect.flow_runs", "prefect.task_runs", "peft", "git"):
        logging.getLogger(name).setLevel(logging.CRITICAL if name.startswith("prefect") else logging.WARNING)


def run(flow_fn: Callable[..., Any], configure: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {flow_fn.__module__}", description=flow_fn.__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file, relative to --root (default: params.yaml)")
    parser.add_argument("--root", default=None, help="project root holding data/, models/, results/ (default: this checkout)")
    if configure:
        configure(parser)
    args = vars(parser.parse_args())
    quiet_libraries()
    try:
        root = args.pop("root")
        flow_fn(params_path=args.pop("params"), **args, **({"root": str(Path(root).resolve())} if root else {}))
    except SlowfastError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        traceback.print_exc()
        sys.exit(1)

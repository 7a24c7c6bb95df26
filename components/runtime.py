"""Device choice, seeding and determinism."""

from __future__ import annotations

import random
import resource
import sys

import numpy as np
import torch


def pick_device(preference: str = "auto") -> torch.device:
    """`auto` takes CUDA when a GPU is present, else the CPU; `cpu`/`cuda` force one."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{preference}' was asked for but no CUDA GPU is available")
    return torch.device(preference)


def configure_torch(threads: int, seed: int) -> torch.Generator:
    """Fix threads and seeds so the same params give the same numbers on the CPU.

    Returns a CPU generator that the training loop draws its batch order from, so that
    batch order never depends on how many random numbers something else consumed.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA allocations on a GPU, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux

"""Device choice, seeding and determinism."""

from __future__ import annotations

import random
import resource
import sys

import numpy as np
import torch

from components.errors import ParamsError


def pick_device(preference: str = "auto") -> torch.device:
    """`auto` takes CUDA when a GPU is present, else the CPU; `cpu`/`cuda`/`cuda:N` force one."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise ParamsError(f"params.yaml: device: {preference!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParamsError(f"params.yaml: device: {preference!r} asked for, but no CUDA GPU is available here (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ParamsError(f"params.yaml: device: {preference!r}, but this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ParamsError(f"params.yaml: device: {preference!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def window_seed(seed: int, window: int) -> int:
    """The one seed rule for per-window randomness of run seed `seed`: the torch seed window
    `window` trains with (main job and live loop alike, so their numbers agree) and the seed
    of that window's fixed evaluation subset."""
    return seed * 1000 + window


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

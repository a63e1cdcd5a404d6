"""Pick the compute device (cuda > mps > cpu), seed every generator, and set the CPU thread count (all lessons).

The thread policy is one rule for every lesson and command: the cores this process may really use (its
affinity mask, capped by a container's CPU quota), minus those other programs keep busy (the load average).
A thread that has to wait for a busy core stalls every parallel operation: on a busy 2-core machine, 2 threads
ran lesson 07's latent step 5 times slower than 1 thread did.
"""

import hashlib
import math
import os
import random
from pathlib import Path

import numpy as np
import torch

from latentlab.errors import InputError

CGROUP_ROOT = Path("/sys/fs/cgroup")  # where Linux shows a container's limits (tests point it at fake files)


def pick_device(prefer: str | None = None) -> torch.device:
    """cuda if present, else Apple's mps, else cpu; `prefer` or env LATENTLAB_DEVICE override."""
    choice = prefer or os.environ.get("LATENTLAB_DEVICE") or "auto"
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise InputError(f"unknown device {choice!r}; use 'auto', 'cpu', 'cuda' or 'mps'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but PyTorch sees no CUDA GPU; use 'cpu' or 'auto'.")
    if device.type == "mps" and not _mps_available():
        raise InputError("device 'mps' was asked for but this PyTorch has no Apple GPU; use 'cpu' or 'auto'.")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def seed_everything(seed: int = 0) -> torch.Generator:
    """seed python, numpy and torch; return a CPU generator seeded the same way"""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator("cpu").manual_seed(seed)


def stream_seed(seed: int, *stream: int | str) -> int:
    """the seed of one of a run's random streams, e.g. stream_seed(seed, "noise", process, step): 63 bits of sha256"""
    return int.from_bytes(hashlib.sha256(repr((seed, *stream)).encode()).digest()[:8], "little") >> 1


def cpu_quota() -> float | None:
    """CPUs the container's quota allows (cgroup v2 cpu.max, v1 cpu.cfs_quota_us / period); None: no quota"""
    try:  # v2: "max 100000" or "<quota> <period>", in microseconds
        quota, period = (CGROUP_ROOT / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:  # v1: a quota of -1 means none
            quota = (CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (CGROUP_ROOT / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        return None if quota in ("max", "-1") else int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def usable_cores() -> int:
    """cores this process may really use: its affinity mask, capped by the container's CPU quota (rounded up)"""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def default_threads() -> int:
    """the usable cores that other programs leave idle: the machine's cores minus its 1-minute load average"""
    cores = usable_cores()
    if not hasattr(os, "getloadavg"):
        return cores
    idle = (os.cpu_count() or cores) - round(os.getloadavg()[0])  # the load average counts the whole machine
    return max(1, min(cores, idle))


def set_threads(n: int | None = None) -> int:
    """use n CPU threads (default: `default_threads()`, the course's one policy); returns the count in force"""
    if n is None:
        n = default_threads()
    if int(n) < 1:
        raise InputError(f"threads is {n}; use at least 1, or leave it out to use the cores other programs leave idle.")
    torch.set_num_threads(int(n))
    return torch.get_num_threads()


def describe(device: torch.device | None = None) -> str:
    """'cpu (2 threads)' or 'cuda: NVIDIA H100 80GB HBM3' — the device named in every result"""
    device = device or pick_device()
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "mps: Apple GPU"
    n = torch.get_num_threads()
    return f"cpu ({n} thread{'s' if n != 1 else ''})"

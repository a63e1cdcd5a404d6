"""Pick the compute device (cuda > mps > cpu), seed every generator, and set the CPU thread count."""

import os
import random

import numpy as np
import torch

from latentlab.errors import InputError


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


def set_threads(n: int | None = None) -> int:
    """use n CPU threads (default: the cores this process may run on); returns the count in force"""
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, int(n)))
    return torch.get_num_threads()


def describe(device: torch.device | None = None) -> str:
    """'cpu (2 threads)' or 'cuda: NVIDIA H100 80GB HBM3' — the device named in every result"""
    device = device or pick_device()
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "mps: Apple GPU"
    return f"cpu ({torch.get_num_threads()} threads)"

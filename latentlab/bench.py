"""Honest timing: warm up, synchronise the GPU, repeat, and report the median, the spread and peak memory.

`time_fn` is the primitive every measurement in the course uses; it names the device in its result.
"""

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import psutil
import torch

from latentlab.device import describe, pick_device


@dataclass
class Timing:
    median_ms: float  # the number to quote
    min_ms: float
    max_ms: float
    iqr_ms: float  # interquartile range: the spread of the middle half of the runs
    repeats: int
    device: str  # e.g. "cpu (2 threads)" or "cuda: NVIDIA H100 80GB HBM3"
    peak_bytes: int  # CUDA: peak allocated during the runs; CPU: peak resident memory of the process

    def __str__(self) -> str:
        return (
            f"{self.median_ms:.2f} ms median (IQR {self.iqr_ms:.2f}, min {self.min_ms:.2f}, max {self.max_ms:.2f}, "
            f"n={self.repeats}) on {self.device}, peak {self.peak_bytes / 2**20:.0f} MiB"
        )

    def as_dict(self) -> dict:
        return asdict(self)


class _RSSSampler:
    """samples this process's resident memory in a thread; `peak` is the highest value seen"""

    def __init__(self, interval_s: float = 0.005):
        self.process, self.interval_s = psutil.Process(), interval_s
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "_RSSSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_fn(
    fn: Callable[[], object],
    warmup: int = 2,  # untimed calls first: caches, allocator, lazy kernels
    repeats: int = 5,
    device: torch.device | str | None = None,
) -> Timing:
    """time fn() `repeats` times after `warmup` calls; the GPU is synchronised around every call"""
    device = torch.device(device) if device is not None else pick_device()
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        with _RSSSampler() as rss:
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                times.append((time.perf_counter() - start) * 1000)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else rss.peak
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return Timing(
        median_ms=statistics.median(times),
        min_ms=min(times),
        max_ms=max(times),
        iqr_ms=q[2] - q[0],
        repeats=repeats,
        device=describe(device),
        peak_bytes=int(peak),
    )


def conv_stack(in_channels: int = 3, width: int = 32, depth: int = 4) -> torch.nn.Sequential:
    """a plain stack of 3x3 convolutions at full resolution: the simplest model whose cost follows the pixels"""
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(in_channels, width, 3, padding=1), torch.nn.SiLU()]
    for _ in range(depth - 2):
        layers += [torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.SiLU()]
    layers.append(torch.nn.Conv2d(width, in_channels, 3, padding=1))
    return torch.nn.Sequential(*layers)


def conv_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """floating-point operations of one forward pass, counted by PyTorch's own FLOP counter"""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return int(counter.get_total_flops())

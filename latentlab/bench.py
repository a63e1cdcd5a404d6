"""Honest timing: warm up, synchronise the GPU, repeat, and report the median, the spread and peak memory.

Lessons 01, 07 and 09 measure with it; the pixel-vs-latent comparison (`latentlab.pixel_vs_latent`) is built on it.

`time_fn` is the primitive every measurement in the course uses; it names the device in its result.
`count_flops` and `estimate_memory` replay a forward pass on PyTorch's meta device (shapes only, no data),
so they cost nothing and work for sizes that would never fit; `check_fits` compares a need with the memory
that is really free (a container's limit included, e.g. Binder's 2 GB).
"""

import statistics
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import psutil
import torch
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from latentlab.device import CGROUP_ROOT, describe, pick_device
from latentlab.errors import InputError


@dataclass
class Timing:
    median_ms: float  # the number to quote
    min_ms: float
    max_ms: float
    iqr_ms: float  # interquartile range: the spread of the middle half of the runs
    repeats: int
    device: str  # e.g. "cpu (2 threads)" or "cuda: NVIDIA H100 80GB HBM3"
    peak_bytes: int  # CUDA: peak allocated during the runs; CPU: peak resident memory of the process
    times_ms: list[float] = field(default_factory=list, repr=False)  # every timed run, in order

    @property
    def total_ms(self) -> float:
        """sum of the timed runs (e.g. a whole sampling loop, when each run is one step)"""
        return sum(self.times_ms)

    @property
    def quartiles_ms(self) -> tuple[float, float]:
        """(first, third) quartile of the timed runs: the middle half lies between them"""
        q = statistics.quantiles(self.times_ms, n=4) if len(self.times_ms) >= 2 else [self.median_ms] * 3
        return q[0], q[2]

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
        times_ms=times,
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
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return int(counter.get_total_flops())


# ---- FLOPs and memory without running anything: the meta device


class _LiveBytes(TorchDispatchMode):
    """follows every tensor an op creates until it is freed; `peak` is the most bytes alive at once"""

    def __init__(self, fused_attention: bool = True):
        super().__init__()
        self.live = self.peak = 0
        self.fused_attention = fused_attention

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        transient = 0
        if func is torch.ops.aten.scaled_dot_product_attention.default and not self.fused_attention:
            q, k = args[0], args[1]  # the plain (math) kernel holds the (B, heads, Tq, Tk) scores twice
            transient = 2 * q.shape[:-1].numel() * k.shape[-2] * q.element_size()
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for ret, tensor in zip(func._schema.returns, outs):
            if isinstance(tensor, torch.Tensor) and ret.alias_info is None:  # views share memory: not counted
                nbytes = tensor.untyped_storage().nbytes()
                self.live += nbytes
                weakref.finalize(tensor, self._free, nbytes)
        self.peak = max(self.peak, self.live + transient)
        return out


@dataclass
class ForwardCost:
    flops: int  # counted by torch.utils.flop_counter.FlopCounterMode: 2 per multiply-add
    attention_flops: int  # the q k^T and softmax(.) v products: the only work growing with tokens^2
    peak_bytes: int  # weights + inputs + the most activations alive at once


def forward_cost(model: torch.nn.Module, *inputs: object, fused_attention: bool = True) -> ForwardCost:
    """FLOPs and memory of model(*inputs), from one replay on the meta device (shapes only: no time, no memory).

    fused_attention: True where PyTorch's attention kernels work in tiles (CPU, CUDA) and never hold the full
    (tokens x tokens) score matrix; False adds that matrix, as the plain kernel (e.g. on mps) materialises it.
    """
    state = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict(keep_vars=True).items()}
    inputs = tuple(x.to("meta") if isinstance(x, torch.Tensor) else x for x in inputs)
    # the tracker sees each op first (attention as one fused op), then the counter counts it
    with FlopCounterMode(display=False, depth=None) as counter, _LiveBytes(fused_attention) as tracker:
        with torch.inference_mode():
            functional_call(model, state, inputs)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root, attention = type(model).__name__, 0
    for name, module in model.named_modules():
        if type(module).__name__ == "Attention":  # latentlab.blocks.Attention and diffusers' Attention
            key = f"{root}.{name}" if name else root
            leaves = [f"{key}.{sub}" for sub, m in module.named_modules() if sub and not list(m.children())]
            attention += per_module.get(key, 0) - sum(per_module.get(leaf, 0) for leaf in leaves)  # minus q/k/v/out
    weights = sum(v.numel() * v.element_size() for v in state.values())
    given = sum(x.numel() * x.element_size() for x in inputs if isinstance(x, torch.Tensor))
    return ForwardCost(int(counter.get_total_flops()), int(attention), weights + given + tracker.peak)


def count_flops(model: torch.nn.Module, *inputs: object) -> dict[str, int]:
    """{"total": FLOPs of model(*inputs), "attention": its tokens^2 part}, counted on the meta device"""
    cost = forward_cost(model, *inputs)
    return {"total": cost.flops, "attention": cost.attention_flops}


def estimate_memory(model: torch.nn.Module, *inputs: object, fused_attention: bool = True) -> int:
    """bytes model(*inputs) needs: its weights, the inputs, and the most activations alive at once (meta replay)"""
    return forward_cost(model, *inputs, fused_attention=fused_attention).peak_bytes


def available_memory(device: torch.device | str | None = None) -> int:
    """bytes free for new tensors: CUDA free + cached, or the RAM this process may still use (container limit too)"""
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    free = psutil.virtual_memory().available
    cgroup = _cgroup_free()  # Binder, Docker, Kubernetes: the container's limit, lower than the machine's RAM
    return int(min(free, cgroup) if cgroup is not None else free)


_CGROUP_FILES = (  # limit, usage, statistics, and the reclaimable file cache counted in the usage
    ("memory.max", "memory.current", "memory.stat", "inactive_file"),  # cgroup v2
    ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat", "total_inactive_file"),
)


def _cgroup_free() -> int | None:
    """limit - usage + reclaimable cache of this container's memory cgroup; None when there is no limit"""
    root = CGROUP_ROOT
    for limit_file, usage_file, stat_file, cache_key in _CGROUP_FILES:
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text())
            stats = dict(line.split()[:2] for line in (root / stat_file).read_text().splitlines())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:  # v1 writes "no limit" as a huge number
            return None
        return int(limit) - usage + int(stats.get(cache_key, 0))
    return None


class MemoryWontFit(InputError):
    """a pass that would need more memory than is free: skipped before it starts, with one sentence saying so"""


def check_fits(need: int, device: torch.device | str | None = None, what: str = "this pass",
               overhead: float = 1.6, margin: float = 0.9) -> None:
    """raise MemoryWontFit (one sentence) unless `overhead` x `need` bytes fit in `margin` of the free memory

    overhead: kernels' scratch space and the allocator's slack on top of the tensors `estimate_memory` counts
    (on a CPU, lesson 07's UNet passes added 1.15 to 1.6 times the estimate to the resident memory).
    """
    device = torch.device(device) if device is not None else pick_device()
    free = available_memory(device)
    if overhead * need > margin * free:
        raise MemoryWontFit(f"{what} needs about {format_bytes(overhead * need)} but only {format_bytes(free)} is "
                            f"free on {describe(device)}; skipped it (choose a smaller size).")


def format_bytes(nbytes: float) -> str:
    """bytes -> "5.4 GB" (powers of 1000)"""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(nbytes) < 1000:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"

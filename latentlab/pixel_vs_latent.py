"""Pixel space vs latent space, measured (lesson 07): one UNet denoising 3 x N x N pixels and a 4 x N/f x N/f latent.

The claim of latent diffusion (Rombach et al. 2022, https://arxiv.org/abs/2112.10752, Sec. 3 and Table 6): a
UNet working on a latent f times smaller per side does about f^2 times less work per step, and the one VAE
decode at the end is small next to the pixel steps saved (with few steps, though, much of the latent pipeline).
`compare` measures it on this machine: time per step (warm-up, repeats, median and spread), peak memory, FLOPs
counted by PyTorch, a whole K-step DDIM loop in each space plus the decode. `sweep` repeats it over N;
`add_arguments` / `run` are `latentlab bench`.

Longer than the course's other modules because it is one measurement end to end, in reading order: the
results (`SpaceResult` per space, `Comparison`), the measuring, then the table, the plot and the command.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import matplotlib.pyplot as plt
import psutil
import torch
from matplotlib.ticker import FuncFormatter, LogFormatter, NullFormatter

from latentlab import bench
from latentlab.checkpoints import load_course_vae
from latentlab.device import describe, pick_device, set_threads
from latentlab.diffusion import SD_SCHEDULE, alphas_cumprod, ddim_step, make_betas
from latentlab.errors import InputError
from latentlab.unet import UNet, UNetConfig
from latentlab.vae import VAE, VAEConfig

DType = Literal["fp32", "fp16", "bf16"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LONG_DECODE_S = 10.0  # a decode estimated to take longer is announced first and timed once

BENCH_UNET = UNetConfig(  # small but real: DDPM's layout, narrow enough that 512 x 512 pixels take seconds on a CPU
    block_out_channels=(32, 32, 64, 64),  # 4 levels: the input is halved 3 times
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),  # attention only at the
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),  # lowest resolution (and the mid block)
    layers_per_block=1,
    attention_head_dim=32,  # 2 heads of 32 channels at width 64
)


@dataclass
class SpaceResult:
    """one space's numbers: its tensor, the work and memory of one step, and K timed steps (ms; MB = 10^6 bytes)"""

    shape: list[int]  # (1, 3, N, N) or (1, 4, N/f, N/f)
    gflops: float  # one UNet forward, counted by torch.utils.flop_counter.FlopCounterMode on the meta device
    attention_share: float  # share of those FLOPs in attention's tokens^2 products
    estimate_mb: float  # the meta replay's peak: weights, input, the most activations alive at once
    ms_per_step: float | None = None  # median of the K steps; None: not run (see Comparison.skipped)
    q1_ms: float | None = None  # first and third quartiles: the middle half of the steps lies between them
    q3_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    loop_ms: float | None = None  # the K steps together: a whole sampling loop
    memory_mb: float | None = None  # what the loop added above what the process held (CUDA: allocated; CPU: resident)

    @property
    def iqr_ms(self) -> float | None:
        return None if self.ms_per_step is None else self.q3_ms - self.q1_ms

    @property
    def gflops_per_s(self) -> float | None:
        """the arithmetic rate this space achieved: its FLOPs per step / its median step time"""
        return _ratio(self.gflops * 1000, self.ms_per_step)

    def add_timing(self, timing: bench.Timing, memory_mb: float) -> None:
        """fill the measured fields from K timed steps"""
        self.ms_per_step, self.min_ms, self.max_ms, self.loop_ms = (timing.median_ms, timing.min_ms, timing.max_ms,
                                                                    timing.total_ms)
        self.q1_ms, self.q3_ms = timing.quartiles_ms
        self.memory_mb = memory_mb


@dataclass
class Comparison:
    """one pixel-vs-latent measurement: the two spaces, the decode, and the ratios between them"""

    device: str  # e.g. "cpu (2 threads)" or "cuda: NVIDIA H100 80GB HBM3"
    dtype: str
    resolution: int  # image side N
    factor: int  # latent side = N / factor
    steps: int  # K: denoising steps in each space (each one timed)
    unet_parameters: int
    pixel: SpaceResult
    latent: SpaceResult
    channels_last: bool = False  # memory layout of both spaces' tensors
    cpu_load: float | None = None  # 1-minute load average when the run started (other programs slow a CPU run)
    decoder: str | None = None  # which VAE decoded the latent
    decode_ms: float | None = None  # median of `decode_repeats` decodes
    decode_iqr_ms: float | None = None
    decode_repeats: int | None = None  # 1 when the decode was estimated to be long
    decode_estimate_mb: float | None = None
    skipped: list[str] = field(default_factory=list)  # one sentence per pass that was not run, and why

    @property
    def speedup(self) -> float | None:
        """pixel / latent median time per step"""
        return _ratio(self.pixel.ms_per_step, self.latent.ms_per_step)

    @property
    def speedup_range(self) -> tuple[float, float] | tuple[None, None]:
        """(pixel q1 / latent q3, pixel q3 / latent q1): the pessimistic and the optimistic end"""
        if self.speedup is None:
            return None, None
        return self.pixel.q1_ms / self.latent.q3_ms, self.pixel.q3_ms / self.latent.q1_ms

    @property
    def flops_ratio(self) -> float:
        """pixel / latent FLOPs per step: the theoretical speed-up"""
        return self.pixel.gflops / self.latent.gflops

    @property
    def efficiency(self) -> float | None:
        """speedup / flops_ratio = latent GFLOP/s / pixel GFLOP/s: 1.0 would be the theory exactly"""
        return _ratio(self.speedup, self.flops_ratio)

    @property
    def memory_measured(self) -> bool:
        """whether memory_mb isolates one pass: on CUDA (allocated bytes); a CPU's resident memory cannot"""
        return self.device.startswith("cuda")

    @property
    def latent_pipeline_ms(self) -> float | None:
        """the latent loop plus the one decode"""
        return None if self.decode_ms is None else self.latent.loop_ms + self.decode_ms

    @property
    def decode_share(self) -> float | None:
        return _ratio(self.decode_ms, self.latent_pipeline_ms)

    @property
    def end_to_end_speedup(self) -> float | None:
        """pixel loop / (latent loop + decode)"""
        return _ratio(self.pixel.loop_ms, self.latent_pipeline_ms)

    def as_dict(self) -> dict:
        """every number, as `latentlab bench --json` prints it: the keys the README promises first"""
        low, high = self.speedup_range
        return {
            "device": self.device, "resolution": self.resolution, "factor": self.factor,
            "pixel_ms_per_step": self.pixel.ms_per_step, "latent_ms_per_step": self.latent.ms_per_step,
            "speedup": self.speedup, "flops_ratio": self.flops_ratio,
            "speedup_low": low, "speedup_high": high, "efficiency": self.efficiency,
            "latent_pipeline_ms": self.latent_pipeline_ms, "decode_share": self.decode_share,
            "end_to_end_speedup": self.end_to_end_speedup,
        } | asdict(self)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def unet_config(in_channels: int, base: UNetConfig = BENCH_UNET) -> UNetConfig:
    """the benchmark UNet for 3 (pixels) or 4 (latents) channels; only conv_in and conv_out differ"""
    return replace(base, in_channels=in_channels, out_channels=in_channels)


def check_sizes(resolution: int, factor: int, base: UNetConfig = BENCH_UNET) -> int:
    """InputError unless the image and the latent both fit the UNet's halvings; returns the latent side"""
    if not isinstance(factor, int) or factor < 2 or factor & (factor - 1):
        raise InputError(f"factor {factor} is not a power of two of at least 2; use 4, 8 (Stable Diffusion's) or 16.")
    multiple = factor * 2 ** (base.levels - 1)
    if not isinstance(resolution, int) or resolution < multiple or resolution % multiple:
        near = max(multiple, round(resolution / multiple) * multiple) if isinstance(resolution, int) else multiple
        raise InputError(f"resolution {resolution} is not a multiple of {multiple} (factor {factor} times the UNet's "
                         f"{2 ** (base.levels - 1)}x downsampling); use a multiple of {multiple} such as {near}.")
    return resolution // factor


_COSTS: dict[str, bench.ForwardCost] = {}  # meta replays already made


def unet_cost(channels: int, side: int, base: UNetConfig = BENCH_UNET, dtype: torch.dtype = torch.float32,
              fused_attention: bool = True) -> bench.ForwardCost:
    """FLOPs and memory of one benchmark-UNet forward on a (1, channels, side, side) input; meta device, cached"""
    key = f"{channels} {side} {dtype} {fused_attention} {base!r}"
    if key not in _COSTS:
        with torch.device("meta"):  # shapes only: no weights to initialise
            model = UNet(unet_config(channels, base)).to(dtype)
        sample = torch.empty(1, channels, side, side, dtype=dtype, device="meta")
        _COSTS[key] = bench.forward_cost(model, sample, 500, fused_attention=fused_attention)
    return _COSTS[key]


def space_result(channels: int, side: int, base: UNetConfig = BENCH_UNET, dtype: torch.dtype = torch.float32,
                 fused_attention: bool = True) -> SpaceResult:
    """a space's counted numbers (FLOPs, attention share, memory estimate), before anything is timed"""
    cost = unet_cost(channels, side, base, dtype, fused_attention)
    return SpaceResult([1, channels, side, side], cost.flops / 1e9, cost.attention_flops / cost.flops,
                       cost.peak_bytes / 1e6)


def step_flops(resolution: int, factor: int, base: UNetConfig = BENCH_UNET) -> dict[str, float]:
    """FLOPs of one UNet forward in each space and their ratio, counted on the meta device (no data, no memory)"""
    pixel, latent = space_result(3, resolution, base), space_result(4, check_sizes(resolution, factor, base), base)
    return {
        "pixel_gflops": pixel.gflops,
        "pixel_attention_share": pixel.attention_share,
        "latent_gflops": latent.gflops,
        "latent_attention_share": latent.attention_share,
        "flops_ratio": pixel.gflops / latent.gflops,
    }


class DDIMSteps:
    """one call = one step of a K-step DDIM loop on SD's schedule: a UNet forward, then `diffusion.ddim_step`"""

    def __init__(self, unet: torch.nn.Module, x: torch.Tensor, steps: int, warmup: int = 0):
        self.alphas_cumprod = alphas_cumprod(make_betas(**SD_SCHEDULE))
        last = SD_SCHEDULE["num_train_timesteps"] - 1
        self.timesteps = torch.linspace(last, 0, steps).round().long().tolist() + [-1]  # 999 ... 0, then x_0
        self.unet, self.x, self.warmup, self.calls = unet, x, warmup, 0

    def __call__(self) -> torch.Tensor:
        i = max(self.calls - self.warmup, 0)  # warm-up calls run the first step and keep the sample as it was
        t, prev_t = self.timesteps[i], self.timesteps[i + 1]
        eps = self.unet(self.x, t)  # predicted noise, shape of x
        x, _ = ddim_step(eps, t, prev_t, self.x, self.alphas_cumprod, clip_sample=1.0)  # clamped: an untrained
        if self.calls >= self.warmup:  # UNet stays finite
            self.x = x
        self.calls += 1
        return x


def course_decoder(factor: int, device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[VAE, str]:
    """(the course VAE, which weights it has): the shipped weights at factor 8, else its architecture untrained"""
    if factor == 8:
        return load_course_vae(device).to(dtype), "course VAE, shipped weights"
    widths = VAEConfig().block_out_channels
    levels = factor.bit_length()  # factor 2^L needs L + 1 resolutions
    vae = VAE(VAEConfig(block_out_channels=(widths + (widths[-1],) * levels)[:levels]))
    return vae.to(device, dtype).eval(), f"course VAE architecture (factor {factor}), untrained: same time as trained"


def _held_bytes(device: torch.device) -> int:
    """what the process holds now: CUDA allocated, or resident memory on a CPU"""
    gc.collect()
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return psutil.Process().memory_info().rss


def _time_loop(unet: torch.nn.Module, shape: list[int], steps: int, warmup: int, device: torch.device,
               dtype: torch.dtype, channels_last: bool) -> tuple[bench.Timing, float]:
    """K timed DDIM steps after `warmup` untimed ones -> (Timing of the steps, MB the loop added)"""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    held = _held_bytes(device)
    timing = bench.time_fn(DDIMSteps(unet, x, steps, warmup), warmup=warmup, repeats=steps, device=device)
    return timing, max(timing.peak_bytes - held, 0) / 1e6


def compare(
    resolution: int = 512,
    factor: int = 8,
    steps: int = 10,  # K: each step is timed; the loop's total is the end-to-end time
    device: str | torch.device | None = None,  # None: cuda > mps > cpu
    dtype: DType = "fp32",  # fp16 / bf16 on a GPU
    warmup: int = 1,  # untimed steps first, in each space
    channels_last: bool | None = None,  # None: yes on CPU (oneDNN) and CUDA (tensor cores), faster on both sides
    decode: bool = True,  # time the VAE decode the latent path needs
    base: UNetConfig = BENCH_UNET,
) -> Comparison:
    """the same UNet denoising N x N x 3 pixels and N/f x N/f x 4 latents for K steps, plus the latent's decode"""
    side = check_sizes(resolution, factor, base)
    dev = pick_device(str(device) if isinstance(device, torch.device) else device)
    if dtype not in DTYPES:
        raise InputError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}; use fp32 (or fp16 / bf16 on a GPU).")
    if dtype != "fp32" and dev.type == "cpu":
        raise InputError(f"{dtype} timing is meant for GPUs (a CPU emulates it slowly); on the CPU use --dtype fp32.")
    if steps < 1:
        raise InputError(f"steps is {steps}; use at least 1 denoising step.")
    torch_dtype = DTYPES[dtype]
    channels_last = dev.type in ("cpu", "cuda") if channels_last is None else channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    fused = dev.type in ("cpu", "cuda")  # tiled attention kernels: no full tokens x tokens matrix

    # 1. the same UNet in both spaces: the same widths and blocks, same seed; only 3 vs 4 channels in and out
    unets = {}
    for space, channels in (("pixel", 3), ("latent", 4)):
        torch.manual_seed(0)
        unets[space] = UNet(unet_config(channels, base)).to(dev, torch_dtype, memory_format=fmt).eval()

    # 2. work and memory per step, counted on the meta device (shapes only)
    result = Comparison(describe(dev), dtype, resolution, factor, steps, unets["pixel"].num_parameters(),
                        pixel=space_result(3, resolution, base, torch_dtype, fused),
                        latent=space_result(4, side, base, torch_dtype, fused), channels_last=channels_last,
                        cpu_load=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)

    # 3. skip what would not fit, then time K steps in each space (the latent's decode right after its loop)
    for space, r in (("latent", result.latent), ("pixel", result.pixel)):
        try:
            bench.check_fits(r.estimate_mb * 1e6, dev, f"{space} space at {r.shape[2]}x{r.shape[3]}x{r.shape[1]}")
        except bench.MemoryWontFit as err:
            result.skipped.append(str(err))
            continue
        r.add_timing(*_time_loop(unets.pop(space), r.shape, steps, warmup, dev, torch_dtype, channels_last))
        if space == "latent" and decode:
            _time_decode(result, dev, torch_dtype, fmt)
    return result


def _time_decode(result: Comparison, dev: torch.device, dtype: torch.dtype, fmt: torch.memory_format) -> None:
    """time the one VAE decode the latent path ends with: refused if it would not fit, announced and timed once
    if the latent pass's speed says it is long"""
    vae, result.decoder = course_decoder(result.factor, dev, dtype)
    vae = vae.to(memory_format=fmt)
    z = torch.randn(result.latent.shape, generator=torch.Generator().manual_seed(1)).to(dev, dtype)
    z = z.contiguous(memory_format=fmt)
    cost = bench.forward_cost(vae.decoder, z, fused_attention=dev.type in ("cpu", "cuda"))
    result.decode_estimate_mb = cost.peak_bytes / 1e6
    what = f"the VAE decode to {result.resolution}x{result.resolution}"
    try:
        bench.check_fits(cost.peak_bytes, dev, what)
    except bench.MemoryWontFit as err:
        result.skipped.append(str(err))
        return
    flops_per_s = result.latent.gflops * 1e9 / (result.latent.ms_per_step / 1000)  # this machine, this UNet
    seconds = cost.flops / flops_per_s
    warmup, result.decode_repeats = (0, 1) if seconds > LONG_DECODE_S else (1, 3)
    if seconds > LONG_DECODE_S:
        duration = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
        print(f"{what} needs about {bench.format_bytes(cost.peak_bytes)} and roughly {duration} here "
              f"({cost.flops / 1e9:,.0f} GFLOPs at the latent pass's {flops_per_s / 1e9:.0f} GFLOP/s); "
              "timing it once (--no-decode skips it) ...", file=sys.stderr, flush=True)
    timing = bench.time_fn(lambda: vae.decode(z), warmup=warmup, repeats=result.decode_repeats, device=dev)
    result.decode_ms, result.decode_iqr_ms = timing.median_ms, timing.iqr_ms


def sweep_sizes(largest: int = 512, factor: int = 8, base: UNetConfig = BENCH_UNET) -> list[int]:
    """image sides from the smallest the UNet takes, doubling up to `largest` (e.g. 64, 128, 256, 512)"""
    check_sizes(largest, factor, base)
    sizes = [factor * 2 ** (base.levels - 1)]
    while sizes[-1] * 2 <= largest:
        sizes.append(sizes[-1] * 2)
    return sizes


def sweep(resolutions: list[int], progress: bool = False, **kwargs) -> list[Comparison]:
    """compare() at each image side; a side that would not fit is reported in its result's `skipped`"""
    results = []
    for n in resolutions:
        if progress:
            print(f"  {n} x {n} ...", file=sys.stderr, flush=True)
        results.append(compare(resolution=n, **kwargs))
    return results


# ---- reading the results: a table, a figure, the command line


def _fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def _pct(share: float | None, spec: str) -> str:
    return _fmt(None if share is None else 100 * share, spec, "%")


def format_table(r: Comparison) -> str:
    """a readable table of one comparison"""
    p, q = r.pixel, r.latent
    low, high = r.speedup_range
    head = (f"one UNet ({r.unet_parameters / 1e6:.1f} M parameters), pixels {r.resolution}x{r.resolution}x3 vs latent "
            f"{q.shape[2]}x{q.shape[3]}x4 (factor {r.factor}), {r.steps} steps, {r.dtype} on {r.device}"
            + (f", load {r.cpu_load:.2f}" if r.cpu_load is not None else ""))
    rows = [
        ("", "pixel space", "latent space", "pixel / latent"),
        ("ms per step (median)", _fmt(p.ms_per_step), _fmt(q.ms_per_step),
         f"{_fmt(r.speedup)}x (quartiles {_fmt(low)}-{_fmt(high)}x)"),
        ("  IQR / min / max ms", f"{_fmt(p.iqr_ms)} / {_fmt(p.min_ms)} / {_fmt(p.max_ms)}",
         f"{_fmt(q.iqr_ms, '.2f')} / {_fmt(q.min_ms)} / {_fmt(q.max_ms)}", ""),
        ("GFLOPs per step", _fmt(p.gflops, ".2f"), _fmt(q.gflops, ".3f"), f"{_fmt(r.flops_ratio)}x FLOPs ratio"),
        ("  attention share", _pct(p.attention_share, ".1f"), _pct(q.attention_share, ".2f"), ""),
        ("GFLOP/s achieved", _fmt(p.gflops_per_s), _fmt(q.gflops_per_s),
         f"efficiency {_fmt(r.efficiency, '.2f')} = latent / pixel GFLOP/s"),
        ("memory MB, estimate", _fmt(p.estimate_mb, ".0f"), _fmt(q.estimate_mb, ".1f"), "meta-device replay"),
        ("  measured" if r.memory_measured else "  resident added", _fmt(p.memory_mb, ".0f"), _fmt(q.memory_mb, ".1f"),
         "peak allocated" if r.memory_measured else "rough: the allocator reuses memory the process holds"),
        (f"{r.steps} steps, ms", _fmt(p.loop_ms, ".0f"), _fmt(q.loop_ms, ".0f"), ""),
        ("+ one VAE decode, ms", "—", _fmt(r.decode_ms, ".0f"),
         f"decode is {_pct(r.decode_share, '.0f')} of the latent pipeline"),
        ("end to end, ms", _fmt(p.loop_ms, ".0f"), _fmt(r.latent_pipeline_ms, ".0f"), f"{_fmt(r.end_to_end_speedup)}x"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [head, ""] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3] for row in rows]
    if r.decoder:
        lines.append(f"decoder: {r.decoder}")
    return "\n".join(lines + [f"skipped: {s}" for s in r.skipped])


def format_sweep(results: list[Comparison]) -> str:
    """one line per image side"""
    first = results[0]
    memory = "measured (estimate)" if first.memory_measured else "estimated"
    lines = [f"sweep on {first.device}, factor {first.factor}, {first.steps} steps, {first.dtype}; memory per pass "
             f"{memory}",
             f"{'N':>5} {'pixel ms':>10} {'latent ms':>10} {'speedup':>8} {'quartiles':>12} {'FLOPs x':>8} "
             f"{'attn %':>7} {'pixel MB':>14} {'latent MB':>14}"]
    for r in results:
        low, high = r.speedup_range
        mb = [f"{_fmt(s.memory_mb, '.1f')} ({_fmt(s.estimate_mb, '.1f')})" if r.memory_measured
              else _fmt(s.estimate_mb, ".1f") for s in (r.pixel, r.latent)]
        lines.append(f"{r.resolution:>5} {_fmt(r.pixel.ms_per_step):>10} {_fmt(r.latent.ms_per_step, '.2f'):>10} "
                     f"{_fmt(r.speedup):>8} {_fmt(low) + '-' + _fmt(high):>12} {_fmt(r.flops_ratio):>8} "
                     f"{_fmt(100 * r.pixel.attention_share):>7} {mb[0]:>14} {mb[1]:>14}")
        lines += [f"      skipped: {s}" for s in r.skipped]
    return "\n".join(lines)


def plot_sweep(results: list[Comparison], also: Comparison | None = None):
    """time per step, memory, and the speed-up vs the FLOPs ratio, against the image's pixels (log scales).

    Memory: the meta-device estimate, and beside it the measured peak where a pass can be isolated (CUDA); a CPU's
    resident memory cannot separate one pass from what the process holds, so a CPU sweep shows the estimate only.
    also: another run at one of the sweep's sizes (e.g. a single `compare`), drawn beside the sweep's own point.
    """
    pixels = [r.resolution**2 for r in results]
    measured = results[0].memory_measured
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for space, color, spaces in (("pixel", "C3", [r.pixel for r in results]),
                                 ("latent", "C0", [r.latent for r in results])):
        ok = [(p, s) for p, s in zip(pixels, spaces) if s.ms_per_step is not None]
        axes[0].errorbar([p for p, _ in ok], [s.ms_per_step for _, s in ok], yerr=[s.iqr_ms / 2 for _, s in ok],
                         fmt="o-", color=color, capsize=3, label=f"{space} space (median, IQR)")
        axes[1].plot(pixels, [s.estimate_mb for s in spaces], "--" if measured else "o-", color=color,
                     label=f"{space}: estimated")
        if measured:
            seen = [(p, s) for p, s in ok if s.memory_mb > 0]  # a log axis has no place for 0
            axes[1].plot([p for p, _ in seen], [s.memory_mb for _, s in seen], "o-", color=color,
                         label=f"{space}: measured peak")
    ratios = [(p, r.speedup, *r.speedup_range) for p, r in zip(pixels, results) if r.speedup is not None]
    axes[2].errorbar([p for p, *_ in ratios], [s for _, s, _, _ in ratios],
                     yerr=[[s - lo for _, s, lo, _ in ratios], [hi - s for _, s, _, hi in ratios]],
                     fmt="o-", color="C2", capsize=3, label="measured speed-up (quartile range)")
    if also is not None and also.speedup is not None:
        low, high = also.speedup_range
        axes[2].errorbar([also.resolution**2 * 1.08], [also.speedup], yerr=[[also.speedup - low], [high - also.speedup]],
                         fmt="D", color="C1", capsize=3, label=f"another run at {also.resolution}² ({also.steps} steps)")
    axes[2].plot(pixels, [r.flops_ratio for r in results], "s--", color="k", label="FLOPs ratio (theory)")
    axes[2].axhline(results[0].factor**2, color="gray", lw=1, ls=":", label=f"factor² = {results[0].factor**2}")
    memory_title = "memory per pass" + ("" if measured else ": estimated\n(a CPU cannot isolate one pass's memory)")
    titles = ("time per denoising step", memory_title, "pixel / latent")
    for ax, title, ylabel in zip(axes, titles, ("ms per step", "MB", "ratio")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(pixels, [f"{r.resolution}²" for r in results])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.01 stays 0.01, never "0.0"
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))  # plain 20, 40
        ax.set_xlabel("image pixels N²")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"the same UNet in pixel and latent space, on {results[0].device} ({results[0].dtype})")
    fig.tight_layout()
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resolution", type=int, default=512, help="image side N (the largest one with --sweep)")
    parser.add_argument("--factor", type=int, default=8, help="latent side = N / factor (Stable Diffusion: 8)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps in each space, each one timed")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1 or mps")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32", help="fp16 / bf16 on a GPU")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: the cores the CPU quota allows and other programs leave idle)")
    parser.add_argument("--no-decode", action="store_true", help="leave out the VAE decode of the latent path")
    parser.add_argument("--sweep", action="store_true", help="repeat for N = 64, 128, ... up to --resolution")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    options = dict(factor=args.factor, steps=args.steps, device=args.device, dtype=args.dtype,
                   decode=not args.no_decode)
    if args.sweep:
        results = sweep(sweep_sizes(args.resolution, args.factor), progress=not args.json, **options)
        out = {"device": results[0].device, "factor": args.factor, "steps": args.steps, "dtype": args.dtype,
               "results": [r.as_dict() for r in results]}
        print(json.dumps(out, indent=2) if args.json else format_sweep(results))
    else:
        result = compare(resolution=args.resolution, **options)
        print(json.dumps(result.as_dict(), indent=2) if args.json else format_table(result))
    return 0

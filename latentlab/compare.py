"""Pixel space vs latent space, measured: the same UNet denoising a 3 x N x N image and a 4 x N/f x N/f latent.

The claim of latent diffusion (Rombach et al. 2022, https://arxiv.org/abs/2112.10752, Sec. 3 and Table 6): a
UNet working on a latent f times smaller per side does about f^2 times less work per step, and the one VAE
decode at the end costs little next to the steps saved. `compare` measures it on this machine: time per step
(warm-up, repeats, median and spread), peak memory, FLOPs counted by PyTorch, a whole K-step DDIM loop in
each space plus the decode. `sweep` repeats it over N; `latentlab bench` is its command line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import psutil
import torch

from latentlab import bench
from latentlab.device import describe, pick_device, set_threads
from latentlab.diffusion import alphas_cumprod, make_betas
from latentlab.errors import InputError
from latentlab.unet import UNet, UNetConfig

DType = Literal["fp32", "fp16", "bf16"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

BENCH_UNET = UNetConfig(  # small but real: DDPM's layout, narrow enough that 512 x 512 pixels take seconds on a CPU
    block_out_channels=(32, 32, 64, 64),  # 4 levels: the input is halved 3 times
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),  # attention only at the
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),  # lowest resolution (and the mid block)
    layers_per_block=1,
    attention_head_dim=32,  # 2 heads of 32 channels at width 64
)


@dataclass
class Comparison:
    """one pixel-vs-latent measurement; every time is in ms, every memory in MB (10^6 bytes)"""

    device: str  # e.g. "cpu (2 threads)" or "cuda: NVIDIA H100 80GB HBM3"
    dtype: str
    resolution: int  # image side N
    factor: int  # latent side = N / factor
    steps: int  # K: denoising steps in each space (each one timed)
    pixel_shape: list[int]
    latent_shape: list[int]
    unet_parameters: int
    channels_last: bool = False  # memory layout of both spaces' tensors
    cpu_load: float | None = None  # 1-minute load average when the run started (other programs slow a CPU run)
    # per step: the median of K steps, with the spread
    pixel_ms_per_step: float | None = None
    pixel_iqr_ms: float | None = None
    pixel_min_ms: float | None = None
    pixel_max_ms: float | None = None
    latent_ms_per_step: float | None = None
    latent_iqr_ms: float | None = None
    latent_min_ms: float | None = None
    latent_max_ms: float | None = None
    speedup: float | None = None  # pixel / latent median time per step
    speedup_low: float | None = None  # pixel first quartile / latent third quartile: the pessimistic end
    speedup_high: float | None = None  # pixel third quartile / latent first quartile
    # work, counted by torch.utils.flop_counter.FlopCounterMode
    pixel_gflops: float | None = None
    latent_gflops: float | None = None
    flops_ratio: float | None = None  # the theoretical speed-up
    efficiency: float | None = None  # speedup / flops_ratio: 1.0 would be the theory exactly
    pixel_attention_share: float | None = None  # share of the FLOPs in attention's tokens^2 products
    latent_attention_share: float | None = None
    # memory the pass added above what the process held before (CUDA: allocated; CPU: resident), and the estimate
    pixel_memory_mb: float | None = None
    latent_memory_mb: float | None = None
    pixel_estimate_mb: float | None = None
    latent_estimate_mb: float | None = None
    # end to end: K steps in each space, plus the one decode the latent path needs
    decoder: str | None = None
    decode_ms: float | None = None
    decode_iqr_ms: float | None = None
    pixel_total_ms: float | None = None
    latent_total_ms: float | None = None
    latent_pipeline_ms: float | None = None  # latent_total_ms + decode_ms
    decode_share: float | None = None  # decode_ms / latent_pipeline_ms
    end_to_end_speedup: float | None = None  # pixel_total_ms / latent_pipeline_ms
    skipped: list[str] = field(default_factory=list)  # one sentence per pass that was not run, and why

    def as_dict(self) -> dict:
        return asdict(self)


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


def step_flops(resolution: int, factor: int, base: UNetConfig = BENCH_UNET) -> dict[str, float]:
    """FLOPs of one UNet forward in each space and their ratio, counted on the meta device (no data, no memory)"""
    pixel, latent = unet_cost(3, resolution, base), unet_cost(4, check_sizes(resolution, factor, base), base)
    return {
        "pixel_gflops": pixel.flops / 1e9,
        "pixel_attention_share": pixel.attention_flops / pixel.flops,
        "latent_gflops": latent.flops / 1e9,
        "latent_attention_share": latent.attention_flops / latent.flops,
        "flops_ratio": pixel.flops / latent.flops,
    }


class DDIMLoop:
    """one call = one deterministic DDIM step (Song et al. 2021, eq. 12, eta = 0): a UNet forward, then the update"""

    def __init__(self, unet: torch.nn.Module, x: torch.Tensor, steps: int, warmup: int = 0):
        acp = alphas_cumprod(make_betas("scaled_linear", beta_start=0.00085, beta_end=0.012)).tolist()  # SD's
        self.timesteps = [round(999 - i * 999 / max(steps - 1, 1)) for i in range(steps)]  # 999 ... 0
        self.alphas = [acp[t] for t in self.timesteps] + [1.0]  # alpha_bar of each step, then of the clean image
        self.unet, self.x, self.warmup, self.calls = unet, x, warmup, 0

    def __call__(self) -> torch.Tensor:
        i = max(self.calls - self.warmup, 0)  # warm-up calls run the first step and keep the sample as it was
        a, a_prev = self.alphas[i], self.alphas[i + 1]
        eps = self.unet(self.x, self.timesteps[i])  # predicted noise, shape of x
        x0 = ((self.x - (1 - a) ** 0.5 * eps) / a**0.5).clamp(-1, 1)  # clamped: an untrained UNet stays finite
        if self.calls >= self.warmup:
            self.x = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps  # x_{t-1}
        self.calls += 1
        return self.x


def course_decoder(factor: int, device: torch.device, dtype: torch.dtype = torch.float32):
    """(the course VAE, which weights it has): the shipped weights at factor 8, else its architecture untrained"""
    from latentlab.vae import VAE, VAEConfig

    if factor == 8:
        try:
            from latentlab.checkpoints import load_course_vae

            return load_course_vae(device).to(dtype), "course VAE, shipped weights"
        except InputError:  # not shipped (yet) or corrupt: time the same architecture
            pass
    widths = VAEConfig().block_out_channels
    levels = factor.bit_length()  # factor 2^L needs L + 1 resolutions
    vae = VAE(VAEConfig(block_out_channels=(widths + (widths[-1],) * levels)[:levels]))
    return vae.to(device, dtype).eval(), f"course VAE architecture (factor {factor}), untrained: same time as trained"


def quiet_threads() -> int:
    """CPU threads for timing: the cores this process may use, minus those other programs keep busy (load average)

    A thread that another program preempts makes every parallel operation wait for it: on a busy 2-core
    machine, 2 threads ran the latent step 5 times slower than 1 thread did.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(cores, cores - busy))


def _held_bytes(device: torch.device) -> int:
    """what the process holds now: CUDA allocated, or resident memory on a CPU"""
    gc.collect()
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return psutil.Process().memory_info().rss


def _time_loop(unet: torch.nn.Module, shape: tuple, steps: int, warmup: int, device: torch.device,
               dtype: torch.dtype, channels_last: bool) -> tuple[bench.Timing, float]:
    """K timed DDIM steps after `warmup` untimed ones -> (Timing of the steps, MB the loop added)"""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    held = _held_bytes(device)
    timing = bench.time_fn(DDIMLoop(unet, x, steps, warmup), warmup=warmup, repeats=steps, device=device)
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
    pixel_shape, latent_shape = (1, 3, resolution, resolution), (1, 4, side, side)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    # 1. the same UNet in both spaces: the same widths and blocks, same seed; only 3 vs 4 channels in and out
    unets = {}
    for space, channels in (("pixel", 3), ("latent", 4)):
        torch.manual_seed(0)
        unets[space] = UNet(unet_config(channels, base)).to(dev, torch_dtype, memory_format=fmt).eval()
    result = Comparison(describe(dev), dtype, resolution, factor, steps, list(pixel_shape), list(latent_shape),
                        unets["pixel"].num_parameters(), channels_last, cpu_load=load)

    # 2. work per step, counted (meta device: shapes only)
    for key, value in step_flops(resolution, factor, base).items():
        setattr(result, key, value)

    # 3. memory: estimate first, skip what would not fit, then measure
    fused = dev.type in ("cpu", "cuda")  # tiled attention kernels: no full tokens x tokens matrix
    timings: dict[str, bench.Timing] = {}
    for space, shape in (("latent", latent_shape), ("pixel", pixel_shape)):
        need = unet_cost(shape[1], shape[2], base, torch_dtype, fused).peak_bytes
        setattr(result, f"{space}_estimate_mb", need / 1e6)
        try:
            bench.check_fits(need, dev, f"{space} space at {shape[2]}x{shape[3]}x{shape[1]}")
        except bench.MemoryWontFit as err:
            result.skipped.append(str(err))
            continue
        timing, added_mb = _time_loop(unets[space], shape, steps, warmup, dev, torch_dtype, channels_last)
        setattr(result, f"{space}_ms_per_step", timing.median_ms)
        setattr(result, f"{space}_iqr_ms", timing.iqr_ms)
        setattr(result, f"{space}_min_ms", timing.min_ms)
        setattr(result, f"{space}_max_ms", timing.max_ms)
        setattr(result, f"{space}_total_ms", timing.total_ms)
        setattr(result, f"{space}_memory_mb", added_mb)
        timings[space] = timing
        if space == "latent" and decode:
            _time_decode(result, dev, torch_dtype, fmt)
        del unets[space]  # free it before the next pass

    # 4. ratios
    if result.pixel_ms_per_step and result.latent_ms_per_step:
        pixel, latent = timings["pixel"].quartiles_ms, timings["latent"].quartiles_ms
        result.speedup = result.pixel_ms_per_step / result.latent_ms_per_step
        result.speedup_low, result.speedup_high = pixel[0] / latent[1], pixel[1] / latent[0]
        result.efficiency = result.speedup / result.flops_ratio
        if result.latent_pipeline_ms:
            result.end_to_end_speedup = result.pixel_total_ms / result.latent_pipeline_ms
    return result


def _time_decode(result: Comparison, dev: torch.device, dtype: torch.dtype, fmt: torch.memory_format) -> None:
    """time the one VAE decode the latent path ends with; fills the decode fields of `result`"""
    vae, result.decoder = course_decoder(result.factor, dev, dtype)
    vae = vae.to(memory_format=fmt)
    z = torch.randn(result.latent_shape, generator=torch.Generator().manual_seed(1)).to(dev, dtype)
    z = z.contiguous(memory_format=fmt)
    need = bench.estimate_memory(vae.decoder, z.to("meta"), fused_attention=dev.type in ("cpu", "cuda"))
    try:
        bench.check_fits(need, dev, f"the VAE decode to {result.resolution}x{result.resolution}")
    except bench.MemoryWontFit as err:
        result.skipped.append(str(err))
        return
    timing = bench.time_fn(lambda: vae.decode(z), warmup=1, repeats=3, device=dev)
    result.decode_ms, result.decode_iqr_ms = timing.median_ms, timing.iqr_ms
    result.latent_pipeline_ms = result.latent_total_ms + result.decode_ms
    result.decode_share = result.decode_ms / result.latent_pipeline_ms


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


def format_table(r: Comparison) -> str:
    """a readable table of one comparison"""
    head = (f"one UNet ({r.unet_parameters / 1e6:.1f} M parameters), pixels {r.resolution}x{r.resolution}x3 vs latent "
            f"{r.latent_shape[2]}x{r.latent_shape[3]}x4 (factor {r.factor}), {r.steps} steps, {r.dtype} on {r.device}"
            + (f", load {r.cpu_load:.2f}" if r.cpu_load is not None else ""))
    rows = [
        ("", "pixel space", "latent space", "pixel / latent"),
        ("ms per step (median)", _fmt(r.pixel_ms_per_step), _fmt(r.latent_ms_per_step),
         f"{_fmt(r.speedup)}x (quartiles {_fmt(r.speedup_low)}-{_fmt(r.speedup_high)}x)"),
        ("  IQR / min / max ms", f"{_fmt(r.pixel_iqr_ms)} / {_fmt(r.pixel_min_ms)} / {_fmt(r.pixel_max_ms)}",
         f"{_fmt(r.latent_iqr_ms, '.2f')} / {_fmt(r.latent_min_ms)} / {_fmt(r.latent_max_ms)}", ""),
        ("GFLOPs per step", _fmt(r.pixel_gflops, ".2f"), _fmt(r.latent_gflops, ".3f"),
         f"{_fmt(r.flops_ratio)}x FLOPs ratio; efficiency {_fmt(r.efficiency, '.2f')}"),
        ("  attention share", _fmt(r.pixel_attention_share and 100 * r.pixel_attention_share, ".1f", "%"),
         _fmt(r.latent_attention_share and 100 * r.latent_attention_share, ".2f", "%"), ""),
        ("memory MB (estimate)", f"{_fmt(r.pixel_memory_mb, '.0f')} ({_fmt(r.pixel_estimate_mb, '.0f')})",
         f"{_fmt(r.latent_memory_mb, '.0f')} ({_fmt(r.latent_estimate_mb, '.0f')})", ""),
        (f"{r.steps} steps, ms", _fmt(r.pixel_total_ms, ".0f"), _fmt(r.latent_total_ms, ".0f"), ""),
        ("+ one VAE decode, ms", "—", _fmt(r.decode_ms, ".0f"),
         f"decode is {_fmt(r.decode_share and 100 * r.decode_share, '.0f', '%')} of the latent pipeline"),
        ("end to end, ms", _fmt(r.pixel_total_ms, ".0f"), _fmt(r.latent_pipeline_ms, ".0f"),
         f"{_fmt(r.end_to_end_speedup)}x"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [head, ""] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3] for row in rows]
    if r.decoder:
        lines.append(f"decoder: {r.decoder}")
    return "\n".join(lines + [f"skipped: {s}" for s in r.skipped])


def format_sweep(results: list[Comparison]) -> str:
    """one line per image side"""
    lines = [f"sweep on {results[0].device}, factor {results[0].factor}, {results[0].steps} steps, {results[0].dtype}",
             f"{'N':>5} {'pixel ms':>10} {'latent ms':>10} {'speedup':>8} {'FLOPs x':>8} {'attn %':>7} "
             f"{'pixel MB':>9} {'latent MB':>9}"]
    for r in results:
        share = r.pixel_attention_share and 100 * r.pixel_attention_share
        lines.append(f"{r.resolution:>5} {_fmt(r.pixel_ms_per_step):>10} {_fmt(r.latent_ms_per_step, '.2f'):>10} "
                     f"{_fmt(r.speedup):>8} {_fmt(r.flops_ratio):>8} {_fmt(share):>7} "
                     f"{_fmt(r.pixel_memory_mb, '.0f'):>9} {_fmt(r.latent_memory_mb, '.0f'):>9}")
        lines += [f"      skipped: {s}" for s in r.skipped]
    return "\n".join(lines)


def plot_sweep(results: list[Comparison]):
    """time per step, memory, and the speed-up vs the FLOPs ratio, against the image's pixels (log scales)"""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    pixels = [r.resolution**2 for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for space, color in (("pixel", "C3"), ("latent", "C0")):
        ms, iqr, mem, est = ([getattr(r, f"{space}_{key}") for r in results]
                             for key in ("ms_per_step", "iqr_ms", "memory_mb", "estimate_mb"))
        ok = [i for i, m in enumerate(ms) if m is not None]
        axes[0].errorbar([pixels[i] for i in ok], [ms[i] for i in ok], yerr=[iqr[i] / 2 for i in ok], fmt="o-",
                         color=color, capsize=3, label=f"{space} space (median, IQR)")
        seen = [i for i in ok if mem[i] > 0]  # a CPU may reuse memory it already holds: nothing added to plot
        axes[1].plot([pixels[i] for i in seen], [mem[i] for i in seen], "o-", color=color, label=f"{space}: measured")
        axes[1].plot(pixels, est, "--", color=color, alpha=0.7, label=f"{space}: estimated")
    ratios = [(p, r) for p, r in zip(pixels, results) if r.speedup is not None]
    axes[2].errorbar([p for p, _ in ratios], [r.speedup for _, r in ratios],
                     yerr=[[r.speedup - r.speedup_low for _, r in ratios], [r.speedup_high - r.speedup for _, r in ratios]],
                     fmt="o-", color="C2", capsize=3, label="measured speed-up (quartile range)")
    axes[2].plot(pixels, [r.flops_ratio for r in results], "s--", color="k", label="FLOPs ratio (theory)")
    axes[2].axhline(results[0].factor**2, color="gray", lw=1, ls=":", label=f"factor² = {results[0].factor**2}")
    titles = ("time per denoising step", "memory added by the pass", "pixel / latent")
    for ax, title, ylabel in zip(axes, titles, ("ms per step", "MB", "ratio")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(pixels, [f"{r.resolution}²" for r in results])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(ScalarFormatter())
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
                        help="CPU threads (default: the cores other programs leave idle, by the load average)")
    parser.add_argument("--sweep", action="store_true", help="repeat for N = 64, 128, ... up to --resolution")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads or quiet_threads())
    options = dict(factor=args.factor, steps=args.steps, device=args.device, dtype=args.dtype)
    if args.sweep:
        results = sweep(sweep_sizes(args.resolution, args.factor), progress=not args.json, **options)
        out = {"device": results[0].device, "factor": args.factor, "steps": args.steps, "dtype": args.dtype,
               "results": [r.as_dict() for r in results]}
        print(json.dumps(out, indent=2) if args.json else format_sweep(results))
    else:
        result = compare(resolution=args.resolution, **options)
        print(json.dumps(result.as_dict(), indent=2) if args.json else format_table(result))
    return 0

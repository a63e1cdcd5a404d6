"""Encode and decode an image file with the course VAE; write the reconstruction and a picture of its 4 latent channels.

`latentlab reconstruct photo.jpg` writes photo_recon.png and photo_recon_latent.png and prints the PSNR.
The photo is read as displayed (EXIF orientation applied, 16-bit and float images scaled), shrunk while it is
decoded when its longer side is over --max-side, repeated to RGB when grayscale, composited on white when
transparent, and center-cropped to a multiple of 8 (the VAE's factor); the command says when it changed the size.
Before any work it checks every output path and estimates the memory and time the VAE will need, refusing in one
sentence what would not fit. Sizes are width x height, as image viewers show them.
It is lessons 02-04's course VAE on the learner's own photo.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentlab.bench import available_memory, forward_cost
from latentlab.checkpoints import load_course_vae
from latentlab.device import describe, pick_device
from latentlab.errors import InputError
from latentlab.images import fit_within, image_size, load_image, psnr, to_pil
from latentlab.outputs import check_destinations, image_suffixes, write_all

MAX_SIDE = 1024  # default --max-side: 1024x683 takes ~1 GB and a few seconds on a laptop CPU
MIN_SIDE = 8  # the VAE's factor: the smallest side that still has one latent value
OVERHEAD = 1.25  # resident memory / meta-replay estimate: about 1.0 measured at 4000x3000 (docs/benchmarks.md)


def crop_to_multiple(x: torch.Tensor, factor: int = 8) -> tuple[torch.Tensor, str | None]:
    """(B, C, H, W) -> center crop with sides a multiple of factor, and a sentence saying what changed (or None)."""
    h, w = x.shape[-2:]
    th, tw = h - h % factor, w - w % factor
    if th == 0 or tw == 0:
        raise InputError(f"the image is {w}x{h} pixels; the VAE needs at least {factor} pixels on each side.")
    if (th, tw) == (h, w):
        return x, None
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw], f"center-cropped {w}x{h} to {tw}x{th} (a multiple of {factor})"


def latent_picture(z: torch.Tensor, tile: int = 256) -> Image.Image:
    """latent (1, C, h, w) -> the C channels side by side in gray, each stretched over its 1st-99th percentile."""
    channels = []
    for c in z[0].float().cpu():
        lo, hi = torch.quantile(c.flatten(), torch.tensor([0.01, 0.99])).tolist()
        channels.append(((c - lo) / max(hi - lo, 1e-6)).clamp(0, 1))
    scale = max(1, tile // max(z.shape[-2:]))  # nearest-neighbour enlargement so each latent value stays a square
    gap = torch.ones(z.shape[-2] * scale, 4)
    tiles = [c.repeat_interleave(scale, 0).repeat_interleave(scale, 1) for c in channels]
    row = torch.cat([t for pair in zip(tiles, [gap] * len(tiles)) for t in pair][:-1], dim=1)
    return Image.fromarray((row.numpy() * 255).round().astype(np.uint8), mode="L")


def estimate_memory(vae, width: int, height: int) -> int:
    """bytes the VAE round trip of one width x height image needs: a meta replay of encoder and decoder (no data)"""
    f = vae.factor
    encoder = forward_cost(vae.encoder, torch.empty(1, 3, height, width))
    decoder = forward_cost(vae.decoder, torch.empty(1, vae.config.latent_channels, height // f, width // f))
    image_bytes = 2 * 3 * height * width * 4  # the input and the reconstruction, float32
    return int(OVERHEAD * max(encoder.peak_bytes, decoder.peak_bytes) + image_bytes)


def estimate_seconds(vae, width: int, height: int, device: torch.device) -> float:
    """seconds for the round trip: its FLOPs (meta replay) at the rate of a timed 256x256 run (1024x1024 on CUDA)"""
    small_side = 1024 if device.type == "cuda" else 256
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # one thread times steadily even on a busy machine; the threads then add up
    times = []
    try:
        small = torch.zeros(1, 3, small_side, small_side, device=device)
        with torch.no_grad():
            for _ in range(3):  # the first run pays one-off set-up costs
                start = time.perf_counter()
                vae(small)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    rate = _flops(vae, small_side, small_side) / min(times[1:]) * (threads if device.type == "cpu" else 1)
    return _flops(vae, width, height) / rate


def _flops(vae, width: int, height: int) -> int:
    f = vae.factor
    return (forward_cost(vae.encoder, torch.empty(1, 3, height, width)).flops
            + forward_cost(vae.decoder, torch.empty(1, vae.config.latent_channels, height // f, width // f)).flops)


def reconstruct_file(image: str | Path, out: str | Path | None = None, max_side: int = MAX_SIDE,
                     device: str | None = None, overwrite: bool = False, report=None) -> dict:
    """image file -> course VAE encode (posterior mean) + decode -> writes reconstruction and latent PNGs; a summary.

    Args:
        image: the image file.
        out: the reconstruction's path (default IMAGE_recon.png); its latent picture goes to OUT_latent.png.
        max_side: shrink larger images (while decoding) so the longer side is at most this.
        device: "cpu", "cuda", "mps" or None for the best available.
        overwrite: replace existing output files instead of refusing.
        report: called with one sentence (the size, memory and time estimate) before the work starts.
    """
    image = Path(image)
    if not isinstance(max_side, int) or max_side < MIN_SIDE:
        raise InputError(f"max_side must be a whole number of at least {MIN_SIDE} pixels, not {max_side!r}; "
                         f"e.g. {MAX_SIDE}.")
    out = Path(out) if out is not None else image.with_name(f"{image.stem}_recon.png")
    latent_path = out.with_name(f"{out.stem}_latent.png")
    width, height = image_size(image)  # the header only: nothing decoded yet; InputError if missing or unreadable
    check_destinations([out, latent_path], inputs=[image], overwrite=overwrite, suffixes=image_suffixes())
    dev = pick_device(device)
    vae = load_course_vae(dev)
    shrunk = fit_within(width, height, max_side)
    size = (shrunk[0] - shrunk[0] % vae.factor, shrunk[1] - shrunk[1] % vae.factor)
    if min(size) == 0:
        raise InputError(f"{image.name} is {width}x{height} pixels, which becomes {shrunk[0]}x{shrunk[1]} with "
                         f"--max-side {max_side}; the VAE needs at least {vae.factor} pixels on each side.")
    need, free = estimate_memory(vae, *size), available_memory(dev)
    if need > 0.9 * free:
        fits = max(MIN_SIDE * 8, int(max(size) * (0.9 * free / need) ** 0.5) // 64 * 64)
        raise InputError(f"reconstructing {size[0]}x{size[1]} needs about {need / 1e9:.1f} GB but {free / 1e9:.1f} "
                         f"GB is free on {describe(dev)}; use a smaller --max-side, e.g. {fits}.")
    with _memory_errors(size, dev):
        seconds = estimate_seconds(vae, *size, dev)
    if report is not None:
        report(f"reconstructing {size[0]}x{size[1]} on {describe(dev)}: about {need / 1e9:.1f} GB and "
               f"{_duration(seconds)}")
    x = load_image(image, max_side=max_side)  # (1, 3, H, W) in [-1, 1]; checked against free memory first
    resized = f"resized {width}x{height} to {shrunk[0]}x{shrunk[1]} (--max-side {max_side})" if shrunk != (
        width, height) else None
    x, cropped = crop_to_multiple(x, vae.factor)
    start = time.perf_counter()
    with _memory_errors(size, dev), torch.no_grad():
        z = vae.encode(x).mode()  # (1, 4, H/8, W/8)
        recon = vae.decode(z).clamp(-1, 1).cpu()  # (1, 3, H, W)
    elapsed = time.perf_counter() - start
    write_all({out: lambda path: to_pil(recon).save(path), latent_path: lambda path: latent_picture(z).save(path)})
    return {
        "image": str(image),
        "input_size": [width, height],  # width x height, as displayed
        "size": [x.shape[-1], x.shape[-2]],  # width x height the VAE saw
        "changes": [c for c in (resized, cropped) if c],
        "reconstruction": str(out),
        "latent_image": str(latent_path),
        "latent_shape": list(z.shape),  # (1, 4, H/8, W/8): a tensor's shape, height before width
        "compression": round(x[0].numel() / z[0].numel(), 3),  # 48.0: 3 H W pixel values per 4 H/8 W/8 latent values
        "psnr": round(psnr(recon, x).item(), 3),
        "device": describe(torch.device(z.device)),
        "estimate": {"memory_gb": float(f"{need / 1e9:.3g}"), "seconds": float(f"{seconds:.3g}")},  # 3 digits
        "seconds": round(elapsed, 2),
    }


@contextmanager
def _memory_errors(size: tuple[int, int], device: torch.device):
    """torch's or Python's out-of-memory errors -> one sentence with a smaller --max-side"""
    try:
        yield
    except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
        if isinstance(err, RuntimeError) and "memory" not in str(err).lower():
            raise
        raise InputError(f"ran out of memory reconstructing {size[0]}x{size[1]} on {describe(device)}; use a smaller "
                         f"--max-side, e.g. {max(MIN_SIDE, max(size) // 2 // 64 * 64)}.") from None


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} minutes"


def max_side_type(text: str) -> int:
    """argparse type for --max-side: a whole number of at least MIN_SIDE pixels"""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pixels (e.g. {MAX_SIDE})") from None
    if value < MIN_SIDE:
        raise argparse.ArgumentTypeError(f"{value} is too small: the VAE needs at least {MIN_SIDE} pixels a side "
                                         f"(e.g. {MAX_SIDE})")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="an image file (PNG, JPEG, ...); grayscale becomes RGB, transparency white")
    parser.add_argument("--out", default=None, help="reconstruction path (default: IMAGE_recon.png beside the image)")
    parser.add_argument("--max-side", type=max_side_type, default=MAX_SIDE,
                        help=f"shrink larger images to this longer side while loading (default {MAX_SIDE})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of sentences")


def run(args: argparse.Namespace) -> int:
    report = None if args.json else (lambda sentence: print(sentence, flush=True))
    summary = reconstruct_file(args.image, args.out, args.max_side, args.device, args.overwrite, report)
    if args.json:
        print(json.dumps(summary))
        return 0
    for change in summary["changes"]:
        print(f"note: {change}")
    w, h = summary["size"]
    print(f"{summary['image']}: {w}x{h} pixels x 3 = {3 * h * w:,} values -> latent {tuple(summary['latent_shape'])} "
          f"({summary['compression']:g}x fewer) -> PSNR {summary['psnr']:.2f} dB on {summary['device']} "
          f"in {summary['seconds']:.1f} s")
    print(f"wrote {summary['reconstruction']} and {summary['latent_image']}")
    return 0

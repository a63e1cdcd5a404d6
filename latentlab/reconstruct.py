"""Encode and decode an image file with the course VAE; write the reconstruction and a picture of its 4 latent channels.

`latentlab reconstruct photo.jpg` writes photo_recon.png and photo_recon_latent.png and prints the PSNR.
Grayscale images are repeated to RGB, transparency is composited on white, and sides that are not a
multiple of 8 are center-cropped to one (the VAE's factor); the command says when it did either.
It is lessons 02-04's course VAE on the learner's own photo.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentlab.checkpoints import load_course_vae
from latentlab.device import describe, pick_device
from latentlab.errors import InputError
from latentlab.images import load_image, psnr, resize, to_pil


def crop_to_multiple(x: torch.Tensor, factor: int = 8) -> tuple[torch.Tensor, str | None]:
    """(B, C, H, W) -> center crop with sides a multiple of factor, and a sentence saying what changed (or None)."""
    h, w = x.shape[-2:]
    th, tw = h - h % factor, w - w % factor
    if th == 0 or tw == 0:
        raise InputError(f"the image is {h}x{w} pixels; the VAE needs at least {factor} pixels on each side.")
    if (th, tw) == (h, w):
        return x, None
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw], f"center-cropped {h}x{w} to {th}x{tw} (a multiple of {factor})"


def shrink_to(x: torch.Tensor, max_side: int) -> tuple[torch.Tensor, str | None]:
    """(B, C, H, W) -> resized so the longer side is at most max_side, and a sentence saying so (or None)."""
    h, w = x.shape[-2:]
    if max(h, w) <= max_side:
        return x, None
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize(x, size), f"resized {h}x{w} to {size[0]}x{size[1]} (--max-side {max_side})"


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


def reconstruct_file(
    image: str | Path, out: str | Path | None = None, max_side: int = 1024, device: str | None = None
) -> dict:
    """image file -> course VAE encode (posterior mean) + decode -> writes reconstruction and latent PNGs; a summary."""
    image = Path(image)
    x = load_image(image)  # (1, 3, H, W) in [-1, 1]; InputError if missing or unreadable
    input_size = list(x.shape[-2:])
    vae = load_course_vae(pick_device(device))
    x, resized = shrink_to(x, max_side)
    x, cropped = crop_to_multiple(x, vae.factor)
    with torch.no_grad():
        z = vae.encode(x).mode()  # (1, 4, H/8, W/8)
        recon = vae.decode(z).clamp(-1, 1).cpu()  # (1, 3, H, W)
    out = Path(out) if out is not None else image.with_name(f"{image.stem}_recon.png")
    latent_path = out.with_name(f"{out.stem}_latent.png")
    try:
        to_pil(recon).save(out)
        latent_picture(z).save(latent_path)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot write {out} ({err}); choose another --out path ending in .png.") from None
    return {
        "image": str(image),
        "input_size": input_size,
        "size": list(x.shape[-2:]),
        "changes": [c for c in (resized, cropped) if c],
        "reconstruction": str(out),
        "latent_image": str(latent_path),
        "latent_shape": list(z.shape),
        "compression": round(x[0].numel() / z[0].numel(), 3),  # 48.0: 3 H W pixel values per 4 H/8 W/8 latent values
        "psnr": round(psnr(recon, x).item(), 3),
        "device": describe(torch.device(z.device)),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="an image file (PNG, JPEG, ...); grayscale becomes RGB, transparency white")
    parser.add_argument("--out", default=None, help="reconstruction path (default: IMAGE_recon.png beside the image)")
    parser.add_argument("--max-side", type=int, default=1024, help="shrink larger images to this longer side first")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of sentences")


def run(args: argparse.Namespace) -> int:
    summary = reconstruct_file(args.image, args.out, args.max_side, args.device)
    if args.json:
        print(json.dumps(summary))
        return 0
    for change in summary["changes"]:
        print(f"note: {change}")
    h, w = summary["size"]
    print(f"{summary['image']}: {h}x{w}x3 = {3 * h * w:,} values -> latent {tuple(summary['latent_shape'])} "
          f"({summary['compression']:g}x fewer) -> PSNR {summary['psnr']:.2f} dB on {summary['device']}")
    print(f"wrote {summary['reconstruction']} and {summary['latent_image']}")
    return 0

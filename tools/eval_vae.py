"""Held-out reconstruction quality of the course VAE against baselines that keep as many numbers as its latent.

    .venv/bin/python tools/eval_vae.py                    # the shipped VAE, prints the table
    .venv/bin/python tools/eval_vae.py --write-manifest   # ... and stores the numbers in latentlab/weights/vae.json
    .venv/bin/python tools/eval_vae.py --weights run/vae.safetensors   # a checkpoint from `latentlab train vae`

`latentlab eval vae` (latentlab/evaluate.py) is the fuller evaluation of issue 12: validation photos, test photos that
no recipe chose by, and a colour chart. This script stays for the manifest's "heldout" record.

Also printed, not part of the target: VAE and bicubic on six greyscale photos of scikit-image that no run trained
on and no recipe choice looked at (the held-out photos also served to choose recipes; see docs/vae.md).

Baselines (latentlab.baselines): bicubic down/up-sampling to 4 * (H/8) * (W/8) values (side scale 1/sqrt(48)),
and PCA on 8x8x3 patches keeping 4 components, fitted on training crops. The target: the VAE at least 2 dB
above bicubic and above PCA, on the held-out photos (never trained on) at 256x256. Exit status 1 if missed.
"""

import argparse
import json
import sys
import time

import torch

from latentlab.baselines import bicubic_roundtrip, latent_values
from latentlab.checkpoints import (
    WEIGHTS_DIR,
    course_manifest,
    sha256_file,
    write_manifest,
)
from latentlab.data import CHECK_PHOTOS, HELDOUT_PHOTOS, heldout_images, load_photo
from latentlab.device import set_threads
from latentlab.evaluate import fit_pca, load_vae
from latentlab.images import psnr
from latentlab.vae import VAE

MARGIN_DB = 2.0  # the VAE must beat bicubic by this much


def evaluate(vae: VAE, size: int = 256, pca_crops: int = 1024, seed: int = 0) -> dict:
    """PSNR (dB) per held-out image of the VAE, bicubic and patch PCA, all keeping the same number of values"""
    images = heldout_images(size)  # (N, 3, size, size)
    keep = latent_values(size, size, vae.factor, vae.config.latent_channels)
    with torch.no_grad():
        recon = vae(images).clamp(-1, 1)  # posterior mean, decoded
    pca = fit_pca(vae.factor, vae.config.latent_channels, pca_crops, seed)
    rows = {
        "vae": psnr(recon, images),
        "bicubic": psnr(bicubic_roundtrip(images, keep), images),
        "pca": psnr(pca.roundtrip(images), images),
    }
    return {
        "images": list(HELDOUT_PHOTOS),
        "size": size,
        "values_kept": keep,
        "values_in_image": 3 * size * size,
        "pca_fit": f"PatchPCA({vae.factor}, {vae.config.latent_channels}) on {pca_crops} training crops of 64x64",
        "psnr_db": {name: [round(v, 2) for v in values.tolist()] for name, values in rows.items()},
        "mean_psnr_db": {name: round(values.mean().item(), 2) for name, values in rows.items()},
    }


def untouched_check(vae: VAE, size: int = 256) -> dict:
    """PSNR (dB) of the VAE and of bicubic on data.CHECK_PHOTOS (grey, so R = G = B), side by side"""
    photos = torch.cat([load_photo(name, size) for name in CHECK_PHOTOS])
    keep = latent_values(size, size, vae.factor, vae.config.latent_channels)
    with torch.no_grad():
        recon = vae(photos).clamp(-1, 1)
    rows = {"vae": psnr(recon, photos), "bicubic": psnr(bicubic_roundtrip(photos, keep), photos)}
    return {
        "images": list(CHECK_PHOTOS),
        "size": size,
        "psnr_db": {name: [round(v, 2) for v in values.tolist()] for name, values in rows.items()},
        "mean_psnr_db": {name: round(values.mean().item(), 2) for name, values in rows.items()},
    }


def table(result: dict) -> str:
    names = result["images"]
    lines = [f"held-out photos at {result['size']}x{result['size']}: every method keeps {result['values_kept']:,} of "
             f"{result['values_in_image']:,} values ({result['values_in_image'] / result['values_kept']:g}x fewer)",
             f"{'method':<10}" + "".join(f"{n:>10}" for n in names) + f"{'mean':>10}"]
    for method, values in result["psnr_db"].items():
        lines.append(f"{method:<10}" + "".join(f"{v:>10.2f}" for v in values)
                     + f"{result['mean_psnr_db'][method]:>10.2f}")
    return "\n".join(lines)


def verdict(result: dict) -> tuple[bool, str]:
    m = result["mean_psnr_db"]
    over_bicubic, over_pca = m["vae"] - m["bicubic"], m["vae"] - m["pca"]
    ok = over_bicubic >= MARGIN_DB and over_pca > 0
    return ok, (f"VAE - bicubic = {over_bicubic:+.2f} dB (target >= +{MARGIN_DB:g}), VAE - PCA = {over_pca:+.2f} dB "
                f"(target > 0): {'target met' if ok else 'TARGET MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a checkpoint from `latentlab train vae` (default: the shipped VAE)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--pca-crops", type=int, default=1024, help="training crops the PCA is fitted on")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--write-manifest", action="store_true", help="store the result in the shipped manifest")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    set_threads(args.threads)
    start = time.perf_counter()
    vae = load_vae(args.weights)
    result = evaluate(vae, args.size, args.pca_crops)
    ok, line = verdict(result)
    result["target_met"] = ok
    check = untouched_check(vae, args.size)
    m = check["mean_psnr_db"]
    check_line = (f"untouched greyscale photos ({', '.join(CHECK_PHOTOS)}), not part of the target: VAE {m['vae']:.2f} dB, "
                  f"bicubic {m['bicubic']:.2f} dB, VAE - bicubic = {m['vae'] - m['bicubic']:+.2f} dB")
    result["untouched"] = check
    print(json.dumps(result) if args.json
          else f"{table(result)}\n{line}\n{check_line}\n({time.perf_counter() - start:.0f} s)")
    if args.write_manifest:
        if args.weights is not None:
            sys.exit("--write-manifest only updates the shipped VAE's manifest; drop --weights.")
        manifest = course_manifest("vae")
        assert manifest["sha256"] == sha256_file(WEIGHTS_DIR / "vae.safetensors")
        manifest["heldout"] = {**result, "command": "python tools/eval_vae.py --write-manifest"}
        write_manifest(WEIGHTS_DIR / "vae.json", manifest)
        print(f"wrote the held-out metrics into {WEIGHTS_DIR / 'vae.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

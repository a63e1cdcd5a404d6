"""Evaluate the course VAE: validation photos, test photos and a colour chart, beside bicubic and PCA (lessons 02 and 04).

`latentlab eval vae` reconstructs every image of three disjoint parts (photosets: validation chooses recipes, test
only reports; chart: a generated colour chart) and, at the same number of values as the latent keeps, bicubic
down/up-sampling and patch PCA (latentlab.baselines). Per image: PSNR of each, and the VAE's mean colour error per
channel; per ColorChecker patch: the largest channel error of its mean colour. It prints a table and the
"done means" criteria of issue 12, and writes a figure (original / VAE / bicubic); `--json` prints one object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from latentlab.baselines import PatchPCA, bicubic_roundtrip, latent_values
from latentlab.chart import COLORCHECKER, COLUMNS, colour_chart, patch_errors
from latentlab.checkpoints import course_weights, load_checkpoint, read_checkpoint
from latentlab.data import PhotoCrops
from latentlab.device import set_threads
from latentlab.errors import InputError
from latentlab.images import psnr, to_numpy
from latentlab.photosets import SPLITS as PHOTO_SPLITS
from latentlab.photosets import split_images
from latentlab.vae import VAE, VAEConfig

# issue 12's "done means", in 0..255 units and dB
PATCH_MAX_ERROR = 6.0  # every ColorChecker patch's mean colour within this, per channel
PATCH_MEAN_ERROR = 3.0  # the patches' errors (largest channel each) averaged
HUE_SWEEP_MARGIN_DB = -1.0  # hue sweep PSNR at least bicubic's plus this
TEST_EACH_OVER_BICUBIC_DB = 1.5  # every test photo at least this far above bicubic (and above PCA)
TEST_MEAN_OVER_BICUBIC_DB = 2.0  # and on average this far
TEST_COLOUR_ERROR = 3.0  # every test photo's mean colour error within this, per channel
PCA_CROP_SCALE = (0.125, 0.25)  # PCA is fitted on 64x64 crops of 64-128 px regions of the training photos
SPLITS = ("validation", "test", "check")

Reconstruct = Callable[[torch.Tensor], torch.Tensor]  # images (B, 3, H, W) in [-1, 1] -> reconstructions


def load_vae(weights: str | Path | None = None):
    """the shipped course VAE, or a checkpoint from `latentlab train vae` (its metadata holds the config)"""
    if weights is None:
        path, manifest = course_weights("vae")
        config = manifest["config"]
    else:
        path = Path(weights)
        metadata = read_checkpoint(path)[1]
        if "config" not in metadata:
            raise InputError(f"{path} holds no VAE config in its metadata; give a checkpoint from `latentlab train vae`.")
        config = json.loads(metadata["config"])
    vae = VAE(VAEConfig(**config))
    load_checkpoint(path, vae)
    return vae.eval()


def vae_reconstruct(vae, batch_size: int = 4) -> Reconstruct:
    """a VAE -> a function images -> decoded posterior means, clamped to [-1, 1], in batches, without gradients"""
    @torch.no_grad()
    def reconstruct(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([vae(x).clamp(-1, 1).cpu() for x in images.split(batch_size)])
    return reconstruct


def fit_pca(factor: int, latent_channels: int, crops: int = 1024, seed: int = 0) -> PatchPCA:
    """patch PCA keeping as many values as the latent, fitted on training crops only"""
    data = PhotoCrops(size=64, split="train", length=crops, seed=seed, scale=PCA_CROP_SCALE)
    return PatchPCA(patch_size=factor, n_components=latent_channels).fit(torch.stack([data[i] for i in range(crops)]))


def colour_error(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pair -> (B, 3) mean signed error per channel, in 0..255 units (+: too much of that channel)"""
    return (recon.float() - images.float()).mean((-1, -2)) * 127.5


def _rows(names, images, recon, pca: PatchPCA, factor: int, latent_channels: int) -> tuple[list[dict], torch.Tensor]:
    keep = latent_values(images.shape[-2], images.shape[-1], factor, latent_channels)
    bicubic = bicubic_roundtrip(images, keep)
    scores = {"vae": psnr(recon, images), "bicubic": psnr(bicubic, images), "pca": psnr(pca.roundtrip(images), images)}
    errors = colour_error(recon, images)
    rows = [{"image": name, "size": list(images.shape[-2:]), "values_kept": keep,
             "psnr_db": {k: round(v[i].item(), 2) for k, v in scores.items()},
             "colour_error": [round(e, 2) for e in errors[i].tolist()]} for i, name in enumerate(names)]
    return rows, bicubic


def evaluate(
    reconstruct: Reconstruct,
    factor: int = 8,
    latent_channels: int = 4,
    size: int = 256,
    pca_crops: int = 1024,
    seed: int = 0,
    splits: tuple[str, ...] = SPLITS,
    keep_images: bool = False,
) -> dict:
    """Every image of the photo splits and the chart through `reconstruct`, bicubic and patch PCA -> a result dict.

    Args:
        reconstruct: images (B, 3, H, W) in [-1, 1] -> reconstructions of the same shape (see vae_reconstruct).
        factor, latent_channels: the latent's geometry, which sets how many values the baselines may keep.
        size: photos are resized and center-cropped to size x size; the chart is 256 x 384.
        keep_images: also return the images, reconstructions and bicubic versions (for the figure) under "_images".
    """
    pca = fit_pca(factor, latent_channels, pca_crops, seed)
    result: dict = {"size": size, "factor": factor, "latent_channels": latent_channels,
                    "pca_fit": f"PatchPCA({factor}, {latent_channels}) on {pca_crops} training crops of 64x64"}
    pictures = []
    for split in splits:
        images = split_images(split, size)
        recon = reconstruct(images)
        rows, bicubic = _rows(PHOTO_SPLITS[split], images, recon, pca, factor, latent_channels)
        result[split] = rows
        if split != "check":
            pictures += [(f"{split}: {n}", images[i], recon[i], bicubic[i]) for i, n in enumerate(PHOTO_SPLITS[split])]
    chart = colour_chart()
    images = torch.cat(list(chart.values()))
    recon = reconstruct(images)
    result["chart"], bicubic = _rows(list(chart), images, recon, pca, factor, latent_channels)
    pictures += [(f"chart: {n}", images[i], recon[i], bicubic[i]) for i, n in enumerate(chart)]
    errors = patch_errors(recon[:1])  # (24, 3)
    worst = errors.abs().amax(1)  # (24,) largest channel error of each patch
    result["colorchecker"] = {
        "patch_error": {name: round(e, 2) for (name, _), e in zip(COLORCHECKER, worst.tolist())},
        "patch_error_rgb": {name: [round(v, 1) for v in e] for (name, _), e in zip(COLORCHECKER, errors.tolist())},
        "mean": round(worst.mean().item(), 2),
        "worst": round(worst.max().item(), 2),
        "worst_patch": COLORCHECKER[int(worst.argmax())][0],
    }
    result["criteria"] = criteria(result)
    if keep_images:
        result["_images"] = pictures
    return result


def criteria(result: dict) -> list[dict]:
    """issue 12's "done means", each {"name", "value", "target", "ok"}, for the parts of result that are present"""
    out = []

    def add(name, value, target, ok):
        out.append({"name": name, "value": value, "target": target, "ok": bool(ok)})

    cc = result["colorchecker"]
    add("ColorChecker worst patch (/255)", cc["worst"], f"<= {PATCH_MAX_ERROR:g}", cc["worst"] <= PATCH_MAX_ERROR)
    add("ColorChecker mean patch (/255)", cc["mean"], f"<= {PATCH_MEAN_ERROR:g}", cc["mean"] <= PATCH_MEAN_ERROR)
    sweep = next(r for r in result["chart"] if r["image"] == "hue_sweep")["psnr_db"]
    margin = round(sweep["vae"] - sweep["bicubic"], 2)
    add("hue sweep: VAE - bicubic (dB)", margin, f">= {HUE_SWEEP_MARGIN_DB:g}", margin >= HUE_SWEEP_MARGIN_DB)
    if "test" in result:
        over = [r["psnr_db"]["vae"] - r["psnr_db"]["bicubic"] for r in result["test"]]
        add("test: every photo VAE - bicubic (dB)", round(min(over), 2), f">= {TEST_EACH_OVER_BICUBIC_DB:g}",
            min(over) >= TEST_EACH_OVER_BICUBIC_DB)
        add("test: mean VAE - bicubic (dB)", round(sum(over) / len(over), 2), f">= {TEST_MEAN_OVER_BICUBIC_DB:g}",
            sum(over) / len(over) >= TEST_MEAN_OVER_BICUBIC_DB)
        over_pca = min(r["psnr_db"]["vae"] - r["psnr_db"]["pca"] for r in result["test"])
        add("test: every photo VAE - PCA (dB)", round(over_pca, 2), "> 0", over_pca > 0)
        cast = max(abs(e) for r in result["test"] for e in r["colour_error"])
        add("test: worst mean colour error (/255)", round(cast, 2), f"<= {TEST_COLOUR_ERROR:g}", cast <= TEST_COLOUR_ERROR)
    if "check" in result:
        lead = sum(r["psnr_db"]["vae"] - r["psnr_db"]["bicubic"] for r in result["check"]) / len(result["check"])
        add("greyscale check: mean VAE - bicubic (dB)", round(lead, 2), "> 0", lead > 0)
    return out


def table(result: dict) -> str:
    """the result as text: one line per image, the ColorChecker patches as on the chart, then the criteria"""
    lines = [f"{'part':<11}{'image':<14}{'VAE':>7}{'bicubic':>9}{'PCA':>7}{'VAE-bic':>9}   colour error R/G/B (/255)"]
    for part in (*SPLITS, "chart"):
        for row in result.get(part, []):
            p = row["psnr_db"]
            error = " ".join(f"{e:+6.1f}" for e in row["colour_error"])
            lines.append(f"{part:<11}{row['image']:<14}{p['vae']:>7.2f}{p['bicubic']:>9.2f}{p['pca']:>7.2f}"
                         f"{p['vae'] - p['bicubic']:>+9.2f}   {error}")
    cc = result["colorchecker"]
    lines.append(f"\nColorChecker: largest channel error of each patch's mean colour (/255), laid out as on the chart; "
                 f"mean {cc['mean']:.1f}, worst {cc['worst']:.1f} ({cc['worst_patch']})")
    values = list(cc["patch_error"].values())
    for start in range(0, len(values), COLUMNS):
        lines.append("  " + "".join(f"{v:7.1f}" for v in values[start : start + COLUMNS]))
    lines.append("\nDone means (issue 12):")
    for c in result["criteria"]:
        lines.append(f"  [{'ok' if c['ok'] else 'MISSED'}] {c['name']}: {c['value']:g} (target {c['target']})")
    return "\n".join(lines)


def figure(pictures: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]], path: str | Path) -> Path:
    """rows of (title, original, VAE, bicubic) -> one PNG with the three side by side"""
    import matplotlib  # lazy: only the command draws this figure, with Agg so it needs no display

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy, after the backend is chosen

    path = Path(path)
    fig, axes = plt.subplots(len(pictures), 3, figsize=(10, 2.8 * len(pictures)), squeeze=False)
    for row, (title, *images) in zip(axes, pictures):
        for ax, image, label in zip(row, images, ("original", "VAE", "bicubic, same values")):
            ax.imshow(to_numpy(image))
            ax.set_title(f"{title} — {label}" if label == "original" else label, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=72)
    except OSError as err:
        raise InputError(f"cannot write the figure to {path} ({err.strerror}); choose another --figure path.") from None
    finally:
        plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=["vae"], help="what to evaluate (the course VAE)")
    parser.add_argument("--weights", default=None, help="a checkpoint from `latentlab train vae` (default: the shipped VAE)")
    parser.add_argument("--size", type=int, default=256, help="photos are resized and center-cropped to this side")
    parser.add_argument("--pca-crops", type=int, default=1024, help="training crops the patch PCA is fitted on")
    parser.add_argument("--figure", default="vae_eval.png", help="where the figure goes (PNG)")
    parser.add_argument("--no-figure", action="store_true", help="write no figure")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if a criterion is missed")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    if args.size < 8 or args.size % 8:
        raise InputError(f"--size {args.size} must be a positive multiple of 8 (the VAE's factor), e.g. 256.")
    set_threads(args.threads)
    start = time.perf_counter()
    vae = load_vae(args.weights)
    result = evaluate(vae_reconstruct(vae), vae.factor, vae.config.latent_channels, args.size, args.pca_crops,
                      splits=SPLITS, keep_images=not args.no_figure)
    result["weights"] = str(args.weights or "shipped course VAE (latentlab/weights/vae.safetensors)")
    if not args.no_figure:
        result["figure"] = str(figure(result.pop("_images"), args.figure))
    result["wall_time_s"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result))
    else:
        fewer = 3 * vae.factor**2 / vae.config.latent_channels
        print(f"{result['weights']}: photos at {args.size}x{args.size}, chart at 256x384; bicubic and PCA keep as many "
              f"values as the latent ({fewer:g}x fewer than the image)\n")
        print(table(result))
        if "figure" in result:
            print(f"\nwrote {result['figure']} ({result['wall_time_s']:.0f} s)")
    missed = [c for c in result["criteria"] if not c["ok"]]
    return 1 if args.strict and missed else 0

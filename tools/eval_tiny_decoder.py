"""The tiny decoder against the course VAE's decoder: time per decode, PSNR, and the ColorChecker (issue 17).

    .venv/bin/python tools/eval_tiny_decoder.py                       # the shipped tiny_decoder, a table
    .venv/bin/python tools/eval_tiny_decoder.py --weights run.safetensors --json
    .venv/bin/python tools/eval_tiny_decoder.py --write-manifest      # store the numbers in tiny_decoder.json
    .venv/bin/python tools/eval_tiny_decoder.py --weights a.safetensors --choose   # validation and chart only

Time: one decode of a latent of a 256x256 and a 512x512 image on one CPU thread, the linear 4 -> 3 map, the tiny
decoder and the full decoder, each the median of --repeats after a warm-up (latentlab.bench.time_fn); the speed-up is
the median ratio of --repeats pairs of blocks (five full decodes, then five tiny ones), so load that comes and goes
moves both sides of each ratio (separate medians moved it from 4.7x to 6.2x between runs on an idle machine). Quality, on
the validation photos (which chose the recipe) and on the test photos (only reported), 256x256: PSNR of each decode
against the original photo, and of the tiny decode against the full decode. Chart: the ColorChecker's patch colours,
each patch's largest channel error against the published colour and against the full decode (/255), and the same
tiny-vs-full error on four validation charts of random colours (tools/colour_validation.py). The done-means
of issue 17 are printed at the end; the tool exits 1 if one is missed. `--choose` leaves out the test photos and
the criteria: what docs/tiny-decoder.md compared candidate runs by.
"""

import argparse
import json
import statistics
import sys

import torch
from colour_validation import random_charts  # tools/: the validation charts that choose recipes

from latentlab.bench import time_fn
from latentlab.chart import COLORCHECKER, colorchecker, patch_colours, patch_errors
from latentlab.checkpoints import (
    WEIGHTS_DIR,
    course_weights,
    load_checkpoint,
    load_course_vae,
    read_checkpoint,
    write_manifest,
)
from latentlab.data import TRAIN_PHOTOS, load_photo
from latentlab.device import set_threads
from latentlab.images import psnr
from latentlab.photosets import split_images
from latentlab.previews import LinearPreview
from latentlab.tiny_decoder import TinyDecoder, TinyDecoderConfig

SPEEDUP = 5.0  # at 256x256 on one thread, tiny against full
PSNR_GAP_DB = 2.0  # on the test photos, tiny against originals within this of the full decode against originals
PATCH_ERROR = 10.0  # every ColorChecker patch of the tiny decode within this of the full decode's, per channel


def load_tiny(path: str | None) -> TinyDecoder:
    if path is None:
        path = course_weights("tiny_decoder")[0]
    config = json.loads(read_checkpoint(path)[1]["config"])
    model = TinyDecoder(TinyDecoderConfig(**config))
    load_checkpoint(path, model)
    return model.eval()


def decoders(vae, tiny) -> dict:
    """the three previews, each latent -> image, clamped to [-1, 1]"""
    linear = LinearPreview.fit(vae, torch.cat([load_photo(name, 256) for name in TRAIN_PHOTOS]))
    return {"linear": lambda z: linear.decode(z), "tiny": lambda z: tiny.decode(z).clamp(-1, 1),
            "full": lambda z: vae.decode(z).clamp(-1, 1)}


def patch_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """two decodes of a chart -> each patch's largest channel difference of their mean colours (/255)"""
    return (patch_colours(a) - patch_colours(b)).abs().amax(1)


def paired_speedup(full, tiny, z: torch.Tensor, repeats: int, block: int = 5) -> dict:
    """full / tiny time per decode of z, measured `repeats` times as a block of full decodes right before a block of
    tiny ones (each the median of `block` calls after one warm-up) -> median and quartiles of the ratios. A block keeps
    each decoder's caches warm, as the slider's repeated previews do; a load that comes and goes slows both blocks of
    a pair, so the ratio holds where two medians taken minutes apart would not"""
    ratios = []
    for _ in range(repeats):
        pair = [time_fn(lambda f=f: f(z), warmup=1, repeats=block, device="cpu").median_ms for f in (full, tiny)]
        ratios.append(pair[0] / pair[1])
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return {"median": round(median, 2), "q1": round(q1, 2), "q3": round(q3, 2), "pairs": repeats, "block": block}


@torch.no_grad()
def measure(vae, tiny, repeats: int = 15, splits: tuple[str, ...] = ("validation", "test")) -> dict:
    set_threads(1)
    ways = decoders(vae, tiny)
    result: dict = {"threads": 1, "time_ms": {}, "psnr_db": {}}
    for side in (256, 512):
        z = vae.encode(load_photo("chelsea", side)).mode()
        result["time_ms"][side] = {name: round(time_fn(lambda f=f, z=z: f(z), warmup=2, repeats=repeats, device="cpu")
                                               .median_ms, 2) for name, f in ways.items()}
    z = vae.encode(load_photo("chelsea", 256)).mode()
    result["speedup_256"] = paired_speedup(ways["full"], ways["tiny"], z, repeats)
    for split in splits:
        photos = split_images(split, 256)
        z = vae.encode(photos).mode()
        out = {name: f(z) for name, f in ways.items()}
        result["psnr_db"][split] = {
            **{f"{name}_vs_photos": [round(v, 2) for v in psnr(x, photos).tolist()] for name, x in out.items()},
            "tiny_vs_full": [round(v, 2) for v in psnr(out["tiny"], out["full"]).tolist()]}
    z = vae.encode(colorchecker()).mode()
    full, small = ways["full"](z), ways["tiny"](z)
    names = [name for name, _ in COLORCHECKER]
    result["chart"] = {
        "full_vs_published": dict(zip(names, [round(v, 1) for v in patch_errors(full).abs().amax(1).tolist()])),
        "tiny_vs_published": dict(zip(names, [round(v, 1) for v in patch_errors(small).abs().amax(1).tolist()])),
        "tiny_vs_full": dict(zip(names, [round(v, 1) for v in patch_gap(small, full).tolist()])),
    }
    errors = torch.cat([patch_gap(ways["tiny"](z), ways["full"](z))
                        for z in (vae.encode(image).mode() for _, image in random_charts())])
    result["validation_charts_tiny_vs_full"] = {
        "mean": round(errors.mean().item(), 2), "p90": round(errors.quantile(0.9).item(), 2),
        "worst": round(errors.max().item(), 2), "patches_over_10": f"{int((errors > PATCH_ERROR).sum())} of {len(errors)}"}
    result["criteria"] = criteria(result) if "test" in splits else []
    return result


def criteria(result: dict) -> list[dict]:
    speedup = result["speedup_256"]["median"]
    test = result["psnr_db"]["test"]
    gap = max(f - s for f, s in zip(test["full_vs_photos"], test["tiny_vs_photos"]))
    worst = max(result["chart"]["tiny_vs_full"].values())
    return [
        {"name": "speed-up at 256x256, 1 thread (full / tiny, median of paired blocks)", "value": speedup, "target": f">= {SPEEDUP:g}",
         "ok": speedup >= SPEEDUP},
        {"name": "test photos: worst PSNR gap to the full decode (dB)", "value": round(gap, 2),
         "target": f"<= {PSNR_GAP_DB:g}", "ok": gap <= PSNR_GAP_DB},
        {"name": "ColorChecker: worst patch, tiny vs full decode (/255)", "value": worst, "target": f"<= {PATCH_ERROR:g}",
         "ok": worst <= PATCH_ERROR},
    ]


def table(result: dict) -> str:
    lines = ["time per decode, 1 thread, median (ms):", f"  {'':<8}" + "".join(f"{n:>10}" for n in ("linear", "tiny", "full"))]
    for side, t in result["time_ms"].items():
        lines.append(f"  {side}x{side:<4}" + "".join(f"{t[n]:>10.2f}" for n in ("linear", "tiny", "full")))
    v = result["speedup_256"]
    lines.append(f"  speed-up at 256x256 (full / tiny, {v['pairs']} pairs of blocks of {v['block']}): median {v['median']}, "
                 f"quartiles {v['q1']} - {v['q3']}")
    for split, p in result["psnr_db"].items():
        lines.append(f"\n{split} photos, PSNR (dB), one value per photo:")
        for key, values in p.items():
            lines.append(f"  {key:<18}" + "".join(f"{v:>8.2f}" for v in values))
    chart = result["chart"]
    lines.append("\nColorChecker, largest channel error per patch (/255): mean / worst")
    for key, values in chart.items():
        v = list(values.values())
        lines.append(f"  {key:<18}{sum(v) / len(v):>8.1f}{max(v):>8.1f}")
    v = result["validation_charts_tiny_vs_full"]
    lines.append(f"\nvalidation charts, tiny vs full decode (/255): mean {v['mean']}, 90th percentile {v['p90']}, worst "
                 f"{v['worst']}; patches over {PATCH_ERROR:g}: {v['patches_over_10']}")
    lines.append("\nDone means (issue 17):" if result["criteria"] else "")
    for c in result["criteria"]:
        lines.append(f"  [{'ok' if c['ok'] else 'MISSED'}] {c['name']}: {c['value']:g} (target {c['target']})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="a tiny decoder checkpoint (default: the shipped one)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--choose", action="store_true", help="validation photos and chart only, no test photos")
    parser.add_argument("--write-manifest", action="store_true", help="store the numbers as `measured` in the manifest")
    args = parser.parse_args()
    vae, tiny = load_course_vae("cpu"), load_tiny(args.weights)
    result = measure(vae, tiny, args.repeats, ("validation",) if args.choose else ("validation", "test"))
    print(json.dumps(result) if args.json else table(result))
    if args.write_manifest and not args.choose:
        path = WEIGHTS_DIR / "tiny_decoder.json"
        manifest = json.loads(path.read_text())
        write_manifest(path, {**manifest, "measured": {k: v for k, v in result.items()}})
    return 0 if all(c["ok"] for c in result["criteria"]) else 1


if __name__ == "__main__":
    sys.exit(main())

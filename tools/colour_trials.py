"""Short trials: what does each colour source add to the course VAE? (issue 12; results in docs/vae-colour.md)

Each trial starts from the shipped VAE (latentlab/weights/vae.safetensors, same architecture) and trains it further
with the same recipe on one of three data mixes, then is judged on the validation photos and the colour chart only
(never on the test photos, which only report):

    .venv/bin/python tools/colour_trials.py --data photos     --steps 1000 --out /tmp/trial_photos.json
    .venv/bin/python tools/colour_trials.py --data augmented  --steps 1000 --out /tmp/trial_augmented.json
    .venv/bin/python tools/colour_trials.py --data mixed      --steps 1000 --out /tmp/trial_mixed.json

photos: crops of the training photos (the shipped VAE's last stage: 64x64 crops of 0.12-0.2 of a photo's side);
augmented: half of them colour-augmented (latentlab.augment); leaves: photos 0.6, dead leaves 0.4 (latentlab.synthetic);
mixed: photos 0.4, augmented 0.3, dead leaves 0.3 (latentlab.sources.colour_mix).
It uses latentlab.train.fit and vae_loss directly; the shipped weights are never written.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from latentlab.chart import colour_chart, patch_errors
from latentlab.data import PhotoCrops, batches
from latentlab.device import seed_everything, set_threads
from latentlab.evaluate import evaluate, load_vae, vae_reconstruct
from latentlab.images import psnr
from latentlab.photosets import split_images
from latentlab.sources import colour_mix
from latentlab.train import fit, save_checkpoint, vae_loss, warmup_cosine

CROP, CROP_SCALE = 64, (0.12, 0.2)  # the shipped VAE's last stage
MIXES = {
    "photos": {"photos": 1.0, "augmented": 0.0, "leaves": 0.0},
    "augmented": {"photos": 0.5, "augmented": 0.5, "leaves": 0.0},
    "leaves": {"photos": 0.6, "augmented": 0.0, "leaves": 0.4},
    "mixed": {"photos": 0.4, "augmented": 0.3, "leaves": 0.3},
}


def dataset(name: str, length: int, seed: int):
    """the training items of one mix, (3, 64, 64) each"""
    if name == "photos":
        return PhotoCrops(CROP, "train", length, seed, CROP_SCALE)  # exactly the shipped VAE's last stage
    return colour_mix(CROP, length, seed, **MIXES[name], scale=CROP_SCALE)


def quick_check(validation: torch.Tensor, chart: dict):
    """model -> validation PSNR, ColorChecker mean / worst patch error, hue sweep PSNR (for the log while training)"""
    def check(model) -> dict:
        errors = patch_errors(model(chart["colorchecker"]).clamp(-1, 1)).abs().amax(1)
        sweep = chart["hue_sweep"]
        return {"validation_psnr": psnr(model(validation).clamp(-1, 1), validation).mean().item(),
                "chart_mean": errors.mean().item(), "chart_worst": errors.max().item(),
                "hue_sweep_psnr": psnr(model(sweep).clamp(-1, 1), sweep).item()}
    return check


def summary(result: dict) -> dict:
    """the numbers the docs quote"""
    sweep = next(r for r in result["chart"] if r["image"] == "hue_sweep")["psnr_db"]
    fields = next(r for r in result["chart"] if r["image"] == "fields")["psnr_db"]
    val = result["validation"]
    return {
        "validation_psnr": {r["image"]: r["psnr_db"]["vae"] for r in val},
        "validation_mean_psnr": round(sum(r["psnr_db"]["vae"] for r in val) / len(val), 2),
        "validation_mean_over_bicubic": round(sum(r["psnr_db"]["vae"] - r["psnr_db"]["bicubic"] for r in val) / len(val), 2),
        "validation_worst_colour_error": max(abs(e) for r in val for e in r["colour_error"]),
        "chart_mean": result["colorchecker"]["mean"],
        "chart_worst": result["colorchecker"]["worst"],
        "chart_worst_patch": result["colorchecker"]["worst_patch"],
        "hue_sweep": {"vae": sweep["vae"], "bicubic": sweep["bicubic"]},
        "fields": {"vae": fields["vae"], "bicubic": fields["bicubic"]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=list(MIXES), required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate (warm-up, then cosine)")
    parser.add_argument("--average", type=float, default=0.998, help="weight-average decay (evaluated and saved)")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--time-budget", type=float, default=870.0, help="stop after this many seconds of training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="JSON with the log and the final evaluation; weights beside it")
    parser.add_argument("--baseline", action="store_true", help="evaluate the shipped VAE only (no training)")
    args = parser.parse_args()
    set_threads(args.threads)
    generator = seed_everything(args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    vae = load_vae(None)  # the shipped weights, as `--init` would
    history, wall = [], 0.0
    if not args.baseline:
        validation, chart = split_images("validation", 256), colour_chart()
        data = dataset(args.data, args.steps * args.batch_size, args.seed)
        optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(args.steps, warmup=50))
        start = time.perf_counter()
        history = fit(vae, lambda model, batch: vae_loss(model, batch, 1e-5, "mse", generator),
                      batches(data, args.batch_size, args.seed), args.steps, optimizer, scheduler,
                      evaluate=quick_check(validation, chart), eval_every=args.eval_every,
                      desc=f"trial {args.data}", time_budget_s=args.time_budget, average=args.average)
        wall = time.perf_counter() - start
        save_checkpoint(out.with_suffix(".safetensors"), vae, {"config": json.dumps(vars(vae.config))})
    result = evaluate(vae_reconstruct(vae), vae.factor, vae.config.latent_channels, splits=("validation",))
    record = {
        "data": "shipped VAE, no further training" if args.baseline else args.data,
        "mix": None if args.baseline else MIXES[args.data],
        "steps_done": len(history),
        "wall_time_s": round(wall, 1),
        "device": f"cpu ({torch.get_num_threads()} thread)",
        "recipe": None if args.baseline else
        {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "average", "seed")} | {"crop": CROP, "crop_scale": CROP_SCALE},
        "summary": summary(result),
        "checks": [{k: round(v, 3) for k, v in h.items()} for h in history if "validation_psnr" in h],
        "evaluation": {k: v for k, v in result.items() if k != "criteria"},
    }
    out.write_text(json.dumps(record, indent=1))
    print(json.dumps(record["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

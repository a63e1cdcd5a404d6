"""Train the course's models: `latentlab train vae | unet`, the commands that made the shipped weights.

Each run writes its checkpoint (safetensors, whole or not at all) and a JSON manifest beside it: the exact
command, seed, data, steps, wall time and the model's own checks. The training itself lives in latentlab.train.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

from latentlab.checkpoints import save_checkpoint
from latentlab.errors import InputError
from latentlab.train import (
    CROP_SCALE,
    encode_dataset,
    finetune_vae,
    heldout_psnr,
    train_denoiser,
    train_vae,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model", required=True, metavar="MODEL")
    vae = sub.add_parser("vae", help="train the course VAE on crops of the bundled photos")
    vae.add_argument("--steps", type=int, default=16000, help="optimizer steps")
    vae.add_argument("--batch-size", type=int, default=16)
    vae.add_argument("--crop", type=int, default=32, help="side of the training crops (a multiple of 8)")
    vae.add_argument("--crop-scale", default=",".join(map(str, CROP_SCALE)),
                     help="crop region side as a fraction of the photo's shorter side: lo,hi")
    vae.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (warm-up, then cosine)")
    vae.add_argument("--beta", type=float, default=1e-5, help="KL weight per image value")
    vae.add_argument("--reconstruction", choices=["l1", "mse"], default="mse")
    vae.add_argument("--rgb-shuffle", choices=["yes", "no"], default="no", help="shuffle colour channels per crop")
    vae.add_argument("--block-out-channels", default="16,16,32,64", help="comma-separated, one per resolution")
    vae.add_argument("--layers-per-block", type=int, default=1)
    vae.add_argument("--norm-num-groups", type=int, default=8)
    vae.add_argument("--init", default=None,
                     help="start from this checkpoint (a second stage of training); its config replaces the model options")
    vae.add_argument("--average", type=float, default=None,
                     help="keep a moving average of the weights with this decay (e.g. 0.998) and ship the average")
    vae.add_argument("--seed", type=int, default=0)
    vae.add_argument("--eval-every", type=int, default=1000, help="held-out PSNR every N steps")
    vae.add_argument("--checkpoint-every", type=int, default=1000)
    vae.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    vae.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    vae.add_argument("--out", default="vae.safetensors", help="checkpoint path; a .json manifest is written beside it")
    vae.set_defaults(train_run=_run_vae)
    unet = sub.add_parser("unet", help="train the lesson-08 denoiser on Shapes, in latent or pixel space")
    unet.add_argument("--space", choices=["latent", "pixel"], default="latent",
                      help="denoise course-VAE latents (4 x 8 x 8 for 64 x 64 images) or the pixels themselves")
    unet.add_argument("--steps", type=int, default=4000, help="optimizer steps (an upper bound with --time-budget)")
    unet.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds of training")
    unet.add_argument("--batch-size", type=int, default=32)
    unet.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (warm-up, then cosine)")
    unet.add_argument("--num-images", type=int, default=4096, help="Shapes images in the training set")
    unet.add_argument("--image-size", type=int, default=64, help="side of the Shapes images (a multiple of 8)")
    unet.add_argument("--block-out-channels", default="32,64", help="comma-separated, one per latent resolution")
    unet.add_argument("--layers-per-block", type=int, default=1)
    unet.add_argument("--norm-num-groups", type=int, default=16)
    unet.add_argument("--attention-head-dim", type=int, default=32)
    unet.add_argument("--beta-schedule", choices=["linear", "scaled_linear", "squaredcos_cap_v2"],
                      default="squaredcos_cap_v2")
    unet.add_argument("--finetune-vae", type=int, default=0,
                      help="first adapt the course VAE to the shapes for this many steps; saved as <out>_vae")
    unet.add_argument("--min-snr-gamma", type=float, default=5.0, help="Min-SNR loss weighting (0: plain loss)")
    unet.add_argument("--eval-samples", type=int, default=256, help="samples judged at the end (0: none)")
    unet.add_argument("--eval-steps", type=int, default=50, help="DDIM steps for those samples")
    unet.add_argument("--seed", type=int, default=0)
    unet.add_argument("--checkpoint-every", type=int, default=1000)
    unet.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    unet.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    unet.add_argument("--out", default="denoiser.safetensors", help="checkpoint path; a .json manifest goes beside it")
    unet.set_defaults(train_run=_run_unet)


def run(args: argparse.Namespace) -> int:
    return args.train_run(args)


def _command(args: argparse.Namespace, options: list[str]) -> str:
    """the full command line that reproduces this run, every option spelled out"""
    parts = ["latentlab", "train", args.model]
    for option in options:
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None:
            parts += [option, str(value)]
    return " ".join(parts)


def _run_vae(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from latentlab.checkpoints import sha256_file, write_manifest
    from latentlab.data import TRAIN_PHOTOS
    from latentlab.device import describe, pick_device, set_threads
    from latentlab.vae import VAEConfig

    try:
        channels = tuple(int(c) for c in args.block_out_channels.split(","))
    except ValueError:
        raise InputError(f"--block-out-channels {args.block_out_channels!r} must be integers joined by commas.") from None
    try:
        crop_scale = tuple(float(s) for s in args.crop_scale.split(","))
    except ValueError:
        crop_scale = ()
    if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise InputError(f"--crop-scale {args.crop_scale!r} must be two fractions lo,hi with 0 < lo <= hi <= 1.")
    if args.steps < 1 or args.batch_size < 1:
        raise InputError("--steps and --batch-size must be positive.")
    config = VAEConfig(block_out_channels=channels, layers_per_block=args.layers_per_block,
                       norm_num_groups=args.norm_num_groups)
    architecture = ["--block-out-channels", "--layers-per-block", "--norm-num-groups"]
    base = None
    if args.init is not None:
        config, base = _base_checkpoint(Path(args.init))
        architecture = ["--init"]
    if args.crop % config.factor:  # the factor of the model actually trained: --init's checkpoint decides it
        raise InputError(f"--crop {args.crop} must be a multiple of the VAE factor {config.factor}.")
    if args.average is not None and not 0 < args.average < 1:
        raise InputError(f"--average {args.average} must be a decay between 0 and 1, e.g. 0.998.")
    set_threads(args.threads)
    device = pick_device(args.device)
    options = ["--steps", "--batch-size", "--crop", "--crop-scale", "--lr", "--beta", "--reconstruction", "--rgb-shuffle",
               *architecture, "--average", "--seed", "--eval-every", "--checkpoint-every", "--device", "--threads",
               "--out"]
    command = _command(args, options)
    out = Path(args.out)
    print(f"{command}\non {describe(device)}", file=sys.stderr)
    start = time.perf_counter()
    vae, history = train_vae(
        config, args.steps, args.batch_size, args.crop, crop_scale, args.lr, args.beta, args.reconstruction,
        args.rgb_shuffle == "yes", args.seed, out,
        args.eval_every, checkpoint_every=args.checkpoint_every, device=device,
        metadata=lambda: {"config": asdict(config), "command": command},
        init=args.init, average=args.average,
    )
    wall = time.perf_counter() - start
    last = history[-1]
    manifest = {
        "name": out.stem,
        "command": command,
        "seed": args.seed,
        "data": f"latentlab.data.PhotoCrops(size={args.crop}, split='train', seed={args.seed}, scale={crop_scale}): "
                f"random crops of the training photos ({', '.join(TRAIN_PHOTOS)}); the held-out photos are never "
                "trained on",
        "steps": args.steps,
        "steps_done": len(history),
        "interrupted": bool(last.get("interrupted")),
        "wall_time_s": round(wall, 1),
        "device": describe(device),
        "torch": torch.__version__,
        "config": asdict(vae.config),
        "final": {k: round(v, 5) for k, v in last.items() if k not in ("step", "interrupted")},
        "history": [{k: round(v, 5) for k, v in h.items() if k != "interrupted"}
                    for h in history if h["step"] % 25 == 0 or "heldout_psnr" in h],
        "sha256": sha256_file(out),
    }
    if base is not None:
        manifest["base"] = base
    write_manifest(out.with_suffix(".json"), manifest)
    print(f"wrote {out} and {out.with_suffix('.json')} after {len(history)} steps in {wall:.0f} s; held-out PSNR "
          f"{last.get('heldout_psnr', float('nan')):.2f} dB", file=sys.stderr)
    return 0


def _base_checkpoint(path: Path):
    """--init: the checkpoint's VAEConfig, and what the new manifest says about it (its own manifest, if beside it)"""
    import json

    from latentlab.checkpoints import read_checkpoint, sha256_file
    from latentlab.vae import VAEConfig

    _, metadata = read_checkpoint(path)
    if "config" not in metadata:
        raise InputError(f"{path} holds no VAE config in its metadata; --init needs a checkpoint from `latentlab train vae`.")
    config = VAEConfig(**json.loads(metadata["config"]))
    base = {"file": str(path), "sha256": sha256_file(path), "command": metadata.get("command")}
    manifest_path = path.with_suffix(".json")
    if manifest_path.is_file():  # carry the first stage's record forward: how it was made and what it scored
        earlier = json.loads(manifest_path.read_text())
        keep = ("command", "seed", "data", "steps_done", "wall_time_s", "device", "torch", "final", "heldout", "note",
                "base")
        base.update({k: earlier[k] for k in keep if k in earlier})
        base["heldout_psnr_history"] = [[h["step"], h["heldout_psnr"]] for h in earlier.get("history", [])
                                        if "heldout_psnr" in h]
    return config, base


def _run_unet(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from latentlab import checkpoints
    from latentlab.data import shapes_batch
    from latentlab.device import describe, pick_device, set_threads
    from latentlab.unet import UNetConfig

    try:
        widths = tuple(int(c) for c in args.block_out_channels.split(","))
    except ValueError:
        raise InputError(f"--block-out-channels {args.block_out_channels!r} must be integers joined by commas.") from None
    if args.image_size % 8:
        raise InputError(f"--image-size {args.image_size} must be a multiple of 8 (the VAE factor).")
    if args.steps < 1 or args.batch_size < 1 or args.num_images < args.batch_size:
        raise InputError("--steps and --batch-size must be positive and --num-images at least one batch.")
    set_threads(args.threads)
    device = pick_device(args.device)
    channels, side = (4, args.image_size // 8) if args.space == "latent" else (3, args.image_size)
    # pixels get three extra levels of the first width, so both UNets end at the same 4 x 4 (or smaller) map
    levels = widths if args.space == "latent" else (widths[0],) * 3 + widths
    attention = [i >= len(levels) - len(widths) + 1 for i in range(len(levels))]
    config = UNetConfig(
        sample_size=side, in_channels=channels, out_channels=channels, block_out_channels=levels,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        layers_per_block=args.layers_per_block, norm_num_groups=args.norm_num_groups,
        attention_head_dim=args.attention_head_dim,
    )
    options = ["--space", "--steps", "--time-budget", "--batch-size", "--lr", "--num-images", "--image-size",
               "--block-out-channels", "--layers-per-block", "--norm-num-groups", "--attention-head-dim",
               "--beta-schedule", "--finetune-vae", "--min-snr-gamma", "--eval-samples", "--eval-steps", "--seed",
               "--checkpoint-every", "--threads", "--out"]
    command = _command(args, options)
    out = Path(args.out)
    print(f"{command}\non {describe(device)}", file=sys.stderr)
    images, _ = shapes_batch(args.num_images, size=args.image_size, seed=args.seed)
    vae, vae_name = None, None
    if args.space == "latent":
        vae, vae_name = checkpoints.load_course_vae(device), "vae"
        if args.finetune_vae > 0:
            vae_name = f"{out.stem}_vae"
            _finetune_and_save(vae, images, args, command, out.with_name(f"{vae_name}.safetensors"), device)
    data = encode_dataset(vae, images.to(device)) if vae is not None else images
    del images
    extra = {"space": args.space, "vae": vae_name, "beta_schedule": args.beta_schedule, "prediction_type": "epsilon"}
    start = time.perf_counter()
    model, history = train_denoiser(
        data, config, steps=args.steps, batch_size=args.batch_size, lr=args.lr, beta_schedule=args.beta_schedule,
        seed=args.seed, time_budget_s=args.time_budget, min_snr_gamma=args.min_snr_gamma or None, out=out,
        checkpoint_every=args.checkpoint_every, device=device, desc=f"train unet ({args.space})",
        metadata=lambda: {"config": asdict(config), "command": command, **extra},
    )
    wall = time.perf_counter() - start
    quality = _judge_denoiser(model, vae, args, config) if args.eval_samples else {}
    last = history[-1]
    ms_per_step = [1000 * (b["time_s"] - a["time_s"]) for a, b in zip(history, history[1:])]
    manifest = {
        "name": out.stem,
        "command": command,
        "seed": args.seed,
        "data": f"latentlab.data.shapes_batch({args.num_images}, size={args.image_size}, seed={args.seed})"
                + (f", encoded by the VAE {vae_name!r} (posterior mean x scaling_factor)" if vae is not None else ", pixels"),
        **extra,
        "steps": args.steps,
        "steps_done": len(history),
        "time_budget_s": args.time_budget,
        "interrupted": bool(last.get("interrupted")),
        "wall_time_s": round(wall, 1),
        "ms_per_step_median": round(sorted(ms_per_step)[len(ms_per_step) // 2], 1) if ms_per_step else None,
        "device": describe(device),
        "torch": torch.__version__,
        "config": asdict(config),
        "parameters": model.num_parameters(),
        "final": {"loss_last_100": round(sum(h["loss"] for h in history[-100:]) / len(history[-100:]), 5)},
        "quality": quality,
        "history": [{k: round(v, 5) for k, v in h.items() if k != "interrupted"}
                    for h in history if h["step"] % 50 == 0],
        "sha256": checkpoints.sha256_file(out),
    }
    checkpoints.write_manifest(out.with_suffix(".json"), manifest)
    print(f"wrote {out} and {out.with_suffix('.json')} after {len(history)} steps in {wall:.0f} s; "
          f"{quality.get('summary', '')}", file=sys.stderr)
    return 0


def _finetune_and_save(vae: nn.Module, images: torch.Tensor, args: argparse.Namespace, command: str, path: Path,
                       device: torch.device) -> None:
    """fine-tune the course VAE on the training shapes, save it with a manifest next to the denoiser"""
    from dataclasses import asdict

    from latentlab import checkpoints
    from latentlab.data import heldout_images, shapes_batch
    from latentlab.images import psnr
    from latentlab.quality import judge

    base = checkpoints.course_manifest("vae")["sha256"]  # the course VAE it starts from
    start = time.perf_counter()
    finetune_vae(vae, images, steps=args.finetune_vae, seed=args.seed, device=device)
    wall = time.perf_counter() - start
    save_checkpoint(path, vae, {"config": asdict(vae.config), "command": command})
    heldout, _ = shapes_batch(256, size=args.image_size, seed=args.seed + 1000)  # shapes it was not tuned on
    with torch.no_grad():
        recon = torch.cat([vae(x.to(device)).cpu() for x in heldout.split(64)]).clamp(-1, 1)
        photo_psnr = heldout_psnr(vae, heldout_images(256).to(device))  # what the adaptation cost on photos
    verdict = judge(recon)
    manifest = {
        "name": path.stem,
        "command": command,
        "made_by": f"the course VAE fine-tuned for {args.finetune_vae} steps (batch 8, MSE + 1e-5 KL) on the training "
                   "shapes, before the denoiser is trained on its latents",
        "base_vae_sha256": base,
        "seed": args.seed,
        "data": f"latentlab.data.shapes_batch({args.num_images}, size={args.image_size}, seed={args.seed})",
        "steps": args.finetune_vae,
        "wall_time_s": round(wall, 1),
        "config": asdict(vae.config),
        "heldout_shapes": {"psnr": round(psnr(recon, heldout).mean().item(), 2), "recognised": verdict.recognised,
                           "summary": str(verdict)},
        "heldout_photos_psnr": round(photo_psnr, 2),
        "sha256": checkpoints.sha256_file(path),
    }
    checkpoints.write_manifest(path.with_suffix(".json"), manifest)
    print(f"wrote {path}: held-out shapes {manifest['heldout_shapes']['psnr']} dB, {verdict}", file=sys.stderr)


def _judge_denoiser(model: nn.Module, vae: nn.Module | None, args: argparse.Namespace, config) -> dict:
    """sample with DDIM, decode, and judge the shapes (latentlab.quality) -> the manifest's quality entry"""
    from diffusers import DDIMScheduler

    from latentlab.diffusion import sample
    from latentlab.quality import judge

    scheduler = DDIMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=args.beta_schedule,
                              clip_sample=vae is None)
    shape = (args.eval_samples, config.in_channels, config.sample_size, config.sample_size)
    start = time.perf_counter()
    x = sample(model, shape, scheduler, args.eval_steps, torch.Generator().manual_seed(args.seed + 1))
    with torch.no_grad():
        images = torch.cat([vae.decode(z / vae.scaling_factor) for z in x.split(64)]) if vae is not None else x
    verdict = judge(images.cpu())
    return {"samples": args.eval_samples, "ddim_steps": args.eval_steps, "recognised": round(verdict.recognised, 4),
            "flat": round(verdict.flat, 4), "matched": round(verdict.matched, 4), "mean_iou": round(verdict.mean_iou, 3),
            "class_counts": verdict.class_counts, "balance": round(verdict.balance(), 3),
            "sampling_s": round(time.perf_counter() - start, 1), "summary": str(verdict)}

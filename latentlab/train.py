"""Training: one generic loop (progress bar, held-out checks, safetensors checkpoints, a safe Ctrl-C) and the VAE's loss.

The VAE minimises reconstruction + beta * KL, the negative evidence lower bound of Kingma & Welling 2014
(https://arxiv.org/abs/1312.6114, eq. 3) with beta weighting the KL as in Higgins et al. 2017 and in
Stable Diffusion's autoencoder (Rombach et al. 2022, kl_weight=1e-6). `fit` knows nothing about VAEs:
the UNet trains through it with its own loss function.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from latentlab.errors import InputError

# ---- checkpoints: safetensors only, written whole or not at all


def save_checkpoint(path: str | Path, model: nn.Module, metadata: dict | None = None) -> Path:
    """model weights (+ metadata, stored as strings) -> safetensors file, atomically: temp file, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is readable like any other file
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors file -> (tensors, metadata); InputError if the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}; check the path or train one with `latentlab train`.")
    try:
        tensors = load_file(path)
        with open(path, "rb") as f:  # the header: 8-byte length, then JSON with "__metadata__"
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(
            f"{path} is not a readable safetensors checkpoint ({str(err).splitlines()[0][:80]}); it may be truncated "
            "or corrupt: delete it and retrain or reinstall."
        ) from None
    return tensors, header.get("__metadata__", {})


def load_checkpoint(path: str | Path, model: nn.Module) -> dict[str, str]:
    """safetensors file -> weights loaded into model (strict); returns the metadata. InputError says what mismatched."""
    tensors, metadata = read_checkpoint(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in tensors and tensors[k].shape != v.shape]
    problems = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                f"{len(wrong)} with another shape (e.g. {wrong[0]}, file vs model)" if wrong else ""]
    problems = [p for p in problems if p]
    if problems:
        raise InputError(
            f"{path} does not fit this {type(model).__name__}: keys {'; '.join(problems)}; build the model with the "
            "config the checkpoint was trained with."
        )
    model.load_state_dict(tensors, strict=True)
    return metadata


# ---- the generic loop


def warmup_cosine(steps: int, warmup: int = 100, final: float = 0.1) -> Callable[[int], float]:
    """learning-rate multiplier: linear warm-up, then cosine decay to `final` (Loshchilov & Hutter 2017)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def fit(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]],
    batches: Iterator[torch.Tensor],
    steps: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int = 250,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
    metadata: Callable[[], dict] | None = None,
    device: torch.device | str = "cpu",
    desc: str = "train",
    time_budget_s: float | None = None,
) -> list[dict]:
    """Run `steps` optimizer steps of loss_fn(model, batch)["loss"]; returns the history, one dict per step.

    Args:
        loss_fn: returns a dict of scalar tensors with at least "loss"; every entry goes into the history.
        batches: an endless iterator of batches (moved to `device` here).
        evaluate: called every `eval_every` steps and at the end, in eval mode and without gradients; its
            numbers are added to that step's history entry.
        checkpoint: where `save_checkpoint` writes every `checkpoint_every` steps and at the end.
        metadata: called at each save for the metadata to store (the step is added).
        time_budget_s: stop after the step that reaches this many seconds (then `steps` is only an upper bound);
            for comparisons at equal wall-clock time.
    Ctrl-C (KeyboardInterrupt) stops the loop, saves the checkpoint, and returns the history so far with
    "interrupted": True in its last entry: the model is usable.
    """
    history: list[dict] = []
    start = time.perf_counter()

    def save(step: int) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, {**(metadata() if metadata else {}), "step": step})

    def check(entry: dict) -> None:
        if evaluate is None:
            return
        model.eval()
        with torch.no_grad():
            entry.update(evaluate(model))
        model.train()
        bar.write(f"step {entry['step']}: " + ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "step"))

    model.to(device).train()
    bar = tqdm(total=steps, desc=desc, mininterval=2.0, dynamic_ncols=True)
    try:
        for step in range(1, steps + 1):
            batch = next(batches).to(device)
            logs = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            logs["loss"].backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            entry = {"step": step, **{k: float(v.detach()) for k, v in logs.items()}, "time_s": time.perf_counter() - start}
            history.append(entry)
            bar.update(1)
            bar.set_postfix(loss=f"{entry['loss']:.4f}", refresh=False)
            out_of_time = time_budget_s is not None and entry["time_s"] >= time_budget_s
            if step % eval_every == 0 or step == steps or out_of_time:
                check(entry)
            if out_of_time:
                break
            if step % checkpoint_every == 0 and step < steps:
                save(step)
    except KeyboardInterrupt:
        if history:
            history[-1]["interrupted"] = True
        bar.write(f"interrupted after {len(history)} steps; saving what was learned so far.")
    finally:
        bar.close()
    model.eval()
    save(len(history))
    return history


# ---- the VAE: loss, held-out check, and `latentlab train vae`

CROP_SCALE = (0.125, 0.25)  # crop region / photo's shorter side (512 px): 64-128 px regions, shrunk 1x-2x to 64


def vae_loss(
    model: nn.Module,
    batch: torch.Tensor,
    beta: float = 1e-5,
    reconstruction: Literal["l1", "mse"] = "mse",
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """images (B, 3, H, W) -> {"loss": rec + beta * kl, "rec", "kl"}; kl is per image value, like SD's kl_weight."""
    posterior = model.encode(batch)
    recon = model.decode(posterior.sample(generator))  # reparameterized sample: gradients reach mean and logvar
    error = recon - batch
    rec = error.abs().mean() if reconstruction == "l1" else error.pow(2).mean()
    kl = posterior.kl().mean() / batch[0].numel()  # nats per image value (3 H W of them)
    return {"loss": rec + beta * kl, "rec": rec, "kl": kl}


def shuffle_rgb(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 3, H, W) -> each image with its colour channels in a random order: colour augmentation."""
    order = torch.rand(batch.shape[:2], generator=generator).argsort(dim=1).to(batch.device)  # (B, 3)
    return batch.gather(1, order[:, :, None, None].expand_as(batch))


def heldout_psnr(model: nn.Module, images: torch.Tensor) -> float:
    """mean PSNR (dB) of the model's reconstructions (posterior mean, clamped to [-1, 1]) of held-out images."""
    from latentlab.images import psnr

    return psnr(model(images).clamp(-1, 1), images.to(next(model.parameters()).device)).mean().item()


def train_vae(
    config=None,
    steps: int = 4000,
    batch_size: int = 4,
    crop: int = 64,
    crop_scale: tuple[float, float] = CROP_SCALE,
    lr: float = 1e-3,
    beta: float = 1e-5,
    reconstruction: Literal["l1", "mse"] = "mse",
    rgb_shuffle: bool = True,
    seed: int = 0,
    out: str | Path | None = None,
    eval_every: int = 250,
    eval_size: int = 256,
    checkpoint_every: int = 500,
    device: torch.device | str = "cpu",
    metadata: Callable[[], dict] | None = None,
):
    """Train a course VAE on random crops of the training photos -> (vae, history).

    Args:
        config: a VAEConfig (default: the course VAE's).
        crop: side of the training crops; the model is convolutional, so it then works at any multiple of 8.
        crop_scale: crop region side as a fraction of a photo's shorter side (512 px at most) before it is
            resized to `crop`: (0.125, 0.25) shrinks 64-128 px regions 1x-2x, about the pixel density of the
            256x256 lesson images (photos of 300-600 px shrunk to 256).
        beta: weight of the KL per image value (SD used 1e-6); larger gives a more regular, less detailed latent.
        reconstruction: "mse" (default: PSNR, the number the course VAE is judged by, is a function of the MSE; in
            a 250-step trial it was ahead of L1 at every check) or "l1" (sharper edges, used by SD with LPIPS).
        rgb_shuffle: shuffle each crop's colour channels; the training photos have few colours (a red retina,
            a brown stain, a black sky) and without it the VAE tints everything like them.
        out: safetensors path for periodic and final checkpoints.
    """
    from latentlab.data import PhotoCrops, batches, heldout_images
    from latentlab.device import seed_everything
    from latentlab.vae import VAE, estimate_scaling_factor

    generator = seed_everything(seed)
    vae = VAE(config)
    data = PhotoCrops(size=crop, split="train", length=max(steps, 1) * batch_size, seed=seed, scale=crop_scale)
    heldout = heldout_images(eval_size)  # watched during training, never trained on or used to pick a model
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup=min(100, steps // 10 + 1)))
    history = fit(
        vae,
        lambda model, batch: vae_loss(model, shuffle_rgb(batch, generator) if rgb_shuffle else batch, beta,
                                      reconstruction, generator),
        batches(data, batch_size, seed),
        steps,
        optimizer,
        scheduler,
        evaluate=lambda model: {"heldout_psnr": heldout_psnr(model, heldout.to(device))},
        eval_every=eval_every,
        checkpoint=out,
        checkpoint_every=checkpoint_every,
        metadata=metadata,
        device=device,
        desc="train vae",
    )
    # latents are scaled to unit variance before diffusion; SD measured 0.18215 the same way
    sample = torch.stack([data[i] for i in range(min(len(data), 256))])
    with torch.no_grad():
        vae.config.scaling_factor = round(estimate_scaling_factor(vae, sample, generator), 5)
    if out is not None:
        save_checkpoint(out, vae, {**(metadata() if metadata else {}), "step": len(history)})
    return vae, history


# ---- the denoiser: noise prediction on VAE latents (or pixels), and `latentlab train unet`


@torch.no_grad()
def encode_dataset(vae: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """images (N, 3, H, W) -> scaled latents (N, 4, H/8, W/8): vae.encode(x).mode() * scaling_factor, in batches"""
    return torch.cat([vae.encode(chunk).mode().cpu() for chunk in images.split(batch_size)]) * vae.scaling_factor


def finetune_vae(
    vae: nn.Module,
    images: torch.Tensor,
    steps: int = 600,
    batch_size: int = 8,
    lr: float = 5e-4,
    beta: float = 1e-5,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, list[dict]]:
    """Adapt a trained VAE to new images (e.g. Shapes, which a photo VAE never saw) -> (vae, history).

    Same loss as train_vae (MSE here, beta * KL); afterwards the scaling factor is measured again on the new images.
    """
    from latentlab.device import seed_everything
    from latentlab.vae import estimate_scaling_factor

    generator = seed_everything(seed)

    def batches() -> Iterator[torch.Tensor]:
        while True:
            yield images[torch.randint(0, len(images), (batch_size,), generator=generator)]

    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup=min(50, steps // 10 + 1)))
    history = fit(vae, lambda model, batch: vae_loss(model, batch, beta, "mse", generator), batches(), steps,
                  optimizer, scheduler, device=device, desc="fine-tune vae")
    with torch.no_grad():
        vae.config.scaling_factor = round(estimate_scaling_factor(vae, images[:256].to(device), generator), 5)
    return vae.eval(), history


def _budget_cosine(time_budget_s: float, warmup: int, final: float = 0.1) -> Callable[[int], float]:
    """like warmup_cosine, but the cosine follows the elapsed share of a wall-clock budget instead of the steps"""
    start = time.perf_counter()

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (time.perf_counter() - start) / time_budget_s)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def train_denoiser(
    data: torch.Tensor,
    config=None,
    steps: int = 4000,
    batch_size: int = 32,
    lr: float = 2e-3,
    beta_schedule: str = "squaredcos_cap_v2",
    seed: int = 0,
    time_budget_s: float | None = None,
    min_snr_gamma: float | None = 5.0,
    out: str | Path | None = None,
    checkpoint_every: int = 1000,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int = 1000,
    device: torch.device | str = "cpu",
    metadata: Callable[[], dict] | None = None,
    desc: str = "train unet",
):
    """Train a UNet to predict the noise added to `data` (Ho et al. 2020, Algorithm 1) -> (unet, history).

    Args:
        data: the training set (N, C, H, W): scaled VAE latents (N, 4, 8, 8) or images (N, 3, 64, 64).
        config: a UNetConfig whose in_channels match the data (default: UNetConfig() with the data's channels).
        beta_schedule: the noise schedule, named as in diffusers (the sampler must use the same).
        time_budget_s: stop after this many seconds (`steps` is then an upper bound) and decay the learning rate
            over the budget: the way to compare two models at equal wall-clock time.
        min_snr_gamma: Min-SNR loss weighting (see diffusion.diffusion_loss); None for Ho et al.'s plain loss.
    """
    from dataclasses import replace

    from latentlab.device import seed_everything
    from latentlab.diffusion import alphas_cumprod, diffusion_loss, make_betas
    from latentlab.unet import UNet, UNetConfig

    if not isinstance(data, torch.Tensor) or data.ndim != 4:
        raise InputError("data must be a tensor (N, C, H, W) of latents or images; encode images with encode_dataset.")
    if len(data) < batch_size:
        raise InputError(f"data holds {len(data)} samples, fewer than one batch of {batch_size}; add data or lower "
                         "batch_size.")
    C, H = data.shape[1], data.shape[2]
    config = config or UNetConfig(sample_size=H, in_channels=C, out_channels=C)
    if config.in_channels != C:
        raise InputError(f"the UNet takes {config.in_channels} channels but the data has {C}; set in_channels and "
                         f"out_channels to {C}.")
    config = replace(config, sample_size=H)
    generator = seed_everything(seed)
    model = UNet(config)
    acp = alphas_cumprod(make_betas(beta_schedule, config.num_train_timesteps)).to(device)

    def batches() -> Iterator[torch.Tensor]:
        while True:
            for idx in torch.randperm(len(data), generator=generator).split(batch_size):
                if len(idx) == batch_size:
                    yield data[idx]

    warmup = min(100, steps // 10 + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    factor = warmup_cosine(steps, warmup) if time_budget_s is None else _budget_cosine(time_budget_s, warmup)
    history = fit(
        model,
        lambda unet, x0: {"loss": diffusion_loss(unet, x0, acp, generator, min_snr_gamma)},
        batches(),
        steps,
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, factor),
        evaluate=evaluate,
        eval_every=eval_every,
        checkpoint=out,
        checkpoint_every=checkpoint_every,
        metadata=metadata,
        device=device,
        desc=desc,
        time_budget_s=time_budget_s,
    )
    return model, history


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model", required=True, metavar="MODEL")
    vae = sub.add_parser("vae", help="train the course VAE on crops of the bundled photos")
    vae.add_argument("--steps", type=int, default=4000, help="optimizer steps")
    vae.add_argument("--batch-size", type=int, default=4)
    vae.add_argument("--crop", type=int, default=64, help="side of the training crops (a multiple of 8)")
    vae.add_argument("--crop-scale", default=",".join(map(str, CROP_SCALE)),
                     help="crop region side as a fraction of the photo's shorter side: lo,hi")
    vae.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (warm-up, then cosine)")
    vae.add_argument("--beta", type=float, default=1e-5, help="KL weight per image value")
    vae.add_argument("--reconstruction", choices=["l1", "mse"], default="mse")
    vae.add_argument("--rgb-shuffle", choices=["yes", "no"], default="yes", help="shuffle colour channels per crop")
    vae.add_argument("--block-out-channels", default="16,16,32,64", help="comma-separated, one per resolution")
    vae.add_argument("--layers-per-block", type=int, default=1)
    vae.add_argument("--norm-num-groups", type=int, default=8)
    vae.add_argument("--seed", type=int, default=0)
    vae.add_argument("--eval-every", type=int, default=500, help="held-out PSNR every N steps")
    vae.add_argument("--checkpoint-every", type=int, default=500)
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

    from latentlab.device import describe, pick_device, set_threads
    from latentlab.pretrained import sha256_file, write_manifest
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
    if args.crop % 2 ** (len(channels) - 1):
        raise InputError(f"--crop {args.crop} must be a multiple of the VAE factor {2 ** (len(channels) - 1)}.")
    if args.steps < 1 or args.batch_size < 1:
        raise InputError("--steps and --batch-size must be positive.")
    config = VAEConfig(block_out_channels=channels, layers_per_block=args.layers_per_block,
                       norm_num_groups=args.norm_num_groups)
    set_threads(args.threads)
    device = pick_device(args.device)
    options = ["--steps", "--batch-size", "--crop", "--crop-scale", "--lr", "--beta", "--reconstruction", "--rgb-shuffle",
               "--block-out-channels", "--layers-per-block", "--norm-num-groups", "--seed", "--eval-every",
               "--checkpoint-every", "--device", "--threads", "--out"]
    command = _command(args, options)
    out = Path(args.out)
    print(f"{command}\non {describe(device)}", file=sys.stderr)
    start = time.perf_counter()
    vae, history = train_vae(
        config, args.steps, args.batch_size, args.crop, crop_scale, args.lr, args.beta, args.reconstruction,
        args.rgb_shuffle == "yes", args.seed, out,
        args.eval_every, checkpoint_every=args.checkpoint_every, device=device,
        metadata=lambda: {"config": asdict(config), "command": command},
    )
    wall = time.perf_counter() - start
    last = history[-1]
    manifest = {
        "name": out.stem,
        "command": command,
        "seed": args.seed,
        "data": f"latentlab.data.PhotoCrops(size={args.crop}, split='train', seed={args.seed}, scale={crop_scale}): "
                "random crops of the training photos; the held-out photos are never trained on",
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
    write_manifest(out.with_suffix(".json"), manifest)
    print(f"wrote {out} and {out.with_suffix('.json')} after {len(history)} steps in {wall:.0f} s; held-out PSNR "
          f"{last.get('heldout_psnr', float('nan')):.2f} dB", file=sys.stderr)
    return 0


def _run_unet(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from latentlab import pretrained
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
               "--beta-schedule", "--finetune-vae", "--min-snr-gamma", "--eval-samples", "--eval-steps", "--seed", "--checkpoint-every", "--threads",
               "--out"]
    command = _command(args, options)
    out = Path(args.out)
    print(f"{command}\non {describe(device)}", file=sys.stderr)
    images, _ = shapes_batch(args.num_images, size=args.image_size, seed=args.seed)
    vae, vae_name = None, None
    if args.space == "latent":
        vae, vae_name = pretrained.load_course_vae(device), "vae"
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
                + (", encoded by the course VAE (posterior mean x scaling_factor)" if vae is not None else ", pixels"),
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
        "sha256": pretrained.sha256_file(out),
    }
    pretrained.write_manifest(out.with_suffix(".json"), manifest)
    print(f"wrote {out} and {out.with_suffix('.json')} after {len(history)} steps in {wall:.0f} s; "
          f"{quality.get('summary', '')}", file=sys.stderr)
    return 0


def _finetune_and_save(vae: nn.Module, images: torch.Tensor, args: argparse.Namespace, command: str, path: Path,
                       device: torch.device) -> None:
    """fine-tune the course VAE on the training shapes, save it with a manifest next to the denoiser"""
    from dataclasses import asdict

    from latentlab import pretrained
    from latentlab.data import heldout_images, shapes_batch
    from latentlab.images import psnr
    from latentlab.quality import judge

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
        "seed": args.seed,
        "data": f"latentlab.data.shapes_batch({args.num_images}, size={args.image_size}, seed={args.seed})",
        "steps": args.finetune_vae,
        "wall_time_s": round(wall, 1),
        "config": asdict(vae.config),
        "heldout_shapes": {"psnr": round(psnr(recon, heldout).mean().item(), 2), "recognised": verdict.recognised,
                           "summary": str(verdict)},
        "heldout_photos_psnr": round(photo_psnr, 2),
        "sha256": pretrained.sha256_file(path),
    }
    pretrained.write_manifest(path.with_suffix(".json"), manifest)
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

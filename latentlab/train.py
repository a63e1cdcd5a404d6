"""Training: one generic loop (progress bar, held-out checks, safetensors checkpoints, a safe Ctrl-C) and the VAE's loss.

The VAE minimises reconstruction + beta * KL, the negative evidence lower bound of Kingma & Welling 2014
(https://arxiv.org/abs/1312.6114, eq. 3) with beta weighting the KL as in Higgins et al. 2017 and in
Stable Diffusion's autoencoder (Rombach et al. 2022, kl_weight=1e-6). `fit` knows nothing about VAEs:
the UNet trains through it with its own loss function.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from latentlab.checkpoints import load_checkpoint, save_checkpoint
from latentlab.errors import InputError

# ---- the generic loop


def warmup_cosine(steps: int, warmup: int = 100, final: float = 0.1) -> Callable[[int], float]:
    """learning-rate multiplier: linear warm-up, then cosine decay to `final` (Loshchilov & Hutter 2017)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


class WeightAverage:
    """An exponential moving average of a model's parameters (Polyak & Juditsky 1992), updated after each step.

    The average moves less from one step to the next than the weights themselves, so it is what gets evaluated,
    checkpointed and returned. `decay` 0.998 averages over roughly the last 500 steps; early on the average follows
    the weights more closely ((1 + n) / (10 + n) after n updates), so it never holds the random start for long.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise InputError(f"the weight-average decay must be between 0 and 1 (e.g. 0.998), not {decay}.")
        self.model, self.decay, self.updates = model, decay, 0
        self.average = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.average, self.model.parameters()):
            avg.lerp_(p.detach(), 1 - decay)

    @contextmanager
    def applied(self):
        """inside the block the model holds the averaged weights; its own come back afterwards"""
        own = [p.detach().clone() for p in self.model.parameters()]
        self.copy_to_model()
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for p, w in zip(self.model.parameters(), own):
                    p.copy_(w)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for p, avg in zip(self.model.parameters(), self.average):
            p.copy_(avg)


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
    average: float | None = None,
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
        average: with a decay (e.g. 0.998), a WeightAverage of the weights is what is evaluated, checkpointed and
            left in the model at the end.
    Ctrl-C (KeyboardInterrupt) stops the loop, saves the checkpoint, and returns the history so far with
    "interrupted": True in its last entry: the model is usable.
    """
    history: list[dict] = []
    start = time.perf_counter()
    averaged = WeightAverage(model, average) if average is not None else None

    def judged():  # the weights that are evaluated and saved: the average, while training with one
        return averaged.applied() if averaged is not None else nullcontext()

    def save(step: int) -> None:
        if checkpoint is not None:
            with judged():
                save_checkpoint(checkpoint, model, {**(metadata() if metadata else {}), "step": step})

    def check(entry: dict) -> None:
        if evaluate is None:
            return
        model.eval()
        with torch.no_grad(), judged():
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
            if averaged is not None:
                averaged.update()
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
    if averaged is not None:
        averaged.copy_to_model()  # the model now holds the average for good
        averaged = None
    model.eval()
    save(len(history))
    return history


# ---- the VAE: loss, held-out check, training

CROP_SCALE = (0.06, 0.3)  # crop region / photo's shorter side (512 px at most): 30-150 px regions, resized to the crop


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
    steps: int = 16000,
    batch_size: int = 16,
    crop: int = 32,
    crop_scale: tuple[float, float] = CROP_SCALE,
    lr: float = 1e-3,
    beta: float = 1e-5,
    reconstruction: Literal["l1", "mse"] = "mse",
    rgb_shuffle: bool = False,
    seed: int = 0,
    out: str | Path | None = None,
    eval_every: int = 250,
    eval_size: int = 256,
    checkpoint_every: int = 500,
    device: torch.device | str = "cpu",
    metadata: Callable[[], dict] | None = None,
    init: str | Path | None = None,
    average: float | None = None,
):
    """Train a course VAE on random crops of the training photos -> (vae, history).

    Args:
        config: a VAEConfig (default: the course VAE's).
        crop: side of the training crops; the model is convolutional, so it then works at any multiple of 8. But
            its GroupNorm layers normalise over the whole picture, so a model that saw only small crops shifts the
            colours of whole photos; the shipped VAE ends with runs on larger crops (`init`; docs/vae.md).
        crop_scale: crop region side as a fraction of a photo's shorter side (512 px at most) before it is
            resized to `crop`: (0.06, 0.3) takes 30-150 px regions, a spread of scales around the pixel density
            of the 256x256 lesson images (photos of 300-600 px shrunk to 256).
        lr: peak AdamW learning rate. Many small crops per step (16 of 32x32) at 1e-3 trained faster than few
            large ones (4 of 64x64) at 3e-4 or 1e-3; docs/vae.md has the trials.
        beta: weight of the KL per image value (SD used 1e-6); larger gives a more regular, less detailed latent.
        reconstruction: "mse" (default: PSNR, the number the course VAE is judged by, is a function of the MSE; in
            a 250-step trial it was ahead of L1 at every check) or "l1" (sharper edges, used by SD with LPIPS).
        rgb_shuffle: shuffle each crop's colour channels, a colour augmentation for a training set of few photos;
            off by default, as the trial with it on trained slower (docs/vae.md).
        out: safetensors path for periodic and final checkpoints.
        init: a checkpoint of the same config to start from (a second stage of training) instead of random weights.
        average: decay of a WeightAverage of the weights (e.g. 0.998); the average is evaluated, saved and returned.
    """
    from latentlab.data import PhotoCrops, batches, heldout_images
    from latentlab.device import seed_everything
    from latentlab.vae import VAE, estimate_scaling_factor

    generator = seed_everything(seed)
    vae = VAE(config)
    if init is not None:
        load_checkpoint(init, vae)
    data = PhotoCrops(size=crop, split="train", length=max(steps, 1) * batch_size, seed=seed, scale=crop_scale)
    heldout = heldout_images(eval_size)  # watched during training, never trained on
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
        average=average,
    )
    # latents are scaled to unit variance before diffusion; SD measured 0.18215 the same way
    sample = torch.stack([data[i] for i in range(min(len(data), 256))])
    with torch.no_grad():
        vae.config.scaling_factor = round(estimate_scaling_factor(vae, sample, generator), 5)
    if out is not None:
        save_checkpoint(out, vae, {**(metadata() if metadata else {}), "step": len(history)})
    return vae, history


# ---- the denoiser: noise prediction on VAE latents (or pixels)


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

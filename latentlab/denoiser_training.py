"""Training lesson 08's denoiser: its settings `DenoiserTraining`, `train_denoiser`, and `latentlab train unet`.

A UNet learns to predict the noise added to its training data (Ho et al. 2020, https://arxiv.org/abs/2006.11239,
Algorithm 1): Shapes images (or crops of a folder of your own, `data`) encoded once by the course VAE into scaled
latents (latents.scale), or the pixels themselves. A photo VAE is first adapted to the training images
(`finetune_vae`, saved beside the denoiser as <name>_vae). With `classes` the UNet also learns which shape it draws,
some labels dropped to "no class" (classifier-free guidance, Ho & Salimans 2022, https://arxiv.org/abs/2207.12598).
recipes/denoiser.toml and recipes/denoiser_pixel.toml hold the shipped models' settings; denoiser_job runs them
(`latentlab train unet`). A little longer than 300 lines: the settings, the UNet they describe and the loop they
drive change together (a new setting is a field, a flag and a recipe key at once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn

from latentlab.data import SHAPE_CLASSES
from latentlab.device import seed_everything, stream_seed
from latentlab.diffusion import alphas_cumprod, diffusion_loss, make_betas
from latentlab.errors import InputError
from latentlab.interrupts import held, stopping
from latentlab.latents import scale
from latentlab.recipes import Rule, above, at_least, setting, validate
from latentlab.resume import saved_step, state_path
from latentlab.train import OneProcess, budget_cosine, fit, vae_loss, warmup_cosine
from latentlab.unet import UNet, UNetConfig
from latentlab.vae import estimate_scaling_factor
from latentlab.vae_training import CHECKPOINT, DECAY, FRACTION, WIDTHS

SIDE = Rule(lambda v: v >= 8 and v % 8 == 0, "a positive multiple of 8 (the VAE factor)")


@dataclass
class DenoiserTraining:
    """One run of `latentlab train unet`; each field is a flag (num_images: --num-images).

    The defaults are the command line's; recipes/denoiser.toml and denoiser_pixel.toml hold the shipped runs'.
    """

    job: ClassVar[str] = "unet"

    space: Literal["latent", "pixel"] = setting(  # latents of 64x64 images are 4 x 8 x 8
        "latent", "denoise course-VAE latents or the pixels themselves")
    vae: str | None = setting(  # pixel space has none
        "vae", "the VAE whose latents are denoised: a shipped model's name or a .safetensors file", kind="path")
    steps: int = setting(4000, "optimizer steps (an upper bound with a time budget)", at_least(1), smoke=2)
    time_budget: float | None = setting(  # equal wall-clock time: how lesson 08 compares latent and pixel space
        None, "stop after this many seconds of training; the learning rate decays over them", above(0))
    batch_size: int = setting(32, "samples per step", at_least(1), smoke=4)
    lr: float = setting(2e-3, "peak AdamW learning rate (warm-up, then cosine)", above(0))
    num_images: int = setting(  # with --data: a fixed pool, drawn once and kept (64x64: 48 KB each), then encoded
        4096, "training images: generated Shapes, or with --data that many random crops of the folder, drawn once, "
        "kept in memory and encoded once", at_least(1), smoke=8)
    image_size: int = setting(  # smoke 32: a factor-16 VAE (lesson 10's sweep) still gives a 2x2 latent
        64, "side of the training images (Shapes, or the folder's crops)", SIDE, smoke=32)
    data: str | None = setting(  # not in recipes: a recipe rebuilds from what the package ships
        None, "a folder of your own images to train on instead of Shapes (its crops); unconditional, samples not judged",
        kind="machine")
    block_out_channels: tuple[int, ...] = setting(  # pixels: 3 more levels of the first width (the same 4x4 end)
        (32, 64), "UNet widths, one per latent resolution", WIDTHS, kind="model")
    layers_per_block: int = setting(1, "ResBlocks per down level", at_least(1), kind="model")
    norm_num_groups: int = setting(16, "GroupNorm groups; must divide every width", at_least(1), kind="model")
    attention_head_dim: int = setting(32, "channels per attention head", at_least(1), kind="model")
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = setting(
        "squaredcos_cap_v2", "the noise schedule, named as in diffusers (the sampler uses the same)")
    finetune_vae: int = setting(  # a photo VAE draws shapes with wrong colours and lumpy outlines until adapted
        0, "first adapt the VAE to the training images for this many steps; saved beside the denoiser as <out>_vae",
        at_least(0), smoke=2)
    min_snr_gamma: float = setting(5.0, "Min-SNR loss weighting (0: the plain loss)", at_least(0))
    classes: bool = setting(  # one draw per requested shape; the UNet gets a class embedding (num_class_embeds)
        False, "condition the UNet on the shape's class, for classifier-free guidance", kind="model")
    uncond_prob: float = setting(  # Ho & Salimans 2022 train with 0.1 or 0.2
        0.1, "with classes: share of training labels replaced by 'no class', so one model learns both", FRACTION)
    guidance: float = setting(  # 1: the conditional model as it is; above 1 pushes towards the requested class
        1.0, "with classes: classifier-free guidance scale of the judged samples", at_least(0))
    average: float | None = setting(  # samples from the average are cleaner than from the last step's weights
        None, "keep a moving average of the weights with this decay (e.g. 0.999) and ship it", DECAY)
    eval_samples: int = setting(  # a folder has no judge: nothing says what a good sample of it is
        256, "samples judged at the end (with --data: saved as <out>_samples.png; 0: none)", at_least(0), smoke=2)
    eval_steps: int = setting(50, "DDIM steps for those samples", at_least(1), smoke=2)
    seed: int = setting(0, "seed of the shapes, the initial weights, the noise and the judged samples", at_least(0))
    checkpoint_every: int = setting(1000, "save the checkpoint every N steps and at the end", at_least(1))
    device: str | None = setting(None, "cpu, cuda or mps (default: the best available)", kind="machine")
    threads: int | None = setting(None, "CPU threads (default: the cores that are free)", at_least(1))
    mixed_precision: Literal["auto", "no", "bf16"] = setting(  # as in VAETraining
        "auto", "bf16 mixed precision or no (float32); auto: bf16 on a CUDA GPU that has it", kind="machine")
    resume: bool = setting(False, "continue an interrupted run from the resume state beside --out", kind="machine")
    out: str | None = setting("denoiser.safetensors", "checkpoint to write; its manifest goes beside it as .json",
                              CHECKPOINT, kind="path")

    def __post_init__(self):
        validate(self)
        if self.space == "pixel":
            if self.finetune_vae:
                raise InputError("finetune_vae adapts a VAE, and pixel space has none; set it to 0 or use latent space.")
            self.vae = None
        elif self.vae is None:
            raise InputError("latent space needs a VAE: name a shipped one (e.g. vae) or a .safetensors file.")
        if self.classes and self.data is not None:
            raise InputError("--classes yes needs labelled images, and a folder has no labels; leave --classes at no "
                             "with --data, or drop --data to train on the labelled Shapes.")
        if self.guidance != 1.0 and not self.classes:
            raise InputError(f"guidance {self.guidance} steers samples towards a class; set classes to yes, or "
                             "leave guidance at 1.")
        if self.num_images < self.batch_size:
            raise InputError(f"num_images {self.num_images} must be at least one batch ({self.batch_size}).")
        if self.resume and self.time_budget is not None:
            raise InputError("--resume cannot continue a --time-budget run, whose learning rate follows the clock; "
                             "start it afresh without --resume.")

    def outputs(self) -> list[Path]:
        out = Path(self.out)
        return [out] + ([out.with_name(f"{out.stem}_vae.safetensors")] if self.finetune_vae else [])


def unet_config(settings: DenoiserTraining, latent: tuple[int, int] = (4, 8)) -> UNetConfig:
    """the UNet a run trains: attention at the lowest levels; pixels get three extra levels of the first width

    `latent` is the VAE's (channels, down-sampling factor): (4, 8) for the course VAE, others in lesson 10's sweep.
    """
    widths, (latent_channels, factor) = settings.block_out_channels, latent
    if settings.space == "latent" and settings.image_size % factor:
        raise InputError(f"image_size {settings.image_size} must be a multiple of the VAE's factor {factor}.")
    channels, side = ((latent_channels, settings.image_size // factor) if settings.space == "latent"
                      else (3, settings.image_size))
    levels = widths if settings.space == "latent" else (widths[0],) * 3 + widths
    attention = [i >= len(levels) - len(widths) + 1 for i in range(len(levels))]
    return UNetConfig(
        sample_size=side, in_channels=channels, out_channels=channels, block_out_channels=levels,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        layers_per_block=settings.layers_per_block, norm_num_groups=settings.norm_num_groups,
        attention_head_dim=settings.attention_head_dim,
        num_class_embeds=len(SHAPE_CLASSES) + 1 if settings.classes else None,  # the last one: "no class"
    )


@torch.no_grad()
def encode_dataset(vae: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """images (N, 3, H, W) -> scaled latents (N, 4, H/8, W/8), in the images' order (their labels still fit):
    scale(vae.encode(x).mode(), scaling_factor), in batches"""
    return scale(torch.cat([vae.encode(chunk).mode().cpu() for chunk in images.split(batch_size)]), vae.scaling_factor)


def finetune_vae(
    vae: nn.Module,
    images: torch.Tensor,
    steps: int = 600,
    batch_size: int = 8,
    lr: float = 5e-4,
    beta: float = 1e-5,
    seed: int = 0,
    device: torch.device | str = "cpu",
    accelerator=None,
    first_items: list[int] | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Adapt a trained VAE to new images (e.g. Shapes, which a photo VAE never saw) -> (vae, history).

    Same loss as train_vae (MSE here, beta * KL); afterwards the scaling factor is measured again on the new images.
    With several processes (`accelerator`) all draw the same items for each step, `processes * batch_size` of them,
    and each takes its part (as in train_denoiser), with noise of its own; `first_items` receives its first part.
    """
    accelerator = accelerator or OneProcess(device)
    process, processes = accelerator.process_index, accelerator.num_processes
    generator = seed_everything(seed)
    order, measure = generator, generator  # one process: one stream for the items and the noise, as always
    if processes > 1:
        order = torch.Generator().manual_seed(stream_seed(seed, "order", 0))  # the same in every process
        measure = torch.Generator().manual_seed(stream_seed(seed, "scaling factor"))  # so every process agrees on it
        generator.manual_seed(stream_seed(seed, "noise", process, 0))  # its own

    def batches() -> Iterator[torch.Tensor]:
        while True:
            idx = torch.randint(0, len(images), (batch_size * processes,), generator=order)
            idx = idx[process * batch_size : (process + 1) * batch_size]  # this process's part (all of it for one)
            if first_items is not None and not first_items:
                first_items.extend(idx.tolist())
            yield images[idx]

    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, warmup=min(50, steps // 10 + 1)))
    history = fit(vae, lambda model, batch: vae_loss(model, batch, beta, "mse", generator), batches(), steps,
                  optimizer, scheduler, desc="fine-tune vae", accelerator=accelerator)
    with held(), torch.no_grad():  # a Ctrl-C now waits: the scaling factor belongs to the adapted VAE
        vae.config.scaling_factor = round(estimate_scaling_factor(vae, images[:256].to(_device(vae)), measure), 5)
    if stopping() and history:
        history[-1]["interrupted"] = True
    return vae.eval(), history


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


_DEFAULTS = DenoiserTraining  # the defaults of train_denoiser are those of `latentlab train unet`


def train_denoiser(
    data: torch.Tensor,
    config: UNetConfig | None = None,
    labels: torch.Tensor | None = None,
    steps: int = _DEFAULTS.steps,
    batch_size: int = _DEFAULTS.batch_size,
    lr: float = _DEFAULTS.lr,
    beta_schedule: str = _DEFAULTS.beta_schedule,
    seed: int = _DEFAULTS.seed,
    time_budget_s: float | None = _DEFAULTS.time_budget,
    min_snr_gamma: float | None = _DEFAULTS.min_snr_gamma,
    average: float | None = _DEFAULTS.average,
    uncond_prob: float = _DEFAULTS.uncond_prob,
    out: str | Path | None = None,
    checkpoint_every: int = _DEFAULTS.checkpoint_every,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int = 1000,
    device: torch.device | str = "cpu",
    metadata: Callable[[], dict] | None = None,
    desc: str = "train unet",
    accelerator=None,
    resumable: dict | None = None,
    resume: bool = False,
    first_items: list[int] | None = None,
):
    """Train a UNet to predict the noise added to `data` (Ho et al. 2020, Algorithm 1) -> (unet, history).

    Args:
        data: the training set (N, C, H, W): scaled VAE latents (N, 4, 8, 8) or images (N, 3, 64, 64).
        config: a UNetConfig whose in_channels match the data (default: UNetConfig() with the data's channels,
            and with labels a class embedding for each class + "no class").
        labels: (N,) class of each sample, 0 to K-1, for a class-conditional UNet (num_class_embeds = K + 1).
        beta_schedule: the noise schedule, named as in diffusers (the sampler must use the same).
        time_budget_s: stop after this many seconds (`steps` is then an upper bound) and decay the learning rate
            over the budget: the way to compare two models at equal wall-clock time.
        min_snr_gamma: Min-SNR loss weighting (see diffusion.diffusion_loss); None for Ho et al.'s plain loss.
        average: with a decay (e.g. 0.999), the moving average of the weights is what is checkpointed and returned.
        accelerator, resumable, resume: as in train.fit; `first_items` receives this process's first batch's indices.
    Several processes share one order of the data, each taking its part of every batch and drawing its own noise.
        uncond_prob: with labels, the share of them replaced by "no class" at each step (classifier-free guidance).
    """
    if not isinstance(data, torch.Tensor) or data.ndim != 4:
        raise InputError("data must be a tensor (N, C, H, W) of latents or images; encode images with encode_dataset.")
    if len(data) < batch_size:
        raise InputError(f"data holds {len(data)} samples, fewer than one batch of {batch_size}; add data or lower "
                         "batch_size.")
    C, H = data.shape[1], data.shape[2]
    classes = None if labels is None else int(labels.max()) + 2  # the classes seen, and "no class"
    config = config or UNetConfig(sample_size=H, in_channels=C, out_channels=C, num_class_embeds=classes)
    if config.in_channels != C:
        raise InputError(f"the UNet takes {config.in_channels} channels but the data has {C}; set in_channels and "
                         f"out_channels to {C}.")
    _check_labels(labels, len(data), config)
    config = replace(config, sample_size=H)
    accelerator = accelerator or OneProcess(device)
    process, processes = accelerator.process_index, accelerator.num_processes
    if len(data) < batch_size * processes:
        raise InputError(f"data holds {len(data)} samples, fewer than a batch of {batch_size} for each of {processes} "
                         "processes; add data or lower batch_size.")
    start = saved_step(state_path(out), resumable) if resume else 0
    generator = seed_everything(seed)
    model = UNet(config)  # the same initial weights in every process
    acp = alphas_cumprod(make_betas(beta_schedule, config.num_train_timesteps)).to(accelerator.device)
    order = generator  # one process from the start: one stream for the order and the noise, as always
    if processes > 1 or start:
        order = torch.Generator().manual_seed(stream_seed(seed, "order", start))  # the same in every process
        generator.manual_seed(stream_seed(seed, "noise", process, start))  # its own

    def batches() -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        while True:
            for idx in torch.randperm(len(data), generator=order).split(batch_size * processes):
                if len(idx) == batch_size * processes:
                    idx = idx[process * batch_size : (process + 1) * batch_size]  # this process's part
                    if first_items is not None and not first_items:
                        first_items.extend(idx.tolist())
                    yield data[idx] if labels is None else (data[idx], labels[idx])

    def loss(unet: nn.Module, batch) -> dict[str, torch.Tensor]:
        x0, y = (batch, None) if labels is None else batch
        return {"loss": diffusion_loss(unet, x0, acp, generator, min_snr_gamma, y, uncond_prob)}

    warmup = min(100, steps // 10 + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    factor = warmup_cosine(steps, warmup) if time_budget_s is None else budget_cosine(time_budget_s, warmup)
    history = fit(
        model,
        loss,
        batches(),
        steps,
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, factor),
        evaluate=evaluate,
        eval_every=eval_every,
        checkpoint=out,
        checkpoint_every=checkpoint_every,
        metadata=metadata,
        desc=desc,
        time_budget_s=time_budget_s,
        average=average,
        accelerator=accelerator,
        resumable=resumable,
        resume=start > 0,
    )
    return model, history


def _check_labels(labels: torch.Tensor | None, n: int, config: UNetConfig) -> None:
    """labels must come with a class-conditional config, one per sample, each a class below the null one"""
    if labels is None:
        if config.num_class_embeds is not None:
            raise InputError("this UNet is class-conditional (num_class_embeds is set); pass the data's labels.")
        return
    if config.num_class_embeds is None:
        raise InputError("labels were given but the UNet is unconditional; set num_class_embeds to the number of "
                         "classes + 1, or leave the labels out.")
    if labels.shape != (n,) or labels.dtype.is_floating_point:
        raise InputError(f"labels must be {n} whole numbers, one per sample, not shape {tuple(labels.shape)}.")
    if int(labels.min()) < 0 or int(labels.max()) >= config.null_class:
        raise InputError(f"labels run from {int(labels.min())} to {int(labels.max())}, but the UNet knows classes 0 "
                         f"to {config.null_class - 1} ({config.null_class} is 'no class').")

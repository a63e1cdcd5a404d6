"""Distilling the tiny decoder (lessons 04 and 08): its settings `TinyDecoderTraining`, `distill`, and the job.

Knowledge distillation (Hinton et al. 2015, https://arxiv.org/abs/1503.02531) of a decoder, as TAESD was made: the
teacher VAE encodes a pool of training crops once (the colour-complete mix its own training used, latentlab.sources)
and decodes them; the student (latentlab.tiny_decoder) learns to map the same latents to the teacher's pictures
(`target = "teacher"`), to the crops themselves ("image"), or to both. Watched on the validation photos and the
ColorChecker, never on the test photos. `latentlab train tiny-decoder` writes the checkpoint and a manifest that
records the teacher's sha256; recipes/tiny_decoder.toml names the teacher `vae`, so the distillation is re-run
whenever the course VAE changes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn

from latentlab.chart import colorchecker, patch_errors
from latentlab.checkpoints import read_checkpoint, sha256_file, write_manifest
from latentlab.denoiser_job import load_vae, vae_file
from latentlab.device import describe, pick_device, seed_everything, set_threads
from latentlab.errors import InputError
from latentlab.images import psnr
from latentlab.interrupts import held, stop_on_ctrl_c, stopping
from latentlab.photosets import split_images
from latentlab.recipes import above, at_least, command, git_commit, setting, shown_path, validate
from latentlab.sources import colour_mix
from latentlab.tiny_decoder import TinyDecoder, TinyDecoderConfig
from latentlab.train import fit, warmup_cosine
from latentlab.vae_training import CHECKPOINT, FRACTION, FRACTIONS, WIDTHS

Target = Literal["teacher", "image", "both"]


@dataclass
class TinyDecoderTraining:
    """One run of `latentlab train tiny-decoder`; each field is a flag (batch_size: --batch-size).

    The defaults are those of recipes/tiny_decoder.toml but for the thread count and the teacher's picture size
    (the recipe: pool 512 pictures of 256 decoded whole, crop_scale 0.48-0.8); the lessons' runs use the defaults.
    """

    job: ClassVar[str] = "tiny-decoder"

    teacher: str | None = setting(  # the recipe names it "vae": the distillation follows the course VAE
        "vae", "the VAE whose decoder is imitated: a shipped model's name or a .safetensors file", kind="path")
    target: Target = setting(  # docs/tiny-decoder.md measures the three on the validation photos
        "teacher", "what the student learns to draw: the teacher's decode, the original crop, or both (the mean)")
    steps: int = setting(10000, "optimizer steps", at_least(1), smoke=2)
    batch_size: int = setting(4, "crops per step", at_least(1), smoke=2)
    pool: int = setting(1024, "training crops encoded and decoded by the teacher once, before training", at_least(1),
                        smoke=4)
    crop: int = setting(  # the teacher's GroupNorm sees the whole latent: large crops decode as whole pictures do
        128, "side of the training crops, a multiple of 8", at_least(8), smoke=16)
    teacher_crop: int | None = setting(  # the teacher's decode of a patch changes with the picture around it
        None, "side of the pictures the teacher decodes whole, a multiple of 8; the student learns from random crop x "
        "crop windows of them (default: crop, the whole picture)", at_least(8), smoke=16)
    crop_scale: tuple[float, float] = setting(  # 120-200 px regions of the 512 px photos: the lesson photos' density
        (0.24, 0.4), "crop region side as a fraction of the photo's shorter side: lo,hi", FRACTIONS)
    augment: float = setting(0.3, "fraction of the crops colour-augmented (as the VAE's colour mix)", FRACTION)
    dead_leaves: float = setting(0.3, "fraction of dead-leaves pictures in random colours", FRACTION)
    flat_patches: float = setting(  # synthetic.ColourPatches: the student must draw flat colours as the teacher does
        0.0, "fraction of pictures of flat patches in random colours", FRACTION)
    lr: float = setting(2e-3, "peak AdamW learning rate (warm-up, then cosine)", above(0))
    block_out_channels: tuple[int, ...] = setting(  # 3 widths: factor 8 (the last doubling is a pixel shuffle)
        (64, 32, 16), "widths at 1x, 2x and 4x the latent side", WIDTHS, kind="model")
    layers_per_block: int = setting(1, "residual blocks per width", at_least(1), kind="model")
    global_context: bool = setting(  # the teacher's GroupNorm reads the whole picture (docs/tiny-decoder.md)
        False, "after each width, rescale the features by the picture's own statistics (two 1x1 convolutions)",
        kind="model")
    seed: int = setting(0, "seed of the crops and the initial weights", at_least(0))
    eval_every: int = setting(1000, "validation PSNR and ColorChecker error every N steps and at the end", at_least(1))
    eval_size: int = setting(256, "side of the validation photos; the ColorChecker's patches: a quarter of it",
                             at_least(8), smoke=32)
    checkpoint_every: int = setting(1000, "save the checkpoint every N steps and at the end", at_least(1))
    device: str | None = setting(None, "cpu, cuda or mps (default: the best available)", kind="machine")
    threads: int | None = setting(None, "CPU threads (default: the cores that are free)", at_least(1))
    out: str | None = setting("tiny_decoder.safetensors", "checkpoint to write; its manifest goes beside it as .json",
                              CHECKPOINT, kind="path")

    def __post_init__(self):
        validate(self)
        if self.augment + self.dead_leaves + self.flat_patches > 1:
            raise InputError(f"augment + dead_leaves + flat_patches is "
                             f"{self.augment + self.dead_leaves + self.flat_patches:g}, more than 1 (the rest are "
                             "plain photo crops); e.g. --augment 0.3 --dead-leaves 0.3 --flat-patches 0.1.")
        if self.crop % 8:
            raise InputError(f"crop {self.crop} must be a multiple of 8 (the VAE factor), e.g. 64.")
        if self.teacher_crop is not None and (self.teacher_crop % 8 or self.teacher_crop < self.crop):
            raise InputError(f"teacher_crop {self.teacher_crop} must be a multiple of 8 and at least crop "
                             f"({self.crop}), e.g. {2 * self.crop}.")
        if self.pool < self.batch_size:
            raise InputError(f"pool {self.pool} must hold at least one batch ({self.batch_size}).")

    def outputs(self) -> list[Path]:
        return [Path(self.out)]


def student_config(settings: TinyDecoderTraining) -> TinyDecoderConfig:
    """the run's settings -> the tiny decoder's config"""
    return TinyDecoderConfig(block_out_channels=settings.block_out_channels, layers_per_block=settings.layers_per_block,
                             global_context=settings.global_context)


def photo_share(settings: TinyDecoderTraining) -> float:
    """the fraction of plain photo crops in the pool: what the other sources leave"""
    return 1 - settings.augment - settings.dead_leaves - settings.flat_patches


@torch.no_grad()
def teach(teacher: nn.Module, images: torch.Tensor, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, 3, H, W) -> (raw latents (N, 4, H/8, W/8), the teacher's decodes clamped to [-1, 1]), in batches"""
    latents, decoded = [], []
    for chunk in images.split(batch_size):
        z = teacher.encode(chunk).mode()
        latents.append(z)
        decoded.append(teacher.decode(z).clamp(-1, 1))
    return torch.cat(latents), torch.cat(decoded)


def distill_loss(student: nn.Module, latents: torch.Tensor, teacher_out: torch.Tensor, images: torch.Tensor,
                 target: Target = "teacher") -> dict[str, torch.Tensor]:
    """MSE of the student's decode to the teacher's, to the images, or the mean of both -> {"loss", "teacher", "image"}"""
    out = student(latents)
    to_teacher, to_image = (out - teacher_out).pow(2).mean(), (out - images).pow(2).mean()
    loss = {"teacher": to_teacher, "image": to_image, "both": 0.5 * (to_teacher + to_image)}[target]
    return {"loss": loss, "teacher": to_teacher.detach(), "image": to_image.detach()}


def windows(index: torch.Tensor, size: tuple[int, int], window: int,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """pool indices, the pictures' latent (h, w) -> (index, rows, columns): a random window x window cell window of
    each (no draw when the window is the whole picture, so such runs repeat those made before windows existed)"""
    rows, columns = (torch.randint(0, n - window + 1, (len(index),), generator=generator) if n > window
                     else torch.zeros(len(index), dtype=torch.long) for n in size)
    return index, rows, columns


def cut(x: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, window: int, scale: int) -> torch.Tensor:
    """(B, C, H, W), window corners in latent cells -> (B, C, window * scale, window * scale)"""
    return torch.stack([x[i, :, r * scale:(r + window) * scale, c * scale:(c + window) * scale]
                        for i, (r, c) in enumerate(zip(rows.tolist(), columns.tolist()))])


def scores(student: nn.Module, latents: torch.Tensor, teacher_out: torch.Tensor, images: torch.Tensor) -> dict:
    """mean PSNR (dB) of the student's clamped decodes against the teacher's and against the images"""
    out = student(latents).clamp(-1, 1)
    return {"psnr_vs_teacher": psnr(out, teacher_out).mean().item(), "psnr_vs_images": psnr(out, images).mean().item()}


def chart_worst(decoder, chart_latent: torch.Tensor, patch: int) -> float:
    """the ColorChecker's worst patch: the largest channel error of a patch's mean colour, /255"""
    return patch_errors(decoder(chart_latent).clamp(-1, 1).cpu(), patch, patch // 8).abs().max().item()


def distill(settings: TinyDecoderTraining, teacher: nn.Module, device: torch.device | str = "cpu",
            metadata=None, images: torch.Tensor | None = None) -> tuple[TinyDecoder, list[dict]]:
    """Train a tiny decoder to imitate `teacher`'s decoder on the settings' pool of crops -> (student, history).

    The pool (the settings' colour mix of teacher_crop-sided pictures, or `images` (N, 3, H, W) when given, e.g.
    lesson 08's shapes) is encoded and decoded by the teacher once, each picture whole; each step draws a batch of
    crop x crop windows from it. Every `eval_every` steps
    the student is scored on the validation photos (PSNR against the teacher's decode and against the photo) and
    on the ColorChecker. Ctrl-C stops early; the checkpoint is still written whole.
    """
    generator = seed_everything(settings.seed)
    student = TinyDecoder(student_config(settings))
    if images is None:
        mix = colour_mix(settings.teacher_crop or settings.crop, settings.pool, settings.seed,
                         photos=photo_share(settings), augmented=settings.augment, leaves=settings.dead_leaves,
                         patches=settings.flat_patches, scale=settings.crop_scale)
        images = torch.stack([mix[i] for i in range(settings.pool)])  # (pool, 3, teacher_crop, teacher_crop)
    images = images[: settings.pool].to(device)
    latents, taught = teach(teacher, images)
    window = settings.crop // 8  # in latent cells
    if min(latents.shape[-2:]) < window:
        raise InputError(f"the pictures ({images.shape[-2]}x{images.shape[-1]}) are smaller than crop "
                         f"{settings.crop}; give a smaller crop.")
    validation = split_images("validation", settings.eval_size).to(device)  # chooses settings; never trained on
    val_latents, val_taught = teach(teacher, validation)
    patch = max(8, settings.eval_size // 32 * 8)
    chart_latent, _ = teach(teacher, colorchecker(patch).to(device))

    def batches():
        while True:
            index = torch.randint(0, len(images), (settings.batch_size,), generator=generator)
            yield windows(index, tuple(latents.shape[-2:]), window, generator)

    def loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        index, rows, columns = batch
        return distill_loss(model, cut(latents[index], rows, columns, window, 1),
                            cut(taught[index], rows, columns, window, 8), cut(images[index], rows, columns, window, 8),
                            settings.target)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {**scores(model, val_latents, val_taught, validation), "chart_worst": chart_worst(model, chart_latent, patch)}

    def stored() -> dict:
        return {"config": asdict(student.config), **(metadata() if metadata else {})}

    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    schedule = warmup_cosine(settings.steps, warmup=min(100, settings.steps // 10 + 1))
    history = fit(student, loss, batches(), settings.steps, optimizer,
                  torch.optim.lr_scheduler.LambdaLR(optimizer, schedule), evaluate=evaluate,
                  eval_every=settings.eval_every, checkpoint=settings.out, checkpoint_every=settings.checkpoint_every,
                  metadata=stored, device=device, desc="distil tiny decoder")
    if stopping() and history:
        history[-1]["interrupted"] = True
    return student, history


def run(settings: TinyDecoderTraining, recipe: dict | None = None) -> int:
    """`latentlab train tiny-decoder`: distil, write the checkpoint and its manifest -> exit code (130 after Ctrl-C)"""
    with stop_on_ctrl_c(sigterm=True):  # a scheduler's or launcher's SIGTERM saves like Ctrl-C
        TinyDecoder(student_config(settings))  # bad widths: refused now
        source = vae_file(settings.teacher)  # a bad teacher is refused before anything runs
        set_threads(settings.threads)
        device = pick_device(settings.device)
        line, out, commit = command(settings), Path(settings.out), git_commit()
        teacher_record = {"file": shown_path(source), "sha256": sha256_file(source),
                          "command": read_checkpoint(source)[1].get("command")}
        print(f"{line}\non {describe(device)}", file=sys.stderr)
        try:
            teacher = load_vae(source, device)
            start = time.perf_counter()
            student, history = distill(settings, teacher, device, metadata=lambda: {
                "command": line, "teacher_sha256": teacher_record["sha256"]})
        except KeyboardInterrupt:
            print("latentlab train tiny-decoder: interrupted before training began; nothing was written.",
                  file=sys.stderr)
            return 130
        with held():  # a Ctrl-C now waits until the manifest is written beside the checkpoint
            wall = time.perf_counter() - start
            last = history[-1] if history else {"step": 0}
            interrupted = bool(last.get("interrupted"))
            photos = photo_share(settings)
            side = settings.teacher_crop or settings.crop
            manifest = {
                "name": out.stem,
                "command": line,
                **({"recipe": recipe} if recipe else {}),
                "git_commit": commit,
                "seed": settings.seed,
                "data": (f"latentlab.sources.colour_mix(photos={photos:g}, augmented={settings.augment:g}, "
                         f"leaves={settings.dead_leaves:g}, patches={settings.flat_patches:g}): a pool of "
                         f"{settings.pool} pictures of {side}x{side} of the training photos, encoded and decoded once "
                         f"by the teacher, each whole; the student "
                         f"learns from random {settings.crop}x{settings.crop} windows of them; the validation and "
                         "test photos are never trained on"),
                "steps": settings.steps,
                "steps_done": len(history),
                "interrupted": interrupted,
                "wall_time_s": round(wall, 3),  # to the millisecond: a smoke run takes well under 0.05 s
                "device": describe(device),
                "torch": torch.__version__,
                "training": asdict(settings),
                "config": asdict(student.config),
                "parameters": student.num_parameters(),
                "teacher": teacher_record,
                "final": {k: round(v, 5) for k, v in last.items() if k not in ("step", "interrupted")},
                "history": [{k: round(v, 5) for k, v in h.items() if k != "interrupted"}
                            for h in history if h["step"] % 50 == 0 or "psnr_vs_images" in h],
                "sha256": sha256_file(out),
            }
            write_manifest(out.with_suffix(".json"), manifest)
        done = "interrupted after" if interrupted else "after"
        score = (f"; validation PSNR {last['psnr_vs_images']:.2f} dB to the photos, {last['psnr_vs_teacher']:.2f} dB to "
                 f"the teacher" if "psnr_vs_images" in last else "")
        print(f"wrote {out} and {out.with_suffix('.json')} {done} {len(history)} steps in {wall:.0f} s{score}",
              file=sys.stderr)
        return 130 if interrupted or stopping() else 0

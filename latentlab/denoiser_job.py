"""The job behind `latentlab train unet` (lesson 08): adapt the VAE, train, judge, and write checkpoints + manifests.

The settings and the training itself are in denoiser_training; this module makes a run into files: the
denoiser's checkpoint and manifest, and with `finetune_vae` the adapted VAE's (<name>_vae) beside them. The
judge samples with DDIM, decodes and scores the shapes (latentlab.quality); a class-conditional model is asked for
each shape equally often, with classifier-free guidance. With `data` (a folder of your own) there is nothing to
judge: the samples are saved as a picture (<name>_samples.png) and only their colour statistics are recorded.
Ctrl-C (or SIGTERM) leaves every file written whole and marked interrupted, and skips what was not yet judged (exit
130). A little longer than 300 lines: one run's files (the adapted VAE's, the denoiser's, their manifests) are
written in one place, so that what an interrupted run leaves behind can be read in one module.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import DDIMScheduler
from torch import nn

from latentlab import parallel
from latentlab.checkpoints import (
    check_finite,
    course_weights,
    load_finite,
    read_checkpoint,
    save_checkpoint,
    sha256_file,
    write_manifest,
)
from latentlab.data import SHAPE_CLASSES, heldout_images, shapes_batch
from latentlab.denoiser_training import DenoiserTraining, encode_dataset, finetune_vae, train_denoiser, unet_config
from latentlab.device import describe, pick_device
from latentlab.diffusion import sample
from latentlab.errors import InputError
from latentlab.images import grid, psnr, to_pil
from latentlab.interrupts import held, stop_on_ctrl_c, stopping
from latentlab.latents import unscale
from latentlab.quality import by_request, judge, recognised_as_asked, requests
from latentlab.recipes import command, git_commit
from latentlab.resume import saved_step, state_path
from latentlab.sources import FolderCrops
from latentlab.unet import UNet, UNetConfig
from latentlab.vae import VAE, VAEConfig
from latentlab.vae_training import heldout_psnr, must_match


def vae_file(name: str) -> Path:
    """a shipped VAE's name ("vae": its sha256 checked) or a VAE checkpoint's path -> the checked file"""
    path = Path(name) if name.endswith(".safetensors") or "/" in name else course_weights(name)[0]
    tensors, metadata = read_checkpoint(path)
    if "space" in metadata or "config" not in metadata:
        raise InputError(f"{path} is not a VAE checkpoint (written by `latentlab train vae`); vae must name one.")
    check_finite(tensors, path)
    return path


def latent_geometry(path: Path) -> tuple[int, int]:
    """a VAE checkpoint -> its latent's (channels, down-sampling factor): (4, 8) for the course VAE"""
    config = VAEConfig(**json.loads(read_checkpoint(path)[1]["config"]))
    return config.latent_channels, 2 ** (len(config.block_out_channels) - 1)


def load_vae(path: Path, device: torch.device) -> VAE:
    """a VAE checkpoint -> the VAE in eval mode, built with the config stored beside its weights"""
    vae = VAE(VAEConfig(**json.loads(read_checkpoint(path)[1]["config"])))
    load_finite(path, vae)
    return vae.to(device).eval()


def run(settings: DenoiserTraining, recipe: dict | None = None) -> int:
    """`latentlab train unet`: (adapt the VAE,) train, judge, write checkpoints and manifests -> exit code"""
    with stop_on_ctrl_c(sigterm=True):  # a scheduler's or launcher's SIGTERM saves like Ctrl-C
        source = vae_file(settings.vae) if settings.space == "latent" else None
        config = unet_config(settings, latent_geometry(source) if source else (4, 8))
        UNet(config)  # bad widths or groups are refused now, not after the data is ready
        line, out = command(settings), Path(settings.out)
        resumed = saved_step(state_path(out), must_match(settings)) if settings.resume else 0  # refused now if wrong
        accelerator = parallel.accelerator_for(pick_device(settings.device), settings.mixed_precision, settings.threads)
        device, main, first = accelerator.device, accelerator.is_main_process, []
        record = {**({"recipe": recipe} if recipe else {}), "git_commit": git_commit()}
        folder = FolderCrops(settings.data, settings.image_size, settings.num_images, settings.seed) if settings.data \
            else None  # an empty or unreadable folder is refused before the first line
        if main:
            print(f"{line}\non {describe(device)}{parallel.spread(accelerator)}" +
                  (f"\nresuming after step {resumed} from {state_path(out)}" if resumed else ""), file=sys.stderr)
        written: list[Path] = []
        try:
            images, labels = training_images(settings, folder)
            if main and folder is not None and folder.warning():  # a folder's unreadable files, once all are drawn
                print(folder.warning(), file=sys.stderr)
            reference = rgb_statistics(images) if folder is not None else None  # what a folder's samples are beside
            vae, vae_path = None, source
            if source is not None:
                vae = load_vae(source, device)
                if settings.finetune_vae > 0 and resumed:  # the adapted VAE of the interrupted run
                    vae_path = settings.outputs()[1]
                    vae = load_vae(vae_path, device)
                elif settings.finetune_vae > 0:
                    vae_path = settings.outputs()[1]
                    if _finetune_and_save(vae, source, images, folder, settings, line, record, vae_path, accelerator):
                        return _stopped(f"while adapting the VAE; wrote {vae_path} and its manifest; the denoiser "
                                        "was not trained.")
                    written.append(vae_path)
            data = encode_dataset(vae, images.to(device)) if vae is not None else images
            del images
            extra = {"space": settings.space, "vae": vae_path.stem if vae_path else None,
                     "beta_schedule": settings.beta_schedule, "prediction_type": "epsilon",
                     **({"classes": list(SHAPE_CLASSES)} if settings.classes else {})}  # class k, then "no class"
            start = time.perf_counter()
            model, history = train_denoiser(
                data, config, labels, uncond_prob=settings.uncond_prob,
                steps=settings.steps, batch_size=settings.batch_size, lr=settings.lr,
                beta_schedule=settings.beta_schedule, seed=settings.seed, time_budget_s=settings.time_budget,
                min_snr_gamma=settings.min_snr_gamma or None, average=settings.average, out=out, checkpoint_every=settings.checkpoint_every,
                desc=f"train unet ({settings.space})",
                metadata=lambda: {"config": asdict(config), "command": line, **extra}, accelerator=accelerator,
                resumable=must_match(settings), resume=bool(resumed), first_items=first)
        except KeyboardInterrupt:
            return _stopped(f"before the denoiser's training began; wrote {', '.join(map(str, written)) or 'nothing'}.")
        processes = parallel.record(accelerator, model, first)  # every process takes part
        accelerator.end_training()
        if not main:
            return 130 if stopping() else 0
        wall = time.perf_counter() - start
        interrupted = bool(history and history[-1].get("interrupted"))
        quality = {}
        if settings.eval_samples and not interrupted:
            try:
                quality = (judge_denoiser(model, vae, settings, config) if folder is None else
                           describe_samples(model, vae, settings, config, reference, out))
            except KeyboardInterrupt:
                interrupted = True  # the checkpoint is whole; the manifest says the judging did not finish
        with held():  # a Ctrl-C now waits until the manifest is written beside the checkpoint
            ms_per_step = [1000 * (b["time_s"] - a["time_s"]) for a, b in zip(history, history[1:])]
            manifest = {
                "name": out.stem,
                "command": line,
                **record,
                "seed": settings.seed,
                "data": describe_images(settings, folder) + (f"; encoded by the VAE {extra['vae']!r} (posterior "
                                                             "mean x scaling_factor)" if vae is not None else "; pixels"),
                **extra,
                **({"vae_sha256": sha256_file(vae_path)} if vae_path else {}),
                "steps": settings.steps,
                "steps_done": len(history),
                **({"resumed_after": resumed} if resumed else {}),
                "time_budget_s": settings.time_budget,
                "interrupted": interrupted,
                "wall_time_s": round(wall, 3),  # to the millisecond: a smoke run takes well under 0.05 s
                "ms_per_step_median": round(sorted(ms_per_step)[len(ms_per_step) // 2], 1) if ms_per_step else None,
                "device": describe(device),
                "processes": processes,
                "torch": torch.__version__,
                "training": asdict(settings),
                "config": asdict(config),
                "parameters": model.num_parameters(),
                "final": {"loss_last_100": round(sum(h["loss"] for h in history[-100:]) / max(1, len(history[-100:])),
                                                 5)},
                "quality": quality,
                "history": [{k: round(v, 5) for k, v in h.items() if k != "interrupted"}
                            for h in history if h["step"] % 50 == 0],
                "sha256": sha256_file(out),
            }
            write_manifest(out.with_suffix(".json"), manifest)
        if interrupted:
            return _stopped(f"after {len(history)} steps; wrote {out} and {out.with_suffix('.json')} (marked "
                            "interrupted, not judged; --resume yes continues).")
        print(f"wrote {out} and {out.with_suffix('.json')} after {len(history)} steps in {wall:.0f} s; "
              f"{quality.get('summary', '')}", file=sys.stderr)
        return 130 if stopping() else 0


def training_images(settings: DenoiserTraining, folder: FolderCrops | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """the run's images (N, 3, S, S) in [-1, 1] and labels (None unless classes): `num_images` generated Shapes, or
    as many random crops of the --data folder, drawn once (the same on every process) and kept"""
    if folder is not None:
        return torch.stack([folder[i] for i in range(settings.num_images)]), None
    images, labels = shapes_batch(settings.num_images, size=settings.image_size, seed=settings.seed)
    return images, labels if settings.classes else None


def describe_images(settings: DenoiserTraining, folder: FolderCrops | None) -> str:
    """the manifests' "data" line: how the training images were made"""
    if folder is None:
        return f"latentlab.data.shapes_batch({settings.num_images}, size={settings.image_size}, seed={settings.seed})"
    return (f"latentlab.sources.FolderCrops({settings.data!r}, size={settings.image_size}, length={settings.num_images}, "
            f"seed={settings.seed}): {settings.num_images} random crops (a quarter to all of an image's shorter side, "
            f"mirrored at random) of {folder.describe()}")


def _stopped(what: str) -> int:
    print(f"latentlab train unet: interrupted {what}", file=sys.stderr)
    return 130


def _finetune_and_save(vae: VAE, source: Path, images: torch.Tensor, folder: FolderCrops | None,
                       settings: DenoiserTraining, line: str, record: dict, path: Path, accelerator) -> bool:
    """adapt the VAE (from the file `source`) to the training images, save it and its manifest -> whether interrupted"""
    start, device, first = time.perf_counter(), accelerator.device, []
    _, history = finetune_vae(vae, images, steps=settings.finetune_vae, seed=settings.seed, accelerator=accelerator,
                              first_items=first)
    wall = time.perf_counter() - start
    processes = parallel.record(accelerator, vae, first)  # every process takes part
    if not accelerator.is_main_process:  # the main process writes; the others wait for its file
        accelerator.wait_for_everyone()
        return bool(history and history[-1].get("interrupted")) or stopping()
    with held():
        save_checkpoint(path, vae, {"config": asdict(vae.config), "command": line})
    interrupted = bool(history and history[-1].get("interrupted"))
    report = {}
    if not interrupted:
        try:
            if folder is None:
                unseen, _ = shapes_batch(256, size=settings.image_size, seed=settings.seed + 1000)  # shapes it never saw
            else:  # crops it never saw, of the same images: a folder has no held-out part
                unseen = torch.stack([folder[settings.num_images + i] for i in range(256)])
            with torch.no_grad():
                recon = torch.cat([vae(x.to(device)).cpu() for x in unseen.split(64)]).clamp(-1, 1)
                photo_psnr = heldout_psnr(vae, heldout_images(256).to(device))  # what the adaptation cost on photos
            unseen_psnr = round(psnr(recon, unseen).mean().item(), 2)
            if folder is None:
                verdict = judge(recon)
                report = {"heldout_shapes": {"psnr": unseen_psnr, "recognised": verdict.recognised,
                                             "summary": str(verdict)}}
            else:
                report = {"other_crops_psnr": unseen_psnr}  # 256 crops past the training pool (indices N to N+255)
            report["heldout_photos_psnr"] = round(photo_psnr, 2)
        except KeyboardInterrupt:
            interrupted = True
    with held():
        manifest = {
            "name": path.stem,
            "command": line,
            **record,
            "made_by": f"the VAE {source.stem!r} fine-tuned for {settings.finetune_vae} steps (batch 8 a process, "
                       "MSE + 1e-5 KL) on the training images, before the denoiser is trained on its latents",
            "base_vae_sha256": sha256_file(source),  # the VAE it started from
            "seed": settings.seed,
            "data": describe_images(settings, folder),
            "steps": settings.finetune_vae,
            "steps_done": len(history),
            "interrupted": interrupted,
            "wall_time_s": round(wall, 3),  # to the millisecond: a smoke run takes well under 0.05 s
            "processes": processes,
            "training": asdict(settings),
            "config": asdict(vae.config),
            **report,
            "sha256": sha256_file(path),
        }
        write_manifest(path.with_suffix(".json"), manifest)
    accelerator.wait_for_everyone()
    if not interrupted:
        shapes = report.get("heldout_shapes")
        print(f"wrote {path}: " + (f"held-out shapes {shapes['psnr']} dB, {shapes['summary']}" if shapes else
                                   f"other crops of the folder {report['other_crops_psnr']} dB"), file=sys.stderr)
    return interrupted or stopping()


def draw_samples(model: nn.Module, vae: nn.Module | None, settings: DenoiserTraining, config: UNetConfig,
                 asked: torch.Tensor | None = None) -> torch.Tensor:
    """`settings.eval_samples` samples by DDIM (`eval_steps`), decoded -> images (N, 3, S, S) on the CPU"""
    scheduler = DDIMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=settings.beta_schedule,
                              clip_sample=vae is None)
    shape = (settings.eval_samples, config.in_channels, config.sample_size, config.sample_size)
    x = sample(model, shape, scheduler, settings.eval_steps, torch.Generator().manual_seed(settings.seed + 1),
               class_labels=asked, guidance=settings.guidance if asked is not None else 1.0)
    with torch.no_grad():
        images = torch.cat([vae.decode(unscale(z, vae.scaling_factor)) for z in x.split(64)]) if vae is not None else x
    return images.cpu()


def judge_denoiser(model: nn.Module, vae: nn.Module | None, settings: DenoiserTraining, config: UNetConfig) -> dict:
    """sample with DDIM, decode, and judge the shapes (latentlab.quality) -> the manifest's quality entry

    A class-conditional model is asked for every shape equally often (guidance `settings.guidance`); the entry then
    also says how many samples were recognised as the class asked for, overall and per class.
    """
    asked = requests(settings.eval_samples) if config.num_class_embeds is not None else None
    start = time.perf_counter()
    verdict = judge(draw_samples(model, vae, settings, config, asked))
    conditional = {} if asked is None else {
        "guidance": settings.guidance, "recognised_as_asked": round(recognised_as_asked(verdict, asked), 4),
        "by_request": by_request(verdict, asked)}
    return {"samples": settings.eval_samples, "ddim_steps": settings.eval_steps, **conditional,
            "recognised": round(verdict.recognised, 4), "flat": round(verdict.flat, 4),
            "matched": round(verdict.matched, 4), "mean_iou": round(verdict.mean_iou, 3),
            "class_counts": verdict.class_counts, "balance": round(verdict.balance(), 3),
            "sampling_s": round(time.perf_counter() - start, 1),
            "summary": str(verdict) + (f"; as asked {100 * conditional['recognised_as_asked']:.1f}%" if conditional
                                       else "")}


def rgb_statistics(images: torch.Tensor) -> dict:
    """images (N, 3, H, W) in [-1, 1] -> {"mean": [r, g, b], "std": [r, g, b]} over all their pixels"""
    return {"mean": [round(v, 3) for v in images.mean((0, 2, 3)).tolist()],
            "std": [round(v, 3) for v in images.std((0, 2, 3)).tolist()]}


def describe_samples(model: nn.Module, vae: nn.Module | None, settings: DenoiserTraining, config: UNetConfig,
                     training: dict, out: Path) -> dict:
    """a folder's run: samples saved as <out>_samples.png, their colour statistics beside the training crops' (no
    judge: nothing says what a good sample of your folder is) -> the manifest's quality entry"""
    start = time.perf_counter()
    images = draw_samples(model, vae, settings, config).clamp(-1, 1)
    picture = out.with_name(f"{out.stem}_samples.png")
    with held():  # the picture is written whole
        to_pil(grid(images[:64])).save(picture)
    return {"judged": False, "why": "the Shapes judge recognises generated shapes only; samples of your own folder "
                                    "have no automatic check: look at the picture",
            "samples": settings.eval_samples, "ddim_steps": settings.eval_steps, "picture": picture.name,
            "samples_rgb": rgb_statistics(images), "training_rgb": training,
            "sampling_s": round(time.perf_counter() - start, 1),
            "summary": f"not judged (your own folder); {min(64, len(images))} of {len(images)} samples in {picture}"}

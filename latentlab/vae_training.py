"""Training the course VAE (lessons 02-03): its settings `VAETraining`, `train_vae`, and `latentlab train vae`.

The loss is train.vae_loss (reconstruction + beta * KL) on random crops of the training photos (or of a folder of
your own, --data), optionally mixed with colour-augmented crops and dead leaves (--augment, --dead-leaves: the
colour-complete mix of issue 12, latentlab.sources), watched on the held-out photos and the ColorChecker. The
shipped VAE is five runs of this job, each from the one before: recipes/vae.toml holds their settings, docs/vae.md
and docs/vae-colour.md the trials that chose them (the last two runs are for colour). Each run writes
its checkpoint and a manifest beside it: the command that reproduces it, its settings, what it scored, and the
record of the run it started from. Longer than 300 lines (about 340): one job's settings, data, loop and record
(one process or several, resumable), kept together.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from latentlab import gcompris as gcompris_photos
from latentlab import wallpapers as wallpaper_photos
from latentlab.chart import colorchecker, patch_errors
from latentlab.checkpoints import (
    check_finite,
    load_finite,
    read_checkpoint,
    save_checkpoint,
    sha256_file,
    write_manifest,
)
from latentlab.data import TRAIN_PHOTOS, PhotoCrops, batches, heldout_images
from latentlab.device import describe, pick_device, seed_everything, stream_seed
from latentlab.errors import InputError
from latentlab.fetch import cached_folder, fetch_images
from latentlab.images import psnr
from latentlab.interrupts import held, stop_on_ctrl_c, stopping
from latentlab.recipes import Rule, above, at_least, command, git_commit, setting, shown_path, validate
from latentlab.resume import saved_step, state_path
from latentlab.sources import FolderCrops, colour_mix
from latentlab.train import OneProcess, fit, vae_loss, warmup_cosine
from latentlab.vae import VAE, VAEConfig, estimate_scaling_factor

FRACTIONS = Rule(lambda v: 0 < v[0] <= v[1] <= 1, "two fractions lo,hi with 0 < lo <= hi <= 1")
WIDTHS = Rule(lambda v: len(v) > 0 and min(v) > 0, "{kind}, each > 0")
FRACTION = Rule(lambda v: 0 <= v <= 1, "a fraction between 0 and 1")
DECAY = Rule(lambda v: 0 < v < 1, "a decay strictly between 0 and 1 (e.g. 0.999)")
CHECKPOINT = Rule(lambda v: v.endswith(".safetensors"), "a path ending in .safetensors (the manifest goes beside it)")
# what may change when a run is resumed: where and how it runs, and how often it reports; everything else must match
FREE_ON_RESUME = {"device", "threads", "mixed_precision", "resume", "out", "eval_every", "eval_size", "checkpoint_every",
                  "eval_samples", "eval_steps"}


def must_match(settings) -> dict:
    """the settings a resumed run must share with the run that saved the state"""
    return {k: v for k, v in asdict(settings).items() if k not in FREE_ON_RESUME}


@dataclass
class VAETraining:
    """One run of `latentlab train vae`; each field is a flag (batch_size: --batch-size).

    The defaults are the settings of the shipped VAE's first run (recipes/vae.toml), but for the thread count.
    """

    job: ClassVar[str] = "vae"

    steps: int = setting(16000, "optimizer steps", at_least(1), smoke=2)
    batch_size: int = setting(16, "crops per step", at_least(1), smoke=2)  # 16 of 32x32 beat 4 of 64x64 (docs/vae.md)
    crop: int = setting(32, "side of the training crops, a multiple of the VAE factor", at_least(8), smoke=16)
    crop_scale: tuple[float, float] = setting(  # 30-150 px regions: around the density of the 256x256 lesson images
        (0.06, 0.3), "crop region side as a fraction of the photo's shorter side (512 px at most): lo,hi", FRACTIONS)
    lr: float = setting(1e-3, "peak AdamW learning rate (warm-up, then cosine)", above(0))
    beta: float = setting(1e-5, "KL weight per image value (SD used 1e-6)", at_least(0))
    reconstruction: Literal["mse", "l1"] = setting("mse", "mse (PSNR is a function of it) or l1 (sharper edges)")
    rgb_shuffle: bool = setting(False, "shuffle each crop's colour channels (a colour augmentation)")
    augment: float = setting(  # photos turned to other hues are still photos: colour without losing photo statistics
        0.0, "fraction of the crops colour-augmented (hue turn, channel order, saturation, gamma)", FRACTION)
    dead_leaves: float = setting(  # occluding shapes in colours from the whole RGB cube (latentlab.synthetic)
        0.0, "fraction of the items that are dead-leaves pictures instead of photo crops", FRACTION)
    fine_leaves: float = setting(  # foliage, gravel, tiles: texture the photos and the default leaves lack (issue 12)
        0.0, "fraction of the items that are dead leaves with many tiny leaves (latentlab.synthetic.FINE_LEAVES)",
        FRACTION)
    flat_patches: float = setting(  # sharp-edged flat colours, as a colour chart has
        0.0, "fraction of the items that are grids of flat patches in random colours", FRACTION)
    foliage: float = setting(  # small leaves only: texture without large shapes (latentlab.synthetic.FOLIAGE)
        0.0, "fraction of the items that are dead leaves with only small leaves, 15000 a picture", FRACTION)
    wallpapers: float = setting(  # photographed leaves, grass and rock, read from two Debian packages
        0.0, "fraction of the items that are crops of 25 photographs from Debian's wallpaper packages "
        "(latentlab.wallpapers; python tools/debian_photos.py --install)", FRACTION)
    gcompris: float = setting(  # monuments among trees, animals in grass: photographs from Debian's gcompris-qt-data
        0.0, "fraction of the items that are crops of GCompris' 80 training photographs (latentlab.gcompris; python "
        "tools/debian_photos.py --install)", FRACTION)
    data: str | None = setting(  # not in recipes: a recipe rebuilds from what the package ships
        None, "a folder of your own images to crop (default: the bundled training photos)", kind="machine")
    data_url: str | None = setting(  # the only download for training: an online extra, never in a recipe
        None, "an http(s) address of a zip or tar archive of images, downloaded once into ~/.cache/latentlab/data "
        "($XDG_CACHE_HOME/latentlab/data if set) and cropped like --data", kind="machine")
    block_out_channels: tuple[int, ...] = setting(  # 4 entries: factor 8, like SD
        (16, 16, 32, 64), "channels per resolution", WIDTHS, kind="model")
    latent_channels: int = setting(4, "channels of the latent (4 like SD 1.x, 16 like SD3 and FLUX.1)", at_least(1),
                                   kind="model")  # lesson 10's sweep varies it with the factor
    layers_per_block: int = setting(  # not "model": with --init, more than init's grows it (see deepened_from)
        1, "ResBlocks per encoder resolution; with --init, more than init's adds ResBlocks that start as identities",
        at_least(1))
    norm_num_groups: int = setting(8, "GroupNorm groups; must divide every width", at_least(1), kind="model")
    train_part: Literal["all", "decoder"] = setting(  # SD's ft-MSE decoder was made this way: old latents stay valid
        "all", "all (encoder and decoder) or decoder (the encoder frozen: the latents, scaling factor included, stay "
        "exactly those of init)")
    init: str | None = setting(  # a second stage of training; GroupNorm needs the larger crops of later stages
        None, "start from this checkpoint; its architecture replaces the model settings", kind="path")
    average: float | None = setting(  # 0.999: roughly the last 1000 steps
        None, "keep a moving average of the weights with this decay (e.g. 0.999) and ship it", DECAY)
    seed: int = setting(0, "seed of the crops, the initial weights and the noise", at_least(0))
    eval_every: int = setting(1000, "held-out PSNR and ColorChecker error every N steps and at the end", at_least(1))
    eval_size: int = setting(256, "side of the held-out photos; the ColorChecker's patches: a quarter of it",
                             at_least(8), smoke=32)
    checkpoint_every: int = setting(1000, "save the checkpoint every N steps and at the end", at_least(1))
    device: str | None = setting(None, "cpu, cuda or mps (default: the best available)", kind="machine")
    threads: int | None = setting(None, "CPU threads (default: the cores that are free)", at_least(1))
    mixed_precision: Literal["auto", "no", "bf16"] = setting(  # bf16 keeps float32's range in half the memory (no loss scaling)
        "auto", "bf16 mixed precision or no (float32); auto: bf16 on a CUDA GPU that has it", kind="machine")
    resume: bool = setting(False, "continue an interrupted run from the resume state beside --out", kind="machine")
    out: str | None = setting("vae.safetensors", "checkpoint to write; its manifest goes beside it as .json", CHECKPOINT,
                       kind="path")

    def __post_init__(self):
        validate(self)
        if self.train_part == "decoder" and self.init is None:
            raise InputError("train_part decoder keeps the encoder of a trained VAE, and none is given; add "
                             "--init CHECKPOINT (a VAE from `latentlab train vae`) or use --train-part all.")
        if self.data is not None and self.data_url is not None:
            raise InputError("--data and --data-url both name the photos to crop; give one of them (a folder on this "
                             "machine, or the address of an archive of images).")
        if self.photos() < -1e-9:  # not 0: 1 - 0.7 - 0.3 is a rounding error below it
            raise InputError(f"augment + dead_leaves + fine_leaves + flat_patches + foliage + wallpapers + gcompris is "
                             f"{1 - self.photos():g}, more than 1 (the rest are plain photo crops); e.g. --augment 0.3 "
                             "--dead-leaves 0.3.")

    def photos(self) -> float:
        """the share of plain photo crops: what the other sources leave"""
        return (1 - self.augment - self.dead_leaves - self.fine_leaves - self.flat_patches - self.foliage - self.wallpapers
                - self.gcompris)

    def mixed(self) -> bool:
        """whether the run trains on the colour mix (augmented crops or synthetic pictures), not on plain crops alone"""
        return self.photos() < 1

    def outputs(self) -> list[Path]:
        return [Path(self.out)]


def vae_config(settings: VAETraining) -> VAEConfig:
    """the architecture a run trains: the settings', or that of the checkpoint given to `init`"""
    if settings.init is None:
        config = VAEConfig(block_out_channels=settings.block_out_channels, layers_per_block=settings.layers_per_block,
                           latent_channels=settings.latent_channels, norm_num_groups=settings.norm_num_groups)
    else:
        tensors, metadata = read_checkpoint(settings.init)
        if "space" in metadata:
            raise InputError(f"{settings.init} is a denoiser (UNet) checkpoint, not a VAE; init needs a checkpoint "
                             "written by `latentlab train vae`.")
        if "config" not in metadata:
            raise InputError(f"{settings.init} holds no VAE config in its metadata; init needs a checkpoint from "
                             "`latentlab train vae`.")
        try:
            config = VAEConfig(**json.loads(metadata["config"]))
        except (TypeError, ValueError) as err:
            raise InputError(f"{settings.init} holds a config that is not a VAE's ({err}); init needs a checkpoint "
                             "from `latentlab train vae`.") from None
        check_finite(tensors, settings.init)
        if settings.layers_per_block > config.layers_per_block:  # grown: see deepened_from
            config = replace(config, layers_per_block=settings.layers_per_block)
    if settings.crop % config.factor:
        raise InputError(f"crop {settings.crop} must be a multiple of the VAE factor {config.factor}.")
    return config


def shuffle_rgb(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 3, H, W) -> each image with its colour channels in a random order: colour augmentation."""
    order = torch.rand(batch.shape[:2], generator=generator).argsort(dim=1).to(batch.device)  # (B, 3)
    return batch.gather(1, order[:, :, None, None].expand_as(batch))


def data_folder(settings: VAETraining, download: bool = True) -> str | None:
    """the folder of photos to crop: --data, or --data-url's archive unpacked (downloaded the first time; with
    download=False only named, as the manifest needs); None for the bundled photos"""
    if settings.data_url is None:
        return settings.data
    if not download:
        return str(cached_folder(settings.data_url))
    return str(fetch_images(settings.data_url, say=lambda line: print(line, file=sys.stderr)))


def missing_inputs(settings: VAETraining) -> str | None:
    """what the run needs from this machine and does not find (the Debian wallpapers, GCompris' photos), as the end of
    a sentence; None when nothing is missing. `train recipe` asks before any stage runs"""
    why = wallpaper_photos.missing() if settings.wallpapers else None
    if why is not None:
        return f"crops Debian's wallpaper photos, and {why}"
    why = gcompris_photos.missing() if settings.gcompris else None
    return None if why is None else f"crops the GCompris photos, and {why}"


def training_data(settings: VAETraining) -> Dataset:
    """the run's training items: plain photo crops (as the shipped runs), a folder's crops, or the colour mix"""
    length, folder = settings.steps * settings.batch_size, data_folder(settings)
    if settings.mixed():
        return colour_mix(settings.crop, length, settings.seed, photos=settings.photos(), augmented=settings.augment,
                          leaves=settings.dead_leaves, patches=settings.flat_patches, fine=settings.fine_leaves,
                          foliage=settings.foliage, wallpapers=settings.wallpapers, gcompris=settings.gcompris,
                          scale=settings.crop_scale,
                          data=folder)
    if folder is not None:
        return FolderCrops(folder, settings.crop, length, settings.seed, settings.crop_scale)
    return PhotoCrops(size=settings.crop, split="train", length=length, seed=settings.seed, scale=settings.crop_scale)


def plain_crops(data: Dataset) -> Dataset | None:
    """the photo (or folder) crops of a run's data, without augmentation or leaves; None for leaves alone"""
    sources = getattr(data, "sources", [])  # a mix holds the crops themselves, and inside the augmented ones
    return next((s for s in [data, *sources, *(getattr(s, "dataset", None) for s in sources)]
                 if isinstance(s, (PhotoCrops, FolderCrops))), None)


def describe_data(settings: VAETraining, data: Dataset) -> str:
    """the manifest's "data" line: which items the run trained on"""
    folder = data_folder(settings, download=False)  # training_data unpacked it already
    if folder is None:
        where = f"latentlab.data.PhotoCrops({settings.crop}, 'train', seed={settings.seed}, scale={settings.crop_scale})"
        what = f"random crops of the training photos ({', '.join(TRAIN_PHOTOS)})"
    else:
        crops = plain_crops(data)
        where = (f"latentlab.sources.FolderCrops({folder!r}, size={settings.crop}, seed={settings.seed}, "
                 f"scale={settings.crop_scale})")
        what = f"random crops of {crops.describe()}" if crops is not None else f"no crops of {folder}"
        if settings.data_url is not None:
            what += f", unpacked from the archive at {settings.data_url}"
    if settings.mixed():
        photos, extra, extra_what = settings.photos(), "", ""
        if settings.fine_leaves or settings.flat_patches:  # the manifests of the runs before them read as they did
            extra = f", patches={settings.flat_patches:g}, fine={settings.fine_leaves:g}"
            extra_what = (f", {settings.fine_leaves:.0%} fine-textured dead leaves, {settings.flat_patches:.0%} flat "
                          "colour patches")
        if settings.foliage:
            extra += f", foliage={settings.foliage:g}"
            extra_what += f", {settings.foliage:.0%} foliage (small leaves only)"
        if settings.wallpapers:
            extra += f", wallpapers={settings.wallpapers:g}"
            extra_what += (f", {settings.wallpapers:.0%} crops of the {len(wallpaper_photos.PHOTOS)} wallpaper "
                           f"photographs of Debian's {' and '.join(wallpaper_photos.PACKAGES)} (latentlab.wallpapers)")
        if settings.gcompris:
            extra += f", gcompris={settings.gcompris:g}"
            extra_what += (f", {settings.gcompris:.0%} crops of the {len(gcompris_photos.split('train'))} GCompris "
                           f"training photographs of Debian's {gcompris_photos.PACKAGE} (latentlab.gcompris)")
        where = (f"latentlab.sources.colour_mix(photos={photos:g}, augmented={settings.augment:g}, "
                 f"leaves={settings.dead_leaves:g}{extra}) of {where}")
        what += (f"; of all items {photos:.0%} plain crops, {settings.augment:.0%} colour-augmented crops "
                 f"(latentlab.augment), {settings.dead_leaves:.0%} dead leaves in random colours (latentlab.synthetic)"
                 f"{extra_what}")
    return f"{where}: {what}; the held-out photos are never trained on"


def heldout_psnr(model: nn.Module, images: torch.Tensor) -> float:
    """mean PSNR (dB) of the model's reconstructions (posterior mean, clamped to [-1, 1]) of held-out images."""
    return psnr(model(images).clamp(-1, 1), images.to(next(model.parameters()).device)).mean().item()


def deepened_from(path: str | Path, vae: VAE) -> None:
    """load init's weights into vae, which may hold more ResBlocks per level than init (a larger layers_per_block).

    Each extra ResBlock follows a level's own ones and gets a zero last convolution, so it adds nothing to its
    shortcut: the grown VAE starts with exactly init's encoder and decoder, and training then uses the new blocks.
    """
    tensors, _ = read_checkpoint(path)
    state = vae.state_dict()
    missing = set(state) - set(tensors)
    if (set(tensors) - set(state) or any(".resnets." not in key for key in missing)
            or any(tensors[key].shape != state[key].shape for key in tensors)):
        load_finite(path, vae)  # not a shallower twin of vae: its sentence says what does not fit
    check_finite(tensors, path)
    vae.load_state_dict(tensors, strict=False)
    grown = {key.rsplit(".", 2)[0] for key in missing}  # e.g. decoder.up_blocks.0.resnets.2
    for name in grown:
        conv = vae.get_submodule(name).conv2
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)


def chart_errors(model: nn.Module, chart: torch.Tensor, patch: int = 64) -> dict[str, float]:
    """the ColorChecker's mean and worst patch error (largest channel error of a patch's mean colour, /255)"""
    errors = patch_errors(model(chart).clamp(-1, 1).cpu(), patch, patch // 8).abs().amax(1)
    return {"chart_mean": errors.mean().item(), "chart_worst": errors.max().item()}


def train_vae(settings: VAETraining | None = None, device: torch.device | str = "cpu", metadata=None,
              data: Dataset | None = None, accelerator=None, first_items: list[int] | None = None):
    """Train a course VAE on random crops of the training photos (or the settings' mix) -> (vae, history).

    Args:
        settings: what to train and how (default: VAETraining(), the first run of the shipped VAE).
        metadata: called at each save for extra metadata to store beside the VAE's config.
        data: the training items, when already built by training_data(settings).
        accelerator: this process's part of a launched group (latentlab.parallel); its device replaces `device`.
        first_items: a list that receives the item indices of this process's first batch.
    The scaling factor is measured at the end on the run's own photo crops, leaves and colour augmentation left out:
    what the lessons encode (1 / std of the latents, as SD measured 0.18215). Ctrl-C stops early: the checkpoint is
    still saved whole, and the last history entry says "interrupted".
    """
    settings = settings or VAETraining()
    accelerator = accelerator or OneProcess(device)
    device, process = accelerator.device, accelerator.process_index
    config = vae_config(settings)
    out = None if settings.out is None else Path(settings.out)
    start = saved_step(state_path(out), must_match(settings)) if settings.resume and out is not None else 0
    generator = seed_everything(settings.seed)
    vae = VAE(config)  # the same initial weights in every process
    if settings.init is not None:
        deepened_from(settings.init, vae)
    if process or start:  # each process draws its own noise, and a resumed run draws afresh from its step
        generator.manual_seed(stream_seed(settings.seed, "noise", process, start))
    data = training_data(settings) if data is None else data
    heldout = heldout_images(settings.eval_size).to(device)  # watched during training, never trained on
    patch = max(8, settings.eval_size // 32 * 8)  # 64 at 256 as in `latentlab eval vae`; the chart is never trained on
    chart = colorchecker(patch).to(device)
    if settings.train_part == "decoder":  # the encoder side, up to the latent's mean and log-variance, stays as it is
        for part in (m for m in (vae.encoder, vae.quant_conv) if m is not None):
            part.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=settings.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    schedule = warmup_cosine(settings.steps, warmup=min(100, settings.steps // 10 + 1))

    def loss(model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = shuffle_rgb(batch, generator) if settings.rgb_shuffle else batch
        return vae_loss(model, batch, settings.beta, settings.reconstruction, generator)

    def stored() -> dict:
        return {"config": asdict(vae.config), **(metadata() if metadata else {})}

    shard = batches(data, settings.batch_size, settings.seed, process, accelerator.num_processes, start, first_items)
    history = fit(vae, loss, shard, settings.steps, optimizer,
                  torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
                  evaluate=lambda model: {"heldout_psnr": heldout_psnr(model, heldout),
                                          **chart_errors(model, chart, patch)},
                  eval_every=settings.eval_every, checkpoint=out, checkpoint_every=settings.checkpoint_every,
                  metadata=stored, desc="train vae", average=settings.average, accelerator=accelerator,
                  resumable=must_match(settings) if out is not None else None, resume=start > 0)
    with held(), torch.no_grad():  # a Ctrl-C now waits: the scaling factor belongs to the checkpoint
        if settings.train_part == "all":  # a frozen encoder's latents keep init's spread, and so its factor
            crops = plain_crops(data) or PhotoCrops(settings.crop, "train", 256, settings.seed, settings.crop_scale)
            sample = torch.stack([crops[i] for i in range(min(len(crops), 256))])
            vae.config.scaling_factor = round(estimate_scaling_factor(vae, sample, generator), 5)
        if out is not None and accelerator.is_main_process:
            save_checkpoint(out, vae, {**stored(), "step": len(history)})
    if stopping() and history:
        history[-1]["interrupted"] = True
    return vae, history


def run(settings: VAETraining, recipe: dict | None = None) -> int:
    """`latentlab train vae`: train, write the checkpoint and its manifest -> exit code (130 after a Ctrl-C)"""
    from latentlab import parallel  # late: accelerate takes a second to import, and the lessons never need it

    with stop_on_ctrl_c(sigterm=True):  # a scheduler's or launcher's SIGTERM saves like Ctrl-C
        config = vae_config(settings)  # bad settings or a bad --init are refused before anything runs
        VAE(config)  # and so are widths that the groups do not divide
        if settings.init is not None:  # the record shows the architecture actually trained
            settings = replace(settings, block_out_channels=config.block_out_channels,
                               layers_per_block=config.layers_per_block, norm_num_groups=config.norm_num_groups)
        base = _base_record(Path(settings.init)) if settings.init is not None else None
        line, out, commit = command(settings), Path(settings.out), git_commit()  # the code as the run starts
        resumed = saved_step(state_path(out), must_match(settings)) if settings.resume else 0  # refused now if wrong
        accelerator = parallel.accelerator_for(pick_device(settings.device), settings.mixed_precision, settings.threads)
        device, main, first = accelerator.device, accelerator.is_main_process, []
        try:
            with accelerator.main_process_first():  # --data-url's archive: downloaded once, the others find it there
                data = training_data(settings)  # an empty or unreadable --data folder is refused before the first line
            if main:
                print(f"{line}\non {describe(device)}{parallel.spread(accelerator)}" +
                      (f"\nresuming after step {resumed} from {state_path(out)}" if resumed else ""), file=sys.stderr)
                warning = getattr(plain_crops(data), "warning", lambda: None)()  # a folder's unreadable files
                if warning:
                    print(warning, file=sys.stderr)
            start = time.perf_counter()
            vae, history = train_vae(settings, device, metadata=lambda: {"command": line}, data=data,
                                     accelerator=accelerator, first_items=first)
        except KeyboardInterrupt:
            print("latentlab train vae: interrupted before training began; nothing was written.", file=sys.stderr)
            return 130
        processes = parallel.record(accelerator, vae, first)  # every process takes part
        accelerator.end_training()
        if not main:
            return 130 if stopping() else 0
        with held():  # a Ctrl-C now waits until the manifest is written beside the checkpoint
            wall = time.perf_counter() - start
            last = history[-1] if history else {"step": 0}
            interrupted = bool(last.get("interrupted"))
            manifest = {
                "name": out.stem,
                "command": line,
                **({"recipe": recipe} if recipe else {}),
                "git_commit": commit,
                "seed": settings.seed,
                "data": describe_data(settings, data),
                "steps": settings.steps,
                "steps_done": len(history),
                **({"resumed_after": resumed} if resumed else {}),
                "interrupted": interrupted,
                "wall_time_s": round(wall, 3),  # to the millisecond: a smoke run takes well under 0.05 s
                "device": describe(device),
                "processes": processes,
                "torch": torch.__version__,
                "training": asdict(settings),
                "config": asdict(vae.config),
                "final": {k: round(v, 5) for k, v in last.items() if k not in ("step", "interrupted")},
                "history": [{k: round(v, 5) for k, v in h.items() if k != "interrupted"}
                            for h in history if h["step"] % 25 == 0 or "heldout_psnr" in h],
                "sha256": sha256_file(out),
            }
            if base is not None:
                manifest["base"] = base
            write_manifest(out.with_suffix(".json"), manifest)
        if interrupted:
            print(f"latentlab train vae: interrupted after {len(history)} of {settings.steps} steps; wrote {out} and "
                  f"{out.with_suffix('.json')} (marked interrupted, not evaluated; --resume yes continues).",
                  file=sys.stderr)
        else:
            score = (f"; held-out PSNR {last['heldout_psnr']:.2f} dB, ColorChecker mean {last['chart_mean']:.1f}/255"
                     if "heldout_psnr" in last else "")
            print(f"wrote {out} and {out.with_suffix('.json')} after {len(history)} steps in {wall:.0f} s{score}",
                  file=sys.stderr)
        return 130 if interrupted or stopping() else 0


def _base_record(path: Path) -> dict:
    """what a run started from `init` records about it: its file and sha256, and its own manifest when beside it"""
    _, metadata = read_checkpoint(path)
    base = {"file": shown_path(path), "sha256": sha256_file(path), "command": metadata.get("command")}
    manifest_path = path.with_suffix(".json")
    if manifest_path.is_file():  # carry the earlier run's record forward: how it was made and what it scored
        earlier = json.loads(manifest_path.read_text())
        keep = ("command", "recipe", "git_commit", "seed", "data", "steps_done", "interrupted", "wall_time_s",
                "device", "torch", "training", "final", "heldout", "note", "base")
        base.update({k: earlier[k] for k in keep if k in earlier})
        base["heldout_psnr_history"] = [[h["step"], h["heldout_psnr"]] for h in earlier.get("history", [])
                                        if "heldout_psnr" in h]
    return base

"""Lesson 10's compression sweep: six course VAEs (factor 4, 8, 16 x 4, 16 channels) and a latent denoiser on each.

`make sweep` (tools/sweep.py, recipes/sweep/) trains them into weights/sweep/: vae_<geometry> and
denoiser_<geometry>, each a safetensors file beside its manifest. This module loads them with their sha256 checked
and measures the trade-off the LDM paper measured for its autoencoders (Rombach et al. 2022, Sec. 4.1,
https://arxiv.org/abs/2112.10752): per VAE, what it keeps (PSNR on the evaluation photos, the ColorChecker) for how
many values per pixel; per denoiser, what one step costs on its latent (FLOPs and time on one thread, lesson 07's
`bench`) and what its samples are worth (lesson 08's judge, recorded in its manifest), beside the VAE's own ceiling
(the judge on its reconstructions of real shapes). tools/eval_sweep.py writes docs/compression-sweep.{json,md}.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
from diffusers import DDIMScheduler

from latentlab import bench
from latentlab.baselines import bicubic_roundtrip, latent_values
from latentlab.chart import COLORCHECKER, PATCH, colorchecker, patch_errors
from latentlab.checkpoints import WEIGHTS_DIR, checked_file, load_finite, sha256_file
from latentlab.data import shapes_batch
from latentlab.diffusion import sample
from latentlab.errors import InputError
from latentlab.images import psnr
from latentlab.latents import unscale
from latentlab.photosets import SPLITS, split_images
from latentlab.quality import judge, recognised_as_asked, requests
from latentlab.unet import UNet, UNetConfig
from latentlab.vae import VAE, VAEConfig

SWEEP_DIR = WEIGHTS_DIR / "sweep"
GEOMETRIES = ("f4c4", "f4c16", "f8c4", "f8c16", "f16c4", "f16c16")  # by factor, then channels
REBUILD = "`make sweep` rebuilds them in a clone of the repository (recipes/sweep/, about 1.5 hours on two CPU threads)"


@dataclass(frozen=True)
class Geometry:
    """one latent geometry of the sweep: image side / latent side, and channels"""

    name: str  # e.g. "f8c4"
    factor: int
    channels: int

    @property
    def values_per_pixel(self) -> float:
        """latent values per image pixel: C / f^2 (1/16 for SD's f8c4; a pixel holds 3 values)"""
        return self.channels / self.factor**2

    @property
    def per_pixel(self) -> str:
        """values per pixel as a fraction: 1/16, 3/16, 1"""
        return str(Fraction(self.channels, self.factor**2))

    @property
    def compression(self) -> float:
        """image values / latent values: 3 f^2 / C (48 for SD's f8c4)"""
        return 3 * self.factor**2 / self.channels

    def latent_shape(self, side: int) -> tuple[int, int, int]:
        """(C, side/f, side/f) for a square image"""
        return self.channels, side // self.factor, side // self.factor


def parse(name: str) -> Geometry:
    """"f8c4" -> Geometry(factor 8, 4 channels), for any factor and channels (LDM_KL's too)"""
    found = re.fullmatch(r"f(\d+)c(\d+)", name) if isinstance(name, str) else None
    if found is None:
        raise InputError(f"{name!r} is not a latent geometry; write it as f<factor>c<channels>, e.g. f8c4.")
    return Geometry(name, int(found[1]), int(found[2]))


def geometry(name: str) -> Geometry:
    """one of the sweep's six geometries by name, or an InputError listing them"""
    if name not in GEOMETRIES:
        raise InputError(f"{name!r} is not one of the sweep's geometries; choose one of {', '.join(GEOMETRIES)}.")
    return parse(name)


# The LDM paper's KL-regularised autoencoders, trained to convergence (Rombach et al. 2022, Sec. 4.1 and its
# autoencoder table; the model zoo of github.com/CompVis/latent-diffusion, README.md at commit
# 00c19b4dc17cd84a1f9a616ecd0bb84d680efac7): geometry -> reconstruction PSNR (dB) on their validation images
LDM_KL = {"f4c3": 27.53, "f8c4": 24.19, "f16c16": 24.08, "f32c64": 22.27}


# ---- the weights, checked


def manifest(name: str, folder: str | Path | None = None) -> dict:
    """the manifest of a sweep model ("vae_f8c4", "denoiser_f8c4") -> dict; InputError if missing or unreadable"""
    path = Path(folder or SWEEP_DIR) / f"{name}.json"
    if not path.is_file():
        raise InputError(f"the compression sweep's {name} manifest is missing ({path}); {REBUILD}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"the compression sweep's manifest {path} is not valid JSON; {REBUILD}.") from None


def weights(name: str, folder: str | Path | None = None) -> tuple[Path, dict]:
    """(path of the checked weights file, manifest); InputError if the file is missing or its sha256 differs"""
    record = manifest(name, folder)
    path = Path(folder or SWEEP_DIR) / f"{name}.safetensors"
    return checked_file(path, record, f"the compression sweep's {name}", REBUILD), record


def check(name: str, folder: str | Path | None = None) -> dict:
    """one geometry's VAE and denoiser, each against its manifest's sha256, and the denoiser against the VAE it was
    trained on -> the denoiser's manifest; InputError (one sentence, `make sweep`) otherwise"""
    g = geometry(name).name
    vae_path, _ = weights(f"vae_{g}", folder)
    _, record = weights(f"denoiser_{g}", folder)
    if record.get("vae_sha256") != sha256_file(vae_path):
        raise InputError(f"the compression sweep's denoiser_{g} was trained on another vae_{g} than the one beside "
                         f"it (sha256 differs); {REBUILD}.")
    return record


def missing(folder: str | Path | None = None) -> str | None:
    """None when all twelve files are there and match their manifests, else one sentence about the first that does not"""
    try:
        for name in GEOMETRIES:
            check(name, folder)
    except InputError as err:
        return str(err)
    return None


def load_vae(name: str, folder: str | Path | None = None) -> VAE:
    """the sweep VAE of one geometry ("f8c4"), its sha256 checked, in eval mode on the CPU"""
    path, record = weights(f"vae_{geometry(name).name}", folder)
    vae = VAE(VAEConfig(**record["config"]))
    load_finite(path, vae)
    return vae.eval()


def load_denoiser(name: str, folder: str | Path | None = None) -> tuple[UNet, dict]:
    """(the latent denoiser of one geometry in eval mode on the CPU, its manifest), checked as `check` does"""
    record = check(name, folder)
    unet = UNet(UNetConfig(**record["config"]))
    load_finite(Path(folder or SWEEP_DIR) / f"denoiser_{name}.safetensors", unet)
    return unet.eval(), record


# ---- what a VAE keeps


@torch.no_grad()
def reconstruction(vae: VAE, size: int = 256, splits: tuple[str, ...] = ("validation", "test"),
                   patch: int = PATCH, keep_images: bool = False) -> dict:
    """PSNR (dB) per photo of each split, VAE and bicubic at the latent's number of values, and the ColorChecker
    (patch x patch pixels a patch) error per patch, the largest channel of its mean colour (/255): mean and worst.
    Validation photos may choose; test photos only report (latentlab.photosets). keep_images: the reconstructions
    too, under "images" ({split: (B, 3, size, size), "chart": (1, 3, 4 patch, 6 patch)})."""
    out: dict = {}
    images = {}
    for split in splits:
        photos = split_images(split, size)
        images[split] = vae(photos).clamp(-1, 1)
        keep = latent_values(size, size, vae.factor, vae.config.latent_channels)
        vae_db, bicubic_db = psnr(images[split], photos), psnr(bicubic_roundtrip(photos, keep), photos)
        out[split] = {name: {"vae": round(a, 2), "bicubic": round(b, 2)}
                      for name, a, b in zip(SPLITS[split], vae_db.tolist(), bicubic_db.tolist())}
    images["chart"] = vae(colorchecker(patch)).clamp(-1, 1)
    worst = patch_errors(images["chart"], patch).abs().amax(1)  # (24,) the worst channel of each patch
    out["chart"] = {"mean": round(worst.mean().item(), 2), "worst": round(worst.max().item(), 2),
                    "worst_patch": COLORCHECKER[int(worst.argmax())][0]}
    return out | ({"images": images} if keep_images else {})


def mean_db(result: dict, split: str = "test", who: str = "vae") -> float:
    """the mean PSNR over one split's photos in a reconstruction() result"""
    return statistics.fmean(row[who] for row in result[split].values())


def inversions(psnr_db: dict[str, float]) -> list[tuple[str, str]]:
    """(a, b) pairs of geometries where a keeps fewer values per pixel than b yet reconstructs better: none when
    quality falls steadily with compression, as in LDM's table"""
    fewer = {name: parse(name).compression for name in psnr_db}
    return [(a, b) for a in psnr_db for b in psnr_db if fewer[a] > fewer[b] and psnr_db[a] > psnr_db[b]]


@torch.no_grad()
def ceiling(vae: VAE, n: int = 128, size: int = 64, seed: int = 1000) -> dict:
    """lesson 08's judge on the VAE's reconstructions of n held-out real Shapes: the best its decoder can give back"""
    shapes, labels = shapes_batch(n, size=size, seed=seed)  # seed 1000: shapes no denoiser trained on (lesson 08)
    recon = torch.cat([vae(x).clamp(-1, 1) for x in shapes.split(64)])
    verdict = judge(recon)
    return {"shapes": n, "size": size, "psnr_db": round(psnr(recon, shapes).mean().item(), 2),
            "recognised": round(verdict.recognised, 4), "as_drawn": round(recognised_as_asked(verdict, labels), 4)}


# ---- what a denoiser step costs, and what its samples are worth


def _inputs(unet: UNet, batch: int) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    cfg = unet.config
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=torch.Generator().manual_seed(0))
    labels = requests(batch) if cfg.num_class_embeds is not None else None
    return x, 500, labels


def step_flops(unet: UNet) -> dict:
    """FLOPs of one UNet forward on one latent, counted on the meta device (lesson 07's bench.forward_cost)"""
    x, t, _ = _inputs(unet, 1)
    cost = bench.forward_cost(unet, x, t)  # no class: the null class's embedding, a table look-up like any class's
    return {"gflops": cost.flops / 1e9, "attention_share": cost.attention_flops / cost.flops}


def step_times(unets: dict[str, UNet], batch: int = 16, repeats: int = 5, rounds: int = 3) -> dict[str, dict]:
    """each UNet's forward on a batch of its latents, on one CPU thread, timed in `rounds` interleaved rounds (a
    machine that gets busier slows every geometry alike) -> {name: {"ms": median, "q1", "q3", "batch", "repeats"}}"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {name: [] for name in unets}
    try:
        for _ in range(rounds):
            for name, unet in unets.items():
                step = functools.partial(unet, *_inputs(unet, batch))  # one forward: latents, t = 500, classes
                times[name] += bench.time_fn(step, warmup=1, repeats=repeats, device="cpu").times_ms
    finally:
        torch.set_num_threads(before)
    out = {}
    for name, ms in times.items():
        q1, _, q3 = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
        out[name] = {"ms": statistics.median(ms), "q1": q1, "q3": q3, "batch": batch, "repeats": len(ms)}
    return out


def judged(record: dict) -> dict:
    """the judge's result recorded in a denoiser's manifest: recognised, recognised as asked, and per class"""
    q = record.get("quality") or {}
    if "recognised_as_asked" not in q:
        raise InputError(f"{record.get('name')}'s manifest holds no judged samples; {REBUILD}.")
    per_class = {name: row["as_asked"] / row["asked"] if row["asked"] else None for name, row in q["by_request"].items()}
    return {"samples": q["samples"], "ddim_steps": q["ddim_steps"], "guidance": q["guidance"],
            "recognised": q["recognised"], "as_asked": q["recognised_as_asked"], "per_class": per_class,
            "sampling_s": q.get("sampling_s")}


@torch.no_grad()
def draw(unet: UNet, vae: VAE, record: dict, n: int = 8, ddim_steps: int = 50, seed: int = 1) -> tuple:
    """n samples asked for each shape in turn, as the denoiser was judged (DDIM, its guidance) -> (images, asked)"""
    scheduler = DDIMScheduler(num_train_timesteps=unet.config.num_train_timesteps,
                              beta_schedule=record["beta_schedule"], clip_sample=False)
    asked, cfg = requests(n), unet.config
    shape = (n, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    z = sample(unet, shape, scheduler, ddim_steps, torch.Generator().manual_seed(seed), class_labels=asked,
               guidance=record["training"]["guidance"])
    return vae.decode(unscale(z, vae.scaling_factor)).clamp(-1, 1), asked


def training(record: dict) -> dict:
    """what a manifest says about its run: steps done, wall time (and time budget), and its device"""
    return {"steps_done": record.get("steps_done"), "wall_time_s": record.get("wall_time_s"),
            "time_budget_s": record.get("time_budget_s"),
            "device": record.get("device"), "smoke": bool((record.get("recipe") or {}).get("smoke"))}


def measure(folder: str | Path | None = None, size: int = 256, shapes: int = 128, batch: int = 32,
            repeats: int = 5, rounds: int = 3, patch: int = PATCH) -> dict:
    """every number of the sweep, as docs/compression-sweep.json records it (tools/eval_sweep.py)"""
    unets, result = {}, {"geometries": {}}
    for name in GEOMETRIES:
        g, vae = geometry(name), load_vae(name, folder)
        unets[name], record = load_denoiser(name, folder)
        image_size = record["training"]["image_size"]
        result["geometries"][name] = {
            "factor": g.factor, "channels": g.channels, "values_per_pixel": g.values_per_pixel,
            "compression": g.compression, "vae_parameters": sum(p.numel() for p in vae.parameters()),
            "vae_training": training(manifest(f"vae_{name}", folder)), "reconstruction": reconstruction(vae, size, patch=patch),
            "ceiling": ceiling(vae, shapes, image_size), "denoiser_parameters": unets[name].num_parameters(),
            "denoiser_training": training(record), "latent": list(g.latent_shape(image_size)),
            "flops": step_flops(unets[name]), "judged": judged(record)}
    times = step_times(unets, batch, repeats, rounds)
    base = result["geometries"]["f8c4"]
    for name, row in result["geometries"].items():
        row["time"] = times[name]
        row["flops_vs_f8c4"] = row["flops"]["gflops"] / base["flops"]["gflops"]
        row["time_vs_f8c4"] = times[name]["ms"] / times["f8c4"]["ms"]
    return result

"""Lesson 09: Stable Diffusion's own VAE and TAESD through diffusers, one interface for every VAE, and img2img's start.

SD's VAE (Rombach et al. 2022, https://arxiv.org/abs/2112.10752) and TAESD (https://github.com/madebyollin/taesd)
load through diffusers: ids, pinned revisions and mirrors in one table (`SD_MODELS`), safetensors only. One class,
`LatentCodec`, takes images in [-1, 1] and gives the *scaled* latents SD's UNet sees (a latentlab `VAE.encode`
gives the raw posterior instead). Offline, the `*_or_course` loaders continue with the course VAE, which has the same
latent geometry, and `banner` says loudly which model each codec really is. `hub_unreachable` is the one check of
the model hub (`latentlab doctor` asks it too).

It is longer than latentlab's other modules (~420 lines) because it is all of lesson 09 and only lesson 09, in the
order the lesson meets it: the table, the range rule and the codec, loading and the banner, then img2img's first move.
"""

from __future__ import annotations

import html
import numbers
import os
import sys
import threading
import urllib.error
import urllib.request
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import diffusers  # its classes load on first use (diffusers' own lazy module)
import torch
from huggingface_hub import constants as hub_constants

from latentlab.checkpoints import load_course_vae
from latentlab.device import pick_device
from latentlab.diffusion import SD_SCHEDULE
from latentlab.errors import InputError
from latentlab.images import check_image, check_range, to_tensor
from latentlab.latents import check_latents, scale, unscale
from latentlab.vae import VAE


@dataclass(frozen=True)
class HubSource:
    """one place a diffusers model can be loaded from: a Hub repo at a pinned commit, or a local folder"""

    repo_id: str  # "owner/name" on the Hub, or a folder written by save_pretrained
    revision: str | None = None  # a full commit hash: the files can never change under the course
    subfolder: str | None = None  # e.g. "vae" inside a whole-pipeline repo
    note: str = ""  # what a mirror holds when it is not byte-for-byte the primary

    def __str__(self) -> str:
        where = self.repo_id + (f"/{self.subfolder}" if self.subfolder else "")
        return where + (f"@{self.revision[:10]}" if self.revision else "")


@dataclass(frozen=True)
class SDModel:
    title: str  # how the lesson names it
    diffusers_class: Literal["AutoencoderKL", "AutoencoderTiny"]
    sources: tuple[HubSource, ...]  # tried in order: the primary, then the mirrors
    env_var: str  # a local folder or "owner/name[@revision]" here replaces the sources (teachers, caches, mirrors)


# The one place the ids and revisions live (docs/stable-diffusion.md says where each hash was confirmed).
SD_MODELS: dict[str, SDModel] = {
    "sd-vae": SDModel("Stable Diffusion's VAE", "AutoencoderKL", (
        HubSource("stabilityai/sd-vae-ft-mse", "31f26fdeee1355a5c34592e401dd41e45d25a493"),
        HubSource("stable-diffusion-v1-5/stable-diffusion-v1-5", "451f4fe16113bff5a5d2269ed5ad43b0592e9a14", "vae",
                  note="SD 1.5's own VAE: the same encoder and latent space, the decoder before the ft-MSE fine-tune"),
    ), "LATENTLAB_SD_VAE"),
    "taesd": SDModel("TAESD", "AutoencoderTiny", (
        HubSource("madebyollin/taesd", "614f76814bbe30edbe2e627ace1c2234c81a2c0e"),
        HubSource("cqyan/hybrid-sd-tinyvae", "main",
                  note="Hybrid-SD's fine-tune of TAESD for the same SD 1.x latents; no commit hash confirmed, so 'main'"),
    ), "LATENTLAB_TAESD"),
    # lesson 10's online extra: a 16-channel latent of today (FLUX.1's), through its ungated tiny autoencoder
    "taef1": SDModel("TAEF1 (FLUX.1's tiny autoencoder)", "AutoencoderTiny", (
        HubSource("madebyollin/taef1", "b1b2d00e9e440cfbf3dedb34266864da86016ceb"),
    ), "LATENTLAB_TAEF1"),
}

# diffusers.AutoencoderKL's defaults plus SD's values: the architecture of stabilityai/sd-vae-ft-mse (its
# scaling_factor, 0.18215, is diffusers' default; code reads it from model.config, never from here)
SD_VAE_CONFIG = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}
GEOMETRY = "the same latent geometry (factor 8, 4 channels)"
TITLES = {"sd-vae": "SD's VAE", "taesd": "TAESD", "course-vae": "course VAE"}  # short names for panel titles

ValueRange = Literal["auto", "-1..1", "0..1"]


class WeightsUnavailable(InputError):
    """SD's weights could not be had (offline, or every source failed); `reason` says why in a few words"""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


# ---- the range policy and the one interface


def as_vae_images(images, value_range: ValueRange = "auto", multiple_of: int = 8) -> torch.Tensor:
    """any image -> float (B, 3, H, W) in [-1, 1] by a stated rule, or an InputError; never a silent wash-out.

    PIL / numpy / uint8 go through images.to_tensor (0..255 -> [-1, 1]). For float tensors, "-1..1" is checked,
    "0..1" becomes 2x - 1, and "auto" takes [-1, 1] but refuses a batch whose darkest value is not clearly below 0:
    a [0, 1] image read as [-1, 1] comes out washed out (every pixel at least mid-grey), so the caller must say.
    """
    if value_range not in ("auto", "-1..1", "0..1"):
        raise InputError(f"value_range must be 'auto', '-1..1' or '0..1', not {value_range!r}.")
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        return check_image(to_tensor(images), "image", multiple_of)
    x = images if images.ndim != 3 else images[None]
    if value_range == "0..1":
        check_range(x, "image", 0.0, 1.0, fix="value_range='0..1' says so; pass '-1..1' if that is its range")
        x = x * 2 - 1
    lo, hi = check_range(x, "image")
    if value_range == "auto" and lo >= -0.05:
        raise InputError(
            f"image values span {lo:.3g}..{hi:.3g}, nothing clearly below 0: it looks like a [0, 1] image that the VAE "
            "would read as washed out; pass value_range='0..1' to convert it, or '-1..1' if it is a light [-1, 1] image."
        )
    return check_image(x, "image", multiple_of)


class LatentCodec:
    """SD's VAE, TAESD or the course VAE behind one interface: images in [-1, 1] <-> scaled latents (B, 4, H/8, W/8).

    The range conversions happen inside: diffusers' AutoencoderTiny already maps [-1, 1] to TAESD's own [0, 1]
    (and back) in its encoder and decoder, so every model here is given [-1, 1] exactly once.
    """

    def __init__(self, model: torch.nn.Module, name: str, description: str = "", title: str = "",
                 stands_in_for: str | None = None):
        self.model, self.name, self.description = model, name, description or name
        self.stands_in_for = stands_in_for  # the model this one replaces when that one could not be loaded
        self.title = title or TITLES.get(name, name)
        if stands_in_for:
            self.title += f" (in place of {stands_in_for})"

    @property
    def scaling_factor(self) -> float:
        """read from the model's config: 0.18215 for SD's VAE, 1.0 for TAESD (its latents come out scaled)"""
        return float(self.model.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.model.config.latent_channels)

    @property
    def factor(self) -> int:
        """image side / latent side: a stride-2 step between consecutive resolutions"""
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> LatentCodec:
        self.model.to(device)
        return self

    @torch.inference_mode()
    def encode(
        self, images, value_range: ValueRange = "auto", sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> *scaled* latents (B, 4, H/8, W/8), what SD's UNet works on.

        Unlike latentlab's `VAE.encode` (and AutoencoderKL's), which return the raw posterior, this returns
        latents.scale(posterior mean or sample, scaling_factor); `decode` takes the same scaled latents.

        Args:
            images: a tensor in [-1, 1] (see as_vae_images for the other ranges and types it converts or refuses).
            sample: draw from the encoder's Gaussian (as SD's img2img does) instead of taking its mean.
        """
        param = next(self.model.parameters())
        x = as_vae_images(images, value_range, self.factor).to(param.device, param.dtype)
        out = self.model.encode(x)
        if hasattr(out, "latents"):  # TAESD: one deterministic latent, already in SD's scaled units
            z = out.latents
        else:  # AutoencoderKL's latent_dist, or the course VAE's DiagonalGaussian
            dist = getattr(out, "latent_dist", out)
            z = dist.sample(generator) if sample else dist.mode()
        return scale(z, self.scaling_factor)  # (B, 4, H/8, W/8)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """scaled latents (B, 4, h, w) -> images (B, 3, 8h, 8w) in [-1, 1] (clamped, as SD's pipelines do)"""
        check_latents(latents, self.latent_channels)
        param = next(self.model.parameters())
        out = self.model.decode(unscale(latents.to(param.device, param.dtype), self.scaling_factor))
        return getattr(out, "sample", out).clamp(-1, 1)  # (B, 3, 8h, 8w)

    def __repr__(self) -> str:
        return f"LatentCodec({self.name!r}: {self.description})"


# ---- the hub check, and loading from the hub, its cache or a folder


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """why the model hub cannot be used now ("HF_HUB_OFFLINE=1 is set", no answer), or None when it answers.

    An HTTP HEAD to huggingface_hub's endpoint (HF_ENDPOINT moves it to a mirror) through urllib, which honours
    HTTPS_PROXY / NO_PROXY; in a thread, because a DNS lookup that hangs ignores every timeout.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return "HF_HUB_OFFLINE=1 is set"
    url = hub_constants.ENDPOINT.rstrip("/") + "/"
    host = urlparse(url).hostname or url
    answer: list[str | None] = []

    def attempt() -> None:
        try:
            opener = urllib.request.build_opener()  # a new opener reads the proxy variables as they are now
            opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            answer.append(None)
        except urllib.error.HTTPError as err:  # the hub, or a proxy speaking for it, answered
            answer.append(None if err.code < 500 else f"{host} answered HTTP {err.code}")
        except (OSError, ValueError) as err:  # URLError is an OSError
            answer.append(f"{host} cannot be reached ({getattr(err, 'reason', err)})")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return answer[0] if answer else f"{host} did not answer within {timeout:g} s"


@contextmanager
def _hub_offline():
    """huggingface_hub's offline mode for one call: the cache answers, and not one request is made (not even DNS)"""
    before = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = before


def _sources(spec: SDModel, source: str | Path | HubSource | None) -> tuple[HubSource, ...]:
    """what to try: `source`, else the env var, else the table's primary and mirrors"""
    source = source if source is not None else os.environ.get(spec.env_var) or None
    if source is None:
        return spec.sources
    if isinstance(source, HubSource):
        return (source,)
    if not isinstance(source, (str, Path)):
        raise InputError(f"source must be a folder, 'owner/name[@revision]' or a HubSource, not {type(source).__name__}.")
    folder = Path(source).expanduser()
    if folder.is_dir():
        return (HubSource(str(folder)),)
    if str(source).startswith(("/", ".", "~")):
        raise InputError(f"no model folder at {source}; pass a folder written by save_pretrained, or a Hub id.")
    repo_id, _, revision = str(source).partition("@")
    return (HubSource(repo_id, revision or None),)


def _from_pretrained(spec: SDModel, src: HubSource, local_only: bool) -> torch.nn.Module:
    """the one call a download, a cached copy and a local folder all go through: pinned, safetensors only"""
    with warnings.catch_warnings(), (_hub_offline() if local_only else nullcontext()):
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks")  # diffusers' own deprecation notice
        return getattr(diffusers, spec.diffusers_class).from_pretrained(
            src.repo_id, revision=src.revision, subfolder=src.subfolder, use_safetensors=True,
            local_files_only=local_only,  # offline, the Hub cache still serves a pinned revision
            low_cpu_mem_usage=find_spec("accelerate") is not None,  # diffusers needs accelerate for it
        )



def _load(name: Literal["sd-vae", "taesd"], device, source) -> LatentCodec:
    """try each source (cache only when the Hub is unreachable); WeightsUnavailable when none loads"""
    spec = SD_MODELS[name]
    sources = _sources(spec, source)
    remote = [s for s in sources if not Path(s.repo_id).is_dir()]
    unreachable = hub_unreachable() if remote else None
    failures = []
    for src in sources:
        try:
            model = _from_pretrained(spec, src, local_only=unreachable is not None)
        except Exception as err:  # offline, gone, no safetensors file, broken download: try the next source
            failures.append(f"{type(err).__name__} for {src}")
            continue
        model = model.to(pick_device(device)).eval().requires_grad_(False)
        note = f" ({src.note})" if src.note else ""
        return LatentCodec(model, name, f"{spec.title} from {src}{note}")
    reason = unreachable or ("no network, or the download failed: " if remote else "unreadable: ") + failures[-1]
    raise WeightsUnavailable(
        f"{spec.title} could not be loaded from {' or '.join(map(str, sources))} ({reason}); connect to the "
        f"internet or set {spec.env_var} to a local copy, or continue with the course VAE, which has {GEOMETRY}.",
        reason,
    )


def load_sd_vae(device: torch.device | str | None = None, source: str | Path | HubSource | None = None) -> LatentCodec:
    """Stable Diffusion's VAE (AutoencoderKL, pinned, safetensors) as a LatentCodec; WeightsUnavailable offline

    Args:
        device: where to put it (default: latentlab.device.pick_device()).
        source: a local folder, "owner/name[@revision]" or a HubSource; default: env LATENTLAB_SD_VAE, else
            SD_MODELS["sd-vae"]'s primary and then its mirror.
    """
    return _load("sd-vae", device, source)


def load_taesd(device: torch.device | str | None = None, source: str | Path | HubSource | None = None) -> LatentCodec:
    """TAESD, SD's tiny distilled autoencoder (AutoencoderTiny, pinned, safetensors); WeightsUnavailable offline"""
    return _load("taesd", device, source)


def _or_course(name: Literal["sd-vae", "taesd"], device, source) -> tuple[LatentCodec, str]:
    try:
        codec = _load(name, device, source)
    except WeightsUnavailable as err:
        sentence = (f"{SD_MODELS[name].title} could not be loaded ({err.reason}), so this lesson continues with the "
                    f"course VAE, which has {GEOMETRY}.")
        codec = LatentCodec(load_course_vae(device), "course-vae", sentence, stands_in_for=TITLES[name])
    return codec, codec.name


def load_sd_vae_or_course(device=None, source=None) -> tuple[LatentCodec, str]:
    """(SD's VAE, "sd-vae"), or offline (the course VAE, "course-vae"); codec.description says which and why"""
    return _or_course("sd-vae", device, source)


def load_taesd_or_course(device=None, source=None) -> tuple[LatentCodec, str]:
    """(TAESD, "taesd"), or offline (the course VAE, "course-vae"); codec.description says which and why"""
    return _or_course("taesd", device, source)


def load_taef1_or_course16(device=None, source=None) -> LatentCodec:
    """FLUX.1's 16-channel latent through TAEF1 when the Hub (or its cache, or LATENTLAB_TAEF1) has it; else the
    course's own 16-channel VAE (lesson 10's sweep, f8c16), with a description that says so in one sentence"""
    try:
        return _load("taef1", device, source)
    except WeightsUnavailable as err:
        from latentlab import sweep  # lazy: only the fallback needs the sweep's weights

        sentence = (f"{SD_MODELS['taef1'].title} could not be loaded ({err.reason}), so this section shows the "
                    "course's own 16-channel VAE (the sweep's f8c16, factor 8 like FLUX.1's) instead.")
        model = sweep.load_vae("f8c16").to(pick_device(device)).requires_grad_(False)
        return LatentCodec(model, "course-f8c16", sentence, title="course f8c16 VAE", stands_in_for="TAEF1")


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (which can show HTML), False in a terminal or a script"""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    return shell is not None and hasattr(shell, "kernel")


def banner(codec: LatentCodec) -> None:
    """say loudly which model a codec really is: a coloured box in Jupyter, one plain line elsewhere"""
    if codec.stands_in_for:
        head = f"⚠ Not {codec.stands_in_for}"
        shown = "the course VAE" if codec.name == "course-vae" else "a model of the course"
        body = f"every panel marked '{codec.title}' shows {shown}. {codec.description}"
        colour, border = "#fff3cd", "#d39e00"  # amber: a fallback is in use
    else:
        head, body = f"✓ {codec.title}", f"{codec.description}."
        colour, border = "#e6f4ea", "#1e8e3e"  # green: the real model
    line = f"{head}: {body}"
    if not _in_kernel():  # a terminal, a script, a test: one line
        print(line)
        return
    from IPython.display import display  # lazy: only inside a Jupyter kernel, where IPython is loaded already

    box = (f'<div style="background:{colour};border-left:6px solid {border};padding:8px 12px;margin:4px 0;'
           f'color:#222;font-size:110%"><b>{html.escape(head)}</b>: {html.escape(body)}</div>')
    display({"text/html": box, "text/plain": line}, raw=True)


def untrained(name: Literal["sd-vae", "taesd"], seed: int = 0) -> LatentCodec:
    """SD's VAE or TAESD built with random weights: the real architecture and cost, no real pictures (offline)"""
    if name not in SD_MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(SD_MODELS)}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = diffusers.AutoencoderKL(**SD_VAE_CONFIG) if name == "sd-vae" else diffusers.AutoencoderTiny()
    title = SD_MODELS[name].title
    return LatentCodec(model.eval().requires_grad_(False), name, f"{title}'s architecture with random weights",
                       title=f"{TITLES[name]} architecture, random weights")


def sd_vae_into_latentlab(autoencoder_kl) -> VAE:
    """SD's VAE weights in the learner's own latentlab.vae.VAE: the same latents and images as AutoencoderKL"""
    model = getattr(autoencoder_kl, "model", autoencoder_kl)  # a LatentCodec, or the diffusers model itself
    if type(model).__name__ != "AutoencoderKL":
        raise InputError(f"sd_vae_into_latentlab needs SD's VAE (a diffusers AutoencoderKL), not a "
                         f"{type(model).__name__}; TAESD and the course VAE are other networks.")
    param = next(model.parameters())
    return VAE.from_diffusers(model).to(param.device, param.dtype).eval().requires_grad_(False)


# ---- img2img's first move


def sd_scheduler():
    """a diffusers DDPMScheduler with Stable Diffusion 1.x's noise schedule (latentlab.diffusion.SD_SCHEDULE)"""
    return diffusers.DDPMScheduler(**SD_SCHEDULE)


def img2img_start(
    latents: torch.Tensor,  # (B, 4, h, w) scaled latents of the input image
    strength: float,  # 0 < strength <= 1: how far towards pure noise img2img starts
    scheduler=None,  # a diffusers scheduler; default sd_scheduler()
    num_inference_steps: int = 50,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """img2img's first move, as StableDiffusionImg2ImgPipeline: noise the latent to the step `strength` of the way

    The sampler keeps the last int(steps * strength) of its steps, and the latent is noised to the first of them
    with scheduler.add_noise, q(x_t | x_0) of Ho et al. 2020 (https://arxiv.org/abs/2006.11239), eq. 4.
    Returns (noisy latents (B, 4, h, w), that timestep t).
    """
    check_latents(latents)
    scheduler = scheduler or sd_scheduler()
    most = scheduler.config.num_train_timesteps
    if not isinstance(num_inference_steps, numbers.Integral) or isinstance(num_inference_steps, bool) \
            or not 1 <= num_inference_steps <= most:
        raise InputError(f"num_inference_steps must be a whole number from 1 to {most} (e.g. 50), "
                         f"not {num_inference_steps!r}.")
    if not isinstance(strength, numbers.Real) or isinstance(strength, bool) or not 0 < strength <= 1:  # NaN fails too
        raise InputError(f"strength must be a number in (0, 1] (e.g. 0.75), not {strength!r}; 0 would return the "
                         "image unchanged, 1 starts from pure noise.")
    keep = int(num_inference_steps * strength)
    if keep == 0:
        raise InputError(f"strength {strength} keeps none of the {num_inference_steps} steps; raise it to at least "
                         f"{1 / num_inference_steps:g} or use more steps.")
    scheduler.set_timesteps(num_inference_steps)
    t = scheduler.timesteps[(num_inference_steps - keep) * scheduler.order]
    noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(latents.device)
    return scheduler.add_noise(latents, noise, t.reshape(1)), int(t)

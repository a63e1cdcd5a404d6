"""Lesson 10: today's latent formats in one table — SD 1.x, SDXL, SD3, FLUX.1, Sana's DC-AE and the course VAE.

A latent format is what a denoiser and its VAE agree on: channels, the down-sampling factor, and the two numbers that
turn raw VAE latents into the denoiser's, `(z - shift_factor) * scaling_factor` (latents.scale; Rombach et al. 2022,
Sec. 4.3, https://arxiv.org/abs/2112.10752; the shift came with SD3 and FLUX.1). Each entry names its diffusers class,
a pinned source for the VAE and its TAESD-family tiny decoder where they are public and ungated, and where published
latent -> RGB preview factors live; docs/formats.md cites every number. `empty_latent` is ComfyUI's *Empty Latent
Image* for any format: zeros in the model's space, the shift everywhere in the raw VAE space.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal

import torch

from latentlab.checkpoints import course_manifest
from latentlab.errors import InputError
from latentlab.latents import scale, unscale
from latentlab.sd import SD_MODELS, HubSource

# ComfyUI's comfy/latent_formats.py at this commit publishes latent -> RGB factors per format (class SD15, SDXL, SD3,
# Flux); they are GPL-3.0 data, so latentlab (MIT) points at them instead of copying them.
COMFY_FORMATS = "github.com/comfyanonymous/ComfyUI/blob/040a3243468ecefd1f2802592d90458f1ce4d65f/comfy/latent_formats.py"


@dataclass(frozen=True)
class LatentFormat:
    """one model family's latent: its geometry, its scale and shift, and where its VAE and tiny decoder are"""

    name: str  # the key in FORMATS, e.g. "flux1"
    title: str  # how the lesson names it
    latent_channels: int  # C of the (B, C, H/f, W/f) latent
    factor: int  # f: image side / latent side
    scaling_factor: float  # the denoiser sees (z - shift_factor) * scaling_factor
    shift_factor: float  # 0 for the formats before SD3
    diffusers_class: str  # the VAE's class in diffusers
    vae: HubSource | None  # pinned, public and ungated; None when gated (see `gated`) or shipped with latentlab
    tiny: HubSource | None  # the TAESD-family decoder for the same latents (diffusers.AutoencoderTiny), if any
    patch_size: int = 1  # latent pixels per side that the denoiser folds into one token (1 for a UNet)
    sample_size: int = 1024  # the image side the model family was trained for
    gated: str = ""  # where the VAE is when its only source needs a licence accepted on the Hub
    preview: str = ""  # where published latent -> RGB preview factors are, in words

    @property
    def multiple_of(self) -> int:
        """image sides must be multiples of this: the VAE's factor times the denoiser's patch"""
        return self.factor * self.patch_size

    def scale(self, z: torch.Tensor) -> torch.Tensor:
        """raw VAE latents -> the denoiser's latents"""
        return scale(z, self.scaling_factor, self.shift_factor)

    def unscale(self, z: torch.Tensor) -> torch.Tensor:
        """the denoiser's latents -> raw VAE latents for the decoder"""
        return unscale(z, self.scaling_factor, self.shift_factor)

    def latent_shape(self, height: int, width: int, batch: int = 1) -> tuple[int, int, int, int]:
        """(B, C, H/f, W/f) for an image of height x width, or an InputError naming the nearest sizes that work"""
        for side, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < self.multiple_of:
                raise InputError(f"{side} must be a whole number of pixels, at least {self.multiple_of} for "
                                 f"{self.title}, not {value!r}.")
            if value % self.multiple_of:
                low = value // self.multiple_of * self.multiple_of
                raise InputError(f"{side} {value} is not a multiple of {self.multiple_of} ({self._why_multiple()}); "
                                 f"use {low} or {low + self.multiple_of}.")
        if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
            raise InputError(f"batch must be a whole number of at least 1, not {batch!r}.")
        return int(batch), self.latent_channels, int(height) // self.factor, int(width) // self.factor

    def _why_multiple(self) -> str:
        why = f"{self.title} latents are {self.factor}x smaller per side"
        if self.patch_size > 1:
            why += f", and its denoiser folds {self.patch_size}x{self.patch_size} latent pixels into one token"
        return why

    def values(self, height: int, width: int) -> int:
        """numbers in one image's latent"""
        _, c, h, w = self.latent_shape(height, width)
        return c * h * w

    def tokens(self, height: int, width: int) -> int:
        """positions the denoiser works on for one image: latent pixels, folded by its patch"""
        _, _, h, w = self.latent_shape(height, width)
        return (h // self.patch_size) * (w // self.patch_size)


FORMATS: dict[str, LatentFormat] = {f.name: f for f in (
    LatentFormat("sd1", "SD 1.x", 4, 8, 0.18215, 0.0, "AutoencoderKL", SD_MODELS["sd-vae"].sources[0],
                 SD_MODELS["taesd"].sources[0], sample_size=512, preview=f"{COMFY_FORMATS}, class SD15"),
    LatentFormat("sdxl", "SDXL", 4, 8, 0.13025, 0.0, "AutoencoderKL",
                 HubSource("stabilityai/sdxl-vae", "6f5909a7e596173e25d4e97b07fd19cdf9611c76"),
                 HubSource("madebyollin/taesdxl", "b20258aaef75ef61e659c1e0f14f251cf0ad153e"),
                 preview=f"{COMFY_FORMATS}, class SDXL"),
    LatentFormat("sd3", "SD3", 16, 8, 1.5305, 0.0609, "AutoencoderKL", None,
                 HubSource("madebyollin/taesd3", "d58dcaccd2b36fcb7a6b9e93c1cc507acab5a778"), patch_size=2,
                 gated="stabilityai/stable-diffusion-3-medium-diffusers, subfolder vae (gated)",
                 preview=f"{COMFY_FORMATS}, class SD3"),
    LatentFormat("flux1", "FLUX.1", 16, 8, 0.3611, 0.1159, "AutoencoderKL",
                 HubSource("black-forest-labs/FLUX.1-schnell", "741f7c3ce8b383c54771c7003378a50191e9efe9", "vae",
                           note="FLUX.1 [schnell]'s VAE, the same autoencoder as the gated FLUX.1 [dev]'s"),
                 SD_MODELS["taef1"].sources[0], patch_size=2,
                 preview=f"{COMFY_FORMATS}, class Flux"),
    LatentFormat("sana", "Sana", 32, 32, 0.41407, 0.0, "AutoencoderDC",
                 HubSource("mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers", "ca69e17e97609e64ce055115a6515215109b1f50"),
                 None, preview="none published that the course found"),
)}
COURSE = "course"


def course_format() -> LatentFormat:
    """the course VAE's format, read from its shipped manifest (so a retrained VAE brings its own numbers)"""
    config = course_manifest("vae")["config"]
    return LatentFormat(COURSE, "course VAE", config["latent_channels"], 2 ** (len(config["block_out_channels"]) - 1),
                        config["scaling_factor"], 0.0, "AutoencoderKL (latentlab.vae.VAE, key for key)", None, None,
                        sample_size=config["sample_size"],
                        preview="fit your own: latentlab.viz.fit_latent_rgb (lesson 04)")


def names() -> tuple[str, ...]:
    return (*FORMATS, COURSE)


def get(fmt: str | LatentFormat) -> LatentFormat:
    """a format by name ("sd1", "sdxl", "sd3", "flux1", "sana", "course"), or an InputError listing the names"""
    if isinstance(fmt, LatentFormat):
        return fmt
    if fmt == COURSE:
        return course_format()
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise InputError(f"unknown latent format {fmt!r}; choose one of {', '.join(names())}.")
    return FORMATS[fmt]


def table() -> list[LatentFormat]:
    """every format, the course VAE last"""
    return [get(name) for name in names()]


def empty_latent(fmt: str | LatentFormat, height: int, width: int, batch: int = 1,
                 space: Literal["model", "raw"] = "model") -> torch.Tensor:
    """ComfyUI's Empty Latent Image: zeros (B, C, H/f, W/f) in the model's space; space="raw" gives the same latent
    as the VAE's decoder reads it, unscale(zeros) = shift_factor everywhere"""
    spec = get(fmt)
    if space not in ("model", "raw"):
        raise InputError(f"space must be 'model' (the denoiser's latents) or 'raw' (the VAE's), not {space!r}.")
    zeros = torch.zeros(spec.latent_shape(height, width, batch))
    return zeros if space == "model" else spec.unscale(zeros)

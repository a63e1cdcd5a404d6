"""Latent conventions, named once: scale / unscale for the denoiser, and the one check of a latent's shape.

A VAE's raw latents are not what a denoiser sees. Latent diffusion (Rombach et al. 2022, Sec. 4.3 and appendix
G, https://arxiv.org/abs/2112.10752) rescales them to unit variance with a `scaling_factor` (0.18215 for SD 1.x);
newer models also subtract a `shift_factor` first (SD3, FLUX). Every site in latentlab converts through these two
functions, never by hand. Lessons 03, 05, 08, 09 (and 10's formats) use them.
"""

from __future__ import annotations

import torch

from latentlab.errors import InputError


def scale(z: torch.Tensor, scaling_factor: float, shift_factor: float = 0.0) -> torch.Tensor:
    """raw VAE latents -> the denoiser's latents: (z - shift_factor) * scaling_factor"""
    return (z - shift_factor) * scaling_factor


def unscale(z: torch.Tensor, scaling_factor: float, shift_factor: float = 0.0) -> torch.Tensor:
    """the denoiser's latents -> raw VAE latents for the decoder: z / scaling_factor + shift_factor"""
    return z / scaling_factor + shift_factor


def check_latents(z, channels: int | None = None, name: str = "latents") -> torch.Tensor:
    """a float (B, C, h, w) tensor of finite values with C == channels (when given), or an InputError saying why"""
    expected = f"(B, {channels if channels is not None else 'C'}, h, w)"
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise InputError(f"{name} must be a float tensor of shape {expected}, not {type(z).__name__}.")
    if z.ndim != 4 or (channels is not None and z.shape[1] != channels):
        hint = " — add a batch axis with z[None]" if z.ndim == 3 and channels in (None, z.shape[0]) else ""
        raise InputError(f"the {name} tensor has shape {tuple(z.shape)}; expected {expected}{hint}.")
    if not torch.isfinite(z).all():
        raise InputError(f"the {name} tensor contains NaN or infinite values; check the step that produced it.")
    return z

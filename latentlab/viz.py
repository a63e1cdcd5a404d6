"""Pictures of latents: each channel as an image, per-channel histograms, and a linear latent -> RGB preview.

The preview is the trick behind cheap "live previews" in Stable Diffusion front ends: a 4 x 3 matrix
(plus a bias) maps each latent pixel's 4 numbers to an RGB colour. Here it is fitted by least squares
from latents to the image shrunk to the latent's size, so it works for any VAE, the course's or SD's.
Lesson 04 builds it; lessons 02, 03, 08 and 09 show their pictures with `show_images`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from latentlab.errors import InputError
from latentlab.images import to_numpy
from latentlab.latents import check_latents


def _as_latent(latent: torch.Tensor, name: str = "latent") -> torch.Tensor:
    """(C, h, w) or (B, C, h, w) -> (B, C, h, w) float on the CPU; latents.check_latents says what is wrong"""
    latent = latent[None] if isinstance(latent, torch.Tensor) and latent.ndim == 3 else latent
    return check_latents(latent, name=name).detach().float().cpu()


def plot_channels(
    latent: torch.Tensor,
    titles: Sequence[str] | None = None,
    cmap: str = "RdBu_r",  # diverging: white is 0, red positive, blue negative
    size: float = 2.6,  # inches per panel
) -> plt.Figure:
    """One panel per channel of the first latent in the batch, each with its own symmetric colour scale."""
    z = _as_latent(latent)[0]  # (C, h, w)
    channels = z.shape[0]
    titles = titles or [f"channel {c}" for c in range(channels)]
    fig, axes = plt.subplots(1, channels, figsize=(size * channels, size + 0.4), squeeze=False)
    for c, ax in enumerate(axes[0]):
        limit = max(torch.quantile(z[c].abs().flatten(), 0.995).item(), 1e-6)  # a few outliers don't wash it out
        im = ax.imshow(z[c].numpy(), cmap=cmap, vmin=-limit, vmax=limit)
        ax.set_title(f"{titles[c]}\nmean {z[c].mean():+.2f}, std {z[c].std():.2f}", fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    fig.tight_layout()
    return fig


def plot_latent_histograms(latents: torch.Tensor, bins: int = 60, size: float = 2.6) -> plt.Figure:
    """Histogram of every channel's values over a batch of latents (B, C, h, w), with mean and std."""
    z = _as_latent(latents, "latents")
    channels = z.shape[1]
    fig, axes = plt.subplots(1, channels, figsize=(size * channels, size), squeeze=False, sharey=True)
    for c, ax in enumerate(axes[0]):
        values = z[:, c].flatten()
        ax.hist(values.numpy(), bins=bins, color=f"C{c}", alpha=0.8, density=True)
        ax.axvline(values.mean().item(), color="k", lw=1)
        ax.set_title(f"channel {c}: mean {values.mean():+.2f}\nstd {values.std():.2f}", fontsize=9)
        ax.set_xlabel("latent value")
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    return fig


def show_images(
    images: torch.Tensor | Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    nrow: int | None = None,  # images per row; default: all in one row
    size: float = 3.0,  # inches per image
) -> plt.Figure:
    """Images in [-1, 1] ((B, 3, H, W), or a list of (3, H, W) / (1, 3, H, W)) side by side, with titles."""
    if isinstance(images, torch.Tensor):
        items = list(images if images.ndim == 4 else images[None])
    else:
        items = [x[0] if x.ndim == 4 else x for x in images]
    if not items:
        raise InputError("show_images got no images; pass a batch (B, 3, H, W) or a list of images.")
    if titles is not None and len(titles) != len(items):
        raise InputError(f"show_images got {len(items)} images but {len(titles)} titles; give one title per image.")
    nrow = nrow or len(items)
    rows = -(-len(items) // nrow)
    title_lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles else 0
    fig, axes = plt.subplots(rows, nrow, figsize=(size * nrow, (size + 0.2 * title_lines) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, x) in enumerate(zip(axes.flat[: len(items)], items, strict=True)):
        ax.imshow(to_numpy(x), interpolation="nearest" if x.shape[-1] < 128 else "antialiased")
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
    fig.tight_layout()
    return fig


def _downsample_to(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, h, w) by averaging each H/h x W/w block (the pixels a latent value covers)"""
    return F.adaptive_avg_pool2d(images.float(), size)


def fit_latent_rgb(latents: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares latent -> RGB: weight (C, 3) and bias (3,) minimising |z W + b - downsampled image|^2.

    Args:
        latents: (B, C, h, w) latents of the images.
        images: (B, 3, H, W) in [-1, 1]; each is shrunk to (h, w) by block averaging.
    """
    z = _as_latent(latents, "latents")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise InputError("images must be a tensor (B, 3, H, W) in [-1, 1], one per latent.")
    if images.shape[0] != z.shape[0]:
        raise InputError(f"got {z.shape[0]} latents but {images.shape[0]} images; pass one image per latent.")
    target = _downsample_to(images.detach().cpu(), z.shape[-2:])  # (B, 3, h, w)
    x = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()  # (N, C): one row per latent pixel
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).double()  # (N, 3)
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)  # (N, C + 1): a column of ones for the bias
    solution = torch.linalg.lstsq(x1, y).solution  # (C + 1, 3)
    return solution[:-1].float(), solution[-1].float()


def latent_to_rgb(latents: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents -> (B, 3, h, w) preview in [-1, 1] by the linear map z W + b of each latent pixel"""
    z = _as_latent(latents)
    if weight.shape != (z.shape[1], 3) or bias.shape != (3,):
        raise InputError(
            f"weight must be ({z.shape[1]}, 3) and bias (3,) for a {z.shape[1]}-channel latent, "
            f"got {tuple(weight.shape)} and {tuple(bias.shape)}; fit them with fit_latent_rgb."
        )
    rgb = torch.einsum("bchw,cr->brhw", z, weight.float()) + bias.float()[None, :, None, None]  # (B, 3, h, w)
    return rgb.clamp(-1, 1)

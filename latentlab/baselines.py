"""Baselines that keep as many numbers as a VAE latent: bicubic down/up-sampling and PCA on patches.

A VAE with downsampling factor 8 and 4 latent channels keeps 4 * (H/8) * (W/8) values of the
3 * H * W in an image: 48x fewer. A fair baseline keeps the same number of values:
- bicubic: shrink the image by the side scale 1/sqrt(48) (so 3 * h * w ~ 4 * H/8 * W/8), then enlarge;
- patch PCA: cut the image into 8x8 patches (192 values each) and keep the top 4 principal
  components of each patch (Pearson 1901; the linear autoencoder an autoencoder must beat).
Images are (B, 3, H, W) in [-1, 1]. Lesson 02 sets the autoencoder against both (its exercise works out the
bicubic size); tools/eval_vae.py scores the shipped VAE against them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latentlab.errors import InputError
from latentlab.images import check_image


def equal_size_scale(factor: int = 8, latent_channels: int = 4, image_channels: int = 3) -> float:
    """Side scale s with image_channels * (s H) * (s W) = latent_channels * (H/factor) * (W/factor)."""
    return math.sqrt(latent_channels / (image_channels * factor**2))  # 1/sqrt(48) ~ 0.144 for SD's VAE


def latent_values(height: int, width: int, factor: int = 8, latent_channels: int = 4) -> int:
    """Number of values in a latent for an image of this size: latent_channels * H/factor * W/factor."""
    return latent_channels * (height // factor) * (width // factor)


def bicubic_size(height: int, width: int, keep_values: int, channels: int = 3) -> tuple[int, int]:
    """(h, w) with the image's aspect ratio and channels * h * w as close as possible to keep_values."""
    scale = math.sqrt(keep_values / (channels * height * width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def bicubic_roundtrip(x: torch.Tensor, keep_values: int | None = None) -> torch.Tensor:
    """(B, 3, H, W) -> shrink to keep_values numbers per image (default: as many as an SD latent) -> (B, 3, H, W).

    Args:
        x: images in [-1, 1].
        keep_values: values kept per image; default 4 * (H/8) * (W/8), the size of a latent.
    """
    check_image(x, name="images")
    height, width = x.shape[-2:]
    if keep_values is None:
        keep_values = latent_values(height, width)
    if keep_values <= 0:
        raise InputError(f"keep_values must be a positive number of values, got {keep_values}.")
    small_size = bicubic_size(height, width, keep_values)
    small = F.interpolate(x.float(), size=small_size, mode="bicubic", antialias=True)  # (B, 3, h, w)
    big = F.interpolate(small, size=(height, width), mode="bicubic")  # (B, 3, H, W)
    return big.clamp(-1, 1).to(x.dtype)


class PatchPCA:
    """PCA on non-overlapping patches: keep n_components numbers per patch_size x patch_size patch."""

    def __init__(self, patch_size: int = 8, n_components: int = 4):
        if patch_size < 1 or n_components < 1:
            raise InputError(f"patch_size={patch_size} and n_components={n_components} must both be at least 1, "
                             "e.g. 8 and 4.")
        if n_components > 3 * patch_size**2:
            raise InputError(f"n_components={n_components} is more than the {3 * patch_size**2} values in a patch.")
        self.patch_size = patch_size  # 8: one code vector per 8x8 patch, like the VAE's factor
        self.n_components = n_components  # 4: as many values per patch as latent channels
        self.mean: torch.Tensor | None = None  # (3 p p,)
        self.components: torch.Tensor | None = None  # (n_components, 3 p p), rows are principal axes
        self.explained_variance: torch.Tensor | None = None  # (n_components,)

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B * H/p * W/p, 3 p p)"""
        p = self.patch_size
        check_image(x, name="images", multiple_of=p)
        patches = F.unfold(x.float(), kernel_size=p, stride=p)  # (B, 3 p p, L)
        return patches.transpose(1, 2).reshape(-1, 3 * p * p)

    def fit(self, images: torch.Tensor) -> PatchPCA:
        """Principal axes of the patches of images (B, 3, H, W) in [-1, 1]; returns self."""
        patches = self._patches(images).double()  # (N, 3 p p)
        if patches.shape[0] < self.n_components:
            n = patches.shape[0]
            raise InputError(f"only {n} patches to fit {self.n_components} components; give more images.")
        mean = patches.mean(0)
        centered = patches - mean
        if patches.shape[0] < patches.shape[1]:  # fewer patches than values per patch (32x32 patches, lesson 10):
            _, singular, axes = torch.linalg.svd(centered, full_matrices=False)  # the same axes, in a fraction
            self.mean = mean.float()  # of the time of a (3 p p)^2 eigendecomposition
            self.components = axes[: self.n_components].contiguous().float()
            self.explained_variance = (singular[: self.n_components] ** 2 / max(1, patches.shape[0] - 1)).float()
            return self
        covariance = centered.T @ centered / max(1, patches.shape[0] - 1)  # (3 p p, 3 p p)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending order
        top = eigenvalues.argsort(descending=True)[: self.n_components]
        self.mean = mean.float()
        self.components = eigenvectors[:, top].T.contiguous().float()
        self.explained_variance = eigenvalues[top].float()
        return self

    def _require_fit(self) -> None:
        if self.components is None:
            raise InputError("this PatchPCA is not fitted yet; call .fit(images) first.")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> codes (B, n_components, H/p, W/p)"""
        self._require_fit()
        batch, _, height, width = x.shape
        p = self.patch_size
        codes = (self._patches(x) - self.mean) @ self.components.T  # (B * L, k)
        codes = codes.reshape(batch, (height // p) * (width // p), self.n_components)
        return codes.transpose(1, 2).reshape(batch, self.n_components, height // p, width // p)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, n_components, h, w) -> images (B, 3, h p, w p) in [-1, 1]"""
        self._require_fit()
        if codes.ndim != 4 or codes.shape[1] != self.n_components:
            raise InputError(f"expected codes of shape (B, {self.n_components}, h, w), got {tuple(codes.shape)}.")
        batch, k, h, w = codes.shape
        p = self.patch_size
        flat = codes.reshape(batch, k, h * w).transpose(1, 2) @ self.components + self.mean  # (B, L, 3 p p)
        images = F.fold(flat.transpose(1, 2), output_size=(h * p, w * p), kernel_size=p, stride=p)  # (B, 3, H, W)
        return images.clamp(-1, 1)

    def roundtrip(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> encode -> decode -> (B, 3, H, W)"""
        return self.decode(self.encode(x))

    @property
    def values_per_image_factor(self) -> float:
        """How many fewer numbers the codes hold than the image: 3 p^2 / n_components (48 for 8x8 and 4)."""
        return 3 * self.patch_size**2 / self.n_components

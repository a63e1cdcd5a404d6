"""Colour augmentation: move photo crops around the colour cube, so a VAE sees every hue (lessons 02 and 04).

The course's training photos sit mostly on one orange-blue axis; a model trained on them alone has no reason to
keep green, cyan or magenta apart (issue 12). Each crop gets its own random colour transform:
- a hue rotation: a rotation of the chroma plane around the grey axis R = G = B (Rodrigues' formula), so greys
  stay grey and 120 degrees turns red into green;
- a channel permutation (any of the 6 orders; the odd ones mirror the hue circle, which no rotation does);
- a saturation factor: chroma scaled about each pixel's grey mean(R, G, B);
- a gamma: x -> x ** gamma on [0, 1], which changes brightness and contrast without clipping.
The first three are one 3x3 matrix per image, applied at once; images are (B, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from latentlab.errors import InputError

GREY_AXIS = torch.full((3,), 1 / math.sqrt(3))  # unit vector along R = G = B


def hue_rotation_matrix(degrees: float | torch.Tensor) -> torch.Tensor:
    """angle(s) (n,) -> (n, 3, 3) rotations about the grey axis: cos I + sin [n]x + (1 - cos) n n^T"""
    theta = torch.as_tensor(degrees, dtype=torch.float32).reshape(-1) * (math.pi / 180)
    n = GREY_AXIS
    cross = torch.tensor([[0.0, -n[2], n[1]], [n[2], 0.0, -n[0]], [-n[1], n[0], 0.0]])  # [n]x, the cross product
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    return cos * torch.eye(3) + sin * cross + (1 - cos) * torch.outer(n, n)


def saturation_matrix(factor: float | torch.Tensor) -> torch.Tensor:
    """factor(s) (n,) -> (n, 3, 3) maps x -> grey + factor * (x - grey), grey = mean(R, G, B)"""
    s = torch.as_tensor(factor, dtype=torch.float32).reshape(-1, 1, 1)
    return s * torch.eye(3) + (1 - s) * torch.full((3, 3), 1 / 3)


def apply_colour_matrix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] and (B or 1, 3, 3) -> each pixel's RGB multiplied by its image's matrix, clamped"""
    return torch.einsum("bij,bjhw->bihw", matrix.to(x), x).clamp(-1, 1)


def rotate_hue(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """(B, 3, H, W) -> hue turned by `degrees` around the grey axis (120: red -> green -> blue -> red)"""
    return apply_colour_matrix(x, hue_rotation_matrix(degrees))


def scale_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    """(B, 3, H, W) -> chroma scaled by factor (0: grey, 1: unchanged)"""
    return apply_colour_matrix(x, saturation_matrix(factor))


def permute_channels(x: torch.Tensor, order: tuple[int, int, int]) -> torch.Tensor:
    """(B, 3, H, W) -> channels reordered, e.g. (2, 1, 0) for BGR"""
    if sorted(order) != [0, 1, 2]:
        raise InputError(f"a channel order must use 0, 1 and 2 once each, like (2, 1, 0), not {order}.")
    return x[:, list(order)]


def adjust_gamma(x: torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> ((x + 1) / 2) ** gamma mapped back; gamma (B,) per image or a number"""
    gamma = torch.as_tensor(gamma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    return ((x + 1) / 2).clamp(0, 1).pow(gamma) * 2 - 1


@dataclass
class ColourJitter:
    """the ranges one random colour transform per image is drawn from"""

    hue_degrees: float = 180.0  # hue turned by a uniform angle in +-this; 180 reaches every hue
    permute: float = 0.5  # probability that the channels are also shuffled (one of the 6 orders, uniformly)
    saturation: tuple[float, float] = (0.6, 1.6)  # chroma factor, log-uniform in this range
    gamma: tuple[float, float] = (0.7, 1.4)  # gamma, log-uniform in this range (1: unchanged)

    def __post_init__(self):
        for name in ("saturation", "gamma"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise InputError(f"the {name} range must be two positive numbers lo <= hi, like (0.7, 1.4), not {(lo, hi)}.")
        if not 0 <= self.permute <= 1:
            raise InputError(f"permute is a probability between 0 and 1, not {self.permute}.")


def _log_uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(n, generator=generator))


def colour_jitter(
    x: torch.Tensor, generator: torch.Generator | None = None, jitter: ColourJitter | None = None
) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> each image with its own random hue, channel order, saturation and gamma"""
    jitter = jitter or ColourJitter()
    b = x.shape[0]
    angles = (torch.rand(b, generator=generator) * 2 - 1) * jitter.hue_degrees
    saturation = _log_uniform(b, *jitter.saturation, generator)
    gamma = _log_uniform(b, *jitter.gamma, generator)
    shuffle = torch.rand(b, generator=generator) < jitter.permute
    orders = torch.stack([torch.randperm(3, generator=generator) for _ in range(b)])  # (B, 3)
    orders[~shuffle] = torch.arange(3)
    permutation = torch.eye(3)[orders]  # (B, 3, 3): row i picks input channel orders[i]
    matrix = saturation_matrix(saturation) @ hue_rotation_matrix(angles) @ permutation  # (B, 3, 3)
    return adjust_gamma(apply_colour_matrix(x, matrix), gamma.to(x))


class ColourAugmented(Dataset):
    """a dataset of images (C, H, W) whose every item gets its own colour_jitter, deterministic in (seed, index)"""

    def __init__(self, dataset: Dataset, jitter: ColourJitter | None = None, seed: int = 0):
        self.dataset, self.jitter, self.seed = dataset, jitter or ColourJitter(), seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index + 7_919)  # apart from the crop's own stream
        return colour_jitter(self.dataset[index][None], g, self.jitter)[0]

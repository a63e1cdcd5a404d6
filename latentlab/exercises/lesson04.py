"""Lesson 04's exercises: fit the linear latent -> RGB map by least squares, and apply it.

References: `viz.fit_latent_rgb` and `viz.latent_to_rgb`. Each latent position is one equation
z W + b = the mean colour of the 8 x 8 pixel block it covers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentlab import viz
from latentlab.exercises import Exercise, Mistake


def _latents_and_images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """latents (2, 4, 6, 5) and images (2, 3, 48, 40) whose 8 x 8 block means are nearly a linear map of them"""
    g = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn(2, 4, 6, 5, generator=g) * torch.tensor([3.0, 1.0, 2.0, 0.5])[None, :, None, None]
    weight, bias = 0.1 * torch.randn(4, 3, generator=g), torch.tensor([0.1, -0.2, 0.05])
    colour = torch.einsum("bchw,cr->brhw", latents, weight) + bias[None, :, None, None]  # (2, 3, 6, 5)
    colour = colour + 0.05 * torch.randn(colour.shape, generator=g)  # not exactly linear, like a real VAE
    texture = 0.2 * torch.randn(2, 3, 8, 8, generator=g)
    texture = (texture - texture.mean(dim=(2, 3), keepdim=True)).repeat(1, 1, 6, 5)  # zero mean in every block
    images = F.interpolate(colour, scale_factor=8, mode="nearest") + texture  # (2, 3, 48, 40)
    return latents, images


def _rows(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B h w, C), one row per position"""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()


def _solve(x: torch.Tensor, y: torch.Tensor, bias: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """least squares rows x -> rows y: (weight, bias), float32"""
    if bias:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(x, y).solution
    return (solution[:-1].float(), solution[-1].float()) if bias else (solution.float(), torch.zeros(3))


# ---- exercise: fit the map


def _fit_mistakes(latents: torch.Tensor, images: torch.Tensor) -> list[Mistake]:
    target = F.adaptive_avg_pool2d(images, latents.shape[-2:])
    weight, bias = viz.fit_latent_rgb(latents, images)
    scrambled_x = latents.reshape(-1, latents.shape[1]).double()  # (B h w, C) without moving C last: wrong rows
    scrambled_y = target.reshape(-1, 3).double()
    one_pixel = images[:, :, ::8, ::8]  # the top-left pixel of each block
    return [
        (_solve(_rows(latents), _rows(target), bias=False), "the map has no bias: with only z W, a latent of zeros "
                                                            "must be black-grey. Add a constant column to the "
                                                            "equations."),
        (_solve(scrambled_x, _rows(target)), "the rows of your equations mix up positions and channels: flatten "
                                             "(B, C, h, w) to one row per position only after moving C to the end."),
        (_solve(scrambled_x, scrambled_y), "the rows of your equations mix up positions and channels: flatten "
                                           "(B, C, h, w) to one row per position only after moving C to the end."),
        (_solve(_rows(latents), _rows(one_pixel)), "the target is one pixel per block; use the mean colour of the "
                                                   "whole 8 x 8 block each latent value covers."),
        ((weight.T, bias), "the weight is (C, 3): one row per latent channel, one column per colour."),
        ((bias, weight), "return the weight first, then the bias."),
    ]


FIT_LATENT_RGB = Exercise(
    name="fit_latent_rgb",
    lesson="04",
    reference=viz.fit_latent_rgb,
    cases=lambda: [_latents_and_images(0), _latents_and_images(1)],
    case_names=("on a second set of latents and images",),
    mistakes=_fit_mistakes,
    hints=("Each latent position gives one equation: its 4 numbers times W, plus b, should equal the mean colour of "
           "the pixel block it covers. Stack all positions as rows and solve the system by least squares.",
           "Rows: (B · h · w, C) latents with a column of ones appended (for b), and (B · h · w, 3) block-mean "
           "colours. The solution has C + 1 rows: the first C are W, the last is b."),
    rtol=1e-3,
    atol=1e-4,  # least squares in float32 or float64 both pass
)


# ---- exercise: apply it


def _apply_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """latents (2, 4, 6, 5), a weight (4, 3) and bias (3,) whose colours leave [-1, 1] in places"""
    g = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(2, 4, 6, 5, generator=g), 0.5 * torch.randn(4, 3, generator=g), torch.tensor([0.2, -0.1, 0.0])


def _apply_mistakes(latents: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> list[Mistake]:
    linear = torch.einsum("bchw,cr->brhw", latents, weight) + bias[None, :, None, None]
    scrambled = latents.reshape(latents.shape[0], -1, latents.shape[1]) @ weight + bias  # (B, h w, 3), wrong rows
    return [
        (linear, "the colours must stay in the image range [-1, 1]: clip them."),
        ((linear - bias[None, :, None, None]).clamp(-1, 1), "the bias is missing."),
        (linear.clamp(-1, 1).permute(0, 2, 3, 1), "the colour comes first: the lesson needs (B, 3, h, w), not "
                                                  "(B, h, w, 3)."),
        (scrambled.clamp(-1, 1).transpose(1, 2).reshape(latents.shape[0], 3, *latents.shape[-2:]),
         "positions and channels are mixed up: each position's 4 channel values must be the ones multiplied by W."),
    ]


LATENT_TO_RGB = Exercise(
    name="latent_to_rgb",
    lesson="04",
    reference=viz.latent_to_rgb,
    cases=lambda: [_apply_case(0)],
    mistakes=_apply_mistakes,
    hints=("At every position the 4 latent numbers, as a row, times W (4 x 3), plus b, give that position's colour; "
           "the picture is (B, 3, h, w) in [-1, 1].",
           "Contract the channel axis of the latents with the first axis of W, add b to every position (reshape it to "
           "broadcast over B, h, w), and clip to [-1, 1]."),
)

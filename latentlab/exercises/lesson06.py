"""Lesson 06's exercises: the sinusoidal timestep embedding, and the channels the up path's skips add.

References: `unet.timestep_embedding` (Vaswani et al. 2017, Sec. 3.5, in diffusers' [cos, sin] order) and a
built `unet.UNet`, whose up-path ResBlocks are read for the number of channels each one takes in.
"""

from __future__ import annotations

import math

import torch

from latentlab.exercises import Exercise, Mistake
from latentlab.unet import UNet, UNetConfig, timestep_embedding


def up_channels(block_out_channels: tuple[int, ...], layers_per_block: int) -> list[int]:
    """the input channels of every ResBlock on the up path (its x plus the skip it concatenates), read off a UNet"""
    widths = tuple(block_out_channels)
    levels = len(widths)
    model = UNet(UNetConfig(block_out_channels=widths, layers_per_block=layers_per_block,
                            norm_num_groups=math.gcd(*widths), attention_head_dim=None,
                            down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels))
    return [resnet.conv1.in_channels for block in model.up_blocks for resnet in block.resnets]


# ---- exercise: the timestep embedding


def _embedding_mistakes(timesteps: torch.Tensor, dim: int) -> list[Mistake]:
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32)

    def embed(freqs: torch.Tensor, sin_first: bool = False) -> torch.Tensor:
        angles = timesteps[:, None].float() * freqs[None, :]  # (B, dim/2)
        parts = [torch.sin(angles), torch.cos(angles)]
        return torch.cat(parts if sin_first else parts[::-1], dim=-1)  # (B, dim)

    right = torch.exp(-math.log(10_000) * i / half)
    angles = timesteps[:, None].float() * right[None, :]
    return [
        (embed(right, sin_first=True), "the sines come first; diffusers' UNet2DModel (flip_sin_to_cos=True) puts "
                                       "the cosines first, then the sines."),
        (embed(torch.exp(-math.log(10_000) * i / dim)), "your frequencies only fall to about 1/100: over the dim/2 "
                                                        "frequencies the exponent must run down to almost "
                                                        "−log 10000, so divide the index by dim/2, not dim."),
        (embed(torch.exp(-math.log(10_000) * i / (half - 1))), "your lowest frequency is exactly 1/10000; with the "
                                                               "index divided by dim/2 (the number of frequencies) "
                                                               "it stops just above it."),
        (embed(torch.exp(math.log(10_000) * i / half)), "the frequencies must fall from 1 to 1/10000, not rise."),
        (torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1).flatten(1), "all the cosines first, then all "
                                                                                 "the sines, not alternating."),
        (embed(torch.linspace(1, 1 / 10_000, half)), "the frequencies are spaced geometrically (each one the previous "
                                                     "times the same factor), not evenly."),
        (embed(right).T, "one row per timestep: the lesson needs (B, dim), not (dim, B)."),
    ]


TIMESTEP_EMBEDDING = Exercise(
    name="timestep_embedding",
    lesson="06",
    reference=timestep_embedding,
    cases=lambda: [(torch.tensor([0, 1, 10, 500, 999]), 16), (torch.tensor([3, 999]), 64)],
    case_names=("with dim = 64",),
    mistakes=_embedding_mistakes,
    hints=("For frequencies ω_0 … ω_{dim/2 − 1} falling geometrically from 1 towards 1/10000, each timestep t "
           "becomes the dim/2 values cos(t ω_i) followed by the dim/2 values sin(t ω_i).",
           "ω_i = 10000^(−i / (dim/2)) = e^(−ln(10000) · i / (dim/2)); the angles t ω_i form a (B, dim/2) table "
           "(give the timesteps a new axis), and the cosines and sines are joined along the last axis."),
)


# ---- exercise: the skips' channels


def _walk(widths: tuple[int, ...], per_block: int, *, up_resnets: int | None = None, conv_in_skip: bool = True,
          downsample_skip: bool = True, first_in_first_out: bool = False, concatenate: bool = True) -> list[int]:
    """the up path's ResBlock inputs, walked with one of the rules changed (a typical misreading)"""
    skips = [widths[0]] if conv_in_skip else []
    for i, width in enumerate(widths):
        skips += [width] * per_block
        if downsample_skip and i < len(widths) - 1:
            skips.append(width)
    x, inputs = widths[-1], []
    for width in reversed(widths):
        for _ in range(per_block + 1 if up_resnets is None else up_resnets):
            skip = (skips.pop(0) if first_in_first_out else skips.pop()) if skips else 0
            inputs.append(x + skip if concatenate else x)
            x = width
    return inputs


def _channel_mistakes(block_out_channels: tuple[int, ...], layers_per_block: int) -> list[Mistake]:
    w, n = tuple(block_out_channels), layers_per_block
    return [
        (_walk(w, n, concatenate=False), "each ResBlock takes x and a skip concatenated on the channels: add the "
                                         "skip's channels."),
        (_walk(w, n, up_resnets=n), "an up level has one ResBlock more than its down twin (layers_per_block + 1), "
                                    "so that every skip is used."),
        (_walk(w, n, first_in_first_out=True), "the skips come back in reverse order: the last one kept is the first "
                                               "one used."),
        (_walk(w, n, conv_in_skip=False), "conv_in's output is a skip too (the first one kept)."),
        (_walk(w, n, downsample_skip=False), "each downsampling's output is kept as a skip too."),
        ([2 * c for c in _walk(w, n, concatenate=False)], "a skip does not always have x's width: take the width of "
                                                          "the level it was kept at."),
    ]


UP_CHANNELS = Exercise(
    name="up_channels",
    lesson="06",
    reference=up_channels,
    cases=lambda: [((32, 64), 1), ((16, 32, 48), 2), ((8, 16, 32, 32), 1)],
    case_names=("with three levels and layers_per_block=2", "with four levels"),
    mistakes=_channel_mistakes,
    hints=("Walk the down path and list every tensor kept as a skip, with its channels; then walk the up path, "
           "taking skips from the end of the list: each ResBlock's input is x's channels plus the skip's.",
           "Kept: conv_in's output, every down ResBlock's output and every downsampling's output. Up: layers_per_block "
           "+ 1 ResBlocks per level; x has the width of the level below for the first one, the level's own width "
           "after that."),
)

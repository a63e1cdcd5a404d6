"""A tiny preview decoder: latent (B, 4, h, w) -> image (B, 3, 8h, 8w) with plain convolutions, 0.12 M parameters.

After TAESD (Ollin Boer Bohan 2023, https://github.com/madebyollin/taesd): ReLU blocks with a skip, nearest 2x
upsampling and a convolution, no attention and no normalisation, so it is cheap on any CPU. Two changes make it
smaller still: the widths halve at each doubling, and the last doubling is a pixel shuffle (Shi et al. 2016,
https://arxiv.org/abs/1609.05158), so no convolution runs at full resolution. It takes the same raw (unscaled)
latents as `VAE.decode` and learns to imitate it (tiny_decoder_training, `latentlab train tiny-decoder`).
Lesson 04 compares it with the linear map and the full decoder and drives the sliders with it; lesson 08 watches
samples form through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from latentlab.errors import InputError
from latentlab.latents import check_latents


@dataclass
class TinyDecoderConfig:
    latent_channels: int = 4  # like the course VAE and SD
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (64, 32, 16)  # widths at 1x, 2x, 4x the latent side; a pixel shuffle does 8x
    layers_per_block: int = 1  # residual blocks at each width
    global_context: bool = False  # after each width's blocks, a GlobalContext: the picture's statistics, as GroupNorm

    def __post_init__(self):
        self.block_out_channels = tuple(self.block_out_channels)
        if not isinstance(self.global_context, bool):
            raise InputError(f"global_context must be true or false, not {self.global_context!r}.")
        for name in ("latent_channels", "out_channels", "layers_per_block"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a whole number of at least 1, not {value!r}.")
        if not self.block_out_channels or not all(isinstance(c, int) and c >= 1 for c in self.block_out_channels):
            raise InputError(f"block_out_channels={self.block_out_channels!r} must list one positive width per "
                             "resolution, e.g. (64, 32, 16) (factor 8).")

    @property
    def factor(self) -> int:
        """Image side / latent side: each width after the first doubles it, the pixel shuffle once more."""
        return 2 ** len(self.block_out_channels)


def conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class Block(nn.Module):
    """x -> relu(x + conv(relu(conv(x)))): TAESD's block, one convolution shorter"""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Sequential(conv(channels, channels), nn.ReLU(), conv(channels, channels))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv(x))


class GlobalContext(nn.Module):
    """x -> x * (1 + scale) + shift, scale and shift per channel from the whole picture's mean and spread of x

    The full decoder's GroupNorm gives every position the statistics of the whole picture, so it draws a patch's
    colour a little differently in another picture; convolutions alone only see a neighbourhood. Two 1x1
    convolutions on the picture's per-channel mean and standard deviation give the tiny decoder the same view for
    almost nothing (no normalisation: the features are only rescaled and shifted, FiLM-style). The last
    convolution starts at zero, so a new block leaves x as it is.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(2 * channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, 2 * channels, 1))
        nn.init.zeros_(self.mix[-1].weight)
        nn.init.zeros_(self.mix[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((2, 3), keepdim=True)
        spread = (x - mean).pow(2).mean((2, 3), keepdim=True).add(1e-6).sqrt()
        scale, shift = self.mix(torch.cat([mean, spread], 1)).chunk(2, 1)
        return x * (1 + scale) + shift


class TinyDecoder(nn.Module):
    """raw latent (B, 4, h, w) -> image (B, 3, 8h, 8w), roughly in [-1, 1] (not clamped), like VAE.decode"""

    def __init__(self, config: TinyDecoderConfig | None = None):
        super().__init__()
        self.config = config = config or TinyDecoderConfig()
        widths, layers = config.block_out_channels, config.layers_per_block
        stages: list[nn.Module] = [conv(config.latent_channels, widths[0]), nn.ReLU()]
        for i, width in enumerate(widths):
            stages += [Block(width) for _ in range(layers)]
            if config.global_context:
                stages.append(GlobalContext(width))
            if i < len(widths) - 1:  # nearest 2x, then a convolution to the next width
                stages += [nn.Upsample(scale_factor=2), conv(width, widths[i + 1]), nn.ReLU()]
        stages += [conv(widths[-1], config.out_channels * 4), nn.PixelShuffle(2)]  # 4 pixels per position: 2x
        self.layers = nn.Sequential(*stages)

    @property
    def factor(self) -> int:
        return self.config.factor

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.layers(latent)  # (B, 4, h, w) -> (B, 3, 8h, 8w)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (B, 4, h, w), raw as VAE.encode gives it -> image (B, 3, 8h, 8w); a drop-in for VAE.decode"""
        check_latents(latent, self.config.latent_channels, "latent")
        param = next(self.parameters())
        return self(latent.to(param.device, param.dtype))

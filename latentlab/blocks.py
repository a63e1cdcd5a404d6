"""Convolutional building blocks shared by the course VAE and UNet.

The layers of Stable Diffusion's autoencoder and UNet (Rombach et al. 2022,
https://arxiv.org/abs/2112.10752, after Ho et al. 2020's DDPM UNet), written small and named
like diffusers (`ResnetBlock2D`, `Downsample2D`, `Upsample2D`, `Attention`, `UNetMidBlock2D`),
so that a state dict made here loads into the diffusers twin key for key. Lesson 02 assembles an autoencoder
from them; lesson 06 builds the UNet from the same blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _residual(x: torch.Tensor, h: torch.Tensor, scale: float) -> torch.Tensor:
    """(x + h) / scale, skipping the division when scale is 1 (the common case; saves a pass over memory)."""
    return x + h if scale == 1.0 else (x + h) / scale


class ResBlock(nn.Module):
    """x -> norm, SiLU, conv (+ time) -> norm, SiLU, dropout, conv -> + shortcut(x); diffusers' ResnetBlock2D."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        temb_channels: int | None = None,  # None: no time conditioning (the VAE); an int: the UNet's time embedding
        groups: int = 32,
        eps: float = 1e-6,
        dropout: float = 0.0,
        output_scale_factor: float = 1.0,  # the sum is divided by this, like diffusers
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels) if temb_channels is not None else None
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C_in, H, W), optional temb (B, T) -> (B, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]  # broadcast over H, W
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, C_out, H, W)
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return _residual(x, h, self.output_scale_factor)


class Downsample(nn.Module):
    """(B, C, H, W) -> (B, C_out, H/2, W/2) by a stride-2 3x3 conv; diffusers' Downsample2D."""

    def __init__(self, channels: int, out_channels: int | None = None, padding: int = 0):
        # padding=0 pads only right and bottom (AutoencoderKL); padding=1 pads all sides (UNet2DModel)
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))  # (B, C, H+1, W+1)
        return self.conv(x)


class Upsample(nn.Module):
    """(B, C, H, W) -> (B, C_out, 2H, 2W) by nearest-neighbour doubling and a 3x3 conv; diffusers' Upsample2D."""

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, C, 2H, 2W)
        return self.conv(x)


class Attention(nn.Module):
    """Self-attention over the H*W positions of a feature map, with a residual; diffusers' Attention."""

    def __init__(
        self,
        channels: int,
        heads: int = 1,  # the VAE uses one head; UNet2DModel uses channels // attention_head_dim
        groups: int = 32,
        eps: float = 1e-6,
        rescale_output_factor: float = 1.0,
    ):
        super().__init__()
        self.heads = heads
        self.rescale_output_factor = rescale_output_factor
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        B, C, H, W = x.shape
        h = self.group_norm(x).view(B, C, H * W).transpose(1, 2)  # (B, HW, C)
        q, k, v = (proj(h).view(B, H * W, self.heads, C // self.heads).transpose(1, 2)
                   for proj in (self.to_q, self.to_k, self.to_v))  # (B, heads, HW, C/heads)
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, (B, heads, HW, C/heads)
        h = h.transpose(1, 2).reshape(B, H * W, C)  # (B, HW, C)
        h = self.to_out[1](self.to_out[0](h))
        h = h.transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)
        return _residual(x, h, self.rescale_output_factor)


class MidBlock(nn.Module):
    """ResBlock -> Attention -> ResBlock at the lowest resolution; diffusers' UNetMidBlock2D."""

    def __init__(
        self,
        channels: int,
        temb_channels: int | None = None,
        groups: int = 32,
        eps: float = 1e-6,
        add_attention: bool = True,  # diffusers' mid_block_add_attention
        heads: int = 1,
        dropout: float = 0.0,
        output_scale_factor: float = 1.0,
    ):
        super().__init__()
        def resnet() -> ResBlock:
            return ResBlock(channels, channels, temb_channels, groups, eps, dropout, output_scale_factor)

        # built resnet, attention, resnet and registered attentions first, exactly like diffusers:
        # the same seed then gives the same initial weights and the same state-dict order
        first = resnet()
        attention = Attention(channels, heads, groups, eps, output_scale_factor) if add_attention else None
        self.attentions = nn.ModuleList([attention] if attention is not None else [])
        self.resnets = nn.ModuleList([first, resnet()])

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = self.resnets[0](x, temb)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x, temb)

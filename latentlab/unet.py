"""A small denoising UNet, built block by block like diffusers' `UNet2DModel`.

The architecture of DDPM (Ho et al. 2020, https://arxiv.org/abs/2006.11239, Sec. 4 and App. B):
a sinusoidal timestep embedding (Vaswani et al. 2017, Sec. 3.5) fed through an MLP into every
ResBlock, self-attention at the low resolutions, and down / up stages joined by skip connections
(Ronneberger et al. 2015). Module and parameter names follow diffusers, so a state dict made here
loads into `diffusers.UNet2DModel` with the same config, and back, key for key. With `num_class_embeds` it is
class-conditional: a learned vector per class added to the time embedding (UNet2DModel's `class_embedding`), the
last class meaning "no class", the null label of classifier-free guidance (Ho & Salimans 2022,
https://arxiv.org/abs/2207.12598). Lesson 06 builds it; lesson 07 times it in both spaces, lesson 08 trains it.
A little over 300 lines: the config, the blocks and the mapping to diffusers' config are read together.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from latentlab.blocks import Attention, Downsample, MidBlock, ResBlock, Upsample
from latentlab.errors import InputError

DownBlockType = Literal["DownBlock2D", "AttnDownBlock2D"]
UpBlockType = Literal["UpBlock2D", "AttnUpBlock2D"]


@dataclass
class UNetConfig:
    """A UNet's shape; every field is named and means what it does in `diffusers.UNet2DModel`."""

    sample_size: int = 8  # height and width it is trained at (8: the latents of 64x64 images)
    in_channels: int = 4  # 4 for VAE latents, 3 for pixels
    out_channels: int = 4  # the predicted noise has the input's shape
    block_out_channels: tuple[int, ...] = (32, 64)  # width of each resolution level, high to low
    down_block_types: tuple[DownBlockType, ...] = ("DownBlock2D", "AttnDownBlock2D")
    up_block_types: tuple[UpBlockType, ...] = ("AttnUpBlock2D", "UpBlock2D")  # mirror of down_block_types
    layers_per_block: int = 1  # ResBlocks per down level (up levels get one more, for the extra skip)
    norm_num_groups: int = 16  # GroupNorm groups; must divide every width
    norm_eps: float = 1e-5
    attention_head_dim: int | None = 32  # channels per attention head; None: one head per block
    add_attention: bool = True  # self-attention in the middle block
    flip_sin_to_cos: bool = True  # embedding order [cos, sin] (diffusers' default) instead of [sin, cos]
    freq_shift: int = 0  # diffusers' downscale_freq_shift of the sinusoids
    time_embedding_dim: int | None = None  # None: 4 * block_out_channels[0], as in DDPM
    num_class_embeds: int | None = None  # classes + 1, the last one "no class" (5 for four shapes); None: unconditional
    dropout: float = 0.0
    num_train_timesteps: int = 1000  # length of the noise schedule it is trained with (samplers check it)

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        self.down_block_types = tuple(self.down_block_types)
        self.up_block_types = tuple(self.up_block_types)
        levels = len(self.block_out_channels)
        if len(self.down_block_types) != levels or len(self.up_block_types) != levels:
            raise InputError(
                f"block_out_channels has {levels} levels but down_block_types has {len(self.down_block_types)} and "
                f"up_block_types {len(self.up_block_types)}; give one block type per level in each."
            )
        for kind in self.down_block_types + self.up_block_types:
            if kind not in ("DownBlock2D", "AttnDownBlock2D", "UpBlock2D", "AttnUpBlock2D"):
                raise InputError(f"block type {kind!r} is not built here; use DownBlock2D / AttnDownBlock2D and "
                                 "UpBlock2D / AttnUpBlock2D.")
        for width in self.block_out_channels:
            if width % self.norm_num_groups:
                raise InputError(f"width {width} in block_out_channels is not divisible by norm_num_groups="
                                 f"{self.norm_num_groups}; choose widths that are multiples of it.")
            if self.attention_head_dim and width % self.attention_head_dim:
                raise InputError(f"width {width} in block_out_channels is not divisible by attention_head_dim="
                                 f"{self.attention_head_dim}; choose widths that are multiples of it.")
        if self.num_class_embeds is not None and self.num_class_embeds < 2:
            raise InputError(f"num_class_embeds={self.num_class_embeds} leaves no class besides the null one; give "
                             "the number of classes + 1, or None for an unconditional UNet.")

    @property
    def null_class(self) -> int | None:
        """the class index that means "no class" (classifier-free guidance's null label); None when unconditional"""
        return None if self.num_class_embeds is None else self.num_class_embeds - 1

    @property
    def levels(self) -> int:
        """number of resolutions; the input is halved levels - 1 times"""
        return len(self.block_out_channels)

    def heads(self, width: int) -> int:
        """attention heads at a level of this width, like UNet2DModel"""
        return width // self.attention_head_dim if self.attention_head_dim else 1


def timestep_embedding(
    timesteps: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
    max_period: float = 10_000.0,
) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) sinusoids of geometrically spaced frequencies (Vaswani et al. 2017, Sec. 3.5)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent / (half - downscale_freq_shift))  # (dim/2,) from 1 down to ~1/max_period
    angles = timesteps[:, None].float() * freqs[None, :]  # (B, dim/2)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (B, dim)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)  # [cos, sin]
    if dim % 2:
        emb = F.pad(emb, (0, 1))  # (B, dim)
    return emb


class TimestepEmbedding(nn.Module):
    """(B, C) sinusoids -> (B, 4C) by Linear, SiLU, Linear; diffusers' TimestepEmbedding."""

    def __init__(self, in_channels: int, time_embed_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class DownBlock(nn.Module):
    """layers_per_block ResBlocks (each optionally followed by attention), then a stride-2 conv."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, cfg: UNetConfig,
                 attention: bool, downsample: bool):
        super().__init__()
        groups, eps = cfg.norm_num_groups, cfg.norm_eps
        self.resnets = nn.ModuleList([
            ResBlock(in_channels if i == 0 else out_channels, out_channels, temb_channels, groups, eps, cfg.dropout)
            for i in range(cfg.layers_per_block)
        ])
        self.attentions = nn.ModuleList([
            Attention(out_channels, cfg.heads(out_channels), groups, eps) for _ in range(cfg.layers_per_block)
        ] if attention else [])
        self.downsamplers = nn.ModuleList([Downsample(out_channels, padding=1)] if downsample else [])

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C_in, H, W) -> (B, C_out, H/2, W/2) and the skips kept for the up path."""
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)  # (B, C_out, H, W)
            if self.attentions:
                x = self.attentions[i](x)
            skips.append(x)
        for downsampler in self.downsamplers:
            x = downsampler(x)  # (B, C_out, H/2, W/2)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """layers_per_block + 1 ResBlocks, each eating one skip by concatenation, then nearest x2 and a conv."""

    def __init__(self, in_channels: int, prev_channels: int, out_channels: int, temb_channels: int,
                 cfg: UNetConfig, attention: bool, upsample: bool):
        super().__init__()
        groups, eps, n = cfg.norm_num_groups, cfg.norm_eps, cfg.layers_per_block + 1
        self.resnets = nn.ModuleList()
        for i in range(n):
            skip_channels = in_channels if i == n - 1 else out_channels  # the last skip comes from the level above
            resnet_in = prev_channels if i == 0 else out_channels
            self.resnets.append(ResBlock(resnet_in + skip_channels, out_channels, temb_channels, groups, eps,
                                         cfg.dropout))
        self.attentions = nn.ModuleList([
            Attention(out_channels, cfg.heads(out_channels), groups, eps) for _ in range(n)
        ] if attention else [])
        self.upsamplers = nn.ModuleList([Upsample(out_channels)] if upsample else [])

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor) -> torch.Tensor:
        """(B, C_prev, H, W) and skips (popped from the end) -> (B, C_out, 2H, 2W)."""
        for i, resnet in enumerate(self.resnets):
            x = torch.cat([x, skips.pop()], dim=1)  # (B, C_prev + C_skip, H, W)
            x = resnet(x, temb)  # (B, C_out, H, W)
            if self.attentions:
                x = self.attentions[i](x)
        for upsampler in self.upsamplers:
            x = upsampler(x)  # (B, C_out, 2H, 2W)
        return x


class UNet(nn.Module):
    """(noisy sample x_t, timestep t) -> predicted noise, same shape as x_t; diffusers' UNet2DModel."""

    def __init__(self, config: UNetConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = config or UNetConfig(**overrides)
        self.config = cfg
        widths = cfg.block_out_channels
        temb_channels = cfg.time_embedding_dim or 4 * widths[0]

        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(widths[0], temb_channels)
        if cfg.num_class_embeds is not None:  # created only when asked: an unconditional UNet keeps its state dict
            self.class_embedding = nn.Embedding(cfg.num_class_embeds, temb_channels)

        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(cfg.down_block_types):
            c_in = widths[max(i - 1, 0)]
            self.down_blocks.append(DownBlock(c_in, widths[i], temb_channels, cfg, attention=kind == "AttnDownBlock2D",
                                              downsample=i < cfg.levels - 1))

        self.mid_block = MidBlock(widths[-1], temb_channels, cfg.norm_num_groups, cfg.norm_eps, cfg.add_attention,
                                  cfg.heads(widths[-1]), cfg.dropout)

        self.up_blocks = nn.ModuleList()
        rev = list(reversed(widths))
        for i, kind in enumerate(cfg.up_block_types):
            c_in = rev[min(i + 1, cfg.levels - 1)]
            c_prev = rev[max(i - 1, 0)]
            self.up_blocks.append(UpBlock(c_in, c_prev, rev[i], temb_channels, cfg, attention=kind == "AttnUpBlock2D",
                                          upsample=i < cfg.levels - 1))

        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, widths[0], eps=cfg.norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(widths[0], cfg.out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) noisy input, a timestep (scalar or (B,)) and class labels ((B,); None: the null class)
        -> (B, out_channels, H, W)."""
        cfg = self.config
        timesteps = self._check_inputs(sample, timestep)  # (B,)

        # 1. time (and class)
        t_emb = timestep_embedding(timesteps, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        emb = self.time_embedding(t_emb.to(sample.dtype))  # (B, 4 * C0)
        if cfg.num_class_embeds is not None:
            emb = emb + self.class_embedding(self._check_labels(class_labels, sample)).to(emb.dtype)  # (B, 4 * C0)
        elif class_labels is not None:
            raise InputError("this UNet is unconditional (num_class_embeds=None); call it without class_labels.")

        # 2. pre-process
        x = self.conv_in(sample)  # (B, C0, H, W)
        skips = [x]

        # 3. down
        for block in self.down_blocks:
            x, block_skips = block(x, emb)  # (B, C_i, H / 2^i, W / 2^i), halved except at the last level
            skips.extend(block_skips)

        # 4. mid
        x = self.mid_block(x, emb)  # (B, C_last, H / 2^(L-1), W / 2^(L-1))

        # 5. up
        for block in self.up_blocks:
            x = block(x, skips, emb)  # doubled except at the last level; ends at (B, C0, H, W)

        # 6. post-process
        x = self.conv_out(self.conv_act(self.conv_norm_out(x)))  # (B, out_channels, H, W)
        return x

    def _check_inputs(self, sample: torch.Tensor, timestep: torch.Tensor | float | int) -> torch.Tensor:
        """one clear sentence for a wrong shape; returns the timesteps as a (B,) tensor"""
        cfg = self.config
        if not isinstance(sample, torch.Tensor) or sample.ndim != 4 or sample.shape[1] != cfg.in_channels:
            got = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
            what = "latents" if cfg.in_channels == 4 else "images"
            raise InputError(f"the UNet expects a (B, {cfg.in_channels}, H, W) tensor but got {got}; "
                             f"pass a batch of {cfg.in_channels}-channel {what}.")
        factor = 2 ** (cfg.levels - 1)
        height, width = sample.shape[-2:]
        if height % factor or width % factor:
            times = "once" if cfg.levels == 2 else f"{cfg.levels - 1} times"
            raise InputError(f"sample size {height}x{width} is not divisible by {factor} (the UNet halves it "
                             f"{times}); resize or crop it to a multiple of {factor}.")
        batch = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 0:
            t = t[None]
        if t.ndim != 1 or t.shape[0] not in (1, batch):
            raise InputError(f"timestep has shape {tuple(t.shape)} but the batch has {batch} samples; pass one "
                             f"number or a 1-D tensor of {batch} timesteps.")
        return t.expand(batch)

    def _check_labels(self, class_labels: torch.Tensor | None, sample: torch.Tensor) -> torch.Tensor:
        """None -> the null class for every sample; checked (B,) long labels otherwise"""
        cfg, batch = self.config, sample.shape[0]
        if class_labels is None:
            return torch.full((batch,), cfg.null_class, dtype=torch.long, device=sample.device)
        labels = torch.as_tensor(class_labels, device=sample.device)
        if labels.ndim != 1 or labels.shape[0] != batch or labels.dtype.is_floating_point:
            raise InputError(f"class_labels must be {batch} whole numbers, one per sample, not shape "
                             f"{tuple(labels.shape)} of {labels.dtype}.")
        bad = [v for v in labels.tolist() if not 0 <= v <= cfg.null_class]
        if bad:
            raise InputError(f"class label {bad[0]} is out of range; use 0 to {cfg.null_class - 1} for the classes "
                             f"and {cfg.null_class} for none.")
        return labels.long()

    def num_parameters(self) -> int:
        """number of trainable numbers in the model"""
        return sum(p.numel() for p in self.parameters())

    def to_diffusers_config(self) -> dict[str, Any]:
        """keyword arguments that build the same network as `diffusers.UNet2DModel(**config)`"""
        return to_diffusers_config(self.config)

    @classmethod
    def from_diffusers_config(cls, config: Any) -> UNet:
        """a UNet shaped like the UNet2DModel whose config (dict or FrozenDict) is given"""
        return cls(from_diffusers_config(config))


_UNSUPPORTED = {  # UNet2DModel options with another value than the only one built here
    "center_input_sample": False, "time_embedding_type": "positional", "mid_block_type": "UNetMidBlock2D",
    "mid_block_scale_factor": 1, "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv",
    "act_fn": "silu", "attn_norm_num_groups": None, "resnet_time_scale_shift": "default", "class_embed_type": None,
}


def to_diffusers_config(cfg: UNetConfig) -> dict[str, Any]:
    """UNetConfig -> keyword arguments for `diffusers.UNet2DModel`"""
    out = asdict(cfg)
    out["block_out_channels"] = tuple(cfg.block_out_channels)
    out["down_block_types"] = tuple(cfg.down_block_types)
    out["up_block_types"] = tuple(cfg.up_block_types)
    return out


def from_diffusers_config(config: Any) -> UNetConfig:
    """a diffusers UNet2DModel config (dict or FrozenDict) -> UNetConfig; one clear sentence for what is not built"""
    config = dict(config)
    for key, value in _UNSUPPORTED.items():
        if key in config and config[key] != value:
            raise InputError(f"UNet2DModel option {key}={config[key]!r} is not built in latentlab (only {value!r}); "
                             "use a config without it.")
    names = {f.name for f in fields(UNetConfig)}
    optional = {"attention_head_dim", "time_embedding_dim", "num_class_embeds"}  # None means something for these
    kwargs = {k: v for k, v in config.items() if k in names and (v is not None or k in optional)}
    return UNetConfig(**kwargs)

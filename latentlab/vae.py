"""The variational autoencoder of latent diffusion: image (B, 3, H, W) <-> latent (B, 4, H/8, W/8).

Kingma & Welling 2014 (https://arxiv.org/abs/1312.6114), as used by Stable Diffusion (Rombach et al.
2022, https://arxiv.org/abs/2112.10752): the encoder predicts a diagonal Gaussian over the latent, the
decoder maps a latent back to pixels, and training adds a small KL term that keeps the latent regular.
The layout and every parameter name follow `diffusers.AutoencoderKL`, so state dicts load both ways.
Lesson 03 builds it from lesson 02's autoencoder; lessons 02-05, 08 and 09 use the trained one, lesson 07 times its
decoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from latentlab.blocks import Downsample, MidBlock, ResBlock, Upsample
from latentlab.errors import InputError
from latentlab.images import check_image
from latentlab.latents import check_latents


@dataclass
class VAEConfig:
    in_channels: int = 3  # RGB images
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (16, 16, 32, 64)  # one entry per resolution; 4 entries: factor 8 like SD
    layers_per_block: int = 1  # ResBlocks per encoder resolution; the decoder uses one more, like diffusers
    latent_channels: int = 4  # like SD: a 512x512x3 image becomes 64x64x4
    norm_num_groups: int = 8  # GroupNorm groups; must divide every entry of block_out_channels
    scaling_factor: float = 0.18215  # latents are multiplied by this before diffusion (SD's value by default)
    sample_size: int = 256  # image side the model was trained for (diffusers uses it only for tiling)
    mid_block_add_attention: bool = True  # self-attention at the lowest resolution, like SD
    use_quant_conv: bool = True  # 1x1 conv after the encoder, like SD
    use_post_quant_conv: bool = True  # 1x1 conv before the decoder, like SD

    def __post_init__(self):
        self.block_out_channels = tuple(self.block_out_channels)
        for name in ("in_channels", "out_channels", "layers_per_block", "latent_channels", "norm_num_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a whole number of at least 1, not {value!r}; e.g. "
                                 f"{getattr(VAEConfig, name)}.")
        if not self.block_out_channels or not all(isinstance(c, int) and c >= 1 for c in self.block_out_channels):
            raise InputError(f"block_out_channels={self.block_out_channels!r} must list one positive width per "
                             "resolution, e.g. (16, 16, 32, 64) (factor 8).")
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise InputError(
                    f"norm_num_groups={self.norm_num_groups} does not divide block_out_channels entry {channels}; "
                    "pick a group count that divides every entry."
                )
        if not (isinstance(self.scaling_factor, (int, float)) and 0 < self.scaling_factor < float("inf")):
            raise InputError(f"scaling_factor must be a positive number, not {self.scaling_factor!r}; e.g. 0.18215.")

    @property
    def factor(self) -> int:
        """Image side / latent side: each resolution after the first halves it."""
        return 2 ** (len(self.block_out_channels) - 1)


# AutoencoderKL arguments that do not change the model (or that only pipelines use)
_DIFFUSERS_IGNORED = {"force_upcast", "shift_factor", "latents_mean", "latents_std"}


def _to_diffusers_config(config: VAEConfig) -> dict:
    """VAEConfig -> the keyword arguments of diffusers.AutoencoderKL."""
    n = len(config.block_out_channels)
    return {
        **asdict(config),
        "block_out_channels": list(config.block_out_channels),
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "act_fn": "silu",
    }


def _from_diffusers_config(diffusers_config: dict) -> VAEConfig:
    """AutoencoderKL config dict -> VAEConfig; InputError for architectures this course model does not build."""
    config = {k: v for k, v in dict(diffusers_config).items() if not k.startswith("_") and k not in _DIFFUSERS_IGNORED}
    n = len(config.get("block_out_channels", VAEConfig.block_out_channels))
    expected = {
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "act_fn": "silu",
    }
    for key, value in expected.items():
        given = config.pop(key, value)
        if (list(given) if isinstance(given, (list, tuple)) else given) != value:
            raise InputError(f"{key}={given!r} is not supported; the course VAE builds only {value!r}.")
    names = {f.name for f in fields(VAEConfig)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise InputError(f"unknown AutoencoderKL argument(s) {', '.join(unknown)}; the course VAE does not build them.")
    return VAEConfig(**config)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over C, H, W -> (B,); Kingma & Welling 2014, appendix B."""
    return 0.5 * torch.sum(mean.pow(2) + logvar.exp() - 1.0 - logvar, dim=[1, 2, 3])


def estimate_scaling_factor(vae: VAE, images: torch.Tensor, generator: torch.Generator | None = None) -> float:
    """1 / std of sampled latents of `images`: scales latents to unit variance (how SD found its 0.18215)."""
    return 1.0 / vae.encode(images).sample(generator).std().item()


class DiagonalGaussian:
    """The encoder's output: a Gaussian with a mean and a variance per latent value; diffusers' twin."""

    def __init__(self, parameters: torch.Tensor):
        self.parameters = parameters  # (B, 2C, h, w): mean and log-variance stacked on channels
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)  # (B, C, h, w) each
        self.logvar = torch.clamp(logvar, -30.0, 20.0)  # like diffusers: keeps exp() finite
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * eps with eps ~ N(0, I): the reparameterization trick -> (B, C, h, w)."""
        gen_device = generator.device if generator is not None else self.mean.device
        eps = torch.randn(self.mean.shape, generator=generator, device=gen_device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        """The most likely latent: the mean -> (B, C, h, w)."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL divergence to the standard normal, per image -> (B,)."""
        return gaussian_kl(self.mean, self.logvar)


class DownEncoderBlock(nn.Module):
    """ResBlocks at one resolution, then an optional stride-2 downsample; diffusers' DownEncoderBlock2D."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int, add_downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResBlock(in_channels if i == 0 else out_channels, out_channels, groups=groups) for i in range(num_layers)]
        )
        self.downsamplers = nn.ModuleList([Downsample(out_channels, padding=0)] if add_downsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in [*self.resnets, *self.downsamplers]:
            x = layer(x)
        return x


class UpDecoderBlock(nn.Module):
    """ResBlocks at one resolution, then an optional 2x upsample; diffusers' UpDecoderBlock2D."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int, add_upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResBlock(in_channels if i == 0 else out_channels, out_channels, groups=groups) for i in range(num_layers)]
        )
        self.upsamplers = nn.ModuleList([Upsample(out_channels)] if add_upsample else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in [*self.resnets, *self.upsamplers]:
            x = layer(x)
        return x


class Encoder(nn.Module):
    """image (B, 3, H, W) -> Gaussian parameters (B, 2 * latent_channels, H/f, W/f)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        ch, groups = config.block_out_channels, config.norm_num_groups
        self.conv_in = nn.Conv2d(config.in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            DownEncoderBlock(ch[max(i - 1, 0)], ch[i], config.layers_per_block, groups, add_downsample=i < len(ch) - 1)
            for i in range(len(ch))
        ])
        self.mid_block = MidBlock(ch[-1], groups=groups, add_attention=config.mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(groups, ch[-1], eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(ch[-1], 2 * config.latent_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        # 1. pre-process
        x = self.conv_in(sample)  # (B, ch[0], H, W)
        # 2. down
        for block in self.down_blocks:
            x = block(x)  # halves H and W, except the last block: (B, ch[-1], H/f, W/f) at the end
        # 3. mid
        x = self.mid_block(x)  # (B, ch[-1], H/f, W/f)
        # 4. post-process
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))  # (B, 2 * latent_channels, H/f, W/f)


class Decoder(nn.Module):
    """latent (B, latent_channels, h, w) -> image (B, 3, h*f, w*f)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        ch, groups = tuple(reversed(config.block_out_channels)), config.norm_num_groups
        self.conv_in = nn.Conv2d(config.latent_channels, ch[0], 3, padding=1)
        self.up_blocks = nn.ModuleList()  # registered before the mid block but filled after it, like diffusers
        self.mid_block = MidBlock(ch[0], groups=groups, add_attention=config.mid_block_add_attention)
        self.up_blocks.extend(
            UpDecoderBlock(ch[max(i - 1, 0)], ch[i], config.layers_per_block + 1, groups, add_upsample=i < len(ch) - 1)
            for i in range(len(ch))
        )
        self.conv_norm_out = nn.GroupNorm(groups, ch[-1], eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(ch[-1], config.out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        # 1. pre-process
        x = self.conv_in(sample)  # (B, ch[-1], h, w)
        # 2. mid
        x = self.mid_block(x)  # (B, ch[-1], h, w)
        # 3. up
        for block in self.up_blocks:
            x = block(x)  # doubles h and w, except the last block: (B, ch[0], h*f, w*f) at the end
        # 4. post-process
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))  # (B, 3, h*f, w*f)


class VAE(nn.Module):
    """Encoder + Gaussian latent + decoder, named and wired like diffusers.AutoencoderKL."""

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config = config or VAEConfig()  # checked when it was made (VAEConfig.__post_init__)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        lc = config.latent_channels
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1) if config.use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(lc, lc, 1) if config.use_post_quant_conv else None

    @property
    def factor(self) -> int:
        """Image side / latent side (8 for the course VAE, as for SD)."""
        return self.config.factor

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """image (B, 3, H, W) in [-1, 1] -> DiagonalGaussian over *raw* latents (B, 4, H/8, W/8), unscaled.

        As AutoencoderKL's: the denoiser's latents are latents.scale(posterior.mode(), scaling_factor), and
        sd.LatentCodec.encode returns those scaled latents instead.
        """
        check_image(x, name="image", multiple_of=self.factor)  # (B, 3, H, W), finite, in [-1, 1], H and W % 8 == 0
        param = next(self.parameters())
        h = self.encoder(x.to(param.device, param.dtype))  # (B, 2 * 4, H/8, W/8)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        return DiagonalGaussian(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latent (B, 4, h, w) -> image (B, 3, 8h, 8w), roughly in [-1, 1] (not clamped)."""
        check_latents(z, self.config.latent_channels, "latent")  # (B, 4, h, w), float, finite
        param = next(self.parameters())
        z = z.to(param.device, param.dtype)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def forward(
        self, sample: torch.Tensor, sample_posterior: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """image -> encode -> latent (mean, or a sample) -> decode -> reconstruction, like AutoencoderKL."""
        posterior = self.encode(sample)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()  # (B, 4, H/8, W/8)
        return self.decode(z)  # (B, 3, H, W)

    # ---- one-to-one with diffusers.AutoencoderKL

    def to_diffusers_config(self) -> dict:
        """The keyword arguments that build the same model as diffusers.AutoencoderKL(**config)."""
        return _to_diffusers_config(self.config)

    @classmethod
    def from_diffusers_config(cls, diffusers_config: dict) -> VAE:
        """A (randomly initialised) VAE from an AutoencoderKL config dict, e.g. `vae.config` of a diffusers model."""
        return cls(_from_diffusers_config(diffusers_config))

    def to_diffusers(self):
        """A diffusers.AutoencoderKL with this model's config and weights (needs diffusers)."""
        # imported here, not at the top: diffusers takes seconds to import and only this comparison needs it
        from diffusers import AutoencoderKL

        model = AutoencoderKL(**self.to_diffusers_config())
        model.load_state_dict(self.state_dict(), strict=True)
        return model.to(next(self.parameters()).device).train(self.training)

    @classmethod
    def from_diffusers(cls, model) -> VAE:
        """The course VAE with the config and weights of a diffusers.AutoencoderKL."""
        vae = cls.from_diffusers_config(dict(model.config))
        vae.load_state_dict(model.state_dict(), strict=True)
        return vae

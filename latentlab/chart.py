"""A generated colour chart: does a latent space keep every colour? (lessons 02 and 04; `latentlab eval vae`)

Three pictures of 256 x 384 pixels, each a multiple of 8 on both sides:
- `colorchecker()`: the 24 patches of the ColorChecker Classic (McCamy, Marcus & Davidson 1976), 64 x 64 each in
  its 4 x 6 layout, at the sRGB values X-Rite publishes for the chart (also in Wikipedia's "ColorChecker"
  article, e.g. dark skin #735244). Converting McCamy's 1976 xyY (illuminant C) to sRGB with a Bradford
  adaptation to D65 gives the same values within 8/255 (mean 2.2/255); tests/test_chart.py checks that.
- `hue_sweep()`: every hue left to right; value from 1 down to 0.3 in each half; full saturation above, half below.
- `fields()`: six 128 x 128 tiles, three flat (grey, green, magenta) and three gradients (black-white, red-cyan,
  blue-yellow).
Images are (1, 3, H, W) in [-1, 1]; colours are given as 0..255 sRGB values.
"""

from __future__ import annotations

import torch

COLORCHECKER = (  # (name, sRGB 0..255), row by row as on the chart
    ("dark skin", (115, 82, 68)),
    ("light skin", (194, 150, 130)),
    ("blue sky", (98, 122, 157)),
    ("foliage", (87, 108, 67)),
    ("blue flower", (133, 128, 177)),
    ("bluish green", (103, 189, 170)),
    ("orange", (214, 126, 44)),
    ("purplish blue", (80, 91, 166)),
    ("moderate red", (193, 90, 99)),
    ("purple", (94, 60, 108)),
    ("yellow green", (157, 188, 64)),
    ("orange yellow", (224, 163, 46)),
    ("blue", (56, 61, 150)),
    ("green", (70, 148, 73)),
    ("red", (175, 54, 60)),
    ("yellow", (231, 199, 31)),
    ("magenta", (187, 86, 149)),
    ("cyan", (8, 133, 161)),
    ("white 9.5", (243, 243, 242)),
    ("neutral 8", (200, 200, 200)),
    ("neutral 6.5", (160, 160, 160)),
    ("neutral 5", (122, 122, 121)),
    ("neutral 3.5", (85, 85, 85)),
    ("black 2", (52, 52, 52)),
)
ROWS, COLUMNS = 4, 6
PATCH = 64  # pixels per patch side
MARGIN = 8  # a patch's colour is read inside this border (one latent cell), away from its neighbours' blur


def from_srgb255(rgb) -> torch.Tensor:
    """0..255 sRGB values (..., 3) -> the same colours in [-1, 1]"""
    return torch.as_tensor(rgb, dtype=torch.float32) / 127.5 - 1


def colorchecker(patch: int = PATCH) -> torch.Tensor:
    """the 24 ColorChecker patches, patch x patch each, in 4 rows of 6 -> (1, 3, 4 patch, 6 patch)"""
    colours = from_srgb255([rgb for _, rgb in COLORCHECKER]).reshape(ROWS, COLUMNS, 3)
    image = colours.permute(2, 0, 1).repeat_interleave(patch, 1).repeat_interleave(patch, 2)  # (3, 4p, 6p)
    return image[None].contiguous()


def patch_colours(image: torch.Tensor, patch: int = PATCH, margin: int = MARGIN) -> torch.Tensor:
    """(1, 3, 4 patch, 6 patch) -> (24, 3) mean colour inside each patch, in 0..255 units"""
    cells = image[0].float().unfold(1, patch, patch).unfold(2, patch, patch)  # (3, 4, 6, patch, patch)
    inner = cells[..., margin : patch - margin, margin : patch - margin]
    return ((inner.mean((-1, -2)) + 1) * 127.5).permute(1, 2, 0).reshape(ROWS * COLUMNS, 3)


def patch_errors(image: torch.Tensor, patch: int = PATCH, margin: int = MARGIN) -> torch.Tensor:
    """a reconstruction of colorchecker() -> (24, 3) signed error of each patch's mean colour, in 0..255 units"""
    published = torch.tensor([rgb for _, rgb in COLORCHECKER], dtype=torch.float32)
    return patch_colours(image, patch, margin) - published


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """hue in [0, 1), saturation and value in [0, 1] (same shapes) -> (3, *shape) RGB in [0, 1]"""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6])  # one phase per channel (R, G, B)
    return v - v * s * (torch.minimum(k, 4 - k).clamp(0, 1))


def hue_sweep(height: int = 256, width: int = 384, low_value: float = 0.3) -> torch.Tensor:
    """hue 0..1 left to right; value 1 -> low_value down each half; saturation 1 above, 0.5 below -> (1, 3, H, W)"""
    half = height // 2
    hue = ((torch.arange(width) + 0.5) / width).expand(half, width)
    value = torch.linspace(1, low_value, half)[:, None].expand(half, width)
    top = hsv_to_rgb(hue, torch.ones_like(hue), value)
    bottom = hsv_to_rgb(hue, torch.full_like(hue, 0.5), value)
    return (torch.cat([top, bottom], 1) * 2 - 1)[None]


def fields(tile: int = 128) -> torch.Tensor:
    """three flat tiles (grey, green, magenta) above three gradients (black-white, red-cyan, blue-yellow) -> (1, 3, 2 tile, 3 tile)"""
    ramp = torch.linspace(0, 1, tile)

    def flat(rgb):
        return (torch.tensor(rgb, dtype=torch.float32) / 255)[:, None, None].expand(3, tile, tile)

    def gradient(a, b, vertical=False):
        t = (ramp[:, None] if vertical else ramp[None, :]).expand(tile, tile)
        a, b = torch.tensor(a, dtype=torch.float32)[:, None, None], torch.tensor(b, dtype=torch.float32)[:, None, None]
        return a + (b - a) * t

    top = torch.cat([flat((128, 128, 128)), flat((40, 170, 60)), flat((190, 40, 170))], 2)
    bottom = torch.cat([gradient((0, 0, 0), (1, 1, 1)), gradient((1, 0, 0), (0, 1, 1)), gradient((0, 0, 1), (1, 1, 0), True)], 2)
    return (torch.cat([top, bottom], 1) * 2 - 1)[None]


def colour_chart() -> dict[str, torch.Tensor]:
    """the whole chart: {"colorchecker", "hue_sweep", "fields"}, each (1, 3, 256, 384) in [-1, 1]"""
    return {"colorchecker": colorchecker(), "hue_sweep": hue_sweep(), "fields": fields()}

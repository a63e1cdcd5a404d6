"""Dead leaves: procedural images with natural-image structure in every colour (lesson 02; lesson 10's sweep).

The dead leaves model (Matheron 1968; Lee, Mumford & Huang 2001, https://doi.org/10.1023/A:1011109015675)
drops shapes on top of each other, each hiding the ones below. With radii drawn from a density proportional
to r^-3 the picture looks alike at every scale, as photographs do, and edges, corners and occlusions come for
free. Baradad et al. 2021 (https://arxiv.org/abs/2106.05963) pre-trained vision models on such images
without a single photograph. Here each picture gets a colour drawn uniformly from the RGB cube, its leaves
colours scattered around it (so one picture holds related colours, as a photo does, and the set covers the
cube), each leaf a texture (flat, a smooth gradient, stripes or noise), and the picture a slight blur. The default
sizes and blur make them about as hard to compress as the training crops (bicubic at 48x fewer values: MSE 0.043
against 0.031 on photo crops; smaller leaves and no blur gave 0.084), so they teach colour, not only edges.
`ColourPatches` is the plainest case beside them: a random grid of flat, sharp-edged patches, each a colour drawn
uniformly from the cube (the tiny decoder's distillation, issue 17: a preview must draw flat colours right). Images
are (3, size, size) in [-1, 1], the same for the same (seed, index) on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from latentlab.errors import InputError

KINDS = ("ellipse", "rectangle", "diamond")
SMALL_REACH = 6  # leaves reaching at most this many pixels from their centre are drawn together
TEXTURES = ("flat", "gradient", "stripes", "noise")


@dataclass
class DeadLeavesConfig:
    """how leaves are drawn; sizes are fractions of the image side, so a picture looks alike at any resolution"""

    leaves: int = 300  # shapes dropped per image; later ones cover earlier ones
    min_radius: float = 0.06  # smallest leaf radius (4 pixels at 64x64); 300 leaves cover a picture ~10 times
    max_radius: float = 0.5  # largest leaf radius
    alpha: float = 3.0  # radius density ~ r^-alpha; 3 is scale-invariant (Lee, Mumford & Huang 2001)
    kind_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)  # ellipse, rectangle, diamond
    texture_weights: tuple[float, float, float, float] = (0.35, 0.3, 0.15, 0.2)  # flat, gradient, stripes, noise
    spread: tuple[float, float] = (0.15, 0.6)  # leaf colours ~ N(the picture's colour, spread^2), spread uniform here
    min_aspect: float = 0.3  # a leaf's short axis over its long axis, log-uniform in [min_aspect, 1]
    blur: tuple[float, float] = (0.5, 1.5)  # Gaussian blur sigma in pixels, uniform in this range per image
    grain: float = 0.01  # standard deviation of the per-pixel noise added at the end (in [0, 1] units)

    def __post_init__(self):
        if not 0 < self.min_radius < self.max_radius:
            raise InputError(f"leaf radii need 0 < min_radius < max_radius, not {self.min_radius} and {self.max_radius}.")
        if self.leaves < 1:
            raise InputError(f"a dead-leaves picture needs at least one leaf, not {self.leaves}.")


# Fine texture: the default leaves are 4 pixels and more across at 64x64 but 11 and more at the 192x192 crops the
# last VAE runs train on, so nothing there is as fine as foliage, gravel or roof tiles. These leaves start at about
# one pixel at 192x192 and come 4000 to a picture, in closer colours, with less blur (issue 12, docs/vae-colour.md).
FINE_LEAVES = DeadLeavesConfig(leaves=4000, min_radius=0.006, max_radius=0.25, texture_weights=(0.45, 0.35, 0.05, 0.15),
                               spread=(0.1, 0.35), blur=(0.3, 0.8), grain=0.015)
# Foliage: only small leaves (radius 0.004-0.04 of the side), 15000 a picture, mostly shaded ellipses in close colours,
# nearly sharp: a texture with no large shapes in it, like gravel, grass or leaves seen from afar. Beside FINE_LEAVES
# it raised the greyscale check photos (moon, gravel, grass) most of any data tried (docs/vae-colour.md).
FOLIAGE = DeadLeavesConfig(leaves=15000, min_radius=0.004, max_radius=0.04, kind_weights=(0.7, 0.1, 0.2),
                           texture_weights=(0.2, 0.6, 0.0, 0.2), spread=(0.05, 0.25), blur=(0.0, 0.5), grain=0.02)


def power_law(u: torch.Tensor, lo: float, hi: float, alpha: float) -> torch.Tensor:
    """uniform u in [0, 1) -> r in [lo, hi] with density ~ r^-alpha (inverse of the CDF)"""
    if alpha == 1:
        return lo * (hi / lo) ** u
    a = 1 - alpha
    return (lo**a + u * (hi**a - lo**a)) ** (1 / a)


def _choice(weights, n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(torch.tensor(weights, dtype=torch.float), n, replacement=True, generator=generator)


def _smooth_noise(size: int, generator: torch.Generator) -> torch.Tensor:
    """(3, size, size) noise of zero mean and unit-ish spread: a few octaves of random grids, upsampled"""
    out = torch.zeros(1, 3, size, size)
    for octave, cells in enumerate((4, 8, 16, 32)):
        grid = torch.randn(1, 3, cells, cells, generator=generator)
        out += F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False) / (octave + 1)
    return out[0] / 1.5


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(3, H, W) -> Gaussian blur with this sigma (pixels), separable, reflecting at the borders"""
    if sigma < 0.1:
        return x
    half = max(1, math.ceil(3 * sigma))
    t = torch.arange(-half, half + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(x[None], (half, half, half, half), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return y[0]


def _inside(kind: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """whether points (u, v), in a leaf's own radii, lie inside an ellipse (0), rectangle (1) or diamond (2)"""
    au, av = np.abs(u), np.abs(v)
    return np.where(kind == 0, u * u + v * v, np.where(kind == 1, np.maximum(au, av), au + av)) <= 1


def _top_leaf(size, centre, radius, aspect, angle, kind) -> np.ndarray:
    """(size, size) index of the last leaf covering each pixel; each leaf is drawn only on its bounding box"""
    top = np.zeros(size * size, dtype=np.int64)
    cx, cy = (centre.double() * size).numpy().T  # leaf centres, in pixels
    reach = (radius.double() * size * math.sqrt(2)).numpy()  # a rectangle's corner is sqrt(2) radii out
    cos, sin = (angle.double().cos() / (radius.double() * size)).numpy(), (angle.double().sin() / (radius.double() * size)).numpy()
    squash, kind = (1 / aspect.double()).numpy(), kind.numpy()
    ids = np.arange(len(kind))
    # small leaves (most of them) all at once, each on a window around its centre
    small = reach <= SMALL_REACH
    w = np.arange(-SMALL_REACH - 1, SMALL_REACH + 2)
    px = np.floor(cx[small])[:, None, None] + w[None, None, :]  # (m, 1, W) pixel columns
    py = np.floor(cy[small])[:, None, None] + w[None, :, None]  # (m, W, 1) pixel rows
    dx, dy = px + 0.5 - cx[small, None, None], py + 0.5 - cy[small, None, None]
    u = cos[small, None, None] * dx + sin[small, None, None] * dy  # along the leaf's long axis, in radii
    v = (cos[small, None, None] * dy - sin[small, None, None] * dx) * squash[small, None, None]
    hit = _inside(kind[small, None, None], u, v) & (px >= 0) & (px < size) & (py >= 0) & (py < size)
    flat = (py * size + px).astype(np.int64)
    np.maximum.at(top, np.broadcast_to(flat, hit.shape)[hit], np.broadcast_to(ids[small, None, None], hit.shape)[hit])
    # large ones one by one, on their bounding boxes
    top = top.reshape(size, size)
    for i in ids[~small]:
        x0, x1 = max(0, int(cx[i] - reach[i])), min(size, int(cx[i] + reach[i]) + 1)
        y0, y1 = max(0, int(cy[i] - reach[i])), min(size, int(cy[i] + reach[i]) + 1)
        if x0 >= x1 or y0 >= y1:
            continue  # off the picture
        dx, dy = np.arange(x0, x1)[None, :] + 0.5 - cx[i], np.arange(y0, y1)[:, None] + 0.5 - cy[i]
        u, v = cos[i] * dx + sin[i] * dy, (cos[i] * dy - sin[i] * dx) * squash[i]
        box = top[y0:y1, x0:x1]
        np.maximum(box, np.where(_inside(kind[i], u, v), i, 0), out=box)
    return top


def dead_leaves(index: int, size: int = 64, seed: int = 0, config: DeadLeavesConfig | None = None) -> torch.Tensor:
    """one dead-leaves picture (3, size, size) in [-1, 1], deterministic in (seed, index)"""
    c = config or DeadLeavesConfig()
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    n = c.leaves
    # 1. the leaves: the first is a background that covers everything; a fixed number of draws, whatever the size
    centre = torch.rand(n, 2, generator=g) * 1.2 - 0.1  # (n, 2) x, y in image sides; some hang over the edge
    radius = power_law(torch.rand(n, generator=g), c.min_radius, c.max_radius, c.alpha)
    aspect = torch.exp(math.log(c.min_aspect) * torch.rand(n, generator=g))
    angle = torch.rand(n, generator=g) * math.pi
    kind = _choice(c.kind_weights, n, g)
    texture = _choice(c.texture_weights, n, g)
    palette = torch.rand(1, 3, generator=g)  # the picture's own colour, uniform in the RGB cube...
    spread = c.spread[0] + (c.spread[1] - c.spread[0]) * torch.rand(1, generator=g)  # ...and how far leaves stray
    colour = (palette + spread * torch.randn(n, 3, generator=g)).clamp(0, 1)
    other = (palette + spread * torch.randn(n, 3, generator=g)).clamp(0, 1)  # the second colour of a gradient...
    shade = 0.25 + 0.75 * torch.rand(n, 1, generator=g)  # ...or the first one darker (shading), half the time
    other = torch.where(torch.rand(n, 1, generator=g) < 0.5, colour * shade, other)
    direction = torch.rand(n, generator=g) * 2 * math.pi
    period = 2 + 14 * torch.rand(n, generator=g)  # stripe period in pixels
    phase = torch.rand(n, generator=g) * 2 * math.pi
    amplitude = 0.05 + 0.25 * torch.rand(n, generator=g)  # noise strength
    noise = _smooth_noise(size, g)  # (3, size, size)
    sigma = c.blur[0] + (c.blur[1] - c.blur[0]) * torch.rand(1, generator=g).item()
    grain = torch.randn(3, size, size, generator=g) * c.grain
    centre[0], radius[0], aspect[0], kind[0] = 0.5, 1.0, 1.0, 1  # background: a rectangle over the whole image

    # 2. which leaf is on top at each pixel: paint each leaf's index inside its bounding box, last one wins
    top = torch.from_numpy(_top_leaf(size, centre, radius, aspect, angle, kind)).reshape(-1)  # (size^2,)
    xs, ys = ((torch.arange(size) + 0.5) / size).repeat(size), ((torch.arange(size) + 0.5) / size).repeat_interleave(size)

    # 3. each pixel's colour from its leaf's texture
    dx, dy = xs - centre[top, 0], ys - centre[top, 1]  # (size^2,)
    along = dx * direction[top].cos() + dy * direction[top].sin()  # position along the leaf's direction
    t = texture[top]
    mix = torch.zeros(size * size)
    mix = torch.where(t == 1, (along / (2 * radius[top]) + 0.5).clamp(0, 1), mix)  # gradient across the leaf
    mix = torch.where(t == 2, 0.5 + 0.5 * torch.sin(2 * math.pi * along * size / period[top] + phase[top]), mix)
    rgb = colour[top] + mix[:, None] * (other[top] - colour[top])  # (size^2, 3)
    rgb = rgb + torch.where(t == 3, amplitude[top], 0.0)[:, None] * noise.reshape(3, -1).T
    image = rgb.T.reshape(3, size, size)
    image = _blur(image, sigma) + grain
    return image.clamp(0, 1) * 2 - 1


class DeadLeaves(Dataset):
    """dead-leaves pictures in random colours, like data.PhotoCrops: item i is (3, size, size) in [-1, 1]"""

    def __init__(self, size: int = 64, length: int = 10_000, seed: int = 0, config: DeadLeavesConfig | None = None):
        if size < 8 or size % 8:
            raise InputError(f"picture size {size} must be a positive multiple of 8 (the VAE's factor), e.g. 64.")
        self.size, self.length, self.seed, self.config = size, length, seed, config or DeadLeavesConfig()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        return dead_leaves(index, self.size, self.seed, self.config)


def colour_patches(index: int, size: int = 64, seed: int = 0, most: int = 6) -> torch.Tensor:
    """a grid of 1..most x 1..most flat patches cut at random places, each an sRGB colour uniform in the cube ->
    (3, size, size) in [-1, 1], deterministic in (seed, index)"""
    g = torch.Generator().manual_seed(seed * 1_000_003 + index + 7_919)  # not dead_leaves' stream for the same index
    rows, columns = (int(torch.randint(1, most + 1, (1,), generator=g)) for _ in range(2))
    colours = torch.rand(rows, columns, 3, generator=g)

    def band(n: int) -> torch.Tensor:  # each pixel's patch along one axis: n bands split at random places
        cuts = torch.sort(torch.randint(1, size, (n - 1,), generator=g)).values
        return torch.bucketize(torch.arange(size), cuts, right=True)

    row, column = band(rows), band(columns)
    return (colours[row[:, None], column[None, :]].permute(2, 0, 1) * 2 - 1).contiguous()


class ColourPatches(Dataset):
    """flat colour patches in a random grid, as `colour_patches`: item i is (3, size, size) in [-1, 1]"""

    def __init__(self, size: int = 64, length: int = 10_000, seed: int = 0):
        if size < 8 or size % 8:
            raise InputError(f"picture size {size} must be a positive multiple of 8 (the VAE's factor), e.g. 64.")
        self.size, self.length, self.seed = size, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        return colour_patches(index, self.size, self.seed)

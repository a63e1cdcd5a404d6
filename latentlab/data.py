"""Offline datasets: crops of the colour photographs that ship inside scikit-image, and generated shapes.

Both are deterministic with a seed and need no network. The photographs are split by whole photo, so a
held-out image is never seen in training. Online sets (CIFAR-10) are offered behind an explicit call and
say in one sentence when they cannot be had. Lessons 01-05 and 09 load the photos, lessons 02-03 train on
their crops, lesson 08 on the shapes. `skimage`, `matplotlib` and the optional `torchvision` are imported inside
the functions that read them: they take seconds to import (torchvision may be missing), and the shapes need none.
"""

import functools
import math
from pathlib import Path

import matplotlib.cbook
import numpy as np
import skimage.data
import torch
from torch.utils.data import Dataset

from latentlab.device import stream_seed
from latentlab.errors import InputError
from latentlab.images import center_crop, load_image, resize, to_numpy, to_tensor

# every file ships inside an installed package (no download): scikit-image's sample data, and matplotlib's
# portrait of Grace Hopper (a U.S. Navy photograph, public domain), which adds skin tones and saturated colour
TRAIN_PHOTOS = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "grace_hopper",
)
HELDOUT_PHOTOS = ("coffee", "chelsea")  # a cup of coffee and a cat: never used for training
# greyscale photos (loaded as R = G = B) that no shipped model trained on and no recipe was chosen by: an
# independent check beside the held-out pair, which also served to choose recipes (tools/eval_vae.py)
CHECK_PHOTOS = ("camera", "moon", "coins", "brick", "grass", "gravel")
PHOTOS = TRAIN_PHOTOS + HELDOUT_PHOTOS + CHECK_PHOTOS


@functools.cache
def _photo_array(name: str) -> np.ndarray:
    if name not in PHOTOS:
        raise InputError(f"unknown photo {name!r}; choose one of {', '.join(PHOTOS)}.")
    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name.endswith("left") else right
    if name == "grace_hopper":
        return to_numpy(load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))[0]
    return getattr(skimage.data, name)()


def _check_count(value, what: str, example: int, least: int = 1) -> None:
    """InputError unless value is a whole number of at least `least`"""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise InputError(f"{what} must be a whole number of at least {least}, not {value!r}; e.g. {example}.")


def load_photo(name: str, size: int | None = None) -> torch.Tensor:
    """a bundled photo -> (1, 3, H, W) in [-1, 1]; with `size`, shorter side resized and center-cropped square"""
    if size is not None:
        _check_count(size, "size (pixels)", 256)
    x = to_tensor(_photo_array(name))
    if size is not None:
        x = center_crop(resize(x, size), size)
    return x


def heldout_images(size: int = 256) -> torch.Tensor:
    """the held-out photos, each resized and center-cropped to size x size -> (N, 3, size, size)"""
    _check_count(size, "size (pixels)", 256)
    return torch.cat([load_photo(name, size) for name in HELDOUT_PHOTOS])


class RandomCrops(Dataset):
    """crops of `self.photos` (set by a subclass with size, length, seed, scale, flip): a photo drawn in proportion
    to its area, so every region is about equally likely, then `random_crop`; deterministic in (seed, index)"""

    photos: list[torch.Tensor]

    def weigh_by_area(self) -> None:
        areas = torch.tensor([p.shape[-1] * p.shape[-2] for p in self.photos], dtype=torch.float64)
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        photo = self.photos[int(torch.multinomial(self.weights, 1, generator=g))]
        return random_crop(photo, g, self.size, self.scale, self.flip)


class PhotoCrops(RandomCrops):
    """random crops (random scale, horizontal flip) of the bundled photos, deterministic per index"""

    def __init__(
        self,
        size: int = 64,  # side of each square crop, in pixels
        split: str = "train",  # "train" or "heldout": which photos crops come from
        length: int = 10_000,  # crops per epoch; any index gives the same crop for the same seed
        seed: int = 0,
        scale: tuple[float, float] = (0.25, 1.0),  # crop side as a fraction of the photo's shorter side
        flip: bool = True,
        max_side: int = 512,  # photos are first shrunk so their shorter side is at most this
    ):
        if split not in ("train", "heldout"):
            raise InputError(f"split must be 'train' or 'heldout', not {split!r}.")
        if not isinstance(size, (int, np.integer)) or size < 8 or size % 8:
            raise InputError(f"crop size {size} must be a positive multiple of 8 (the VAE's factor), e.g. 64.")
        if not (isinstance(scale, (tuple, list)) and len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise InputError(f"scale={scale!r} must be a pair (low, high) with 0 < low <= high <= 1: the crop side as "
                             "a fraction of the photo's shorter side, e.g. (0.25, 1.0).")
        _check_count(length, "length (crops per epoch)", 10_000)
        _check_count(max_side, "max_side (pixels)", 512, least=size)
        self.size, self.length, self.seed, self.scale, self.flip = size, length, seed, scale, flip
        self.names = TRAIN_PHOTOS if split == "train" else HELDOUT_PHOTOS
        self.photos = []
        for name in self.names:
            x = load_photo(name)
            short = min(x.shape[-2:])
            if short > max_side:
                x = resize(x, max_side)
            self.photos.append(x[0])
        self.weigh_by_area()


def random_crop(photo: torch.Tensor, g: torch.Generator, size: int, scale: tuple[float, float], flip: bool) -> torch.Tensor:
    """(3, H, W) float in [-1, 1] or uint8 -> (3, size, size) in [-1, 1]: a random square whose side is a `scale`
    fraction of the shorter side (never below `size` where the photo allows), resized, maybe mirrored; drawn from g"""
    h, w = photo.shape[-2:]
    lo, hi = scale
    side = int(min(h, w) * (lo + (hi - lo) * torch.rand(1, generator=g).item()))
    side = max(side, min(size, h, w))
    top = int(torch.randint(0, h - side + 1, (1,), generator=g))
    left = int(torch.randint(0, w - side + 1, (1,), generator=g))
    crop = photo[None, :, top : top + side, left : left + side]  # (1, 3, side, side)
    if crop.dtype == torch.uint8:
        crop = crop.float() / 127.5 - 1
    if side != size:
        crop = resize(crop, (size, size))
    if flip and torch.rand(1, generator=g).item() < 0.5:
        crop = crop.flip(-1)
    return crop[0]


# ---- generated shapes: a dataset a CPU can learn in minutes, and whose samples can be checked exactly

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
_PALETTE = torch.tensor(
    [[0.90, 0.20, 0.20], [0.20, 0.70, 0.25], [0.20, 0.40, 0.90], [0.95, 0.80, 0.15], [0.70, 0.30, 0.80], [0.15, 0.75, 0.80]]
)


def _shape_mask(kind: int, size: int, cx: float, cy: float, r: float, angle: float) -> torch.Tensor:
    """(size, size) bool mask of one shape centred at (cx, cy) with radius r (pixels), rotated by angle"""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    dx, dy = xs - cx, ys - cy
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if kind == 0:  # circle
        return dx**2 + dy**2 <= r**2
    if kind == 1:  # square
        return (u.abs() <= r * 0.8) & (v.abs() <= r * 0.8)
    if kind == 2:  # equilateral triangle pointing up (before rotation)
        return (v <= r * 0.5) & (v >= -r + math.sqrt(3) * u.abs())
    return ((u.abs() <= r * 0.3) & (v.abs() <= r)) | ((v.abs() <= r * 0.3) & (u.abs() <= r))  # cross


def make_shape(index: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, int]:
    """one generated image (3, size, size) in [-1, 1] and its shape class, deterministic in (seed, index)"""
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    kind = int(torch.randint(len(SHAPE_CLASSES), (1,), generator=g))
    u = torch.rand(6, generator=g)
    colours = torch.randperm(len(_PALETTE), generator=g)[:2]
    background = 0.25 + 0.5 * _PALETTE[colours[0]] * 0.6 + 0.15 * u[5]  # soft, darker background
    r = size * (0.2 + 0.12 * u[0].item())
    cx = r + (size - 2 * r) * u[1].item()
    cy = r + (size - 2 * r) * u[2].item()
    mask = _shape_mask(kind, size, cx, cy, r, angle=2 * math.pi * u[3].item())
    img = background[:, None, None].expand(3, size, size).clone()
    img[:, mask] = _PALETTE[colours[1]][:, None]
    return img * 2 - 1, kind


def _check_size_of_shapes(size) -> None:
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise InputError(f"shape images need at least 16 pixels a side to be recognisable, not {size!r}; e.g. 32.")


class Shapes(Dataset):
    """generated coloured shapes (circle, square, triangle, cross) on plain backgrounds, with class labels"""

    CLASSES = SHAPE_CLASSES

    def __init__(self, size: int = 32, length: int = 10_000, seed: int = 0):
        _check_size_of_shapes(size)
        _check_count(length, "length (images per epoch)", 10_000)
        self.size, self.length, self.seed = size, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return make_shape(index, self.size, self.seed)


def shapes_batch(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n generated shapes -> images (n, 3, size, size) in [-1, 1] and labels (n,)"""
    _check_count(n, "n (images)", 64)
    _check_size_of_shapes(size)
    items = [make_shape(i, size, seed) for i in range(n)]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def batches(dataset: Dataset, batch_size: int, seed: int = 0, process: int = 0, processes: int = 1, start: int = 0,
            first_items: list[int] | None = None):
    """endless shuffled batches of a dataset's images (labels dropped), deterministic with the seed.

    Several processes draw the same order and each takes its own part of every `processes * batch_size` items, so
    together they see what one process would with their whole batch. A run resumed at step `start` draws its order
    afresh from (seed, start). `first_items`, a list, receives the item indices of this process's first batch.
    """
    _check_count(batch_size, "batch_size", 16)
    if batch_size * processes > len(dataset):  # every epoch would end before one full batch: no batch, ever
        every = f"batch_size {batch_size}" + (f" x {processes} processes" if processes > 1 else "")
        raise InputError(f"{every} is larger than the dataset's {len(dataset)} items; use a smaller batch or a longer "
                         "dataset (e.g. its length=...).")
    g = torch.Generator().manual_seed(seed if start == 0 else stream_seed(seed, "order", start))
    return _endless_batches(dataset, batch_size, g, process, processes, first_items)


def _endless_batches(dataset: Dataset, batch_size: int, g: torch.Generator, process: int = 0, processes: int = 1,
                     first_items: list[int] | None = None):
    while True:
        for idx in torch.randperm(len(dataset), generator=g).split(batch_size * processes):
            if len(idx) < batch_size * processes:
                break
            idx = idx[process * batch_size : (process + 1) * batch_size]  # this process's part (all of it for one)
            if first_items is not None and not first_items:
                first_items.extend(idx.tolist())
            items = [dataset[int(i)] for i in idx]
            yield torch.stack([it[0] if isinstance(it, tuple) else it for it in items])


def cifar10(root: str | Path = "~/.cache/latentlab/cifar10", train: bool = True):
    """CIFAR-10 through torchvision (online extra): downloads once, or says in one sentence why it can't"""
    try:
        import torchvision  # noqa: F401
        from torchvision.datasets import CIFAR10
    except ImportError:
        raise InputError("CIFAR-10 needs torchvision, which is not installed; use the offline PhotoCrops or Shapes.") from None
    try:
        return CIFAR10(Path(root).expanduser(), train=train, download=True)
    except Exception as err:  # noqa: BLE001 - any download failure means the same thing to a learner
        raise InputError(
            f"CIFAR-10 could not be downloaded ({err.__class__.__name__}); you may be offline — use the offline "
            "PhotoCrops or Shapes datasets instead."
        ) from None

"""Training data beyond the bundled photos: a folder of your own images, and a weighted mix of sources (lesson 02).

`FolderCrops` is what `latentlab train vae --data DIR` reads: random crops of every image in a folder tree (JPEG, PNG,
WebP, ...), opened with images.load_image (EXIF orientation applied), kept in memory or, for a large folder, streamed;
unreadable files are skipped and counted. `Mixture` draws each item from one of several datasets with given
weights; `colour_mix` builds the colour-complete mix of issue 12: photos, colour-augmented photos and dead
leaves. Every item is (3, size, size) in [-1, 1] and the same for the same (seed, index), as in data.PhotoCrops.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.data import Dataset

from latentlab import gcompris as gcompris_photos
from latentlab import wallpapers as wallpaper_photos
from latentlab.augment import ColourAugmented, ColourJitter
from latentlab.data import PhotoCrops, RandomCrops, random_crop
from latentlab.errors import InputError
from latentlab.images import load_image, resize
from latentlab.synthetic import FINE_LEAVES, FOLIAGE, ColourPatches, DeadLeaves

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _kept(x: torch.Tensor, max_side: int) -> torch.Tensor:
    """a picture (1, 3, H, W) in [-1, 1] as the crop datasets keep it: shorter side at most max_side, uint8 (3, H, W)"""
    if min(x.shape[-2:]) > max_side:
        x = resize(x, max_side)
    return ((x[0] + 1) * 127.5).round().to(torch.uint8)


class FolderCrops(RandomCrops):
    """random crops (random scale, horizontal flip) of the images in a folder tree, deterministic per index.

    A folder of up to `keep` images is decoded once, each shrunk so its shorter side is at most `max_side` and kept
    as uint8 (about 0.75 MB per photo at 512), a photo drawn in proportion to its area. A larger folder is streamed:
    each item decodes one file, drawn uniformly, already reduced (JPEG at 1/2 to 1/8 scale), so the folder may hold
    any number of images of any size. Either way EXIF orientation is applied (images.load_image), and a file that
    cannot be read is skipped and listed in `skipped` (`warning()` says how many), never fatal while others remain.
    """

    def __init__(
        self,
        root: str | Path,
        size: int = 64,  # side of each square crop, in pixels
        length: int = 10_000,  # crops per epoch
        seed: int = 0,
        scale: tuple[float, float] = (0.25, 1.0),  # crop side as a fraction of the image's shorter side
        flip: bool = True,
        max_side: int = 512,
        keep: int = 2000,  # more images than this are streamed from disk instead of kept in memory (~1.5 GB at 2000)
        files: list[Path] | None = None,  # these image files instead of every image under root (root names them)
    ):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise InputError(f"no folder at {root}; give --data a folder of PNG or JPEG images.")
        if size < 8 or size % 8:
            raise InputError(f"crop size {size} must be a positive multiple of 8 (the VAE's factor), e.g. 64.")
        try:
            if files is None:
                files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError as err:  # e.g. a subfolder without read permission
            raise InputError(f"cannot list the images in {root} ({err.strerror or err}: {err.filename}); check that "
                             "the folder and its subfolders are readable.") from None
        if not files:
            raise InputError(f"{root} holds no image files ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders; "
                             "point --data at a folder of photos.")
        self.root, self.size, self.length, self.seed, self.scale, self.flip = root, size, length, seed, scale, flip
        self.max_side, self.streamed, self.found = max_side, len(files) > keep, len(files)
        self.files: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []  # (file, why) for each file that could not be read
        self.photos: list[torch.Tensor] = []  # uint8 (3, H, W)
        if self.streamed:
            self.files = files  # opened one item at a time; unreadable ones are found, and skipped, as they come
            return
        for path in files:
            try:
                x = load_image(path)  # (1, 3, H, W) in [-1, 1]
            except InputError as err:
                self.skipped.append((path, str(err)))
                continue
            self.files.append(path)
            self.photos.append(_kept(x, max_side))
        if not self.photos:
            path, why = self.skipped[0]
            raise InputError(f"none of the {len(files)} image files in {root} could be read (first: {why}); use PNG or JPEG photos.")
        self.weigh_by_area()  # photos kept as uint8 (3, H, W); random_crop converts each crop

    def __getitem__(self, index: int) -> torch.Tensor:
        if not self.streamed:
            return super().__getitem__(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        for _ in range(len(self.files)):  # an unreadable file: draw another (the same ones for the same index)
            path = self.files[int(torch.randint(len(self.files), (1,), generator=g))]
            try:
                photo = load_image(path, max_side=2 * self.max_side)[0]  # decoded reduced; (3, H, W) in [-1, 1]
            except InputError as err:
                if all(p != path for p, _ in self.skipped):
                    self.skipped.append((path, str(err)))
                continue
            if min(photo.shape[-2:]) > self.max_side:
                photo = resize(photo[None], self.max_side)[0]
            return random_crop(photo, g, self.size, self.scale, self.flip)
        raise InputError(f"none of the image files drawn from {self.root} could be read (e.g. {self.skipped[-1][1]}); "
                         "use PNG or JPEG photos.")

    def describe(self) -> str:
        """one line: how many images, and how many files were skipped"""
        count = f"{self.found} images (streamed)" if self.streamed else f"{len(self.photos)} images"
        skipped = f"; skipped {len(self.skipped)} unreadable file(s), e.g. {self.skipped[0][0].name}" if self.skipped else ""
        return f"{count} from {self.root}{skipped}"

    def warning(self) -> str | None:
        """one line when files were skipped: how many, of how many, and an example; None when all could be read"""
        if not self.skipped:
            return None
        path, why = self.skipped[0]
        return (f"warning: skipped {len(self.skipped)} of {self.found} image files in {self.root} that could not be "
                f"read (e.g. {path.name}: {why}); training on the rest.")


class ImageCrops(RandomCrops):
    """random crops (random scale, horizontal flip) of pictures given as uint8 (3, H, W) tensors, each first shrunk
    as FolderCrops shrinks a file (shorter side at most max_side); deterministic per index (the GCompris photos, which
    live inside Qt resource bundles, not in a folder)"""

    def __init__(self, pictures: list[torch.Tensor], size: int = 64, length: int = 10_000, seed: int = 0,
                 scale: tuple[float, float] = (0.25, 1.0), flip: bool = True, max_side: int = 512):
        if size < 8 or size % 8:
            raise InputError(f"crop size {size} must be a positive multiple of 8 (the VAE's factor), e.g. 64.")
        self.size, self.length, self.seed, self.scale, self.flip = size, length, seed, scale, flip
        self.photos = [_kept(picture[None].float() / 127.5 - 1, max_side) for picture in pictures]
        self.weigh_by_area()


class Mixture(Dataset):
    """item i comes from one of several datasets, chosen with the given weights; deterministic in (seed, index)"""

    def __init__(self, sources: Mapping[str, Dataset], weights: Mapping[str, float], length: int = 10_000, seed: int = 0):
        unknown = set(weights) - set(sources)
        if unknown:
            raise InputError(f"weights given for unknown sources {sorted(unknown)}; the sources are {sorted(sources)}.")
        kept = {name: float(w) for name, w in weights.items() if w > 0}
        if not kept or any(w < 0 for w in weights.values()):
            raise InputError(f"mixture weights must be >= 0 with at least one above 0, not {dict(weights)}.")
        self.names = list(kept)
        self.sources = [sources[name] for name in self.names]
        self.probabilities = torch.tensor([kept[n] for n in self.names], dtype=torch.float64) / sum(kept.values())
        self.length, self.seed = length, seed

    def __len__(self) -> int:
        return self.length

    def source_of(self, index: int) -> tuple[int, int]:
        """(which source, which of its items) item `index` is"""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index + 104_729)
        source = int(torch.multinomial(self.probabilities, 1, generator=g))
        return source, int(torch.randint(len(self.sources[source]), (1,), generator=g))

    def __getitem__(self, index: int) -> torch.Tensor:
        source, item = self.source_of(index)
        return self.sources[source][item]


def colour_mix(
    size: int = 64,
    length: int = 10_000,
    seed: int = 0,
    photos: float = 0.4,  # weight of plain photo crops
    augmented: float = 0.3,  # weight of colour-augmented photo crops
    leaves: float = 0.3,  # weight of dead-leaves pictures
    patches: float = 0.0,  # weight of flat colour patches (synthetic.ColourPatches); 0: the mix of issue 12 exactly
    fine: float = 0.0,  # weight of fine-textured dead leaves (synthetic.FINE_LEAVES)
    foliage: float = 0.0,  # weight of small-leaf texture (synthetic.FOLIAGE)
    wallpapers: float = 0.0,  # weight of crops of the Debian wallpaper photographs (latentlab.wallpapers)
    gcompris: float = 0.0,  # weight of crops of the GCompris training photos (latentlab.gcompris)
    scale: tuple[float, float] = (0.25, 1.0),  # crop side as a fraction of a photo's shorter side
    data: str | Path | None = None,  # a folder of your own images instead of the bundled training photos
    jitter: ColourJitter | None = None,
) -> Mixture:
    """the colour-complete training mix: photos + colour-augmented photos + dead leaves (+ flat colour patches, fine
    leaves, the wallpaper photographs, foliage, the GCompris photos); the photographs that come from Debian packages
    are only looked for when their weight is above 0"""
    crops = FolderCrops(data, size, length, seed, scale) if data is not None else PhotoCrops(size, "train", length, seed, scale)
    sources = {"photos": crops, "augmented": ColourAugmented(crops, jitter, seed), "leaves": DeadLeaves(size, length, seed),
               "patches": ColourPatches(size, length, seed), "fine": DeadLeaves(size, length, seed, FINE_LEAVES),
               "foliage": DeadLeaves(size, length, seed, FOLIAGE)}
    if wallpapers != 0:
        sources["wallpapers"] = FolderCrops(wallpaper_photos.ROOT, size, length, seed, scale, files=wallpaper_photos.files())
    if gcompris != 0:
        sources["gcompris"] = ImageCrops([gcompris_photos.decode(blob) for _, blob, _, _ in gcompris_photos.split("train")],
                                         size, length, seed, scale)
    weights = {"photos": photos, "augmented": augmented, "leaves": leaves, "patches": patches, "fine": fine,
               "wallpapers": wallpapers, "foliage": foliage, "gcompris": gcompris}
    for name in ("wallpapers", "gcompris"):
        if weights[name] == 0:
            del weights[name]
    return Mixture(sources, weights, length, seed)

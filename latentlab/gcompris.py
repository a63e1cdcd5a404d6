"""Photographs from GCompris for the course VAE's decoder (the VAE lessons 02-05 decode with): monuments among
trees, animals in grass and leaves, read from Debian's gcompris-qt-data.

GCompris, the educational software suite, shows children photographs in four of its activities: world monuments
(49: temples, castles, pyramids, the Great Wall, most of them among trees under a sky), animals to uncover (33,
1920x1080), world animals (15) and farm animals (9). Each is credited in its activity's README (Wikimedia Commons
photographers; CC BY, CC BY-SA, CC0, public domain). The package keeps them as WebP files inside Qt resource bundles
(`/usr/share/gcompris-qt/rcc/*.rcc`); `read_rcc` reads such a bundle (the format is Qt's: a header, a tree of
nodes, the names in UTF-16 and the data, zlib-compressed or stored). Nothing is copied into this repository.

The 106 photos sorted by name: every fourth is held out (`split("validation")`, 26) and only chooses recipes, with
the other validation photos (tools/colour_validation.py); the other 80 are what `latentlab train vae --gcompris X`
crops. None is a test photo (latentlab.photosets). `python tools/debian_photos.py --install` installs the package
with the wallpapers (apt, as root or with sudo; `make test` and `make weights` run it).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentlab.errors import InputError, refusal
from latentlab.images import center_crop, resize

PACKAGE = "gcompris-qt-data"
ROOT = Path("/usr/share/gcompris-qt/rcc")
ACTIVITIES = ("erase", "explore_farm_animals", "explore_monuments", "explore_world_animals")
MIN_SIDE = 256  # smaller pictures in these bundles are icons and drawings
COUNT = 106  # photos in gcompris-qt-data 3.1 (Debian 13); DIGEST pins their names and bytes
DIGEST = "ca8f19e2e0fcc11c21824775310f33420a38b0ff5c69d90315c720a847fc37e5"
HOLD_OUT_EVERY = 4  # in name order, the 4th, 8th, ... photo is a validation photo
README_TYPOS = {"germany/audaPalatina.webp": "germany/aulaPalatina.webp"}  # explore_monuments' README, 3.1


def read_rcc(path: str | Path) -> dict[str, bytes]:
    """every file in a Qt resource bundle (.rcc) -> {path inside the bundle: bytes}"""
    data = Path(path).read_bytes()
    if data[:4] != b"qres":
        raise InputError(f"{path} is not a Qt resource bundle (it does not start with 'qres').")
    version, tree, payload, names = struct.unpack(">4I", data[4:20])
    node = 14 if version == 1 else 22  # version 2 added an 8-byte modification time to every node

    def name_at(offset: int) -> str:
        length = struct.unpack(">H", data[names + offset:names + offset + 2])[0]
        start = names + offset + 6  # after the length and a 4-byte hash
        return data[start:start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    pending = [(0, "")]  # (node index, folder path); node 0 is the root folder
    while pending:
        index, folder = pending.pop()
        at = tree + index * node
        name_offset, flags = struct.unpack(">IH", data[at:at + 6])
        name = name_at(name_offset) if index else ""
        path_here = f"{folder}{name}"
        if flags & 2:  # a folder: its children are consecutive nodes
            count, first = struct.unpack(">II", data[at + 6:at + 14])
            pending.extend((child, f"{path_here}/" if path_here else "") for child in range(first, first + count))
            continue
        offset = struct.unpack(">I", data[at + 10:at + 14])[0]
        size = struct.unpack(">I", data[payload + offset:payload + offset + 4])[0]
        blob = data[payload + offset + 4:payload + offset + 4 + size]
        if flags & 4:  # zstd: not used for pictures, which are stored as they are
            continue
        files[path_here] = zlib.decompress(blob[4:]) if flags & 1 else blob  # zlib after a 4-byte length
    return files


def credits(readme: str) -> dict[str, tuple[str, str]]:
    """a GCompris resource README -> {file name: (author, licence)}: blocks of 'Copyright:', 'License:' and 'Files:'"""
    found = {}
    for block in re.split(r"\n\s*\n", readme):
        author = re.search(r"^Copyright:\s*(.+)$", block, re.M)
        licence = re.search(r"^License:\s*(.+)$", block, re.M)
        files = re.search(r"^Files:(.*)", block, re.M | re.S)
        if author and licence and files:
            for name in files.group(1).split():
                found[README_TYPOS.get(name, name)] = (author.group(1).strip(), licence.group(1).strip())
    return found


def missing_sentence(what: Path) -> str:
    """the one sentence for a bundle that is not there: the package, the install command, the way around"""
    return (f"{what} is missing: the GCompris photos come from Debian's {PACKAGE} package; install it with `python "
            f"tools/debian_photos.py --install` (or `sudo apt-get install {PACKAGE}`), or train with --gcompris 0.")


@cache
def _photos(root: Path) -> tuple[tuple[tuple[str, bytes, str, str], ...], str]:
    """(name, WebP bytes, author, licence) of every photo in the four activities, sorted by name, and the sha256 of
    their names and bytes: read and hashed once per folder"""
    photos = []
    for activity in ACTIVITIES:
        bundle = root / f"{activity}.rcc"
        if not bundle.is_file():
            raise InputError(missing_sentence(bundle))
        files = read_rcc(bundle)
        credit = {}  # full path in the bundle -> (author, licence), from the README beside (or above) the photo
        for path, blob in files.items():
            if path.endswith("/README"):
                folder = path.rsplit("/", 1)[0]
                credit |= {f"{folder}/{name}": who for name, who in credits(blob.decode("utf-8", "replace")).items()}
        for path, blob in files.items():
            if path.endswith(".webp") and min(Image.open(io.BytesIO(blob)).size) >= MIN_SIDE:
                photos.append((path.removeprefix("gcompris/src/activities/"), blob, *credit.get(path, ("", ""))))
    photos.sort()
    return tuple(photos), hashlib.sha256(b"".join(name.encode() + blob for name, blob, _, _ in photos)).hexdigest()


def photos(root: Path | None = None) -> tuple[tuple[str, bytes, str, str], ...]:
    """(name, WebP bytes, author, licence) of the 106 photos, sorted by name; InputError in one sentence when the
    package is missing or holds other photos than the ones the recipes were made with"""
    found, digest = _photos(ROOT if root is None else Path(root))
    if DIGEST and digest != DIGEST:
        raise InputError(f"the {len(found)} GCompris photos found are not the {COUNT} of {PACKAGE} 3.1 that the course "
                         f"recipes were made with (their digest differs); train with --gcompris 0, or install {PACKAGE} "
                         "3.1 (Debian 13).")
    return found


def split(which: str, root: Path | None = None) -> list[tuple[str, bytes, str, str]]:
    """the photos that train ('train', 80) or that choose recipes ('validation', 26): every HOLD_OUT_EVERY-th by name"""
    if which not in ("train", "validation"):
        raise InputError(f"split must be 'train' or 'validation', not {which!r}.")
    held = which == "validation"
    return [p for i, p in enumerate(photos(root)) if (i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1) == held]


def decode(blob: bytes) -> torch.Tensor:
    """WebP (or any image) bytes -> uint8 (3, H, W)"""
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")).copy()).permute(2, 0, 1)


def missing(root: Path | None = None) -> str | None:
    """the sentence photos() would raise, or None when all 106 are there"""
    return refusal(lambda: photos(root))


def images(which: str, size: int = 256, root: Path | None = None) -> torch.Tensor:
    """a split's photos, each resized (shorter side) and center-cropped to size x size -> (N, 3, size, size) in [-1, 1],
    as latentlab.photosets.split_images gives the other photo sets"""
    return torch.cat([center_crop(resize(decode(blob)[None].float() / 127.5 - 1, size), size)
                      for _, blob, _, _ in split(which, root)])


def unavailable(root: Path | None = None) -> str | None:
    """why the photos cannot be used here, else None: missing with no apt-get to install them (as on macOS), or
    installed but another version of the package (as another distribution may ship: apt cannot mend that). Where
    apt-get exists and the bundles are missing, nothing is excused: `make test` installs them first, so tests fail"""
    why = missing(root)
    if why is None:
        return None
    installed = all((Path(root or ROOT) / f"{activity}.rcc").is_file() for activity in ACTIVITIES)
    if installed:
        return f"the installed {PACKAGE} is not the pinned 3.1: {why}"
    if shutil.which("apt-get") is None:
        return f"no apt-get here to install Debian's {PACKAGE}: {why}"
    return None

"""Photographs with fine natural texture for the course VAE's decoder: 25 wallpapers from two Debian packages
(the VAE that lessons 02-05 decode with; its ninth training run crops them).

The photos that ship inside Python packages hold almost no foliage, grass or rock, and the drawn textures
(latentlab.synthetic) did not reach real trees (docs/vae-colour.md). Debian's `mate-backgrounds` (its nature
folder, GPL-2+) and `lomiri-wallpapers-16.04` (CC BY 4.0, CC BY-SA 4.0, CC0) hold 25 photographs of leaves, grass,
flowers, a forest stream, mountains and a few rooms, 1280 to 5312 pixels wide. They are read from where the packages
install them (`/usr/share/backgrounds`), never copied into this repository; `python tools/debian_photos.py
--install` installs them (apt, as root or with sudo; `make test` and `make weights` run it), and without them
`latentlab train vae --wallpapers X` stops in one sentence before training. Only training uses them: they are
neither validation nor test photos (latentlab.photosets).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from latentlab.errors import InputError, refusal

PACKAGES = ("mate-backgrounds", "lomiri-wallpapers-16.04")
ROOT = Path("/usr/share/backgrounds")

# (file under ROOT, author, licence), sorted by file name: the order the crops draw them in. Left out of the two
# folders: mate's abstract and desktop pictures (drawings), lomiri's umang (a drawn gradient) and analogpattern (a
# grain texture, no scene).
PHOTOS = (
    ("mate/nature/Aqua.jpg", "Charles Barbin", "GPL-2+"),
    ("mate/nature/Blinds.jpg", "Lennart Poettering, Andrea Cimitan", "GPL-2+"),
    ("Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
    ("Dragonfly_by_Bolly.jpg", "Bolly", "CC-BY-SA-4.0"),
    ("mate/nature/Dune.jpg", "Marco Cogoni, Hylke Bons", "GPL-2+"),
    ("mate/nature/FreshFlower.jpg", "Jens Ansorg", "GPL-2+"),
    ("mate/nature/Garden.jpg", "Charles Barbin", "GPL-2+"),
    ("mate/nature/GreenMeadow.jpg", "Timothy Schellhase, Lapo Calamandrei", "GPL-2+"),
    ("mate/nature/LadyBird.jpg", "Charles Barbin", "GPL-2+"),
    ("Picture_0B_by_freespace.jpg", "Trevor \"Freespace\"", "CC-BY-4.0"),
    ("Picture_1A_by_freespace.jpg", "Trevor \"Freespace\"", "CC-BY-4.0"),
    ("mate/nature/RainDrops.jpg", "blackcombwhistler07", "GPL-2+"),
    ("mate/nature/Storm.jpg", "Sergey Nazarov", "GPL-2+"),
    ("mate/nature/TwoWings.jpg", "Charles Barbin, Hylke Bons", "GPL-2+"),
    ("Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0"),
    ("mate/nature/Wood.jpg", "Jean-François Fortin Tam", "GPL-2+"),
    ("mate/nature/YellowFlower.jpg", "Charles Barbin", "GPL-2+"),
    ("aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
    ("sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
)


def files(root: Path | None = None) -> list[Path]:
    """the 25 photographs, each checked to be there -> paths in the order of PHOTOS; InputError in one sentence when
    any is missing"""
    root = ROOT if root is None else Path(root)
    paths = [root / name for name, _, _ in PHOTOS]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{len(missing)} of the {len(paths)} wallpaper photographs are missing (e.g. {missing[0]}); "
                         f"install Debian's {' and '.join(PACKAGES)} packages with `python tools/debian_photos.py "
                         "--install` (or `sudo apt-get install " + " ".join(PACKAGES) + "`), or train with "
                         "--wallpapers 0.")
    return paths


def missing(root: Path | None = None) -> str | None:
    """None when all 25 photographs are there, else the one sentence `files` raises: what is missing, what to do"""
    return refusal(lambda: files(root))


def unavailable(root: Path | None = None) -> str | None:
    """why the photos cannot be used here: missing, and no apt-get to install them (as on macOS); else None. Where
    apt-get exists a missing photo is not excused: `make test` installs them first, so the tests then fail instead"""
    why = missing(root)
    if why is not None and shutil.which("apt-get") is None:
        return f"no apt-get here to install Debian's wallpaper photos: {why}"
    return None

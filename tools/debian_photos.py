"""Install the photographs the course VAE's decoder trains on: 25 wallpapers (latentlab.wallpapers) and GCompris'
106 photos (latentlab.gcompris).

    python tools/debian_photos.py            say whether they are there
    python tools/debian_photos.py --install  `make test`'s and `make weights`' step: Debian's mate-backgrounds,
                                             lomiri-wallpapers-16.04 and gcompris-qt-data through apt-get (as root or
                                             with password-less sudo) when any photo is missing; exit 1 with one
                                             sentence if apt-get is there and cannot install them, and 0 with one
                                             sentence where there is no apt-get (tests that need the photos then say
                                             what to install)

About 106 MB, once. Nothing is downloaded at training time: training reads /usr/share/backgrounds and
/usr/share/gcompris-qt/rcc.
"""

import argparse
import shutil
import sys
from pathlib import Path

from latentlab import gcompris, wallpapers

sys.path.append(str(Path(__file__).resolve().parent))  # tools/apt_get.py, also when a test loads this file by path
from apt_get import apt_install  # noqa: E402

PACKAGES = [*wallpapers.PACKAGES, gcompris.PACKAGE]


def missing() -> str | None:
    """the first of the two sources' sentences about a missing photo, or None when every photo is there"""
    return wallpapers.missing() or gcompris.missing()


def install() -> int:
    """install the packages when a photo is missing -> exit status"""
    if missing() is None:
        return 0
    if not shutil.which("apt-get"):
        print(f"debian_photos.py: no apt-get here, so Debian's {' and '.join(PACKAGES)} cannot be installed; the "
              "tests that train on these photos will say so, and `latentlab train vae --wallpapers 0 --gcompris 0` "
              "trains without them.", file=sys.stderr)
        return 0
    if not apt_install(PACKAGES, "debian_photos.py", "the VAE's photographs, ~106 MB"):
        print(f"debian_photos.py: the VAE's photographs are missing and this user cannot run apt-get; run "
              f"'sudo apt-get install -y {' '.join(PACKAGES)}'.", file=sys.stderr)
        return 1
    why = missing()
    if why is not None:
        print(f"debian_photos.py: apt-get finished but {why}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="install the packages when a photo is missing")
    if parser.parse_args().install:
        return install()
    why = missing()
    print(why or f"all {len(wallpapers.PHOTOS)} wallpaper photographs are in {wallpapers.ROOT}, and GCompris' "
          f"{gcompris.COUNT} photos in {gcompris.ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

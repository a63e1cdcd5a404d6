"""The online extra for training data: an archive of images (zip or tar) downloaded once and unpacked into a cache
(lesson 02's VAE, trained on photos the course does not ship).

`latentlab train vae --data-url URL` trains on the images of the archive at URL as `--data FOLDER` trains on a
folder: nothing in the course needs it (the recipes rebuild from what the package ships), and the flag is the only
way anything is downloaded for training. Offline, or with a URL that does not answer, it stops with one sentence
before training starts.

The archive is read, never trusted: only regular files whose names end in an image suffix are unpacked, each under
a new flat name (its position in the archive and its own file name), so no member can write outside the cache folder
or replace another; links, folders and everything else are skipped. The folder appears whole or not at all: it is
unpacked under a temporary name, then renamed (a Ctrl-C or a failed download leaves nothing behind but the partial
download, which is deleted). A second run finds the folder and does not download again.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from latentlab.errors import InputError
from latentlab.sources import IMAGE_SUFFIXES

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "latentlab" / "data"  # the freedesktop cache folder
MAX_MEMBER_BYTES = 256 * 2**20  # a larger "image" in an archive is skipped: no photo needs it, a bomb would


def _plain_name(name: str) -> str:
    """a file or folder name with anything but letters, digits, '.', '_' and '-' turned into '_'"""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name)


def cached_folder(url: str, cache: str | Path | None = None) -> Path:
    """where the images of the archive at url are (or will be) unpacked: one folder per URL, in cache (CACHE)"""
    name = _plain_name(urlparse(url).path)[:60] or "archive"
    return Path(cache or CACHE).expanduser() / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def fetch_images(url: str, cache: str | Path | None = None, timeout: float = 30.0, say=print) -> Path:
    """the folder of images unpacked from the zip or tar archive at url, downloading it the first time -> Path"""
    if urlparse(url).scheme not in ("http", "https", "file"):
        raise InputError(f"--data-url takes an http(s):// or file:// address of a zip or tar archive of images, "
                         f"not {url!r}; for a folder on this machine use --data FOLDER.")
    folder = cached_folder(url, cache)
    if folder.is_dir():
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the download cache {folder.parent} ({err.strerror or err}); make its parent "
                         "folder writable, or download and unpack the archive yourself and use --data FOLDER.") from None
    fd, download = tempfile.mkstemp(prefix=f".{folder.name}.", suffix=".download", dir=folder.parent)
    unpacked = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".unpacking", dir=folder.parent))
    try:
        with os.fdopen(fd, "wb") as file:
            size = _download(url, file, timeout)
        say(f"downloaded {size / 2**20:.1f} MB from {url}")
        count = _unpack(Path(download), unpacked, url)
        try:
            os.rename(unpacked, folder)  # whole or not at all; another process may have got there first
        except OSError:
            if not folder.is_dir():
                raise
        say(f"unpacked {count} images into {folder}")
        return folder
    finally:
        os.remove(download)
        shutil.rmtree(unpacked, ignore_errors=True)


def _download(url: str, file: BinaryIO, timeout: float) -> int:
    """copy the body at url into file -> bytes written; one InputError sentence when it cannot be had"""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, file, 2**20)
            return file.tell()
    except urllib.error.HTTPError as err:
        raise InputError(f"{url} answered HTTP {err.code} ({err.reason}); check the address, or train on a folder "
                         "you have with --data FOLDER.") from None
    except (urllib.error.URLError, OSError) as err:  # no network, no such host, refused, timed out, no such file
        reason = getattr(err, "reason", None) or err.strerror or err
        raise InputError(f"could not download {url} ({reason}); you may be offline - train on a folder you have "
                         "with --data FOLDER, or on the bundled photos without --data-url.") from None


def _unpack(archive: Path, into: Path, url: str) -> int:
    """the image members of a zip or tar archive -> flat files in `into` -> how many"""
    count = 0
    try:
        for index, (name, read) in enumerate(_image_members(archive, url)):
            stem = _plain_name(name)[-80:]
            with read() as source, open(into / f"{index:06d}-{stem}", "wb") as target:
                shutil.copyfileobj(source, target, 2**20)
            count += 1
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        raise InputError(f"the archive downloaded from {url} is damaged ({err}); download it again later, or unpack "
                         "it yourself and use --data FOLDER.") from None
    except OSError as err:  # the archive was readable, so this is the cache's disk
        raise InputError(f"could not unpack the images into {into.parent} ({err.strerror or err}); free some disk "
                         "space there and run the command again.") from None
    if not count:
        raise InputError(f"the archive at {url} holds no image files ({', '.join(IMAGE_SUFFIXES)}); --data-url takes "
                         "a zip or tar archive of photos.")
    return count


def _image_members(archive: Path, url: str) -> Iterator[tuple[str, Callable[[], BinaryIO]]]:
    """(name, opener) of each regular image file in the archive, small enough to be a photo"""
    def wanted(name: str, size: int) -> bool:
        return Path(name).suffix.lower() in IMAGE_SUFFIXES and 0 < size <= MAX_MEMBER_BYTES

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir() and wanted(info.filename, info.file_size):
                    yield info.filename, lambda info=info: zf.open(info)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.isfile() and wanted(member.name, member.size):  # links and devices are never unpacked
                    yield member.name, lambda member=member: tf.extractfile(member)
    else:
        raise InputError(f"what {url} holds is not a zip or tar archive; --data-url takes an archive of images (for "
                         "a single picture, put it in a folder and use --data FOLDER).")

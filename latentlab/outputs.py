"""Output files written safely: every destination checked before any work, every file written whole or not at all.

Used by `latentlab reconstruct` (lessons 02-04's VAE on your own photo) and any command that writes files. A missing folder, an output that would
overwrite an input, or an existing file (unless the command was told `--overwrite`) is found before the compute
and said in one sentence. Each file is first written to a hidden neighbour and moved into place with os.replace
only when all of them were written, so a failure on the second file leaves no first file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from latentlab.errors import InputError


def image_suffixes() -> set[str]:
    """file extensions Pillow can write, e.g. {".png", ".jpg", ".webp", ...}"""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def check_destinations(paths: Iterable[Path], inputs: Iterable[Path] = (), overwrite: bool = False,
                       flag: str = "--out", suffixes: set[str] | None = None) -> None:
    """raise InputError (one sentence naming the path and the fix) unless every path can be written now"""
    inputs = [Path(p) for p in inputs]
    seen = set()
    for path in map(Path, paths):
        parent = path.parent
        if path.resolve() in seen:
            raise InputError(f"{path} would be written twice; choose another {flag}.")
        seen.add(path.resolve())
        if not parent.exists():
            raise InputError(f"the folder {parent} does not exist; create it first (mkdir -p {parent}) or choose "
                             f"another {flag}.")
        if not parent.is_dir():
            raise InputError(f"{parent} is a file, not a folder; choose another {flag}.")
        if path.is_dir():
            raise InputError(f"{path} is a folder; give {flag} a file name such as {path / 'out.png'}.")
        if suffixes is not None and path.suffix.lower() not in suffixes:
            raise InputError(f"cannot write {path.name}: {path.suffix or 'no extension'} is not an image format "
                             f"Pillow can write; end {flag} with .png.")
        if any(_same_file(path, source) for source in inputs):
            raise InputError(f"{path} is the input image and would be overwritten; choose another {flag}.")
        if path.exists() and not overwrite:
            raise InputError(f"{path} already exists; pass --overwrite to replace it, or choose another {flag}.")
        if not os.access(parent, os.W_OK):
            raise InputError(f"cannot write in {parent} (permission denied); choose another {flag}.")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)  # hard links and symbolic links included
    return a.resolve() == b.resolve()


def write_all(writers: dict[Path, Callable[[Path], None]]) -> None:
    """call each writer with a temporary path beside its destination, then move them all into place

    writers: {destination: function that writes the file at the path it is given}; the temporary path keeps the
    destination's extension, so `lambda p: image.save(p)` picks the same format.
    """
    temporary = {}
    try:
        for path, write in writers.items():
            path = Path(path)
            temporary[path] = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
            try:
                write(temporary[path])
            except (OSError, ValueError) as err:
                reason = getattr(err, "strerror", None) or str(err)
                raise InputError(f"cannot write {path} ({reason}); nothing was written — free some disk space or "
                                 "choose another path.") from None
        for path, partial in temporary.items():
            os.replace(partial, path)  # atomic within a folder: the old file or the new one, never half of one
    finally:
        for partial in temporary.values():
            partial.unlink(missing_ok=True)

"""latentlab.outputs: destinations checked before any work; files written whole, all or none, with normal permissions."""

import os
import stat

import pytest

from latentlab.errors import InputError
from latentlab.outputs import check_destinations, image_suffixes, write_all


def test_all_files_or_none(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("old")

    def broken(path):
        path.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(InputError, match=f"cannot write {second} \\(No space left on device\\); nothing was written"):
        write_all({first: lambda p: p.write_text("new"), second: broken})
    assert first.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]  # no partial files left
    write_all({first: lambda p: p.write_text("new"), second: lambda p: p.write_text("b")})
    assert first.read_text() == "new" and second.read_text() == "b"
    assert stat.S_IMODE(second.stat().st_mode) == 0o666 & ~_umask()  # as any new file: not a temp file's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_destinations_are_checked_in_one_sentence(tmp_path):
    source = tmp_path / "in.png"
    source.write_bytes(b"x")
    cases = [
        ([tmp_path / "no" / "out.png"], False, "does not exist"),
        ([source], True, "is the input image"),
        ([tmp_path / "o.png", tmp_path / "o.png"], False, "written twice"),
        ([tmp_path], False, "is a folder"),
        ([tmp_path / "o.bmpx"], False, ".bmpx is not an image format"),
    ]
    for paths, overwrite, words in cases:
        with pytest.raises(InputError, match=words):
            check_destinations(paths, inputs=[source], overwrite=overwrite, suffixes=image_suffixes())
    (tmp_path / "o.png").write_bytes(b"y")
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        check_destinations([tmp_path / "o.png"], inputs=[source])
    check_destinations([tmp_path / "o.png"], inputs=[source], overwrite=True)  # allowed when asked
    assert {".png", ".jpg"} <= image_suffixes()

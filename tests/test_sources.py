import os

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab.errors import InputError
from latentlab.sources import FolderCrops, Mixture, colour_mix
from latentlab.synthetic import FINE_LEAVES, FOLIAGE, DeadLeaves

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_photos(folder, n=3, size=(48, 40)):
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"photo{i}.png")


def test_folder_crops_are_deterministic_and_skip_corrupt_files(tmp_path):
    _write_photos(tmp_path)
    (tmp_path / "sub").mkdir()
    _write_photos(tmp_path / "sub", n=1)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    crops = FolderCrops(tmp_path, size=16, length=20, seed=0)
    assert len(crops.photos) == 4 and len(crops.skipped) == 1 and crops.skipped[0][0].name == "broken.jpg"
    assert "skipped 1" in crops.describe()
    x = crops[5]
    assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, FolderCrops(tmp_path, size=16, length=20, seed=0)[5])
    assert not torch.equal(x, crops[6])


def test_folder_crops_say_what_is_wrong_in_one_sentence(tmp_path):
    with pytest.raises(InputError, match="no folder"):
        FolderCrops(tmp_path / "missing")
    with pytest.raises(InputError, match="holds no image files"):
        FolderCrops(tmp_path)
    (tmp_path / "a.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="none of the 1 image files") as err:
        FolderCrops(tmp_path)
    assert "\n" not in str(err.value)


def test_mixture_follows_its_weights_and_is_deterministic():
    leaves = DeadLeaves(16, length=50)
    zeros = [torch.zeros(3, 16, 16)] * 50
    mix = Mixture({"leaves": leaves, "zeros": zeros}, {"leaves": 0.25, "zeros": 0.75}, length=2000, seed=0)
    sources = torch.tensor([mix.source_of(i)[0] for i in range(2000)])
    assert abs((sources == 0).float().mean().item() - 0.25) < 0.04
    assert torch.equal(mix[7], Mixture({"leaves": leaves, "zeros": zeros}, {"leaves": 0.25, "zeros": 0.75}, 2000, 0)[7])
    only = Mixture({"leaves": leaves, "zeros": zeros}, {"leaves": 0, "zeros": 1})
    assert only.names == ["zeros"]
    with pytest.raises(InputError, match="unknown sources"):
        Mixture({"leaves": leaves}, {"photos": 1.0})
    with pytest.raises(InputError, match=">= 0"):
        Mixture({"leaves": leaves}, {"leaves": 0})


def test_colour_mix_draws_from_all_three_sources():
    mix = colour_mix(size=16, length=300, seed=0)
    assert mix.names == ["photos", "augmented", "leaves"]
    used = {mix.source_of(i)[0] for i in range(60)}
    assert used == {0, 1, 2}
    assert mix[0].shape == (3, 16, 16)
    with_patches = colour_mix(size=16, length=300, seed=0, patches=0.5)
    assert with_patches.names == ["photos", "augmented", "leaves", "patches"]
    assert 70 < sum(with_patches.source_of(i)[0] == 3 for i in range(300)) < 130  # a third of the weight
    assert torch.equal(mix[0], colour_mix(size=16, length=300, seed=0, patches=0)[0])  # 0: the mix as before
    fine = colour_mix(size=16, length=300, seed=0, photos=0, augmented=0, leaves=0, fine=1.0)
    assert fine.names == ["fine"] and torch.equal(fine[5], DeadLeaves(16, 300, 0, FINE_LEAVES)[fine.source_of(5)[1]])
    foliage = colour_mix(size=16, length=300, seed=0, photos=0, augmented=0, leaves=0, foliage=1.0)
    assert torch.equal(foliage[5], DeadLeaves(16, 300, 0, FOLIAGE)[foliage.source_of(5)[1]])


def _exif_rotated_jpeg(path, size=(48, 24)):
    """a landscape JPEG whose EXIF says: turn me 90 degrees (orientation 6), so it is shown as portrait"""
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes())


@pytest.mark.parametrize("keep", [100, 2], ids=["in memory", "streamed"])
def test_folder_trees_of_jpeg_png_and_webp_skip_and_count_what_cannot_be_read(tmp_path, keep):
    (tmp_path / "a" / "b").mkdir(parents=True)
    _write_photos(tmp_path, n=1)
    Image.fromarray(np.full((40, 56, 3), 200, np.uint8)).save(tmp_path / "a" / "flat.webp")
    _exif_rotated_jpeg(tmp_path / "a" / "b" / "turned.jpg")
    (tmp_path / "a" / "b" / "cut.png").write_bytes((tmp_path / "photo0.png").read_bytes()[:60])  # truncated
    crops = FolderCrops(tmp_path, size=16, length=64, seed=0, keep=keep)
    assert crops.streamed == (keep == 2) and crops.found == 4
    items = [crops[i] for i in range(64)]  # streamed: the broken file turns up among these draws
    assert all(x.shape == (3, 16, 16) and -1 <= x.min() and x.max() <= 1 for x in items)
    assert torch.equal(items[9], FolderCrops(tmp_path, size=16, length=64, seed=0, keep=keep)[9])
    assert [p.name for p, _ in crops.skipped] == ["cut.png"]
    warning = crops.warning()
    assert warning.startswith(f"warning: skipped 1 of 4 image files in {tmp_path} that could not be read (e.g. cut.png")
    assert "\n" not in warning and FolderCrops(tmp_path / "a" / "b", size=16, keep=keep).warning() is not None


def test_a_streamed_folder_applies_exif_orientation(tmp_path):
    stored = np.zeros((48, 48, 3), np.uint8)
    stored[:, 24:] = 255  # stored: left half black, right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the black half on top
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif.tobytes())
    crops = FolderCrops(tmp_path, size=16, length=4, seed=0, scale=(1.0, 1.0), flip=False, keep=0)
    x = crops[0]  # the whole picture, shrunk to 16 x 16
    assert x[:, :6].mean() < -0.8 and x[:, -6:].mean() > 0.8  # top dark, bottom light: as shown, not as stored


def test_an_unreadable_subfolder_is_one_sentence(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    (tmp_path / "locked").mkdir()
    _write_photos(tmp_path / "locked", n=1)
    (tmp_path / "locked").chmod(0)
    try:
        with pytest.raises(InputError, match="cannot list the images in") as err:
            FolderCrops(tmp_path, size=16)
        assert "\n" not in str(err.value)
    finally:
        (tmp_path / "locked").chmod(0o755)

"""Which photographs train, which choose and which only report: three disjoint sets (lesson 02; `latentlab eval vae`).

- train: data.TRAIN_PHOTOS, the crops every course VAE learns from;
- validation: data.HELDOUT_PHOTOS (coffee, chelsea), never trained on but watched during training and used to
  choose between recipes, so a number measured on them is no longer independent;
- test: two colour photographs that ship inside scikit-learn's wheel (sklearn/datasets/images: a temple above a
  lake with trees and sky, and a dahlia before dark teal leaves; CC BY 2.0, Flickr users danielbuechele and
  vultilion). They are only reported, never used to choose anything; their green, teal and sky blue are the
  colours the training photos lack.
- check: data.CHECK_PHOTOS, greyscale photographs (R = G = B) beside the rest.
The test photos are read from the installed scikit-learn's folder without importing scikit-learn.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import torch

from latentlab.data import CHECK_PHOTOS, HELDOUT_PHOTOS, TRAIN_PHOTOS, load_photo
from latentlab.errors import InputError
from latentlab.images import center_crop, load_image, resize

VALIDATION_PHOTOS = HELDOUT_PHOTOS  # chooses recipes
TEST_PHOTOS = ("china", "flower")  # only reports
SPLITS = {"train": TRAIN_PHOTOS, "validation": VALIDATION_PHOTOS, "test": TEST_PHOTOS, "check": CHECK_PHOTOS}


def sklearn_photo_path(name: str) -> Path:
    """the file of one of scikit-learn's sample photos (china, flower); InputError if scikit-learn is missing"""
    if name not in TEST_PHOTOS:
        raise InputError(f"unknown test photo {name!r}; choose one of {', '.join(TEST_PHOTOS)}.")
    spec = find_spec("sklearn")  # finds the package folder without running its (slow) import
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the test photos ship with scikit-learn, which is not installed; run `pip install scikit-learn`.")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images" / f"{name}.jpg"
    if not path.is_file():
        raise InputError(f"this scikit-learn has no {path.name} in {path.parent}; reinstall it with `pip install -U scikit-learn`.")
    return path


def load_split_photo(name: str, size: int | None = None) -> torch.Tensor:
    """a photo of any split -> (1, 3, H, W) in [-1, 1]; with `size`, shorter side resized and center-cropped square"""
    if name not in TEST_PHOTOS:
        return load_photo(name, size)
    x = load_image(sklearn_photo_path(name))
    return x if size is None else center_crop(resize(x, size), size)


def split_images(split: str, size: int = 256) -> torch.Tensor:
    """every photo of a split, each resized and center-cropped to size x size -> (N, 3, size, size)"""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    return torch.cat([load_split_photo(name, size) for name in SPLITS[split]])

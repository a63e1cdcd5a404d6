import pytest
import torch

from latentlab.augment import (
    ColourAugmented,
    ColourJitter,
    adjust_gamma,
    colour_jitter,
    permute_channels,
    rotate_hue,
    scale_saturation,
)
from latentlab.data import PhotoCrops
from latentlab.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_images(n=2, size=8, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 1.2 - 0.6  # no clipping


def test_a_third_of_a_hue_turn_cycles_the_channels():
    x = _random_images()
    assert torch.allclose(rotate_hue(x, 120), x[:, [2, 0, 1]], atol=1e-5)  # red -> green -> blue -> red
    assert torch.allclose(rotate_hue(x, -120), x[:, [1, 2, 0]], atol=1e-5)
    assert not torch.allclose(rotate_hue(x, 60), x[:, [2, 0, 1]], atol=1e-2)


def test_hue_and_saturation_keep_greys_and_the_mean():
    grey = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4).expand(1, 3, 4, 4)
    assert torch.allclose(rotate_hue(grey, 77), grey, atol=1e-5)
    assert torch.allclose(scale_saturation(grey, 1.5), grey, atol=1e-5)
    x = _random_images()
    assert torch.allclose(rotate_hue(x, 45).mean(1), x.mean(1), atol=1e-5)  # the grey axis is the rotation axis
    assert torch.allclose(scale_saturation(x, 0.0), x.mean(1, keepdim=True).expand_as(x), atol=1e-6)


def test_permute_gamma_and_their_bad_input():
    x = _random_images()
    assert torch.equal(permute_channels(x, (2, 1, 0)), x.flip(1))
    with pytest.raises(InputError, match="0, 1 and 2"):
        permute_channels(x, (0, 0, 1))
    assert torch.allclose(adjust_gamma(x, 1.0), x, atol=1e-6)
    assert (adjust_gamma(x, 2.0) < x).all()  # gamma > 1 darkens every value inside (0, 1)
    with pytest.raises(InputError, match="saturation"):
        ColourJitter(saturation=(1.5, 0.5))


def test_jitter_covers_the_colour_cube_from_one_orange_crop():
    orange = torch.tensor([0.8, 0.0, -0.7])[None, :, None, None].expand(256, 3, 2, 2)
    out = colour_jitter(orange, torch.Generator().manual_seed(0))[:, :, 0, 0]  # (256, 3)
    dominant = out.argmax(1).bincount(minlength=3)
    assert (dominant > 40).all(), f"every channel should lead in some crops, got {dominant.tolist()}"
    assert out.min() >= -1 and out.max() <= 1
    same = colour_jitter(orange, torch.Generator().manual_seed(0))[:, :, 0, 0]
    assert torch.equal(out, same)


def test_colour_augmented_dataset_is_deterministic_and_changes_colours():
    crops = PhotoCrops(size=16, length=8, seed=0)
    a, b = ColourAugmented(crops, seed=0), ColourAugmented(crops, seed=0)
    assert a[3].shape == (3, 16, 16) and torch.equal(a[3], b[3])
    assert not torch.equal(a[3], ColourAugmented(crops, seed=1)[3])
    assert not torch.allclose(a[3], crops[3], atol=0.05)

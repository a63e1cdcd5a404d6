
import pytest
import torch

from latentlab.errors import InputError
from latentlab.synthetic import (
    FINE_LEAVES,
    FOLIAGE,
    ColourPatches,
    DeadLeaves,
    DeadLeavesConfig,
    colour_patches,
    dead_leaves,
    power_law,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dead_leaves_are_deterministic_in_seed_and_index():
    a, b = DeadLeaves(32, length=10, seed=0), DeadLeaves(32, length=10, seed=0)
    assert a[4].shape == (3, 32, 32) and a[4].min() >= -1 and a[4].max() <= 1
    assert torch.equal(a[4], b[4])
    assert not torch.equal(a[4], a[5])
    assert not torch.equal(a[4], DeadLeaves(32, length=10, seed=1)[4])


def test_power_law_radii_follow_r_to_the_minus_alpha():
    r = power_law(torch.rand(200_000, generator=torch.Generator().manual_seed(0)), 0.01, 1.0, 3.0)
    assert r.min() >= 0.01 and r.max() <= 1.0
    # density ~ r^-3: P(r > x) = (x^-2 - 1) / (0.01^-2 - 1)
    for x in (0.02, 0.05):
        expected = (x**-2 - 1) / (0.01**-2 - 1)
        assert abs((r > x).double().mean().item() - expected) < 0.01


def test_dead_leaves_cover_the_colour_cube_and_have_structure():
    x = torch.stack([dead_leaves(i, 64) for i in range(16)])  # (16, 3, 64, 64)
    pixels = (x.permute(0, 2, 3, 1).reshape(-1, 3) + 1) / 2
    octants = ((pixels > 0.5).long() * torch.tensor([4, 2, 1])).sum(1).bincount(minlength=8)
    assert (octants > 0.03 * len(pixels)).all(), f"each corner of the RGB cube should be visited: {octants.tolist()}"
    chroma = (pixels.max(1).values - pixels.min(1).values).mean()
    assert chroma > 0.3  # colourful, not grey
    # neighbours mostly alike (regions), yet edges exist: not noise, not flat
    step = (x[..., 1:] - x[..., :-1]).abs().mean(1)  # (16, 64, 63)
    assert 0.4 < (step < 0.05).float().mean() < 0.97  # photo crops: 0.72; white noise: 0.05


def _fine_part(x: torch.Tensor) -> torch.Tensor:
    """a picture minus its 2x2 box blur: what a 1-pixel texture adds"""
    return x - torch.nn.functional.avg_pool2d(x, 2).repeat_interleave(2, -1).repeat_interleave(2, -2)


def _detail(x: torch.Tensor) -> float:
    """the mean absolute size of a picture's fine part"""
    return _fine_part(x).abs().mean().item()


def test_fine_leaves_hold_finer_detail_than_the_default_ones_at_the_same_size():
    fine = torch.stack([dead_leaves(i, 192, 0, FINE_LEAVES) for i in range(6)])
    default = torch.stack([dead_leaves(i, 192, 0) for i in range(6)])
    assert _detail(fine) > 2 * _detail(default)
    pixels = (fine.permute(0, 2, 3, 1).reshape(-1, 3) + 1) / 2
    assert (pixels.max(1).values - pixels.min(1).values).mean() > 0.2  # still in colour


def test_foliage_is_fine_texture_everywhere_with_no_large_shapes():
    foliage = torch.stack([dead_leaves(i, 192, 0, FOLIAGE) for i in range(4)])
    fine = torch.stack([dead_leaves(i, 192, 0, FINE_LEAVES) for i in range(4)])
    assert _detail(foliage) > _detail(fine)
    # detail in every 48x48 block alike: no block is mostly one large leaf, as some are in the other configs
    per_block = torch.nn.functional.avg_pool2d(_fine_part(foliage).abs().mean(1, keepdim=True), 48).flatten()
    assert per_block.min() > 0.6 * per_block.mean()  # measured: foliage 0.74, FINE_LEAVES 0.42, default leaves 0.46


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(InputError, match="multiple of 8"):
        DeadLeaves(30)
    with pytest.raises(InputError, match="min_radius"):
        DeadLeavesConfig(min_radius=0.5, max_radius=0.1)


def test_colour_patches_are_flat_rectangles_in_every_colour():
    pictures = ColourPatches(64, length=200, seed=0)
    assert torch.equal(pictures[3], colour_patches(3, 64, 0)) and not torch.equal(pictures[3], pictures[4])
    assert not torch.equal(pictures[3], ColourPatches(64, length=200, seed=1)[3])
    counts = []
    for i in range(200):
        x = pictures[i]
        assert x.shape == (3, 64, 64) and x.min() >= -1 and x.max() <= 1
        # a grid: each row changes colour only where every row does (the column cuts), and likewise each column
        column_cuts = (x[:, :, 1:] != x[:, :, :-1]).any(0)  # (64, 63)
        row_cuts = (x[:, 1:, :] != x[:, :-1, :]).any(0)  # (63, 64)
        assert (column_cuts == column_cuts.any(0)).all() and (row_cuts == row_cuts.any(1, keepdim=True)).all()
        counts.append((int(row_cuts.any(1).sum()) + 1) * (int(column_cuts.any(0).sum()) + 1))
    assert min(counts) == 1 and max(counts) > 20  # from one flat field to many patches
    colours = torch.cat([pictures[i].reshape(3, -1).T.unique(dim=0) for i in range(200)])
    assert (colours.min(0).values < -0.95).all() and (colours.max(0).values > 0.95).all()  # the cube's corners
    octants = {tuple((c > 0).tolist()) for c in colours}
    assert len(octants) == 8
    with pytest.raises(InputError, match="multiple of 8"):
        ColourPatches(20)

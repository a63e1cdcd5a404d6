"""latentlab.latents: scale / unscale are inverses and follow (z - shift) * scale; the latent check refuses bad input."""

import pytest
import torch

from latentlab.errors import InputError
from latentlab.latents import check_latents, scale, unscale


def test_scale_subtracts_the_shift_before_multiplying():
    z = torch.tensor([1.0, 2.0])
    assert torch.equal(scale(z, 0.5, shift_factor=1.0), torch.tensor([0.0, 0.5]))  # not z * 0.5 - 1
    assert torch.equal(scale(z, 0.5), torch.tensor([0.5, 1.0]))


def test_unscale_inverts_scale_with_and_without_a_shift():
    z = torch.randn(2, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    for factor, shift in [(0.18215, 0.0), (1.5305, 0.0609), (0.3611, 0.1159)]:
        assert torch.allclose(unscale(scale(z, factor, shift), factor, shift), z, atol=1e-6)


@pytest.mark.parametrize("bad, words", [
    (torch.zeros(4, 8, 8), "z[None]"),
    (torch.zeros(1, 3, 8, 8), "(B, 4, h, w)"),
    (torch.zeros(1, 4, 8, 8, dtype=torch.uint8), "float tensor"),
    (torch.full((1, 4, 2, 2), float("nan")), "NaN"),
    ([[0.0]], "float tensor"),
])
def test_check_latents_says_what_is_wrong(bad, words):
    with pytest.raises(InputError, match=None) as err:
        check_latents(bad, 4)
    assert words in str(err.value)


def test_check_latents_passes_a_good_latent_through():
    z = torch.zeros(2, 4, 8, 8)
    assert check_latents(z, 4) is z and check_latents(z) is z

"""latentlab.tiny_decoder: shapes, size, no attention or normalisation, and the same raw latents as VAE.decode."""

import pytest
import torch
from torch import nn

from latentlab.errors import InputError
from latentlab.tiny_decoder import Block, TinyDecoder, TinyDecoderConfig


def test_a_latent_becomes_an_image_eight_times_larger():
    model = TinyDecoder()
    out = model(torch.randn(2, 4, 5, 7))
    assert out.shape == (2, 3, 40, 56) and model.factor == 8
    assert TinyDecoder(TinyDecoderConfig(block_out_channels=(16, 8))).factor == 4  # one width fewer: factor 4
    assert TinyDecoder(TinyDecoderConfig(block_out_channels=(16, 8)))(torch.randn(1, 4, 3, 3)).shape == (1, 3, 12, 12)


def test_a_few_hundred_thousand_parameters_of_plain_convolutions():
    model = TinyDecoder()
    assert 100_000 < model.num_parameters() < 500_000  # TAESD's decoder: 1.2 M; the course VAE's: 0.43 M
    plain = (nn.Conv2d, nn.ReLU, nn.Upsample, nn.PixelShuffle, nn.Sequential, Block, TinyDecoder)
    assert all(isinstance(m, plain) for m in model.modules()), "no attention, no normalisation"
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 1 + 3 * 2 + 2 + 1  # in, 3 blocks, 2 ups, out


def test_no_convolution_runs_at_full_resolution():
    seen = []
    model = TinyDecoder()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[-1]))
    model(torch.randn(1, 4, 4, 4))
    assert max(seen) == 16 and len(seen) == 10  # 4x the latent side at most; the pixel shuffle makes 32


def test_decode_checks_the_latent_and_follows_the_parameters_dtype():
    model = TinyDecoder().double()
    assert model.decode(torch.randn(1, 4, 2, 2)).dtype == torch.float64
    with pytest.raises(InputError, match=r"expected \(B, 4, h, w\)"):
        model.decode(torch.randn(1, 3, 2, 2))
    with pytest.raises(InputError, match="NaN"):
        model.decode(torch.full((1, 4, 2, 2), float("nan")))


@pytest.mark.parametrize("kwargs,words", [({"block_out_channels": ()}, "one positive width"),
                                          ({"block_out_channels": (64, 0)}, "one positive width"),
                                          ({"layers_per_block": 0}, "layers_per_block must be")])
def test_bad_configs_get_one_sentence(kwargs, words):
    with pytest.raises(InputError, match=words):
        TinyDecoderConfig(**kwargs)

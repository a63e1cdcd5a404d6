"""latentlab.tiny_decoder: shapes, size, no attention or normalisation, and the same raw latents as VAE.decode."""

import pytest
import torch
from torch import nn

from latentlab.errors import InputError
from latentlab.tiny_decoder import Block, GlobalContext, TinyDecoder, TinyDecoderConfig


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
                                          ({"layers_per_block": 0}, "layers_per_block must be"),
                                          ({"global_context": "yes"}, "global_context must be true or false")])
def test_bad_configs_get_one_sentence(kwargs, words):
    with pytest.raises(InputError, match=words):
        TinyDecoderConfig(**kwargs)


def test_global_context_starts_as_nothing_and_then_lets_a_position_see_the_whole_picture():
    plain, context = TinyDecoder(), TinyDecoder(TinyDecoderConfig(global_context=True))
    theirs = [m for m in context.layers if not isinstance(m, GlobalContext)]
    for mine, copy in zip(plain.layers, theirs, strict=True):  # the same convolutions; the context blocks start at 0
        copy.load_state_dict(mine.state_dict())
    z = torch.randn(1, 4, 16, 16)  # wider than a plain decoder's reach (a few latent cells)
    assert torch.equal(plain(z), context(z))
    extra = context.num_parameters() - plain.num_parameters()
    assert 0 < extra < 0.25 * plain.num_parameters()
    assert sum(isinstance(m, GlobalContext) for m in context.modules()) == 3  # one per width
    for block in context.modules():
        if isinstance(block, GlobalContext):
            nn.init.normal_(block.mix[-1].weight, std=0.1)
    far = z.clone()
    far[..., 0, 0] += 3.0  # a change in one corner of the latent ...
    changed = (context(far) - context(z)).abs()[..., -8:, -8:].amax()  # ... reaches the opposite corner's pixels
    assert changed > 1e-4 and torch.equal(plain(far)[..., -8:, -8:], plain(z)[..., -8:, -8:])

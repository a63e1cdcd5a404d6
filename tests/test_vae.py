"""The course VAE against diffusers.AutoencoderKL (same weights, same latents and images), the KL, and input checks."""

import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from latentlab.errors import InputError
from latentlab.vae import VAE, DiagonalGaussian, VAEConfig, estimate_scaling_factor, gaussian_kl

TINY = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


def _images(b=2, size=16, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator("cpu").manual_seed(seed)) * 2 - 1


@pytest.fixture
def pair():
    torch.manual_seed(0)
    ours = VAE(TINY).eval()
    theirs = AutoencoderKL(**ours.to_diffusers_config()).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def test_state_dict_keys_and_shapes_match_autoencoderkl(pair):
    ours, theirs = pair
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert all(ours_sd[k].shape == theirs_sd[k].shape for k in ours_sd)


def test_same_seed_gives_the_same_initial_weights_as_autoencoderkl():
    diffusers_config = VAE().to_diffusers_config()
    torch.manual_seed(0)
    ours = VAE().state_dict()
    torch.manual_seed(0)
    theirs = AutoencoderKL(**diffusers_config).state_dict()  # layers built in the same order draw the same numbers
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("config", [TINY, VAEConfig(), VAEConfig(block_out_channels=(8, 8, 16), layers_per_block=2,
                                                                  norm_num_groups=4, mid_block_add_attention=False,
                                                                  use_quant_conv=False, use_post_quant_conv=False)])
def test_weights_load_both_ways_and_outputs_match(config):
    torch.manual_seed(0)
    ours = VAE(config).eval()
    theirs = AutoencoderKL(**ours.to_diffusers_config()).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    torch.manual_seed(1)
    back = VAE(config).eval()  # different random weights, until they are loaded from diffusers
    back.load_state_dict(theirs.state_dict(), strict=True)
    x = _images(size=2 * config.factor)
    with torch.no_grad():
        ours_post, theirs_post = back.encode(x), theirs.encode(x).latent_dist
        torch.testing.assert_close(ours_post.mean, theirs_post.mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours_post.logvar, theirs_post.logvar, atol=1e-5, rtol=1e-5)
        z = ours_post.mode()
        torch.testing.assert_close(back.decode(z), theirs.decode(z).sample, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(back(x), theirs(x).sample, atol=1e-5, rtol=1e-5)


def test_posterior_sample_matches_diffusers_with_the_same_generator(pair):
    ours, theirs = pair
    x = _images()
    with torch.no_grad():
        a = ours.encode(x).sample(torch.Generator("cpu").manual_seed(3))
        b = theirs.encode(x).latent_dist.sample(torch.Generator("cpu").manual_seed(3))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_to_diffusers_and_back_keeps_weights(pair):
    ours, _ = pair
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(ours.to_diffusers()(x).sample, ours(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(VAE.from_diffusers(ours.to_diffusers())(x), ours(x), atol=1e-6, rtol=1e-6)


def test_diffusers_config_round_trip(pair):
    ours, theirs = pair
    assert VAE.from_diffusers_config(dict(theirs.config)).config == ours.config
    assert ours.to_diffusers_config()["block_out_channels"] == [8, 16]


def test_from_diffusers_config_rejects_what_it_cannot_build():
    config = VAE(TINY).to_diffusers_config()
    with pytest.raises(InputError, match="down_block_types"):
        VAE.from_diffusers_config({**config, "down_block_types": ["AttnDownEncoderBlock2D"] * 2})
    with pytest.raises(InputError, match="act_fn"):
        VAE.from_diffusers_config({**config, "act_fn": "gelu"})
    with pytest.raises(InputError, match="made_up"):
        VAE.from_diffusers_config({**config, "made_up": 1})


def test_factor_and_latent_shape():
    assert VAEConfig().factor == 8 and VAE().factor == 8 and VAE().config.latent_channels == 4
    assert VAE(TINY).factor == 2
    with torch.no_grad():
        posterior = VAE().eval().encode(_images(b=1, size=64))
    assert posterior.mean.shape == (1, 4, 8, 8) and posterior.sample().shape == (1, 4, 8, 8)


def test_kl_matches_a_direct_computation_and_diffusers():
    params = torch.randn(2, 8, 3, 5, generator=torch.Generator("cpu").manual_seed(0))
    ours = DiagonalGaussian(params)
    mean, logvar = params.chunk(2, dim=1)
    posterior = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    direct = torch.distributions.kl_divergence(posterior, prior).sum(dim=[1, 2, 3])
    torch.testing.assert_close(ours.kl(), direct, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.kl(), DiagonalGaussianDistribution(params).kl(), atol=1e-5, rtol=1e-5)
    assert torch.allclose(gaussian_kl(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)), torch.zeros(1))


def test_logvar_is_clamped_like_diffusers():
    params = torch.cat([torch.zeros(1, 4, 2, 2), torch.full((1, 4, 2, 2), 100.0)], dim=1)
    assert DiagonalGaussian(params).logvar.max().item() == 20.0
    assert torch.isfinite(DiagonalGaussian(params).var).all()


def test_estimate_scaling_factor_gives_unit_variance():
    torch.manual_seed(0)
    vae = VAE(TINY).eval()
    x = _images(b=8)
    with torch.no_grad():
        s = estimate_scaling_factor(vae, x, torch.Generator("cpu").manual_seed(0))
        z = vae.encode(x).sample(torch.Generator("cpu").manual_seed(0))
    assert abs((z * s).std().item() - 1.0) < 1e-4


@pytest.mark.parametrize(
    "bad,words",
    [
        (torch.zeros(1, 3, 250, 256), "not divisible by 8"),
        (torch.zeros(1, 4, 64, 64), "4 channels"),
        (torch.zeros(1, 1, 64, 64), "1 channels"),
        (torch.full((1, 3, 64, 64), 255.0), "[-1, 1]"),
        (torch.full((1, 3, 64, 64), float("nan")), "NaN"),
        (torch.zeros(3, 64, 64), "batch axis"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "dtype"),
        ([[0.0]], "list"),
    ],
)
def test_bad_images_raise_one_clear_sentence(bad, words):
    with pytest.raises(InputError) as info:
        VAE().encode(bad)
    message = str(info.value)
    assert words in message and message.replace("e.g. ", "").count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize(
    "bad,words",
    [
        (torch.zeros(4, 8, 8), "z[None]"),
        (torch.zeros(1, 3, 8, 8), "(B, 4, h, w)"),
        (torch.full((1, 4, 8, 8), float("inf")), "NaN or infinite"),
        (torch.zeros(1, 4, 8, 8, dtype=torch.int64), "float"),
        ("latent", "str"),
    ],
)
def test_bad_latents_raise_one_clear_sentence(bad, words):
    with pytest.raises(InputError) as info:
        VAE().decode(bad)
    assert words in str(info.value)


def test_groups_must_divide_channels():
    with pytest.raises(InputError, match="norm_num_groups=8 does not divide"):
        VAE(VAEConfig(block_out_channels=(12, 16), norm_num_groups=8))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"block_out_channels": ()}, "one positive width per resolution"),
        ({"block_out_channels": (16, 0)}, "one positive width per resolution"),
        ({"norm_num_groups": 0}, "norm_num_groups must be a whole number of at least 1, not 0"),
        ({"latent_channels": 0}, "latent_channels must be"),
        ({"layers_per_block": -1}, "layers_per_block must be"),
        ({"scaling_factor": 0.0}, "scaling_factor must be a positive number"),
    ],
)
def test_bad_configs_get_one_sentence_when_made(kwargs, words):
    with pytest.raises(InputError) as info:
        VAE(VAEConfig(**kwargs))  # once an IndexError / ZeroDivisionError from inside the model
    message = str(info.value)
    assert words in message and "\n" not in message and message.endswith(".")

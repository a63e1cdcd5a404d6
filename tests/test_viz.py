"""Channel plots, histograms, image rows, and the least-squares latent -> RGB map."""

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from latentlab import viz
from latentlab.errors import InputError


def _known_map(seed: int = 0):
    g = torch.Generator("cpu").manual_seed(seed)
    weight = torch.randn(4, 3, generator=g) * 0.1
    bias = torch.tensor([0.1, -0.2, 0.05])
    latents = torch.randn(3, 4, 8, 8, generator=g)
    return g, weight, bias, latents


def test_fit_latent_rgb_recovers_a_known_linear_map():
    g, weight, bias, latents = _known_map()
    small = torch.einsum("bchw,cr->brhw", latents, weight) + bias[None, :, None, None]  # (3, 3, 8, 8)
    assert small.abs().max() < 1
    images = F.interpolate(small, scale_factor=8, mode="nearest")  # each latent pixel covers 8x8 image pixels
    fitted_w, fitted_b = viz.fit_latent_rgb(latents, images)
    assert fitted_w.shape == (4, 3) and fitted_b.shape == (3,)
    assert torch.allclose(fitted_w, weight, atol=1e-5)
    assert torch.allclose(fitted_b, bias, atol=1e-5)
    assert torch.allclose(viz.latent_to_rgb(latents, fitted_w, fitted_b), small.clamp(-1, 1), atol=1e-5)


def test_fit_latent_rgb_is_least_squares_under_noise():
    g, weight, bias, latents = _known_map(1)
    small = torch.einsum("bchw,cr->brhw", latents, weight) + bias[None, :, None, None]
    noisy = small + 0.05 * torch.randn(small.shape, generator=g)
    fitted_w, fitted_b = viz.fit_latent_rgb(latents, noisy)
    best = (viz.latent_to_rgb(latents, fitted_w, fitted_b) - noisy).pow(2).mean()
    worse = (viz.latent_to_rgb(latents, fitted_w * 1.05, fitted_b) - noisy).pow(2).mean()
    assert best < worse
    assert torch.allclose(fitted_w, weight, atol=0.02)


def test_fit_latent_rgb_rejects_mismatched_inputs():
    _, _, _, latents = _known_map()
    with pytest.raises(InputError, match="one image per latent"):
        viz.fit_latent_rgb(latents, torch.zeros(2, 3, 64, 64))
    with pytest.raises(InputError, match="weight must be"):
        viz.latent_to_rgb(latents, torch.zeros(3, 3), torch.zeros(3))


def test_plot_channels_one_panel_per_channel():
    _, _, _, latents = _known_map()
    fig = viz.plot_channels(latents)
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(panels) == 4
    assert "channel 3" in panels[3].get_title()
    data = panels[1].images[0].get_array()
    assert torch.allclose(torch.as_tensor(data.data), latents[0, 1])
    plt.close(fig)


def test_histograms_and_show_images():
    _, _, _, latents = _known_map()
    fig = viz.plot_latent_histograms(latents)
    assert len(fig.axes) == 4
    plt.close(fig)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    fig = viz.show_images(images, ["a", "b", "c"])
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    plt.close(fig)
    fig = viz.show_images([images[0], images[1:2]], nrow=1)
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(InputError, match="one title per image"):
        viz.show_images(images, ["a"])

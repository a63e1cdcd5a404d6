"""latentlab.previews: the linear map as a decoder, and the sampling app (steps recorded, pictures changing after
every step, the full decode at the end, scrubbing back), without a browser."""

import io

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from PIL import Image

from latentlab.errors import InputError
from latentlab.previews import Frame, LinearPreview, SamplingPreview, render_frame
from latentlab.tiny_decoder import TinyDecoder
from latentlab.vae import VAE, VAEConfig


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(float)


class Halving(torch.nn.Module):
    """a stand-in denoiser that predicts half of its input as the noise"""

    def forward(self, x, t):
        return 0.5 * x


def test_the_linear_preview_paints_one_colour_per_latent_position():
    weight, bias = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]), torch.tensor([0.0, 0.1, -0.1])
    z = torch.rand(1, 4, 2, 3) - 0.5
    out = LinearPreview(weight, bias).decode(z)
    assert out.shape == (1, 3, 16, 24)
    assert torch.allclose(out[0, :, 8:16, 16:24], (z[0, :3, 1, 2] + bias)[:, None, None].expand(3, 8, 8))
    assert not torch.allclose(out[0, :, :8, :8], out[0, :, 8:, 8:16])


def test_fit_recovers_a_linear_encoder():
    """a 'VAE' whose latent is the block colour itself (4th channel its brightness): the map is recovered"""

    class Pool:
        def encode(self, x):
            colour = torch.nn.functional.avg_pool2d(x, 8)
            latent = torch.cat([colour, colour.mean(1, keepdim=True)], 1)
            return type("Posterior", (), {"mode": lambda self: latent})()

    images = torch.rand(3, 3, 32, 32) * 2 - 1
    linear = LinearPreview.fit(Pool(), images)
    z = Pool().encode(images).mode()
    assert torch.allclose(linear.decode(z), torch.nn.functional.interpolate(z[:, :3], scale_factor=8), atol=1e-4)


@pytest.fixture(scope="module")
def app():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(block_out_channels=(8, 8, 8, 8), norm_num_groups=4)).eval()
    linear = LinearPreview(torch.randn(4, 3), torch.zeros(3))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    preview = SamplingPreview(Halving(), scheduler, 4, (1, 4, 4, 4), vae, TinyDecoder().eval(), linear)
    return preview


def test_sampling_records_every_step_and_the_pictures_change_as_it_goes(app):
    seen = []
    app.predicted.observe(lambda change: seen.append(change["new"]), names="value")
    image = app.run(seed=3)
    assert len(app.frames) == 4 and [f.t for f in app.frames] == sorted([f.t for f in app.frames], reverse=True)
    assert len(seen) == 4 and len({bytes(s) for s in seen}) == 4  # a new picture after every step
    assert image.shape == (1, 3, 32, 32) and app.final.value  # the full decode at the end
    assert app.step.max == 3 and not app.step.disabled and not app.button.disabled
    assert "move the slider" in app.status.value and len(app.timings["tiny"]) == 4


def test_the_slider_scrubs_back_to_an_earlier_step(app):
    app.run(seed=1)
    last = _pixels(app.predicted.value)
    app.step.value = 0
    first = _pixels(app.predicted.value)
    expected = render_frame(app.frames[0], app.linear, app.tiny, app.vae.scaling_factor)[1]
    assert np.array_equal(first, expected.astype(float)) and np.abs(first - last).mean() > 0
    assert "step 1 of 4" in app.status.value


def test_another_seed_samples_another_latent(app):
    app.run(seed=5)
    a = app.frames[-1].predicted.clone()
    app.run(seed=6)
    assert not torch.allclose(a, app.frames[-1].predicted)


def test_more_than_one_latent_is_refused(app):
    with pytest.raises(InputError, match=r"one latent \(1, C, h, w\)"):
        SamplingPreview(Halving(), app.scheduler, 4, (2, 4, 4, 4), app.vae, app.tiny, app.linear)


def test_render_frame_unscales_before_decoding(app):
    frame = Frame(10, torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4))
    noisy, predicted = render_frame(frame, app.linear, app.tiny, 0.5)
    with torch.no_grad():
        expected = ((app.tiny.decode(frame.predicted / 0.5)[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0)
    assert np.abs(predicted.astype(float) - expected.numpy()).max() <= 1
    assert noisy.shape == predicted.shape == (32, 32, 3)

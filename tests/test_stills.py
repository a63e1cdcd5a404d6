"""latentlab.stills: the slider apps as still frames show what the live apps show, switch by plain HTML, and fall back
to a filmstrip. The browser half (the range inputs really swap the picture) is in tests/test_site.py."""

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab import data, diffusion, stills, widgets
from latentlab.checkpoints import load_course_vae
from latentlab.errors import InputError


@pytest.fixture(scope="module")
def vae():
    return load_course_vae()


@pytest.fixture(scope="module")
def latent(vae):
    with torch.no_grad():
        return vae.encode(data.load_photo("astronaut", 64)).mode()  # (1, 4, 8, 8)


def _payload(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json">(.*?)</script>', html, re.S).group(1))


def _decoded(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"), np.int16)


def test_channel_stills_are_the_apps_edits_and_gain_zero_is_the_zeroed_channel(vae, latent):
    s = stills.channel_sliders(vae, latent, positions=3)
    assert [t.name for t in s.tracks] == [f"channel {c} {k}" for k in ("offset", "gain") for c in range(4)]
    unchanged = widgets.render_channels(vae, latent, [1] * 4, [0] * 4)
    for track in s.tracks:
        assert track.values[track.rest] in (0.0, 1.0) and np.array_equal(track.frames[track.rest], unchanged)
        assert all(np.abs(f.astype(int) - unchanged).mean() > 0.5 for i, f in enumerate(track.frames)
                   if i != track.rest), f"{track.name}: an edited frame looks unedited"
    gain2 = s.tracks[4 + 2]  # channel 2's gain: 0, 1, 2
    assert gain2.values == [0.0, 1.0, 2.0]
    zeroed = widgets.render_channels(vae, latent, [1] * 4, [0] * 4, [False, False, True, False])
    assert np.array_equal(gain2.frames[0], zeroed)
    offset1 = s.tracks[1]  # channel 1's offset at its right end: the app's own range, 3 standard deviations
    spread = round(max(latent.std().item(), 0.1) * 3, 1)
    assert offset1.values[-1] == pytest.approx(spread)
    assert np.array_equal(offset1.frames[-1], widgets.render_channels(vae, latent, [1] * 4, [0, spread, 0, 0]))


def test_the_html_holds_each_distinct_frame_once_and_starts_at_rest(vae, latent):
    s = stills.channel_sliders(vae, latent, positions=3)
    html = s.html()
    assert html.count('type="range"') == 8 and html.count('value="1"') == 8  # the middle of 0..2
    payload = _payload(html)
    assert len(payload["frames"]) == 1 + 8 * 2  # the resting picture shared by all eight sliders
    first = payload["tracks"][0]
    assert len(first["index"]) == len(first["captions"]) == 3 and first["rest"] == 1
    shown = re.search(r'class="latentlab-still-frame" src="([^"]+)"', html).group(1)
    assert shown == payload["frames"][first["index"][1]]
    errors = [np.abs(_decoded(shown) - frame).mean() for frame in s.tracks[0].frames]  # JPEG vs each decoded frame
    assert errors[1] < 4 and errors[1] == min(errors)  # close to the picture at rest, closer than to any other frame
    assert "<noscript><img" in html  # the filmstrip where no script runs
    assert "</script>" not in html.split('<script type="application/json">')[1].split("</script>")[0]


def test_the_bundle_is_the_live_app_where_there_is_one_and_the_stills_elsewhere(vae, latent):
    s = stills.channel_sliders(vae, latent, positions=3)
    bundle = s._repr_mimebundle_()
    assert {"text/html", "image/png", "text/plain"} <= bundle.keys()
    assert "application/vnd.jupyter.widget-view+json" not in bundle
    strip = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert strip.height > 8 * 80 and strip.width > 3 * 80  # eight rows of three thumbnails
    app = widgets.interpolation_slider(vae, latent, latent.flip(-1))
    live = stills.interpolation_slider(vae, latent, latent.flip(-1), live=app, positions=3)._repr_mimebundle_()
    assert live["application/vnd.jupyter.widget-view+json"]["model_id"] == app.model_id
    assert "text/html" in live and "image/png" in live


def test_interpolation_stills_run_from_z0_to_z1(vae, latent):
    other = latent.flip(-1)
    s = stills.interpolation_slider(vae, latent, other, positions=3)
    (track,) = s.tracks
    assert track.values == [0.0, 0.25, 0.5, 0.75, 1.0] and track.rest == 2
    def same(a, b):  # the same picture: uint8 pixels equal, up to one level of float rounding in the decode
        return np.abs(a.astype(int) - b.astype(int)).max() <= 1

    assert same(track.frames[0], widgets.decode_image(vae, latent))
    assert same(track.frames[-1], widgets.decode_image(vae, other))
    assert same(track.frames[2], widgets.render_interpolation(vae, latent, other, 0.5, "slerp"))
    assert not same(track.frames[0], track.frames[-1])  # and the two ends differ


def test_noise_stills_follow_the_live_apps_noise_path(vae):
    image = data.load_photo("chelsea", 64)
    abar = diffusion.alphas_cumprod(diffusion.make_betas())
    s = stills.noise_slider(vae, image, abar, seed=3, positions=3)
    (track,) = s.tracks
    assert track.values == [0, 250, 500, 750, 999]  # round timesteps, the last one the schedule's end
    app = widgets.noise_slider(vae, image, abar, seed=3)
    t = next(c for c in app.children[0].children if "latentlab-noise-t" in c._dom_classes)
    t.value = 500
    pixels = next(w for w in _leaves(app) if "latentlab-noised-pixels" in getattr(w, "_dom_classes", ()))
    live = np.asarray(Image.open(io.BytesIO(pixels.value)).convert("RGB"))
    frame = track.frames[2]
    band = frame.shape[0] - 64  # the labels "pixels" and "latent" sit in a white band above the two pictures
    assert np.array_equal(frame[band:, :64], live), "the stills drew other noise than the live app at the same t"
    assert frame.shape == (band + 64, 64 + 8 + 64, 3) and band > 0
    assert (frame[:band, :64] < 128).any() and (frame[:band, 72:] < 128).any(), "each picture needs its label"
    other_seed = stills.noise_slider(vae, image, abar, seed=4, positions=3).tracks[0].frames[2]
    assert not np.array_equal(other_seed, frame)


def _leaves(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _leaves(child)


def test_sampling_stills_show_the_recorded_steps_and_the_full_decode_only_at_the_end():
    from diffusers import DDIMScheduler

    from latentlab.previews import LinearPreview, SamplingPreview, render_frame
    from latentlab.tiny_decoder import TinyDecoder
    from latentlab.vae import VAE, VAEConfig

    class Halving(torch.nn.Module):
        def forward(self, x, t):
            return 0.5 * x

    torch.manual_seed(0)
    vae = VAE(VAEConfig(block_out_channels=(8, 8, 8, 8), norm_num_groups=4)).eval()
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    app = SamplingPreview(Halving(), scheduler, 6, (1, 4, 4, 4), vae, TinyDecoder().eval(),
                          LinearPreview(torch.randn(4, 3), torch.zeros(3)))
    with pytest.raises(InputError, match="call app.run"):
        stills.sampling_preview(app)
    app.run(seed=2)
    (track,) = stills.sampling_preview(app, positions=2).tracks
    assert track.values == [1, 2, 3, 4, 5, 6] and track.rest == 5  # every step (6 <= 3 x 2), resting at the end
    grow = 128 // 32  # 32-pixel samples are enlarged 4x for the labels
    band = track.frames[0].shape[0] - 32 * grow
    noisy, predicted = render_frame(app.frames[2], app.linear, app.tiny, vae.scaling_factor)
    third = track.frames[2][band:]
    assert np.array_equal(third[::grow, : 32 * grow : grow], noisy)  # z_t through the linear map, as the app shows
    assert np.array_equal(third[::grow, 32 * grow + 8 : 64 * grow + 8 : grow], predicted)
    final = np.asarray(Image.open(io.BytesIO(app.final.value)).convert("RGB"))
    assert np.array_equal(track.frames[-1][band:, -32 * grow :: grow][::grow], final)  # the full decode, at the end
    assert (third[:, -32 * grow :] == 255).all()  # and not before it


def test_bad_input_is_one_sentence(vae, latent):
    with pytest.raises(InputError, match="at least 2 positions"):
        stills.channel_sliders(vae, latent, positions=1)
    with pytest.raises(InputError, match="one frame and one caption per value"):
        stills.Stills([stills.Track("t", [0, 1], [np.zeros((2, 2, 3), np.uint8)], ["a", "b"], 0)], "x")
    with pytest.raises(InputError):
        stills.noise_slider(vae, torch.zeros(1, 3, 60, 60), torch.ones(10))

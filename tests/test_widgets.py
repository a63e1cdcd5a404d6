"""The live apps: pure render functions, interpolation math, and slider -> new image wiring (no browser)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from latentlab import widgets
from latentlab.errors import InputError
from latentlab.vae import VAE, VAEConfig


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(block_out_channels=(8, 8), norm_num_groups=4, layers_per_block=1)).eval()  # factor 2
    g = torch.Generator("cpu").manual_seed(0)
    z0 = torch.randn(1, 4, 8, 8, generator=g)
    z1 = torch.randn(1, 4, 8, 8, generator=g)
    return vae, z0, z1


def _decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_edit_channels_gain_offset_zero():
    z = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    out = widgets.edit_channels(z, gains=[1, 2, 0.5], offsets=[0, 1, -1], zeroed=[False, False, True])
    assert torch.equal(out[:, 0], z[:, 0])
    assert torch.equal(out[:, 1], 2 * z[:, 1] + 1)
    assert torch.equal(out[:, 2], torch.zeros_like(z[:, 2]))
    with pytest.raises(InputError, match="per channel"):
        widgets.edit_channels(z, [1, 1], [0, 0, 0])


def test_render_channels_is_the_decoder_of_the_edited_latent(tiny):
    vae, z0, _ = tiny
    same = widgets.render_channels(vae, z0, [1] * 4, [0] * 4)
    assert same.shape == (16, 16, 3) and same.dtype == np.uint8
    with torch.no_grad():
        direct = ((vae.decode(z0)[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(same, direct)
    edited = widgets.render_channels(vae, z0, [1] * 4, [0, 2.0, 0, 0])
    assert np.abs(edited.astype(int) - same.astype(int)).mean() > 1  # a big offset visibly changes the picture
    zeroed = widgets.render_channels(vae, z0, [1] * 4, [0] * 4, [True] * 4)
    assert np.array_equal(zeroed, widgets.render_channels(vae, torch.zeros_like(z0), [1] * 4, [0] * 4))


def test_lerp_and_slerp_endpoints_and_norms():
    g = torch.Generator("cpu").manual_seed(1)
    z0, z1 = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 4, 16, 16, generator=g)
    for method in ("lerp", "slerp"):
        assert torch.allclose(widgets.interpolate(z0, z1, 0.0, method), z0, atol=1e-5)
        assert torch.allclose(widgets.interpolate(z0, z1, 1.0, method), z1, atol=1e-5)
    mid_lerp, mid_slerp = widgets.lerp(z0, z1, 0.5), widgets.slerp(z0, z1, 0.5)
    ends = (z0.norm() + z1.norm()) / 2
    assert mid_lerp.norm() < 0.8 * ends  # two independent Gaussians: the straight midpoint loses ~1/sqrt(2)
    assert abs(mid_slerp.norm() / ends - 1) < 0.05  # the arc keeps the norm
    # slerp between a vector and a scaled rotation of it stays on the arc: same angle to both ends at t=0.5
    a, b = torch.tensor([[1.0, 0.0]]).reshape(1, 2, 1, 1), torch.tensor([[0.0, 1.0]]).reshape(1, 2, 1, 1)
    assert torch.allclose(widgets.slerp(a, b, 0.5).flatten(), torch.tensor([0.5**0.5, 0.5**0.5]), atol=1e-6)
    assert torch.allclose(widgets.slerp(a, a, 0.3), a)  # parallel: falls back to the line
    with pytest.raises(InputError, match="lerp"):
        widgets.interpolate(z0, z1, 0.5, "cubic")
    with pytest.raises(InputError, match="shape"):
        widgets.interpolate(z0, z1[..., :8], 0.5)


def test_channel_sliders_redecode_when_a_slider_moves(tiny):
    vae, z0, _ = tiny
    app = widgets.channel_sliders(vae, z0)
    found = {}

    def walk(w):
        for cls in getattr(w, "_dom_classes", ()):
            found[cls] = w
        for child in getattr(w, "children", ()):
            walk(child)

    walk(app)
    image = found["latentlab-decoded"]
    before = image.value
    assert np.array_equal(_decode_png(before), widgets.render_channels(vae, z0, [1] * 4, [0] * 4))
    found["latentlab-offset-1"].value = found["latentlab-offset-1"].max
    after = image.value
    assert after != before
    expected = widgets.render_channels(vae, z0, [1] * 4, [0, found["latentlab-offset-1"].max, 0, 0])
    assert np.array_equal(_decode_png(after), expected)
    assert "decoded in" in found["latentlab-status"].value
    found["latentlab-zero-2"].value = True
    assert image.value != after


def test_interpolation_slider_redecodes(tiny):
    vae, z0, z1 = tiny
    app = widgets.interpolation_slider(vae, z0, z1)
    t = next(c for c in app.children if "latentlab-interp-t" in c._dom_classes)
    image = next(c for c in app.children if "latentlab-interpolated" in c._dom_classes)
    assert np.array_equal(_decode_png(image.value), widgets.render_interpolation(vae, z0, z1, 0.5, "slerp"))
    t.value = 0.0
    assert np.array_equal(_decode_png(image.value), widgets.render_interpolation(vae, z0, z1, 0.0))
    with pytest.raises(InputError, match="one"):
        widgets.interpolation_slider(vae, torch.cat([z0, z1]), z1)


def test_shrunk_preview_decodes_the_shrunk_latent_at_full_size(tiny):
    vae, z0, _ = tiny
    preview = widgets.ShrunkPreview(vae, scale=2)
    with torch.no_grad():
        full, quick = vae.decode(z0), preview.decode(z0)
        small = vae.decode(torch.nn.functional.avg_pool2d(z0, 2))
    assert quick.shape == full.shape
    # the preview is the decode of the half-size latent, enlarged, and costs a quarter of the decoder's positions
    enlarged = torch.nn.functional.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(quick, enlarged) and small.shape[-1] * 2 == full.shape[-1]
    assert widgets.render_channels(preview, z0, [1] * 4, [0] * 4).shape == widgets.render_channels(
        vae, z0, [1] * 4, [0] * 4).shape
    with pytest.raises(InputError, match="divisible by the preview scale 3"):
        widgets.ShrunkPreview(vae, scale=3).decode(z0)
    with pytest.raises(InputError, match="scale must be"):
        widgets.ShrunkPreview(vae, scale=0)


def test_channel_sliders_preview_then_full_decode_on_release(tiny):
    vae, z0, _ = tiny
    app = widgets.channel_sliders(widgets.ShrunkPreview(vae), z0, release_vae=vae)
    sliders = [c for c in app.children[0].children if hasattr(c, "value") and isinstance(c.value, float)]
    edited = app.children[-1].children[1].children[1]
    before = edited.value
    sliders[1].value = 0.5  # channel 0's offset; no event loop here, so the release decode runs at once
    assert edited.value != before
    assert _decode_png(edited.value).shape == _decode_png(before).shape
    expected = widgets.png_bytes(widgets.render_channels(vae, z0, [1] * 4, [0.5, 0, 0, 0]))
    assert edited.value == expected  # after the release, the full decoder's picture

"""ipywidgets apps that re-decode a latent live: per-channel sliders, and interpolation between two latents.

Each app is a pure `render_*` function (parameters -> uint8 image, testable without a browser) and a
builder that wires sliders to it and returns the widget. The decoded picture is an `ipywidgets.Image`
holding PNG bytes. Interpolation: lerp, and slerp (Shoemake 1985; White 2016, "Sampling Generative
Networks", https://arxiv.org/abs/1609.04468), which keeps the norm that Gaussian latents live at.
Lesson 04 (channel sliders, interpolation), lesson 05 (the noise slider) and lesson 09 (SD's latents).
A little over 300 lines: three apps, each a render function and its sliders, read side by side.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from typing import Literal

import ipywidgets as w
import numpy as np
import torch
from PIL import Image

from latentlab.diffusion import q_sample
from latentlab.errors import InputError
from latentlab.images import check_image, to_numpy
from latentlab.latents import check_latents, scale, unscale

Interpolation = Literal["lerp", "slerp"]


# ---- pure parts: latent edits, interpolation, decoding

def edit_channels(
    latent: torch.Tensor,  # (B, C, h, w)
    gains: Sequence[float],  # one per channel: multiply the channel
    offsets: Sequence[float],  # one per channel: then add a constant
    zeroed: Sequence[bool] | None = None,  # one per channel: True sets the channel to 0
) -> torch.Tensor:
    """z[:, c] -> 0 if zeroed[c] else gains[c] * z[:, c] + offsets[c] -> (B, C, h, w)"""
    channels = latent.shape[1]
    zeroed = zeroed if zeroed is not None else [False] * channels
    if not len(gains) == len(offsets) == len(zeroed) == channels:
        raise InputError(
            f"give one gain, offset and zero flag per channel ({channels}), got {len(gains)}, {len(offsets)}, "
            f"{len(zeroed)}."
        )
    keep = torch.tensor([0.0 if z else 1.0 for z in zeroed], dtype=latent.dtype, device=latent.device)
    gain = torch.tensor(list(gains), dtype=latent.dtype, device=latent.device) * keep
    offset = torch.tensor(list(offsets), dtype=latent.dtype, device=latent.device) * keep
    return latent * gain[None, :, None, None] + offset[None, :, None, None]


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """(1 - t) z0 + t z1: a straight line; halfway between two Gaussian samples the norm shrinks by ~1/sqrt(2)"""
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float, eps: float = 1e-6) -> torch.Tensor:
    """spherical interpolation along the arc between z0 and z1 (each latent taken as one long vector)"""
    a, b = z0.flatten(1).double(), z1.flatten(1).double()  # (B, N)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)
    theta = torch.arccos(cos.clamp(-1, 1))[:, None]  # (B, 1): angle between the two latents
    if (theta.abs() < eps).all():
        return lerp(z0, z1, t)  # (anti)parallel vectors: the arc is a line
    sin = torch.sin(theta).clamp_min(eps)
    out = torch.sin((1 - t) * theta) / sin * a + torch.sin(t * theta) / sin * b
    return out.reshape(z0.shape).to(z0.dtype)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, t: float, method: Interpolation = "slerp") -> torch.Tensor:
    """latent between z0 (t=0) and z1 (t=1) by lerp or slerp"""
    if z0.shape != z1.shape:
        raise InputError(f"the two latents differ in shape, {tuple(z0.shape)} vs {tuple(z1.shape)}; encode images of "
                         "the same size.")
    if method not in ("lerp", "slerp"):
        raise InputError(f"method must be 'lerp' or 'slerp', not {method!r}.")
    return lerp(z0, z1, t) if method == "lerp" else slerp(z0, z1, t)


@torch.inference_mode()
def decode_image(vae, latent: torch.Tensor) -> np.ndarray:
    """latent (1, C, h, w) -> uint8 image (H, W, 3) through vae.decode (course VAE or diffusers AutoencoderKL)"""
    out = vae.decode(latent)
    out = getattr(out, "sample", out)  # diffusers returns DecoderOutput(sample=...)
    return to_numpy(out[0].float().clamp(-1, 1))


class ShrunkPreview:
    """A quick stand-in decoder for live previews: decodes the latent shrunk `scale` times and enlarges the result.

    The decoder's work falls with the number of latent positions, so scale 2 costs about a quarter of a full
    decode; the picture is blurrier (a VAE's latent is itself a small image of the scene, so a shrunk latent
    decodes to a smaller version of the same picture). Meant for `channel_sliders(..., release_vae=vae)`: the
    preview follows the slider, the full decoder redraws once the slider rests.
    """

    def __init__(self, vae, scale: int = 2):
        if scale < 1:
            raise InputError(f"scale must be a whole number >= 1, not {scale}.")
        self.vae, self.scale = vae, int(scale)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        if latent.shape[-1] % self.scale or latent.shape[-2] % self.scale:
            raise InputError(f"the latent's size {tuple(latent.shape[-2:])} must be divisible by the preview scale "
                             f"{self.scale}; use scale 1 (a full decode) for this latent.")
        out = self.vae.decode(torch.nn.functional.avg_pool2d(latent, self.scale))
        out = getattr(out, "sample", out)
        return torch.nn.functional.interpolate(out, scale_factor=self.scale, mode="bilinear", align_corners=False)


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes for an ipywidgets.Image (fast compression: it is redrawn on every move)"""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def render_channels(vae, latent: torch.Tensor, gains, offsets, zeroed=None) -> np.ndarray:
    """edit the latent's channels, decode -> uint8 (H, W, 3); what the channel-slider app shows"""
    return decode_image(vae, edit_channels(latent, gains, offsets, zeroed))


def render_interpolation(vae, z0: torch.Tensor, z1: torch.Tensor, t: float, method: Interpolation = "slerp"):
    """decode the latent at t between z0 and z1 -> uint8 (H, W, 3); what the interpolation app shows"""
    return decode_image(vae, interpolate(z0, z1, t, method))


def _check_one_latent(latent: torch.Tensor, name: str) -> torch.Tensor:
    """one latent, (C, h, w) or (1, C, h, w) -> (1, C, h, w): latents.check_latents, and the apps show one"""
    latent = latent[None] if isinstance(latent, torch.Tensor) and latent.ndim == 3 else latent
    check_latents(latent, name=name)
    if latent.shape[0] != 1:
        raise InputError(f"{name} holds {latent.shape[0]} latents; the app shows one, pass {name}[:1].")
    return latent.detach()


# ---- the apps

def channel_sliders(vae, latent: torch.Tensor, width: int = 256, release_vae=None, release_after_s: float = 0.5):
    """App: gain, offset and a zero box per latent channel; the decoded image updates on every move.

    Args:
        vae: anything with decode(latent) -> image, e.g. latentlab.checkpoints.load_course_vae().
        latent: one latent (1, C, h, w), unscaled (as vae.encode gives it).
        width: display width of the images in pixels.
        release_vae: optional slower, better decoder of the same latents (e.g. SD's VAE, with TAESD as `vae`):
            `vae` draws the live preview while a slider moves, release_vae redraws once the sliders rest.
        release_after_s: how long the sliders must rest before release_vae decodes.
    """
    latent = _check_one_latent(latent, "latent")
    channels = latent.shape[1]
    spread = round(max(latent.std().item(), 0.1) * 3, 1)  # offsets span about 3 standard deviations
    layout = w.Layout(width="230px")
    step = round(spread / 30, 3) or 0.01
    gains = [w.FloatSlider(1.0, min=-2.0, max=3.0, step=0.1, description="gain", layout=layout)
             for _ in range(channels)]
    offsets = [w.FloatSlider(0.0, min=-spread, max=spread, step=step, description="offset", layout=layout)
               for _ in range(channels)]
    zeros = [w.Checkbox(False, description="zero it", indent=False, layout=w.Layout(width="80px"))
             for _ in range(channels)]
    original = w.Image(value=png_bytes(decode_image(release_vae or vae, latent)), format="png", width=width)
    edited = w.Image(value=original.value, format="png", width=width)
    status = w.Label("move a slider: the image is decoded again from the edited latent")
    reset = w.Button(description="reset", icon="undo", layout=w.Layout(width="100px"))
    for c in range(channels):
        gains[c].add_class(f"latentlab-gain-{c}")
        offsets[c].add_class(f"latentlab-offset-{c}")
        zeros[c].add_class(f"latentlab-zero-{c}")
    edited.add_class("latentlab-decoded")
    status.add_class("latentlab-status")

    def edits() -> tuple[list[float], list[float], list[bool]]:
        return [g.value for g in gains], [o.value for o in offsets], [z.value for z in zeros]

    pending: list[asyncio.TimerHandle] = []  # the release decode, waiting for the sliders to rest

    def settle() -> None:
        start = time.perf_counter()
        edited.value = png_bytes(render_channels(release_vae, latent, *edits()))
        status.value += f"; on release {1000 * (time.perf_counter() - start):.0f} ms"

    def settle_later() -> None:
        for handle in pending:
            handle.cancel()
        pending.clear()
        try:
            loop = asyncio.get_running_loop()  # the kernel's loop, which delivers the slider moves
        except RuntimeError:  # no loop (a script or a test): decode at once
            settle()
            return
        pending.append(loop.call_later(release_after_s, settle))

    def update(_change=None) -> None:
        start = time.perf_counter()
        image = render_channels(vae, latent, *edits())
        edited.value = png_bytes(image)
        status.value = f"decoded in {1000 * (time.perf_counter() - start):.0f} ms"
        if release_vae is not None:
            settle_later()

    def on_reset(_button) -> None:
        for c in range(channels):
            with gains[c].hold_trait_notifications(), offsets[c].hold_trait_notifications():
                gains[c].value, offsets[c].value, zeros[c].value = 1.0, 0.0, False
        update()

    for control in (*gains, *offsets, *zeros):
        control.observe(update, names="value")
    reset.on_click(on_reset)
    rows = [w.HBox([w.Label(f"channel {c}", layout=w.Layout(width="70px")), gains[c], offsets[c], zeros[c]])
            for c in range(channels)]
    pictures = w.HBox([w.VBox([w.Label("decoded as encoded"), original]), w.VBox([w.Label("decoded after your edit"),
                                                                                  edited])])
    app = w.VBox([*rows, w.HBox([reset, status]), pictures])
    app.add_class("latentlab-channel-sliders")
    return app


def interpolation_slider(vae, z0: torch.Tensor, z1: torch.Tensor, width: int = 256):
    """App: a t slider from z0 to z1 and a lerp / slerp switch; decodes the latent in between on every move."""
    z0, z1 = _check_one_latent(z0, "z0"), _check_one_latent(z1, "z1")
    interpolate(z0, z1, 0.0)  # checks the shapes match
    t = w.FloatSlider(0.5, min=0.0, max=1.0, step=0.05, description="t", layout=w.Layout(width="400px"))
    method = w.ToggleButtons(options=["lerp", "slerp"], value="slerp", description="path")
    image = w.Image(format="png", width=width)
    status = w.Label()
    t.add_class("latentlab-interp-t")
    image.add_class("latentlab-interpolated")
    norm0, norm1 = z0.norm().item(), z1.norm().item()

    def update(_change=None) -> None:
        start = time.perf_counter()
        z = interpolate(z0, z1, t.value, method.value)
        image.value = png_bytes(decode_image(vae, z))
        status.value = (f"|z(t)| = {z.norm().item():.1f} (|z0| = {norm0:.1f}, |z1| = {norm1:.1f}), "
                        f"decoded in {1000 * (time.perf_counter() - start):.0f} ms")

    t.observe(update, names="value")
    method.observe(update, names="value")
    update()
    app = w.VBox([t, method, image, status])
    app.add_class("latentlab-interpolation")
    return app


# ---- forward diffusion: one t slider, pixel space and latent space side by side (lesson 05)

def render_noising(
    vae,
    x0: torch.Tensor,  # (1, 3, H, W) image in [-1, 1]
    z0: torch.Tensor,  # (1, 4, H/8, W/8) its latent, scaled: latents.scale(raw, vae.scaling_factor)
    t: int,
    alphas_cumprod: torch.Tensor,  # (T,) of the noise schedule
    pixel_noise: torch.Tensor,  # fixed N(0, I) draws, shaped like x0 and z0
    latent_noise: torch.Tensor,
) -> tuple[np.ndarray, np.ndarray]:
    """q(x_t | x_0) at one t in pixels and in latents -> (x_t, decode(unscale(z_t))) as uint8 images"""
    x_t = q_sample(x0, t, pixel_noise, alphas_cumprod)
    z_t = q_sample(z0, t, latent_noise, alphas_cumprod)
    return to_numpy(x_t[0].clamp(-1, 1)), decode_image(vae, unscale(z_t, vae.scaling_factor))


def noise_slider(vae, image: torch.Tensor, alphas_cumprod: torch.Tensor, seed: int = 0, width: int = 256):
    """App: a timestep slider (and play button) noising an image in pixel space and in the VAE's latent space.

    Args:
        vae: the course VAE (or anything with encode(x).mode(), decode(z) and scaling_factor).
        image: one image (1, 3, H, W) in [-1, 1], H and W multiples of 8.
        alphas_cumprod: (T,) alpha_bar of the schedule, e.g. diffusion.alphas_cumprod(diffusion.make_betas()).
        seed: the noise is drawn once from this seed, so moving t shows one noising path.
        width: display width of each picture in pixels.
    """
    check_image(image, name="image", multiple_of=8)
    if image.shape[0] != 1:
        raise InputError(f"image holds {image.shape[0]} pictures; the app shows one, pass image[:1].")
    with torch.inference_mode():
        z0 = scale(vae.encode(image).mode(), vae.scaling_factor)  # (1, 4, H/8, W/8), about unit variance
    g = torch.Generator().manual_seed(seed)
    pixel_noise = torch.randn(image.shape, generator=g)
    latent_noise = torch.randn(z0.shape, generator=g).to(z0)
    steps = len(alphas_cumprod)
    t = w.IntSlider(0, min=0, max=steps - 1, step=max(1, steps // 100), description="t",
                    continuous_update=True, layout=w.Layout(width="420px"))
    play = w.Play(value=0, min=0, max=steps - 1, step=max(1, steps // 50), interval=150, description="play")
    w.jslink((play, "value"), (t, "value"))
    pixels = w.Image(format="png", width=width)
    decoded = w.Image(format="png", width=width)
    status = w.Label()
    t.add_class("latentlab-noise-t")
    pixels.add_class("latentlab-noised-pixels")
    decoded.add_class("latentlab-noised-latent")

    def update(_change=None) -> None:
        x_img, z_img = render_noising(vae, image, z0, t.value, alphas_cumprod, pixel_noise, latent_noise)
        pixels.value, decoded.value = png_bytes(x_img), png_bytes(z_img)
        a = float(alphas_cumprod[t.value])
        status.value = (f"alpha_bar = {a:.4f}: signal x {a ** 0.5:.3f} + noise x {(1 - a) ** 0.5:.3f}, "
                        f"SNR = {a / (1 - a):.3g}")

    t.observe(update, names="value")
    update()
    pictures = w.HBox([w.VBox([w.Label("noised in pixel space: x_t"), pixels]),
                       w.VBox([w.Label("noised in latent space, decoded: D(z_t)"), decoded])])
    app = w.VBox([w.HBox([play, t]), status, pictures])
    app.add_class("latentlab-noise-slider")
    return app

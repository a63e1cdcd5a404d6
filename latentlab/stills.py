"""The slider apps as still frames, for pages read without a kernel: a plain range input switches precomputed pictures.

The apps in `widgets` decode on every move and need a running kernel; a rendered page (the course site, `make
site`) has none. Each function here decodes what its app would show at a handful of slider positions and returns
`Stills`. Shown in JupyterLab with `live=app`, the output is the live app itself; a page rendered without a kernel
shows the frames instead, one HTML range input per slider and a few lines of JavaScript (no server), and where no
script runs, a filmstrip of every frame. Lesson 04 (channel sliders, interpolation), lesson 05 (the noise slider),
lesson 08 (a sample forming, from the sampling preview's recorded steps), lesson 09 (the channel sliders on SD's
latents).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from latentlab import mode, widgets
from latentlab.errors import InputError
from latentlab.images import check_image
from latentlab.latents import scale, unscale

JPEG_QUALITY = 85  # frames are photos: JPEG keeps a page of them in hundreds of kB where PNG takes MB


@dataclass
class Track:
    """one slider: its label, the values it stops at, what the picture shows at each, and where it starts"""

    name: str  # the slider's label, e.g. "channel 0 offset"
    values: list[float]  # the positions, left to right
    frames: list[np.ndarray]  # uint8 (H, W, 3), one per value
    captions: list[str]  # one line under the picture, one per value
    rest: int  # the position it starts at (and returns to when another slider moves)


def _data_uri(frame: np.ndarray, fmt: str = "jpeg") -> str:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=fmt, quality=JPEG_QUALITY)
    return f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode()


class Stills:
    """precomputed frames of one app: HTML with range inputs, a filmstrip PNG, and the live app when there is one"""

    def __init__(self, tracks: list[Track], title: str, live=None, width: int = 256):
        if not tracks or any(len(t.values) != len(t.frames) or len(t.values) != len(t.captions) or
                             not 0 <= t.rest < len(t.values) for t in tracks):
            raise InputError("each track needs one frame and one caption per value, and a rest position among them.")
        self.tracks, self.title, self.live, self.width = tracks, title, live, width

    def html(self) -> str:
        """a figure, one range input per track, its caption; a few lines of JavaScript swap the frames"""
        uris: list[str] = []  # each distinct frame once: the tracks share their resting picture
        index = []
        for track in self.tracks:
            index.append([])
            for frame in track.frames:
                uri = _data_uri(frame)
                if uri not in uris:
                    uris.append(uri)
                index[-1].append(uris.index(uri))
        data = {"frames": uris, "tracks": [{"index": i, "captions": t.captions, "rest": t.rest}
                                           for i, t in zip(index, self.tracks)]}
        uid = "latentlab-still-" + hashlib.sha1("".join(uris).encode()).hexdigest()[:10]
        first = self.tracks[0]
        inputs = "".join(
            f'<label style="display:block">{html.escape(t.name)} '
            f'<input type="range" min="0" max="{len(t.values) - 1}" step="1" value="{t.rest}" '
            f'aria-label="{html.escape(t.name)}"> <small>{t.values[0]:g} … {t.values[-1]:g}</small></label>'
            for t in self.tracks)
        payload = json.dumps(data).replace("</", "<\\/")
        return (
            f'<div class="latentlab-still" id="{uid}">'
            f'<p><b>{html.escape(self.title)}</b> <small>(still frames: move a slider, no kernel needed)</small></p>'
            f'{inputs}'
            f'<img class="latentlab-still-frame" src="{uris[index[0][first.rest]]}" width="{self.width}" '
            f'alt="{html.escape(self.title)}">'
            f'<div class="latentlab-still-caption">{html.escape(first.captions[first.rest])}</div>'
            f'<noscript><img src="{_data_uri(self.filmstrip())}" alt="every frame of {html.escape(self.title)}">'
            f'</noscript>'
            f'<script type="application/json">{payload}</script></div>'
            f'<script>(function () {{'
            f'var root = document.getElementById("{uid}");'
            f'var data = JSON.parse(root.querySelector("script[type=\'application/json\']").textContent);'
            f'var img = root.querySelector("img.latentlab-still-frame");'
            f'var caption = root.querySelector(".latentlab-still-caption");'
            f'var inputs = root.querySelectorAll("input[type=range]");'
            f'inputs.forEach(function (input, k) {{ input.addEventListener("input", function () {{'
            f'  inputs.forEach(function (other, j) {{ if (j !== k) other.value = data.tracks[j].rest; }});'
            f'  var track = data.tracks[k], at = Number(input.value);'
            f'  img.src = data.frames[track.index[at]]; caption.textContent = track.captions[at];'
            f'}}); }});'
            f'}})();</script>'
        )

    def filmstrip(self, thumb: int = 80) -> np.ndarray:
        """every frame at thumbnail height (its shape kept), one row per track, its name on the left -> uint8 (H, W, 3)"""
        label_w, gap, columns = 110, 4, max(len(t.values) for t in self.tracks)
        wide = max(round(f.shape[1] * thumb / f.shape[0]) for t in self.tracks for f in t.frames)  # a frame's width
        sheet = Image.new("RGB", (label_w + columns * (wide + gap), len(self.tracks) * (thumb + 16 + gap)), "white")
        draw = ImageDraw.Draw(sheet)
        for row, track in enumerate(self.tracks):
            top = row * (thumb + 16 + gap)
            draw.text((4, top + thumb // 2), track.name, fill="black")
            for col, (value, frame) in enumerate(zip(track.values, track.frames)):
                left = label_w + col * (wide + gap)
                size = (round(frame.shape[1] * thumb / frame.shape[0]), thumb)
                sheet.paste(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS), (left, top))
                draw.text((left + 2, top + thumb + 2), f"{value:g}", fill="black")
        return np.asarray(sheet)

    def _repr_mimebundle_(self, include=None, exclude=None):
        buffer = io.BytesIO()
        Image.fromarray(self.filmstrip()).save(buffer, format="png", optimize=True)
        frames = sum(len(t.frames) for t in self.tracks)
        bundle = {
            "text/plain": f"{self.title}: {frames} still frames over {len(self.tracks)} slider(s)",
            "text/html": self.html(),
            "image/png": base64.b64encode(buffer.getvalue()).decode(),
        }
        if self.live is not None:  # JupyterLab draws the live app; a page without a kernel picks the html or png
            bundle.update(self.live._repr_mimebundle_() or {})
        return bundle


def _positions(n: int | None) -> int:
    n = n if n is not None else mode.by_mode(full=5, quick=3)
    if n < 2:
        raise InputError(f"a still slider needs at least 2 positions, not {n}.")
    return int(n)


def channel_sliders(vae, latent: torch.Tensor, live=None, positions: int | None = None, width: int = 256) -> Stills:
    """`widgets.channel_sliders` as stills: each channel's offset, then its gain, one slider each (0 gain = zeroed)"""
    latent = widgets._check_one_latent(latent, "latent")
    n = _positions(positions) | 1  # odd: the middle position is the unchanged latent
    spread = round(max(latent.std().item(), 0.1) * 3, 1)  # the live app's offset range
    channels = latent.shape[1]
    unchanged = widgets.render_channels(vae, latent, [1.0] * channels, [0.0] * channels)
    tracks = []
    for kind, values in [("offset", np.linspace(-spread, spread, n)), ("gain", 1.0 + np.arange(n) - n // 2)]:
        for c in range(channels):
            frames, captions = [], []
            for v in map(float, values):
                gains, offsets = [1.0] * channels, [0.0] * channels
                (gains if kind == "gain" else offsets)[c] = v
                edited = (gains, offsets) != ([1.0] * channels, [0.0] * channels)
                frames.append(widgets.render_channels(vae, latent, gains, offsets) if edited else unchanged)
                captions.append(f"channel {c} {kind} {v:+.2f}" + ("" if edited else " (as encoded)"))
            tracks.append(Track(f"channel {c} {kind}", [round(float(v), 2) for v in values], frames, captions, n // 2))
    return Stills(tracks, "channel sliders", live, width)


def interpolation_slider(vae, z0: torch.Tensor, z1: torch.Tensor, live=None, positions: int | None = None,
                         width: int = 256) -> Stills:
    """`widgets.interpolation_slider` as stills: t from z0 to z1 along slerp (the app's default path)"""
    z0, z1 = widgets._check_one_latent(z0, "z0"), widgets._check_one_latent(z1, "z1")
    ts = np.linspace(0.0, 1.0, _positions(positions) * 2 - 1)  # finer than the channels: one slider only
    frames = [widgets.render_interpolation(vae, z0, z1, float(t), "slerp") for t in ts]
    captions = [f"slerp t = {t:.2f}" for t in ts]
    return Stills([Track("t", [round(float(t), 2) for t in ts], frames, captions, len(ts) // 2)],
                  "interpolation", live, width)


def _labelled(panels: list[np.ndarray], labels: list[str], gap: int = 8, band: int = 14) -> np.ndarray:
    """pictures side by side, `gap` white pixels apart, each with its label in a white band above -> uint8 (H, W, 3)"""
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    sheet = Image.new("RGB", (width, band + height), "white")
    draw, left = ImageDraw.Draw(sheet), 0
    for panel, label in zip(panels, labels):
        sheet.paste(Image.fromarray(panel), (left, band))
        draw.text((left + 2, 1), label, fill="black")
        left += panel.shape[1] + gap
    return np.asarray(sheet)


def _round_steps(steps: int, n: int) -> np.ndarray:
    """n timesteps from 0 to steps - 1 at round values (0, 125, 250, ..., 999 for 1000 steps and 9 positions)"""
    return np.minimum(np.linspace(0, steps, n).round().astype(int), steps - 1)


def noise_slider(vae, image: torch.Tensor, alphas_cumprod: torch.Tensor, seed: int = 0, live=None,
                 positions: int | None = None, width: int = 256) -> Stills:
    """`widgets.noise_slider` as stills: x_t beside D(z_t) at a few timesteps, from the app's own seeded noise"""
    check_image(image, name="image", multiple_of=8)
    with torch.inference_mode():
        z0 = scale(vae.encode(image[:1]).mode(), vae.scaling_factor)  # (1, 4, H/8, W/8), as in the app
    g = torch.Generator().manual_seed(seed)  # the same draws, in the same order, as widgets.noise_slider
    pixel_noise = torch.randn(image[:1].shape, generator=g)
    latent_noise = torch.randn(z0.shape, generator=g).to(z0)
    steps = len(alphas_cumprod)
    ts = _round_steps(steps, _positions(positions) * 2 - 1)
    frames, captions = [], []
    for t in map(int, ts):
        x_img, z_img = widgets.render_noising(vae, image[:1], z0, t, alphas_cumprod, pixel_noise, latent_noise)
        frames.append(_labelled([x_img, z_img], ["pixels", "latent"]))  # pixel space | latent space, decoded
        a = float(alphas_cumprod[t])
        captions.append(f"t = {t}: alpha_bar = {a:.4f}, SNR = {a / max(1 - a, 1e-12):.3g} "
                        "(left: noised in pixel space, x_t; right: noised in latent space, decoded, D(z_t))")
    return Stills([Track("t", [int(t) for t in ts], frames, captions, 0)], "forward diffusion", live, 2 * width + 8)



def sampling_preview(app, live=None, positions: int | None = None) -> Stills:
    """`previews.SamplingPreview` after `run()` as stills: its recorded steps three ways, the full decode at the end"""
    from latentlab.previews import render_frame  # here: previews imports the widgets this module needs first

    if not getattr(app, "frames", None):
        raise InputError("the sampling preview has no steps yet; call app.run() before making its stills.")
    n = min(len(app.frames), _positions(positions) * 3)
    picks = sorted({int(i) for i in np.linspace(0, len(app.frames) - 1, n).round()})
    final = widgets.decode_image(app.vae, unscale(app.frames[-1].noisy, app.vae.scaling_factor))
    grow = max(1, 128 // final.shape[1])  # small samples are enlarged (nearest) so the labels fit above them
    frames, captions = [], []
    for i in picks:
        noisy, predicted = render_frame(app.frames[i], app.linear, app.tiny, app.vae.scaling_factor)
        end = final if i == len(app.frames) - 1 else np.full_like(final, 255)  # the live app's empty panel
        panels = [np.asarray(Image.fromarray(p).resize((p.shape[1] * grow, p.shape[0] * grow), Image.Resampling.NEAREST))
                  for p in (noisy, predicted, end)]
        frames.append(_labelled(panels, ["z_t, linear map", "predicted z_0, tiny", "full decode"]))
        captions.append(f"step {i + 1} of {len(app.frames)}: t = {app.frames[i].t}")
    track = Track("step", [i + 1 for i in picks], frames, captions, len(picks) - 1)
    return Stills([track], "a sample forming", live, frames[0].shape[1])

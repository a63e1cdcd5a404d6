"""Watching latents become pictures: three ways to preview a latent, and an app that shows a sample forming.

Cheapest first, as image generators show their progress: the linear 4 -> 3 map of lesson 04 (viz.fit_latent_rgb,
one colour per latent position, enlarged), a tiny decoder distilled from the real one (latentlab.tiny_decoder),
and the full decoder. Each is wrapped to the same `decode(latent) -> image` so they can be swapped anywhere a VAE
decodes. `SamplingPreview` runs a diffusers scheduler one step at a time and shows, after each step, the noisy
latent through the linear map and the predicted clean latent through the tiny decoder, the full decode at the end,
and a slider to scrub back through the steps. Lessons 04 (the three side by side) and 08 (previews while sampling).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import ipywidgets as w
import numpy as np
import torch
import torch.nn.functional as F

from latentlab.diffusion import sample
from latentlab.errors import InputError
from latentlab.latents import check_latents, unscale
from latentlab.viz import fit_latent_rgb, latent_to_rgb
from latentlab.widgets import decode_image, png_bytes


class LinearPreview:
    """The linear 4 -> 3 map as a decoder: each latent position's colour, enlarged `factor` times (no detail)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, factor: int = 8):
        self.weight, self.bias, self.factor = weight, bias, int(factor)

    @classmethod
    def fit(cls, vae, images: torch.Tensor) -> LinearPreview:
        """fit the map by least squares on `images` (B, 3, H, W) and their latents under vae.encode"""
        with torch.no_grad():
            latents = vae.encode(images).mode()
        return cls(*fit_latent_rgb(latents, images), factor=images.shape[-1] // latents.shape[-1])

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """raw latent (B, 4, h, w) -> (B, 3, 8h, 8w): z W + b at each position, blown up (nearest)"""
        return F.interpolate(latent_to_rgb(latent, self.weight, self.bias), scale_factor=self.factor, mode="nearest")


@dataclass
class Frame:
    """one sampler step: its timestep, the noisy latent x_{t-1} and the predicted clean latent, both scaled"""

    t: int
    noisy: torch.Tensor  # (1, 4, h, w)
    predicted: torch.Tensor  # (1, 4, h, w)


def render_frame(frame: Frame, linear, tiny, scaling_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """a step -> (the noisy latent through the linear map, the predicted clean latent through the tiny decoder)"""
    return (decode_image(linear, unscale(frame.noisy, scaling_factor)),
            decode_image(tiny, unscale(frame.predicted, scaling_factor)))


class SamplingPreview:
    """App: sample one latent step by step, showing its progress three ways; a slider scrubs back afterwards.

    Args:
        model: the denoiser, (x_t, t) -> predicted noise (a latentlab UNet).
        scheduler: a diffusers scheduler, e.g. DDIMScheduler with the model's noise schedule.
        steps: sampler steps.
        shape: one latent's shape (1, 4, h, w), in the denoiser's (scaled) units.
        vae: the full decoder of those latents (its scaling_factor unscales them).
        tiny: the quick decoder for the predicted clean latent (e.g. checkpoints.load_tiny_decoder()).
        linear: the cheapest preview for the noisy latent (a LinearPreview).
    Display `.app` (the widget), then call `run(seed)` to sample: the pictures change after every step.
    """

    def __init__(self, model, scheduler, steps: int, shape: tuple[int, ...], vae, tiny, linear, width: int = 192):
        if len(shape) != 4 or shape[0] != 1:
            raise InputError(f"shape must be one latent (1, C, h, w), not {tuple(shape)}.")
        self.model, self.scheduler, self.steps, self.shape = model, scheduler, steps, tuple(shape)
        self.vae, self.tiny, self.linear = vae, tiny, linear
        self.frames: list[Frame] = []
        self.timings: dict[str, list[float]] = {"linear": [], "tiny": [], "full": []}
        self.noisy, self.predicted, self.final = (w.Image(format="png", width=width) for _ in range(3))
        self.step = w.IntSlider(0, min=0, max=0, description="step", disabled=True, layout=w.Layout(width="420px"))
        self.button = w.Button(description="sample", icon="play", layout=w.Layout(width="110px"))
        self.status = w.Label("press sample: the pictures change after every step")
        for widget, name in [(self.noisy, "noisy"), (self.predicted, "predicted"), (self.final, "final"),
                             (self.step, "step"), (self.button, "run"), (self.status, "status")]:
            widget.add_class(f"latentlab-sampling-{name}")
        self.step.observe(self._scrub, names="value")
        self.button.on_click(lambda _button: self.run())
        pictures = w.HBox([w.VBox([w.Label("noisy latent, linear map"), self.noisy]),
                           w.VBox([w.Label("predicted clean latent, tiny decoder"), self.predicted]),
                           w.VBox([w.Label("the end, full decoder"), self.final])])
        self.app = w.VBox([w.HBox([self.button, self.step]), self.status, pictures])
        self.app.add_class("latentlab-sampling-preview")
        self.seed = 0

    def _show(self, frame: Frame) -> None:
        noisy, predicted = render_frame(frame, self.linear, self.tiny, self.vae.scaling_factor)
        self.noisy.value, self.predicted.value = png_bytes(noisy), png_bytes(predicted)

    def _scrub(self, change) -> None:
        if self.frames and not self.step.disabled:
            frame = self.frames[change["new"]]
            self._show(frame)
            self.status.value = f"step {change['new'] + 1} of {len(self.frames)}: t = {frame.t}"

    def run(self, seed: int | None = None) -> torch.Tensor:
        """sample one latent, redrawing after every step, then decode it in full -> the image (1, 3, H, W)"""
        self.seed = self.seed + 1 if seed is None else seed
        self.frames.clear()
        self.step.disabled, self.button.disabled = True, True

        def after_step(t: int, x: torch.Tensor, x0: torch.Tensor) -> None:
            check_latents(x, name="sampler state")
            self.frames.append(Frame(t, x[:1].clone(), x0[:1].clone()))
            start = time.perf_counter()
            self.noisy.value = png_bytes(decode_image(self.linear, unscale(x[:1], self.vae.scaling_factor)))
            middle = time.perf_counter()
            self.predicted.value = png_bytes(decode_image(self.tiny, unscale(x0[:1], self.vae.scaling_factor)))
            self.timings["linear"].append(middle - start)
            self.timings["tiny"].append(time.perf_counter() - middle)
            self.step.max = self.step.value = len(self.frames) - 1
            self.status.value = f"step {len(self.frames)} of {self.steps}: t = {t}"

        try:
            z = sample(self.model, self.shape, self.scheduler, self.steps,
                       generator=torch.Generator().manual_seed(self.seed), callback=after_step)
            start = time.perf_counter()
            image = decode_image(self.vae, unscale(z, self.vae.scaling_factor))
            self.timings["full"].append(time.perf_counter() - start)
            self.final.value = png_bytes(image)
        finally:
            self.step.disabled, self.button.disabled = False, False
        ms = {k: 1000 * float(np.median(v)) for k, v in self.timings.items() if v}
        self.status.value = (f"{len(self.frames)} steps; a preview took {ms['linear']:.1f} ms (linear) and "
                             f"{ms['tiny']:.0f} ms (tiny), the full decode {ms['full']:.0f} ms: move the slider")
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1

"""Denoising diffusion: noise schedules, the closed-form forward process, the reverse step and sampling loops.

Lessons 05 and 08 (and 07's timed loop). Follows DDPM (Ho et al. 2020, https://arxiv.org/abs/2006.11239):
the forward process q(x_t | x_0) in closed form (eq. 4), the posterior q(x_{t-1} | x_t, x_0) (eq. 6-7), x_0
from predicted noise (eq. 15) and the simple noise-prediction loss (eq. 14, Algorithm 1); DDIM's deterministic
step (Song et al. 2021, https://arxiv.org/abs/2010.02502, eq. 12); the cosine schedule of Nichol & Dhariwal
2021 (https://arxiv.org/abs/2102.09672, eq. 17). `sample` runs the DDPM loop itself or any diffusers
scheduler (DDPMScheduler, DDIMScheduler) with the same model; a class-conditional model is trained with some labels
dropped and sampled with classifier-free guidance (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598, Alg. 1-2).
Longer than 300 lines (some 350): schedules, forward process, reverse step and loops with guidance, in the
order the papers give them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from latentlab.errors import InputError

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]  # the names diffusers uses

# Stable Diffusion 1.x's noise schedule, as in its scheduler_config.json: the one place these numbers are written
SD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


# ---- schedules: how much noise each of the T steps adds


def linear_beta_schedule(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """(T,) betas rising linearly from beta_start to beta_end (Ho et al. 2020, Sec. 4)."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)


def scaled_linear_beta_schedule(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """(T,) betas whose square roots rise linearly: Stable Diffusion's schedule (Rombach et al. 2022)."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2


def cosine_beta_schedule(num_train_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """(T,) betas that make alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi/2) (Nichol & Dhariwal 2021, eq. 17)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    T = num_train_timesteps
    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float32)


def make_betas(
    beta_schedule: BetaSchedule = "linear",
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,  # diffusers' defaults; Stable Diffusion uses scaled_linear, 0.00085 to 0.012
    beta_end: float = 0.02,
) -> torch.Tensor:
    """(T,) betas exactly as `diffusers.DDPMScheduler(beta_schedule=..., ...)` builds them."""
    if beta_schedule == "linear":
        return linear_beta_schedule(num_train_timesteps, beta_start, beta_end)
    if beta_schedule == "scaled_linear":
        return scaled_linear_beta_schedule(num_train_timesteps, beta_start, beta_end)
    if beta_schedule == "squaredcos_cap_v2":
        return cosine_beta_schedule(num_train_timesteps)
    raise InputError(f"unknown beta_schedule {beta_schedule!r}; use 'linear', 'scaled_linear' or 'squaredcos_cap_v2'.")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """(T,) betas -> (T,) alpha_bar_t = prod_{s<=t} (1 - beta_s), the signal kept after t steps (Ho eq. 4)."""
    return torch.cumprod(1.0 - betas, dim=0)


def signal_to_noise(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """(T,) alpha_bar -> (T,) SNR(t) = alpha_bar / (1 - alpha_bar), the signal-to-noise power ratio of x_t."""
    return alphas_cumprod / (1.0 - alphas_cumprod)


# ---- the forward process q(x_t | x_0)


def _check_timesteps(t: torch.Tensor, num_train_timesteps: int) -> None:
    if t.dtype.is_floating_point and not torch.equal(t, t.round()):
        raise InputError(f"timesteps must be whole numbers from 0 to {num_train_timesteps - 1}, not {t.tolist()}.")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_train_timesteps):
        bad = int(t.max()) if int(t.max()) >= num_train_timesteps else int(t.min())
        raise InputError(f"timestep {bad} is out of range; the schedule has {num_train_timesteps} steps, so use "
                         f"0 to {num_train_timesteps - 1}.")


def _batch_timesteps(t: torch.Tensor | int, batch: int, num_train_timesteps: int, device: torch.device) -> torch.Tensor:
    """int or (B,) -> (B,) long timesteps, checked"""
    t = torch.as_tensor(t, device=device)
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim != 1 or t.shape[0] != batch:
        raise InputError(f"timesteps have shape {tuple(t.shape)} but the batch has {batch} samples; pass one "
                         f"timestep or {batch} of them.")
    _check_timesteps(t, num_train_timesteps)
    return t.long()


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(T,) table, (B,) timesteps -> (B, 1, 1, 1) entries that broadcast over an image batch"""
    return values.to(device=like.device, dtype=like.dtype)[t].reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(
    x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """x_0, t, noise -> x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise (Ho et al. 2020, eq. 4)."""
    if noise.shape != x0.shape:
        raise InputError(f"noise has shape {tuple(noise.shape)} but x0 has {tuple(x0.shape)}; draw the noise with "
                         "torch.randn_like(x0).")
    t = _batch_timesteps(t, x0.shape[0], len(alphas_cumprod), x0.device)
    a = _per_sample(alphas_cumprod, t, x0)  # (B, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


# ---- the reverse process p(x_{t-1} | x_t)


def predict_x0(
    x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """x_t and predicted noise -> x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (Ho eq. 15)."""
    t = _batch_timesteps(t, x_t.shape[0], len(alphas_cumprod), x_t.device)
    a = _per_sample(alphas_cumprod, t, x_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def posterior(
    x0: torch.Tensor, x_t: torch.Tensor, t: int, alphas_cumprod: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_0, x_t -> mean and variance of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 6-7); variance 'fixed_small'."""
    _check_timesteps(torch.tensor([t]), len(alphas_cumprod))
    a_t = alphas_cumprod[t]  # 0-d tensors in the schedule's dtype, as diffusers computes them
    a_prev = alphas_cumprod[t - 1] if t > 0 else torch.ones_like(a_t)
    beta_t = 1 - a_t / a_prev
    mean = (a_prev**0.5 * beta_t / (1 - a_t)) * x0 + ((1 - beta_t) ** 0.5 * (1 - a_prev) / (1 - a_t)) * x_t
    variance = ((1 - a_prev) / (1 - a_t) * beta_t).clamp(min=1e-20)  # beta tilde of eq. 7
    return mean, variance


def ddpm_step(
    model_output: torch.Tensor,
    t: int,
    x_t: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    noise: torch.Tensor | None = None,
    clip_sample: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDPM step: predicted noise at x_t -> (x_{t-1}, predicted x_0); `noise` is the fresh N(0, I) draw.

    Args:
        model_output: the model's noise prediction eps(x_t, t), shape of x_t.
        t: the current timestep, an int from 0 to T-1.
        x_t: the current sample.
        alphas_cumprod: (T,) alpha_bar of the schedule.
        noise: the Gaussian draw added for t > 0 (default: torch.randn_like(x_t)).
        clip_sample: clamp the predicted x_0 to [-clip_sample, clip_sample] (pixels: 1.0); None: no clamp (latents).
    """
    x0 = predict_x0(x_t, t, model_output, alphas_cumprod)  # eq. 15
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
    mean, variance = posterior(x0, x_t, t, alphas_cumprod)  # eq. 6-7
    if t == 0:
        return mean, x0
    noise = torch.randn_like(x_t) if noise is None else noise
    return mean + variance.to(x_t)**0.5 * noise, x0


def ddim_step(
    model_output: torch.Tensor,
    t: int,
    prev_t: int,
    x_t: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    clip_sample: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (Song et al. 2021, eq. 12, eta = 0): predicted noise at x_t -> (x_prev_t, x_0).

    prev_t: the timestep to jump to, any earlier one; -1 for the clean image (alpha_bar = 1, as diffusers'
    DDIMScheduler with set_alpha_to_one). clip_sample: clamp the predicted x_0 as in `ddpm_step`.
    """
    _check_timesteps(torch.tensor([t, max(prev_t, 0)]), len(alphas_cumprod))
    a = alphas_cumprod[t]  # 0-d CPU tensors: they scale a tensor on any device without a copy
    a_prev = alphas_cumprod[prev_t] if prev_t >= 0 else torch.ones_like(a)
    x0 = (x_t - (1 - a) ** 0.5 * model_output) / a**0.5  # "predicted x_0" of eq. 12 (Ho eq. 15)
    if clip_sample is not None:
        x0 = x0.clamp(-clip_sample, clip_sample)
    return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * model_output, x0  # x_0 moved to prev_t along the same noise


# ---- training and sampling


def diffusion_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    generator: torch.Generator | None = None,
    min_snr_gamma: float | None = None,
    class_labels: torch.Tensor | None = None,
    uncond_prob: float = 0.0,
) -> torch.Tensor:
    """mean squared error between the drawn noise and the model's prediction at a random t (Ho eq. 14, Alg. 1).

    min_snr_gamma: weight each sample by min(SNR(t), gamma) / SNR(t), so the nearly clean timesteps stop
    dominating (Hang et al. 2023, https://arxiv.org/abs/2303.09556; gamma = 5 there); None: Ho's plain loss.
    class_labels: (B,) classes of x0 for a class-conditional model; each is replaced by the model's null class
    with probability uncond_prob, so one model learns both ways (Ho & Salimans 2022, Algorithm 1).
    """
    B = x0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (B,), generator=generator).to(x0.device)  # (B,)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)  # (B, C, H, W)
    if class_labels is not None and uncond_prob > 0:
        drop = (torch.rand(B, generator=generator) < uncond_prob).to(x0.device)  # (B,) drawn after t and the noise
        class_labels = torch.where(drop, _null_class(model), class_labels.to(x0.device))
    x_t = q_sample(x0, t, noise, alphas_cumprod)
    error = (_call(model, x_t, t, class_labels) - noise).square().mean(dim=tuple(range(1, x0.ndim)))  # (B,)
    if min_snr_gamma is not None:
        snr = signal_to_noise(alphas_cumprod.to(x0.device)[t])
        error = error * snr.clamp(max=min_snr_gamma) / snr
    return error.mean()


def _call(model: Any, x: torch.Tensor, t: torch.Tensor | int, class_labels: torch.Tensor | None = None) -> torch.Tensor:
    """run a latentlab UNet, a diffusers UNet2DModel (its .sample) or any callable; labels only when given"""
    out = model(x, t) if class_labels is None else model(x, t, class_labels=class_labels)
    return out.sample if hasattr(out, "sample") else out


def _null_class(model: Any) -> int:
    """the label that means "no class": the last of a class-conditional model's num_class_embeds"""
    config = getattr(model, "config", None)
    classes = getattr(config, "num_class_embeds", None) if config is not None else None
    if classes is None:
        raise InputError("this model is not class-conditional (no num_class_embeds in its config); leave "
                         "class_labels out, or train a model with classes.")
    return classes - 1


def guided_noise(model: Any, x: torch.Tensor, t: torch.Tensor | int, class_labels: torch.Tensor | None,
                 guidance: float = 1.0) -> torch.Tensor:
    """eps_null + guidance * (eps_cond - eps_null) (Ho & Salimans 2022, Alg. 2), both from one doubled batch.

    guidance 1 is the conditional model alone (one pass); 0 the unconditional one; above 1 pushes further from
    "any shape" towards the requested class.
    """
    if class_labels is None or guidance == 1.0:
        return _call(model, x, t, class_labels)
    null = torch.full_like(class_labels, _null_class(model))
    eps_cond, eps_null = _call(model, torch.cat([x, x]), t, torch.cat([class_labels, null])).chunk(2)  # (B, ...) each
    return eps_null + guidance * (eps_cond - eps_null)


def _model_timesteps(model: Any) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "num_train_timesteps", None) if config is not None else None


def _model_device(model: Any) -> torch.device:
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if params else None
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def sample(
    model: Any,
    shape: tuple[int, ...],
    scheduler: torch.Tensor | Any,
    num_inference_steps: int | None = None,
    generator: torch.Generator | None = None,
    clip_sample: float | None = None,
    progress: bool = False,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    class_labels: torch.Tensor | None = None,
    guidance: float = 1.0,
) -> torch.Tensor:
    """Draw samples: pure noise of `shape` -> denoised x_0, with DDPM's own loop or a diffusers scheduler.

    Args:
        model: (x_t, t) -> predicted noise; a latentlab UNet or a diffusers UNet2DModel.
        shape: (B, C, H, W) of the samples.
        scheduler: a (T,) tensor of betas (the hand-built DDPM loop over all T steps), or a diffusers scheduler
            such as DDPMScheduler / DDIMScheduler (then `num_inference_steps` of them).
        num_inference_steps: steps for a diffusers scheduler (default: its num_train_timesteps).
        generator: a seeded CPU generator for the starting noise and every noise draw.
        clip_sample: for the hand-built loop, clamp predicted x_0 to [-clip_sample, clip_sample]; a diffusers
            scheduler uses its own `clip_sample` config.
        progress: show a tqdm progress bar.
        callback: called after every step as callback(t, x_{t-1}, predicted x_0), e.g. to watch the sample form.
        class_labels: (B,) the class to draw for each sample, for a class-conditional model (None: its null class).
        guidance: classifier-free guidance scale (see guided_noise); 1: the conditional model as it is.
    """
    device = _model_device(model)
    if class_labels is not None:
        class_labels = torch.as_tensor(class_labels, device=device)
        if class_labels.shape != (shape[0],):
            raise InputError(f"class_labels has shape {tuple(class_labels.shape)} but {shape[0]} samples are drawn; "
                             f"give one class per sample.")
    elif guidance != 1.0:
        raise InputError(f"guidance {guidance} steers towards a class, and no class_labels were given; pass them "
                         "or leave guidance at 1.")
    expected = _model_timesteps(model)
    if isinstance(scheduler, torch.Tensor):
        num_train = len(scheduler)
    else:
        if not hasattr(scheduler, "step") or not hasattr(scheduler, "set_timesteps"):
            raise InputError(f"scheduler must be a tensor of betas or a diffusers scheduler, not "
                             f"{type(scheduler).__name__}.")
        num_train = scheduler.config.num_train_timesteps
    if expected is not None and num_train != expected:
        raise InputError(f"the scheduler has {num_train} train timesteps but the model was trained with "
                         f"{expected}; build the scheduler with num_train_timesteps={expected}.")

    x = torch.randn(shape, generator=generator).to(device)  # x_T ~ N(0, I)
    if isinstance(scheduler, torch.Tensor):
        acp = alphas_cumprod(scheduler.float()).to(device)
        steps: list[int] = list(range(num_train - 1, -1, -1))
    else:
        scheduler.set_timesteps(num_inference_steps or num_train)
        steps = scheduler.timesteps.tolist()
        x = x * scheduler.init_noise_sigma
    if progress:
        steps = tqdm(steps, desc="sampling", leave=False)

    for t in steps:
        if isinstance(scheduler, torch.Tensor):
            eps = guided_noise(model, x, t, class_labels, guidance)
            noise = torch.randn(shape, generator=generator).to(device) if t > 0 else None
            x, x0 = ddpm_step(eps, t, x, acp, noise=noise, clip_sample=clip_sample)
        else:
            eps = guided_noise(model, scheduler.scale_model_input(x, t), t, class_labels, guidance)
            out = scheduler.step(eps, t, x, generator=generator)
            x, x0 = out.prev_sample, out.pred_original_sample
        if callback is not None:
            callback(int(t), x, x0)
    return x

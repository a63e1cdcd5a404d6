"""Lesson 05's exercises: the signal left after t steps (alpha_bar), and the jump to step t in closed form.

References: `diffusion.alphas_cumprod` and `diffusion.q_sample` (Ho et al. 2020, https://arxiv.org/abs/2006.11239,
eq. 4: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise).
"""

from __future__ import annotations

import torch

from latentlab import diffusion
from latentlab.exercises import Exercise, Mistake

# ---- exercise: alpha_bar from the betas


def _short_schedule() -> tuple[torch.Tensor]:
    """10 large betas, so that every mistake shows in the numbers"""
    return (torch.linspace(0.05, 0.4, 10),)


def _abar_mistakes(betas: torch.Tensor) -> list[Mistake]:
    kept = 1 - betas
    abar = torch.cumprod(kept, dim=0)
    return [
        (torch.cumprod(betas, dim=0), "that multiplies the betas, the noise added; ᾱ multiplies what every step "
                                      "keeps, 1 − β."),
        (1 - torch.cumprod(betas, dim=0), "ᾱ multiplies what every step keeps, 1 − β, step after step."),
        (torch.cat([torch.ones(1), abar[:-1]]), "off by one: ᾱ_t includes step t itself, so its first entry is "
                                                "already 1 − β of the first step."),
        (torch.cumsum(kept, dim=0), "the shares kept multiply, they do not add."),
        (abar.sqrt(), "ᾱ is a share of variance: no square root here."),
        (torch.exp(-torch.cumsum(betas, dim=0)), "close, but that is the approximation for small β; multiply the "
                                                 "exact factors 1 − β."),
        (abar[-1], "that is ᾱ of the last step only; the lesson needs one value for every t, shape (T,)."),
    ]


ALPHAS_CUMPROD = Exercise(
    name="alphas_cumprod",
    lesson="05",
    reference=diffusion.alphas_cumprod,
    cases=lambda: [_short_schedule(), (diffusion.linear_beta_schedule(1000),)],
    case_names=("on DDPM's 1000-step linear schedule",),
    mistakes=_abar_mistakes,
    hints=("Each step keeps the share 1 − β_t of the signal's variance; after t steps, the shares of steps 1 to t "
           "have been applied one after the other.",
           "ᾱ_t = (1 − β_1)(1 − β_2)…(1 − β_t): a running product, one entry per t. torch has an operation for "
           "running products along a dimension."),
)


# ---- exercise: q(x_t | x_0) in one jump


def _noising(t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor | int, torch.Tensor, torch.Tensor]:
    """x0 (3, 3, 4, 5), t, noise, and the linear schedule's alpha_bar"""
    g = torch.Generator("cpu").manual_seed(0)
    x0 = torch.rand(3, 3, 4, 5, generator=g) * 2 - 1
    noise = torch.randn(3, 3, 4, 5, generator=g)
    return x0, t, noise, diffusion.alphas_cumprod(diffusion.linear_beta_schedule(1000))


def _q_sample_mistakes(x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor,
                       alphas_cumprod: torch.Tensor) -> list[Mistake]:
    t = torch.as_tensor(t).expand(x0.shape[0])
    a = alphas_cumprod[t].reshape(-1, 1, 1, 1)  # (B, 1, 1, 1)
    before = alphas_cumprod[(t - 1).clamp(min=0)].reshape(-1, 1, 1, 1)
    first = alphas_cumprod[t[0]]
    return [
        (a * x0 + (1 - a) * noise, "ᾱ is a share of variance; the image and the noise are scaled by square roots "
                                   "of it, so that the variances add up to 1."),
        (a.sqrt() * x0 + (1 - a.sqrt()) * noise, "the noise is scaled by the square root of 1 − ᾱ_t, not by "
                                                 "1 minus the square root of ᾱ_t."),
        ((1 - a).sqrt() * x0 + a.sqrt() * noise, "the two scales are swapped: the clean image keeps the square root "
                                                 "of ᾱ_t, the noise gets the rest."),
        (x0 + (1 - a).sqrt() * noise, "the image must shrink too, by the square root of ᾱ_t: otherwise x_t's "
                                      "variance grows with t."),
        (a.sqrt() * x0 + noise, "the noise must be scaled, by the square root of 1 − ᾱ_t."),
        (before.sqrt() * x0 + (1 - before).sqrt() * noise, "off by one: the ᾱ of step t is the t-th entry of the "
                                                           "table (indices start at 0)."),
        (first.sqrt() * x0 + (1 - first).sqrt() * noise, "every image in the batch has its own t: look up one ᾱ per "
                                                         "image, not only the first."),
    ]


Q_SAMPLE = Exercise(
    name="q_sample",
    lesson="05",
    reference=diffusion.q_sample,
    cases=lambda: [_noising(torch.tensor([0, 500, 999])), _noising(250)],
    case_names=("with t given as one int for the whole batch",),
    mistakes=_q_sample_mistakes,
    hints=("x_t is the clean image scaled by √ᾱ_t plus the noise scaled by √(1 − ᾱ_t), where ᾱ_t is the entry of "
           "alphas_cumprod for each image's own t.",
           "alphas_cumprod[t] has one number per image, shape (B,), while x0 is (B, C, H, W): give it the shape "
           "(B, 1, 1, 1) so each number scales its whole image (for an int t the same works)."),
)

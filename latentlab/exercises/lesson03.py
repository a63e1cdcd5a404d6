"""Lesson 03's exercises: the reparameterization trick, the KL term, and the scaling factor measured from data.

Kingma & Welling 2014 (https://arxiv.org/abs/1312.6114): eq. 10 (z = mean + std * noise) and appendix B (the KL
of a diagonal Gaussian to N(0, I)); Rombach et al. 2022, Sec. 4.3.2 and appendix G (latents scaled by 1 / std).
"""

from __future__ import annotations

import torch

from latentlab.exercises import Exercise, Mistake
from latentlab.vae import gaussian_kl


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """mean, logvar, standard normal noise -> z = mean + exp(logvar / 2) * noise, as DiagonalGaussian.sample."""
    return mean + torch.exp(0.5 * logvar) * noise


def scaling_factor(latents: torch.Tensor) -> float:
    """latents (N, C, h, w) -> 1 / std of all their values, as vae.estimate_scaling_factor measures it."""
    return 1.0 / latents.std().item()


def _posterior(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """seeded mean, logvar (channel 0 above 0, the rest in [-1.5, -0.3]) and noise, each (2, 4, 3, 3)"""
    g = torch.Generator("cpu").manual_seed(seed)
    mean = torch.randn(2, 4, 3, 3, generator=g)
    logvar = -0.3 - 1.2 * torch.rand(2, 4, 3, 3, generator=g)
    logvar[:, 0] = 0.4 + torch.rand(2, 3, 3, generator=g)  # variance above 1, so variance and std differ both ways
    noise = torch.randn(2, 4, 3, 3, generator=g)
    return mean, logvar, noise


# ---- exercise: the reparameterization trick


def _reparameterize_mistakes(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> list[Mistake]:
    std, var = torch.exp(0.5 * logvar), torch.exp(logvar)
    return [
        (mean + var * noise, "you scaled the noise by the variance e^logvar; it is scaled by the standard "
                             "deviation, the square root of the variance."),
        (mean + logvar * noise, "you scaled the noise by logvar itself; logvar is the logarithm of the variance: "
                                "undo the log, then take the square root."),
        (mean + var * var * noise, "that is the variance squared; the noise is scaled by the standard deviation."),
        (mean - std * noise, "the sign: the scaled noise is added to the mean."),
        (std * noise, "the mean is missing: the samples are centred on it."),
        (mean + noise, "the noise is not scaled: each latent value has its own spread, given by its logvar."),
        (mean * std * noise, "the scaled noise is added to the mean, not multiplied with it."),
        (mean, "that is the mean itself, the most likely latent, not a sample: add the scaled noise."),
        (mean + std, "you added the standard deviation, but no noise: the randomness comes from `noise`."),
    ]


REPARAMETERIZE = Exercise(
    name="reparameterize",
    lesson="03",
    reference=reparameterize,
    cases=lambda: [_posterior(0)],
    mistakes=_reparameterize_mistakes,
    hints=("z is the mean, plus the noise scaled to the posterior's spread; use `mean`, `logvar` and the `noise` you "
           "are given, element by element.",
           "logvar is the log of the variance σ²; the spread that scales the noise is σ, the square root of the "
           "variance. Which operation undoes a log?"),
    grad=(0, 1),
)


# ---- exercise: the KL term


def _kl_mistakes(mean: torch.Tensor, logvar: torch.Tensor) -> list[Mistake]:
    expected = gaussian_kl(mean, logvar)  # (B,)
    dims = (1, 2, 3)
    per_value = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)
    n = per_value[0].numel()
    std = torch.exp(0.5 * logvar)
    return [
        (-expected, "the sign is flipped: a KL divergence is never negative (it is log q − log p, averaged over q)."),
        (2 * expected, "the result is twice too large: every term of a Gaussian's log-density carries a ½."),
        (per_value.mean(dims), "you averaged over the latent values; they are independent, so their KLs add up."),
        (expected + 0.5 * n, "the −1 is missing: it comes from E[(z − mean)²] / σ² = 1 in log q."),
        (expected - 0.5 * n, "there is one −1 too many per value."),
        (0.5 * (mean.pow(2) + std - 1 - logvar).sum(dims),
         "you used the standard deviation where the variance σ² = e^logvar belongs."),
        (0.5 * (mean.pow(2) + logvar.exp() - 1 + logvar).sum(dims),
         "the sign of the log-variance term: a very narrow posterior (logvar far below 0) must cost a lot."),
        (0.5 * (mean + logvar.exp() - 1 - logvar).sum(dims), "the mean enters squared (from E[z²] = mean² + σ²)."),
        (0.5 * (logvar.exp() - 1 - logvar).sum(dims), "the term of the mean is missing: a posterior centred far "
                                                      "from 0 must cost something too."),
        (0.5 * (mean.pow(2) + logvar.exp() - 1 - 0.5 * logvar).sum(dims),
         "log σ² is logvar itself; you used the log of the standard deviation, half of it."),
        (expected.sum(), "you added up over the batch too: return one KL per image, shape (B,)."),
        (expected.mean(), "you averaged over the batch: return one KL per image, shape (B,)."),
        (per_value, "that is the KL of every latent value; add them up per image (over channels, height and width), "
                    "to shape (B,)."),
    ]


KL = Exercise(
    name="kl_divergence",
    lesson="03",
    reference=gaussian_kl,
    cases=lambda: [_posterior(1)[:2], (torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3))],
    case_names=("at the prior itself, mean 0 and logvar 0, where the KL must be exactly 0",),
    mistakes=_kl_mistakes,
    hints=("For one value, KL = E_q[log q(z) − log p(z)]. Write out both Gaussian log-densities and use "
           "E_q[(z − mean)²] = σ² and E_q[z²] = mean² + σ²; the log 2π terms cancel.",
           "Per value the result has four parts inside a ½: one from the mean, one from the variance, a constant, and "
           "one from the log-variance. Then add up each image's values over channels, height and width (dims 1, 2, "
           "3), not over the batch."),
    grad=(0, 1),
)


# ---- exercise: the scaling factor, measured


def _latent_batch(seed: int, n: int) -> tuple[torch.Tensor]:
    """(n, 4, 8, 8) raw latents whose channels have different means and spreads, like a VAE's"""
    g = torch.Generator("cpu").manual_seed(seed)
    means = torch.tensor([1.5, -2.0, 0.5, 0.0])[None, :, None, None]
    stds = torch.tensor([3.0, 5.0, 4.0, 6.0])[None, :, None, None]
    return (means + stds * torch.randn(n, 4, 8, 8, generator=g),)


def _scaling_mistakes(latents: torch.Tensor) -> list[Mistake]:
    per_channel = latents.std(dim=(0, 2, 3))
    return [
        (latents.std().item(), "that is the spread itself; the factor is the number you multiply the latents by to "
                               "bring their spread to 1."),
        (1 / latents.var().item(), "that divides by the variance; the spread of the values is the standard deviation."),
        (1 / per_channel, "one factor for all channels (Stable Diffusion stores a single number): measure the spread "
                          "of all values at once."),
        (1 / per_channel.mean().item(), "the mean of the channels' spreads is not the spread of all values (the "
                                        "channels' different means add to it): measure all values at once."),
        (1 / latents.abs().mean().item(), "the mean absolute value is not the standard deviation."),
        (1 / latents.abs().max().item(), "the largest value is not the spread: one outlier would decide it."),
    ]


SCALING_FACTOR = Exercise(
    name="scaling_factor",
    lesson="03",
    reference=scaling_factor,
    cases=lambda: [_latent_batch(0, 16), _latent_batch(1, 8)],
    case_names=("on a second, smaller batch",),
    mistakes=_scaling_mistakes,
    hints=("The factor s is the one number that gives the scaled latents s · z a standard deviation of 1, measured "
           "over every value of the batch.",
           "The standard deviation of s · z is s times the standard deviation of z."),
    rtol=1e-3,  # the n or n - 1 in the standard deviation both pass
)

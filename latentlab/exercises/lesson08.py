"""Lesson 08's exercises: the noise-prediction loss, and one deterministic DDIM step.

The loss is Ho et al. 2020's simple objective (https://arxiv.org/abs/2006.11239, eq. 14), as
`diffusion.diffusion_loss` computes it once t and the noise are drawn; the step is Song et al. 2021's DDIM
(https://arxiv.org/abs/2010.02502, eq. 12 with eta = 0), as `diffusers.DDIMScheduler.step` computes it. Its reference
is `diffusion.ddim_step`, the package's one DDIM step (lesson 07's benchmark loop takes it too), given the two values
of alpha_bar the learner's version receives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from latentlab import diffusion
from latentlab.exercises import Exercise, Mistake


def epsilon_loss(model: Callable, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                 alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """mean squared error between the noise and the model's prediction of it from x_t (Ho eq. 14) -> 0-d tensor"""
    x_t = diffusion.q_sample(x0, t, noise, alphas_cumprod)
    return (model(x_t, t) - noise).pow(2).mean()


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor,
              alpha_bar_prev: torch.Tensor) -> torch.Tensor:
    """x_t and the predicted noise -> x_{t-1} = sqrt(abar_prev) x0_pred + sqrt(1 - abar_prev) eps (Song eq. 12, eta 0)"""
    table = torch.stack([torch.as_tensor(alpha_bar_prev), torch.as_tensor(alpha_bar_t)])  # (2,): entry 1 is now
    return diffusion.ddim_step(eps, 1, 0, x_t, table)[0]  # from "timestep" 1 to 0 of that two-entry table


class TinyDenoiser(nn.Module):
    """(x_t, t) -> a noise guess: one 3 x 3 conv plus a bias that grows with t; small enough for a check"""

    def __init__(self, channels: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.time = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1, 1, 1) / 1000  # (B or 1, 1, 1, 1)
        return self.conv(x) + t * self.time[None, :, None, None]


# ---- exercise: the loss


def _training_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):  # seeded weights, and the learner's random stream left as it was
        torch.manual_seed(0)
        model = TinyDenoiser()
    with torch.no_grad():
        model.time.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0]))
    g = torch.Generator("cpu").manual_seed(0)
    x0 = torch.randn(3, 4, 4, 4, generator=g)
    t = torch.tensor([10, 400, 900])
    noise = torch.randn(3, 4, 4, 4, generator=g)
    return model, x0, t, noise, diffusion.alphas_cumprod(diffusion.linear_beta_schedule(1000))


def _loss_mistakes(model: Callable, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                   alphas_cumprod: torch.Tensor) -> list[Mistake]:
    with torch.no_grad():
        x_t = diffusion.q_sample(x0, t, noise, alphas_cumprod)
        a = alphas_cumprod[t].reshape(-1, 1, 1, 1)
        error = model(x_t, t) - noise
        return [
            ((model(x_t, t) - x0).pow(2).mean(), "the model predicts the noise that was added, not the clean image: "
                                                 "compare its output with `noise`."),
            ((model(x0, t) - noise).pow(2).mean(), "the model must see the noised x_t (lesson 05's jump to step t), "
                                                   "not the clean x0."),
            ((model(x_t, t) - x_t).pow(2).mean(), "compare the model's output with the noise, not with x_t."),
            ((model(a * x0 + (1 - a) * noise, t) - noise).pow(2).mean(), "x_t is noised with square roots: √ᾱ_t and "
                                                                         "√(1 − ᾱ_t)."),
            ((model(x_t, torch.zeros_like(t)) - noise).pow(2).mean(), "give the model each image's own timestep t: "
                                                                      "the noise level is what it must know."),
            (error.pow(2).sum(), "you added the squared errors up; take their mean."),
            (error.abs().mean(), "that is the mean absolute error; the loss squares each difference."),
            (error.pow(2).mean(dim=(1, 2, 3)), "one loss per image; the optimizer needs one number: average over "
                                               "the batch too."),
        ]


EPSILON_LOSS = Exercise(
    name="epsilon_loss",
    lesson="08",
    reference=epsilon_loss,
    cases=lambda: [_training_batch()],
    mistakes=_loss_mistakes,
    hints=("Noise x0 to step t with the given noise (in one jump), ask the model for its guess of that noise from "
           "x_t and t, and measure how far the guess is from the true noise.",
           "The loss is the mean over every value of (model(x_t, t) − noise)², where x_t is lesson 05's closed form."),
    grad=(0,),
)


# ---- exercise: one DDIM step


def _step_case(t: int, t_prev: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_t, a predicted noise, alpha_bar at t and at the previous step (1 past the last step), as 0-d tensors"""
    g = torch.Generator("cpu").manual_seed(t)
    abar = diffusion.alphas_cumprod(diffusion.scaled_linear_beta_schedule(1000))
    x_t = torch.randn(2, 4, 4, 4, generator=g)
    eps = 0.9 * x_t + 0.3 * torch.randn(2, 4, 4, 4, generator=g)
    return x_t, eps, abar[t], abar[t_prev] if t_prev is not None else torch.tensor(1.0)


def _step_mistakes(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor,
                   alpha_bar_prev: torch.Tensor) -> list[Mistake]:
    a, a_prev = alpha_bar_t, alpha_bar_prev
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    return [
        (x0, "that is the predicted clean sample; a step goes only to the previous noise level ᾱ_{t−1}: noise the "
             "prediction again to that level, with the predicted noise."),
        (x_t, "that is x_t again: noising the prediction back to the current level ᾱ_t gives x_t back; go to the "
              "previous level ᾱ_{t−1}."),
        (a_prev.sqrt() * x0, "the predicted noise must be put back too, scaled to the previous noise level."),
        (a_prev.sqrt() * ((x_t - (1 - a) * eps) / a) + (1 - a_prev) * eps,
         "the scales are square roots: √ᾱ and √(1 − ᾱ), in the prediction of x0 and in the step."),
        (a_prev.sqrt() * ((x_t + (1 - a).sqrt() * eps) / a.sqrt()) + (1 - a_prev).sqrt() * eps,
         "the sign in the prediction of x0: the noise is taken away from x_t."),
        (a_prev.sqrt() * (x_t - (1 - a).sqrt() * eps) + (1 - a_prev).sqrt() * eps,
         "after taking the noise away, divide by √ᾱ_t to get the clean sample's scale back."),
        (a_prev.sqrt() * x0 + (1 - a).sqrt() * eps, "the noise goes back at the previous level, √(1 − ᾱ_{t−1}), "
                                                    "not the current one."),
    ]


DDIM_STEP = Exercise(
    name="ddim_step",
    lesson="08",
    reference=ddim_step,
    cases=lambda: [_step_case(700, 600), _step_case(20, None)],
    case_names=("on the last step, where ᾱ_prev = 1",),
    mistakes=_step_mistakes,
    hints=("Two moves: from x_t and the predicted noise, predict the clean x0 (lesson 05's closed form, solved for "
           "x0); then jump to the previous noise level with that x0 and the same predicted noise.",
           "Solve lesson 05's x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε for x0, with ε̂ in place of ε; the step then applies "
           "that same formula at the previous level, ᾱ_prev."),
    rtol=1e-4,
    atol=1e-4,
)

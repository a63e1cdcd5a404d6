"""Automatic checks for the learners' exercises: a clear pass, or a hint that names the mistake.

Each `check_*` runs the learner's function on seeded tensors, compares it with the reference (the
package's own code), prints one verdict and returns the function the lesson should go on with: the
learner's when it passes, the reference otherwise, so "run all" never breaks on an unfinished exercise.
The `diagnose_*` functions return the verdict without printing, for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from latentlab.vae import gaussian_kl

PASS = "✅"
NOT_YET = "⏳"
WRONG = "❌"


@dataclass
class Verdict:
    passed: bool
    message: str  # what the learner reads: the result and, on failure, a specific hint


def reference_reparameterize(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = mean + exp(logvar / 2) * noise; Kingma & Welling 2014, eq. 10 (the reparameterization trick)."""
    return mean + torch.exp(0.5 * logvar) * noise


def reference_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per image -> (B,); Kingma & Welling 2014, appendix B."""
    return gaussian_kl(mean, logvar)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """seeded mean, logvar (some positive, most negative, none near 0 or 1) and noise, each (2, 4, 3, 3)"""
    g = torch.Generator("cpu").manual_seed(seed)
    mean = torch.randn(2, 4, 3, 3, generator=g)
    logvar = -0.3 - 1.2 * torch.rand(2, 4, 3, 3, generator=g)  # in [-1.5, -0.3]
    logvar[:, 0] = 0.4 + torch.rand(2, 3, 3, generator=g)  # channel 0: variance above 1
    noise = torch.randn(2, 4, 3, 3, generator=g)
    return mean, logvar, noise


def _close(a, b) -> bool:
    return (
        isinstance(a, torch.Tensor) and a.shape == b.shape and bool(torch.allclose(a.float(), b, rtol=1e-4, atol=1e-5))
    )


def _call(fn: Callable, *args) -> tuple[object, Verdict | None]:
    """Run the learner's function; a Verdict when it is unfinished or raised."""
    try:
        return fn(*(a.clone() for a in args)), None
    except NotImplementedError:
        return None, Verdict(False, f"{NOT_YET} not done yet — using the reference version so the lesson continues.")
    except Exception as err:  # noqa: BLE001 - any error in the learner's code is reported, never raised
        return None, Verdict(
            False, f"{WRONG} your function raised {type(err).__name__}: {err} — using the reference version for now."
        )


# ---- exercise 1: the reparameterization trick

REPARAM_HINT = (
    "hint: the standard deviation is exp(0.5 * logvar), so z = mean + torch.exp(0.5 * logvar) * noise; "
    "use the `noise` you are given (no new torch.randn)."
)


def diagnose_reparameterize(fn: Callable) -> Verdict:
    """Compare fn(mean, logvar, noise) with the reference; name the mistake when it differs."""
    mean, logvar, noise = _inputs()
    out, failure = _call(fn, mean, logvar, noise)
    if failure is not None:
        return Verdict(False, f"{failure.message}\n{REPARAM_HINT}")
    expected = reference_reparameterize(mean, logvar, noise)
    if not isinstance(out, torch.Tensor):
        kind = type(out).__name__
        return Verdict(False, f"{WRONG} your function returned a {kind}; return a tensor z.\n{REPARAM_HINT}")
    if out.shape != expected.shape:
        return Verdict(
            False,
            f"{WRONG} z has shape {tuple(out.shape)} but should have the shape of mean, {tuple(expected.shape)}: "
            f"combine the tensors element by element (no sum, mean or concatenation).\n{REPARAM_HINT}",
        )
    again, _ = _call(fn, mean, logvar, noise)
    if isinstance(again, torch.Tensor) and again.shape == out.shape and not torch.equal(again, out):
        return Verdict(
            False,
            f"{WRONG} two calls with the same inputs gave different z: you draw new noise inside the function; "
            f"use the `noise` argument instead, so the randomness stays outside and gradients flow.\n{REPARAM_HINT}",
        )
    if _close(out, expected):
        return Verdict(True, f"{PASS} reparameterize passes: z = mean + exp(0.5 * logvar) * noise.")
    std, var = torch.exp(0.5 * logvar), torch.exp(logvar)
    mistakes = [
        (mean + var * noise, "you scaled the noise by the variance exp(logvar): the scale is the standard deviation, "
                             "exp(0.5 * logvar) — you forgot the 0.5."),
        (mean + logvar * noise, "you used logvar itself as the standard deviation; logvar is the log of the "
                                "variance, so std = exp(0.5 * logvar)."),
        (mean + torch.exp(2 * logvar) * noise, "exp(2 * logvar) is the variance squared; the standard deviation "
                                               "is exp(0.5 * logvar)."),
        (mean - std * noise, "sign: z = mean + std * noise (with a minus it is still a sample, but not the one "
                             "the check and diffusers compute)."),
        (std * noise, "you forgot to add the mean: z = mean + std * noise."),
        (mean + noise, "you forgot to scale the noise by the standard deviation exp(0.5 * logvar)."),
        (mean * std * noise, "the noise is scaled and then ADDED to the mean: z = mean + std * noise."),
        (mean, "z is just the mean: that is the mode, not a sample — add std * noise."),
        (mean + std, "you added the standard deviation but not the noise: z = mean + std * noise."),
    ]
    for value, hint in mistakes:
        if _close(out, value):
            return Verdict(False, f"{WRONG} not yet: {hint}")
    if not torch.isfinite(out).all():
        return Verdict(False, f"{WRONG} z contains NaN or inf (did you take a log or sqrt of logvar?).\n{REPARAM_HINT}")
    return Verdict(False, f"{WRONG} z differs from the reference (largest gap {(out - expected).abs().max():.3g}).\n"
                          f"{REPARAM_HINT}")


def _check(fn: Callable, diagnose: Callable[[Callable], Verdict], reference: Callable) -> Callable:
    """Print the verdict of diagnose(fn); return fn if it passes, else the reference, so the lesson goes on."""
    verdict = diagnose(fn)
    print(verdict.message)
    if not verdict.passed and NOT_YET in verdict.message:
        print("  (fill in the cell above and run it again when you are ready)")
    return fn if verdict.passed else reference


def check_reparameterize(fn: Callable) -> Callable:
    """Print a verdict on the learner's reparameterize; return it if it passes, else the reference."""
    return _check(fn, diagnose_reparameterize, reference_reparameterize)


# ---- exercise 2: the KL term

KL_HINT = (
    "hint: for each latent value, KL = 0.5 * (mean**2 + exp(logvar) - 1 - logvar); "
    "sum it over channels, height and width with .sum(dim=(1, 2, 3)) to get one number per image."
)


def diagnose_kl(fn: Callable) -> Verdict:
    """Compare fn(mean, logvar) -> (B,) with the reference KL; name the mistake when it differs."""
    mean, logvar, _ = _inputs(seed=1)
    out, failure = _call(fn, mean, logvar)
    if failure is not None:
        return Verdict(False, f"{failure.message}\n{KL_HINT}")
    expected = reference_kl(mean, logvar)  # (B,)
    if not isinstance(out, torch.Tensor):
        return Verdict(False, f"{WRONG} your function returned a {type(out).__name__}; return a tensor.\n{KL_HINT}")
    if out.shape != expected.shape:
        if out.numel() == 1 and (_close(out.reshape(()), expected.sum()) or _close(out.reshape(()), expected.mean())):
            hint = "you reduced over the batch too: return one KL per image, shape (B,), by summing dims 1, 2, 3 only."
        elif out.shape == mean.shape:
            hint = f"you returned the KL of every latent value {tuple(out.shape)}: sum over dims 1, 2, 3 to get (B,)."
        else:
            want = tuple(expected.shape)
            hint = f"the result has shape {tuple(out.shape)}; it should be one number per image, {want}."
        return Verdict(False, f"{WRONG} not yet: {hint}\n{KL_HINT}")
    if _close(out, expected):
        zero, _ = _call(fn, torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2))
        if isinstance(zero, torch.Tensor) and zero.abs().max() < 1e-6:
            return Verdict(True, f"{PASS} kl passes: 0.5 * sum(mean² + exp(logvar) - 1 - logvar), and it is 0 "
                                 "when the posterior is exactly N(0, I).")
    per_value = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)
    n = per_value[0].numel()
    dims = (1, 2, 3)
    std = torch.exp(0.5 * logvar)
    mistakes = [
        (-expected, "the sign is flipped: KL is never negative; it is 0.5 * sum(mean² + exp(logvar) - 1 - logvar) "
                    "(or -0.5 * sum(1 + logvar - mean² - exp(logvar)))."),
        (2 * expected, "you forgot the 0.5 in front."),
        (per_value.mean(dims), "you averaged over the latent values; sum them instead (.sum(dim=(1, 2, 3)))."),
        (expected + 0.5 * n, "you forgot the -1 inside the bracket."),
        (expected - 0.5 * n, "there is one -1 too many inside the bracket: mean² + exp(logvar) - 1 - logvar."),
        (0.5 * (mean.pow(2) + std - 1 - logvar).sum(dims),
         "you used the standard deviation exp(0.5 * logvar) where the variance exp(logvar) belongs."),
        (0.5 * (mean.pow(2) + logvar.exp() - 1 + logvar).sum(dims), "the sign of the logvar term: it is - logvar."),
        (0.5 * (mean + logvar.exp() - 1 - logvar).sum(dims), "the mean enters squared: mean**2."),
        (0.5 * (logvar.exp() - 1 - logvar).sum(dims), "you forgot the mean² term."),
        (0.5 * (mean.pow(2) + std.pow(2) - 1 - torch.log(std)).sum(dims),
         "log(variance) = logvar = 2 log(std); you used log(std)."),
    ]
    for value, hint in mistakes:
        if _close(out, value):
            return Verdict(False, f"{WRONG} not yet: {hint}")
    if not torch.isfinite(out).all():
        return Verdict(False, f"{WRONG} the KL contains NaN or inf: logvar is already a log (it can be negative), "
                              f"so do not take its log or sqrt.\n{KL_HINT}")
    return Verdict(False, f"{WRONG} the KL differs from the reference (yours {out.tolist()}, expected "
                          f"{[round(v, 4) for v in expected.tolist()]}).\n{KL_HINT}")


def check_kl(fn: Callable) -> Callable:
    """Print a verdict on the learner's KL; return it if it passes, else the reference."""
    return _check(fn, diagnose_kl, reference_kl)

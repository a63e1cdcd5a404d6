"""Automatic checks for the learners' exercises: a clear pass, or a hint that names the mistake.

Lessons 02-06 and 08 have checked exercises; each is described as data in `latentlab.exercises` (one module
per lesson, kept apart because thirteen exercises with their typical mistakes are too long for this module).
`check_<name>(fn)` runs the learner's function on seeded inputs, prints one verdict and returns the function the
lesson goes on with: the learner's when it passes, latentlab's own otherwise, so "run all" always finishes.
`diagnose_<name>(fn)` returns the verdict without printing.

Every exercise gets the same checks, in this order; the message names the first that fails:
1. it runs (an untouched stub, raising NotImplementedError, is "not done yet", and no answer is shown);
2. it leaves its inputs unchanged (no `+=` or `add_` on the caller's tensors);
3. it gives the same result every call (the randomness comes in as an argument);
4. it returns the same kind of value, shape, dtype and numbers as latentlab's version, on every case;
5. gradients reach the inputs training needs (no .detach(), .item(), numpy round trip or torch.no_grad()).
A wrong value is first compared with the typical mistakes; otherwise the hint grows more specific each
time the learner tries again, in words and math, never as the solution's code.

Longer than most modules (~340 lines) because the five checks and the hints are one procedure, read in order.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from latentlab.exercises import Exercise, lesson02, lesson03, lesson04, lesson05, lesson06, lesson08

PASS, NOT_YET, WRONG = "✅", "⏳", "❌"


@dataclass
class Verdict:
    passed: bool
    message: str  # what the learner reads: the result and, on failure, what is wrong
    problem: str = ""  # which check failed: "not done", "raised", "changed input", "random", "kind", "shape",
    #                    "dtype", "not finite", "mistake", "value" or "gradient"; "" when it passes


_attempts: dict[str, int] = {}  # failed checks so far per exercise: the hint grows more specific with each


def check(exercise: Exercise, fn: Callable) -> Callable:
    """Print the verdict on fn; return fn if it passes, else latentlab's version so the lesson goes on."""
    verdict = diagnose(exercise, fn, attempt=_attempts.get(exercise.name, 0))
    print(verdict.message)
    if verdict.passed:
        _attempts.pop(exercise.name, None)
        return fn
    if verdict.problem != "not done":
        _attempts[exercise.name] = _attempts.get(exercise.name, 0) + 1
        print("   (the lesson goes on with latentlab's version until yours passes)")
    return exercise.reference


def diagnose(exercise: Exercise, fn: Callable, attempt: int = 0) -> Verdict:
    """The verdict on the learner's fn: the first of the checks above that fails, or a pass."""
    with torch.random.fork_rng(devices=[]):  # whatever the checks draw, the learner's random stream stays as it was
        return _diagnose(exercise, fn, attempt)


def _diagnose(exercise: Exercise, fn: Callable, attempt: int) -> Verdict:
    ex, names = exercise, _arg_names(exercise.reference)

    # 1. it runs
    args = ex.cases()[0]
    saved = _copy(args)
    try:
        out = fn(*args)
    except NotImplementedError:
        return Verdict(False, f"{NOT_YET} {ex.name}: not done yet — the lesson goes on with latentlab's version. "
                              "Replace `raise NotImplementedError` in the cell above with your code, then run both "
                              "cells again.", "not done")
    except Exception as err:  # noqa: BLE001 - any error in the learner's code is reported, never raised
        return _fail(ex, "raised", _raised(err), attempt)

    # 2. inputs unchanged
    for name, before, after in zip(names, saved, args):
        if not _identical(before, after):
            return Verdict(False, f"{WRONG} {ex.name}: your function changed its input `{name}` in place (with `+=`, "
                                  "`*=`, or a method ending in `_` such as `add_`). That silently changes the caller's "
                                  "tensor too, and fails on tensors that need gradients: compute a new tensor instead.",
                           "changed input")

    # 3. the same result every call
    try:
        again = fn(*ex.cases()[0])
    except Exception:  # noqa: BLE001 - a function that fails only sometimes is random too
        again = None
    if not _identical(out, again, rtol=1e-5):
        return Verdict(False, f"{WRONG} {ex.name}: two calls with the same inputs gave different results, so your "
                              "function draws random numbers of its own. Use only the arguments you are given: the "
                              "randomness comes in as an argument, so the caller controls it.", "random")

    # 4. values, on every case
    cases = ex.cases()
    for i, case in enumerate(cases):
        where = f" ({ex.case_names[i - 1]})" if i and i - 1 < len(ex.case_names) else ""
        expected = ex.reference(*_copy(case))
        if i:
            try:
                out = fn(*case)
            except Exception as err:  # noqa: BLE001
                return _fail(ex, "raised", _raised(err), attempt, where)
        if _same(out, expected, ex.rtol, ex.atol):
            dtype = _dtype_difference(out, expected)
            if dtype:
                return _fail(ex, "dtype", dtype, attempt, where)
            continue
        for value, what in ex.mistakes(*_copy(case)):
            if _same(out, value, ex.rtol, ex.atol):
                return Verdict(False, f"{WRONG} {ex.name}{where}: not yet — {what}", "mistake")
        return _fail(ex, *_difference(out, expected, ex.rtol, ex.atol), attempt, where)

    # 5. gradients where training needs them
    reached = ""
    if ex.grad:
        problem, targets = _gradient_problem(ex, fn, names)
        if problem:
            return Verdict(False, f"{WRONG} {ex.name}: right values, but {problem}", "gradient")
        reached = f"; gradients reach {' and '.join(targets)}"
    inputs = f"{len(cases)} sets of seeded inputs" if len(cases) > 1 else "seeded inputs"
    return Verdict(True, f"{PASS} {ex.name} passes: the same values as {_reference_name(ex.reference)} on {inputs}; "
                         f"inputs left unchanged; the same result every call{reached}.")


def _fail(ex: Exercise, problem: str, text: str, attempt: int, where: str = "") -> Verdict:
    hint = ex.hints[min(attempt, len(ex.hints) - 1)]
    return Verdict(False, f"{WRONG} {ex.name}{where}: {text}\n   hint: {hint}", problem)


# ---- comparing values


def _same(out: Any, want: Any, rtol: float, atol: float) -> bool:
    """the learner's value equals the reference's: same kind and shape, numbers within tolerance (dtype aside)"""
    if isinstance(want, torch.Tensor):
        return (isinstance(out, torch.Tensor) and out.shape == want.shape
                and bool(torch.allclose(out.detach().double(), want.detach().double(), rtol=rtol, atol=atol)))
    if isinstance(want, (tuple, list)):
        return (isinstance(out, (tuple, list)) and len(out) == len(want)
                and all(_same(o, w, rtol, atol) for o, w in zip(out, want)))
    if isinstance(want, int):
        return isinstance(out, numbers.Integral) and not isinstance(out, bool) and int(out) == want
    number = _as_float(out)
    return number is not None and math.isclose(number, want, rel_tol=rtol, abs_tol=atol)


def _difference(out: Any, want: Any, rtol: float, atol: float, subject: str = "your result") -> tuple[str, str]:
    """(which check, what differs): the kind of value first, then the shape, then the numbers"""
    if out is None:
        return "kind", f"{subject} is None: did you forget the `return`?"
    if isinstance(want, torch.Tensor):
        if not isinstance(out, torch.Tensor):
            number = " Keep it a tensor (no .item(), float() or numpy): a Python number has no gradient." \
                if isinstance(out, numbers.Number) else ""
            return "kind", f"{subject} is {_describe(out)}; the lesson needs {_describe(want, False)}.{number}"
        if out.shape != want.shape:
            return "shape", f"{subject} has shape {tuple(out.shape)}; the lesson needs {tuple(want.shape)}."
        if not torch.isfinite(out).all():
            return "not finite", f"{subject} holds NaN or infinite values (a log or square root of a negative number?)."
        gap = (out.detach().double() - want.detach().double()).abs().max().item()
        return "value", f"{subject} has the right shape, but its values differ from latentlab's (largest difference " \
                        f"{gap:.3g})."
    if isinstance(want, (tuple, list)):
        if not isinstance(out, (tuple, list)) or len(out) != len(want):
            return "kind", f"{subject} is {_describe(out)}; the lesson needs {_describe(want, False)}."
        i = next(i for i, (o, w) in enumerate(zip(out, want)) if not _same(o, w, rtol, atol))
        return _difference(out[i], want[i], rtol, atol, f"item {i} of {subject}")
    if isinstance(want, int):
        if not isinstance(out, numbers.Integral) or isinstance(out, bool):
            return "kind", f"{subject} is {_describe(out)}; the lesson needs a whole number (an int)."
        return "value", f"{subject} is {out}, which is not the number latentlab computes."
    number = _as_float(out)
    if number is None:
        return "kind", f"{subject} is {_describe(out)}; the lesson needs one number."
    if not math.isfinite(number):
        return "not finite", f"{subject} is {number}."
    return "value", f"{subject} is {number:.6g}, which differs from latentlab's value."


def _dtype_difference(out: Any, want: Any) -> str:
    """'' when every tensor has the reference's dtype, else a sentence on the first that does not"""
    if isinstance(want, (tuple, list)):
        return next((d for d in map(_dtype_difference, out, want) if d), "")
    if isinstance(want, torch.Tensor) and out.dtype != want.dtype:
        return (f"the values are right but come back as {out.dtype}, where the lesson works in {want.dtype}: "
                "stay in torch and in that dtype (or convert back before returning).")
    return ""


def _as_float(x: Any) -> float | None:
    if isinstance(x, torch.Tensor) and x.numel() == 1 and x.ndim == 0:
        return float(x)
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    return None


def _describe(x: Any, values: bool = True) -> str:
    """'a tensor of shape (2, 3) (torch.float32)', 'an int (5)', 'a tuple of 2: (...)'; values=False hides numbers"""
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} ({x.dtype})"
    if isinstance(x, (tuple, list)):
        kind = f"a {type(x).__name__} of {len(x)}"
        if x and all(isinstance(v, numbers.Number) for v in x):
            return f"{kind}: {x!r}" if values else f"{kind} numbers ({type(x[0]).__name__})"
        return f"{kind}: ({', '.join(_describe(v, values) for v in x)})"
    if x is None:
        return "None"
    name = type(x).__name__
    article = "an" if name[0] in "aeiou" else "a"
    return f"{article} {name} ({x!r})" if values else f"{article} {name}"


# ---- inputs, randomness and gradients


def _copy(args: tuple) -> tuple:
    """copies to compare against after the call (a module is kept as it is)"""
    return tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a if isinstance(a, nn.Module)
                 else copy.deepcopy(a) for a in args)


def _identical(a: Any, b: Any, rtol: float = 0.0) -> bool:
    """equal to the last bit, or within rtol (some linear algebra is not bit-repeatable); NaN equals NaN here"""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
                and (torch.equal(a, b) or bool(a.is_floating_point() and torch.allclose(
                    a, b, rtol=rtol, atol=rtol * 1e-2, equal_nan=True))))
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_identical(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rtol) or (math.isnan(a) and math.isnan(b))
    return a is b if isinstance(a, nn.Module) else a == b


def _gradient_problem(ex: Exercise, fn: Callable, names: list[str]) -> tuple[str, list[str]]:
    """('', names reached) when the learner's gradients equal latentlab's, else (what is wrong, names)"""
    mine, theirs = list(ex.cases()[0]), list(ex.cases()[0])
    targets, reference_targets = _track(mine, ex.grad, names), _track(theirs, ex.grad, names)
    listed = list(targets)
    try:
        out = fn(*mine)
    except Exception as err:  # noqa: BLE001
        if "numpy" in str(err):
            return ("it leaves torch for numpy, and gradients cannot follow a numpy array: stay in torch from the "
                    "inputs to the result.", listed)
        return f"with inputs that require gradients it raised {type(err).__name__}: {_first_line(err)}", listed
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return (f"its result does not require grad: autograd cannot trace it back to {' and '.join(listed)}. "
                "Something cut the graph: .detach(), .item(), .numpy(), a new torch.tensor(...) built from the "
                "values, or torch.no_grad(). Training needs these gradients.", listed)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * weights).sum().backward()
    (ex.reference(*theirs) * weights).sum().backward()
    for name in listed:
        grads = [t.grad for t in targets[name]]
        if all(g is None or not g.any() for g in grads):
            return (f"no gradient reaches {name}: part of the computation is cut from the graph (.detach(), .item(), "
                    "numpy, or a new tensor built from its values), so training could not change it.", listed)
        wanted = [t.grad for t in reference_targets[name]]
        if not all(g is not None and torch.allclose(g, w, rtol=1e-3, atol=1e-5) for g, w in zip(grads, wanted)):
            return (f"the gradient that reaches {name} differs from latentlab's: part of the computation that "
                    "depends on it is cut from the graph (.detach() or a number taken out with .item()).", listed)
    return "", listed


def _track(args: list, positions: tuple[int, ...], names: list[str]) -> dict[str, list[torch.Tensor]]:
    """make args[i] (i in positions) leaves that require grad -> {name for messages: tensors to read .grad from}"""
    targets = {}
    for i in positions:
        if isinstance(args[i], nn.Module):
            params = list(args[i].parameters())
            for p in params:
                p.grad = None
            targets[f"the parameters of `{names[i]}`"] = params
        else:
            args[i] = args[i].detach().clone().requires_grad_(True)
            targets[f"`{names[i]}`"] = [args[i]]
    return targets


def _arg_names(fn: Callable) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _reference_name(fn: Callable) -> str:
    """how the pass message names the reference: the package function it is, or 'latentlab's version'"""
    if fn.__module__.startswith("latentlab.exercises"):
        return "latentlab's version"
    return f"latentlab's `{fn.__module__.removeprefix('latentlab.')}.{fn.__qualname__}`"


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [""])[0].rstrip(".")


def _raised(err: Exception) -> str:
    """what the learner's exception says, and what a size mismatch usually means"""
    text = f"your function raised {type(err).__name__}: {_first_line(err)}."
    if "must match the size" in str(err) or "shape" in str(err):
        text += " The shapes of two tensors you combine do not fit together: print each one's .shape."
    return text


# ---- the exercises, lesson by lesson: check_<name>(fn) for the notebooks, diagnose_<name>(fn) for tests


def _entry(exercise: Exercise) -> tuple[Callable[[Callable], Callable], Callable[[Callable], Verdict]]:
    def check_fn(fn: Callable) -> Callable:
        return check(exercise, fn)

    def diagnose_fn(fn: Callable) -> Verdict:
        return diagnose(exercise, fn)

    for f, verb in ((check_fn, "check"), (diagnose_fn, "diagnose")):
        f.__name__ = f.__qualname__ = f"{verb}_{exercise.name}"
        f.__doc__ = f"lesson {exercise.lesson}: {verb} the learner's `{exercise.name}` (see latentlab.checks)."
    return check_fn, diagnose_fn


check_reconstruction_error, diagnose_reconstruction_error = _entry(lesson02.RECONSTRUCTION_ERROR)
check_bicubic_size, diagnose_bicubic_size = _entry(lesson02.BICUBIC_SIZE)
check_reparameterize, diagnose_reparameterize = _entry(lesson03.REPARAMETERIZE)
check_kl_divergence, diagnose_kl_divergence = _entry(lesson03.KL)
check_scaling_factor, diagnose_scaling_factor = _entry(lesson03.SCALING_FACTOR)
check_fit_latent_rgb, diagnose_fit_latent_rgb = _entry(lesson04.FIT_LATENT_RGB)
check_latent_to_rgb, diagnose_latent_to_rgb = _entry(lesson04.LATENT_TO_RGB)
check_alphas_cumprod, diagnose_alphas_cumprod = _entry(lesson05.ALPHAS_CUMPROD)
check_q_sample, diagnose_q_sample = _entry(lesson05.Q_SAMPLE)
check_timestep_embedding, diagnose_timestep_embedding = _entry(lesson06.TIMESTEP_EMBEDDING)
check_up_channels, diagnose_up_channels = _entry(lesson06.UP_CHANNELS)
check_epsilon_loss, diagnose_epsilon_loss = _entry(lesson08.EPSILON_LOSS)
check_ddim_step, diagnose_ddim_step = _entry(lesson08.DDIM_STEP)

EXERCISES = [lesson02.RECONSTRUCTION_ERROR, lesson02.BICUBIC_SIZE, lesson03.REPARAMETERIZE, lesson03.KL,
             lesson03.SCALING_FACTOR, lesson04.FIT_LATENT_RGB, lesson04.LATENT_TO_RGB, lesson05.ALPHAS_CUMPROD,
             lesson05.Q_SAMPLE, lesson06.TIMESTEP_EMBEDDING, lesson06.UP_CHANNELS, lesson08.EPSILON_LOSS,
             lesson08.DDIM_STEP]  # every checked exercise of the course, in lesson order

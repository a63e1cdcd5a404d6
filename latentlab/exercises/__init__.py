"""The course's checked exercises, written as data: one module per lesson, run by `latentlab.checks`.

An exercise is what the checker needs to judge a learner's function: latentlab's own version (the reference),
seeded inputs, the typical wrong answers with what each gets wrong, and hints from general to specific.
They live here, apart from `checks`, because thirteen exercises with their mistakes are too long for one module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Mistake = tuple[Any, str]  # (the value a typical wrong answer returns, what it gets wrong: words and math, no code)


@dataclass(frozen=True)
class Exercise:
    """One checked exercise; every field is read by `latentlab.checks.diagnose`."""

    name: str  # the learner's function, as the notebook names it
    lesson: str  # "03"
    reference: Callable  # latentlab's version: the learner's must return the same values
    cases: Callable[[], list[tuple]]  # seeded argument tuples, built fresh on every call (so edits cannot leak)
    mistakes: Callable[..., list[Mistake]]  # typical wrong answers for one case's arguments
    hints: tuple[str, ...]  # for a wrong value no mistake explains: general first, then more specific
    case_names: tuple[str, ...] = ()  # how the message names each case after the first ("with t as one int")
    grad: tuple[int, ...] = ()  # arguments gradients must reach (a module: its parameters); () = not needed
    rtol: float = 1e-4
    atol: float = 1e-5

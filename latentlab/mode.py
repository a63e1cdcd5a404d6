"""Quick mode: one switch (env LATENTLAB_QUICK=1) that shrinks steps and sizes so the whole course runs in CI.

Quick mode never skips a cell: a lesson asks `by_mode(full=2000, quick=20)` and gets the smaller number.
Every lesson imports it and prints which mode it runs in.
"""

import os
from typing import TypeVar

T = TypeVar("T")

ENV_VAR = "LATENTLAB_QUICK"


def quick() -> bool:
    """True when the tests (or an impatient learner) set LATENTLAB_QUICK=1."""
    return os.environ.get(ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def by_mode(full: T, quick: T) -> T:
    """`quick` in quick mode, else `full` (the real lesson)."""
    return quick if _quick() else full


_quick = quick


def describe() -> str:
    """one line for the top of a lesson"""
    if quick():
        return f"quick mode ({ENV_VAR}=1): steps and sizes are shrunk, every cell still runs"
    return f"full mode: the real lesson (set {ENV_VAR}=1 for a fast smoke run)"

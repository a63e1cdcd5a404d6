"""A safe Ctrl-C for training: the first stops the run, later ones wait until its files are written whole.

Python turns Ctrl-C (SIGINT) into a KeyboardInterrupt wherever the program happens to be, so a second Ctrl-C
pressed while the first one's checkpoint and manifest are being written would cut that writing short. Inside
`stop_on_ctrl_c()` the first Ctrl-C still raises KeyboardInterrupt (the run stops at once, even during start-up
or evaluation); every later one is held and only reported. `train.fit` and `latentlab train` use it (lessons 02,
03, 08). `latentlab train` also treats SIGTERM so (`sigterm=True`): what a cluster scheduler sends before it ends a
job, and what `torchrun` and `accelerate launch` pass on to every process when they are stopped, so the run saves a
whole checkpoint and its resume state instead of dying between two periodic checkpoints.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager


class _State:
    installed = False  # our handler is in place
    stopping = False  # a Ctrl-C arrived: the run is stopping, and further Ctrl-C are held
    holding = False  # inside `held()`: Ctrl-C is held even before the first one
    pressed = False  # a Ctrl-C arrived while holding


def _on_ctrl_c(signum, frame) -> None:
    if _State.stopping or _State.holding:
        _State.pressed = True
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"{what}: saving first; the run stops once its files are written whole.", file=sys.stderr)
        return
    _State.stopping = True
    raise KeyboardInterrupt


@contextmanager
def stop_on_ctrl_c(sigterm: bool = False):
    """the first Ctrl-C (and with `sigterm` SIGTERM) inside the block raises KeyboardInterrupt, later ones are held;
    nests (an inner block keeps the outer one's signals); main thread only"""
    usable = threading.current_thread() is threading.main_thread()
    wanted = [signal.SIGINT] + ([signal.SIGTERM] if sigterm else [])
    ours = [number for number in wanted if usable and signal.getsignal(number) is not signal.SIG_IGN]
    if _State.installed or not ours:  # e.g. `nohup ... &` ignores SIGINT, yet a SIGTERM must still save
        yield  # already in force (an outer block), or no signal of ours can reach us (another thread, or ignored)
        return
    previous = {number: signal.signal(number, _on_ctrl_c) for number in ours}
    _State.installed, _State.stopping, _State.holding, _State.pressed = True, False, False, False
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _State.installed = _State.stopping = _State.holding = _State.pressed = False


@contextmanager
def held():
    """Ctrl-C inside the block is held until the block ends (a save runs to the end); then `stopping()` says if one came"""
    if not _State.installed:
        yield
        return
    outer, _State.holding = _State.holding, True
    try:
        yield
    finally:
        _State.holding = outer
        _State.stopping = _State.stopping or _State.pressed


def stopping() -> bool:
    """True once a Ctrl-C (or a KeyboardInterrupt noted with `note_interrupt`) has stopped the run"""
    return _State.stopping


def pressed() -> bool:
    """True once a Ctrl-C arrived, even one still held by `held()`: a loop of several processes polls this"""
    return _State.stopping or _State.pressed


def note_interrupt() -> None:
    """a KeyboardInterrupt was caught: from now on Ctrl-C is held, so the saving that follows runs to the end"""
    if _State.installed:
        _State.stopping = True

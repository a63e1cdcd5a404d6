"""latentlab.interrupts: inside `latentlab train` a SIGTERM (a scheduler's, or torchrun's on shutdown) stops the run
like Ctrl-C, a second one waits for the save, and the handlers in place before come back; the lessons' own blocks
leave SIGTERM alone."""

import signal
import time

import pytest

from latentlab.interrupts import held, pressed, stop_on_ctrl_c, stopping


def _guard(signum, frame):
    raise AssertionError("SIGTERM reached the handler in place before the block")


def _send(signum):
    signal.raise_signal(signum)
    time.sleep(0.01)  # Python runs the handler at the next bytecode boundary


def test_sigterm_stops_like_ctrl_c_then_is_held_and_the_old_handler_comes_back(capsys):
    before = signal.signal(signal.SIGTERM, _guard)
    try:
        with stop_on_ctrl_c(sigterm=True):
            with pytest.raises(KeyboardInterrupt):
                _send(signal.SIGTERM)
            assert stopping() and pressed()
            with held():
                _send(signal.SIGTERM)  # a second one, while the files are written: held, only reported
            assert "SIGTERM: saving first" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGTERM) is _guard and not stopping()
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_block_without_sigterm_leaves_it_alone_and_an_inner_block_keeps_the_outer_ones():
    before = signal.signal(signal.SIGTERM, _guard)
    try:
        with stop_on_ctrl_c():  # what train.fit installs when a lesson calls it
            assert signal.getsignal(signal.SIGTERM) is _guard
        with stop_on_ctrl_c(sigterm=True):
            with stop_on_ctrl_c():  # fit inside `latentlab train`: the job's SIGTERM handler stays
                assert signal.getsignal(signal.SIGTERM) is not _guard
                with pytest.raises(KeyboardInterrupt):
                    _send(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is _guard
    finally:
        signal.signal(signal.SIGTERM, before)

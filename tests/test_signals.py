"""Signals become an exception naming them, and bookkeeping can hold them back."""

from __future__ import annotations

import os
import signal

import pytest

from autodistill.errors import Interrupted
from autodistill.signals import deferred, interrupts_as_exceptions


def test_sigterm_raises_interrupted_naming_it():
    with pytest.raises(Interrupted) as caught, interrupts_as_exceptions():
        os.kill(os.getpid(), signal.SIGTERM)
    assert caught.value.signal_name == "SIGTERM"


def test_a_signal_inside_deferred_waits_for_the_block_to_end():
    done = []
    with pytest.raises(Interrupted) as caught, interrupts_as_exceptions():
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)  # a second one is not raised twice
            done.append("bookkeeping finished")
        done.append("never reached")
    assert done == ["bookkeeping finished"]
    assert caught.value.signal_name == "SIGINT"


def test_the_previous_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with interrupts_as_exceptions():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before

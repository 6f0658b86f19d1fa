"""Ctrl-C and SIGTERM as an exception naming the signal, which bookkeeping can hold back.

A worker must never be cut between failing a trial and queueing it again: ``deferred()`` holds
a signal that arrives inside it and raises it when the block ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from autodistill.errors import Interrupted

_state = threading.local()


@contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``) and SIGINT (Ctrl-C) raise ``Interrupted`` naming the
    signal, so the running trial is recorded and queued again before the process ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if getattr(_state, "depth", 0):
            _state.pending = getattr(_state, "pending", None) or name
            return
        raise Interrupted(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold back an interruption until the block ends; then raise it."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
        pending = getattr(_state, "pending", None)
        if _state.depth == 0 and pending is not None:
            _state.pending = None
            raise Interrupted(pending)

"""Errors a user causes (one line, exit status 2) and interruptions they ask for."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: says what was wrong and what would be right.

    Internal bugs never use this type; they raise ordinary exceptions with tracebacks.
    """


class Crashed(RuntimeError):
    """A command's child process died from a signal (a native crash): the message names the
    signal, the student and stage, and what to run to resume."""


class Interrupted(KeyboardInterrupt):
    """The user stopped the process (Ctrl-C, SIGINT, or SIGTERM from a scheduler)."""

    def __init__(self, signal_name: str = "SIGINT") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none: what a
    one-line error quotes of an error from a library."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

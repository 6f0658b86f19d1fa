"""The one error type a user can cause; the CLI prints it as one line and exits with status 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: says what was wrong and what would be right.

    Internal bugs never use this type; they raise ordinary exceptions with tracebacks.
    """

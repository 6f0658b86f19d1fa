"""Progress of long work, reported through a callback: the library never draws a bar itself."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Told how far a task has come; the CLI draws it as a progress bar, a notebook may log it.

    ``task`` names the work ("teacher resnet18", "trials"); ``done`` of ``total`` ``unit``s are
    finished; ``note`` is a few words to show beside it (the running front). A task is over when
    ``done == total``.
    """

    def __call__(
        self, task: str, done: int, total: int, *, unit: str = "", note: str = ""
    ) -> None: ...


def silent(task: str, done: int, total: int, *, unit: str = "", note: str = "") -> None:
    """The default: report nothing."""

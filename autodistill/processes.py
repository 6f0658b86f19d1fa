"""Child processes that survive what kills them: where they come from, what they inherit, how
they end with their parent, and how a death by signal is named.

Children start from a fork server that has imported torch but never run it: a fork of a process
whose OpenMP threads ran hangs in the child, and a fresh interpreter per child costs seconds.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

_PRELOAD = ["torch", "autodistill.study.workers", "autodistill.ship"]


def process_context() -> multiprocessing.context.BaseContext:
    """Where child processes come from: the fork server (imports done once), or spawn where the
    platform has no fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def start(process: multiprocessing.process.BaseProcess) -> None:
    """Start ``process`` without its child importing the caller's ``__main__`` again: a
    user's script that calls the API without an ``if __name__ == "__main__"`` guard would
    otherwise run again in every child. Children run autodistill's functions only."""
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    for key in saved:
        setattr(main, key, None)
    try:
        process.start()
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def warm_up() -> None:
    """Start the fork server now, so that its imports (seconds on a small CPU) overlap with
    what the caller does before its first child."""
    ctx = process_context()
    if ctx.get_start_method() == "forkserver":
        import multiprocessing.forkserver

        multiprocessing.forkserver.ensure_running()


def inherited() -> dict[str, Any]:
    """What a child takes from the process that starts it, beyond its arguments: the fork
    server was started once, with the environment of that moment; the log level; and who the
    parent is, to end with it."""
    return {
        "env": dict(os.environ),
        "level": logging.getLogger().getEffectiveLevel(),
        "parent": os.getpid(),
    }


def adopt(inheritance: dict[str, Any], log_format: str) -> None:
    """In a child: take the parent's environment and log level, and end with the parent."""
    os.environ.clear()
    os.environ.update(inheritance["env"])
    logging.basicConfig(level=inheritance["level"], format=log_format)
    die_with(inheritance["parent"])


def die_with(parent: int, interval_s: float = 0.5) -> None:
    """End this process, as abruptly as ``parent`` ended, once it is gone (a SIGKILL of the
    command; the fork server a child comes from outlives it): what this process was running is
    then recovered as any dead worker's is, rather than finished by an orphan."""

    def watch() -> None:
        while alive(parent):
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="autodistill-orphan-watch", daemon=True).start()


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists and has not ended unreaped (a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: it exists


def signal_text(exitcode: int) -> str:
    """'SIGSEGV (segmentation fault)' for a process that ended with ``-11``."""
    try:
        sig = signal.Signals(-exitcode)
    except ValueError:
        return f"signal {-exitcode}"
    return f"{sig.name} ({(signal.strsignal(sig) or sig.name).lower()})"

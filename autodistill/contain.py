"""A command's work in a child process, so that a native crash is said in one line, not a glibc
message: ``train`` and ``compress`` run their students here (the search has its supervisor).

The child reports progress to the parent, which draws it and remembers the last step, so a
crash can name the student and stage that died.
"""

from __future__ import annotations

import multiprocessing.connection
import traceback
from collections.abc import Callable
from typing import Any

import torch

from autodistill.errors import Crashed, Interrupted, UserError
from autodistill.processes import adopt, inherited, process_context, signal_text, start
from autodistill.progress import Progress, silent
from autodistill.signals import interrupts_as_exceptions

STOP_TIMEOUT_S = 120  # how long an interrupted child may take to save its state and leave


def run_contained(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    *,
    command: str,
    threads: int,
    progress: Progress = silent,
) -> Any:
    """``fn(**kwargs, progress=...)`` in a child process with ``threads`` torch threads;
    returns what it returns and raises what it raises. Ctrl-C or SIGTERM stops the child the
    same way and re-raises.

    Raises:
        Crashed: the child died from a signal (``command`` names what to run again).
    """
    ctx = process_context()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(fn, kwargs, send, inherited(), threads), name=command)
    start(child)
    send.close()
    last: tuple[str, int, int] | None = None
    try:
        with interrupts_as_exceptions():
            while True:
                multiprocessing.connection.wait([receive, child.sentinel])
                try:
                    kind, payload = receive.recv() if receive.poll() else ("", None)
                except EOFError:
                    kind, payload = "", None
                if kind == "progress":
                    task, done, total, kw = payload
                    last = (task, done, total)
                    progress(task, done, total, **kw)
                elif kind == "result":
                    child.join()
                    return payload
                elif kind == "error":
                    child.join()
                    raise payload
                elif child.exitcode is not None or (kind == "" and not child.is_alive()):
                    child.join()
                    break
    except BaseException:  # Ctrl-C, SIGTERM, or the progress callback raising: stop the child
        if child.is_alive():
            child.terminate()  # SIGTERM: it keeps what it finished, as the command would
            child.join(timeout=STOP_TIMEOUT_S)
        raise
    raise Crashed(_crash_line(command, child.exitcode, last))


def _crash_line(command: str, exitcode: int | None, last: tuple[str, int, int] | None) -> str:
    how = signal_text(exitcode) if exitcode is not None and exitcode < 0 else f"status {exitcode}"
    where = f" in {last[0]} ({last[1]} of {last[2]} done)" if last else ""
    return (
        f"{command}: its process died from {how}{where}; what finished is kept (students, "
        f"epochs, stages): run the same command to resume"
    )


def _child(
    fn: Callable[..., Any], kwargs: dict[str, Any], send: Any, inheritance: dict, threads: int
) -> None:
    adopt(inheritance, "%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(threads)

    def report(task: str, done: int, total: int, **kw: Any) -> None:
        send.send(("progress", (task, done, total, kw)))

    try:
        with interrupts_as_exceptions():
            result = fn(**kwargs, progress=report)
    except Interrupted as exc:
        send.send(("error", Interrupted(exc.signal_name)))
        return
    except Exception as exc:  # noqa: BLE001 - the parent raises it
        if not isinstance(exc, UserError):  # a bug: its traceback is here, not in the parent
            traceback.print_exc()
        try:
            send.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that cannot be pickled: say what it was
            send.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        return
    send.send(("result", result))

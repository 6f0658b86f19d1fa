"""Local worker processes, supervised: a trial that kills its process does not end the search.

A native crash (a segmentation fault in a CPU kernel, heap corruption, an abort in a runtime, the
out-of-memory killer) ends the interpreter it happens in, with no exception to catch. So the
search runs its trials in worker processes, even with one worker, and this supervisor watches
them: a worker that dies from a signal has its trial recorded as crashed, naming the signal and
the candidate, run once more (a crash may be the machine's, not the candidate's), and never a
third time; a new worker takes its place and the search goes on to its budget.

Workers start as ``autodistill.processes`` says.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import socket
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from autodistill.errors import Interrupted
from autodistill.processes import signal_text
from autodistill.signals import deferred
from autodistill.study import private
from autodistill.study.record import ARCH, CANDIDATE, CRASHED, FAILURE, WORKER, get, put_stored
from autodistill.study.storage import claim, parse_worker, retry

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 120  # how long an interrupted worker may take to record its trial and leave
INTERRUPTED = 130  # a worker's exit status after Ctrl-C or SIGTERM, its trial queued again
MAX_CRASHES = 2  # a candidate whose worker crashes this many times is not tried again
FRUITLESS_RESTARTS = 3  # workers in a row that die before running any trial: give up


def supervise(
    study: optuna.Study,
    jobs: int,
    start: Callable[[int], multiprocessing.process.BaseProcess],
    *,
    on_progress: Callable[[], None],
) -> int:
    """Keep ``jobs`` workers (``start(index)`` starts one) running until each has ended by
    itself; returns how many trials crashed their worker.

    ``on_progress`` is called about once a second. Ctrl-C or SIGTERM stops the workers the same
    way (each records and queues its running trial) and re-raises.
    """
    procs = {i: start(i) for i in range(jobs)}
    ended: dict[int, int] = {}  # worker index -> how its last process ended
    crashed, fruitless = 0, 0
    try:
        while procs:
            multiprocessing.connection.wait([p.sentinel for p in procs.values()], 1.0)
            on_progress()
            for index, p in list(procs.items()):
                if p.exitcode is None:
                    continue
                del procs[index]
                ended[index] = p.exitcode
                if p.exitcode == 0:
                    continue
                if p.exitcode == INTERRUPTED:
                    log.warning(
                        "worker-%d (pid %s) was interrupted; its trial is queued again",
                        index,
                        p.pid,
                    )
                    continue
                if p.exitcode > 0:  # a Python error: the worker said why; it would say so again
                    log.warning(
                        "worker-%d (pid %s) ended with status %s; the others go on "
                        "and run its trial again",
                        index,
                        p.pid,
                        p.exitcode,
                    )
                    continue
                lost = record_crash(study, p.pid, p.exitcode)
                crashed += len(lost)
                fruitless = 0 if lost else fruitless + 1
                if fruitless >= FRUITLESS_RESTARTS:
                    raise RuntimeError(
                        f"{fruitless} workers in a row died of a signal before "
                        f"running a trial (the last {signal_text(p.exitcode)}); "
                        "see their messages above"
                    )
                procs[index] = start(index)
    except BaseException:  # Ctrl-C, SIGTERM, or an error here: no worker goes on unsupervised
        for p in procs.values():
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker records and queues its trial
        for p in procs.values():
            p.join(timeout=STOP_TIMEOUT_S)
        raise
    on_progress()
    if all(code != 0 for code in ended.values()) and INTERRUPTED in ended.values():
        raise Interrupted("SIGTERM")  # its workers were stopped, as if it had been
    if all(code != 0 for code in ended.values()):
        raise RuntimeError(
            f"all {jobs} workers failed (exit statuses {sorted(ended.values())}); "
            "see their messages above"
        )
    return crashed


def record_crash(study: optuna.Study, pid: int, exitcode: int) -> list[int]:
    """Record the trials of the worker ``pid`` of this host, which died with ``exitcode`` (a
    signal), as crashed; each runs again unless its candidate crashed before. Returns their
    numbers."""
    how = signal_text(exitcode)
    lost = []
    with deferred(), claim(private.storage_of(study), study.study_name):
        trials = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in trials}
        for t in trials:
            if t.state != TrialState.RUNNING or not _ran_in(t, pid):
                continue
            lost.append(t.number)
            earlier = [
                by_number[n] for n in t.system_attrs.get("retry_history", []) if n in by_number
            ]
            crashes = 1 + sum(bool(get(e, CRASHED)) for e in earlier)
            reason = f"its worker (pid {pid}) was killed by {how} while it ran {_candidate(t)}"
            put_stored(study, t, {CRASHED: how.split()[0]})
            if crashes >= MAX_CRASHES:
                why = f"{reason}; it crashed {crashes} times, so it is not tried again"
                put_stored(study, t, {FAILURE: why})
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            else:
                retry(study, t.number, reason)
            log.warning("trial %d: %s", t.number, reason)
    return lost


def _ran_in(trial: FrozenTrial, pid: int) -> bool:
    host, worker_pid, _ = parse_worker(str(get(trial, WORKER) or ""))
    return host == socket.gethostname() and worker_pid == str(pid)


def _candidate(trial: FrozenTrial) -> str:
    loss = (get(trial, CANDIDATE) or {}).get("loss")
    if get(trial, ARCH):
        return f"trial {trial.number}, {get(trial, ARCH)}" + (f" with {loss}" if loss else "")
    params = ", ".join(f"{k}={v}" for k, v in sorted(trial.params.items()))
    return f"trial {trial.number} ({params or 'not sampled yet'})"

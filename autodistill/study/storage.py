"""Where a study lives, and what lets several workers share it: claims, heartbeats, stale trials.

The storage is the single source of truth. Workers coordinate through it and through one lock
per study (``claim``) held only while a trial is created, so a shared budget is never
overshot. A worker proves it is alive through Optuna's heartbeat on a database, or, on the
embedded journal file, by its process on this host: its id and its start time, so a process
that merely reuses the id (after a container restart) is not taken for it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import threading
import time
import warnings
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from autodistill.config import HEARTBEAT_S, mask_url
from autodistill.errors import UserError, first_line
from autodistill.files import atomic_path
from autodistill.study import private
from autodistill.study.database import (
    RECONNECT_S,
    advisory_lock,
    lost_a_race,
    reconnecting,
    retrying,
)
from autodistill.study.record import FAILURE, put_stored
from autodistill.study.record import worker as record_worker

log = logging.getLogger(__name__)
DEFAULT_STORAGE_FILE = "study.journal"

GRACE = 3
MAX_RETRIES = 2  # a candidate that kills its worker every time (out of memory) stops there


def quiet_optuna_logs() -> None:
    """Optuna's own log lines (a study created, a trial failed with a traceback) silenced: the
    search logs every failure once, with its reason. For programs (the CLI, a worker process)
    to call; the library never changes logging itself."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)


@contextmanager
def quiet_experimental() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


with quiet_experimental():
    RETRY = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)


def open_storage(url: str | None, run_dir: Path, *, heartbeat_s: int = HEARTBEAT_S) -> BaseStorage:
    """The run's embedded journal file by default; a database URL or journal path otherwise.

    A database gets a heartbeat: a trial whose worker stops beating for ``GRACE *
    heartbeat_s`` seconds is failed and queued again with the same parameters.
    """
    if url is None:
        return _journal(Path(run_dir) / DEFAULT_STORAGE_FILE)
    if "://" not in url:
        path = Path(url)
        if not path.parent.is_dir():
            raise UserError(
                f"storage {url!r}: folder {path.parent} does not exist; create "
                "it, or choose another --storage"
            )
        return _journal(path)
    try:
        return reconnecting(_rdb(url, heartbeat_s))
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many types for a bad URL
        first = first_line(exc)
        password = url.split("://", 1)[1].split("@", 1)[0].partition(":")[2] if "@" in url else ""
        if password:
            first = first.replace(password, "***")
        raise UserError(
            f"cannot open storage {mask_url(url)!r}: {first}; check the URL, that the "
            "database server is running, and that its driver is installed "
            "(pip install -e '.[postgres]' for PostgreSQL)"
        ) from None


def _rdb(url: str, heartbeat_s: int) -> RDBStorage:
    """The database storage. Workers that start together on a new database race to create its
    tables; the losers find them made and try again."""
    # A connection the server dropped (a restart) is replaced, not used.
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        # A worker stopped mid-transaction (SIGSTOP, a frozen VM) would hold its row locks, and
        # every other worker would wait on them; the server ends such a transaction once it has
        # been idle as long as a heartbeat may be silent, and the others go on.
        idle_ms = GRACE * heartbeat_s * 1000
        engine["connect_args"] = {"options": f"-c idle_in_transaction_session_timeout={idle_ms}"}
    for attempt in range(3):
        try:
            with quiet_experimental():
                return RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_s,
                    grace_period=GRACE * heartbeat_s,
                    heartbeat_stale_trial_callback=RETRY,
                    engine_kwargs=engine,
                )
        except Exception as exc:
            if attempt == 2 or not lost_a_race(exc):
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _journal(path: Path) -> JournalStorage:
    """The journal file at ``path``, repaired first if a write into it was cut off."""
    if path.is_file():
        lock = JournalFileSymlinkLock(str(path))  # the lock Optuna's own appends take
        while not lock.acquire():
            pass
        try:
            repair_journal(path)
        finally:
            lock.release()
    return JournalStorage(JournalFileBackend(str(path)))


def repair_journal(path: Path) -> int:
    """Drop the damage a cut-off write leaves in a journal file; returns the records dropped.

    A write cut off (a full disk, a killed copy) leaves a last line without its newline; the
    next append then glues a good record onto it, and from then on Optuna cannot read the
    file. Each damaged line is dropped, keeping a good record glued onto its end, and the user
    is told in one line. Finished trials stay: their records come before the damage.
    """
    data = path.read_bytes()
    kept: list[bytes] = []
    dropped = 0
    for line in data.splitlines(keepends=True):
        if line.endswith(b"\n") and _parses(line):
            kept.append(line)
            continue
        dropped += 1
        start = line.find(b'{"op_code"', 1)
        while start != -1:  # a good record glued onto a torn one
            if line.endswith(b"\n") and _parses(line[start:]):
                kept.append(line[start:])
                break
            start = line.find(b'{"op_code"', start + 1)
    if dropped:
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"".join(kept))
        log.warning(
            "study journal %s: dropped %d damaged record(s) left by a cut-off write; "
            "the trials recorded before it are kept",
            path,
            dropped,
        )
    return dropped


def _parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def worker_id() -> str:
    """This process, as recorded on the trials it runs: ``host:pid:start``, its start time in
    clock ticks after boot (``host:pid`` where the system does not say)."""
    start = _start_ticks(os.getpid())
    return f"{socket.gethostname()}:{os.getpid()}" + (f":{start}" if start else "")


def _start_ticks(pid: int) -> str | None:
    """When process ``pid`` started (Linux: field 22 of /proc/PID/stat), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@contextmanager
def claim(storage: BaseStorage, study_name: str) -> Iterator[None]:
    """Hold the study's claim lock: one worker at a time counts the trials and creates one.

    A journal file or SQLite database is locked with a file beside it; PostgreSQL with a
    session advisory lock, which the server releases if the worker dies holding it.
    """
    backend = private.backend(storage)
    path = _lock_file(backend)
    if path is not None:
        with FileLock(f"{path}.claim.lock"):
            yield
        return
    if isinstance(backend, RDBStorage) and backend.engine.dialect.name == "postgresql":
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text

        key = zlib.crc32(f"autodistill:{study_name}".encode())

        def connect_and_lock() -> tuple[Any, bool]:
            conn = backend.engine.connect()
            try:
                locked = advisory_lock(conn, key, _claim_patience(backend), study_name)
            except BaseException:
                conn.close()
                raise
            if locked:
                _STUCK.discard(backend)
            else:
                _STUCK.add(backend)
            return conn, locked

        # A server restart costs a pause here too, as in every other storage call.
        conn, locked = retrying(connect_and_lock, RECONNECT_S)()
        with conn:
            try:
                yield
            finally:
                # A server restart meanwhile ended the session, and with it the lock.
                with suppress(sa_exc.OperationalError, sa_exc.InterfaceError):
                    if locked:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    log.warning("no claim lock for this storage: several workers may overshoot the budget")
    yield


# Database storages whose last claim waited in vain (a paused worker holds the lock).
_STUCK: weakref.WeakSet[BaseStorage] = weakref.WeakSet()


def _claim_patience(backend: RDBStorage) -> float:
    """How long to wait for a claim: a worker holds it for a moment, so one that holds it this
    long is paused (SIGSTOP, a suspended VM) and would block every other worker. Once one
    claim has waited that long in vain, the next ones wait a moment only, until the lock is
    taken again."""
    if backend in _STUCK:
        return 1.0
    return max(10.0, 2.0 * GRACE * (backend.get_heartbeat_interval() or HEARTBEAT_S))


def _lock_file(backend: BaseStorage) -> str | None:
    if isinstance(backend, JournalStorage):
        return private.journal_file(backend)
    if isinstance(backend, RDBStorage) and backend.engine.dialect.name == "sqlite":
        return backend.engine.url.database
    return None


def has_heartbeat(storage: BaseStorage) -> bool:
    backend = private.backend(storage)
    return isinstance(backend, RDBStorage) and backend.get_heartbeat_interval() is not None


@contextmanager
def heartbeat(storage: BaseStorage, trial_id: int) -> Iterator[None]:
    """Beat for ``trial_id`` from a background thread while the trial runs (databases only)."""
    backend = private.backend(storage)
    if not has_heartbeat(storage):
        yield
        return
    interval = backend.get_heartbeat_interval()
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                backend.record_heartbeat(trial_id)
            except Exception as exc:  # noqa: BLE001 - a lost beat is retried, never fatal
                log.warning("heartbeat for trial id %d failed: %s", trial_id, exc)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="autodistill-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def recover_stale(study: optuna.Study) -> None:
    """Fail trials whose worker died and queue each again with the same parameters.

    On a database the heartbeat decides; on a journal file, a trial is stale when its worker
    ran on this host and its process is gone.
    """
    if has_heartbeat(private.storage_of(study)):
        optuna.storages.fail_stale_trials(study)
        _clear_inherited(study)
        return
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _dead_here(t):
            retry(study, t.number, f"its worker {record_worker(t) or '?'} stopped")


def retry(study: optuna.Study, number: int, reason: str) -> None:
    """Fail a running trial with ``reason`` and queue it again with the same parameters
    (unless it already finished: another worker judged it stale first)."""
    storage = private.storage_of(study)
    trial_id = storage.get_trial_id_from_study_id_trial_number(private.study_id(study), number)
    if storage.get_trial(trial_id).state != TrialState.RUNNING:
        return
    storage.set_trial_user_attr(trial_id, FAILURE, reason)
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    # A copy: the journal storage hands out its cached trial, whose retry history the
    # callback would otherwise extend in place.
    with quiet_experimental():
        RETRY(study, copy.deepcopy(storage.get_trial(trial_id)))
    _clear_inherited(study)


def beat_once(storage: BaseStorage, trial_id: int) -> None:
    """A first heartbeat at once: a trial without one is never found stale by Optuna."""
    if has_heartbeat(storage):
        private.backend(storage).record_heartbeat(trial_id)


def _clear_inherited(study: optuna.Study) -> None:
    """A queued copy inherits its failed attempt's attributes (worker, reason, accuracy at a
    rung, ...); they were the attempt's, so they go. Its parameters stay."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        put_stored(
            study, t, {key: None for key, value in t.user_attrs.items() if value is not None}
        )


def retries(trials: list[FrozenTrial]) -> dict[int, int]:
    """Failed trial number -> the number of the trial that runs it again."""
    return {
        t.system_attrs["retry_history"][-1]: t.number
        for t in trials
        if t.system_attrs.get("retry_history")
    }


def _dead_here(trial: FrozenTrial) -> bool:
    """Whether the trial's worker ran on this host and its process no longer exists.

    A running trial with no worker recorded was left by a version that ran one process only.
    """
    worker = record_worker(trial)
    if not worker or worker == worker_id():  # this process runs one trial at a time
        return True
    host, pid, start = parse_worker(str(worker))
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's live process
        return start is not None and _start_ticks(int(pid)) not in (None, start)
    if start is not None and _start_ticks(int(pid)) != start:
        return True  # the id was reused: another process, started later
    return _zombie(int(pid))


def parse_worker(worker: str) -> tuple[str, str, str | None]:
    """``host:pid:start`` (or ``host:pid``, as older versions wrote) split up."""
    parts = worker.split(":")
    if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit():
        return ":".join(parts[:-2]), parts[-2], parts[-1]
    host, _, pid = worker.rpartition(":")
    return host, pid, None


def _zombie(pid: int) -> bool:
    """A process that ended but was not reaped yet still answers ``kill(pid, 0)``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def liveness_known(storage: BaseStorage, trial: FrozenTrial) -> bool:
    """Whether this worker can tell if ``trial``'s worker dies (so waiting on it is safe)."""
    if has_heartbeat(storage):
        return True
    host, _, _ = parse_worker(str(record_worker(trial) or ""))
    return host == socket.gethostname()

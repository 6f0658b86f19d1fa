"""A database that goes away and comes back: which errors mean that, and retrying through them.

A server restart mid-search costs a pause, not the workers: every storage call a worker makes
is retried while the database is unreachable, and the claim lock is taken with a patience, so
a paused worker holding it does not block the others for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from optuna.storages import RDBStorage

log = logging.getLogger(__name__)

RECONNECT_S = 120  # how long a worker retries a database that went away (a server restart)
# The storage calls a worker makes (through Optuna's cache, too): retried while reconnecting.
_DB_CALLS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "_create_new_trial",
    "set_trial_param",
    "_set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "_get_trials",
    "_get_best_trial_id",
    "record_heartbeat",
    "_get_stale_trial_ids",
)


def lost_a_race(exc: BaseException) -> bool:
    text = str(exc)
    return "already exists" in text or "duplicate key value" in text


def reconnecting(storage: RDBStorage, patience_s: float = RECONNECT_S) -> RDBStorage:
    """``storage`` with each call a worker makes retried while the database is unreachable,
    for up to ``patience_s``: a server restart mid-search costs a pause, not the workers."""
    for name in _DB_CALLS:
        setattr(storage, name, retrying(getattr(storage, name), patience_s))
    return storage


def retrying(call: Callable[..., object], patience_s: float) -> Callable[..., object]:
    def retried(*args: object, **kwargs: object) -> object:
        deadline, said = time.monotonic() + patience_s, False
        while True:
            try:
                return call(*args, **kwargs)
            except Exception as exc:
                if not connection_lost(exc) or time.monotonic() > deadline:
                    raise
                if not said:
                    log.warning(
                        "lost the database connection (%s); retrying for up to %.0f s",
                        first_line(exc),
                        patience_s,
                    )
                    said = True
                time.sleep(1.0)

    return retried


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the database going away, not a bad request."""
    from sqlalchemy import exc as sa

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sa.OperationalError | sa.InterfaceError):
            # Not every OperationalError is the server going away (a missing table, a full
            # disk, a cancelled query): those are raised at once.
            text = str(seen).lower()
            return any(s in text for s in _GONE)
        seen = seen.__cause__ or seen.__context__
    return False


_GONE = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "connection is closed",
    "the database system is",
    "connection timed out",
    "consuming input failed",
    "lost connection",
    "ssl syscall error",
    "no connection to the server",
)


def first_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0][:160]


def advisory_lock(conn: Any, key: int, patience_s: float, study_name: str) -> bool:
    """Take PostgreSQL's advisory lock ``key``; False (with a warning) if it stays taken."""
    from sqlalchemy import text

    deadline = time.monotonic() + patience_s
    while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
        if time.monotonic() > deadline:
            log.warning(
                "the claim lock of study %r has been held for %.0f s by a worker that "
                "does not let go (paused?); going on without it: the budget may be "
                "overshot by a trial",
                study_name,
                patience_s,
            )
            return False
        time.sleep(0.2)
    return True

"""Many workers on one study, under faults: exactly the budget runs, nothing twice, nothing lost.

The tests marked ``faults`` run real worker processes and kill, stop or restart things under
them; they take about two minutes, so plain ``pytest`` leaves them out and ``pytest -m faults``
(CI runs both) runs them.

Workers are real ``autodistill search`` processes. The database tests need a PostgreSQL server
(``.ci/run`` starts one on loopback and sets ``AUTODISTILL_TEST_POSTGRES``); in CI they never skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from autodistill import study as search

POSTGRES = os.environ.get("AUTODISTILL_TEST_POSTGRES")
BUDGET = 8
SPACE = """\
description: tiny ResNets for the worker tests (a continuous lr, so no two samples coincide)
families:
  resnet:
    stem_stride: 1
    depths: {low: 1, high: 2, per_stage: 4}
    width: {choices: [8, 16]}
distill:
  kd: {temperature: {low: 1.0, high: 6.0}, alpha: 0.5}
train:
  lr: {low: 0.002, high: 0.02, log: true}
"""


def _command(tmp_path: Path, *extra: str, budget: int = BUDGET, epochs: int = 2) -> list[str]:
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    return [
        sys.executable,
        "-m",
        "autodistill.cli",
        "search",
        "--data",
        "digits",
        "--space",
        str(space),
        "--budget",
        str(budget),
        "--epochs",
        str(epochs),
        "--teacher",
        "test_resnet",
        "--teacher-epochs",
        "1",
        "--views",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        *extra,
    ]


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _kill_mid_trial(
    storage, name: str, procs: list[subprocess.Popen], *, children: bool, sig: int = signal.SIGKILL
) -> int:
    """Send ``sig`` to a worker while its trial trains: one of ``procs`` (the search that
    supervises the worker process running the trial), or that worker process itself
    (``children``); returns the trial's number."""
    pids = None if children else {p.pid for p in procs}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a worker ended before the kill"
        time.sleep(0.3)
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        except KeyError:  # the study does not exist yet
            continue
        # The youngest trial past its first ones (the teacher is built) that has started
        # training: it has the most of its training still ahead when the kill lands.
        running = [
            t
            for t in trials
            if t.state == TrialState.RUNNING
            and t.number >= 2
            and t.user_attrs.get("arch")
            and t.user_attrs.get("worker")
        ]
        for t in sorted(running, key=lambda t: t.datetime_start, reverse=True):
            pid = int(str(t.user_attrs["worker"]).split(":")[1])  # host:pid:start
            target = pid if pids is None else next((p for p in _lineage(pid) if p in pids), None)
            if target is not None:
                os.kill(target, sig)
                return t.number
    raise AssertionError("no trial was seen running")


def _journal_of(tmp_path: Path, parent: subprocess.Popen, log: Path):
    """The storage of the search ``parent`` runs, once its journal exists."""
    journal = tmp_path / "out" / "digits-tiny" / "study.journal"
    deadline = time.monotonic() + 240
    while not journal.exists() and time.monotonic() < deadline:
        assert parent.poll() is None, log.read_text()
        time.sleep(0.3)
    return search.open_storage(str(journal), tmp_path)


def _lineage(pid: int) -> list[int]:
    """``pid`` and the processes it descends from (a worker: its fork server, the search)."""
    out = [pid]
    for _ in range(4):
        try:
            out.append(int(Path(f"/proc/{out[-1]}/stat").read_text().rsplit(")", 1)[1].split()[1]))
        except (OSError, IndexError, ValueError):
            break
    return out


def _worker_pid(study: optuna.Study, number: int) -> int:
    return int(str(study.trials[number].user_attrs["worker"]).split(":")[1])


def _check(
    study: optuna.Study,
    killed: int,
    logs: list[Path],
    budget: int = BUDGET,
    reason: str = "stopped",
) -> None:
    """Exactly ``budget`` trials with a result, each parameter set once; the killed trial reran."""
    trials = study.get_trials()
    text = "\n".join(p.read_text() for p in logs)
    assert search.finished_count(study) == budget, text
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    frame = search.trials_frame(study)
    retried = frame[frame["state"] == "RETRIED"]
    assert list(retried["number"]) == [killed], frame[["number", "state", "failure_reason"]]
    assert reason in retried["failure_reason"].iloc[0]
    rerun = frame[frame["retry_of"] == killed]
    assert len(rerun) == 1 and rerun["state"].iloc[0] in ("COMPLETE", "STOPPED")
    counted = frame[frame["state"] != "RETRIED"]
    assert len(counted) == budget
    assert counted["number"].is_unique
    assert not counted["param.lr"].duplicated().any()  # no candidate trained twice
    assert rerun["param.lr"].iloc[0] == study.trials[killed].params["lr"]
    # The front is exactly the non-dominated completed trials.
    done = [t for t in trials if t.state == TrialState.COMPLETE]

    def dominated(t):
        return any(
            all(o.values[i] * s >= t.values[i] * s for i, s in enumerate((1, -1, -1)))
            and o.values != t.values
            for o in done
        )

    assert {t.number for t in study.best_trials} == {t.number for t in done if not dominated(t)}


@pytest.mark.faults
@pytest.mark.skipif(
    not POSTGRES and os.environ.get("CI") != "true",
    reason="set AUTODISTILL_TEST_POSTGRES to a PostgreSQL URL",
)
def test_three_workers_on_postgresql_share_the_budget_and_survive_a_kill(tmp_path):
    assert POSTGRES, "CI must provide a PostgreSQL server (AUTODISTILL_TEST_POSTGRES)"
    name = f"workers-{uuid.uuid4().hex[:8]}"
    cmd = _command(
        tmp_path, "--storage", POSTGRES, "--study-name", name, "--threads", "1", "--heartbeat", "1"
    )
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [_start(cmd, log) for log in logs]
    storage = search.open_storage(POSTGRES, tmp_path)
    try:
        killed = _kill_mid_trial(storage, name, workers, children=False)
        codes = [w.wait(timeout=600) for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert sorted(codes) == [-signal.SIGKILL, 0, 0], [p.read_text() for p in logs]
    study = optuna.load_study(study_name=name, storage=storage)
    _check(study, killed, logs)
    # The teacher was built by one worker and loaded by the others.
    assert len(list((tmp_path / "cache" / "teachers").glob("*.safetensors"))) == 1
    assert len({t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs}) >= 2
    # A worker that finished last wrote the result files from the whole study.
    csv = pd.read_csv(tmp_path / "out" / name / "trials.csv")
    assert (csv["state"] != "RETRIED").sum() == BUDGET


needs_postgres = pytest.mark.skipif(
    not POSTGRES and os.environ.get("CI") != "true",
    reason="set AUTODISTILL_TEST_POSTGRES to a PostgreSQL URL",
)
SMALL = 5  # the budget of the fault tests below: each needs only a few trials around its fault


def _two_workers(tmp_path: Path, name: str, *extra: str):
    cmd = _command(
        tmp_path,
        "--storage",
        POSTGRES,
        "--study-name",
        name,
        "--threads",
        "1",
        "--heartbeat",
        "1",
        *extra,
        budget=SMALL,
    )
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    return [_start(cmd, log) for log in logs], logs


def _finish(workers: list[subprocess.Popen]) -> list[int]:
    try:
        return [w.wait(timeout=300) for w in workers]
    finally:
        for w in workers:
            w.kill()


@pytest.mark.faults
@needs_postgres
def test_sigterm_of_a_postgresql_worker_requeues_its_trial_and_no_password_is_shown(
    tmp_path, capsys
):
    password = urllib.parse.urlsplit(POSTGRES).password
    assert password and len(password) >= 8 and password not in "autodistill digits-", (
        "the test database's password must be distinctive, or finding it proves nothing"
    )
    name = f"term-{uuid.uuid4().hex[:8]}"
    workers, logs = _two_workers(tmp_path, name)
    storage = search.open_storage(POSTGRES, tmp_path)
    stopped = _kill_mid_trial(storage, name, workers, children=False, sig=signal.SIGTERM)
    codes = _finish(workers)
    assert sorted(codes) == [0, 130], [p.read_text() for p in logs]
    _check(
        optuna.load_study(study_name=name, storage=storage),
        stopped,
        logs,
        budget=SMALL,
        reason="interrupted by SIGTERM",
    )
    # The password is in config.yaml (owner-only: resume needs it), and nowhere else.
    from autodistill.cli import main

    capsys.readouterr()
    assert main(["report", str(tmp_path / "out" / name)]) == 0
    report = capsys.readouterr()
    shown = {str(p): p.read_bytes() for p in logs}
    shown["report"] = (report.out + report.err).encode()
    shown |= {
        str(p): p.read_bytes()
        for p in (tmp_path / "out").rglob("*")
        if p.is_file() and p.name != "config.yaml"
    }
    assert [k for k, v in shown.items() if password.encode() in v] == []
    assert any(b"postgresql://autodistill:***@" in v for v in shown.values())


@pytest.mark.faults
@needs_postgres
def test_a_paused_postgresql_worker_loses_its_trial_to_a_retry_and_drops_its_late_result(
    tmp_path,
):
    name = f"pause-{uuid.uuid4().hex[:8]}"
    workers, logs = _two_workers(tmp_path, name)
    storage = search.open_storage(POSTGRES, tmp_path)
    # the worker process that runs the trial: its supervisor would go on without it
    paused = _kill_mid_trial(storage, name, workers, children=True, sig=signal.SIGSTOP)
    paused_pid = _worker_pid(optuna.load_study(study_name=name, storage=storage), paused)
    deadline = time.monotonic() + 120
    try:
        # Its heartbeat stops: after the grace period the other worker fails the trial and
        # runs it again.
        while time.monotonic() < deadline:
            study = optuna.load_study(study_name=name, storage=storage)
            if study.trials[paused].state == TrialState.FAIL:
                break
            time.sleep(0.5)
        assert study.trials[paused].state == TrialState.FAIL, "the paused trial was not retried"
    finally:
        os.kill(paused_pid, signal.SIGCONT)
    codes = _finish(workers)
    assert codes == [0, 0], [p.read_text() for p in logs]
    study = optuna.load_study(study_name=name, storage=storage)
    _check(study, paused, logs, budget=SMALL, reason="stopped")
    assert study.trials[paused].state == TrialState.FAIL  # its late result did not land
    assert "this attempt is dropped" in "".join(p.read_text() for p in logs)


@pytest.mark.faults
@needs_postgres
def test_postgresql_workers_survive_a_server_restart_mid_search(tmp_path):
    restart = os.environ.get("AUTODISTILL_TEST_POSTGRES_RESTART")
    if not restart:
        assert os.environ.get("CI") != "true", "CI must say how to restart its PostgreSQL"
        pytest.skip("set AUTODISTILL_TEST_POSTGRES_RESTART to a command restarting the server")
    name = f"restart-{uuid.uuid4().hex[:8]}"
    workers, logs = _two_workers(tmp_path, name)
    storage = search.open_storage(POSTGRES, tmp_path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until a trial trains, past the first ones
        time.sleep(0.3)
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        except KeyError:
            continue
        if any(
            t.state == TrialState.RUNNING and t.number >= 2 and "arch" in t.user_attrs
            for t in trials
        ):
            break
    subprocess.run(restart, shell=True, check=True, timeout=120)
    codes = _finish(workers)
    assert codes == [0, 0], [p.read_text()[-3000:] for p in logs]
    study = optuna.load_study(study_name=name, storage=search.open_storage(POSTGRES, tmp_path))
    assert search.finished_count(study) == SMALL
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.faults
def test_two_local_jobs_on_the_journal_file_survive_a_kill(tmp_path):
    log = tmp_path / "search.log"
    parent = _start(_command(tmp_path, "--jobs", "2"), log)
    try:
        storage = _journal_of(tmp_path, parent, log)
        killed = _kill_mid_trial(storage, "digits-tiny", [parent], children=True)
        code = parent.wait(timeout=600)
    finally:
        parent.kill()
    assert code == 0, log.read_text()
    study = optuna.load_study(study_name="digits-tiny", storage=storage)
    # the supervisor saw its worker die and says how; a new worker took its place
    _check(study, killed, [log], reason="killed by SIGKILL")
    pids = {t.user_attrs["worker"] for t in study.trials if t.user_attrs.get("worker")}
    assert len(pids) >= 3 and all(not p.endswith(f":{parent.pid}") for p in pids)
    csv = pd.read_csv(tmp_path / "out" / "digits-tiny" / "trials.csv")
    assert (csv["state"] != "RETRIED").sum() == BUDGET


@pytest.mark.faults
def test_two_local_jobs_promote_no_candidate_twice_and_a_killed_promotion_resumes(tmp_path):
    """Multi-fidelity under two worker processes: a worker is killed while a promotion trains
    past its first epochs; it is run again from its checkpoint, and no trial is promoted twice."""
    from autodistill.study.promotion import promotion_of

    log = tmp_path / "search.log"
    cmd = _command(
        tmp_path, "--jobs", "2", "--fidelity", "multi", "--promotions", "3", budget=6, epochs=4
    )
    parent = _start(cmd, log)
    run_dir = tmp_path / "out" / "digits-tiny"
    journal = run_dir / "study.journal"
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline:
            assert parent.poll() is None, log.read_text()
            time.sleep(0.2)
            if not journal.exists():
                continue
            storage = search.open_storage(str(journal), tmp_path)
            try:
                trials = optuna.load_study(study_name="digits-tiny", storage=storage).get_trials()
            except KeyError:
                continue
            for t in trials:
                promo = promotion_of(t)
                mid = (
                    run_dir / "checkpoints" / f"trial-{promo['lineage']}-e{promo['epochs']}.pt"
                    if promo
                    else None
                )
                if t.state == TrialState.RUNNING and mid is not None and mid.is_file():
                    os.kill(int(str(t.user_attrs["worker"]).split(":")[1]), signal.SIGKILL)
                    killed = t.number
                    break
        assert killed is not None, "no promotion was seen training"
        code = parent.wait(timeout=600)
    finally:
        parent.kill()
    assert code == 0, log.read_text()
    study = optuna.load_study(study_name="digits-tiny", storage=storage)
    trials = study.get_trials()
    assert search.finished_count(study) == 6
    promotions = [t for t in trials if promotion_of(t)]
    # how many are due depends on the order results arrive (a rung's best third grows with it),
    # but never more than the budget, and no trial is promoted twice (the killed attempt and its
    # retry promote the same trial)
    froms = [promotion_of(t)["from"] for t in promotions if t.number != killed]
    assert 1 <= len(froms) <= 3 and len(froms) == len(set(froms)), froms
    again = [t for t in promotions if t.system_attrs.get("retry_history") == [killed]]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE
    assert again[0].user_attrs["began"] == "checkpoint"  # not from its stable state again
    frame = pd.read_csv(run_dir / "trials.csv")
    assert list(frame[frame["state"] == "RETRIED"]["number"]) == [killed]


@pytest.mark.faults
def test_sigterm_records_the_trial_keeps_the_rest_and_a_rerun_resumes(tmp_path):
    log = tmp_path / "search.log"
    cmd = _command(tmp_path, "--threads", "1")
    proc = _start(cmd, log)
    journal = tmp_path / "out" / "digits-tiny" / "study.journal"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.3)
            if not journal.exists():
                continue
            storage = search.open_storage(str(journal), tmp_path)
            study = optuna.load_study(study_name="digits-tiny", storage=storage)
            if any(
                t.state == TrialState.RUNNING and t.number >= 2 and "arch" in t.user_attrs
                for t in study.get_trials()
            ):
                proc.send_signal(signal.SIGTERM)
                break
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert code == 130, log.read_text()
    assert "run the same command to resume" in log.read_text()
    frame = pd.read_csv(tmp_path / "out" / "digits-tiny" / "trials.csv")
    interrupted = frame[frame["state"] == "RETRIED"]
    assert len(interrupted) == 1
    assert interrupted["failure_reason"].iloc[0].startswith("interrupted by SIGTERM")
    kept = int((frame["state"] == "COMPLETE").sum())
    assert kept >= 2

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    frame = pd.read_csv(tmp_path / "out" / "digits-tiny" / "trials.csv")
    assert (frame["state"] != "RETRIED").sum() == BUDGET
    again = frame[frame["retry_of"] == interrupted["number"].iloc[0]]
    assert again["param.lr"].iloc[0] == interrupted["param.lr"].iloc[0]


def _running_trial(tmp_path: Path, worker: str) -> optuna.Study:
    storage = search.open_storage(None, tmp_path)
    study = search.open_study(storage, "t", sampler_name="random", seed=0, budget=1)
    trial = study.ask()
    trial.set_user_attr("worker", worker)
    return study


def test_a_reused_process_id_is_not_taken_for_the_worker(tmp_path):
    # Before: a killed worker whose id a live process reused was taken for alive, and the next
    # run waited forever. The worker's start time tells them apart.
    from autodistill.study.storage import _dead_here, _start_ticks

    host, live = socket.gethostname(), os.getppid()  # a process that is alive, not this one
    start = _start_ticks(live)
    assert start is not None
    study = _running_trial(tmp_path, f"{host}:{live}:{start}")
    assert not _dead_here(study.trials[0])
    for worker, dead in [
        (f"{host}:{live}:{int(start) + 1}", True),
        (f"{host}:{live}", False),
        (f"{host}:999999999:{start}", True),
        (f"other:{live}:{start}", False),
    ]:
        study._storage.set_trial_user_attr(study.trials[0]._trial_id, "worker", worker)
        assert _dead_here(study.trials[0]) is dead, worker


def test_a_worker_that_waits_for_others_says_so_and_for_how_long(tmp_path, monkeypatch, caplog):
    import logging
    import threading

    from autodistill.spaces import parse_space
    from autodistill.study import controller
    from autodistill.study.storage import _start_ticks

    live = os.getppid()
    study = _running_trial(tmp_path, f"{socket.gethostname()}:{live}:{_start_ticks(live)}")
    monkeypatch.setattr(controller, "POLL_S", 0.05)
    monkeypatch.setattr(controller, "WAIT_NOTE_S", 0.2)
    space = parse_space(yaml.safe_load(SPACE))
    finish = threading.Timer(0.5, lambda: study.tell(0, [0.5, 1.0, 1.0]))
    finish.start()
    ran = []
    with caplog.at_level(logging.WARNING, logger="autodistill.study.controller"):

        def wait() -> None:
            ran.append(controller.run(study, space, None, budget=1))

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        waiter.join(timeout=30)  # a worker that never stops waiting fails here, not hangs CI
    finish.join()
    assert ran == [0]  # nothing was left for it to run
    notes = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(notes) >= 2, notes
    assert notes[0].startswith("budget taken: waiting (0 s so far) for 1 trial(s) still running")
    assert f":{live}:" in notes[0]


@needs_postgres
def test_a_claim_held_by_a_paused_worker_does_not_block_the_others(tmp_path, monkeypatch, caplog):
    import logging
    import zlib

    from sqlalchemy import create_engine, text

    from autodistill.study import storage as storage_mod

    storage = search.open_storage(POSTGRES, tmp_path)
    name = f"claim-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(storage_mod, "_claim_patience", lambda backend: 0.5)
    paused = create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://", 1))
    with paused.connect() as holder, caplog.at_level(logging.WARNING):
        key = zlib.crc32(f"autodistill:{name}".encode())
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})  # and never lets go
        with storage_mod.claim(storage, name):
            entered = True
    paused.dispose()
    assert entered and "held for 0 s by a worker that does not let go" in caplog.text


def test_only_a_database_that_went_away_is_waited_for():
    # A missing table or a full disk is raised at once, not retried for two minutes.
    from sqlalchemy import exc as sa

    from autodistill.study.database import connection_lost as _connection_lost

    def error(text: str) -> sa.OperationalError:
        return sa.OperationalError("SELECT 1", {}, Exception(text))

    assert _connection_lost(error("connection refused (0x0000274D/10061)"))
    assert _connection_lost(error("server closed the connection unexpectedly"))
    assert _connection_lost(error("FATAL: terminating connection due to administrator command"))
    assert not _connection_lost(error("no such table: trials"))
    assert not _connection_lost(error("could not extend file: No space left on device"))
    assert not _connection_lost(ValueError("connection refused"))  # not the database's


def test_a_crashed_trial_runs_once_more_and_never_a_third_time(tmp_path):
    from autodistill.study.supervisor import record_crash

    host = socket.gethostname()
    study = _running_trial(tmp_path, f"{host}:4242:1")
    study._storage.set_trial_user_attr(study.trials[0]._trial_id, "arch", "resnet s1 w8")
    assert record_crash(study, 4241, -11) == []  # another worker's pid: not its trial
    assert record_crash(study, 4242, -11) == [0]
    again = study.ask()  # the queued copy, same parameters
    assert again.number == 1 and again.params == study.trials[0].params
    again.set_user_attr("worker", f"{host}:4243:1")
    assert record_crash(study, 4243, -6) == [1]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]  # nothing queued
    frame = search.trials_frame(study)
    assert list(frame["state"]) == ["RETRIED", "CRASHED"]
    assert list(frame["crashed"]) == ["SIGSEGV", "SIGABRT"]
    first, second = frame["failure_reason"]
    assert "SIGSEGV (segmentation fault)" in first and "resnet s1 w8" in first
    assert "retried as trial 1" in first
    assert "SIGABRT" in second and "crashed 2 times, so it is not tried again" in second


@pytest.mark.faults
def test_a_worker_killed_by_sigsegv_mid_trial_is_replaced_and_the_search_ends_at_its_budget(
    tmp_path,
):
    log = tmp_path / "search.log"
    parent = _start(_command(tmp_path, "--threads", "1", budget=SMALL), log)  # one worker
    try:
        storage = _journal_of(tmp_path, parent, log)
        killed = _kill_mid_trial(
            storage, "digits-tiny", [parent], children=True, sig=signal.SIGSEGV
        )
        code = parent.wait(timeout=600)
    finally:
        parent.kill()
    text = log.read_text()
    assert code == 0, text
    study = optuna.load_study(study_name="digits-tiny", storage=storage)
    _check(study, killed, [log], budget=SMALL, reason="killed by SIGSEGV (segmentation fault)")
    frame = pd.read_csv(tmp_path / "out" / "digits-tiny" / "trials.csv")
    crashed = frame[frame["crashed"].notna()]
    assert list(crashed["number"]) == [killed] and crashed["crashed"].iloc[0] == "SIGSEGV"
    workers = {t.user_attrs["worker"] for t in study.trials if t.user_attrs.get("worker")}
    assert len(workers) == 2  # the killed worker and the one that replaced it
    assert f"trial {killed}: its worker" in text


def _grandchildren(pid: int) -> list[int]:
    """Processes two generations below ``pid`` (a command's fork server's children)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return [p for p, parent in parents.items() if parents.get(parent) == pid]


@pytest.mark.faults
def test_a_train_whose_process_segfaults_says_which_student_and_resumes(tmp_path):
    from tests.conftest import FAST

    out = tmp_path / "out"
    search_cmd = [
        sys.executable,
        "-m",
        "autodistill.cli",
        "search",
        *FAST,
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert subprocess.run(search_cmd, capture_output=True, timeout=600).returncode == 0
    run_dir = out / "digits-default"
    cmd = [
        sys.executable,
        "-m",
        "autodistill.cli",
        "train",
        str(run_dir),
        "--pick",
        "smallest",
        "--epochs",
        "8",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(run_dir.glob("students/*/checkpoint.pt")):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        [checkpoint] = run_dir.glob("students/*/checkpoint.pt")  # an epoch is done
        [child] = _grandchildren(proc.pid)
        os.kill(child, signal.SIGSEGV)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    trial = checkpoint.parent.name.removeprefix("trial-")
    assert proc.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("autodistill: crashed: autodistill train: ")
    assert "SIGSEGV (segmentation fault) in trial " + trial in err
    assert "run the same command to resume" in err
    assert checkpoint.is_file()  # what finished is kept
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (checkpoint.parent / "metrics.json").is_file() and not checkpoint.exists()


@pytest.mark.parametrize(
    ("latency", "train", "jobs", "gpus", "shared"),
    [
        ("cuda", "auto", 2, 1, True),  # one GPU: was accepted, and timed beside training
        ("cuda", "cuda", 2, 2, True),  # every GPU trains
        ("cuda:1", "cuda", 3, 4, True),
        ("cuda", "auto", 1, 1, False),  # one worker: it times between its own trainings
        ("cuda", "cpu", 2, 1, False),  # the workers train on the CPU
        ("cpu", "auto", 2, 1, False),
        ("cuda", "auto", 2, 0, False),  # no GPU here: check_present refuses it elsewhere
    ],
)
def test_timing_on_a_gpu_that_another_worker_trains_on_is_recognised(
    latency, train, jobs, gpus, shared
):
    from autodistill.study.workers import latency_gpu_shared

    assert latency_gpu_shared(latency, train, jobs, gpus) is shared

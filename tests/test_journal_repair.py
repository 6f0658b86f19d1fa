"""A journal file cut off mid-write is repaired: the torn record dropped, finished trials kept,
the study usable again."""

from __future__ import annotations

import logging
import random

import optuna
import pytest

from autodistill.study import open_storage


def _journal_with_trials(run_dir, n: int = 4) -> None:
    study = optuna.create_study(storage=open_storage(None, run_dir), study_name="s")
    for i in range(n):
        x = optuna.distributions.FloatDistribution(0, 10)
        study.add_trial(
            optuna.create_trial(value=float(i), params={"x": float(i)}, distributions={"x": x})
        )


def _finished(run_dir) -> list[float]:
    study = optuna.load_study(study_name="s", storage=open_storage(None, run_dir))
    return sorted(t.value for t in study.trials if t.state.name == "COMPLETE")


@pytest.mark.parametrize("seed", range(4))
def test_a_journal_cut_at_a_random_byte_keeps_what_came_before(tmp_path, caplog, seed):
    _journal_with_trials(tmp_path)
    path = tmp_path / "study.journal"
    data = path.read_bytes()
    cut = random.Random(seed).randrange(len(data) // 2, len(data) - 1)
    path.write_bytes(data[:cut])
    intact = data[:cut].rfind(b"\n") + 1  # the records before the cut are whole
    with caplog.at_level(logging.WARNING):
        before = _finished(tmp_path)
    torn = cut != intact
    assert any("dropped 1 damaged record" in r.getMessage() for r in caplog.records) == torn
    assert path.read_bytes() == data[:intact]
    # and the study goes on: a new trial is appended and read back with the old ones
    study = optuna.load_study(study_name="s", storage=open_storage(None, tmp_path))
    study.add_trial(optuna.create_trial(value=99.0))
    assert _finished(tmp_path) == sorted([*before, 99.0])


def test_a_torn_record_that_was_appended_to_is_repaired_keeping_the_good_one(tmp_path):
    _journal_with_trials(tmp_path, 3)
    path = tmp_path / "study.journal"
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    # What the old behaviour produced: a record cut, the next appends glued on after it.
    k = len(lines) - 3
    glued = b"".join(lines[:k]) + lines[k][: len(lines[k]) // 2] + b"".join(lines[k:])
    path.write_bytes(glued)
    with pytest.raises(ValueError):  # Optuna itself cannot read such a file
        list(optuna.storages.journal.JournalFileBackend(str(path)).read_logs(0))
    assert _finished(tmp_path) == [0.0, 1.0, 2.0]
    assert path.read_bytes() == data

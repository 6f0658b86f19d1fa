"""Optuna's private API is reached from one module, and each thing it reaches still exists."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autodistill.study import private


def test_each_private_access_still_works_on_this_optuna(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s.journal")))
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    for a, b in [(0.9, 3.0), (0.8, 1.0), (0.7, 2.0)]:
        trial = study.ask()
        assert private.trial_id(trial) == storage.get_trial_id_from_study_id_trial_number(
            private.study_id(study), trial.number
        )
        study.tell(trial, [a, b])
    assert private.storage_of(study) is storage
    assert private.backend(storage) is storage
    assert private.journal_file(storage) == str(tmp_path / "s.journal")
    front = private.pareto_front(study.get_trials(), study.directions)
    assert sorted(t.number for t in front) == [0, 1]  # (0.7, 2.0) is dominated by (0.8, 1.0)
    assert private.hypervolume(np.array([[0.5, 0.5]]), np.ones(2)) == 0.25
    cached = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    assert private.backend(optuna.storages._CachedStorage(cached)) is cached


def test_no_other_module_reaches_into_optuna_privately():
    import ast
    from pathlib import Path

    pkg = Path(private.__file__).parent.parent
    for path in pkg.rglob("*.py"):
        if path.name == "private.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in (
                "_storage",
                "_trial_id",
                "_study_id",
                "_backend",
            ):
                raise AssertionError(f"{path.name} reads .{node.attr}: use study.private")
            if isinstance(node, ast.ImportFrom) and node.module and "._" in node.module:
                assert not node.module.startswith("optuna"), f"{path.name}: {node.module}"

"""The Python API as a notebook uses it, and the recipe a trial and its full training share."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import autodistill
from autodistill.cli import main
from autodistill.study import load_study, open_storage

# The committed example as an earlier autodistill made it (tests/data/run-made-by-0.1/README.md).
OLD_RUN = Path(__file__).resolve().parent / "data" / "run-made-by-0.1"


def test_the_api_is_explicit():
    assert {"search", "train", "export", "report", "load_student", "UserError"} <= set(
        autodistill.__all__
    )
    for name in autodistill.__all__:
        assert getattr(autodistill, name) is not None, name


def test_search_returns_the_run_dir_and_its_tables(tmp_path, shared_cache):
    seen = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = autodistill.search(
        budget=2,
        data="digits",
        epochs=1,
        teacher="test_resnet",
        teacher_epochs=1,
        views=2,
        threads=2,
        out=str(tmp_path),
        cache_dir=str(shared_cache),
        objectives="val_accuracy,params",
        progress=lambda task, done, total, **_: seen.append((task, done, total)),
    )
    assert run.run_dir == tmp_path / "digits-default" and run.objectives == (
        "val_accuracy",
        "params",
    )
    assert isinstance(run.trials, pd.DataFrame) and len(run.trials) == 2
    assert isinstance(run.front, pd.DataFrame)
    assert set(run.front["number"]) == set(run.trials.loc[run.trials["pareto"], "number"])
    assert ("trials", 2, 2) in seen  # progress reached the caller, no bar was drawn
    assert torch.get_num_threads() == 1  # the call's 2 threads were restored after it
    torch.set_num_threads(threads)


def test_errors_raise_the_line_the_cli_prints(tmp_path, capsys):
    with pytest.raises(autodistill.UserError) as caught:
        autodistill.search(data="nosuchdata", out=str(tmp_path))
    assert main(["search", "--data", "nosuchdata", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"autodistill: error: {caught.value}"


def test_load_student_gives_the_trained_weights_or_a_fresh_build(shipped_run):
    trained = json.loads(next((shipped_run / "students").glob("trial-*/metrics.json")).read_text())
    model = autodistill.load_student(shipped_run, trial=trained["trial"])
    assert isinstance(model, torch.nn.Module) and not model.training
    assert sum(p.numel() for p in model.parameters()) == trained["params"]
    from safetensors.torch import load_file

    weights = load_file(
        str(shipped_run / "students" / f"trial-{trained['trial']}" / "student.safetensors")
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    x = torch.zeros(1, 1, 8, 8)
    assert model(x).shape == (1, 10)

    study = load_study(open_storage(None, shipped_run), "digits-default")
    untrained = [
        t.number
        for t in study.trials
        if t.state.name == "COMPLETE" and t.number != trained["trial"]
    ]
    if untrained:
        fresh = autodistill.load_student(shipped_run, trial=untrained[0])
        assert fresh(x).shape == (1, 10)
        torch.rand(100)  # whatever ran before, a fresh student starts where its trial started
        again = autodistill.load_student(shipped_run, trial=untrained[0])
        for key, value in fresh.state_dict().items():
            assert torch.equal(value, again.state_dict()[key]), key
    with pytest.raises(autodistill.UserError, match="no trial 99"):
        autodistill.load_student(shipped_run, trial=99)


def test_a_student_stopped_early_is_built_fresh_and_never_called_pruned(tmp_path, shared_cache):
    """Optuna's PRUNED is autodistill's "stopped early" (or infeasible): its architecture is
    recorded, so load_student builds it; train refuses it in autodistill's words."""
    import optuna

    from autodistill.study import trial_candidate

    out = autodistill.search(
        data="digits",
        budget=3,
        epochs=1,
        teacher="test_resnet",
        teacher_epochs=1,
        views=2,
        threads=2,
        out=str(tmp_path),
        cache_dir=str(shared_cache),
        in_process=True,
    )
    study = load_study(open_storage(None, out.run_dir), "digits-default")
    done = next(t for t in study.trials if t.state.name == "COMPLETE")
    stopped = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        params=done.params,
        distributions=done.distributions,
        user_attrs={**done.user_attrs, "stopped": "dominated at epoch 1"},
    )
    study.add_trial(stopped)
    number = study.trials[-1].number
    model = autodistill.load_student(out.run_dir, trial=number)
    assert sum(p.numel() for p in model.parameters()) == done.user_attrs["params"]
    with pytest.raises(autodistill.UserError) as err:
        trial_candidate(study, number)
    assert "stopped early" in str(err.value) and "pruned" not in str(err.value)
    with pytest.raises(autodistill.UserError, match="stopped early"):
        autodistill.train(out.run_dir, trial=number, epochs=1, in_process=True)


def test_report_says_what_it_found(shipped_run):
    found = autodistill.report(shipped_run)
    assert found.name == "digits-default" and len(found.trials) == 3
    assert len(found.students) == 1 and (shipped_run / "report.html") == found.files["html"]


def test_train_rebuilds_the_trials_recipe_seed_included(shipped_run):
    """The run was searched with --seed 3: full training uses seed 3 and the trial's recipe."""
    metrics = json.loads(next((shipped_run / "students").glob("trial-*/metrics.json")).read_text())
    study = load_study(open_storage(None, shipped_run), "digits-default")
    trial = next(t for t in study.trials if t.number == metrics["trial"])
    brief, full = trial.user_attrs["recipe"], metrics["recipe"]
    assert full["seed"] == 3 and brief["seed"] == 3
    assert brief["epochs"] == 1 and full["epochs"] == 1
    assert {k: v for k, v in brief.items()} == {k: v for k, v in full.items()}
    assert full["lr"] == trial.params["lr"]


def test_no_submodule_shadows_a_function_of_the_api():
    import importlib

    for name in ("api", "spaces", "study", "ship", "render", "objectives", "progress"):
        importlib.import_module(f"autodistill.{name}")
    for name in ("search", "train", "export", "report", "load_student", "list_spaces", "dashboard"):
        assert callable(getattr(autodistill, name)), name
    assert [s.name for s in autodistill.list_spaces()][:1] == ["convnext"]


def test_a_run_of_an_older_autodistill_is_reported_but_not_resumed(tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "mnist5k-default"
    shutil.copytree(OLD_RUN, run_dir)
    found = autodistill.report(run_dir)  # accuracy read as a fraction from its trials
    assert found.front["val_accuracy"].max() == pytest.approx(0.9747, abs=1e-4)
    assert main(["search", "--out", str(tmp_path)]) == 2
    assert "made by an older autodistill" in capsys.readouterr().err


def test_a_limit_given_from_python_or_the_cli_is_the_same_setting(tmp_path, shared_cache):
    common = dict(
        budget=1,
        data="digits",
        epochs=1,
        teacher="test_resnet",
        teacher_epochs=1,
        views=2,
        threads=2,
        out=str(tmp_path),
        cache_dir=str(shared_cache),
    )
    autodistill.search(limits={"params": 1e6}, **common)
    again = autodistill.search(limits={"params": 1_000_000}, **{**common, "budget": 2})
    assert len(again.trials) == 2


def test_the_committed_examples_student_loads_and_so_does_an_older_runs():
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "results/examples/mnist5k-default"
    assert (example / "students" / "trial-17" / "student.safetensors").is_file()  # trained
    model = autodistill.load_student(example, trial=17)
    assert sum(p.numel() for p in model.parameters()) == 9744
    assert sum(p.numel() for p in autodistill.load_student(OLD_RUN, trial=41).parameters()) == 8150


def test_an_older_runs_misfit_weights_are_one_line(tmp_path):
    # A family change that alters what a trial builds must not strand a run's weights.
    import shutil

    from safetensors.torch import load_file, save_file

    run_dir = tmp_path / "example"
    shutil.copytree(OLD_RUN, run_dir)
    model = autodistill.load_student(run_dir, trial=41)
    assert sum(p.numel() for p in model.parameters()) == 8150
    weights = run_dir / "students" / "trial-41" / "student.safetensors"
    state = load_file(str(weights))
    save_file({k: v[:1].contiguous() if v.ndim else v for k, v in state.items()}, str(weights))
    with pytest.raises(autodistill.UserError, match="do not fit trial 41's student") as err:
        autodistill.load_student(run_dir, trial=41)
    assert "\n" not in str(err.value)

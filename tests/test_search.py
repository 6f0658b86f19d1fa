"""The controller: limits are checked before training, the teacher is never run, failures are
recorded, the front is non-dominated, and a second run resumes."""

from __future__ import annotations

import json
import socket
import subprocess

import optuna
import pandas as pd
import pytest
import torch

from autodistill import study as search
from autodistill.errors import Interrupted, UserError
from autodistill.spaces import load_space
from autodistill.study import candidate, objective
from autodistill.trainer import TrainingDiverged


def _study(tmp_path, budget: int, seed: int = 0) -> optuna.Study:
    storage = search.open_storage(None, tmp_path)
    return search.open_study(storage, "t", sampler_name="random", seed=seed, budget=budget)


def _run(study, space, ctx, budget: int) -> int:
    return search.run(study, space, ctx, budget=budget)


@pytest.fixture(scope="module")
def space():
    # ResNet and MobileNetV3 only: both always fit 8px digits, so every trial trains.
    from autodistill.spaces import parse_space

    return parse_space(
        {
            "families": {
                "resnet": {
                    "stem_stride": 1,
                    "depths": {"low": 1, "high": 2, "per_stage": 4},
                    "width": {"choices": [8, 16]},
                },
                "mobilenetv3": {
                    "stem_stride": 1,
                    "width": {"choices": [0.25, 0.5]},
                    "stages": 2,
                    "depths": 1,
                    "kernels": 3,
                    "expansions": {"choices": [2, 4]},
                    "head": 64,
                },
            },
            "distill": {"kd": {"temperature": {"low": 1.0, "high": 6.0}, "alpha": 0.5}},
            "train": {"lr": {"low": 2e-3, "high": 1e-2, "log": True}},
        }
    )


def test_a_trial_never_runs_the_teacher(tmp_path, space, make_ctx, teacher):
    _, model = teacher
    calls = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        study = _study(tmp_path, 3)
        _run(study, space, make_ctx(), 3)
    finally:
        handle.remove()
    assert calls == []
    assert len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 3


def test_a_limit_is_checked_before_training_and_nothing_is_trained(
    tmp_path, space, make_ctx, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("an infeasible candidate was trained")

    monkeypatch.setattr(objective, "train_candidate", refuse)
    study = _study(tmp_path, 3)
    _run(study, space, make_ctx(max_params=1000), 3)
    frame = search.trials_frame(study)
    assert list(frame["state"]) == ["INFEASIBLE"] * 3
    assert frame["failure_reason"].str.startswith("max_params exceeded by").all()
    assert (frame["params"] > 1000).all()
    for t in study.trials:  # the sampler sees by how much each one missed
        assert t.constraints["max_params"] == t.user_attrs["params"] - 1000


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"),
            "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        ),
        (MemoryError(), "MemoryError"),
        (
            TrainingDiverged("loss became nan in epoch 1 (kd)"),
            "TrainingDiverged: loss became nan in epoch 1 (kd)",
        ),
    ],
    ids=["cuda-oom", "host-oom", "nan-loss"],
)
def test_a_failing_trial_is_recorded_with_its_reason_and_the_search_goes_on(
    tmp_path, space, make_ctx, monkeypatch, error, reason
):
    real = candidate.train_candidate
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(objective, "train_candidate", flaky)
    study = _study(tmp_path, 3)
    _run(study, space, make_ctx(), 3)
    frame = search.trials_frame(study)
    assert list(frame["state"]) == ["FAIL", "COMPLETE", "COMPLETE"]
    assert frame.loc[0, "failure_reason"] == reason


def test_a_trial_that_stays_at_chance_is_failed_not_complete(tmp_path, make_ctx):
    # A learning rate far too high: the loss stays finite, so divergence never fires, and the
    # trial was COMPLETE. (lr 100 over 1 epoch here reached 0.156, above the 0.141 that chance
    # reaches 2.5% of the time, so it counts as learning, if little.)
    from autodistill.spaces import parse_space

    wild = parse_space(
        {
            "families": {"resnet": {"stem_stride": 1, "depths": 1, "width": 8}},
            "distill": {"kd": {"temperature": 4.0, "alpha": 0.5}},
            "train": {"lr": 10000.0},
        }
    )
    study = _study(tmp_path, 1)
    _run(study, wild, make_ctx(), 1)
    frame = search.trials_frame(study)
    assert list(frame["state"]) == ["FAIL"]
    assert frame.loc[0, "failure_reason"].startswith("DidNotLearn: validation accuracy 0.")
    assert "at chance" in frame.loc[0, "failure_reason"]


def test_chance_is_the_most_frequent_class_and_the_margin_its_noise(digits):
    val = digits.val
    chance = val.chance_accuracy()
    assert 0.1 <= chance < 0.12  # ten nearly balanced classes
    with pytest.raises(candidate.DidNotLearn):
        candidate.check_learned(chance + 0.02, val)
    candidate.check_learned(chance + 0.06, val)  # more than two standard errors above


def test_a_student_that_did_not_learn_in_few_steps_is_told_to_train_longer(digits):
    val = digits.val
    chance = val.chance_accuracy()
    with pytest.raises(
        candidate.DidNotLearn,
        match=r"only 3 optimizer steps \(3 an epoch x 1 "
        r"epoch\): too few to learn; give more --epochs",
    ):
        candidate.check_learned(chance, val, steps=(3, 1))  # a 400-image folder, --epochs 1
    with pytest.raises(candidate.DidNotLearn, match="learning rate or a loss weight"):
        candidate.check_learned(chance, val, steps=(20, 10))  # 200 steps: not the length


def test_the_front_holds_exactly_the_non_dominated_trials(tmp_path, space, make_ctx):
    study = _study(tmp_path, 6)
    _run(study, space, make_ctx(), 6)
    frame = search.trials_frame(study)
    done = frame[frame["state"] == "COMPLETE"]
    assert len(done) == 6

    def dominates(a, b) -> bool:
        ge = (
            a.val_accuracy >= b.val_accuracy
            and a.params <= b.params
            and a.latency_ms <= b.latency_ms
        )
        gt = a.val_accuracy > b.val_accuracy or a.params < b.params or a.latency_ms < b.latency_ms
        return ge and gt

    rows = list(done.itertuples())
    for r in rows:
        dominated = any(dominates(o, r) for o in rows if o.number != r.number)
        assert r.pareto == (not dominated), r


def test_a_second_run_resumes_and_runs_only_what_remains(tmp_path, space, make_ctx):
    study = _study(tmp_path, 2)
    assert _run(study, space, make_ctx(), 2) == 2
    again = _study(tmp_path, 4)
    assert _run(again, space, make_ctx(), 4) == 2
    assert _run(_study(tmp_path, 4), space, make_ctx(), 4) == 0
    numbers = [t.number for t in _study(tmp_path, 4).trials]
    assert numbers == [0, 1, 2, 3]


def test_a_trial_left_running_by_a_dead_process_is_run_again(tmp_path, space, make_ctx):
    study = _study(tmp_path, 2)
    dead = study.ask()  # a trial that its process never finished
    dead.suggest_float("lr", 2e-3, 1e-2, log=True)
    dead.set_user_attr("worker", f"{socket.gethostname()}:{_dead_pid()}")
    assert _run(_study(tmp_path, 2), space, make_ctx(), 2) == 2
    frame = search.trials_frame(_study(tmp_path, 2))
    assert list(frame["state"]) == ["RETRIED", "COMPLETE", "COMPLETE"]
    assert frame.loc[0, "failure_reason"].endswith("stopped; retried as trial 1")
    assert frame.loc[1, "retry_of"] == 0
    assert frame.loc[1, "param.lr"] == dead.params["lr"]  # the same candidate


def test_an_interrupted_trial_is_queued_again_and_a_rerun_resumes_it(
    tmp_path, space, make_ctx, monkeypatch
):
    def interrupted(*args, **kwargs):
        raise Interrupted("SIGTERM")

    real = objective.train_candidate
    monkeypatch.setattr(objective, "train_candidate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(_study(tmp_path, 2), space, make_ctx(), 2)
    frame = search.trials_frame(_study(tmp_path, 2))
    assert list(frame["state"]) == ["RETRIED", "WAITING"]
    assert frame.loc[0, "failure_reason"] == "interrupted by SIGTERM; retried as trial 1"

    monkeypatch.setattr(objective, "train_candidate", real)
    assert _run(_study(tmp_path, 2), space, make_ctx(), 2) == 2
    frame = search.trials_frame(_study(tmp_path, 2))
    assert list(frame["state"]) == ["RETRIED", "COMPLETE", "COMPLETE"]
    assert frame.loc[1, "param.lr"] == frame.loc[0, "param.lr"]
    assert pd.isna(frame.loc[1, "failure_reason"])


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_infeasible_architectures_are_recorded_not_crashed(tmp_path, make_ctx):
    study = _study(tmp_path, 2)
    _run(study, load_space("vit"), make_ctx(), 2)
    frame = search.trials_frame(study)
    assert set(frame["state"]) <= {"COMPLETE", "INFEASIBLE", "FAIL"}
    bad = frame[frame["state"] == "INFEASIBLE"]
    assert bad["failure_reason"].str.contains("does not divide|cannot run").all()
    # A ViT that one epoch leaves at chance did not learn: failed with that reason, no crash.
    failed = frame[frame["state"] == "FAIL"]
    assert failed["failure_reason"].str.startswith("DidNotLearn: ").all()


def test_a_worker_with_another_teacher_or_other_settings_is_refused(tmp_path):
    def join(teacher: str, epochs: int) -> optuna.Study:
        storage = search.open_storage(None, tmp_path)
        identity = {"teacher_sha256": teacher, "settings": json.dumps({"epochs": epochs})}
        return search.open_study(
            storage, "t", sampler_name="random", seed=0, budget=2, identity=identity
        )

    join("a" * 64, 3)
    join("a" * 64, 3)  # the same teacher and settings: joins
    with pytest.raises(UserError, match=r"other settings \(epochs: 3 -> 5\)"):
        join("a" * 64, 5)
    with pytest.raises(UserError, match="teacher_sha256 aaaaaaaaaaaa, this worker has bbbb"):
        join("b" * 64, 3)


def test_a_study_that_sampled_another_distribution_is_refused_before_it_changes(tmp_path):
    # An older autodistill sampled temperature {low: 1, high: 8} as integers; resuming with
    # it sampled as real failed every trial (Optuna refuses a changed distribution).
    from autodistill.spaces import parse_space

    old = _study(tmp_path, 2)
    trial = old.ask()
    trial.suggest_int("kd.temperature", 1, 8)
    old.tell(trial, [0.5, 1.0, 1.0])
    space = parse_space(
        {
            "families": {"resnet": {"stem_stride": 1, "depths": 1, "width": 8}},
            "distill": {"kd": {"temperature": {"low": 1, "high": 8}}},
            "train": {"lr": 0.01},
        }
    )
    storage = search.open_storage(None, tmp_path)
    with pytest.raises(UserError, match="sampled another search space .kd.temperature: Int"):
        search.open_study(storage, "t", sampler_name="random", seed=0, budget=2, space=space)
    assert "space_sha256" not in search.load_study(storage, "t").user_attrs


def test_the_space_fingerprint_sees_order_and_values_but_not_comments(tmp_path):
    from autodistill.spaces import parse_space

    base = {
        "families": {
            "resnet": {"stem_stride": 1, "depths": 1, "width": 8},
            "vit": {"patch_size": 4, "depth": 1, "heads": 1, "head_dim": 8, "mlp_ratio": 2.0},
        },
        "train": {"lr": 0.01},
    }
    swapped = {**base, "families": dict(reversed(base["families"].items()))}
    edited = {**base, "train": {"lr": 0.02}}
    prints = [parse_space(d).fingerprint() for d in (base, swapped, edited)]
    assert len(set(prints)) == 3  # the family choice's order is part of what Optuna recorded
    described = parse_space({**base, "description": "another text"}).fingerprint()
    assert described == prints[0]

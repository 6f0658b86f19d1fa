"""Multi-fidelity promotion: a longer rung continues a shorter one exactly, the best third of a
rung is promoted once, and through an interruption (several worker processes and a kill:
tests/test_workers.py)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from autodistill import study as search
from autodistill.families import InputSpec
from autodistill.recipe import build, distil, rung_recipe
from autodistill.spaces import Candidate, parse_space
from autodistill.study import evaluate
from autodistill.study.promotion import PROMOTION_ATTR, Plan, due, rungs_for

OBJECTIVES = ("val_accuracy", "params", "latency_ms")
SPACE = {
    "families": {"resnet": {"stem_stride": 1, "depths": 1, "width": 16}},
    "distill": {"kd": {"temperature": 4.0, "alpha": 0.5}},
    "train": {"lr": {"low": 5e-3, "high": 1e-2, "log": True}},
}


def _candidate() -> Candidate:
    return search.sample_candidates(parse_space(SPACE), 1, seed=0)[0]


def _train(digits, views, epochs: int, **files):
    cand = _candidate()
    spec = InputSpec(digits.in_chans, digits.image_size, digits.num_classes)
    model = build(cand, spec, seed=0)
    cfg = rung_recipe(cand, epochs=epochs, first_rung=2, seed=0)
    from autodistill.data.augment import default_augmentation

    aug = default_augmentation(digits.name, digits.image_size)
    distil(model, cand, cfg, data=digits, aug=aug, views=views, **files)
    return model


def test_a_longer_rung_continued_from_a_shorter_ones_stable_state_equals_training_from_the_start(
    digits, views, tmp_path
):
    """Warm-up-stable-decay: the stable phase is the same however long the run, so a
    promotion continues exactly where the first rung branched off its decay."""
    branch = tmp_path / "e2-stable.pt"
    short = _train(digits, views, 2, branch=branch)
    assert branch.is_file()
    continued = _train(digits, views, 6, start_from=branch)
    scratch = _train(digits, views, 6)
    for (name, a), b in zip(continued.state_dict().items(), scratch.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert not all(torch.equal(a, b) for a, b in zip(short.state_dict().values(),
                                                       scratch.state_dict().values(),
                                                       strict=True))  # fmt: skip


def _trial(number_values: tuple[float, float], *, epochs: int | None = None,
           promoted_from: int | None = None) -> optuna.trial.FrozenTrial:  # fmt: skip
    acc, params = number_values
    attrs = {}
    if epochs is not None:
        attrs = {PROMOTION_ATTR: {"from": promoted_from, "lineage": promoted_from,
                                  "epochs": epochs, "parent_epochs": epochs // 3}}  # fmt: skip
    return optuna.create_trial(
        values=[acc, params, 1.0],
        system_attrs=attrs,
        params={"lr": acc},
        distributions={"lr": FloatDistribution(0, 1)},
    )


def _numbered(trials):
    for i, t in enumerate(trials):
        t.number = i
    return trials


PLAN = Plan(rungs_for(3), promotions=4, objectives=OBJECTIVES)


def test_the_best_third_of_a_rung_by_the_objectives_is_promoted_once():
    # Six results at 3 epochs: (0.9, 100) and (0.5, 10) are the non-dominated ones.
    trials = _numbered([_trial(v) for v in [(0.8, 200), (0.9, 100), (0.5, 10), (0.7, 300),
                                            (0.6, 200), (0.4, 50)]])  # fmt: skip
    chosen, since, to = due(trials, PLAN, budget=6, finished=6)
    assert (chosen.number, since, to) == (1, 3, 9)  # the most accurate of the first layer
    trials.append(_trial((0.95, 100), epochs=9, promoted_from=1))
    chosen, _, _ = due(_numbered(trials), PLAN, budget=6, finished=6)
    assert chosen.number == 2  # the other of the first layer; 1 is taken
    trials.append(_trial((0.6, 10), epochs=9, promoted_from=2))
    assert due(_numbered(trials), PLAN, budget=6, finished=6) is None  # quota 6 // 3 = 2 spent


def test_the_deepest_rung_goes_first_and_promotions_are_paced_over_the_search():
    base = [_trial(v) for v in [(0.8, 200), (0.9, 100), (0.5, 10)] * 3]
    nine = [_trial((0.9 + i / 100, 100), epochs=9, promoted_from=i) for i in range(3)]
    trials = _numbered(base + nine)
    chosen, since, to = due(trials, PLAN, budget=9, finished=9)
    assert (since, to) == (9, 27) and chosen.number == 11  # the best at 9 epochs
    # 3 promotions made, 4 in all; by 5 of 9 trials only ceil(4 * 5 / 9) = 3 may be spent.
    assert due(trials, PLAN, budget=9, finished=5) is None


def _ctx(make_ctx, tmp_path, epochs: int = 2):
    return dataclasses.replace(make_ctx(), epochs=epochs, rungs=rungs_for(epochs),
                               checkpoints=tmp_path / "checkpoints")  # fmt: skip


def _study(tmp_path) -> optuna.Study:
    storage = search.open_storage(None, tmp_path)
    return search.open_study(storage, "t", sampler_name="random", seed=0, budget=6)


def test_an_interrupted_promotion_is_queued_again_and_resumes_from_its_checkpoint(
    tmp_path, make_ctx, monkeypatch
):
    space = parse_space(SPACE)
    plain = tmp_path / "plain"
    plain.mkdir()
    reference = _study(plain)
    search.run(reference, space, _ctx(make_ctx, plain), budget=3, promotions=1)
    expected = search.trials_frame(reference).iloc[-1]
    assert expected["promoted_from"] >= 0 and expected["epochs_trained"] == 6

    real = evaluate.distil

    def interrupted(*args, checkpoint=None, on_epoch=None, **kwargs):
        def stop(epoch, parts):
            if checkpoint is not None and epoch == 3:  # a promotion, past its start
                raise KeyboardInterrupt
            on_epoch(epoch, parts)

        return real(*args, checkpoint=checkpoint, on_epoch=stop, **kwargs)

    monkeypatch.setattr(evaluate, "distil", interrupted)
    study = _study(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        search.run(study, space, _ctx(make_ctx, tmp_path), budget=3, promotions=1)
    assert list((tmp_path / "checkpoints").glob("trial-*-e6.pt"))  # kept for the retry
    monkeypatch.setattr(evaluate, "distil", real)
    search.run(study, space, _ctx(make_ctx, tmp_path), budget=3, promotions=1)
    frame = search.trials_frame(study)
    assert list(frame["state"]).count("RETRIED") == 1
    again = study.trials[-1]
    assert again.state == TrialState.COMPLETE and again.user_attrs["began"] == "checkpoint"
    assert again.user_attrs["val_accuracy"] == expected["val_accuracy"]  # as if never stopped
    assert not list((tmp_path / "checkpoints").glob("trial-*-e6.pt"))  # done: removed

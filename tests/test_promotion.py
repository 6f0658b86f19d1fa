"""Multi-fidelity promotion: a longer rung continues a shorter one exactly, the best third of a
rung is promoted once, and through an interruption (several worker processes and a kill:
tests/test_workers.py)."""

from __future__ import annotations

import dataclasses

import optuna
import pandas as pd
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from autodistill import study as search
from autodistill.families import InputSpec
from autodistill.recipe import build, distil, rung_recipe
from autodistill.spaces import Candidate, parse_space
from autodistill.study import candidate
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
    for (name, a), b in zip(
        continued.state_dict().items(), scratch.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert not all(
        torch.equal(a, b)
        for a, b in zip(short.state_dict().values(), scratch.state_dict().values(), strict=True)
    )


def _trial(
    number_values: tuple[float, float],
    *,
    epochs: int | None = None,
    promoted_from: int | None = None,
) -> optuna.trial.FrozenTrial:
    acc, params = number_values
    attrs = {}
    if epochs is not None:
        attrs = {
            PROMOTION_ATTR: {
                "from": promoted_from,
                "lineage": promoted_from,
                "epochs": epochs,
                "parent_epochs": epochs // 3,
            }
        }
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
    trials = _numbered(
        [_trial(v) for v in [(0.8, 200), (0.9, 100), (0.5, 10), (0.7, 300), (0.6, 200), (0.4, 50)]]
    )
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
    return dataclasses.replace(
        make_ctx(), epochs=epochs, rungs=rungs_for(epochs), checkpoints=tmp_path / "checkpoints"
    )


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

    real = candidate.distil

    def interrupted(*args, checkpoint=None, on_epoch=None, **kwargs):
        def stop(epoch, parts):
            if checkpoint is not None and epoch == 3:  # a promotion, past its start
                raise KeyboardInterrupt
            on_epoch(epoch, parts)

        return real(*args, checkpoint=checkpoint, on_epoch=stop, **kwargs)

    monkeypatch.setattr(candidate, "distil", interrupted)
    study = _study(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        search.run(study, space, _ctx(make_ctx, tmp_path), budget=3, promotions=1)
    assert list((tmp_path / "checkpoints").glob("trial-*-e6.pt"))  # kept for the retry
    monkeypatch.setattr(candidate, "distil", real)
    search.run(study, space, _ctx(make_ctx, tmp_path), budget=3, promotions=1)
    frame = search.trials_frame(study)
    assert list(frame["state"]).count("RETRIED") == 1
    again = study.trials[-1]
    assert again.state == TrialState.COMPLETE and again.user_attrs["began"] == "checkpoint"
    assert again.user_attrs["val_accuracy"] == expected["val_accuracy"]  # as if never stopped
    assert not list((tmp_path / "checkpoints").glob("trial-*-e6.pt"))  # done: removed


def test_a_promoted_front_point_gets_one_second_seed_when_no_promotion_is_due():
    from autodistill.study.promotion import REPLICATE_ATTR, due_replicate

    trials = [
        _trial(v) for v in [(0.8, 200), (0.9, 100), (0.5, 10), (0.7, 300), (0.6, 200), (0.4, 50)]
    ]
    assert due_replicate(_numbered(list(trials)), PLAN, budget=6, finished=6) is None  # brief
    trials += [
        _trial((0.95, 100), epochs=9, promoted_from=1),
        _trial((0.3, 500), epochs=9, promoted_from=2),
    ]  # dominated: not on the front
    trials = _numbered(trials)
    assert due(trials, PLAN, budget=6, finished=6) is None  # 6 // 3 = 2 promoted at rung 3
    chosen = due_replicate(trials, PLAN, budget=6, finished=6)
    assert chosen.number == 6  # the promoted point on the front
    assert due_replicate(trials, PLAN, budget=6, finished=3) is None  # paced: 2 of 4 by now
    again = _trial((0.93, 100), epochs=None)
    again.system_attrs = {REPLICATE_ATTR: {"of": 6, "lineage": 1, "epochs": 9, "seed": 1}}
    trials = _numbered([*trials, again])
    assert due_replicate(trials, PLAN, budget=6, finished=6) is None  # once only
    # The second seed is noise, not a result at 9 epochs: it neither ranks nor is promoted.
    assert due(trials, PLAN, budget=6, finished=6) is None


def test_a_second_seed_is_recorded_beside_its_trial_and_never_on_the_front(tmp_path):
    from autodistill.noise import ties
    from autodistill.ship.pick import pick
    from autodistill.study.promotion import REPLICATE_ATTR

    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])

    def add(acc, params, system=None):
        study.add_trial(
            optuna.create_trial(
                values=[acc, params, 1.0],
                system_attrs=system or {},
                user_attrs={"val_accuracy": acc, "params": params, "latency_ms": 1.0},
                params={"lr": 0.1},
                distributions={"lr": FloatDistribution(0, 1)},
            )
        )

    add(0.90, 900)  # 0
    add(0.80, 100)  # 1
    promo = {"from": 0, "lineage": 0, "epochs": 9, "parent_epochs": 3}
    add(0.95, 900, {PROMOTION_ATTR: promo})  # 2: trial 0 promoted
    add(0.94, 300, {PROMOTION_ATTR: {**promo, "from": 1, "lineage": 1}})  # 3: trial 1 promoted
    add(0.99, 10, {REPLICATE_ATTR: {"of": 2, "lineage": 0, "epochs": 9, "seed": 1}})  # 4
    frame = search.trials_frame(study)
    by = frame.set_index("number")
    assert by.loc[4, "state"] == "SECOND_SEED" and not by.loc[4, "pareto"]
    assert by.loc[4, "replicate_of"] == 2
    assert by.loc[2, "val_accuracy_second_seed"] == 0.99
    assert by.loc[2, "seed_spread"] == pytest.approx(0.04)
    assert sorted(frame[frame["pareto"]]["number"]) == [2, 3]
    # 0.95 vs 0.94 is within the 0.04 the seeds differ by: 3 is not worse than 2, and the
    # smaller of the two is the best pick.
    assert ties(frame) == {3: 2}
    assert pick(frame, "best", OBJECTIVES) == 3
    assert search.hypervolume_history(study)[-1][1] == search.hypervolume_history(study)[-2][1]
    from autodistill.render import front_table

    table = front_table(frame, OBJECTIVES)
    assert "4.0 pts" in table and "#2" in table and "seed spread" in table


def test_without_second_seeds_the_most_accurate_is_best_and_nothing_is_tied():
    from autodistill.noise import ties
    from autodistill.ship.pick import pick

    frame = pd.DataFrame(
        {
            "number": [0, 1],
            "state": ["COMPLETE"] * 2,
            "pareto": [True] * 2,
            "val_accuracy": [0.95, 0.949],
            "params": [900, 100],
            "latency_ms": [2.0, 1.0],
        }
    )
    assert ties(frame) == {} and pick(frame, "best", OBJECTIVES) == 0


def test_a_multi_fidelity_search_trains_its_promoted_front_point_again_with_a_second_seed(
    tmp_path, make_ctx
):
    space = parse_space(SPACE)
    study = _study(tmp_path)
    ctx = _ctx(make_ctx, tmp_path)
    search.run(study, space, ctx, budget=3, promotions=2)
    frame = search.trials_frame(study).set_index("number")
    second = frame[frame["state"] == "SECOND_SEED"]
    assert len(second) == 1, frame[["state", "promoted_from", "replicate_of"]]
    of = int(second["replicate_of"].iloc[0])
    assert frame.loc[of, "promoted_from"] >= 0  # a promotion, on the front
    assert second["epochs_trained"].iloc[0] == frame.loc[of, "epochs_trained"] == 6
    t = study.trials[int(second.index[0])]
    assert t.user_attrs["seed"] == ctx.seed + 1 and t.user_attrs["began"] == "start"
    assert frame.loc[of, "seed_spread"] == pytest.approx(
        abs(frame.loc[of, "val_accuracy"] - t.user_attrs["val_accuracy"])
    )
    assert search.finished_count(study) == 3 and search.promotions_done(study) == 2
    assert not list((tmp_path / "checkpoints").glob("trial-*-s1-*"))  # done: removed


def _timed(trial, duration_s: float, train_s: float):
    trial.user_attrs.update(duration_s=duration_s, train_s=train_s)
    return trial


def test_promotions_and_second_seeds_wait_until_the_first_rung_has_paid_their_time():
    from autodistill.study.promotion import REPLICATE_ATTR, due_replicate, estimate_s

    timed = dataclasses.replace(PLAN, time_share=0.5)
    # Six first-rung results of 3 epochs, 4 s each (3 s training: 1 s per epoch): 24 s, so
    # 12 s for promotions. Promoting trial 1 from 3 to 9 epochs costs 6 x 1 + 1 = 7 s.
    trials = _numbered(
        [
            _timed(_trial(v), 4.0, 3.0)
            for v in [(0.8, 200), (0.9, 100), (0.5, 10), (0.7, 300), (0.6, 200), (0.4, 50)]
        ]
    )
    assert estimate_s(trials[1], 6, 3) == pytest.approx(7.0)
    chosen, _, _ = due(trials, timed, budget=6, finished=6)
    assert chosen.number == 1
    assert due(trials[:3], timed, budget=6, finished=3) is None  # 12 s paid: 6 s, not 7
    # Trial 1 promoted (6 s) and trial 2's promotion queued (expected 7 s): 13 s > 12 s spent.
    promoted = _timed(_trial((0.95, 100), epochs=9, promoted_from=1), 6.0, 6.0)
    queued = _trial((0.6, 10), epochs=9, promoted_from=2)
    queued.state = TrialState.WAITING
    queued.system_attrs[PROMOTION_ATTR]["estimate_s"] = 7.0
    trials = _numbered([*trials, promoted, queued])
    assert (
        due_replicate(trials, dataclasses.replace(PLAN, promotions=9), budget=6, finished=6)
        is not None
    )
    assert (
        due_replicate(trials, dataclasses.replace(timed, promotions=9), budget=6, finished=6)
        is None
    )
    # A second seed trains all 9 epochs from the start: 9 x 1 s, no time for it at 0.5, but
    # at 1.5 (36 s) there is.
    roomy = dataclasses.replace(timed, promotions=9, time_share=1.5)
    again = due_replicate(trials, roomy, budget=6, finished=6)
    assert again.number == 6 and estimate_s(again, 9, 3) == pytest.approx(9.0)
    assert REPLICATE_ATTR not in again.system_attrs

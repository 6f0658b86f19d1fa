"""Latency relative to a fixed reference: a machine that changes speed for minutes changes the
candidate's ratio to the reference, not the figure recorded; the front is timed again side by
side before it is reported."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch

from autodistill import reference as ref_mod
from autodistill.families import InputSpec
from autodistill.latency import LatencyTarget
from autodistill.reference import BOUND, Reference

SPEC = InputSpec(1, 8, 10)


def _reference(monkeypatch, timings) -> Reference:
    ref = Reference(LatencyTarget(threads=1), SPEC)
    it = iter(timings)
    monkeypatch.setattr(ref, "time", lambda: next(it))
    return ref


def test_a_window_at_the_quiet_figure_records_the_candidate_as_measured(monkeypatch):
    ref = _reference(monkeypatch, [0.10, 0.10])
    value, details = ref.around(lambda: (0.05, {"latency_disturbed": False}), quiet_ms=0.10)
    assert value == pytest.approx(0.05)
    assert details["latency_window"] == 1.0 and not details["latency_retimed"]
    assert not details["latency_disturbed"] and details["latency_raw_ms"] == 0.05


def test_a_machine_twice_as_slow_records_the_same_latency_timed_again_and_flagged(monkeypatch):
    """Both windows in the slow mode: the figure is the quiet one, the window said."""
    ref = _reference(monkeypatch, [0.20, 0.20, 0.20, 0.20])
    measured = iter([(0.10, {}), (0.10, {})])
    value, details = ref.around(lambda: next(measured), quiet_ms=0.10)
    assert value == pytest.approx(0.05)
    assert details["latency_window"] == 2.0
    assert details["latency_retimed"] and details["latency_disturbed"]


def test_a_window_whose_speed_changed_midway_is_timed_again(monkeypatch):
    """The reference disagreed with itself around the first measurement (a mode switch inside
    it): timed again, and a steady second window is kept, unflagged."""
    ref = _reference(monkeypatch, [0.10, 0.10 * (1 + 2 * BOUND), 0.11, 0.11])
    measured = iter([(0.08, {}), (0.055, {})])
    value, details = ref.around(lambda: next(measured), quiet_ms=0.10)
    assert value == pytest.approx(0.05)
    assert details["latency_retimed"] and not details["latency_disturbed"]


def _faked_front(monkeypatch, speeds) -> tuple[Reference, dict[int, torch.nn.Module]]:
    """A reference (0.10 ms quiet) and two students (0.05 and 0.30 ms quiet) whose every timing
    is multiplied by the next of ``speeds``: the machine's mode at that moment."""
    base = {None: 0.10, 1: 0.05, 2: 0.30}

    def timer(self, model=None, shape=None):
        key = None if model is None else model.key
        return lambda: base[key] * next(speeds)

    monkeypatch.setattr(Reference, "_timer", timer)
    monkeypatch.setattr(ref_mod, "PAUSE_S", 0.0)
    models = {}
    for key in (1, 2):
        m = torch.nn.Linear(1, 1)
        m.key = key
        models[key] = m
    return Reference(LatencyTarget(threads=1), SPEC), models


def test_side_by_side_ratios_hold_when_every_pass_runs_at_another_speed(monkeypatch):
    """Passes alternate between a fast and a 2x slow machine: each student's ratio to the
    reference, and so its latency, comes out the same."""
    speed = itertools.cycle([1.0] * 3 + [2.0] * 3)  # three timings a pass: the mode per pass
    ref, models = _faked_front(monkeypatch, speed)
    got = ref.side_by_side(models, quiet_ms=0.10)
    assert got[1]["latency_ms"] == pytest.approx(0.05) and got[1]["spread"] == 0
    assert got[2]["latency_ms"] == pytest.approx(0.30) and got[2]["ratio"] == 3.0


def test_a_front_timed_in_a_slow_mode_is_timed_again_and_the_quietest_round_kept(monkeypatch):
    """The reference ran 2x off its quiet figure for the first round: the front is timed again
    after a pause, and the round at the quiet figure is what is recorded."""
    per_round = ref_mod.PASSES * 3  # passes x (reference + two students)
    ref, models = _faked_front(monkeypatch, iter([2.0] * per_round + [1.0] * per_round))
    slept = []
    monkeypatch.setattr(ref_mod, "PAUSE_S", 2.0)
    monkeypatch.setattr(ref_mod.time, "sleep", slept.append)
    got = ref.side_by_side(models, quiet_ms=0.10)
    assert got[1]["rounds"] == 2 and got[1]["window"] == 1.0 and not got[1]["disturbed"]
    assert slept == [2.0]  # the pause before the second round, waiting out the slow mode
    assert got[1]["latency_ms"] == pytest.approx(0.05)


def test_the_reference_is_timed_for_real_on_the_target():
    ref = Reference(LatencyTarget(threads=1), SPEC)
    record = ref.quiet()
    assert 0 < record.quiet_ms < 50 and record.arch.startswith("resnet")
    assert "onnxruntime fp32 on cpu" in record.target


def test_a_front_point_another_now_dominates_leaves_the_front():
    from autodistill.study.results import _side_by_side

    frame = pd.DataFrame(
        {
            "number": [0, 1, 2],
            "val_accuracy": [0.9, 0.8, 0.7],
            "params": [100, 100, 50],
            "latency_ms": [0.10, 0.05, 0.20],
            "pareto": [True, True, True],
            "latency_disturbed": [True, False, True],
        }
    )
    frame.attrs["objectives"] = ("val_accuracy", "params", "latency_ms")
    # Timed side by side, trial 1 is no faster than trial 0: trial 0 dominates it.
    _side_by_side(
        frame,
        {
            "0": {"latency_ms": 0.04},
            "1": {"latency_ms": 0.06},
            "2": {"latency_ms": 0.20, "disturbed": True},
        },
    )
    assert list(frame["pareto"]) == [True, False, True]
    assert list(frame["latency_ms_first"]) == [0.10, 0.05, 0.20]
    assert list(frame["latency_ms"]) == [0.04, 0.06, 0.20]
    # The flag shown beside a figure is the flag of that figure's timing.
    assert list(frame["latency_disturbed"]) == [False, False, True]


def test_a_search_times_relative_to_its_reference_and_the_front_side_by_side(
    tmp_path, shared_cache, monkeypatch, capsys
):
    from autodistill import api

    args = dict(
        data="digits",
        budget=3,
        epochs=1,
        teacher="test_resnet",
        teacher_epochs=1,
        views=2,
        threads=2,
        out=str(tmp_path),
        cache_dir=str(shared_cache),
    )
    out = api.search(**args)
    from autodistill import terminal

    terminal.print_search(out)  # the reference is stated where the front is shown
    said = capsys.readouterr().out
    assert out.latency_reference["quiet_ms"] > 0
    assert "latency: relative to the reference resnet" in said and "side by side" in said
    page = api.report(out.run_dir).files["html"].read_text()  # the report says it, too
    assert f"Latency: relative to the reference {out.latency_reference['arch']}" in page
    trials = pd.read_csv(out.run_dir / "trials.csv")
    timed = trials[trials["latency_raw_ms"].notna()]
    assert len(timed) >= 1
    quiet = timed["latency_reference_ms"].iloc[0]
    assert (timed["latency_reference_ms"] == quiet).all()  # one reference for the study
    first = timed["latency_ms_first"]
    scaled = timed["latency_raw_ms"] / timed["latency_window"]
    assert ((first - scaled).abs() <= 0.002 + 0.02 * scaled).all()  # rounded to 3 decimals
    front = trials[trials["pareto"]]
    assert front["latency_side_by_side"].all() and len(front) >= 1
    pareto = pd.read_csv(out.run_dir / "pareto.csv")
    assert set(pareto["number"]) == set(front["number"])
    assert (
        pareto["latency_ms"].to_numpy()
        == front.set_index("number").loc[pareto["number"], "latency_ms"].to_numpy()
    ).all()

    def refuse(*args, **kwargs):
        raise AssertionError("timed again though the front did not change")

    monkeypatch.setattr(ref_mod.Reference, "side_by_side", refuse)
    again = api.search(**args)  # the same run resumed: nothing new, nothing timed again
    assert again.ran_now == 0 and pd.read_csv(again.run_dir / "trials.csv")["pareto"].equals(
        trials["pareto"]
    )


def test_trains_card_times_the_student_beside_the_teacher(shipped_run):
    """``train`` times the student and the teacher side by side with the study's reference:
    the card's speed-up is a ratio measured in one window, its figures the search's scale."""
    import json

    (metrics,) = (shipped_run / "students").glob("trial-*/metrics.json")
    m = json.loads(metrics.read_text())
    assert m["latency_side_by_side"] is True and m["latency_ms_first"] > 0
    assert m["speedup"] == pytest.approx(m["teacher"]["latency_ms"] / m["latency_ms"])


def test_the_quiet_figure_is_the_fastest_this_machine_has_seen(tmp_path, monkeypatch):
    """A study that begins in the slow mode takes the quiet figure an earlier study timed here,
    so two studies' latencies are on one scale; a faster figure replaces the one kept."""
    ref = Reference(LatencyTarget(threads=1), SPEC)
    for now, kept in ((0.20, 0.20), (0.10, 0.10), (0.30, 0.10)):
        monkeypatch.setattr(ref, "time", lambda now=now: now)
        record = ref.quiet(tmp_path)
        assert record.quiet_ms == kept and record.now_ms == now
    (tmp_path / ref_mod.CALIBRATION).write_text("not json")  # a damaged file is timed afresh
    assert ref.quiet(tmp_path).quiet_ms == 0.30
    assert ref_mod.ReferenceRecord.from_dict(record.to_dict()) == record

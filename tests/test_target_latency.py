"""Latency on the deployment target: the exported graph is what ONNX Runtime times, int8 ships
only when it is measured faster, a disturbed measurement is repeated and flagged, and one
architecture gets one latency in a study."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import onnx
import optuna
import pytest
import torch
from torch import nn

from autodistill import int8, latency, runtime
from autodistill import study as search
from autodistill.errors import UserError
from autodistill.latency import LatencyTarget, measure_on_target
from autodistill.measure import SPREAD, time_call
from autodistill.spaces import parse_space


def _net() -> nn.Module:
    torch.manual_seed(0)
    layers = [
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ]
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"runtime": "tensorrt"}, "--latency-runtime 'tensorrt'"),
        ({"runtime": "torch", "precision": "int8"}, "add --latency-runtime onnxruntime"),
        ({"device": "mps"}, "ONNX Runtime has no MPS provider"),
        ({"device": "tpu"}, "--latency-device 'tpu'"),
        ({"precision": "int4"}, "--latency-precision 'int4'"),
        ({"batch": 0}, "--latency-batch must be a positive integer"),
        ({"precision": "int8", "device": "cuda"}, "measured on the cpu only"),
    ],
)
def test_a_target_that_cannot_be_is_one_line(fields, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        LatencyTarget(**fields)


def test_onnxruntime_times_the_exported_graph(monkeypatch):
    model = _net()
    timed: list[bytes] = []
    real = runtime.session

    def spy(source, **kwargs):
        timed.append(source)
        return real(source, **kwargs)

    monkeypatch.setattr(runtime, "session", spy)
    got = measure_on_target(model, (1, 8, 8), LatencyTarget(threads=1), min_run_time=0.03)
    assert got.median_ms > 0 and got.target.runtime == "onnxruntime"
    [graph] = timed
    # the graph `export` writes, no other: the target's batch (1) fixed in it
    assert graph == runtime.fix_batch(runtime.to_onnx(model, (1, 8, 8)), 1)
    shape = onnx.load_from_string(graph).graph.input[0].type.tensor_type.shape.dim
    assert shape[0].dim_value == 1
    ops = {n.op_type for n in onnx.load_from_string(graph).graph.node}
    assert "Conv" in ops and "BatchNormalization" not in ops  # folded, as shipped
    x = torch.randn(3, 1, 8, 8)
    out = runtime.run(runtime.session(graph, threads=1), x.numpy())  # fed one image at a time
    np.testing.assert_allclose(out, model(x).detach().numpy(), atol=1e-4)
    details = got.details()
    for key in (
        "latency_runtime",
        "latency_device",
        "latency_precision",
        "latency_threads",
        "latency_batch",
        "latency_hardware",
        "latency_spread",
        "latency_disturbed",
    ):
        assert key in details, key


def test_torch_target_times_a_copy_when_the_model_trains_elsewhere():
    model = _net()
    got = measure_on_target(model, (1, 8, 8), LatencyTarget("torch", batch=4), min_run_time=0.03)
    assert got.median_ms > 0 and got.details()["latency_batch"] == 4
    assert "latency_recipe" not in got.details()


def test_int8_target_reports_the_recipe_that_would_ship():
    calibration = np.random.default_rng(0).normal(size=(32, 1, 8, 8)).astype(np.float32)
    got = measure_on_target(
        _net(),
        (1, 8, 8),
        LatencyTarget(precision="int8"),
        calibration=calibration,
        min_run_time=0.03,
    )
    names = [t.recipe for t in got.tried]
    assert "static-qdq-u8s8" in names and "static-qdq-s8s8" in names
    assert "dynamic-u8s8" not in names  # a CNN: dynamic int8 is not tried
    assert got.recipe in {"fp32", *names}
    fastest = min(t.latency_ms for t in got.tried if t.latency_ms is not None)
    # What ships is fp32 unless an int8 recipe beat it; then it is that recipe's latency.
    if got.recipe == "fp32":
        assert fastest >= got.median_ms * (1 - int8.FASTER)
    else:
        assert got.median_ms == pytest.approx(fastest)


def test_int8_choice_is_the_fastest_recipe_faster_than_fp32_within_tolerance():
    tried = [
        int8.Tried("a", latency_ms=0.5, val_accuracy=0.90),  # fastest, lost 5 points
        int8.Tried("b", latency_ms=0.7, val_accuracy=0.945),
        int8.Tried("c", latency_ms=0.8, val_accuracy=0.95),
        int8.Tried("d", error="RuntimeError: no kernel"),
    ]
    best, why = int8.fastest_recipe(1.0, tried, fp32_val=0.95, tolerance=0.01)
    assert best.recipe == "b" and "1.43x faster" in why
    best, why = int8.fastest_recipe(1.0, tried)  # without accuracies: by speed alone
    assert best.recipe == "a"
    best, why = int8.fastest_recipe(0.72, tried, fp32_val=0.95)  # b is not 5% faster than 0.72 ms
    assert best is None and "fp32 ships" in why and "b, 0.700 ms" in why
    best, why = int8.fastest_recipe(1.0, tried[:1], fp32_val=0.95)
    assert best is None and "lost more than 1.0 points" in why
    assert int8.fastest_recipe(1.0, tried[3:])[0] is None


def test_dynamic_int8_is_tried_only_where_attention_products_dominate():
    from autodistill.families import InputSpec, build_student

    vit = build_student(
        "vit",
        {"patch_size": 4, "depth": 1, "heads": 2, "head_dim": 8, "mlp_ratio": 2},
        InputSpec(1, 8, 10),
    )
    assert "dynamic-u8s8" in [r.name for r in int8.recipes_for(runtime.to_onnx(vit, (1, 8, 8)))]
    assert "dynamic-u8s8" not in [
        r.name for r in int8.recipes_for(runtime.to_onnx(_net(), (1, 8, 8)))
    ]


@pytest.mark.parametrize(
    ("medians", "measured", "disturbed"),
    [
        ([1.0, 1.05, 1.1], 3, False),  # they agree: not repeated
        ([1.0, 1.5, 1.02, 1.01, 1.6, 1.7], 6, False),  # a burst: repeated, three agree
        ([1.0, 2.0, 2.1, 2.0, 2.2, 2.1], 6, True),  # still apart when repeated: flagged
    ],
)
def test_rounds_that_disagree_are_repeated_and_flagged(medians, measured, disturbed):
    from types import SimpleNamespace

    from autodistill.measure import _spread, settle

    script = iter(medians)
    calls = []

    def rounds():
        calls.append(1)
        return [SimpleNamespace(median=next(script)) for _ in range(3)]

    kept, done = settle(rounds)
    assert len(done) == measured and len(calls) == measured // 3
    assert kept[0].median == 1.0  # the least disturbed round gives the latency
    assert (_spread(kept) > SPREAD) is disturbed


def test_a_steady_call_is_timed_in_blocks():
    def call():  # about 0.2 ms of sleeping: steady enough for a 20% bound
        time.sleep(0.0002)

    got = time_call(call, threads=1, device="cpu", min_run_time=0.1)
    assert 0.15 < got.median_ms < 5 and got.runs >= 10


def test_one_architecture_is_timed_once_in_a_study(tmp_path, make_ctx, monkeypatch):
    space = parse_space(
        {
            "families": {"resnet": {"stem_stride": 1, "depths": 1, "width": 16}},
            "distill": {"kd": {"temperature": 2.0, "alpha": 0.5}},
            # Rates that learn in one epoch: a trial at chance fails and is not timed for this.
            "train": {"lr": {"low": 5e-3, "high": 1e-2, "log": True}},
        }
    )
    calls = []
    real = latency.measure_on_target

    def counted(*args, **kwargs):
        calls.append(1)
        got = real(*args, **kwargs)
        # On a busy machine a measurement can come out disturbed, and that one is (rightly)
        # timed again by the next trial: this test is about a steady one being reused.
        return dataclasses.replace(got, latency=dataclasses.replace(got.latency, disturbed=False))

    monkeypatch.setattr("autodistill.objectives.measure_on_target", counted)
    storage = search.open_storage(None, tmp_path)
    study = search.open_study(storage, "t", sampler_name="random", seed=0, budget=3)
    assert search.run(study, space, make_ctx(), budget=3) == 3
    trials = sorted(
        study.get_trials(states=[optuna.trial.TrialState.COMPLETE]), key=lambda t: t.number
    )
    assert len(calls) == 1
    assert len({t.user_attrs["latency_ms"] for t in trials}) == 1
    assert [t.user_attrs.get("latency_of") for t in trials] == [None, 0, 0]
    frame = search.trials_frame(study)
    assert frame["latency_runtime"].eq("onnxruntime").all()
    assert frame["latency_of"].tolist()[1:] == [0, 0]


def test_a_run_made_before_latency_had_a_target_is_read_as_timed_then_and_not_resumed(tmp_path):
    import shutil
    from pathlib import Path

    import yaml

    from autodistill.rundir import check_resumable, load_config

    example = Path(__file__).resolve().parent.parent / "results/examples/mnist5k-default"
    run_dir = tmp_path / "mnist5k-default"
    shutil.copytree(example, run_dir)
    doc = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key in (
        "latency_runtime",
        "latency_device",
        "latency_precision",
        "latency_threads",
        "latency_batch",
        "precision",
    ):
        doc["config"].pop(key)
    doc["resolved"]["device"] = "mps"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(doc))
    old = load_config(run_dir)
    assert (old.latency.runtime, old.latency.device, old.precision) == ("torch", "mps", "fp32")
    with pytest.raises(UserError, match="timed latency in eager PyTorch only") as err:
        check_resumable(run_dir, old)
    assert "\n" not in str(err.value)


def test_a_disturbed_latency_is_not_passed_on_to_the_same_architecture():
    from types import SimpleNamespace

    from autodistill.spaces import Candidate
    from autodistill.study.objective import _known

    cand = Candidate("resnet", {"depths": [1]}, "kd", {}, {})

    def trial(number, **attrs):
        return SimpleNamespace(number=number, user_attrs={"candidate": cand.to_dict(), **attrs})

    earlier = [
        trial(0, latency_ms=9.0, latency_disturbed=True),
        trial(1, latency_ms=1.0, latency_runtime="ort"),
    ]
    now = SimpleNamespace(number=2, study=SimpleNamespace(get_trials=lambda deepcopy: earlier))
    value, details = _known(now, cand)["latency_ms"]
    assert value == 1.0 and details["latency_of"] == 1 and details["latency_runtime"] == "ort"

"""The hand-picked baselines of benchmarks/vs_handpicked.py are what its table says they are,
and its verdict counts a baseline dominated only by a student no slower, no larger and at least
the margin more accurate."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from autodistill.families import InputSpec
from autodistill.measure import count_params
from autodistill.recipe import build
from autodistill.spaces import Candidate, load_space

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "vs_handpicked.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("vs_handpicked", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("loss", ["kd", "ce"])
def test_each_baseline_space_is_one_point_the_stated_student(bench, tmp_path, loss):
    stated = {"resnet8": 78_002, "resnet20": 274_802}  # the counts its reasons quote
    for name, baseline in bench.BASELINES.items():
        space = load_space(str(bench.baseline_space(name, loss, tmp_path / f"{name}.yaml")))
        assert list(space.families) == [baseline.family] and list(space.losses) == [loss]
        params = {k: p.value for k, p in space.families[baseline.family].items()}
        assert all(p.kind == "fixed" for p in space.families[baseline.family].values())
        assert params == baseline.arch
        if name in stated:
            cand = Candidate(baseline.family, params, loss, {}, {"lr": 0.005})
            model = build(cand, InputSpec(3, 32, 10), seed=0)
            assert count_params(model) == stated[name]


def test_a_baseline_is_dominated_only_by_a_no_slower_no_larger_clearly_better_student(bench):
    base = {"latency_ms": 0.2, "params": 100, "test_accuracy": 0.60}
    faster_smaller = {"latency_ms": 0.1, "params": 50, "test_accuracy": 0.615}
    assert bench.dominated(base, [faster_smaller], 0.01) is faster_smaller
    assert bench.dominated(base, [{**faster_smaller, "test_accuracy": 0.605}], 0.01) is None
    assert bench.dominated(base, [{**faster_smaller, "latency_ms": 0.21}], 0.01) is None
    assert bench.dominated(base, [{**faster_smaller, "params": 101}], 0.01) is None


def test_the_subset_links_the_first_files_of_each_class(bench, tmp_path):
    source = tmp_path / "src"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (source / split / cls).mkdir(parents=True)
            for i in range(5):
                (source / split / cls / f"{i}.jpg").write_bytes(b"x")
    out = bench.make_subset(source, tmp_path / "sub", 3, 2)
    assert sorted(p.name for p in (out / "train" / "a").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    assert len(list((out / "test" / "b").iterdir())) == 2
    assert (out / "train" / "b" / "0.jpg").resolve() == (source / "train" / "b" / "0.jpg")

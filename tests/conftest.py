"""Shared fixtures: the digits data, a tiny cached teacher, and a trial context built on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autodistill.cache import cache_key, compute_views
from autodistill.data import default_augmentation, load_dataset
from autodistill.study.candidate import Limits, TrialContext
from autodistill.teacher import TeacherRecipe
from autodistill.teacher_store import dataset_fingerprint, prepare_teacher

TEACHER = "test_resnet"  # timm's own tiny test model: trains in a second


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _short_timings(monkeypatch) -> None:
    """Timings in this process as short as the protocol allows, and no pause between rounds:
    these tests check what is timed and recorded, not how precisely (benchmarks/ measure
    that); on a user's machine the pause waits out a slow mode, and
    tests/test_latency_reference.py checks it. Worker processes of a search time as users'
    do."""
    from autodistill import measure, reference

    monkeypatch.setattr(reference, "PAUSE_S", 0.0)
    monkeypatch.setattr(reference, "PASSES", 3)
    monkeypatch.setattr(measure, "MIN_RUN_S", 0.02)
    monkeypatch.setattr(measure, "WARMUP_S", 0.02)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def teacher(digits, cache_dir):
    """(info, model) of a tiny teacher trained once on digits."""
    aug = default_augmentation(digits.name, digits.image_size)
    info, load = prepare_teacher(
        TEACHER,
        digits,
        aug,
        cache_dir=cache_dir,
        threads=2,
        recipe=TeacherRecipe(epochs=3, lr=0.1),
    )
    return info, load()


def _views(digits, teacher, cache_dir, kinds: tuple[str, ...]):
    info, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    key = cache_key(info.weights_sha256, digits.name, dataset_fingerprint(digits), "train", aug, 2)
    return compute_views(
        model, digits.train, aug, digits.stats, key=key, views=2, cache_dir=cache_dir, kinds=kinds
    )


@pytest.fixture(scope="session")
def views(digits, teacher, cache_dir):
    """Logits of the tiny teacher for 2 views of every digits training image."""
    return _views(digits, teacher, cache_dir, ("logits",))


@pytest.fixture(scope="session")
def full_views(digits, teacher, cache_dir):
    """Logits, pooled features and attention maps of the tiny teacher, 2 views."""
    return _views(digits, teacher, cache_dir, ("logits", "features", "attention"))


@pytest.fixture()
def make_ctx(digits, views):
    def make(**limits) -> TrialContext:
        """``max_params=1000`` style limits, as on the command line."""
        most = {k.removeprefix("max_"): v for k, v in limits.items()}
        return TrialContext(
            data=digits,
            aug=default_augmentation(digits.name, digits.image_size),
            views=views,
            epochs=1,
            limits=Limits(most),
            seed=0,
        )

    return make


# The CLI-level runs: digits, timm's tiny test model as the teacher, 3 trials of 1 epoch.
FAST = [
    "--data",
    "digits",
    "--budget",
    "3",
    "--epochs",
    "1",
    "--teacher",
    "test_resnet",
    "--teacher-epochs",
    "1",
    "--views",
    "2",
    "--quiet",
    "--threads",
    "2",
]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One teacher cache for every test that only reads it: the FAST teacher is trained once."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture(scope="session")
def searched_run(tmp_path_factory, shared_cache) -> Path:
    """A run searched once with FAST and seed 3 (not the default: full training must follow the
    run's seed), nothing trained: tests copy it (``copy_run``) rather than search again."""
    from autodistill.cli import main

    out = tmp_path_factory.mktemp("searched")
    base = ["--out", str(out), "--cache-dir", str(shared_cache), "--seed", "3"]
    assert main(["search", *FAST, *base]) == 0
    return out / "digits-default"


def copy_run(run_dir: Path, out: Path) -> Path:
    """A copy of ``run_dir`` under ``out``, as a search with ``--out out`` would have made it."""
    import shutil

    copy = out / run_dir.name
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.lock"))
    return copy


@pytest.fixture(scope="session")
def shipped_run(tmp_path_factory, searched_run) -> Path:
    """The searched run (seed 3), copied, with its smallest student fully trained and exported
    (fp32 and int8), and its report. For tests that only read it."""
    from autodistill.cli import main

    run_dir = copy_run(searched_run, tmp_path_factory.mktemp("run"))
    assert main(["train", str(run_dir), "--pick", "smallest", "--epochs", "1", "--quiet"]) == 0
    assert main(["export", str(run_dir), "--int8"]) == 0
    assert main(["report", str(run_dir)]) == 0
    return run_dir


def teacher_of(family: str, spec):
    """What ``build_student`` needs to build a student of ``family`` for ``spec``: for a family
    derived from the teacher (from_teacher), a loader of a small timm teacher; else None."""
    from autodistill.families import get_family
    from autodistill.teacher import build_teacher

    if not get_family(family).derived:
        return None
    return lambda: build_teacher("test_resnet", spec)

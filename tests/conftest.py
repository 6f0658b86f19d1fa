"""Shared fixtures: the digits data, a tiny cached teacher, and a trial context built on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autodistill.cache import cache_key, compute_views
from autodistill.data import default_augmentation, load_dataset
from autodistill.study.evaluate import Limits, TrialContext
from autodistill.teacher import TeacherRecipe, dataset_fingerprint, prepare_teacher

TEACHER = "test_resnet"  # timm's own tiny test model: trains in a second


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    torch.set_num_threads(2)


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
        TEACHER, digits, aug, cache_dir=cache_dir, threads=2,
        recipe=TeacherRecipe(epochs=3, lr=0.1), )  # fmt: skip
    return info, load()


def _views(digits, teacher, cache_dir, kinds: tuple[str, ...]):
    info, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    key = cache_key(info.weights_sha256, digits.name, dataset_fingerprint(digits), "train", aug, 2)
    return compute_views(model, digits.train, aug, digits.stats, key=key, views=2,
                         cache_dir=cache_dir, kinds=kinds)  # fmt: skip


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
            data=digits, aug=default_augmentation(digits.name, digits.image_size), views=views,
            epochs=1, threads=2, limits=Limits(most), seed=0,
        )  # fmt: skip

    return make

"""The teacher: adapted to small inputs, trained once and cached, checkpoints checked."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from autodistill import teacher as teacher_mod
from autodistill.data import default_augmentation
from autodistill.errors import UserError
from autodistill.families import InputSpec
from autodistill.teacher import build_teacher, prepare_teacher, weights_sha256
from tests.conftest import TEACHER


def test_the_teacher_learns_and_records_both_accuracies(teacher, digits):
    info, model = teacher
    assert info.val_accuracy > 0.5 and 0 < info.test_accuracy <= 1
    assert info.weights_sha256 == weights_sha256(model)
    assert info.params == sum(p.numel() for p in model.parameters())
    assert info.latency_ms > 0 and info.source.startswith("trained")


def test_a_cached_teacher_is_not_built_again(digits, cache_dir, teacher, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("built")

    monkeypatch.setattr(teacher_mod, "build_teacher", refuse)
    aug = default_augmentation(digits.name, digits.image_size)
    info, _ = prepare_teacher(
        TEACHER,
        digits,
        aug,
        cache_dir=cache_dir,
        threads=2,
        recipe=teacher_mod.TeacherRecipe(epochs=3, lr=0.1),
        progress=False,
    )
    assert info == teacher[0]


def test_resnet_stem_is_shrunk_for_small_inputs():
    model = build_teacher("resnet18", InputSpec(1, 28, 10))
    assert model.conv1.stride == (1, 1) and model.conv1.in_channels == 1
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_a_checkpoint_with_other_classes_is_refused(tmp_path, digits, cache_dir):
    other = build_teacher(TEACHER, InputSpec(digits.in_chans, digits.image_size, 3))
    path = tmp_path / "t.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    aug = default_augmentation(digits.name, digits.image_size)
    with pytest.raises(UserError, match="classifier has 3 classes but the data has 10"):
        prepare_teacher(TEACHER, digits, aug, cache_dir=cache_dir, threads=2, checkpoint=path,
                        progress=False)  # fmt: skip


def test_a_fitting_checkpoint_is_used_as_is(tmp_path, digits, cache_dir, teacher):
    info, model = teacher
    path = tmp_path / "t.pt"
    torch.save(model.state_dict(), path)
    aug = default_augmentation(digits.name, digits.image_size)
    got, load = prepare_teacher(TEACHER, digits, aug, cache_dir=cache_dir, threads=2,
                                checkpoint=path, progress=False)  # fmt: skip
    assert got.weights_sha256 == info.weights_sha256
    assert got.source == f"checkpoint: {path}"
    assert weights_sha256(load()) == info.weights_sha256


def test_unknown_teacher_is_a_user_error():
    with pytest.raises(UserError, match="unknown teacher 'resnet1800'"):
        build_teacher("resnet1800", InputSpec(1, 28, 10))


def test_a_vit_teacher_is_built_for_the_image_size():
    model = build_teacher("test_vit", InputSpec(1, 32, 10))
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_a_teacher_that_cannot_run_on_the_images_is_refused_in_one_line():
    with pytest.raises(UserError, match="cannot run on 8px images") as err:
        build_teacher("test_convnext", InputSpec(1, 8, 10))
    assert "\n" not in str(err.value)

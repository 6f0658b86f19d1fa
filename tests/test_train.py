"""Training: the loop learns, reads the teacher only from its cache, and refuses a NaN loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autodistill.data import default_augmentation
from autodistill.families import InputSpec, build_student
from autodistill.losses import get_loss
from autodistill.train import TrainConfig, TrainingDiverged, evaluate, fit


def _student(digits):
    spec = InputSpec(digits.in_chans, digits.image_size, digits.num_classes)
    return build_student("resnet", {"stem_stride": 1, "depths": [1, 1, 1, 1], "width": 8}, spec)


def test_distillation_from_the_cache_learns(digits, views):
    torch.manual_seed(0)
    model = _student(digits)
    aug = default_augmentation(digits.name, digits.image_size)
    before = evaluate(model, digits.val, digits.stats)
    history = fit(model, digits.train, aug, digits.stats, TrainConfig(epochs=3, lr=5e-3),
                  views=views, loss=get_loss("kd"),
                  loss_params={"temperature": 4.0, "alpha": 0.5})  # fmt: skip
    after = evaluate(model, digits.val, digits.stats)
    assert after > max(0.5, before + 0.2)
    assert history[-1]["kd"] < history[0]["kd"]


def test_a_teacher_loss_without_the_cache_is_refused(digits):
    aug = default_augmentation(digits.name, digits.image_size)
    with pytest.raises(ValueError, match="needs cached teacher outputs"):
        fit(_student(digits), digits.train, aug, digits.stats, TrainConfig(epochs=1, lr=1e-3),
            loss=get_loss("kd"), loss_params={"temperature": 1.0, "alpha": 0.5})  # fmt: skip


class _NaN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.full((x.shape[0], 10), float("nan")) * self.w


def test_a_nan_loss_stops_training_with_a_clear_reason(digits, views):
    aug = default_augmentation(digits.name, digits.image_size)
    with pytest.raises(TrainingDiverged, match="loss became nan in epoch 1"):
        fit(_NaN(), digits.train, aug, digits.stats, TrainConfig(epochs=1, lr=1e-3), views=views,
            loss=get_loss("kd"), loss_params={"temperature": 1.0, "alpha": 0.5})  # fmt: skip

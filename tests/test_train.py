"""Training: the loop learns, reads the teacher only from its cache, and refuses a NaN loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autodistill.data import default_augmentation
from autodistill.errors import UserError
from autodistill.families import InputSpec, build_student
from autodistill.losses import Dims, Distiller, get_loss
from autodistill.recipe import make_distiller
from autodistill.trainer import TrainConfig, TrainingDiverged, evaluate, fit


def _student(digits):
    spec = InputSpec(digits.in_chans, digits.image_size, digits.num_classes)
    return build_student("resnet", {"stem_stride": 1, "depths": [1, 1, 1, 1], "width": 8}, spec)


def test_distillation_from_the_cache_learns(digits, views):
    torch.manual_seed(0)
    model = _student(digits)
    aug = default_augmentation(digits.name, digits.image_size)
    before = evaluate(model, digits.val, digits.stats)
    kd = Distiller(get_loss("kd"), {"temperature": 4.0, "alpha": 0.5}, dims=Dims(10))
    history = fit(
        model,
        digits.train,
        aug,
        digits.stats,
        TrainConfig(epochs=3, lr=5e-3),
        views=views,
        distiller=kd,
    )
    after = evaluate(model, digits.val, digits.stats)
    assert after > max(0.5, before + 0.2)
    assert history[-1]["kd"] < history[0]["kd"]


def views_logits_only(digits):
    from autodistill.cache import TeacherViews

    n = len(digits.train)
    return TeacherViews(
        torch.zeros(1, n, 3, dtype=torch.int8), {"logits": torch.zeros(1, n, 10)}, "k", ()
    )


def test_a_teacher_loss_without_the_cache_is_refused(digits):
    aug = default_augmentation(digits.name, digits.image_size)
    with pytest.raises(ValueError, match="needs cached teacher \\['logits'\\]"):
        fit(
            _student(digits),
            digits.train,
            aug,
            digits.stats,
            TrainConfig(epochs=1, lr=1e-3),
            distiller=Distiller(get_loss("kd"), dims=Dims(10)),
        )
    with pytest.raises(ValueError, match="needs cached teacher \\['features'\\]"):
        fit(
            _student(digits),
            digits.train,
            aug,
            digits.stats,
            TrainConfig(epochs=1, lr=1e-3),
            views=views_logits_only(digits),
            distiller=Distiller(get_loss("hint"), dims=Dims(10, 8, 8)),
        )


class _NaN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.full((x.shape[0], 10), float("nan")) * self.w


def test_a_nan_loss_stops_training_with_a_clear_reason(digits, views):
    aug = default_augmentation(digits.name, digits.image_size)
    with pytest.raises(TrainingDiverged, match="loss became nan in epoch 1"):
        fit(
            _NaN(),
            digits.train,
            aug,
            digits.stats,
            TrainConfig(epochs=1, lr=1e-3),
            views=views,
            distiller=Distiller(get_loss("kd"), dims=Dims(10)),
        )


@pytest.mark.parametrize(
    ("loss", "part"),
    [("hint", "hint"), ("at", "at"), ("adversarial", "adv"), ("dkd", "nckd"), ("dist", "inter")],
)
def test_every_teacher_loss_trains_a_student_from_the_full_cache(digits, full_views, loss, part):
    torch.manual_seed(0)
    model = _student(digits)
    aug = default_augmentation(digits.name, digits.image_size)
    d = make_distiller(loss, {}, model, (1, 8, 8), 10, full_views)
    history = fit(
        model,
        digits.train,
        aug,
        digits.stats,
        TrainConfig(epochs=3, lr=5e-3),
        views=full_views,
        distiller=d,
    )
    assert evaluate(model, digits.val, digits.stats) > 0.3  # 60 steps; chance is 0.1
    assert history[-1]["ce"] < history[0]["ce"]
    assert all(math.isfinite(h[part]) for h in history)
    if loss in ("hint", "at"):  # matching the teacher's features is what these learn first
        assert history[-1][part] < history[0][part]
    if loss == "adversarial":
        assert "disc" in history[-1]  # the discriminator stepped too


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights(
    digits, views, tmp_path
):
    aug = default_augmentation(digits.name, digits.image_size)
    cfg = TrainConfig(epochs=3, lr=5e-3, seed=1)

    def kd():
        return Distiller(get_loss("kd"), dims=Dims(10))

    torch.manual_seed(0)
    straight = _student(digits)
    fit(straight, digits.train, aug, digits.stats, cfg, views=views, distiller=kd())

    class Stop(Exception):
        pass

    def stop_after_first(epoch, stats):
        if epoch == 0:
            raise Stop

    torch.manual_seed(0)
    resumed = _student(digits)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Stop):
        fit(
            resumed,
            digits.train,
            aug,
            digits.stats,
            cfg,
            views=views,
            distiller=kd(),
            checkpoint=ckpt,
            on_epoch=stop_after_first,
        )
    assert ckpt.is_file()
    epochs_run = []
    torch.manual_seed(123)  # a fresh process: nothing but the checkpoint carries the state
    fresh = _student(digits)
    history = fit(
        fresh,
        digits.train,
        aug,
        digits.stats,
        cfg,
        views=views,
        distiller=kd(),
        checkpoint=ckpt,
        on_epoch=lambda e, s: epochs_run.append(e),
    )
    assert epochs_run == [1, 2] and len(history) == 3
    for (name, a), b in zip(
        straight.state_dict().items(), fresh.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
    with pytest.raises(UserError, match=r"other settings \(epochs 3, now 4\); --epochs 3 resumes"):
        fit(
            fresh,
            digits.train,
            aug,
            digits.stats,
            TrainConfig(epochs=4, lr=5e-3, seed=1),
            views=views,
            distiller=kd(),
            checkpoint=ckpt,
        )


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda s: s["model"].update({k: 1.5 for k in s["model"]}), "cannot be read as tensors"),
        (lambda s: s.pop("optimizer"), "cannot be read as tensors"),
        (
            lambda s: s["model"].update({k: v[:1] for k, v in s["model"].items() if v.ndim}),
            "does not fit this student",
        ),
    ],
    ids=["weights not tensors", "a part missing", "weights of another shape"],
)
def test_a_checkpoint_fit_cannot_use_is_one_line(digits, views, tmp_path, spoil, problem):
    # Before: a KeyError or load_state_dict's traceback.
    aug = default_augmentation(digits.name, digits.image_size)
    cfg = TrainConfig(epochs=2, lr=5e-3, seed=1)
    ckpt = tmp_path / "ckpt.pt"

    def stop(epoch, stats):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            _student(digits),
            digits.train,
            aug,
            digits.stats,
            cfg,
            views=views,
            checkpoint=ckpt,
            on_epoch=stop,
        )
    state = torch.load(ckpt, weights_only=True)
    spoil(state)
    torch.save(state, ckpt)
    with pytest.raises(UserError, match=problem) as err:
        fit(_student(digits), digits.train, aug, digits.stats, cfg, views=views, checkpoint=ckpt)
    assert "\n" not in str(err.value) and "delete it" in str(err.value)

"""The teacher: adapted to small inputs, trained once and cached (checksummed), checkpoints read."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from autodistill import teacher as teacher_mod
from autodistill.data import default_augmentation
from autodistill.errors import UserError
from autodistill.families import InputSpec
from autodistill.teacher import build_teacher, weights_sha256
from autodistill.teacher_store import prepare_teacher
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
        prepare_teacher(TEACHER, digits, aug, cache_dir=cache_dir, threads=2, checkpoint=path)


def test_a_fitting_checkpoint_is_used_as_is(tmp_path, digits, cache_dir, teacher):
    info, model = teacher
    path = tmp_path / "t.pt"
    torch.save(model.state_dict(), path)
    aug = default_augmentation(digits.name, digits.image_size)
    got, load = prepare_teacher(
        TEACHER, digits, aug, cache_dir=cache_dir, threads=2, checkpoint=path
    )
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


RECIPE = teacher_mod.TeacherRecipe(epochs=3, lr=0.1)  # the recipe of the session's teacher


def _prepare(digits, cache_dir, **kwargs):
    aug = default_augmentation(digits.name, digits.image_size)
    return prepare_teacher(TEACHER, digits, aug, cache_dir=cache_dir, threads=2, **kwargs)


def _flip_a_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # after the length and the header
    data[start + (len(data) - start) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "warning"),
    [
        (lambda weights, meta: _flip_a_data_byte(weights), "fails its checksum"),
        (lambda weights, meta: _truncate(weights), "is unreadable"),
        (lambda weights, meta: _truncate(meta), "description"),
    ],
    ids=["bit flip", "truncated weights", "truncated description"],
)
def test_a_damaged_cached_teacher_is_trained_again_not_used(
    digits, cache_dir, teacher, tmp_path, caplog, monkeypatch, damage, warning
):
    shutil.copytree(cache_dir / "teachers", tmp_path / "teachers")
    (weights,) = (tmp_path / "teachers").glob("*.safetensors")
    damage(weights, weights.with_suffix(".json"))
    trained = []
    real_train = teacher_mod.train_teacher

    def train(*args):
        trained.append(1)
        return real_train(*args)

    monkeypatch.setattr(teacher_mod, "train_teacher", train)
    with caplog.at_level(logging.WARNING, logger="autodistill.teacher"):
        info, load = _prepare(digits, tmp_path, recipe=RECIPE)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert trained == [1]
    assert len(warned) == 1 and warning in warned[0]
    assert weights_sha256(load()) == info.weights_sha256
    # Retraining is deterministic on one machine: the same weights as the first time.
    assert info.weights_sha256 == teacher[0].weights_sha256
    again, load_again = _prepare(digits, tmp_path, recipe=RECIPE)  # the rebuilt file is trusted
    assert trained == [1] and again == info
    assert weights_sha256(load_again()) == info.weights_sha256


def _break_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8] = ord("x")  # the header's opening brace: no longer JSON
    path.write_bytes(bytes(data))


def _pickled_namespace(path: Path) -> None:
    torch.save(argparse.Namespace(epochs=3), path)  # not weights: refused by weights_only


@pytest.mark.parametrize(
    ("suffix", "damage"),
    [
        (".safetensors", _truncate),
        (".safetensors", _break_header),
        (".pt", _truncate),
        (".pt", lambda path: path.write_bytes(b"")),
        (".pt", _pickled_namespace),
    ],
    ids=["truncated safetensors", "header", "truncated pt", "empty pt", "not weights"],
)
def test_an_unreadable_checkpoint_is_a_one_line_user_error(
    digits, teacher, tmp_path, suffix, damage
):
    _, model = teacher
    path = tmp_path / f"t{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    damage(path)
    with pytest.raises(UserError, match="cannot read teacher checkpoint") as err:
        _prepare(digits, tmp_path / "cache", checkpoint=path)
    assert "\n" not in str(err.value) and not str(err.value).endswith(": ")
    assert not (tmp_path / "cache").exists()  # nothing cached for a checkpoint never read


def _damaged_copy(cache_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(cache_dir / "teachers", tmp_path / "teachers")
    (weights,) = (tmp_path / "teachers").glob("*.safetensors")
    _flip_a_data_byte(weights)
    return weights


def test_the_studys_record_verifies_a_retrained_teacher(
    digits, cache_dir, teacher, tmp_path, caplog
):
    _damaged_copy(cache_dir, tmp_path)
    with caplog.at_level(logging.WARNING, logger="autodistill.teacher"):
        info, _ = _prepare(
            digits, tmp_path, recipe=RECIPE, expected_sha256=teacher[0].weights_sha256
        )
    assert info.weights_sha256 == teacher[0].weights_sha256
    assert any(
        "verified its weights against the study's record" in r.getMessage() for r in caplog.records
    )


def test_a_retrained_teacher_the_study_did_not_record_is_refused_and_the_cache_kept(
    digits, cache_dir, teacher, tmp_path
):
    # Another machine or torch would train other weights: simulated by another record.
    weights = _damaged_copy(cache_dir, tmp_path)
    before = {p.name: p.read_bytes() for p in weights.parent.iterdir()}
    with pytest.raises(UserError) as err:
        _prepare(digits, tmp_path, recipe=RECIPE, expected_sha256="ab" * 32)
    message = str(err.value)
    assert "\n" not in message
    assert "made with teacher weights abababababab" in message and "was damaged" in message
    assert "restore" in message and "--cache-dir" in message and "another --study-name" in message
    assert {p.name: p.read_bytes() for p in weights.parent.iterdir()} == before


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda t: t.fill_(float("nan")) if t.is_floating_point() else t, "NaN or infinite"),
        (lambda t: t.zero_() if t.is_floating_point() else t, "the same output for every"),
    ],
    ids=["nan", "constant"],
)
def test_a_broken_teacher_checkpoint_is_refused_by_name(digits, teacher, tmp_path, spoil, problem):
    # Before, every trial failed (NaN) or learned from a constant, and nothing named the teacher.
    _, model = teacher
    state = {k: spoil(v.clone()) for k, v in model.state_dict().items()}
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        _prepare(digits, tmp_path / "cache", checkpoint=path)
    assert str(err.value).startswith(f"teacher checkpoint {path} gives ")
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_a_study_whose_cached_teacher_was_damaged_resumes(
    shipped_run, shared_cache, tmp_path, monkeypatch, capsys
):
    # Before: the teacher was retrained into other weights, and the study refused every worker.
    from autodistill.cli import main
    from tests.conftest import FAST

    cache = tmp_path / "cache"
    shutil.copytree(shared_cache, cache, ignore=shutil.ignore_patterns("*.lock"))
    args = ["search", *FAST, "--out", str(tmp_path / "out"), "--cache-dir", str(cache)]
    args += ["--objectives", "val_accuracy,params"]  # the teacher is what this checks
    assert main([*args, "--budget", "1"]) == 0
    for weights in (cache / "teachers").glob("*.safetensors"):
        _flip_a_data_byte(weights)
    assert main([*args, "--budget", "2"]) == 0  # retrained, verified, resumed
    journal = tmp_path / "out" / "digits-default" / "study.journal"
    before = journal.read_bytes()

    real_train = teacher_mod.train_teacher

    def elsewhere(*a):  # another machine's retraining: other weights
        model, seconds, history = real_train(*a)
        with torch.no_grad():
            next(model.parameters()).add_(1e-3)
        return model, seconds, history

    monkeypatch.setattr(teacher_mod, "train_teacher", elsewhere)
    for weights in (cache / "teachers").glob("*.safetensors"):
        _flip_a_data_byte(weights)
    capsys.readouterr()
    assert main([*args, "--budget", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the study was made with teacher weights" in err, err
    assert journal.read_bytes() == before


def test_the_teachers_progress_shows_its_loss_and_validation_accuracy(digits, tmp_path):
    from autodistill.teacher import TeacherRecipe

    notes = []
    aug = default_augmentation(digits.name, digits.image_size)
    info, _ = prepare_teacher(
        TEACHER,
        digits,
        aug,
        cache_dir=tmp_path,
        threads=2,
        recipe=TeacherRecipe(epochs=2, lr=0.1),
        progress=lambda *_, **kw: notes.append(kw.get("note", "")),
    )
    shown = [n for n in notes if n]
    assert len(shown) == 2 and all(n.startswith("loss ") and "| val " in n for n in shown)
    # Each epoch's validation accuracy is kept with the teacher (the last is its own).
    assert len(info.val_history) == 2 and info.val_history[-1] == pytest.approx(
        info.val_accuracy, abs=1e-4
    )


@pytest.mark.parametrize(
    ("history", "said"),
    [
        ((0.40, 0.52, 0.61, 0.645), "rose 3.5 points over epoch 4 (to 64.5%"),  # issue 25's case
        ((0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9), "rose 10.0 points over epochs 7-8"),
        ((0.80, 0.90, 0.905, 0.906), None),  # flat at the end, within the split's noise
        ((0.9,), None),  # one epoch: nothing to compare
        ((), None),  # a checkpoint, or cached before histories were kept
    ],
)
def test_a_teacher_still_learning_when_it_stopped_is_called_undertrained(teacher, history, said):
    import dataclasses

    from autodistill.teacher import undertrained

    info = dataclasses.replace(teacher[0], val_history=history)
    line = undertrained(info, val_images=2400)
    if said is None:
        assert line is None
    else:
        assert said in line and "still learning" in line and "--teacher-epochs" in line


def test_a_weak_teacher_and_one_a_brief_student_beats_are_named_with_what_to_do(digits, teacher):
    import dataclasses

    import pandas as pd

    from autodistill.api import _teacher_warnings
    from autodistill.prepare import Prepared
    from autodistill.teacher import weak_teacher

    info, _ = teacher
    weak = dataclasses.replace(info, val_accuracy=0.31)
    line = weak_teacher(weak, digits)
    assert "is weak: 31.0% validation accuracy" in line and "--teacher-epochs" in line
    assert "\n" not in line
    # No val-test gap, and done learning (the session's 3-epoch teacher was still rising).
    strong = dataclasses.replace(info, val_accuracy=0.95, test_accuracy=0.95, val_history=())
    assert weak_teacher(strong, digits) is None
    on_ckpt = dataclasses.replace(weak, source="checkpoint: t.safetensors")
    assert "better --teacher-checkpoint" in weak_teacher(on_ckpt, digits)

    trials = pd.DataFrame(
        {"number": [0, 1], "state": ["COMPLETE", "COMPLETE"], "val_accuracy": [0.90, 0.97]}
    )
    prep = Prepared(digits, None, strong, None, torch.device("cpu"))
    [line] = _teacher_warnings(prep, trials, epochs=3)
    assert line.startswith("trial 1, a student trained for 3 epochs (not fully), beat the teacher")
    assert "97.0% against 95.0%" in line
    assert _teacher_warnings(prep, trials.assign(val_accuracy=[0.9, 0.94]), epochs=3) == ()

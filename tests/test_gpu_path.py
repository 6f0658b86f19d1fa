"""What the CPU can check of the GPU path: deterministic CUDA settings for the teacher, the
device its latency was timed on, its precision in its key, and the training data moved to a
worker's device once, not in every trial."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autodistill import teacher as teacher_mod
from autodistill import teacher_store
from autodistill.data import default_augmentation
from autodistill.device import deterministic
from autodistill.measure import device_name
from autodistill.render.tables import teacher_timing

REPO = Path(__file__).resolve().parents[1]


def _settings() -> tuple[bool, bool, bool, bool]:
    cudnn = torch.backends.cudnn
    return (
        cudnn.deterministic,
        cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )


def test_the_teacher_trains_with_deterministic_cuda_kernels_and_the_settings_come_back(
    monkeypatch,
):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = _settings()
    with deterministic("cpu"):
        assert _settings() == before  # nothing to do on a CPU
    with deterministic(torch.device("cuda", 0)):  # only flags: no GPU is touched
        assert _settings() == (True, False, True, True)
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert _settings() == before


def test_the_teacher_latency_is_timed_on_a_cpu_copy_and_says_where(digits, teacher, monkeypatch):
    seen = []
    real = teacher_mod.measure_latency

    def spy(model, shape, *, threads, device):
        seen.append((next(model.parameters()).device.type, torch.device(device).type))
        return real(model, shape, threads=threads, device=device, min_run_time=0.02)

    monkeypatch.setattr(teacher_mod, "measure_latency", spy)
    _, model = teacher
    info = teacher_mod.describe(model, "test_resnet", digits, "trained: x", 1.0, threads=1)
    assert seen == [("cpu", "cpu")]
    assert info.latency_device == device_name(torch.device("cpu")) != ""
    assert teacher_timing(info.to_dict()) == f"PyTorch eager on {info.latency_device}"
    on_target = {**info.to_dict(), "latency_target": "onnxruntime fp32 on cpu"}
    assert teacher_timing(on_target) == "onnxruntime fp32 on cpu"
    old = {k: v for k, v in info.to_dict().items() if k != "latency_device"}
    assert teacher_timing(old) == "PyTorch eager"  # a description cached before it was kept
    assert teacher_mod.TeacherInfo(**old).latency_device == ""


def test_a_teacher_trained_in_bf16_has_its_own_key_and_fp32_keeps_the_old_one(digits):
    aug = default_augmentation(digits.name, digits.image_size)
    recipe = teacher_mod.TeacherRecipe(epochs=1)
    fp32 = teacher_store._recipe_key("resnet18", digits, aug, recipe, "fp32")
    bf16 = teacher_store._recipe_key("resnet18", digits, aug, recipe, "bf16")
    assert fp32 != bf16
    import hashlib
    import json
    from dataclasses import asdict

    h = hashlib.sha256()  # the key as it was before precision counted: caches stay valid
    h.update(json.dumps(["resnet18", digits.name, aug.to_dict(), asdict(recipe)]).encode())
    h.update(teacher_store.dataset_fingerprint(digits).encode())
    assert fp32 == h.hexdigest()[:16]


def test_training_images_move_to_the_device_once_and_keep_their_statistics(digits):
    moved = digits.with_train_on("cpu")
    assert moved.stats == digits.stats
    assert (moved.calibration(8) == digits.calibration(8)).all()
    assert moved.val is digits.val and moved.test is digits.test


def test_a_worker_moves_the_training_data_once_for_all_its_trials(tmp_path, monkeypatch):
    """Every trial's fit gets the one copy its worker moved, not the prepared original."""
    from dataclasses import replace

    from autodistill import api, recipe
    from autodistill.data.splits import DatasetSplits, ImageSet

    copies, given = [], []
    real_move, real_fit = DatasetSplits.with_train_on, recipe.fit

    def move(self, device):
        out = real_move(self, device)
        # a distinct object stands for a copy on another device (on a CPU .to() returns itself)
        out = replace(out, train=ImageSet(out.train.images.clone(), out.train.labels.clone()))
        copies.append(out.train)
        return out

    def fit(model, train, *args, **kwargs):
        given.append(train)
        return real_fit(model, train, *args, **kwargs)

    monkeypatch.setattr(DatasetSplits, "with_train_on", move)
    monkeypatch.setattr(recipe, "fit", fit)
    api.search(
        data="digits",
        budget=3,
        epochs=1,
        teacher="test_resnet",
        teacher_epochs=1,
        views=2,
        threads=2,
        out=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        in_process=True,
    )
    assert len(copies) == 1 and len(given) >= 2
    assert all(train is copies[0] for train in given)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_device_check_stops_at_its_first_cuda_step_in_one_line(tmp_path):
    """Without a GPU the prepared check installs what it carries, imports, and stops there with
    one line and exit status 2 (it is meant for the GPU machine)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "device" / "check.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout.count("\n") == 1 and "no CUDA GPU here" in done.stdout
    assert "False" in (tmp_path / "log.txt").read_text()  # it got as far as asking torch

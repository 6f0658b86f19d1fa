"""The CUDA path, where CUDA is present (skipped elsewhere): a training step that never waits for
the GPU, bf16 autocast, a teacher cache built on the GPU and read on the CPU, latency timed
with CUDA synchronisation, and a whole search on the GPU."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")

GPU = torch.device("cuda", 0)


def _student(digits):
    from autodistill.families import InputSpec, build_student

    torch.manual_seed(0)
    spec = InputSpec(digits.in_chans, digits.image_size, digits.num_classes)
    return build_student("resnet", {"stem_stride": 1, "depths": 1, "width": 8}, spec)


@pytest.mark.parametrize("loss", ["kd", "dkd", "hint", "at", "adversarial"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_training_step_never_waits_for_the_gpu(digits, full_views, monkeypatch, loss,
                                                 precision):  # fmt: skip
    """Under torch.cuda.set_sync_debug_mode("error") any .item(), host copy or mask indexing
    inside a step raises; the epoch's single read of the summed losses is outside it."""
    from autodistill.data import default_augmentation
    from autodistill.losses import get_loss
    from autodistill.trainer import TrainConfig, evaluate, fit, make_distiller

    monkeypatch.setenv("AUTODISTILL_SYNC_DEBUG", "error")
    model = _student(digits).to(GPU)
    params = dict(get_loss(loss).defaults)
    distiller = make_distiller(loss, params, model, (1, 8, 8), 10, full_views)
    aug = default_augmentation(digits.name, digits.image_size)
    cfg = TrainConfig(epochs=2, lr=0.01, device="cuda:0", precision=precision)
    history = fit(model, digits.train, aug, digits.stats, cfg, views=full_views.to(GPU),
                  distiller=distiller)  # fmt: skip
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in model.parameters())
    assert len(history) == 2
    assert evaluate(model, digits.val, digits.stats) > 0.3


def test_the_teacher_trains_on_the_gpu_without_waiting(digits, monkeypatch):
    from autodistill.data import default_augmentation
    from autodistill.trainer import TrainConfig, fit

    monkeypatch.setenv("AUTODISTILL_SYNC_DEBUG", "error")
    model = _student(digits).to(GPU)
    aug = default_augmentation(digits.name, digits.image_size)
    fit(model, digits.train, aug, digits.stats,
        TrainConfig(epochs=1, lr=0.05, optimizer="sgd", device="cuda:0"))  # fmt: skip


def test_a_cache_built_on_the_gpu_is_read_on_the_cpu_under_the_same_key(digits, teacher,
                                                                        tmp_path):  # fmt: skip
    from autodistill.cache import cache_key, compute_views, load_views
    from autodistill.data import default_augmentation
    from autodistill.teacher import dataset_fingerprint

    info, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    key = cache_key(info.weights_sha256, digits.name, dataset_fingerprint(digits), "train", aug, 2)
    built = compute_views(model, digits.train, aug, digits.stats, key=key, views=2,
                          cache_dir=tmp_path, kinds=("logits",), device=GPU)  # fmt: skip
    read = load_views(tmp_path, key, ("logits",))
    assert read is not None and read.key == built.key
    assert read.outputs["logits"].device.type == "cpu"
    on_cpu = compute_views(model.cpu(), digits.train, aug, digits.stats, key=key + "-cpu",
                           views=2, cache_dir=tmp_path, kinds=("logits",))  # fmt: skip
    diff = (read.outputs["logits"].float() - on_cpu.outputs["logits"].float()).abs().max()
    assert float(diff) < 0.05  # the same teacher outputs, to fp16 and kernel rounding


def test_latency_on_the_gpu_is_timed_with_synchronisation(digits):
    from autodistill.latency import LatencyTarget, measure_on_target

    model = _student(digits)
    got = measure_on_target(model, (1, 8, 8), LatencyTarget("torch", device="cuda:0"),
                            min_run_time=0.05)  # fmt: skip
    assert got.median_ms > 0.005  # a launch alone is microseconds; the kernels are waited for
    assert got.details()["latency_hardware"] == torch.cuda.get_device_name(0)


def test_a_search_on_the_gpu_trains_there_and_times_on_the_cpu(tmp_path, shared_cache):
    import pandas as pd
    import yaml

    from autodistill.cli import main
    from tests.conftest import FAST

    out = tmp_path / "out"
    assert main(["search", *FAST, "--out", str(out), "--cache-dir", str(shared_cache),
                 "--device", "cuda"]) == 0  # fmt: skip
    run_dir = out / "digits-default"
    doc = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert doc["resolved"]["device"] == "cuda:0"
    trials = pd.read_csv(run_dir / "trials.csv")
    assert (trials["state"] == "COMPLETE").any()
    failed = trials[trials["state"] == "FAIL"]["failure_reason"].fillna("")
    assert failed.str.startswith("DidNotLearn").all()  # a 1-epoch student may stay at chance
    assert (trials["latency_device"].dropna() == "cpu").all()  # the target, not the trainer

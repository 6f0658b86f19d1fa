"""The CUDA path, where CUDA is present (skipped elsewhere): a training step that never waits for
the GPU, bf16 autocast, a teacher cache built on the GPU and read on the CPU, latency timed
with CUDA synchronisation, and a whole search on the GPU."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")

GPU = torch.device("cuda", 0)


# Each family at its narrowest, for the 8 px digits (as tests/test_layout.py builds them).
NARROWEST = {
    "resnet": {"stem_stride": 1, "depths": 1, "width": 8},
    "mobilenetv3": {
        "stem_stride": 1,
        "width": 0.25,
        "stages": 2,
        "depths": [1, 1],
        "kernels": [3, 3],
        "expansions": [2.0, 2.0],
        "head": 128,
    },
    "convnext": {"patch_size": 1, "depths": [1, 1, 1, 1], "width": 16, "kernel": 3},
    "vit": {"patch_size": 4, "depth": 1, "heads": 1, "head_dim": 16, "mlp_ratio": 2.0},
}
LOSSES = ["ce", "kd", "dkd", "dist", "hint", "at", "adversarial"]


def _student(digits, family: str = "resnet"):
    from autodistill.families import InputSpec, build_student

    torch.manual_seed(0)
    spec = InputSpec(digits.in_chans, digits.image_size, digits.num_classes)
    return build_student(family, NARROWEST[family], spec)


@pytest.mark.parametrize("family", list(NARROWEST))
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_training_step_never_waits_for_the_gpu(
    digits, full_views, monkeypatch, family, loss, precision
):
    """Under torch.cuda.set_sync_debug_mode("error") any .item(), host copy or mask indexing
    inside a step raises; the epoch's single read of the summed losses is outside it. Every
    family with every loss, in both precisions."""
    from autodistill.data import default_augmentation
    from autodistill.losses import get_loss
    from autodistill.recipe import make_distiller
    from autodistill.trainer import TrainConfig, evaluate, fit

    monkeypatch.setenv("AUTODISTILL_SYNC_DEBUG", "error")
    model = _student(digits, family).to(GPU)
    params = dict(get_loss(loss).defaults)
    distiller = make_distiller(loss, params, model, (1, 8, 8), 10, full_views)
    aug = default_augmentation(digits.name, digits.image_size)
    cfg = TrainConfig(epochs=2, lr=0.01, device="cuda:0", precision=precision)
    history = fit(
        model, digits.train, aug, digits.stats, cfg, views=full_views.to(GPU), distiller=distiller
    )
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in model.parameters())
    assert len(history) == 2
    if family == "resnet":  # the others may need more than 2 epochs on 8 px digits
        assert evaluate(model, digits.val, digits.stats) > 0.3


def test_bf16_is_really_used_for_the_student_forward(digits):
    """With precision bf16 the convolutions and linears run in bf16 (autocast), the weights and
    their gradients stay fp32."""
    from autodistill.data import default_augmentation
    from autodistill.trainer import TrainConfig, fit

    model = _student(digits).to(GPU)
    dtypes = set()
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype)) for m in layers]
    aug = default_augmentation(digits.name, digits.image_size)
    fit(
        model,
        digits.train,
        aug,
        digits.stats,
        TrainConfig(epochs=1, lr=0.01, device="cuda:0", precision="bf16"),
    )
    for h in hooks:
        h.remove()
    assert dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_an_interrupted_run_resumes_on_the_gpu_to_the_same_weights(digits, views, tmp_path):
    """The checkpoint carries the CUDA RNG state (dropout, drop-path on the GPU): stopped after
    one epoch and resumed in a fresh state, the run ends where an uninterrupted one does. The
    multi-fidelity rung schedule (wsd) is the one resumed."""
    from autodistill.data import default_augmentation
    from autodistill.trainer import TrainConfig, fit

    aug = default_augmentation(digits.name, digits.image_size)
    cfg = TrainConfig(
        epochs=3,
        lr=5e-3,
        seed=1,
        device="cuda:0",
        schedule="wsd",
        stable_epochs=2,
        warmup_epochs=0.3,
    )
    straight = _student(digits, "vit").to(GPU)
    torch.cuda.manual_seed(7)
    fit(straight, digits.train, aug, digits.stats, cfg, views=views.to(GPU))

    class Stop(Exception):
        pass

    def stop(epoch, _):
        if epoch == 0:
            raise Stop

    ckpt = tmp_path / "ckpt.pt"
    resumed = _student(digits, "vit").to(GPU)
    torch.cuda.manual_seed(7)
    with pytest.raises(Stop):
        fit(
            resumed,
            digits.train,
            aug,
            digits.stats,
            cfg,
            views=views.to(GPU),
            checkpoint=ckpt,
            on_epoch=stop,
        )
    torch.manual_seed(123)
    torch.cuda.manual_seed(123)  # a fresh process: only the checkpoint carries the state
    fresh = _student(digits, "vit").to(GPU)
    fit(fresh, digits.train, aug, digits.stats, cfg, views=views.to(GPU), checkpoint=ckpt)
    for (name, a), b in zip(
        straight.state_dict().items(), fresh.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


def test_the_teacher_retrains_on_the_gpu_to_the_same_weights(digits, tmp_path):
    """Deterministic kernels while the teacher trains (device.deterministic): a damaged cache
    rebuilt on a GPU is the teacher the study recorded, verified by hash."""
    from autodistill.data import default_augmentation
    from autodistill.teacher import TeacherRecipe
    from autodistill.teacher_store import prepare_teacher

    aug = default_augmentation(digits.name, digits.image_size)
    hashes = []
    for run in range(2):
        info, _ = prepare_teacher(
            "test_resnet",
            digits,
            aug,
            cache_dir=tmp_path / str(run),
            threads=2,
            device=GPU,
            recipe=TeacherRecipe(epochs=2),
            precision="bf16",
        )
        hashes.append(info.weights_sha256)
        assert info.latency_device != torch.cuda.get_device_name(0)  # timed on a CPU copy
    assert hashes[0] == hashes[1]


def test_the_teacher_trains_on_the_gpu_without_waiting(digits, monkeypatch):
    from autodistill.data import default_augmentation
    from autodistill.trainer import TrainConfig, fit

    monkeypatch.setenv("AUTODISTILL_SYNC_DEBUG", "error")
    model = _student(digits).to(GPU)
    aug = default_augmentation(digits.name, digits.image_size)
    fit(
        model,
        digits.train,
        aug,
        digits.stats,
        TrainConfig(epochs=1, lr=0.05, optimizer="sgd", device="cuda:0"),
    )


def test_a_cache_built_on_the_gpu_is_read_on_the_cpu_under_the_same_key(digits, teacher, tmp_path):
    from autodistill.cache import cache_key, compute_views, load_views
    from autodistill.data import default_augmentation
    from autodistill.teacher_store import dataset_fingerprint

    info, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    key = cache_key(info.weights_sha256, digits.name, dataset_fingerprint(digits), "train", aug, 2)
    built = compute_views(
        model,
        digits.train,
        aug,
        digits.stats,
        key=key,
        views=2,
        cache_dir=tmp_path,
        kinds=("logits",),
        device=GPU,
    )
    read = load_views(tmp_path, key, ("logits",))
    assert read is not None and read.key == built.key
    assert read.outputs["logits"].device.type == "cpu"
    on_cpu = compute_views(
        model.cpu(),
        digits.train,
        aug,
        digits.stats,
        key=key + "-cpu",
        views=2,
        cache_dir=tmp_path,
        kinds=("logits",),
    )
    diff = (read.outputs["logits"].float() - on_cpu.outputs["logits"].float()).abs().max()
    assert float(diff) < 0.05  # the same teacher outputs, to fp16 and kernel rounding


def test_features_and_attention_cached_on_the_gpu_match_the_cpu(digits, teacher, tmp_path):
    from autodistill.cache import compute_views
    from autodistill.data import default_augmentation

    info, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    kinds = ("logits", "features", "attention")
    built = compute_views(
        model,
        digits.train,
        aug,
        digits.stats,
        key="00aa",
        views=2,
        cache_dir=tmp_path / "gpu",
        kinds=kinds,
        device=GPU,
    )
    on_cpu = compute_views(
        model.cpu(),
        digits.train,
        aug,
        digits.stats,
        key="00aa",
        views=2,
        cache_dir=tmp_path / "cpu",
        kinds=kinds,
    )
    for kind in kinds:
        a, b = built.outputs[kind].float(), on_cpu.outputs[kind].float()
        assert a.shape == b.shape, kind
        scale = float(b.abs().max()) or 1.0
        assert float((a - b).abs().max()) / scale < 0.02, kind


def test_latency_on_the_gpu_is_timed_with_synchronisation():
    """A model whose kernels take milliseconds (CUDA events say how many) is timed at no less:
    timing only the launches would give tens of microseconds."""
    from autodistill.latency import LatencyTarget, measure_on_target

    model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(8)]).eval()
    got = measure_on_target(
        model, (4096,), LatencyTarget("torch", device="cuda:0", batch=4096), min_run_time=0.2
    )
    model.to(GPU)
    x = torch.zeros(4096, 4096, device=GPU)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.inference_mode():
        model(x)
        start.record()
        for _ in range(5):
            model(x)
        end.record()
    torch.cuda.synchronize()
    kernels_ms = start.elapsed_time(end) / 5
    assert kernels_ms > 0.5
    assert got.median_ms >= 0.7 * kernels_ms
    assert got.details()["latency_hardware"] == torch.cuda.get_device_name(0)


def test_a_search_on_the_gpu_trains_there_and_times_on_the_cpu(tmp_path, shared_cache):
    import pandas as pd
    import yaml

    from autodistill.cli import main
    from tests.conftest import FAST

    out = tmp_path / "out"
    assert (
        main(
            [
                "search",
                *FAST,
                "--out",
                str(out),
                "--cache-dir",
                str(shared_cache),
                "--device",
                "cuda",
            ]
        )
        == 0
    )
    run_dir = out / "digits-default"
    doc = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert doc["resolved"]["device"] == "cuda:0"
    trials = pd.read_csv(run_dir / "trials.csv")
    assert (trials["state"] == "COMPLETE").any()
    failed = trials.loc[trials["state"] == "FAIL", "failure_reason"].fillna("").astype(str)
    assert failed.str.startswith("DidNotLearn").all()  # a 1-epoch student may stay at chance
    assert (trials["latency_device"].dropna() == "cpu").all()  # the target, not the trainer


def test_jobs_2_share_one_gpu_and_train_and_compress_run_there(tmp_path, shared_cache):
    """Two workers on one GPU (timing stays on the CPU), then ``train`` and ``compress
    --prune --qat`` on the GPU, in their contained child processes."""
    import json

    import pandas as pd

    from autodistill.cli import main
    from tests.conftest import FAST

    out = tmp_path / "out"
    args = [*FAST, "--out", str(out), "--cache-dir", str(shared_cache), "--device", "cuda"]
    assert main(_jobs2(args)) == 0
    run_dir = out / "digits-default"
    trials = pd.read_csv(run_dir / "trials.csv")
    assert (trials["state"] == "COMPLETE").any() and not trials["crashed"].fillna(0).any()
    assert main(["train", str(run_dir), "--pick", "smallest", "--epochs", "2", "--quiet"]) == 0
    (metrics,) = (run_dir / "students").glob("trial-*/metrics.json")
    assert json.loads(metrics.read_text())["test_accuracy"] > 0
    assert (
        main(["compress", str(run_dir), "--prune", "0.5", "--qat", "--epochs", "1", "--quiet"]) == 0
    )


def _jobs2(args: list[str]) -> list[str]:
    """``search`` with ``--jobs 2`` and one thread each (FAST asks for 2)."""
    args = list(args)
    args[args.index("--threads") + 1] = "1"
    return ["search", *args, "--jobs", "2"]

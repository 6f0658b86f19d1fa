"""The device axis: ``auto`` resolves to what is here; a device that is not here is one line."""

from __future__ import annotations

import pytest
import torch

from autodistill.cli import main
from autodistill.device import resolve_device
from autodistill.errors import UserError
from tests.conftest import FAST


def test_auto_and_cpu_resolve_to_a_device_that_exists():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    if torch.cuda.is_available():
        assert auto == torch.device("cuda", 0)
    elif not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        assert auto == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1", "CUDA:0"])
def test_a_gpu_that_is_not_here_is_refused(name):
    with pytest.raises(UserError, match="no CUDA GPU is visible"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", ""])
def test_a_name_that_is_no_device_says_what_is(name):
    with pytest.raises(UserError, match="choose auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_cli_refuses_a_missing_device_before_any_work(tmp_path, capsys):
    code = main(["search", *FAST, "--out", str(tmp_path), "--device", "cuda:0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--device cuda:0" in err
    assert not any(tmp_path.iterdir())  # nothing written, no teacher trained


def test_cpu_runs_end_to_end_and_is_recorded(tmp_path, shared_cache):
    import yaml

    out = tmp_path / "out"
    assert (
        main(
            [
                "search",
                *FAST,
                "--budget",
                "2",
                "--out",
                str(out),
                "--cache-dir",
                str(shared_cache),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    doc = yaml.safe_load((out / "digits-default" / "config.yaml").read_text())
    assert doc["config"]["device"] == "cpu" and doc["resolved"]["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--latency-device", "cuda"], "--latency-device cuda"),
        (["--latency-runtime", "torch", "--latency-device", "cuda:0"], "--latency-device cuda:0"),
        (["--latency-runtime", "torch", "--latency-precision", "int8"], "--latency-runtime onnx"),
        (["--latency-batch", "0"], "--latency-batch must be a positive integer"),
    ],
)
def test_a_latency_target_not_here_is_one_line_before_any_work(tmp_path, capsys, options, message):
    code = main(["search", *FAST, "--out", str(tmp_path), *options])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not any(tmp_path.iterdir())


def test_auto_precision_is_fp32_on_a_cpu_and_bf16_is_refused_on_mps():
    from autodistill.device import resolve_precision

    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(UserError, match="--precision 'fp16'"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(UserError, match="not supported on MPS"):
        resolve_precision("bf16", "mps")


def test_bf16_autocast_trains_on_the_cpu_with_fp32_weights(digits, views):
    """The step under bf16 autocast: weights stay fp32, the loss finite, accuracy learned."""
    from autodistill.data import default_augmentation
    from autodistill.families import InputSpec, build_student
    from autodistill.losses import Dims, Distiller, get_loss
    from autodistill.trainer import TrainConfig, evaluate, fit

    torch.manual_seed(0)
    spec = InputSpec(digits.in_chans, digits.image_size, digits.num_classes)
    model = build_student("resnet", {"stem_stride": 1, "depths": 1, "width": 8}, spec)
    aug = default_augmentation(digits.name, digits.image_size)
    cfg = TrainConfig(epochs=2, lr=0.01, precision="bf16")
    history = fit(
        model,
        digits.train,
        aug,
        digits.stats,
        cfg,
        views=views,
        distiller=Distiller(get_loss("kd"), {"temperature": 4.0, "alpha": 0.5}, dims=Dims(10)),
    )
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(v)) for h in history for v in h.values())
    assert evaluate(model, digits.val, digits.stats) > 0.5

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
    assert main(["search", *FAST, "--budget", "2", "--out", str(out), "--cache-dir",
                 str(shared_cache), "--device", "cpu"]) == 0  # fmt: skip
    doc = yaml.safe_load((out / "digits-default" / "config.yaml").read_text())
    assert doc["config"]["device"] == "cpu" and doc["resolved"]["device"] == "cpu"

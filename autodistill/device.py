"""Where tensors live: the ``--device`` choice resolved to a torch device that is present."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from autodistill.errors import UserError

CHOICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """``auto`` (the first GPU if there is one, else MPS, else the CPU) or a device that exists.

    Raises:
        UserError: the name is not a device, or the device is not on this machine.
    """
    name = str(name).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise UserError(f"{option} mps: this machine has no Apple GPU (MPS); use cpu or auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise UserError(f"unknown device {name!r}; choose {CHOICES}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match.group(1) or 0)
    if count == 0:
        raise UserError(f"{option} {name}: no CUDA GPU is visible on this machine; use cpu or auto")
    if index >= count:
        raise UserError(
            f"{option} {name}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}"
        )
    _fixed_cublas_workspace()
    return torch.device("cuda", index)


def _fixed_cublas_workspace() -> None:
    """cuBLAS gives the same sums on every run only with a fixed workspace, read once per process
    at its first matrix product: set before any (``deterministic`` relies on it)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextmanager
def deterministic(device: torch.device | str) -> Iterator[None]:
    """On CUDA, kernels that give the same result on every run (cuDNN's deterministic
    algorithms, no autotuning, PyTorch's deterministic mode), so that training the teacher again
    gives the same weights, as it does on a CPU. An operation with no deterministic kernel warns
    once rather than failing: the weights' hash, checked by the teacher store, is the proof.
    Elsewhere it changes nothing. The settings are restored after."""
    if torch.device(device).type != "cuda":
        yield
        return
    _fixed_cublas_workspace()
    cudnn = torch.backends.cudnn
    before = (
        cudnn.deterministic,
        cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    cudnn.deterministic, cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = before[0], before[1]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``fp32`` or ``bf16`` (autocast, fp32 master weights): ``auto`` is bf16 on CUDA, where
    tensor cores run it several times faster, and fp32 elsewhere (on a CPU bf16 pays only
    where AMX runs it, which is measured, not assumed: pass ``bf16`` to have it).

    Raises:
        UserError: not a precision, or bf16 on a GPU without it.
    """
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: choose {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(
            f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp32 or auto"
        )
    if precision == "bf16" and device.type == "mps":
        raise UserError("--precision bf16 is not supported on MPS here; use fp32 or auto")
    return precision


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())

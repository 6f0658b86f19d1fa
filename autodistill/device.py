"""Where tensors live: the ``--device`` choice resolved to a torch device that is present."""

from __future__ import annotations

import re

import torch

from autodistill.errors import UserError

CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
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
            raise UserError("--device mps: this machine has no Apple GPU (MPS); use cpu or auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise UserError(f"unknown device {name!r}; choose {CHOICES}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match.group(1) or 0)
    if count == 0:
        raise UserError(f"--device {name}: no CUDA GPU is visible on this machine; use cpu or auto")
    if index >= count:
        raise UserError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0.."
                        f"cuda:{count - 1}")  # fmt: skip
    return torch.device("cuda", index)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())

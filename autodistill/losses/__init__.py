"""Distillation losses; importing this package registers every built-in loss."""

from __future__ import annotations

from autodistill.losses import adversarial, feature, logit  # noqa: F401  (registers)
from autodistill.losses.registry import (
    LOSSES,
    Dims,
    Distiller,
    Loss,
    Outputs,
    get_loss,
    plain,
    register_loss,
    total,
)

__all__ = [
    "LOSSES",
    "Dims",
    "Distiller",
    "Loss",
    "Outputs",
    "get_loss",
    "plain",
    "register_loss",
    "total",
]

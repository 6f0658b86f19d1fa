"""Student families; importing this package registers every built-in family."""

from __future__ import annotations

from autodistill.families import convnext, mobilenetv3, resnet, vit  # noqa: F401  (registers)
from autodistill.families.registry import (
    FAMILIES,
    Family,
    InfeasibleArchitecture,
    InputSpec,
    build_student,
    get_family,
)

__all__ = [
    "FAMILIES",
    "Family",
    "InfeasibleArchitecture",
    "InputSpec",
    "build_student",
    "get_family",
]

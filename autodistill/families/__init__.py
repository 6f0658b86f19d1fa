"""Student families; importing this package registers every built-in family."""

from __future__ import annotations

from autodistill.families import (  # noqa: F401  (registers)
    convnext,
    from_teacher,
    mobilenetv3,
    resnet,
    vit,
)
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

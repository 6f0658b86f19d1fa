"""Registry of student families: each maps sampled architecture arguments onto a timm model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autodistill.domain import Domain
from autodistill.errors import first_line
from autodistill.registry import Registry


class InfeasibleArchitecture(Exception):
    """The sampled architecture cannot run on this input (recorded as infeasible, not a crash)."""


@dataclass(frozen=True)
class InputSpec:
    """What a student must accept and produce."""

    in_chans: int
    image_size: int
    num_classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """One input's shape: channels, height, width."""
        return (self.in_chans, self.image_size, self.image_size)


Builder = Callable[..., nn.Module]  # (arch, spec), or (arch, spec, teacher) when derived
Describer = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Family:
    """A student family: the architecture arguments it takes and how to build and name one."""

    name: str
    domains: dict[str, Domain]  # every architecture argument and the values it may take
    build: Builder
    describe: Describer
    doc: str
    # Train in NHWC. Off for every family: on the 2-core Xeon (torch 2.15, oneDNN) the trial
    # loop ran within +-5% either way (results/benchmarks/training_efficiency.md).
    channels_last: bool = False
    # Built from the teacher: ``build(arch, spec, teacher)`` (families.from_teacher).
    derived: bool = False

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(self.domains)


FAMILIES: Registry[Family] = Registry("family")


def register_family(
    name: str,
    *,
    params: Mapping[str, Domain],
    describe: Describer,
    channels_last: bool = False,
    derived: bool = False,
) -> Callable[[Builder], Builder]:
    """Register ``build(arch, spec) -> nn.Module`` as the family ``name``; ``params`` maps each
    architecture argument to the values a space may give it. A ``derived`` family's students
    are made from the teacher: ``build(arch, spec, teacher)``."""

    def wrap(build: Builder) -> Builder:
        doc = (build.__doc__ or "").strip().splitlines()[0] if build.__doc__ else ""
        family = Family(name, dict(params), build, describe, doc, channels_last, derived)
        FAMILIES.register(name, family)
        return build

    return wrap


def get_family(name: str) -> Family:
    """The family called ``name``, or a UserError that lists the known ones."""
    return FAMILIES.get(name)


def build_student(
    family: str,
    arch: Mapping[str, Any],
    spec: InputSpec,
    teacher: Callable[[], nn.Module] | None = None,
) -> nn.Module:
    """Build a student and prove it runs on one input of the data's shape; a derived family's
    from the teacher ``teacher`` loads.

    Raises:
        InfeasibleArchitecture: the arguments cannot make a model for this input size.
    """
    fam = get_family(family)
    if fam.derived and teacher is None:
        raise ValueError(f"a {family} student is derived from the teacher: pass teacher=")
    try:
        model = fam.build(arch, spec, teacher()) if fam.derived else fam.build(arch, spec)
        model.eval()
        with torch.inference_mode():
            out = model(torch.zeros(1, spec.in_chans, spec.image_size, spec.image_size))
    except InfeasibleArchitecture:
        raise
    except (RuntimeError, ValueError, AssertionError, ZeroDivisionError) as exc:
        # timm raises these for shapes that collapse below 1 pixel or do not divide.
        first = first_line(exc)
        raise InfeasibleArchitecture(
            f"{family} cannot run on {spec.image_size}px input: {first}"
        ) from None
    if tuple(out.shape) != (1, spec.num_classes):
        raise InfeasibleArchitecture(f"{family} produced shape {tuple(out.shape)}")
    model.train()
    return model


def stage_widths(width: Any, n: int) -> list[int]:
    """Per-stage widths: a list as given, or a base width doubled at every stage."""
    if isinstance(width, list | tuple):
        return [int(w) for w in stage_list(width, n)]
    return [int(width) * 2**i for i in range(n)]


def width_text(width: Any) -> str:
    """How an arch summary shows a width (base or per stage)."""
    return "-".join(map(str, width)) if isinstance(width, list | tuple) else str(width)


def stage_list(value: Any, n: int) -> list[Any]:
    """A per-stage argument as a list of length ``n`` (a scalar is repeated)."""
    if isinstance(value, list | tuple):
        if len(value) < n:
            raise InfeasibleArchitecture(f"{len(value)} per-stage values for {n} stages")
        return list(value[:n])
    return [value] * n

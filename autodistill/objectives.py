"""Objectives a search trades off, as a registry: each says how it is measured and compared.

Adding one (peak memory, int8 latency, ...) is one measuring function and one ``register``
call: the study's directions, the limits (``--max-<name>``), early stopping, the front, the
knee, hypervolume, the tables, the plots and the report all read it from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from autodistill.data.splits import ImageSet
from autodistill.errors import UserError
from autodistill.latency import LatencyTarget, measure_on_target
from autodistill.measure import count_flops, count_params, serialized_bytes
from autodistill.registry import Registry
from autodistill.trainer import Stats, evaluate

DEFAULT = ("val_accuracy", "params", "latency_ms")


@dataclass(frozen=True)
class Probe:
    """What an objective may look at: the student, its input, where it trains, the target its
    latency is measured on, and (once it is trained) the validation split."""

    model: nn.Module
    input_shape: tuple[int, int, int]
    device: torch.device
    target: LatencyTarget
    val: ImageSet | None = None
    stats: Stats | None = None
    calibration: np.ndarray | None = None  # normalised training images, for an int8 target
    # Times a latency relative to the study's reference (reference.Reference.around, bound to
    # its quiet figure); None: as measured.
    relative: Callable[[Callable[[], tuple[float, dict[str, Any]]]], Measured] | None = None


# A value, or a value and details recorded beside it (e.g. the latency's spread and device).
Measured = float | tuple[float, dict[str, Any]]


@dataclass(frozen=True)
class Objective:
    """One objective. Values are stored in ``unit`` (accuracy as a fraction 0..1, everywhere)."""

    name: str
    direction: str  # "maximize" or "minimize"
    label: str  # axis and column label
    measure: Callable[[Probe], Measured]
    bounds: tuple[float, float]  # fixed hypervolume bounds, so runs and samplers compare
    log: bool = True  # spaced logarithmically in plots, the knee and hypervolume
    after_training: bool = False  # needs a trained student; the others are measured first
    always: bool = True  # costs nothing: recorded for every trial, chosen or not
    decimals: int = 0  # recorded rounded, so measurement noise does not reorder the front
    text: Callable[[float], str] = str  # one value as a table shows it

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def limitable(self) -> bool:
        """A ``--max-<name>`` limit applies: measured before training, smaller is better."""
        return not self.after_training and not self.maximize

    @property
    def option(self) -> str:
        return "--max-" + self.name.replace("_", "-")

    def rounded(self, value: float) -> float:
        """Rounded to ``decimals``; a count (0 decimals) stays an integer."""
        if self.decimals == 0:
            return int(round(float(value)))
        return float(round(float(value), self.decimals))

    def record(self, probe: Probe) -> tuple[float, dict[str, Any]]:
        """Measure: the value as recorded (rounded), and the details recorded beside it."""
        measured = self.measure(probe)
        value, details = measured if isinstance(measured, tuple) else (measured, {})
        return self.rounded(value), details

    def scaled(self, values: Iterable[float]) -> np.ndarray:
        """Values in the space plots and the knee use: log10 where ``log``, negated when larger
        is better, so smaller is always better."""
        v = np.asarray(list(values), dtype=float)
        v = np.log10(np.maximum(v, 1e-12)) if self.log else v
        return -v if self.maximize else v

    def loss(self, values: Iterable[float]) -> np.ndarray:
        """Values as hypervolume losses in 0..1 (0 best) within the fixed ``bounds``."""
        lo, hi = self.bounds
        v = np.asarray(list(values), dtype=float)
        if self.log:
            v, lo, hi = np.log10(np.maximum(v, 1e-12)), math.log10(lo), math.log10(hi)
        unit = (v - lo) / (hi - lo)
        return np.clip(1.0 - unit if self.maximize else unit, 0.0, 1.0)


OBJECTIVES: Registry[Objective] = Registry("objective", sort_known=False)


def register(objective: Objective) -> Objective:
    if objective.direction not in ("maximize", "minimize"):
        raise ValueError(f"objective {objective.name!r}: direction must be maximize or minimize")
    return OBJECTIVES.register(objective.name, objective)


def get_objective(name: str) -> Objective:
    """The objective called ``name``, or a UserError that lists the known ones."""
    return OBJECTIVES.get(name)


def parse_objectives(names: str | Iterable[str]) -> tuple[str, ...]:
    """``val_accuracy,params,latency_ms`` (or a list) checked: known, distinct, two or more,
    one of them measured after training (what the search trains students for)."""
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [str(n).strip() for n in items if str(n).strip()]
    for name in items:
        get_objective(name)
    if len(set(items)) != len(items):
        raise UserError(f"--objectives names one twice: {','.join(items)}")
    if len(items) < 2:
        raise UserError(
            f"--objectives needs two or more, got {','.join(items) or 'none'}; "
            f"e.g. {','.join(DEFAULT)}"
        )
    trained = [n for n, o in OBJECTIVES.items() if o.after_training]
    if not any(OBJECTIVES[n].after_training for n in items):
        raise UserError(
            f"--objectives must include one measured after training "
            f"({', '.join(trained)}); got {','.join(items)}"
        )
    return tuple(items)


def minimised(values: Any, names: Iterable[str]) -> np.ndarray:
    """Rows of objective values (columns in the order of ``names``) signed so that smaller is
    better for every objective."""
    signs = np.array([-1.0 if get_objective(n).maximize else 1.0 for n in names])
    return np.asarray(values, dtype=float).reshape(-1, len(signs)) * signs


def nondominated_layers(points: np.ndarray) -> list[list[int]]:
    """The rows of ``points`` (values to minimise) by non-dominated layer, the front first: a
    row is dominated by one no worse on every column and better on one (equal rows are not)."""
    left, out = list(range(len(points))), []
    while left:
        rest = points[left]
        layer = [i for i, row in zip(left, rest, strict=True)
                 if not ((rest <= row).all(axis=1) & (rest < row).any(axis=1)).any()]  # fmt: skip
        out.append(layer)
        left = [i for i in left if i not in layer]
    return out


def limitable() -> list[Objective]:
    """The objectives a ``--max-<name>`` limit can bound."""
    return [o for o in OBJECTIVES.values() if o.limitable]


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _accuracy(p: Probe) -> float:
    if p.val is None or p.stats is None:
        raise ValueError("val_accuracy is measured after training, on the validation split")
    return evaluate(p.model, p.val, p.stats)


def _latency(p: Probe) -> Measured:
    def measure() -> tuple[float, dict[str, Any]]:
        got = measure_on_target(p.model, p.input_shape, p.target, calibration=p.calibration)
        return got.median_ms, got.details()

    return measure() if p.relative is None else p.relative(measure)


register(
    Objective(
        "val_accuracy",
        "maximize",
        "validation accuracy",
        _accuracy,
        bounds=(0.0, 1.0),
        log=False,
        after_training=True,
        decimals=4,
        text=lambda v: f"{100 * v:.2f}%",
    )
)
register(
    Objective(
        "params",
        "minimize",
        "parameters",
        lambda p: count_params(p.model),
        bounds=(1e3, 1e8),
        text=lambda v: f"{int(v):,}",
    )
)
register(
    Objective(
        "latency_ms",
        "minimize",
        "latency (ms)",
        _latency,
        bounds=(1e-2, 1e3),
        always=False,
        decimals=3,
        text=lambda v: f"{v:.3f}",
    )
)
register(
    Objective(
        "flops",
        "minimize",
        "FLOPs (batch 1)",
        lambda p: count_flops(p.model, p.input_shape),
        bounds=(1e4, 1e11),
        text=_human,
    )
)
register(
    Objective(
        "size_kb",
        "minimize",
        "size (kB, serialized)",
        lambda p: serialized_bytes(p.model) / 1e3,
        bounds=(1.0, 1e6),
        decimals=1,
        text=lambda v: f"{v:,.1f}",
    )
)

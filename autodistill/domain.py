"""What values a parameter may take: the bounds a search space is checked against when it is read.

Families, losses and the trainer declare one Domain per parameter; ``spaces`` refuses a fixed value,
a choice or a range end outside it, so ``width: 8.5`` or ``temperature: -1`` is one line at load
time rather than a student built as something else or a loss that trains backwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Domain:
    """Integers or reals between ``low`` and ``high`` (inclusive; ``open_low`` excludes ``low``)."""

    kind: type = float  # int or float
    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None and not self.open_low:
            return f"{what} in [{self.low:g}, {self.high:g}]"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        return f"{what} {' and '.join(parts)}" if parts else what

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside this domain, or None when it is inside."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (isinstance(value, float) and not math.isfinite(value)):
            return f"must be {self.describe()}, got {value!r}"
        if self.kind is int and not isinstance(value, int):
            return f"must be {self.describe()}, got {value!r} (not a whole number)"
        below = self.low is not None and (value <= self.low if self.open_low else value < self.low)
        if below or (self.high is not None and value > self.high):
            return f"must be {self.describe()}, got {value!r}"
        return None


def integer(low: int, high: int) -> Domain:
    """Whole numbers from ``low`` to ``high``."""
    return Domain(int, low, high)


def real(low: float | None = None, high: float | None = None, *, above: bool = False) -> Domain:
    """Real numbers in [low, high]; ``above=True`` makes it (low, high]."""
    return Domain(float, low, high, open_low=above)


POSITIVE = real(0.0, above=True)
NON_NEGATIVE = real(0.0)
FRACTION = real(0.0, 1.0)
TEMPERATURE = real(0.0, 100.0, above=True)  # softmax temperature: T <= 0 inverts or divides by 0

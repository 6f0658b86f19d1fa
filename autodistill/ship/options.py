"""The options of ``train``, ``export`` and ``compress``, each defined once: the CLI's flags are
generated from these fields, the API's keywords are these names, and the library takes them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from autodistill.device import CHOICES as DEVICE_CHOICES
from autodistill.device import resolve_device
from autodistill.errors import UserError
from autodistill.int8 import TOLERANCE as INT8_TOLERANCE
from autodistill.options import option
from autodistill.prune import rounds
from autodistill.ship.pick import RULES
from autodistill.ship.variants import TOLERANCE as COMPRESS_TOLERANCE

OTHER_TEACHER = (
    "distil from the teacher in the cache even when it is not the one the study recorded (a "
    "teacher trained again on another machine); its hash is recorded"
)


def parse_ratios(text: str) -> tuple[float, ...]:
    """``0.25,0.5``: pruning ratios, each a fraction of channels in (0, 1)."""
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of fractions such as 0.25,0.5"
        ) from None
    bad = [v for v in values if not 0 < v < 1]
    if bad:
        raise argparse.ArgumentTypeError(
            f"a pruning ratio is a fraction of channels in (0, 1); got {bad[0]}"
        )
    return values


def _check_device(device: str | None) -> None:
    if device is not None:
        resolve_device(device)  # a device that is not here is refused before anything runs


@dataclass(frozen=True)
class TrainOptions:
    """Which students of a run to train fully, and how."""

    trial: int | None = option(None, "this trial number")
    pick: str | None = option(
        None,
        "a point of the front by rule; knee when no other way of choosing (--trial, "
        "--max-<objective>, --top) is given",
        choices=RULES,
    )
    limits: dict[str, float] = option(
        factory=dict, help="the most accurate student without", per_objective=True
    )
    top: int | None = option(
        None,
        "the K most accurate front points, and how well brief training ranked them (Kendall tau)",
    )
    epochs: int = option(30, "full training epochs")
    device: str | None = option(None, f"where to train: {DEVICE_CHOICES} (by default the run's)")
    other_teacher: bool = option(False, OTHER_TEACHER)
    seed: int | None = option(
        None,
        "training seed (by default the run's); a student trained with another seed is trained "
        "again and replaced",
    )

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        asked = [self.trial is not None, self.pick is not None, bool(self.limits)]
        if sum([*asked, self.top is not None]) > 1:
            raise UserError("give one of --trial, --pick, --max-<objective> limits or --top")
        if self.pick is not None and self.pick not in RULES:
            raise UserError(f"unknown pick rule {self.pick!r}; known: {', '.join(RULES)}")
        _check_device(self.device)


@dataclass(frozen=True)
class ExportOptions:
    """How a trained student is exported, checked and timed."""

    trial: int | None = option(None, "which trained student (needed if several)")
    int8: bool = option(False, "also quantize to int8 and re-test")
    threads: int = option(0, "threads for timing (0: the run's)")
    int8_tolerance: float = option(
        INT8_TOLERANCE,
        "the most validation accuracy an int8 recipe may lose and still ship, as a fraction "
        "(0.01 is one point)",
        metavar="FRACTION",
    )
    dynamic_batch: bool = option(
        False,
        "ship a graph of any batch; by default the run's --latency-batch is fixed in the file, "
        "as the search timed it (a ViT ran 15%% faster so)",
    )

    def __post_init__(self) -> None:
        if not 0 <= self.int8_tolerance < 1:
            raise UserError(
                f"--int8-tolerance must be a fraction of accuracy in [0, 1), got "
                f"{self.int8_tolerance}"
            )
        if self.threads < 0:
            raise UserError(f"--threads must be 0 (the run's) or more, got {self.threads}")


@dataclass(frozen=True)
class CompressOptions:
    """Which trained student to compress, and into which variants."""

    trial: int | None = option(None, "this trial number")
    pick: str | None = option(
        None, "a point of the front by rule (it must be trained)", choices=RULES
    )
    prune: tuple[float, ...] = option(
        (0.25, 0.5),
        "fractions of channels to remove, each a variant; more than 0.3 is removed in rounds "
        "of at most 0.3, fine-tuned between",
        parse=parse_ratios,
        metavar="R[,R...]",
    )
    qat: bool = option(False, "also train each variant int8-quantization-aware, with distillation")
    epochs: int = option(5, "fine-tuning epochs per pruning round and per QAT run")
    kd: bool = option(
        True,
        "fine-tune with plain cross-entropy (by default with the trial's distillation loss, or "
        "the default one for a trial that learned without the teacher)",
    )
    tolerance: float = option(
        COMPRESS_TOLERANCE,
        "the most validation accuracy a variant may lose and be chosen, as a fraction (0.005 "
        "is half a point)",
        metavar="FRACTION",
    )
    device: str | None = option(
        None, f"where to fine-tune: {DEVICE_CHOICES} (by default the run's)"
    )
    seed: int | None = option(
        None,
        "seed of the fine-tuning's batches (by default the run's); another seed keeps its "
        "variants apart",
    )
    other_teacher: bool = option(False, OTHER_TEACHER)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if not 0 <= self.tolerance < 1:
            raise UserError(
                f"--tolerance must be a fraction of accuracy in [0, 1), got {self.tolerance}"
            )
        if self.trial is not None and self.pick is not None:
            raise UserError("give one of --trial or --pick")
        if self.pick is not None and self.pick not in RULES:
            raise UserError(f"unknown pick rule {self.pick!r}; known: {', '.join(RULES)}")
        ratios = tuple(sorted(set(self.prune)))
        for r in ratios:
            rounds(r)  # a ratio outside (0, 1) is refused before anything trains
        object.__setattr__(self, "prune", ratios)
        _check_device(self.device)

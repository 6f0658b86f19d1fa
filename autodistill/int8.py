"""int8 recipes for ONNX Runtime, measured rather than assumed: which one is fastest depends on
the machine and the student (on the 2-core Xeon, static QDQ with uint8 activations ran 1.3-4.8x
faster than fp32 on dense CNNs, with int8 activations 1.3-6x slower; dynamic int8 suited only a
ViT), so each is tried and the fastest that keeps its accuracy ships."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autodistill.errors import first_line

log = logging.getLogger(__name__)

# An int8 file must beat fp32 by more than this fraction to ship: less is within what two
# measurements of one file differ by on a shared machine.
FASTER = 0.05
# The most validation accuracy (a fraction) an int8 recipe may lose against fp32 and still ship.
TOLERANCE = 0.01


@dataclass(frozen=True)
class Recipe:
    """One way to quantize: static (calibrated activations) or dynamic, QDQ or QOperator graph,
    the activations' type, weights per channel or per tensor."""

    name: str
    dynamic: bool = False
    qdq: bool = True
    activations: str = "uint8"  # weights are always int8
    per_channel: bool = True


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("static-qdq-u8s8"),
        Recipe("static-qdq-s8s8", activations="int8"),
        Recipe("static-qoperator-u8s8", qdq=False),
        Recipe("static-qdq-u8s8-per-tensor", per_channel=False),
        Recipe("dynamic-u8s8", dynamic=True),
    )
}
# Not tried: S8S8 QOperator, which ONNX Runtime's own guide calls slow on x86-64.


def recipes_for(graph: bytes) -> list[Recipe]:
    """The recipes worth trying on this graph: every static one; dynamic int8 only where
    attention matrix products dominate (dynamic made convolutions 3-16x slower here)."""
    import onnx

    ops = [node.op_type for node in onnx.load_from_string(graph).graph.node]
    attention = ops.count("MatMul") >= 2
    return [r for r in RECIPES.values() if not r.dynamic or attention]


def quantize(graph: bytes, recipe: Recipe, calibration: np.ndarray) -> bytes:
    """The fp32 ``graph`` quantized by ``recipe``; static recipes calibrate their activation
    ranges on ``calibration`` (normalised training images, never validation or test)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                [{"x": calibration[i : i + 32]} for i in range(0, len(calibration), 32)]
            )

        def get_next(self):
            return next(self.batches, None)

    root = logging.getLogger()  # the quantizer warns on the root logger about every weight
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="autodistill-int8-") as tmp:
            src, prep, dst = (Path(tmp) / n for n in ("fp32.onnx", "prep.onnx", "int8.onnx"))
            src.write_bytes(graph)
            quant_pre_process(str(src), str(prep))
            if recipe.dynamic:
                quantize_dynamic(
                    str(prep), str(dst), weight_type=QuantType.QInt8, per_channel=recipe.per_channel
                )
            else:
                activation = QuantType.QUInt8 if recipe.activations == "uint8" else QuantType.QInt8
                fmt = QuantFormat.QDQ if recipe.qdq else QuantFormat.QOperator
                quantize_static(
                    str(prep),
                    str(dst),
                    Reader(),
                    quant_format=fmt,
                    per_channel=recipe.per_channel,
                    weight_type=QuantType.QInt8,
                    activation_type=activation,
                )
            return dst.read_bytes()
    finally:
        root.setLevel(level)


@dataclass(frozen=True)
class Tried:
    """What one recipe gave: its file, latency and (when checked) validation accuracy, or why
    it could not be made."""

    recipe: str
    latency_ms: float | None = None
    val_accuracy: float | None = None
    graph: bytes | None = None
    error: str | None = None

    def summary(self) -> dict[str, object]:
        return {
            "recipe": self.recipe,
            "latency_ms": self.latency_ms,
            "val_accuracy": self.val_accuracy,
            "error": self.error,
        }


def try_recipes(
    graph: bytes,
    calibration: np.ndarray,
    time_graph: Callable[[bytes], float],
    score: Callable[[bytes], float] | None = None,
    recipes: list[Recipe] | None = None,
) -> list[Tried]:
    """Quantize ``graph`` by each recipe, time it with ``time_graph`` and, with ``score``, give
    its validation accuracy. A recipe ONNX Runtime cannot make or run is recorded with why."""
    out = []
    for recipe in recipes if recipes is not None else recipes_for(graph):
        try:
            q = quantize(graph, recipe, calibration)
            out.append(Tried(recipe.name, time_graph(q), score(q) if score else None, q))
        except Exception as exc:  # noqa: BLE001 - one recipe failing leaves the others
            log.info("int8 recipe %s failed: %s", recipe.name, first_line(exc))
            out.append(Tried(recipe.name, error=f"{type(exc).__name__}: {first_line(exc)}"))
    return out


def fastest_recipe(
    fp32_ms: float,
    tried: list[Tried],
    *,
    fp32_val: float | None = None,
    tolerance: float = TOLERANCE,
) -> tuple[Tried | None, str]:
    """The fastest recipe that beats fp32 by more than ``FASTER`` and, when accuracies are
    given, loses at most ``tolerance`` of validation accuracy; None (ship fp32) if there is
    none. Returns it and the reason, in words."""
    made = [t for t in tried if t.latency_ms is not None]
    if not made:
        return None, "no int8 recipe could be made; fp32 ships"
    kept = made
    if fp32_val is not None:
        kept = [
            t for t in made if t.val_accuracy is not None and t.val_accuracy >= fp32_val - tolerance
        ]
        if not kept:
            worst = max(fp32_val - (t.val_accuracy or 0.0) for t in made)
            return None, (
                f"every int8 recipe lost more than {100 * tolerance:.1f} points of "
                f"validation accuracy (up to {100 * worst:.1f}); fp32 ships"
            )
    best = min(kept, key=lambda t: t.latency_ms)
    if best.latency_ms >= fp32_ms * (1 - FASTER):
        return None, (
            f"no int8 recipe was more than {100 * FASTER:.0f}% faster than fp32 "
            f"(fastest: {best.recipe}, {best.latency_ms:.3f} ms against "
            f"{fp32_ms:.3f} ms); fp32 ships"
        )
    why = f"{best.recipe}: {fp32_ms / best.latency_ms:.2f}x faster than fp32"
    if fp32_val is not None and best.val_accuracy is not None:
        why += (
            f", validation accuracy {100 * best.val_accuracy:.2f}% against fp32's "
            f"{100 * fp32_val:.2f}% (tolerance {100 * tolerance:.1f} points)"
        )
    return best, why


__all__ = [
    "FASTER",
    "RECIPES",
    "TOLERANCE",
    "Recipe",
    "Tried",
    "fastest_recipe",
    "quantize",
    "recipes_for",
    "try_recipes",
]

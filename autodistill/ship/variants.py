"""The compression front's figures: each compressed variant's ONNX file tested on validation and
test images and timed in ONNX Runtime, all variants (and the teacher) timed interleaved in one
run so their ratios hold on a noisy machine, and the variant to ship chosen on validation."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autodistill import runtime
from autodistill.data.augment import normalize
from autodistill.data.splits import DatasetSplits
from autodistill.measure import device_name, time_call

# Each graph is timed this many times, in turn with the others (the order rotated each pass);
# its latency is the median. On the shared 2-core machine a 0.05 ms student's latency drifted
# by up to 2x within a minute while graphs timed side by side in one pass kept their ratios, so
# every ratio is the median of per-pass ratios.
PASSES = 7
# A compressed variant is chosen when its validation accuracy is within this of the student's.
TOLERANCE = 0.005
# int8 ships only when faster than the fp32 it replaces by more than this (as int8.FASTER).
FASTER = 0.05


@dataclass
class Variant:
    """One compressed student: how it was made, its ONNX file and what was measured on it."""

    name: str  # e.g. prune-50/int8-qat-kd
    ratio: float  # fraction of channels removed
    precision: str  # fp32, int8-ptq, int8-qat-kd
    graph: bytes
    params: int
    flops: int
    finetune: dict[str, Any] = field(default_factory=dict)  # loss, epochs, rounds, lr
    figures: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "variant": self.name,
            "pruning_ratio": self.ratio,
            "precision": self.precision,
            **{k: self.finetune.get(k) for k in ("finetune_loss", "finetune_epochs", "rounds")},
            "params": self.params,
            "flops": self.flops,
            "onnx_bytes": len(self.graph),
            **self.figures,
        }


class Scorer:
    """Validation and test accuracy of ONNX graphs, on the images the run's splits hold."""

    def __init__(self, data: DatasetSplits, threads: int) -> None:
        self.threads = threads
        self.val = normalize(data.val.images, *data.stats).numpy()
        self.test = normalize(data.test.images, *data.stats).numpy()
        self.val_labels, self.test_labels = data.val.labels.numpy(), data.test.labels.numpy()

    def __call__(self, graph: bytes) -> dict[str, float]:
        sess = runtime.session(graph, threads=self.threads)
        val = runtime.run(sess, self.val).argmax(1) == self.val_labels
        test = runtime.run(sess, self.test).argmax(1) == self.test_labels
        return {"val_accuracy": float(val.mean()), "test_accuracy": float(test.mean())}


def time_interleaved(
    graphs: dict[str, bytes],
    input_shapes: dict[str, tuple[int, ...]],
    *,
    threads: int,
    batch: int,
) -> dict[str, dict[str, Any]]:
    """Each graph's ONNX Runtime latency on the cpu: ``PASSES`` passes over all of them in turn,
    each pass the one timing protocol (``time_call``); the median of the passes, how far they
    disagreed, and every pass's figure (``latency_passes_ms``, for paired ratios)."""
    inputs = {k: np.zeros((batch, *input_shapes[k]), dtype=np.float32) for k in graphs}
    hardware = device_name(torch.device("cpu"))
    # Each graph as it ships: for the target's batch (runtime.fix_batch).
    sessions = {
        k: runtime.session(runtime.fix_batch(g, batch), threads=threads) for k, g in graphs.items()
    }
    seen: dict[str, list[float]] = {k: [] for k in graphs}
    disturbed: dict[str, bool] = dict.fromkeys(graphs, False)
    names = list(sessions)
    for i in range(PASSES):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            sess, x = sessions[name], inputs[name]
            lat = time_call(
                lambda s=sess, x=x: s.run(None, {"x": x}), threads=threads, device=hardware
            )
            seen[name].append(lat.median_ms)
            disturbed[name] |= lat.disturbed
    return {
        name: {
            "latency_ms": statistics.median(ms),
            "latency_spread": round((max(ms) - min(ms)) / min(ms), 4),
            "latency_passes_ms": [round(m, 5) for m in ms],
            "latency_disturbed": disturbed[name],
            "latency_threads": threads,
            "latency_batch": batch,
            "latency_hardware": hardware,
            "latency_runtime": "onnxruntime",
            "latency_device": "cpu",
        }
        for name, ms in seen.items()
    }


def paired(slower: list[float], faster: list[float]) -> float:
    """How many times faster ``faster`` ran than ``slower``: the median of the ratios of the
    passes, each taken from two timings made side by side."""
    return statistics.median(a / b for a, b in zip(slower, faster, strict=True))


def compare(variants: Sequence[Variant], teacher: dict[str, Any]) -> None:
    """Each variant's ratios (paired by pass) against the uncompressed student (the fp32 variant
    of ratio 0) and the teacher, and whether an int8 variant would ship (faster than the fp32 of
    its ratio by more than ``FASTER``)."""
    base = next(v for v in variants if v.ratio == 0 and v.precision == "fp32")
    fp32 = {v.ratio: v for v in variants if v.precision == "fp32"}
    for v in variants:
        f = v.figures
        mine = f["latency_passes_ms"]
        f["speedup_vs_student"] = round(paired(base.figures["latency_passes_ms"], mine), 3)
        f["speedup_vs_teacher"] = round(paired(teacher["latency_passes_ms"], mine), 2)
        f["size_ratio"] = round(teacher["params"] / v.params, 1)
        f["retention"] = round(f["test_accuracy"] / teacher["test_accuracy"], 4)
        f["val_drop_points"] = round(100 * (base.figures["val_accuracy"] - f["val_accuracy"]), 2)
        f["test_drop_points"] = round(100 * (base.figures["test_accuracy"] - f["test_accuracy"]), 2)
        own = paired(fp32[v.ratio].figures["latency_passes_ms"], mine)
        f["speedup_vs_own_fp32"] = round(own, 3)
        f["faster_than_own_fp32"] = v.precision == "fp32" or own > 1 / (1 - FASTER)


def best_variant(variants: Sequence[Variant], tolerance: float) -> tuple[Variant, str]:
    """The fastest variant whose validation accuracy is within ``tolerance`` of the
    uncompressed student's (an int8 one only if faster than its own fp32), and why."""
    base = next(v for v in variants if v.ratio == 0 and v.precision == "fp32")
    floor = base.figures["val_accuracy"] - tolerance
    kept = [
        v
        for v in variants
        if v.figures["val_accuracy"] >= floor and v.figures["faster_than_own_fp32"]
    ]
    best = max(kept, key=lambda v: v.figures["speedup_vs_student"])
    if best is base:
        return base, (
            f"no compressed variant was faster within {100 * tolerance:.1f} points of "
            "the student's validation accuracy; the student ships as it is"
        )
    f = best.figures
    return best, (
        f"{best.name}: {f['speedup_vs_student']:.2f}x faster than the student, "
        f"{best.params:,} params, validation accuracy {100 * f['val_accuracy']:.2f}% against "
        f"{100 * base.figures['val_accuracy']:.2f}% (tolerance {100 * tolerance:.1f} points)"
    )


__all__ = [
    "FASTER",
    "PASSES",
    "TOLERANCE",
    "Scorer",
    "Variant",
    "best_variant",
    "compare",
    "time_interleaved",
]

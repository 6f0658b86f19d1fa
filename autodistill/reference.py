"""The reference every latency of a study is taken relative to: one fixed small student, timed
beside each candidate, so that a machine that changes speed for minutes at a time (a shared
VM, a CI runner) changes the candidate's ratio to it and not the figure recorded.

A study times the reference once when it starts, in its quietest of a few windows
(``quiet_ms``). Each candidate is then timed between two timings of the reference (``around``):
its latency is its own median scaled by ``quiet_ms`` over the reference's median in that
window. A window in which the reference is off its quiet figure by more than ``BOUND``, or
changed speed between its two timings, is timed again once, and flagged if it still is.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autodistill import runtime
from autodistill.families import InputSpec, build_student, get_family
from autodistill.files import write_text_atomic
from autodistill.latency import LatencyTarget
from autodistill.measure import measure_latency, time_call

# The reference: a small ResNet student, mid-sized for the spaces' students and built for any
# input (each stage at least one 3x3 block).
FAMILY, ARCH = "resnet", {"stem_stride": 1, "depths": 1, "width": 16}
QUIET_TRIES = 3  # windows the study's quiet figure is the fastest of
CALIBRATION = "latency_reference.json"  # in the cache folder: the fastest figure per target
PASSES = 5  # rotated passes over the front and the reference when the front is timed again
# Each timing of the reference, and of a front student beside it, is a short one of the usual
# protocol (0.06 s, not 0.11 s, for a 0.03 ms student): what it lacks in length the ratios
# to the reference and the medians over windows and passes make up.
SHORT = {"min_run_time": 0.04, "warmup_s": 0.02}
TRIES = 2  # rounds of passes at most, when the reference runs off its quiet figure
PAUSE_S = 2.0  # between them (a CI runner waits no longer; a mode may last minutes)
BOUND = 0.3  # a window off the quiet figure by more than this is timed again, then flagged

Measure = Callable[[], tuple[float, dict[str, Any]]]


@dataclass(frozen=True)
class ReferenceRecord:
    """What a study records of its reference: what it is, where and when it was timed."""

    arch: str
    quiet_ms: float  # the fastest figure seen on this machine and target (the quiet mode)
    target: str  # LatencyTarget.describe()
    measured_at: str  # when that figure was timed
    now_ms: float | None = None  # what the study's start timed, for the record

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ReferenceRecord:
        return cls(
            **{k: doc[k] for k in ("arch", "quiet_ms", "target", "measured_at")},
            now_ms=doc.get("now_ms"),
        )


class Reference:
    """The reference graph on one target, ready to be timed (built once per process)."""

    def __init__(self, target: LatencyTarget, spec: InputSpec) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.model = build_student(FAMILY, ARCH, spec).eval()
        self.target = replace(target, precision="fp32")  # an int8 target's candidates too
        self.shape = (spec.in_chans, spec.image_size, spec.image_size)
        self._call: Callable[[], float] | None = None

    @staticmethod
    def describe() -> str:
        """The reference as trials.csv names architectures (``resnet s1 d1-1-1-1 w16``)."""
        return get_family(FAMILY).describe(ARCH)

    def time(self) -> float:
        """The reference's median latency now, in ms (the one timing protocol)."""
        if self._call is None:
            self._call = self._timer()
        return self._call()

    def _timer(
        self, model: nn.Module | None = None, shape: tuple[int, ...] | None = None
    ) -> Callable[[], float]:
        """A function timing ``model`` (the reference by default) on inputs of ``shape`` (the
        reference's by default) as the target runs it."""
        t, model = self.target, self.model if model is None else model
        shape = shape or self.shape
        if t.runtime == "torch":
            device = torch.device(t.device)
            model = copy.deepcopy(model).to(device)
            return lambda: (
                measure_latency(
                    model, shape, threads=t.threads, device=device, batch=t.batch, **SHORT
                ).median_ms
            )
        graph = runtime.fix_batch(runtime.to_onnx(model, shape), t.batch)
        sess = runtime.session(graph, threads=t.threads, device=t.device)
        x = np.zeros((t.batch, *shape), dtype=np.float32)
        hardware = t.hardware()
        return lambda: (
            time_call(
                lambda: sess.run(None, {"x": x}), threads=t.threads, device=hardware, **SHORT
            ).median_ms
        )

    def side_by_side(
        self,
        models: dict[int, nn.Module],
        quiet_ms: float,
        shapes: dict[int, tuple[int, ...]] | None = None,
    ) -> dict[int, dict]:
        """``models`` and the reference timed in ``PASSES`` rotated passes (each pass every one
        in turn, as ``compress`` times its variants): each model's ratio to the reference is
        the median of its per-pass ratios, its latency that ratio times ``quiet_ms``. A model
        named in ``shapes`` is timed on inputs of that shape (a student at its own input size),
        the others on the reference's.

        A round of passes in which the reference ran off its quiet figure by more than
        ``BOUND`` (a slow mode, which need not slow every graph alike) is timed again after a
        pause, up to ``TRIES`` rounds; the round nearest the quiet figure is kept, flagged
        ``disturbed`` if it is still off."""
        shapes = shapes or {}
        timers = {key: self._timer(model, shapes.get(key)) for key, model in models.items()}
        order: list[int | None] = [None, *timers]
        rounds = []
        for attempt in range(TRIES):
            if attempt:
                time.sleep(PAUSE_S)
            seen: dict[int | None, list[float]] = {k: [] for k in order}
            for i in range(PASSES):
                for key in order[i % len(order) :] + order[: i % len(order)]:
                    seen[key].append(self.time() if key is None else timers[key]())
            window = statistics.median(seen[None]) / quiet_ms
            rounds.append((abs(math.log(window)), window, seen))
            if abs(math.log(window)) <= math.log(1 + BOUND):
                break
        _, window, seen = min(rounds, key=lambda r: r[0])
        out = {}
        for key in timers:
            ratios = [m / r for m, r in zip(seen[key], seen[None], strict=True)]
            ratio = statistics.median(ratios)
            out[key] = {
                "latency_ms": round(ratio * quiet_ms, 4),
                "ratio": round(ratio, 4),
                "spread": round(max(ratios) / min(ratios) - 1, 3),
                "window": round(window, 3),
                "rounds": len(rounds),
                "disturbed": abs(math.log(window)) > math.log(1 + BOUND),
            }
        return out

    def quiet(self, cache_dir: Path | None = None) -> ReferenceRecord:
        """The study's quiet figure: the reference timed now in ``QUIET_TRIES`` windows, the
        fastest kept, or the fastest figure an earlier study on this machine and target timed
        (kept in ``cache_dir``), if that was faster. A study that begins while the machine is
        in its slow mode would otherwise scale all its latencies to that mode."""
        now = round(min(self.time() for _ in range(QUIET_TRIES)), 5)
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        best = {"quiet_ms": now, "measured_at": when}
        if cache_dir is not None:
            path = Path(cache_dir) / CALIBRATION
            key = f"{self.describe()} | {self.target.describe()} | {self.shape}"
            try:
                seen = json.loads(path.read_text())
            except (OSError, ValueError):
                seen = {}
            earlier = seen.get(key) if isinstance(seen, dict) else None
            if isinstance(earlier, dict) and 0 < float(earlier.get("quiet_ms", 0)) < now:
                best = {
                    "quiet_ms": float(earlier["quiet_ms"]),
                    "measured_at": str(earlier.get("measured_at", "?")),
                }
            else:
                seen = seen if isinstance(seen, dict) else {}
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(path, json.dumps({**seen, key: best}, indent=2))
        return ReferenceRecord(
            self.describe(),
            best["quiet_ms"],
            self.target.describe(),
            best["measured_at"],
            now_ms=now,
        )

    def around(self, measure: Measure, quiet_ms: float) -> tuple[float, dict[str, Any]]:
        """``measure`` (a candidate's latency and its details) between two timings of the
        reference: the latency scaled to the quiet window, and what the window was."""
        attempt = 0
        while attempt < 2:
            attempt += 1
            before = self.time()
            value, details = measure()
            after = self.time()
            window = math.sqrt(before * after)
            off = max(window / quiet_ms, quiet_ms / window) - 1
            drift = max(before, after) / min(before, after) - 1
            if off <= BOUND and drift <= BOUND:
                break
        details = {
            **details,
            "latency_raw_ms": round(value, 4),  # the candidate's own figure in its window
            "latency_window": round(window / quiet_ms, 3),  # the reference there / its quiet
            "latency_reference_ms": quiet_ms,
            "latency_retimed": attempt > 1,
            "latency_disturbed": bool(details.get("latency_disturbed"))
            or off > BOUND
            or drift > BOUND,
        }
        return value * quiet_ms / window, details


__all__ = ["BOUND", "Measure", "Reference", "ReferenceRecord"]

"""Latency on the deployment target: the runtime, device, precision, threads and batch the
student will ship with, as data, and the one function that times a student there."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from autodistill import int8, runtime
from autodistill.device import resolve_device
from autodistill.errors import UserError
from autodistill.measure import Latency, device_name, measure_latency, time_call
from autodistill.options import option

RUNTIMES = ("onnxruntime", "torch")
PRECISIONS = ("fp32", "int8")
DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class LatencyTarget:
    """Where and how a shipped student runs; every latency of a study is measured on one."""

    runtime: str = option(
        "onnxruntime",
        "onnxruntime times the exported ONNX file, as export ships it (the "
        "default); torch the eager PyTorch model",
        choices=RUNTIMES,
    )
    device: str = option(
        "cpu", "cpu (the default), cuda, cuda:N or mps (torch only); independent of --device"
    )
    precision: str = option(
        "fp32",
        "int8: the fastest measured int8 recipe (onnxruntime, cpu), or fp32 where none is faster",
        choices=PRECISIONS,
    )
    # 0 in a search's options: its workers' threads (SearchConfig.latency_target resolves it).
    threads: int = option(1, "threads latency is timed with (0: --threads)")
    batch: int = option(1, "batch size latency is timed at")

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise UserError(f"--latency-runtime {self.runtime!r}: choose {' or '.join(RUNTIMES)}")
        if self.precision not in PRECISIONS:
            raise UserError(
                f"--latency-precision {self.precision!r}: choose {' or '.join(PRECISIONS)}"
            )
        if not DEVICE.fullmatch(str(self.device)):
            raise UserError(f"--latency-device {self.device!r}: choose cpu, cuda, cuda:N or mps")
        if self.precision == "int8" and self.runtime != "onnxruntime":
            raise UserError(
                "--latency-precision int8 is timed in ONNX Runtime: add "
                "--latency-runtime onnxruntime"
            )
        if self.precision == "int8" and self.device != "cpu":
            raise UserError(
                "--latency-precision int8 is measured on the cpu only (ONNX "
                "Runtime's int8 kernels for GPUs need TensorRT)"
            )
        if self.runtime == "onnxruntime" and self.device == "mps":
            raise UserError(
                "--latency-device mps: ONNX Runtime has no MPS provider; use "
                "--latency-runtime torch"
            )
        for name, value, least, text in (
            ("threads", self.threads, 0, "0 (the worker's threads) or more"),
            ("batch", self.batch, 1, "a positive integer"),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UserError(f"--latency-{name} must be {text}, got {value!r}")

    def check_present(self) -> None:
        """Raise a UserError unless this machine has the target's device and runtime."""
        if self.runtime == "torch":
            resolve_device(self.device, "--latency-device")
        else:
            runtime.check_provider(self.device)

    def describe(self) -> str:
        """``onnxruntime fp32 on cpu (Intel Xeon ...), 2 threads, batch 1``."""
        return (
            f"{self.runtime} {self.precision} on {self.device} ({self.hardware()}), "
            f"{self.threads} thread{'s' if self.threads != 1 else ''}, batch {self.batch}"
        )

    def hardware(self) -> str:
        """The CPU's or GPU's name."""
        kind = self.device.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            return "cuda"
        return device_name(torch.device(self.device))

    def record(self) -> dict[str, Any]:
        """Recorded with every latency (trials.csv's latency_* columns)."""
        return {
            "latency_runtime": self.runtime,
            "latency_device": self.device,
            "latency_precision": self.precision,
            "latency_threads": self.threads,
            "latency_batch": self.batch,
            "latency_hardware": self.hardware(),
        }


@dataclass(frozen=True)
class TargetLatency:
    """A student's latency on a target, and what was timed to get it."""

    latency: Latency
    target: LatencyTarget
    recipe: str = "fp32"  # with int8: the recipe that would ship, or fp32 when none beat it
    tried: tuple[int8.Tried, ...] = ()

    @property
    def median_ms(self) -> float:
        return self.latency.median_ms

    def details(self) -> dict[str, Any]:
        """What is recorded beside the value."""
        lat = self.latency
        out = {
            **self.target.record(),
            "latency_iqr_ms": round(lat.iqr_ms, 4),
            "latency_spread": lat.spread,
            "latency_disturbed": lat.disturbed,
        }
        if self.target.precision == "int8":
            out["latency_recipe"] = self.recipe
        return out


def measure_on_target(
    model: nn.Module,
    input_shape: tuple[int, ...],
    target: LatencyTarget,
    *,
    calibration: np.ndarray | None = None,
    min_run_time: float = 0.3,
) -> TargetLatency:
    """Time ``model`` as it ships on ``target``: the eager PyTorch model, or the exported ONNX
    graph in an ONNX Runtime session (int8: the fastest recipe, calibrated on ``calibration``).
    The model is not moved: a copy is timed when the target's device is another."""
    if target.runtime == "torch":
        here = next(iter(model.parameters()), torch.zeros(0)).device
        there = torch.device(target.device)
        timed = model if here == there else copy.deepcopy(model)
        lat = measure_latency(
            timed,
            input_shape,
            threads=target.threads,
            device=there,
            batch=target.batch,
            min_run_time=min_run_time,
        )
        return TargetLatency(lat, target)
    graph = runtime.to_onnx(model, input_shape)
    x = np.zeros((target.batch, *input_shape), dtype=np.float32)

    def time_graph(g: bytes) -> Latency:  # as it ships: for the target's batch (fix_batch)
        sess = runtime.session(
            runtime.fix_batch(g, target.batch), threads=target.threads, device=target.device
        )
        return time_call(
            lambda: sess.run(None, {"x": x}),
            threads=target.threads,
            device=target.hardware(),
            min_run_time=min_run_time,
        )

    fp32 = time_graph(graph)
    if target.precision == "fp32":
        return TargetLatency(fp32, target)
    if calibration is None:
        raise ValueError("int8 latency needs calibration images")
    timings: dict[bytes, Latency] = {}

    def timed(g: bytes) -> float:
        timings[g] = time_graph(g)
        return timings[g].median_ms

    tried = int8.try_recipes(graph, calibration, timed)
    best, _ = int8.fastest_recipe(fp32.median_ms, tried)
    if best is None or best.graph is None:
        return TargetLatency(fp32, target, "fp32", tuple(tried))
    return TargetLatency(timings[best.graph], target, best.recipe, tuple(tried))


__all__ = ["PRECISIONS", "RUNTIMES", "LatencyTarget", "TargetLatency", "measure_on_target"]

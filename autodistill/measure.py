"""What a student costs before any training: parameters, FLOPs and measured latency."""

from __future__ import annotations

import logging
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Latency:
    """Median latency of one forward pass at batch 1, and where it was measured."""

    median_ms: float
    iqr_ms: float
    device: str
    threads: int
    runs: int


def count_params(model: nn.Module) -> int:
    """Trainable and frozen parameters: what the shipped student weighs."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass at batch 1 (torch's own counter; a multiply-add is 2), on the
    model's device."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    device = next(model.parameters()).device
    with torch.inference_mode(), counter:
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def serialized_bytes(model: nn.Module) -> int:
    """Bytes of the student as it is saved (its fp32 state dict as safetensors): what ships."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return len(save(state))


def _timer() -> type:
    """torch's Timer. Importing it imports cpp_extension, which warns "No CUDA runtime is found"
    on every CUDA build of torch run without a GPU; that says nothing about timing, so it is
    silenced for the import only."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        logger.setLevel(level)
    return Timer


def device_name(device: torch.device) -> str:
    """A human name for the device the latency was measured on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (mps)"
    try:  # Linux names the CPU model here; platform.processor() is often empty
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


ROUNDS = 3


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    threads: int,
    device: torch.device | str = "cpu",
    warmup: int = 10,
    min_run_time: float = 0.3,
    warmup_s: float = 0.1,
) -> Latency:
    """Median forward latency at batch 1 in eval mode: after at least ``warmup`` untimed runs
    lasting at least ``warmup_s`` (a few runs of a 1 ms model do not warm caches and clocks),
    the median of the least disturbed of ``ROUNDS`` rounds sharing ``min_run_time``.

    ``torch.utils.benchmark.Timer`` pins the thread count while timing, synchronises CUDA, and
    groups runs into blocks so timer overhead stays below 0.1% of what it measures.
    """
    device = torch.device(device)
    Timer = _timer()  # noqa: N806 - a class
    was_training = model.training
    model.eval().to(device)
    x = torch.zeros(1, *input_shape, device=device)
    with torch.inference_mode():
        start, runs = time.perf_counter(), 0
        while runs < warmup or time.perf_counter() - start < warmup_s:
            model(x)
            runs += 1
        # Timer synchronises CUDA itself; on MPS the kernels are waited for explicitly, or
        # only their launch would be timed.
        stmt = "model(x); torch.mps.synchronize()" if device.type == "mps" else "model(x)"
        timer = Timer(stmt=stmt, globals={"model": model, "x": x, "torch": torch},
                      num_threads=threads)  # fmt: skip
        # Several short rounds, keeping the least disturbed one: on a shared machine a burst of
        # other work slows a whole round, and a median cannot remove what lasts that long.
        rounds = [
            timer.blocked_autorange(min_run_time=min_run_time / ROUNDS) for _ in range(ROUNDS)
        ]
    model.train(was_training)
    m = min(rounds, key=lambda r: r.median)
    return Latency(
        median_ms=m.median * 1e3,
        iqr_ms=m.iqr * 1e3,
        device=device_name(device),
        threads=threads,
        runs=sum(len(r.times) * r.number_per_run for r in rounds),
    )


def median_latency_ms(
    call: Callable[[], object], *, warmup: int = 10, min_run_time: float = 0.3, min_runs: int = 20
) -> float:
    """Median wall time of ``call`` in ms after ``warmup`` untimed calls: the same protocol as
    ``measure_latency``, for runtimes outside PyTorch (e.g. ONNX Runtime)."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_run_time:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3

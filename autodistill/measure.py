"""What a student costs before any training: parameters, FLOPs and measured latency."""

from __future__ import annotations

import copy
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Latency:
    """Median latency of one forward pass, and how far it can be trusted."""

    median_ms: float
    iqr_ms: float
    device: str
    threads: int
    runs: int
    # (slowest - fastest) / fastest of the medians of the rounds kept: how much a burst of
    # other work on the machine moved them.
    spread: float = 0.0
    disturbed: bool = False  # the rounds still disagreed by more than SPREAD after a repeat


def count_params(model: nn.Module) -> int:
    """Trainable and frozen parameters: what the shipped student weighs."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass at batch 1 (torch's own counter; a multiply-add is 2).

    Counted on a CPU copy with the math attention kernel, so the figure is the same on every
    device: torch's counter has no formula for the CPU's fused (flash) attention kernel, which
    counted a ViT's attention as 0 on a CPU while CUDA's kernels were counted.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    copy_ = copy.deepcopy(model).cpu().eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        copy_(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops())


def serialized_bytes(model: nn.Module) -> int:
    """Bytes of the student as it is saved (its fp32 state dict as safetensors): what ships."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return len(save(state))


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
# Rounds whose medians differ by more than this fraction were disturbed by other work: they are
# measured again, and flagged if the fastest ROUNDS of all still differ so much.
SPREAD = 0.2
CALLS = 1000  # timed calls a measurement aims at, across its rounds
MIN_RUN_S = 0.06
WARMUP_S = 0.05  # untimed calls last at least this long
BLOCK_S = 1e-3  # calls are timed in blocks this long


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    threads: int,
    device: torch.device | str = "cpu",
    batch: int = 1,
    warmup: int = 10,
    min_run_time: float = 0.3,
    warmup_s: float = 0.05,
) -> Latency:
    """Median forward latency of the PyTorch model in eval mode at ``batch`` (see ``time_call``
    for the protocol)."""
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    x = torch.zeros(batch, *input_shape, device=device)
    # On a GPU the kernels are waited for at the end of every timed block, or only their
    # launch would be timed.
    sync = None
    if device.type == "cuda":
        sync = partial(torch.cuda.synchronize, device)
    elif device.type == "mps":
        sync = torch.mps.synchronize
    with torch.inference_mode():
        lat = time_call(
            lambda: model(x),
            threads=threads,
            device=device_name(device),
            warmup=warmup,
            min_run_time=min_run_time,
            warmup_s=warmup_s,
            sync=sync,
        )
    model.train(was_training)
    return lat


def time_call(
    call: Callable[[], object],
    *,
    threads: int,
    device: str,
    warmup: int = 10,
    min_run_time: float = 0.3,
    warmup_s: float | None = None,
    sync: Callable[[], object] | None = None,
) -> Latency:
    """The one timing protocol, for PyTorch and ONNX Runtime alike: after at least ``warmup``
    untimed calls lasting at least ``warmup_s`` (``WARMUP_S`` by default; a few runs of a 1 ms
    model do not warm caches and clocks), ``ROUNDS`` rounds share the time ``CALLS`` calls
    take (at least ``MIN_RUN_S``, at most ``min_run_time``: a 0.05 ms student needs no 6,000
    calls), and the median of the
    least disturbed round is the latency. Rounds that disagree by more than ``SPREAD`` are
    repeated once; if the fastest ``ROUNDS`` of them still disagree so, the latency is flagged
    ``disturbed``.

    Calls are timed in blocks of about a millisecond, so the clock's own cost stays small;
    ``sync`` (CUDA's or MPS's synchronize) ends every block, so kernels are waited for, not
    only launched. torch's thread count is pinned to ``threads`` while timing.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start, calls = time.perf_counter(), 0
        warm_s = WARMUP_S if warmup_s is None else warmup_s
        while calls < warmup or time.perf_counter() - start < warm_s:
            call()
            calls += 1
        if sync is not None:
            sync()
        per_call = (time.perf_counter() - start) / calls
        run_time = min(min_run_time, max(MIN_RUN_S, CALLS * per_call))
        number = max(1, int(BLOCK_S / max(per_call, 1e-9)))

        def one_round() -> _Round:
            blocks: list[float] = []
            began = time.perf_counter()
            while not blocks or time.perf_counter() - began < run_time / ROUNDS:
                t0 = time.perf_counter()
                for _ in range(number):
                    call()
                if sync is not None:
                    sync()
                blocks.append((time.perf_counter() - t0) / number)
            return _Round(blocks, number)

        kept, done = settle(lambda: [one_round() for _ in range(ROUNDS)])
    finally:
        torch.set_num_threads(before)
    best = kept[0]
    return Latency(
        median_ms=best.median * 1e3,
        iqr_ms=best.iqr * 1e3,
        device=device,
        threads=threads,
        runs=sum(len(r.times) * r.number_per_run for r in done),
        spread=round(_spread(kept), 4),
        disturbed=_spread(kept) > SPREAD,
    )


@dataclass(frozen=True)
class _Round:
    """The per-call times of one round's blocks."""

    times: list[float]
    number_per_run: int

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def iqr(self) -> float:
        if len(self.times) < 2:
            return 0.0
        q = statistics.quantiles(self.times, n=4)
        return q[2] - q[0]


def settle(rounds: Callable[[], list]) -> tuple[list, list]:
    """Several short rounds, keeping the least disturbed: on a shared machine a burst of other
    work slows a whole round, and a median cannot remove what lasts that long. ``rounds()``
    measures ``ROUNDS`` rounds; when their medians differ by more than ``SPREAD`` it is called
    once more. Returns the fastest ``ROUNDS`` rounds (fastest first) and all of them."""
    done = sorted(rounds(), key=lambda r: r.median)
    if _spread(done) > SPREAD:
        done = sorted(done + rounds(), key=lambda r: r.median)
    return done[:ROUNDS], done


def _spread(rounds: list) -> float:
    medians = [r.median for r in rounds]
    return max(medians) / min(medians) - 1.0

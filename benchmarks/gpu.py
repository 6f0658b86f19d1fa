"""Benchmark: the search on a GPU. One short script, meant to run once on a lent H100/H200.

1. Ten ``default``-space students (seed 0), each distilled for 3 epochs on the device against
   the cached teacher views, in the search's precision (``auto``: bf16 autocast on CUDA):
   trial seconds and training samples per second; for one epoch of each, under
   torch.profiler, the GPU's kernel time against the wall time of the epoch (a GPU busy for a
   small share of the epoch is waiting for the host: the step is host-bound).
2. ``autodistill search --budget 50 --device DEVICE`` from an empty cache, then the same search
   under another study name with the teacher cached. Target on one H100/H200: <= 90 s cached.

Writes results/benchmarks/gpu.{json,md}. On a machine without CUDA it refuses, unless
``--device cpu --budget 2 --students 2`` is given to check the script itself.

    python benchmarks/gpu.py                      # on the GPU machine
    python benchmarks/gpu.py --device cpu --budget 2 --students 2 --teacher-epochs 1 \
        --out /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from autodistill.config import SearchConfig
from autodistill.device import resolve_device, resolve_precision
from autodistill.families import InfeasibleArchitecture, get_family
from autodistill.measure import device_name
from autodistill.prepare import prepare
from autodistill.recipe import build, distil, recipe_for
from autodistill.spaces import load_space
from autodistill.study.objective import sample_candidates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget", type=int, default=50)
    p.add_argument("--students", type=int, default=10)
    p.add_argument("--teacher-epochs", type=int, default=10, help="fewer only to check the script")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    device = resolve_device(args.device)
    scratch = Path(tempfile.mkdtemp(prefix="autodistill-gpu-"))
    cache = scratch / "cache"
    searches = [_search(args, scratch, cache, "empty-cache"),
                _search(args, scratch, cache, "teacher-cached")]  # fmt: skip
    students = _students(args, device, cache)
    doc = {
        "meta": {
            "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:]),
            "device": device_name(device),
            "cpu": device_name(torch.device("cpu")),
            "cpu_cores": os.cpu_count(),
            "precision": resolve_precision("auto", device),
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
        },
        "students": students,
        "searches": searches,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(doc, indent=2))
    md = _markdown(doc, args.budget)
    (args.out / "gpu.md").write_text(md)
    print(md)


def _search(args, scratch: Path, cache: Path, name: str) -> dict:
    """One ``autodistill search`` as a user runs it, timed from outside."""
    cmd = [sys.executable, "-m", "autodistill.cli", "search", "--budget", str(args.budget),
           "--device", args.device, "--quiet", "--out", str(scratch / "runs"),
           "--cache-dir", str(cache), "--study-name", name,
           "--teacher-epochs", str(args.teacher_epochs)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    print(f"search {name}: {seconds:.1f} s, exit {done.returncode}", flush=True)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    return {"name": name, "seconds": round(seconds, 1), "exit": done.returncode,
            "command": " ".join(cmd[2:]), "tail": done.stdout[-1500:]}  # fmt: skip


def _students(args, device: torch.device, cache: Path) -> list[dict]:
    config = SearchConfig(device=args.device, cache_dir=str(cache),
                          teacher_epochs=args.teacher_epochs)  # fmt: skip
    space = load_space("default")
    prep = prepare(config, space.teacher_outputs())
    data = prep.data
    n = len(data.train)
    rows = []
    for cand in sample_candidates(space, 4 * args.students, seed=0):
        if len(rows) == args.students:
            break
        try:
            model = build(cand, _spec(data), seed=0)
        except InfeasibleArchitecture:
            continue
        model.to(device)
        cfg = recipe_for(cand, epochs=3, seed=0, device=device, precision=prep.precision)
        _sync(device)
        start = time.perf_counter()
        distil(model, cand, cfg, data=data, aug=prep.aug, views=prep.views)
        _sync(device)
        seconds = time.perf_counter() - start
        one = recipe_for(cand, epochs=1, seed=1, device=device, precision=prep.precision)
        gpu_share = _kernel_share(model, cand, one, prep, device)
        rows.append(
            {
                "arch": get_family(cand.family).describe(cand.arch),
                "loss": cand.loss,
                "batch_size": cfg.batch_size,
                "trial_s": round(seconds, 2),
                "samples_per_s": round(3 * n / seconds),
                "gpu_kernel_share": gpu_share,
            }
        )
        print(f"{rows[-1]['arch'][:60]}: {seconds:.2f} s, {rows[-1]['samples_per_s']} samples/s,"
              f" kernels {gpu_share}", flush=True)  # fmt: skip
    return rows


def _spec(data):
    from autodistill.families import InputSpec

    return InputSpec(data.in_chans, data.image_size, data.num_classes)


def _kernel_share(model, cand, cfg, prep, device: torch.device) -> float | None:
    """GPU kernel time over wall time of one epoch (None on the CPU)."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        distil(model, cand, cfg, data=prep.data, aug=prep.aug, views=prep.views)
        torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    from torch.autograd import DeviceType

    # Only the kernels' own rows: a CPU operator's row also carries the kernels it launched.
    kernel_us = sum(e.self_device_time_total for e in prof.key_averages()
                    if e.device_type == DeviceType.CUDA)  # fmt: skip
    return round(kernel_us / 1e6 / wall, 3)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _markdown(doc: dict, budget: int) -> str:
    m = doc["meta"]
    lines = [
        f"# The search on {m['device']}",
        "",
        f"`{m['command']}`, {m['date']}: training on {m['device']} ({m['precision']}), latency "
        f"timed on the CPU ({m['cpu']}, {m['cpu_cores']} cores), torch {m['torch']}.",
        "",
        "| student | loss | batch | 3-epoch trial s | samples/s | GPU kernel share of an epoch |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["students"]:
        lines.append(f"| {r['arch'][:70]} | {r['loss']} | {r['batch_size']} | {r['trial_s']} | "
                     f"{r['samples_per_s']:,} | {r['gpu_kernel_share']} |")  # fmt: skip
    lines += ["", f"| `search --budget {budget}` | wall s | exit |", "|---|---|---|"]
    for s in doc["searches"]:
        lines.append(f"| {s['name']} | {s['seconds']} | {s['exit']} |")
    cached = next(s for s in doc["searches"] if s["name"] == "teacher-cached")
    verdict = "met" if cached["seconds"] <= 90 and cached["exit"] == 0 else "missed"
    if budget != 50 or m["device"] == m["cpu"]:
        verdict = "not judged: a check of the script, not the benchmark"
    lines += ["", f"Target (budget 50, teacher cached, <= 90 s): **{verdict}** "
              f"({cached['seconds']} s).", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()

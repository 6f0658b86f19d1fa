"""Benchmark: how close a trial's training loop comes to the machine's fp32 matmul throughput.

Samples students from the ``default`` space (seeded, uniformly), and for each times one epoch
of the real trial training loop (``train.fit`` with the candidate's loss and hyperparameters
against the cached teacher, mnist5k) in NCHW and in channels_last. Achieved FLOP/s = FLOPs of
one training step (forward + backward of the student, torch.utils.flop_counter) x steps / time;
it is divided by the FLOP/s of a 2048 x 2048 fp32 matmul measured in the same process with the
same threads. Writes results/benchmarks/training_efficiency.{json,md}.

    python benchmarks/training_efficiency.py [--students 10] [--out results/benchmarks]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from autodistill.config import SearchConfig
from autodistill.families import InfeasibleArchitecture, InputSpec, build_student, get_family
from autodistill.measure import device_name
from autodistill.prepare import prepare
from autodistill.recipe import distil, recipe_for
from autodistill.spaces import load_space
from autodistill.study import sample_candidates


def matmul_flops_per_s(n: int = 2048, repeats: int = 10) -> float:
    """fp32 FLOP/s of an n x n matmul: median of ``repeats`` after two warm-up runs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def step_flops(model: torch.nn.Module, shape: tuple[int, ...], batch: int) -> int:
    """FLOPs of one training step's forward and backward at ``batch`` (a multiply-add is 2)."""
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(torch.randn(batch, *shape))
        out.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    config = SearchConfig()
    space = load_space("default")
    prep = prepare(config, space.teacher_outputs())
    threads = torch.get_num_threads()
    spec = InputSpec(prep.data.in_chans, prep.data.image_size, prep.data.num_classes)
    shape = (spec.in_chans, spec.image_size, spec.image_size)
    n_train = len(prep.data.train)

    rows = []
    for cand in sample_candidates(space, 10 * args.students, seed=args.seed):
        if len(rows) == args.students:
            break
        try:
            build_student(cand.family, cand.arch, spec)
        except InfeasibleArchitecture:
            continue
        hp = cand.train
        batch = int(hp.get("batch_size", 64))
        row = {
            "family": cand.family,
            "arch": get_family(cand.family).describe(cand.arch),
            "loss": cand.loss,
            "batch_size": batch,
        }
        flops = step_flops(build_student(cand.family, cand.arch, spec), shape, batch)
        row["train_flops_per_image"] = flops // batch
        peak = matmul_flops_per_s()  # measured beside each student: the ratio holds on a busy box
        row["matmul_gflops"] = round(peak / 1e9, 1)
        for fmt in ("nchw", "channels_last"):
            torch.manual_seed(0)
            model = build_student(cand.family, cand.arch, spec)
            cfg = dataclasses.replace(
                recipe_for(cand, epochs=1, seed=0), channels_last=fmt == "channels_last"
            )
            t0 = time.perf_counter()
            distil(model, cand, cfg, data=prep.data, aug=prep.aug, views=prep.views)
            seconds = time.perf_counter() - t0
            achieved = row["train_flops_per_image"] * n_train / seconds
            row[f"{fmt}_epoch_s"] = round(seconds, 2)
            row[f"{fmt}_gflops"] = round(achieved / 1e9, 2)
            row[f"{fmt}_of_matmul"] = round(achieved / peak, 3)
        row["used"] = "channels_last" if get_family(cand.family).channels_last else "nchw"
        row["used_of_matmul"] = row[f"{row['used']}_of_matmul"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    summary = {
        f"median_{k}": round(statistics.median(r[k] for r in rows), 3)
        for k in ("nchw_of_matmul", "channels_last_of_matmul", "used_of_matmul")
    }
    meta = {
        "command": "python benchmarks/training_efficiency.py " + " ".join(sys.argv[1:]),
        "device": device_name(torch.device("cpu")),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data": f"mnist5k train ({n_train} images, 28 px), 1 epoch per student and format",
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "summary": summary, "rows": rows}
    (args.out / "training_efficiency.json").write_text(json.dumps(doc, indent=2))
    (args.out / "training_efficiency.md").write_text(_markdown(doc))
    print(_markdown(doc))


def _markdown(doc: dict) -> str:
    m, s = doc["meta"], doc["summary"]
    lines = [
        "# Training efficiency: trial training FLOP/s / fp32 matmul FLOP/s",
        "",
        f"`{m['command']}`: {m['device']}, {m['threads']} threads, torch {m['torch']}, "
        f"{m['date']}; {m['data']}.",
        "",
        f"Median over {len(doc['rows'])} students: NCHW **{s['median_nchw_of_matmul']:.0%}**, "
        f"channels_last **{s['median_channels_last_of_matmul']:.0%}**, as the trainer runs "
        f"them (per-family format) **{s['median_used_of_matmul']:.0%}**.",
        "",
        "| family | arch | loss | batch | MFLOP/img (train) | NCHW s | NCHW | NHWC s | NHWC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['family']} | {r['arch']} | {r['loss']} | {r['batch_size']} | "
            f"{r['train_flops_per_image'] / 1e6:.1f} | {r['nchw_epoch_s']} | "
            f"{r['nchw_of_matmul']:.0%} | {r['channels_last_epoch_s']} | "
            f"{r['channels_last_of_matmul']:.0%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

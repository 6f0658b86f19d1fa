"""Benchmark: which int8 recipe ships, per family, on fully trained students, and is it faster?

From a run (the committed example by default), copied to a scratch folder so the run is left
as it was: for each family, its largest front student (by params) and the run's knee are
fully trained (``autodistill train --trial N --epochs E``) and exported with ``--int8``, which
tries every recipe (int8.RECIPES: static QDQ / QOperator, uint8 / int8 activations,
per-channel / per-tensor weights, dynamic where attention dominates), times each in ONNX
Runtime against fp32 and keeps the fastest that is more than 5% faster and within one point
of fp32's validation accuracy.

Target (issue 13): the shipped file at least 1.5x faster than fp32 on the largest front
students, and never slower than the fp32 it replaces.

Writes results/benchmarks/int8.{json,md}.

    python benchmarks/int8.py --run results/examples/mnist5k-default --epochs 30
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import autodistill
from autodistill.measure import device_name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("results/examples/mnist5k-default"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="RUN_DIR:TRIAL",
        help="also this trial of another run (e.g. a larger dense CNN)",
    )
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="autodistill-int8-"))
    work = scratch / args.run.name
    shutil.copytree(args.run, work)
    front = pd.read_csv(work / "pareto.csv")
    chosen = {
        int(front.loc[front[front["family"] == f]["params"].idxmax(), "number"]): "largest"
        for f in sorted(front["family"].unique())
    }
    knee = sorted((work / "students").glob("trial-*"))
    for path in knee:
        chosen.setdefault(int(path.name.split("-")[1]), "knee")
    jobs = [(work, number, why) for number, why in chosen.items()]
    for i, extra in enumerate(args.extra):
        run, trial = extra.rsplit(":", 1)
        copy = scratch / f"extra-{i}" / Path(run).name
        shutil.copytree(run, copy)
        jobs.append((copy, int(trial), f"extra, from {run}"))
    rows = []
    for work, number, why in jobs:
        start = time.perf_counter()
        autodistill.train(work, trial=number, epochs=args.epochs)
        out = autodistill.export(work, trial=number, int8=True, threads=args.threads)
        f = out.figures
        metrics = json.loads((work / "students" / f"trial-{number}" / "metrics.json").read_text())
        shipped = f["int8"]["shipped"]
        int8_ms = f.get("int8_latency_ms", f["onnx_latency_ms"])
        rows.append(
            {
                "trial": number,
                "chosen_as": why,
                "family": metrics["family"],
                "arch": metrics["arch"],
                "params": metrics["params"],
                "epochs": args.epochs,
                "fp32_ms": round(f["onnx_latency_ms"], 4),
                "fp32_val": f["onnx_val_accuracy"],
                "fp32_test": f["onnx_test_accuracy"],
                "shipped": shipped,
                "why": f["int8"]["why"],
                "shipped_ms": round(int8_ms, 4),
                "shipped_test": f.get("int8_test_accuracy", f["onnx_test_accuracy"]),
                "speedup": round(f["onnx_latency_ms"] / int8_ms, 2),
                "recipes": f["int8"]["recipes"],
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(
            f"trial {number} ({metrics['family']}, {metrics['params']:,} params): {shipped}, "
            f"{rows[-1]['speedup']}x",
            flush=True,
        )
    doc = {
        "meta": {
            "command": "python benchmarks/int8.py " + " ".join(sys.argv[1:]),
            "run": str(args.run),
            "device": device_name(torch.device("cpu")),
            "threads": args.threads,
            "date": time.strftime("%Y-%m-%d"),
            "onnxruntime": __import__("onnxruntime").__version__,
        },
        "students": rows,
        "never_slower": all(r["shipped_ms"] <= r["fp32_ms"] for r in rows),
        "largest_speedups": {
            r["family"]: r["speedup"] for r in rows if r["chosen_as"] == "largest"
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8.json").write_text(json.dumps(doc, indent=2))
    md = _markdown(doc)
    (args.out / "int8.md").write_text(md)
    print(md)
    shutil.rmtree(scratch, ignore_errors=True)


def _markdown(doc: dict) -> str:
    m = doc["meta"]
    lines = [
        "# int8 recipes on fully trained students",
        "",
        f"`{m['command']}`: {m['device']}, {m['threads']} threads, batch 1, ONNX Runtime "
        f"{m['onnxruntime']}, {m['date']}. Validation accuracy chooses; test is reported once.",
        "",
        "| trial | family | params | fp32 ms | recipe: ms (val %) | shipped | speed-up | "
        "test fp32 -> shipped |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["students"]:
        recipes = "; ".join(
            f"{t['recipe']}: {t['latency_ms']:.3f} ({100 * t['val_accuracy']:.1f})"
            if t["latency_ms"] is not None
            else f"{t['recipe']}: failed"
            for t in r["recipes"]
        )
        lines.append(
            f"| {r['trial']} ({r['chosen_as']}) | {r['family']} | {r['params']:,} | "
            f"{r['fp32_ms']:.3f} (val {100 * r['fp32_val']:.1f}) | {recipes} | {r['shipped']} | "
            f"{r['speedup']}x | {100 * r['fp32_test']:.2f}% -> {100 * r['shipped_test']:.2f}% |"
        )
    target = all(v >= 1.5 for v in doc["largest_speedups"].values())
    lines += [
        "",
        f"Never slower than the fp32 it replaces: **{'yes' if doc['never_slower'] else 'NO'}**. "
        f"Target >= 1.5x on the largest front students: **{'met' if target else 'missed'}** "
        f"({', '.join(f'{k} {v}x' for k, v in doc['largest_speedups'].items())}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Benchmark: can the latency column be trusted, and could it be guessed from FLOPs instead?

1. Repeatability: one student's latency measured ``--repeats`` times in this process with the
   search's own protocol (``measure.measure_latency``: batch 1, warm-up, fixed threads, median);
   reports the coefficient of variation of those medians.
2. Latency vs FLOPs: over the trained trials of a run's ``trials.csv`` (the committed example by
   default), Kendall's tau between the measured latency ranking and the FLOPs ranking. Below 1,
   ranking by FLOPs would misorder students that the front separates by latency.

Writes results/benchmarks/latency.{json,md}.

    python benchmarks/latency.py [--repeats 5] [--trials RUN_DIR/trials.csv]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import kendalltau

from autodistill.families import InputSpec, build_student, get_family
from autodistill.measure import device_name, measure_latency

EXAMPLE_TRIALS = Path("results/examples/mnist5k-default/trials.csv")
STUDENT = ("resnet", {"stem_stride": 2, "depths": [2, 1, 1, 2], "width": 24})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--trials", type=Path, default=EXAMPLE_TRIALS)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    spec = InputSpec(1, 28, 10)
    model = build_student(*STUDENT, spec)
    medians = [
        measure_latency(model, (1, 28, 28), threads=args.threads).median_ms
        for _ in range(args.repeats)
    ]
    cv = statistics.stdev(medians) / statistics.mean(medians)

    trials = pd.read_csv(args.trials)
    done = trials[(trials["state"] == "COMPLETE") & trials["latency_ms"].notna()]
    tau = kendalltau(done["latency_ms"], done["flops"]).statistic
    # How often FLOPs order a pair the other way round from the measured latency.
    lat, flops = done["latency_ms"].to_numpy(), done["flops"].to_numpy()
    pairs = [(i, j) for i in range(len(done)) for j in range(i + 1, len(done))]
    flipped = sum((lat[i] - lat[j]) * (flops[i] - flops[j]) < 0 for i, j in pairs)
    doc = {
        "meta": {
            "command": "python benchmarks/latency.py " + " ".join(sys.argv[1:]),
            "device": device_name(torch.device("cpu")),
            "threads": args.threads,
            "student": get_family(STUDENT[0]).describe(STUDENT[1]),
            "trials_file": str(args.trials),
            "date": time.strftime("%Y-%m-%d"),
        },
        "repeat_medians_ms": [round(m, 4) for m in medians],
        "cv": round(cv, 4),
        "kendall_tau_latency_vs_flops": round(float(tau), 3),
        "trials_compared": len(done),
        "pairs_ordered_differently": int(flipped),
        "pairs": len(pairs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(doc, indent=2))
    md = _markdown(doc)
    (args.out / "latency.md").write_text(md)
    print(md)


def _markdown(doc: dict) -> str:
    m = doc["meta"]
    return "\n".join(
        [
            "# Latency you can trust",
            "",
            f"`{m['command']}`: {m['device']}, {m['threads']} threads, {m['date']}.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| {m['student']}: medians of {len(doc['repeat_medians_ms'])} repeated measurements "
            f"(ms) | {', '.join(f'{v:.3f}' for v in doc['repeat_medians_ms'])} |",
            f"| coefficient of variation | **{doc['cv']:.1%}** |",
            f"| Kendall tau, latency vs FLOPs ranking ({doc['trials_compared']} trained trials of "
            f"`{m['trials_file']}`) | **{doc['kendall_tau_latency_vs_flops']:.2f}** |",
            f"| pairs of trials FLOPs order the other way round from latency | "
            f"{doc['pairs_ordered_differently']} of {doc['pairs']} |",
            "",
        ]
    )


if __name__ == "__main__":
    main()

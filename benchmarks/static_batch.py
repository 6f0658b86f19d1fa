"""Benchmark: an ONNX graph with its batch fixed against the same graph with a dynamic batch, per
family, at the latency target's batch (1), in ONNX Runtime on the CPU.

One mid-sized student per family of the ``default`` space, exported once (dynamic batch, as
``runtime.to_onnx`` makes it) and once more with the batch fixed (``runtime.fix_batch``). The
two sessions are timed in alternating order, ``PASSES`` times each; the figure is the median of
the per-pass ratios (dynamic / fixed), so a machine that changes speed between passes moves both.

    python benchmarks/static_batch.py --out results/benchmarks
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from autodistill import runtime
from autodistill.families import InputSpec, build_student
from autodistill.measure import device_name, time_call

PASSES = 8
SPEC = InputSpec(1, 28, 10)
ARCHS = {
    "resnet": {"stem_stride": 1, "depths": [1, 1, 1, 1], "width": 16},
    "mobilenetv3": {
        "stem_stride": 1,
        "width": 0.5,
        "stages": 3,
        "depths": [1, 1, 1],
        "kernels": [3, 3, 3],
        "expansions": [3.0, 3.0, 3.0],
        "head": 256,
    },
    "convnext": {"patch_size": 1, "depths": [1, 1, 1, 1], "width": 24, "kernel": 5},
    "vit": {"patch_size": 7, "depth": 2, "heads": 2, "head_dim": 16, "mlp_ratio": 2.0},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    x = np.zeros((1, SPEC.in_chans, SPEC.image_size, SPEC.image_size), np.float32)
    rows = {}
    for family, arch in ARCHS.items():
        torch.manual_seed(0)
        model = build_student(family, arch, SPEC).eval()
        dynamic = runtime.to_onnx(model, x.shape[1:])
        graphs = {"dynamic": dynamic, "fixed": runtime.fix_batch(dynamic, 1)}
        sessions = {k: runtime.session(g, threads=args.threads) for k, g in graphs.items()}
        seen: dict[str, list[float]] = {k: [] for k in sessions}
        for i in range(PASSES):
            for name in list(sessions)[:: 1 if i % 2 == 0 else -1]:
                sess = sessions[name]
                lat = time_call(
                    lambda s=sess: s.run(None, {"x": x}), threads=args.threads, device="cpu"
                )
                seen[name].append(lat.median_ms)
        ratios = [d / f for d, f in zip(seen["dynamic"], seen["fixed"], strict=True)]
        rows[family] = {
            "dynamic_ms": round(statistics.median(seen["dynamic"]), 4),
            "fixed_ms": round(statistics.median(seen["fixed"]), 4),
            "dynamic_over_fixed": round(statistics.median(ratios), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        }
        print(family, rows[family], flush=True)
    meta = {
        "command": "python benchmarks/static_batch.py " + " ".join(sys.argv[1:]),
        "cpu": device_name(torch.device("cpu")),
        "threads": args.threads,
        "batch": 1,
        "passes": PASSES,
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "static_batch.json").write_text(
        json.dumps({"meta": meta, "families": rows}, indent=2)
    )
    lines = [
        "# Fixed against dynamic batch in the exported graph",
        "",
        f"`{meta['command']}`, {meta['date']}, {meta['cpu']}, {args.threads} threads, batch 1, "
        f"ONNX Runtime; median of {PASSES} per-pass ratios (the two graphs timed side by side).",
        "",
        "| family | dynamic ms | fixed ms | dynamic / fixed (range) |",
        "|---|---|---|---|",
    ]
    for family, r in rows.items():
        lo, hi = r["ratio_range"]
        lines.append(
            f"| {family} | {r['dynamic_ms']} | {r['fixed_ms']} | "
            f"**{r['dynamic_over_fixed']}x** ({lo}-{hi}) |"
        )
    (args.out / "static_batch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

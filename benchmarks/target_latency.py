"""Benchmark: does the search time what ships? Eager PyTorch vs the exported ONNX file in ONNX
Runtime, for every trained trial of a run.

For each trained trial (COMPLETE or STOPPED) the candidate is rebuilt and timed on both
runtimes with the search's protocol (measure.time_call: warm-up, rounds, least disturbed
median), interleaved (torch, onnxruntime, onnxruntime, torch) and the faster of each pair kept,
so load on the shared machine hits both alike. Reports:

- Kendall tau of each ranking against ONNX Runtime's: the latency the search recorded, eager
  PyTorch now, FLOPs, params;
- the Pareto front (val_accuracy, params, latency) with the search's latency vs ONNX Runtime's:
  points that leave it, points that join it;
- what one ONNX Runtime measurement costs per candidate (export + session + timing) against
  the eager one and against the run's median trial time (the default's 10% rule);
- the two exporters on the first 12 candidates: export seconds, and ONNX Runtime latency of
  their graphs (interleaved).

Writes results/benchmarks/target_latency.{json,md} (or --name).

    python benchmarks/target_latency.py --run results/examples/mnist5k-default --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau

from autodistill import runtime
from autodistill.families import InputSpec
from autodistill.latency import LatencyTarget, measure_on_target
from autodistill.measure import device_name, time_call
from autodistill.recipe import build
from autodistill.spaces import Candidate
from autodistill.study import Run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("results/examples/mnist5k-default"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--exporters", type=int, default=12, help="candidates to compare exporters on")
    p.add_argument("--name", default="target_latency")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = Run.open(args.run)
    config, study = run.config, run.study
    trials = pd.read_csv(args.run / "trials.csv")
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    trained = trials[trials["state"].isin(["COMPLETE", "STOPPED"]) & trials["latency_ms"].notna()]
    spec = InputSpec(1, 28, 10) if config.data == "mnist5k" else None
    assert spec is not None, "this benchmark rebuilds mnist5k students"
    shape = (1, 28, 28)
    torch_target = LatencyTarget("torch", threads=args.threads)
    ort_target = LatencyTarget("onnxruntime", threads=args.threads)
    rows = []
    for _, row in trained.iterrows():
        cand = Candidate.from_dict(by_number[int(row["number"])].user_attrs["candidate"])
        model = build(cand, spec, seed=config.seed).eval()
        timings = {"torch": [], "onnxruntime": []}
        cost = {"torch": [], "onnxruntime": []}
        for order in (("torch", "onnxruntime"), ("onnxruntime", "torch")):
            for name in order:
                target = torch_target if name == "torch" else ort_target
                start = time.perf_counter()
                got = measure_on_target(model, shape, target)
                cost[name].append(time.perf_counter() - start)
                timings[name].append(got.median_ms)
        rows.append(
            {
                "number": int(row["number"]),
                "arch": row["arch"],
                "state": row["state"],
                "val_accuracy": float(row["val_accuracy"]),
                "params": int(row["params"]),
                "flops": int(row["flops"]),
                "search_latency_ms": float(row["latency_ms"]),
                "search_runtime": row.get("latency_runtime")
                if isinstance(row.get("latency_runtime"), str)
                else "torch",
                "torch_ms": min(timings["torch"]),
                "onnxruntime_ms": min(timings["onnxruntime"]),
                "torch_cost_s": statistics.median(cost["torch"]),
                "onnxruntime_cost_s": statistics.median(cost["onnxruntime"]),
                "trial_s": float(row["duration_s"]),
            }
        )
        print(
            f"trial {rows[-1]['number']:3d} torch {rows[-1]['torch_ms']:.3f} ms  onnxruntime "
            f"{rows[-1]['onnxruntime_ms']:.3f} ms  ({rows[-1]['arch']})",
            flush=True,
        )
    frame = pd.DataFrame(rows)
    doc = {
        "meta": {
            "command": "python benchmarks/target_latency.py " + " ".join(sys.argv[1:]),
            "run": str(args.run),
            "device": device_name(torch.device("cpu")),
            "threads": args.threads,
            "date": time.strftime("%Y-%m-%d"),
            "torch": torch.__version__,
            "onnxruntime": __import__("onnxruntime").__version__,
        },
        "trials": rows,
        **_summary(frame),
        "exporters": _exporters(frame, by_number, config.seed, spec, shape, args),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=2))
    md = _markdown(doc)
    (args.out / f"{args.name}.md").write_text(md)
    print(md)


def _tau(a, b) -> float:
    return round(float(kendalltau(a, b).statistic), 3)


def _front(frame: pd.DataFrame, latency: str) -> set[int]:
    """Trial numbers not dominated on (max val_accuracy, min params, min latency)."""
    v = np.stack([-frame["val_accuracy"], frame["params"], frame[latency]], axis=1)
    out = set()
    for i in range(len(v)):
        dominated = np.any(np.all(v <= v[i], axis=1) & np.any(v < v[i], axis=1))
        if not dominated:
            out.add(int(frame["number"].iloc[i]))
    return out


def _summary(frame: pd.DataFrame) -> dict:
    ort = frame["onnxruntime_ms"]
    search_front = _front(frame, "search_latency_ms")
    ort_front = _front(frame, "onnxruntime_ms")
    ratio = frame["torch_ms"] / ort
    trial_median = float(frame["trial_s"].median())
    ort_cost = float(frame["onnxruntime_cost_s"].median())
    return {
        "trained_trials": len(frame),
        "kendall_tau_vs_onnxruntime": {
            "search_latency": _tau(frame["search_latency_ms"], ort),
            "torch_eager_now": _tau(frame["torch_ms"], ort),
            "flops": _tau(frame["flops"], ort),
            "params": _tau(frame["params"], ort),
        },
        "torch_over_onnxruntime_median": round(float(ratio.median()), 2),
        "torch_over_onnxruntime_range": [
            round(float(ratio.min()), 2),
            round(float(ratio.max()), 2),
        ],
        "front_with_search_latency": sorted(search_front),
        "front_with_onnxruntime_latency": sorted(ort_front),
        "front_points_leaving": sorted(search_front - ort_front),
        "front_points_joining": sorted(ort_front - search_front),
        "cost_per_candidate_s": {
            "onnxruntime_median": round(ort_cost, 3),
            "torch_median": round(float(frame["torch_cost_s"].median()), 3),
            "trial_median": round(trial_median, 2),
            "onnxruntime_share_of_trial": round(ort_cost / trial_median, 3),
        },
    }


def _exporters(frame, by_number, seed, spec, shape, args) -> dict:
    """TorchScript's exporter (what runtime.to_onnx uses) vs torch.export's (dynamo)."""
    out = []
    for number in frame["number"].iloc[: args.exporters]:
        cand = Candidate.from_dict(by_number[int(number)].user_attrs["candidate"])
        model = build(cand, spec, seed=seed).eval()
        start = time.perf_counter()
        legacy = runtime.to_onnx(model, shape)
        legacy_s = time.perf_counter() - start
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (torch.zeros(2, *shape),),
                input_names=["x"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
                dynamo=True,
                verbose=False,
            )
            dynamo = program.model_proto.SerializeToString()
        dynamo_s = time.perf_counter() - start
        x = np.zeros((1, *shape), dtype=np.float32)
        ms = {"torchscript": [], "dynamo": []}
        for order in (("torchscript", "dynamo"), ("dynamo", "torchscript")):
            for name in order:
                graph = legacy if name == "torchscript" else dynamo
                sess = runtime.session(graph, threads=args.threads)
                lat = time_call(
                    lambda s=sess, x=x: s.run(None, {"x": x}), threads=args.threads, device="cpu"
                )
                ms[name].append(lat.median_ms)
        out.append(
            {
                "number": int(number),
                "torchscript_export_s": round(legacy_s, 3),
                "dynamo_export_s": round(dynamo_s, 3),
                "torchscript_ms": round(min(ms["torchscript"]), 4),
                "dynamo_ms": round(min(ms["dynamo"]), 4),
            }
        )
    f = pd.DataFrame(out)
    return {
        "candidates": out,
        "export_s_median": {
            "torchscript": round(float(f["torchscript_export_s"].median()), 3),
            "dynamo": round(float(f["dynamo_export_s"].median()), 3),
        },
        "latency_ratio_dynamo_over_torchscript_median": round(
            float((f["dynamo_ms"] / f["torchscript_ms"]).median()), 3
        ),
    }


def _markdown(doc: dict) -> str:
    m, tau, cost, ex = (
        doc["meta"],
        doc["kendall_tau_vs_onnxruntime"],
        doc["cost_per_candidate_s"],
        doc["exporters"],
    )
    lines = [
        f"# Target latency: eager PyTorch vs the exported ONNX file ({m['run']})",
        "",
        f"`{m['command']}`: {m['device']}, {m['threads']} threads, batch 1, {m['date']} "
        f"(torch {m['torch']}, onnxruntime {m['onnxruntime']}). "
        f"{doc['trained_trials']} trained trials, each rebuilt and timed on both runtimes, "
        "interleaved.",
        "",
        "| ranking compared with ONNX Runtime's latency | Kendall tau |",
        "|---|---|",
        f"| the latency the search recorded ({doc['trials'][0]['search_runtime']}) | "
        f"{tau['search_latency']} |",
        f"| eager PyTorch, measured now | {tau['torch_eager_now']} |",
        f"| FLOPs | {tau['flops']} |",
        f"| params | {tau['params']} |",
        "",
        f"Eager PyTorch is **{doc['torch_over_onnxruntime_median']}x** slower than ONNX Runtime "
        f"on the median student (range {doc['torch_over_onnxruntime_range'][0]}x to "
        f"{doc['torch_over_onnxruntime_range'][1]}x).",
        "",
        f"Front (val accuracy, params, latency) with the search's latency: "
        f"{len(doc['front_with_search_latency'])} points; with ONNX Runtime's: "
        f"{len(doc['front_with_onnxruntime_latency'])}. Leaving: "
        f"{doc['front_points_leaving'] or 'none'}; joining: "
        f"{doc['front_points_joining'] or 'none'}.",
        "",
        "| per candidate (median) | seconds |",
        "|---|---|",
        f"| ONNX Runtime measurement (export + session + timing) | {cost['onnxruntime_median']} |",
        f"| eager PyTorch measurement | {cost['torch_median']} |",
        f"| a trial of this run | {cost['trial_median']} |",
        "| ONNX Runtime's share of a trial | "
        f"**{100 * cost['onnxruntime_share_of_trial']:.1f}%** |",
        "",
        f"Exporters on {len(ex['candidates'])} candidates: TorchScript's (what autodistill uses) "
        f"{ex['export_s_median']['torchscript']} s per export, torch.export's "
        f"{ex['export_s_median']['dynamo']} s; ONNX Runtime latency of the torch.export graph "
        f"over the TorchScript graph: {ex['latency_ratio_dynamo_over_torchscript_median']}x "
        "(median).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Benchmark: does compressing a chosen student pay, and does distillation help it recover?

From a run (the committed example by default), copied once to a work folder so the run is left
as it was (and a stopped benchmark resumes there: every finished stage is kept): for each
trial (the knee and the largest front student), fully trained first if it is not
(``autodistill train --trial N``), and for each seed,

- ``compress --trial N --prune 0.5 --qat`` (fine-tuning with the trial's distillation loss,
  or plain KD for a trial that learned without the teacher), and
- the same pruning fine-tuned with plain cross-entropy (``kd=False``), no QAT.

The teacher is whatever the cache holds for the run's recipe (``other_teacher``): on another
machine than the one that made the run it is retrained there, to other weights; the JSON
records its hash and test accuracy beside the study's.

Targets (issue 15): 50% channel pruning + KD fine-tune within 0.5 points of the unpruned
student's test accuracy and >= 1.5x lower ONNX Runtime latency; QAT-KD int8 within 0.3 points
of fp32 and not slower; KD fine-tuning better than plain fine-tuning of the same pruned
student (over 2 seeds). Latency ratios are within one compress call (all variants and the
teacher timed interleaved); accuracy is test accuracy, reported once (variants are chosen on
validation by ``compress`` itself).

Writes results/benchmarks/compression.{json,md}.

    python benchmarks/compression.py --run results/examples/mnist5k-default --trials 17,2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

import autodistill
from autodistill.measure import device_name
from autodistill.ship.variants import PASSES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("results/examples/mnist5k-default"))
    p.add_argument("--trials", default="17,2", help="trial numbers, comma-separated")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs per round / QAT")
    p.add_argument("--train-epochs", type=int, default=30)
    p.add_argument("--work", type=Path, default=Path("/tmp/autodistill-compression-bench"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks/compression"))
    p.add_argument(
        "--markdown-only",
        action="store_true",
        help="rewrite the .md from the .json of an earlier run",
    )
    args = p.parse_args()
    if args.markdown_only:
        report = json.loads(args.out.with_suffix(".json").read_text())
        args.out.with_suffix(".md").write_text(_markdown(report))
        return
    trials = [int(t) for t in args.trials.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.work / args.run.name
    if not work.exists():
        work.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(args.run, work)
    started = time.perf_counter()
    results = []
    for trial in trials:
        if not (work / "students" / f"trial-{trial}" / "metrics.json").is_file():
            autodistill.train(work, trial=trial, epochs=args.train_epochs, other_teacher=True)
        student = json.loads((work / "students" / f"trial-{trial}" / "metrics.json").read_text())
        runs = []
        for seed in seeds:
            for kd in (True, False):
                t0 = time.perf_counter()
                out = autodistill.compress(
                    work,
                    trial=trial,
                    prune=(0.5,),
                    qat=kd,
                    kd=kd,
                    epochs=args.epochs,
                    seed=seed,
                    other_teacher=True,
                )
                seconds = round(time.perf_counter() - t0, 1)
                runs.append(
                    {
                        "seed": seed,
                        "kd": kd,
                        "seconds": seconds,
                        "best": out.best,
                        "why": out.why,
                        "variants": out.variants,
                    }
                )
                print(f"trial {trial} seed {seed} kd {kd}: {runs[-1]['seconds']} s", flush=True)
        results.append(
            {
                "trial": trial,
                "arch": student["arch"],
                "family": student["family"],
                "loss": student["loss"],
                "params": student["params"],
                "student_test_accuracy": student["test_accuracy"],
                "runs": runs,
                "summary": _summary(runs),
            }
        )
    command = " ".join(["python", *sys.argv])
    report = {
        "command": command,
        "hardware": device_name(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "epochs": args.epochs,
        "seeds": seeds,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "teacher": _teacher(work, results),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))


def _teacher(work: Path, results: list[dict]) -> dict:
    """The teacher the fine-tuning distilled from, and the one the study recorded."""
    study = json.loads((work / "teacher.json").read_text())
    home = work / "students" / f"trial-{results[0]['trial']}" / "compress.json"
    used = json.loads(home.read_text())["teacher"]
    return {
        "used_sha256": used["weights_sha256"],
        "used_test_accuracy": used["test_accuracy"],
        "study_sha256": study["weights_sha256"],
        "study_test_accuracy": study["test_accuracy"],
    }


def _find(run: dict, ratio: float, precision: str) -> dict:
    return next(
        v for v in run["variants"] if v["pruning_ratio"] == ratio and v["precision"] == precision
    )


def _summary(runs: list[dict]) -> dict:
    kd = [r for r in runs if r["kd"]]
    plain = [r for r in runs if not r["kd"]]
    base = _find(kd[0], 0.0, "fp32")
    pruned = [_find(r, 0.5, "fp32") for r in kd]
    pruned_plain = [_find(r, 0.5, "fp32") for r in plain]
    qat = _find(kd[0], 0.0, "int8-qat-kd")
    ptq = _find(kd[0], 0.0, "int8-ptq")
    qat50 = [_find(r, 0.5, "int8-qat-kd") for r in kd]
    ptq50 = [_find(r, 0.5, "int8-ptq") for r in kd]

    def mean(rows: list[dict], key: str) -> float:
        return statistics.mean(float(r[key]) for r in rows)

    return {
        "unpruned_test": base["test_accuracy"],
        "unpruned_params": base["params"],
        "pruned50_params": pruned[0]["params"],
        "pruned50_kd_test": mean(pruned, "test_accuracy"),
        "pruned50_kd_val": mean(pruned, "val_accuracy"),
        "pruned50_plain_test": mean(pruned_plain, "test_accuracy"),
        "pruned50_plain_val": mean(pruned_plain, "val_accuracy"),
        "pruned50_kd_test_by_seed": [r["test_accuracy"] for r in pruned],
        "pruned50_plain_test_by_seed": [r["test_accuracy"] for r in pruned_plain],
        "pruned50_speedup": mean(pruned, "speedup_vs_student"),
        "qat_kd_test": qat["test_accuracy"],
        "ptq_test": ptq["test_accuracy"],
        "qat_kd_speedup_vs_fp32": qat["speedup_vs_student"],
        "ptq_speedup_vs_fp32": ptq["speedup_vs_student"],
        "pruned50_qat_kd_test": mean(qat50, "test_accuracy"),
        "pruned50_ptq_test": mean(ptq50, "test_accuracy"),
        "pruned50_qat_kd_speedup": mean(qat50, "speedup_vs_student"),
    }


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _markdown(report: dict) -> str:
    lines = [
        "# Compression: pruning with distillation, int8 after training and QAT-KD",
        "",
        f"Command: `{report['command']}`; {report['hardware']}, {report['threads']} threads; "
        f"{report['epochs']} fine-tuning epochs per pruning round and per QAT run; seeds "
        f"{report['seeds']}; {report['wall_seconds'] / 60:.1f} min in all. Test accuracy "
        "(reported once; compress chooses on validation). Latency ratios: ONNX Runtime on the "
        f"cpu, batch 1, every variant of one compress call and the teacher timed interleaved "
        f"({PASSES} passes in rotated order; each ratio the median of per-pass ratios).",
        "",
    ]
    t = report.get("teacher")
    if t and t["used_sha256"] != t["study_sha256"]:
        lines += [
            f"The fine-tuning distilled from a teacher retrained on this machine "
            f"({t['used_sha256'][:12]}, test {100 * t['used_test_accuracy']:.2f}%), not the "
            f"study's ({t['study_sha256'][:12]}, test {100 * t['study_test_accuracy']:.2f}%), "
            "made on another: the same recipe trains to other weights on another CPU.",
            "",
        ]
    for r in report["results"]:
        s = r["summary"]
        drop = 100 * (s["unpruned_test"] - s["pruned50_kd_test"])
        qat_drop = 100 * (s["unpruned_test"] - s["qat_kd_test"])
        ptq_drop = 100 * (s["unpruned_test"] - s["ptq_test"])
        gain = 100 * (s["pruned50_kd_test"] - s["pruned50_plain_test"])
        lines += [
            f"## Trial {r['trial']}: {r['arch']} ({r['family']}, trained with {r['loss']}), "
            f"{r['params']:,} params",
            "",
            "| target | figure | verdict |",
            "|---|---|---|",
            f"| 50% channels pruned + KD fine-tune: test within 0.5 points | "
            f"{100 * s['unpruned_test']:.2f}% -> {100 * s['pruned50_kd_test']:.2f}% "
            f"(mean of seeds; {drop:+.2f} points lost), params {s['unpruned_params']:,} -> "
            f"{s['pruned50_params']:,} | {_verdict(drop <= 0.5)} |",
            f"| ... and ONNX Runtime latency >= 1.5x lower | {s['pruned50_speedup']:.2f}x | "
            f"{_verdict(s['pruned50_speedup'] >= 1.5)} |",
            f"| QAT-KD int8 within 0.3 points of fp32 | {100 * s['qat_kd_test']:.2f}% "
            f"({qat_drop:+.2f} points lost; int8 after training {100 * s['ptq_test']:.2f}%, "
            f"{ptq_drop:+.2f}) | {_verdict(qat_drop <= 0.3)} |",
            f"| ... and not slower than fp32 (within the 5% two timings of one file differ by) | "
            f"{s['qat_kd_speedup_vs_fp32']:.2f}x fp32's speed "
            f"(PTQ {s['ptq_speedup_vs_fp32']:.2f}x) "
            f"| {_verdict(s['qat_kd_speedup_vs_fp32'] >= 0.95)} |",
            f"| KD fine-tuning beats plain fine-tuning (2 seeds) | KD "
            f"{100 * s['pruned50_kd_test']:.2f}% vs plain {100 * s['pruned50_plain_test']:.2f}% "
            f"(by seed: KD {', '.join(f'{100 * v:.2f}' for v in s['pruned50_kd_test_by_seed'])};"
            f" plain {', '.join(f'{100 * v:.2f}' for v in s['pruned50_plain_test_by_seed'])}) | "
            f"{_verdict(gain > 0)} ({gain:+.2f} points) |",
            "",
            f"Pruned 50% then int8: QAT-KD {100 * s['pruned50_qat_kd_test']:.2f}%, PTQ "
            f"{100 * s['pruned50_ptq_test']:.2f}%; QAT-KD runs at "
            f"{s['pruned50_qat_kd_speedup']:.2f}x the unpruned fp32 student's speed.",
            "",
            "| seed | fine-tune | variant | params | file kB | val | test | ms | x student |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for run in r["runs"]:
            for v in run["variants"]:
                lines.append(
                    f"| {run['seed']} | {'KD' if run['kd'] else 'plain CE'} | {v['variant']} | "
                    f"{v['params']:,} | {v['onnx_bytes'] / 1e3:.1f} | "
                    f"{100 * v['val_accuracy']:.2f}% | {100 * v['test_accuracy']:.2f}% | "
                    f"{v['latency_ms']:.3f} | {v['speedup_vs_student']:.2f} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

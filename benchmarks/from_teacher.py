"""Benchmark: students cut from the teacher (``from_teacher``) against students built from
scratch, on one search's front, at matched ONNX Runtime latency (issue 28, item 7).

One search over the ``with_teacher`` space (from_teacher beside ResNet and MobileNetV3 from
scratch) on an image folder, then for each side its own front of validation accuracy against
latency: at every latency where both sides have a student at or below it (the mid latencies),
the best accuracy of each side, and by how much the cut students lead (brief training: what
the search itself sees). With ``--train-epochs N``, the pairs are then fully trained (``train``'s
recipe): the ``--pairs`` best cut students by validation, each beside the two best from-scratch
students at or below its latency, and the lead is read again on test accuracy. Writes
``from_teacher.{json,md}`` under ``--out``; a stopped run resumes (the search and each trained
student are kept under ``--run-out``).

    python benchmarks/from_teacher.py ../shared/data/cifar10-jpeg --budget 16 --epochs 3 \
        --train-epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

import autodistill
from autodistill.measure import device_name


def best_at(trials: pd.DataFrame, latency: float) -> float | None:
    """The best validation accuracy of ``trials`` at or below ``latency``."""
    under = trials[trials["latency_ms"] <= latency]
    return float(under["val_accuracy"].max()) if not under.empty else None


def compare(trials: pd.DataFrame) -> dict:
    """The two sides' staircases at every latency both reach (their trials' own latencies)."""
    done = trials[trials["state"] == "COMPLETE"].dropna(subset=["val_accuracy", "latency_ms"])
    cut = done[done["family"] == "from_teacher"]
    scratch = done[done["family"] != "from_teacher"]
    rows = []
    if not cut.empty and not scratch.empty:
        low = max(cut["latency_ms"].min(), scratch["latency_ms"].min())
        high = min(cut["latency_ms"].max(), scratch["latency_ms"].max())
        for latency in sorted(set(done["latency_ms"])):
            if low <= latency <= high:
                a, b = best_at(cut, latency), best_at(scratch, latency)
                rows.append({"latency_ms": latency, "from_teacher": a, "scratch": b, "lead": a - b})
    leads = [r["lead"] for r in rows]
    return {
        "trained": {"from_teacher": len(cut), "scratch": len(scratch)},
        "points": rows,
        "median_lead": float(pd.Series(leads).median()) if leads else None,
        "least_lead": min(leads) if leads else None,
    }


def pairs(trials: pd.DataFrame, cut_n: int = 2, scratch_n: int = 2) -> list[dict]:
    """The best ``cut_n`` cut students, each with the best ``scratch_n`` from scratch at or below
    its latency (by brief validation accuracy)."""
    done = trials[trials["state"] == "COMPLETE"].dropna(subset=["val_accuracy", "latency_ms"])
    cut = done[done["family"] == "from_teacher"].nlargest(cut_n, "val_accuracy")
    scratch = done[done["family"] != "from_teacher"]
    out = []
    for _, c in cut.iterrows():
        rivals = scratch[scratch["latency_ms"] <= c["latency_ms"]].nlargest(
            scratch_n, "val_accuracy"
        )
        out.append({"cut": int(c["number"]), "scratch": [int(n) for n in rivals["number"]]})
    return out


def full_training(run_dir: Path, chosen: list[dict], epochs: int) -> dict:
    """Each chosen trial trained ``epochs`` (kept: a trained student is not trained again), and
    each pair's lead on test accuracy."""
    keep = ("trial", "family", "arch", "loss", "params", "latency_ms", "val_accuracy")
    trained: dict[int, dict] = {}
    for n in sorted({p["cut"] for p in chosen} | {s for p in chosen for s in p["scratch"]}):
        s = autodistill.train(run_dir, trial=n, epochs=epochs).students[0]
        trained[n] = {k: s.get(k) for k in keep} | {
            "test_accuracy": s["test_accuracy"],
            "brief_val_accuracy": s.get("brief_val_accuracy"),
        }
    rows = []
    for p in chosen:
        cut = trained[p["cut"]]
        rivals = [trained[n] for n in p["scratch"]]
        best = max(rivals, key=lambda r: r["val_accuracy"]) if rivals else None
        rows.append(
            {
                "cut": cut,
                "scratch": rivals,
                "best_scratch": best and best["trial"],  # chosen on validation
                "test_lead": best and cut["test_accuracy"] - best["test_accuracy"],
            }
        )
    return {"epochs": epochs, "pairs": rows}


def write(doc: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "from_teacher.json").write_text(json.dumps(doc, indent=2))
    c = doc["comparison"]
    lines = [
        "# Students cut from the teacher against students built from scratch",
        "",
        f"`{doc['command']}` on {doc['host']}, {doc['threads']} threads: one search of "
        f"{doc['budget']} trials over the `with_teacher` space ({doc['epochs']} epochs a "
        f"trial), teacher {doc['teacher']['name']} ({100 * doc['teacher']['val_accuracy']:.2f}% "
        f"validation, {100 * doc['teacher']['test_accuracy']:.2f}% test, "
        f"{doc['teacher']['params']:,} params); {doc['data']}. Took {doc['minutes']:.0f} min "
        f"wall. Trained: {c['trained']['from_teacher']} cut from the teacher, "
        f"{c['trained']['scratch']} from scratch.",
        "",
        "Best validation accuracy at or below each latency both sides reach (brief training, "
        "as the search ranks them):",
        "",
        "| latency ms | from_teacher | from scratch | lead (points) |",
        "|---|---|---|---|",
    ]
    for r in c["points"]:
        lines.append(
            f"| {r['latency_ms']:.4f} | {100 * r['from_teacher']:.2f}% | "
            f"{100 * r['scratch']:.2f}% | {100 * r['lead']:+.2f} |"
        )
    if c["median_lead"] is None:
        lines += ["", "No latency is reached by both sides: nothing to compare."]
    else:
        verdict = "met" if c["least_lead"] >= 0.01 else "missed"
        lines += [
            "",
            f"Median lead {100 * c['median_lead']:+.2f} points, least {100 * c['least_lead']:+.2f}."
            " Target (a lead of at least 1 point at equal latency, at mid latencies): "
            f"**{verdict}** (brief training).",
        ]
    full = doc.get("full_training")
    if full:
        lines += [
            "",
            f"After full training ({full['epochs']} epochs, `train`'s recipe; latencies from "
            "`train`'s side-by-side timing; the best from-scratch rival chosen on validation, "
            "its lead read on test):",
            "",
            "| side | trial | arch | params | latency ms | brief val | full val | test |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in full["pairs"]:
            for side, s in [("cut", r["cut"])] + [("scratch", x) for x in r["scratch"]]:
                lines.append(
                    f"| {side} | {s['trial']} | {s['arch']} | {s['params']:,} | "
                    f"{s['latency_ms']:.4f} | {_pct(s['brief_val_accuracy'])} | "
                    f"{_pct(s['val_accuracy'])} | {_pct(s['test_accuracy'])} |"
                )
            lead = r["test_lead"]
            lines.append(
                f"| **lead** | | | | | | | "
                f"{'no rival' if lead is None else f'**{100 * lead:+.2f}**'} |"
            )
        leads = [r["test_lead"] for r in full["pairs"] if r["test_lead"] is not None]
        if leads:
            verdict = "met" if min(leads) >= 0.01 else "**missed**"
            lines += [
                "",
                f"Least test lead after full training {100 * min(leads):+.2f} points: target "
                f"(>= 1 point at equal latency) {verdict}.",
            ]
    (out / "from_teacher.md").write_text("\n".join(lines) + "\n")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="an image folder (train/, test/)")
    p.add_argument("--teacher", default="resnet18")
    p.add_argument("--teacher-epochs", type=int, default=15)
    p.add_argument("--budget", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-epochs", type=int, default=0, help="then fully train matched pairs")
    p.add_argument("--pairs", type=int, default=2, help="cut students to train fully")
    p.add_argument("--run-out", type=Path, default=Path("/tmp/autodistill-from_teacher"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    if not (args.data / "train").is_dir():
        print(f"from_teacher: {args.data}/train not found; give an image folder")
        return 2
    started = time.perf_counter()
    cpu = os.times()
    run = autodistill.search(
        data=f"imagefolder:{args.data}",
        space="with_teacher",
        teacher=args.teacher,
        teacher_epochs=args.teacher_epochs,
        budget=args.budget,
        epochs=args.epochs,
        threads=args.threads,
        out=str(args.run_out),
    )
    spent = os.times()
    doc = {
        "command": " ".join(["python", *sys.argv]),
        "host": device_name(torch.device("cpu")),
        "threads": args.threads,
        "data": f"{args.data} ({sum(1 for _ in (args.data / 'train').rglob('*.jpg'))} train/ "
        "images, validation carved from them)",
        "budget": args.budget,
        "epochs": args.epochs,
        "teacher": {k: run.teacher[k] for k in ("name", "params", "val_accuracy", "test_accuracy")},
        "minutes": (time.perf_counter() - started) / 60,
        "cpu_hours": (
            spent.user
            + spent.system
            + spent.children_user
            + spent.children_system
            - cpu.user
            - cpu.system
            - cpu.children_user
            - cpu.children_system
        )
        / 3600,
        "run_dir": str(run.run_dir),
        "comparison": compare(run.trials),
    }
    if args.train_epochs:
        doc["full_training"] = full_training(
            run.run_dir, pairs(run.trials, cut_n=args.pairs), args.train_epochs
        )
        doc["minutes"] = (time.perf_counter() - started) / 60
    write(doc, args.out)
    print((args.out / "from_teacher.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

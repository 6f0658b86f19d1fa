"""Benchmark: does the search's ranking survive full training?

For a finished 50-trial run on the ``default`` space: every front point (the 12 most accurate
if there are more) is fully trained (the ``train`` recipe, 30 epochs) with 2 seeds, and 6
trained trials off the front drawn at random with 1 seed. Then, over the front and over all of
them, Kendall tau and Spearman rho between the score the search reported (the validation
accuracy in trials.csv, at whatever epochs were behind it) and the full validation accuracy
(the mean over seeds), beside the baselines of ranking by params alone, FLOPs alone and by
NASWOT (Mellor et al., ICML 2021: the log-determinant of the kernel of ReLU-style activation
codes of 64 training images, at initialisation, no training). And the regret: for each params
budget, the full accuracy of the candidate the search ranks best under it vs the best fully
trained one under it. Selection uses validation; test accuracy is listed once, separately.

Resumable: every student is trained in a copy of the run per seed under ``--work``
(``autodistill.train(..., seed=S)``, which keeps each finished student and checkpoints every
epoch), so the hour of CPU can run in pieces; run the same command again to go on.

Each run is stored under its ``--label`` (``brief`` for a search with brief trials only,
``multi`` for one with multi-fidelity promotion) in results/benchmarks/rank_fidelity.json,
with every student's reported, full (per seed) and test figures, so that tau can be recomputed
from the file; the .md is rewritten from the whole JSON.

    AUTODISTILL_CACHE=/tmp/ex-cache python benchmarks/rank_fidelity.py \\
        --run /tmp/rf/mnist5k-default --label brief
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from scipy.stats import kendalltau, spearmanr
from torch import nn

import autodistill
from autodistill.families import InputSpec
from autodistill.measure import device_name
from autodistill.recipe import build
from autodistill.rundir import load_config
from autodistill.study import Run, trial_candidate

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.Hardswish, nn.SiLU, nn.LeakyReLU)
OUT = Path("results/benchmarks/rank_fidelity")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="a finished search run directory")
    p.add_argument("--label", default="brief", help="the name this run is stored under")
    p.add_argument("--front", type=int, default=12, help="front points trained (most accurate)")
    p.add_argument("--off-front", type=int, default=6, help="off-front trials trained, 1 seed")
    p.add_argument("--seeds", type=int, default=2, help="seeds of each front point")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=0, help="training threads (0: the run's)")
    p.add_argument("--work", type=Path, default=Path("/tmp/autodistill-rank-fidelity"))
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = p.parse_args()
    path = args.out.with_suffix(".json")
    report = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    if not args.markdown_only:
        if args.run is None:
            p.error("--run is needed (or --markdown-only)")
        report["runs"][args.label] = measure(args)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def measure(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    run = args.run
    config = load_config(run)
    trials = pd.read_csv(run / "trials.csv")
    done = trials[trials.state == "COMPLETE"]
    front = done[done.pareto.astype(bool)].sort_values("val_accuracy", ascending=False)
    front_numbers = [int(n) for n in front.number[: args.front]]
    rest = sorted(int(n) for n in done.number if int(n) not in set(front.number))
    off = sorted(random.Random(config.seed).sample(rest, min(args.off_front, len(rest))))
    seeds = [config.seed + i for i in range(args.seeds)]
    plan = [(n, s) for n in front_numbers for s in seeds] + [(n, seeds[0]) for n in off]
    full: dict[tuple[int, int], dict] = {}
    for i, (number, seed) in enumerate(plan, 1):
        work = _copy(run, args.work / args.label / f"seed-{seed}", args.threads)
        t0 = time.perf_counter()
        out = autodistill.train(
            work, trial=number, epochs=args.epochs, seed=seed, other_teacher=True
        )
        full[(number, seed)] = out.students[0]
        print(
            f"[{i}/{len(plan)}] trial {number} seed {seed}: full val "
            f"{out.students[0]['val_accuracy']:.4f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    proxy = _naswot_scores(run, front_numbers + off)
    rows = []
    for number in front_numbers + off:
        t = done[done.number == number].iloc[0]
        runs = [full[(number, s)] for s in seeds if (number, s) in full]
        rows.append(
            {
                "trial": number,
                "on_front": number in front_numbers,
                "arch": t.arch,
                "family": t.family,
                "loss": t.loss,
                "params": int(t.params),
                "flops": int(t.flops),
                "latency_ms": float(t.latency_ms),
                "reported_val_accuracy": float(t.val_accuracy),
                "reported_epochs": _epochs(t, config.epochs),
                "full_val_accuracy_by_seed": [r["val_accuracy"] for r in runs],
                "full_val_accuracy": statistics.mean(r["val_accuracy"] for r in runs),
                "test_accuracy_by_seed": [r["test_accuracy"] for r in runs],
                "naswot": proxy[number],
            }
        )
    teacher = next(iter(full.values()))["teacher"]
    study_teacher = json.loads((run / "teacher.json").read_text())
    return {
        "command": " ".join(["python", *sys.argv]),
        "run": str(run),
        "search_command": _search_command(config),
        "hardware": device_name(torch.device("cpu")),
        "train_threads": args.threads or config.resolved_threads,
        "epochs": args.epochs,
        "seeds": seeds,
        "search_wall_seconds": _search_seconds(trials),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "teacher": {
            "used_sha256": teacher["weights_sha256"],
            "study_sha256": study_teacher["weights_sha256"],
            "test_accuracy": teacher["test_accuracy"],
        },
        "students": rows,
        "summary": summary(rows),
    }


def _copy(run: Path, work: Path, threads: int) -> Path:
    """A copy of the run to train one seed's students in, leaving the run as it was (with
    ``threads`` training threads, if given)."""
    if not work.exists():
        work.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(run, work, ignore=shutil.ignore_patterns("students", "checkpoints"))
        if threads:
            path = work / "config.yaml"
            doc = yaml.safe_load(path.read_text())
            # Latency stays timed as the study timed it; only training is spread thinner.
            doc["config"] = load_config(run).to_dict()
            doc["config"]["latency"]["threads"] = load_config(run).target_threads
            doc["config"]["threads"] = threads
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return work


def _epochs(trial: pd.Series, brief: int) -> int:
    """The epochs behind the reported score: the column a multi-fidelity run writes, else the
    search's brief epochs."""
    value = trial.get("epochs_trained")
    return int(value) if value is not None and value == value else brief


def _search_command(config) -> str:
    fidelity = config.fidelity.kind
    extra = f" --fidelity {fidelity}" if fidelity != "brief" else ""
    if fidelity == "multi":
        extra += f" --promotion-time {config.fidelity.promotion_time:g}"
    return f"autodistill search --budget {config.budget} --space {config.space}{extra}"


def _search_seconds(trials: pd.DataFrame) -> float:
    return round(float(trials.duration_s.fillna(0).sum()), 1)


def _naswot_scores(run: Path, numbers: list[int]) -> dict[int, float]:
    """NASWOT of each trial's student at its initial weights, on the first 64 training images."""
    opened = Run.open(run)
    config, study = opened.config, opened.study
    prep = opened.prepare(other_teacher=True)
    data = prep.data
    images = torch.from_numpy(data.calibration(64))
    spec = InputSpec(data.in_chans, data.image_size, data.num_classes)
    return {
        n: naswot(build(trial_candidate(study, n)[0], spec, seed=config.seed), images)
        for n in numbers
    }


@torch.no_grad()
def naswot(model: nn.Module, images: torch.Tensor) -> float:
    """log|K| where K[i, j] counts the activation units on which images i and j fall on the
    same side of zero (the input of every ReLU-like module, concatenated)."""
    codes: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        codes.append((inputs[0] > 0).flatten(1).double())

    handles = [
        m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, ACTIVATIONS)
    ]
    try:
        model.eval()(images)
    finally:
        for h in handles:
            h.remove()
    c = torch.cat(codes, dim=1)
    k = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(k).logabsdet)


def _rank(x: list[float], y: list[float]) -> dict[str, float | None]:
    def clean(v: float) -> float | None:
        return None if v != v else round(float(v), 3)

    return {
        "kendall_tau": clean(kendalltau(x, y).statistic),
        "spearman_rho": clean(spearmanr(x, y).statistic),
    }


def summary(rows: list[dict]) -> dict:
    """Rank agreement with full validation accuracy, over the front and over all, by the
    reported score and by each baseline; and the regret by params budget."""
    out: dict = {}
    for subset, chosen in (("front", [r for r in rows if r["on_front"]]), ("all", rows)):
        full = [r["full_val_accuracy"] for r in chosen]
        out[subset] = {
            "n": len(chosen),
            "reported": _rank([r["reported_val_accuracy"] for r in chosen], full),
            "params": _rank([r["params"] for r in chosen], full),
            "flops": _rank([r["flops"] for r in chosen], full),
            "naswot": _rank([r["naswot"] for r in chosen], full),
        }
    out["regret"] = regret(rows)
    return out


def regret(rows: list[dict]) -> list[dict]:
    """For each params budget (every trained student's size): the full accuracy of the one the
    search ranks first under it, and of the best fully trained one under it."""
    out = []
    for budget in sorted({r["params"] for r in rows}):
        under = [r for r in rows if r["params"] <= budget]
        pick = max(under, key=lambda r: r["reported_val_accuracy"])
        best = max(under, key=lambda r: r["full_val_accuracy"])
        out.append(
            {
                "max_params": budget,
                "picked": pick["trial"],
                "picked_full": pick["full_val_accuracy"],
                "best": best["trial"],
                "best_full": best["full_val_accuracy"],
                "regret": best["full_val_accuracy"] - pick["full_val_accuracy"],
            }
        )
    return out


def _seed_noise(students: list[dict]) -> list[str]:
    """How well full training agrees with itself: over the front, seed 0 against seed 1, and
    the reported score against each seed alone (computed from the students' figures)."""
    front = [r for r in students if r["on_front"] and len(r["full_val_accuracy_by_seed"]) > 1]
    if len(front) < 3:
        return []
    seeds = list(zip(*(r["full_val_accuracy_by_seed"][:2] for r in front), strict=True))
    apart = np.mean([abs(a - b) for a, b in zip(*seeds, strict=True)])
    reported = [r["reported_val_accuracy"] for r in front]
    each = [_rank(reported, list(s))["kendall_tau"] for s in seeds]
    return [
        f"Full training's own noise, over the {len(front)} front points: seed 0 against seed 1 "
        f"tau / rho {_fmt(_rank(list(seeds[0]), list(seeds[1])))}, mean |difference| "
        f"{100 * apart:.2f} points; the reported score against each seed alone: tau "
        + ", ".join("n/a" if t is None else f"{t:+.2f}" for t in each)
        + ".",
        "",
    ]


def _fmt(rank: dict) -> str:
    tau, rho = rank["kendall_tau"], rank["spearman_rho"]
    return f"{'n/a' if tau is None else f'{tau:+.2f}'} / {'n/a' if rho is None else f'{rho:+.2f}'}"


def markdown(report: dict) -> str:
    lines = [
        "# Rank fidelity: does the search's ranking survive full training?",
        "",
        "Kendall tau / Spearman rho between each ranking and the full validation accuracy (the "
        "`train` recipe; mean over seeds for front points). Target (issue 14): tau >= 0.8 over "
        "the front with the reported score, above the params-only baseline. Anchors: reduced-"
        "training proxies reach Spearman ~0.61 on NAS-Bench-201 (EcoNAS, as reported by "
        "Abdelfattah et al., ICLR 2021); the best zero-cost vote ~0.82.",
        "",
    ]
    for note in report.get("notes", []):  # what was measured beside the script (cost, caveats)
        lines += [note, ""]
    for label, r in report["runs"].items():
        s = r["summary"]
        t = r["teacher"]
        same = t["used_sha256"] == t["study_sha256"]
        lines += [
            f"## {label}",
            "",
            f"Command: `{r['command']}` on a run of `{r['search_command']}` "
            f"({r['search_wall_seconds'] / 60:.1f} min of trials); {r['hardware']}, "
            f"training on {r['train_threads']} thread(s); full training {r['epochs']} epochs, "
            f"seeds {r['seeds']} "
            f"(front), {r['seeds'][0]} (off front); {r['wall_seconds'] / 60:.0f} min for this "
            f"call (students already trained are reused). Teacher "
            f"{t['used_sha256'][:12]} (test {100 * t['test_accuracy']:.2f}%)"
            + ("" if same else f", not the study's {t['study_sha256'][:12]}")
            + ".",
            "",
            "| ranking by | front | all |",
            "|---|---|---|",
        ]
        for key, name in (
            ("reported", "score the search reported"),
            ("params", "params alone"),
            ("flops", "FLOPs alone"),
            ("naswot", "NASWOT at initialisation"),
        ):
            lines.append(f"| {name} | {_fmt(s['front'][key])} | {_fmt(s['all'][key])} |")
        tau = s["front"]["reported"]["kendall_tau"]
        base = s["front"]["params"]["kendall_tau"]
        met = tau is not None and tau >= 0.8 and (base is None or tau > base)
        lines += [
            "",
            f"n = {s['front']['n']} front points, {s['all']['n']} in all. Target tau >= 0.8 "
            f"over the front, above params alone: {'met' if met else '**missed**'} "
            f"({tau if tau is not None else 'n/a'} vs {base}).",
            "",
            "| params budget | search's pick (full val) | best fully trained (full val) | regret |",
            "|---|---|---|---|",
        ]
        for g in s["regret"]:
            lines.append(
                f"| {g['max_params']:,} | trial {g['picked']} "
                f"({100 * g['picked_full']:.2f}%) | trial {g['best']} "
                f"({100 * g['best_full']:.2f}%) | {100 * g['regret']:.2f} points |"
            )
        regrets = [g["regret"] for g in s["regret"]]
        lines += [
            "",
            f"Mean regret {100 * np.mean(regrets):.2f} points, worst {100 * max(regrets):.2f}.",
            "",
            *_seed_noise(r["students"]),
            "| trial | arch | params | reported (epochs) | full val by seed | test by seed |",
            "|---|---|---|---|---|---|",
        ]
        for row in sorted(r["students"], key=lambda x: -x["full_val_accuracy"]):
            lines.append(
                f"| {row['trial']}{'' if row['on_front'] else ' (off front)'} | {row['arch']} | "
                f"{row['params']:,} | {100 * row['reported_val_accuracy']:.1f}% "
                f"({row['reported_epochs']}) | "
                + ", ".join(f"{100 * v:.1f}%" for v in row["full_val_accuracy_by_seed"])
                + " | "
                + ", ".join(f"{100 * v:.1f}%" for v in row["test_accuracy_by_seed"])
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

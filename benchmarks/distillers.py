"""Benchmark: every distiller at its default hyperparameters on three fixed students.

Trains a small, a medium and a large student from the default space on mnist5k against the
cached default teacher, with each registered loss and 3 seeds, and writes mean +/- std
validation accuracy and seconds per epoch (also as a ratio to plain cross-entropy measured in
the same run) to results/benchmarks/distillers.{json,md}.

With ``--run RUN --trials K,N`` the students are those trials of a finished search instead
(the knee and a larger front point, say), each with its own sampled learning rate and weight
decay, on that run's data, teacher and cached views, and the results go to
``distillers_<label>.{json,md}``; with ``--test`` the test accuracy of every student is
listed too (reported once: nothing is chosen on it).

    python benchmarks/distillers.py [--epochs 5] [--seeds 3] [--out results/benchmarks]
    AUTODISTILL_CACHE=/tmp/vsh/cache python benchmarks/distillers.py \
        --run results/examples/cifar10-12k-default --trials 13,47 --epochs 10 --seeds 2 \
        --label cifar12k --test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from autodistill.cache import cache_key, compute_views, load_views
from autodistill.config import default_cache_dir
from autodistill.data import default_augmentation, load_dataset
from autodistill.families import InputSpec, build_student, get_family
from autodistill.losses import LOSSES
from autodistill.measure import count_params, device_name
from autodistill.recipe import distil, recipe_for
from autodistill.spaces import Candidate
from autodistill.teacher import TeacherRecipe
from autodistill.teacher_store import dataset_fingerprint, prepare_teacher
from autodistill.trainer import evaluate

STUDENTS = {  # fixed points of search_spaces/default.yaml
    "small": (
        "mobilenetv3",
        {
            "stem_stride": 2,
            "width": 0.25,
            "stages": 2,
            "depths": [1, 1],
            "kernels": [3, 5],
            "expansions": [3, 6],
            "head": 128,
        },
    ),
    "medium": ("resnet", {"stem_stride": 2, "depths": [1, 1, 1, 1], "width": 16}),
    "large": ("resnet", {"stem_stride": 2, "depths": [2, 2, 2, 2], "width": 32}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--run", type=Path, help="students from this run's trials (see --trials)")
    p.add_argument("--trials", default="", help="trial numbers of --run, comma-separated")
    p.add_argument("--label", default="", help="results go to distillers_<label>.{json,md}")
    p.add_argument("--test", action="store_true", help="also list test accuracy")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument(
        "--render",
        action="store_true",
        help="only rewrite distillers.md from the measured distillers.json",
    )
    args = p.parse_args()
    name = f"distillers_{args.label}" if args.label else "distillers"
    if args.render:
        saved = json.loads((args.out / f"{name}.json").read_text())
        (args.out / f"{name}.md").write_text(_markdown(saved["meta"], saved["rows"]))
        return
    threads = torch.get_num_threads()
    if args.run:
        data, aug, views, teacher, students = _from_run(args.run, args.trials)
    else:
        data, aug, views, teacher = _mnist(args.views)
        fixed = {"lr": args.lr, "weight_decay": 1e-4}
        students = {k: (f, a, fixed) for k, (f, a) in STUDENTS.items()}
    spec = InputSpec(data.in_chans, data.image_size, data.num_classes)

    rows = []
    for size, (family, arch, train) in students.items():
        for loss in sorted(LOSSES, key=lambda n: (n != "ce", n)):
            accs, tests, secs = [], [], []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                model = build_student(family, arch, spec)
                # Each loss at its defaults, in the trials' own recipe.
                cand = Candidate(family, arch, loss, {}, train)
                cfg = recipe_for(cand, epochs=args.epochs, seed=seed)
                start = time.perf_counter()
                distil(model, cand, cfg, data=data, aug=aug, views=views)
                secs.append((time.perf_counter() - start) / args.epochs)
                accs.append(100 * evaluate(model, data.val, data.stats))
                if args.test:
                    tests.append(100 * evaluate(model, data.test, data.stats))
            rows.append(
                {
                    "student": size,
                    "family": family,
                    "arch": get_family(family).describe(arch),
                    "params": count_params(model),
                    "loss": loss,
                    "val_mean": statistics.mean(accs),
                    "val_std": statistics.stdev(accs),
                    "val_runs": accs,
                    "s_per_epoch": statistics.median(secs),
                }
                | ({"test_mean": statistics.mean(tests), "test_runs": tests} if tests else {})
            )
            print(
                f"{size:6s} {loss:11s} {rows[-1]['val_mean']:6.2f} ± "
                f"{rows[-1]['val_std']:.2f}  {rows[-1]['s_per_epoch']:.2f} s/epoch",
                flush=True,
            )
    for r in rows:
        base = next(b for b in rows if b["student"] == r["student"] and b["loss"] == "ce")
        r["vs_ce_points"] = r["val_mean"] - base["val_mean"]
        r["time_vs_ce"] = r["s_per_epoch"] / base["s_per_epoch"]
        if "test_mean" in r:
            r["test_vs_ce_points"] = r["test_mean"] - base["test_mean"]
    _write(args, name, rows, teacher, threads, data.name)


def _from_run(run_dir: Path, trials: str):
    """A run's data, augmentation, cached views and teacher, and its trials' students."""
    from autodistill.study import Run
    from autodistill.study.results import trial_candidate

    run = Run.open(run_dir)
    prep = run.prepare(other_teacher=True)
    students = {}
    for n in (int(t) for t in trials.split(",") if t):
        cand, _ = trial_candidate(run.study, n, trained=False)
        students[f"#{n}"] = (cand.family, cand.arch, dict(cand.train))
    return prep.data, prep.aug, prep.views, prep.teacher.to_dict(), students


def _mnist(views: int):
    """mnist5k, its default augmentation, the default teacher and its cached views."""
    data = load_dataset("mnist5k")
    aug = default_augmentation(data.name, data.image_size)
    cache = default_cache_dir()
    info, load = prepare_teacher(
        "resnet18",
        data,
        aug,
        cache_dir=cache,
        threads=torch.get_num_threads(),
        recipe=TeacherRecipe(),
    )
    key = cache_key(info.weights_sha256, data.name, dataset_fingerprint(data), "train", aug, views)
    kinds = ("logits", "features", "attention")
    views = load_views(cache, key, kinds) or compute_views(
        load(),
        data.train,
        aug,
        data.stats,
        key=key,
        views=views,
        cache_dir=cache,
        kinds=kinds,
    )
    return data, aug, views, info.to_dict()


def _write(
    args: argparse.Namespace, name: str, rows: list[dict], teacher: dict, threads: int, data: str
) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python " + " ".join(sys.argv),
        "data": data,
        "run": str(args.run) if args.run else None,
        "epochs": args.epochs,
        "seeds": args.seeds,
        "views": args.views,
        "lr": None if args.run else args.lr,
        "teacher": teacher,
        "threads": threads,
        "machine": device_name(torch.device("cpu")),
        "torch": torch.__version__,
    }
    (args.out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / f"{name}.md").write_text(_markdown(meta, rows))


def _markdown(meta: dict, rows: list[dict]) -> str:
    teacher = meta["teacher"]
    tested = all("test_mean" in r for r in rows)
    recipe = (
        f"AdamW lr {meta['lr']}"
        if not meta.get("run")
        else f"each trial's own sampled lr and weight decay (trials of `{meta['run']}`)"
    )
    lines = [
        f"# Distillers at their default hyperparameters ({meta.get('data', 'mnist5k')}; "
        "selected on validation accuracy)",
        "",
        f"Command: `{meta['command']}`  ",
        f"{meta['machine']}. Teacher: {teacher['name']} ({teacher['params']:,} params), val "
        f"{100 * teacher['val_accuracy']:.2f}%. {meta['epochs']} epochs, {recipe}, "
        f"{meta['seeds']} seeds, {meta['views']} cached views, {meta['threads']} threads, torch "
        f"{meta['torch']}.",
        "",
        "| student | params | loss | val acc (%) mean ± std | vs ce (points) | "
        + ("test acc (%) mean | test vs ce | " if tested else "")
        + "s/epoch | time vs ce |",
        "|---|---:|---|---:|---:|" + ("---:|---:|" if tested else "") + "---:|---:|",
    ]
    for r in rows:
        test = f"{r['test_mean']:.2f} | {r['test_vs_ce_points']:+.2f} | " if tested else ""
        lines.append(
            f"| {r['student']} ({r['arch']}) | {r['params']:,} | {r['loss']} | "
            f"{r['val_mean']:.2f} ± {r['val_std']:.2f} | {r['vs_ce_points']:+.2f} | {test}"
            f"{r['s_per_epoch']:.2f} | {r['time_vs_ce']:.2f}x |"
        )
    first = rows[0]["student"]  # the smallest (mnist5k) or the first trial named (the knee)
    small = [r for r in rows if r["student"] == first and r["loss"] != "ce"]
    best = max(small, key=lambda r: r["vs_ce_points"])
    behind = [
        f"{r['student']} {r['loss']} ({r['vs_ce_points']:+.2f})"
        for r in rows
        if r["loss"] != "ce" and r["vs_ce_points"] < 0
    ]
    lines += [
        "",
        "Against the target (every teacher-based loss at least matches ce; the best beats it by",
        f">= 1 point on the {first} student): best on it is {best['loss']} "
        f"({best['vs_ce_points']:+.2f} points of validation accuracy): "
        f"{'met' if best['vs_ce_points'] >= 1 else 'missed'}. Below ce at default settings: "
        + (", ".join(behind) if behind else "none")
        + ".",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

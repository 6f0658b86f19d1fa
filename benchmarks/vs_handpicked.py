"""Benchmark: the searched students against the students a practitioner would pick by hand, on
an image folder (issue 25, item 3).

One search (``--budget`` trials of ``--epochs`` over the ``default`` space), then ``train --top
K`` for ``--train-epochs``; beside it each hand-picked baseline (``BASELINES``), built from the
shipped families, trained with the same recipe for the same epochs, with the default
distillation loss (``kd``, T 4, alpha 0.9) from the same cached teacher and without it (``ce``).
Every student is then timed in one ONNX Runtime session, side by side with the study's
reference in rotated passes (ratios as medians of per-pass ratios), and tested once.

Every piece is its own run directory under ``--work`` and resumes: run the same command again
and finished searches and fully trained students are read back, not redone. ``--pieces`` runs
some of them (a CPU protocol may spread them over sessions; each is well under 2 h here).
``--ablations`` adds the same search with random sampling, and with the distillation losses taken
out of the space (their fronts are compared as the search ranks them, brief).

    python benchmarks/vs_handpicked.py ../shared/data/cifar10-jpeg --protocol cpu
    python benchmarks/vs_handpicked.py ../shared/data/cifar10-jpeg --protocol full --threads 0

(``--protocol cpu`` is ``--per-class 1000 --test-per-class 200 --teacher-epochs 15 --budget 50
--epochs 2 --train-epochs 10 --top 6``; any flag given overrides it.)

Writes ``vs_handpicked.{json,md,png}`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

import autodistill
from autodistill.families import InputSpec
from autodistill.measure import device_name
from autodistill.reference import Reference
from autodistill.spaces import SPACES_DIR
from autodistill.study import Run, latency_reference

KD = {"temperature": 4.0, "alpha": 0.9}  # Hinton's soft targets as most recipes set them
LOSSES = {"kd": KD, "ce": {}}
CORE_PIECES = ("search", "train", "baselines", "time")
PROTOCOLS = {
    # Each piece well under 2 h on the 2-core CPU: a 12,000-image subset (1,000 train and 200
    # test a class), the teacher 15 epochs, trials 2 epochs, full training 10.
    "cpu": {
        "per_class": 1000,
        "test_per_class": 200,
        "teacher_epochs": 15,
        "budget": 50,
        "epochs": 2,
        "train_epochs": 10,
        "top": 6,
    },
    # All 45,000 training images, the teacher 60 epochs, trials 5, full training 100: hours of
    # a GPU (more than a device check's lease).
    "full": {"teacher_epochs": 60, "budget": 50, "epochs": 5, "train_epochs": 100, "top": 6},
}


@dataclass(frozen=True)
class Baseline:
    """A student picked by hand: a point of a shipped family, its recipe, and why."""

    family: str
    arch: dict[str, Any]
    why: str
    train: dict[str, float] = field(default_factory=lambda: {"lr": 0.005, "weight_decay": 0.01})


BASELINES = {
    "resnet8": Baseline(
        "resnet",
        {"stem_stride": 1, "depths": 1, "width": 8},
        "ResNet-8 class: MLPerf Tiny's CIFAR-10 reference (about 78 k params); one basic block "
        "a stage, widths 8-16-32-64: 78,002 params",
    ),
    "resnet20": Baseline(
        "resnet",
        {"stem_stride": 1, "depths": 3, "width": 8},
        "ResNet-20 class: the CIFAR ResNet of the distillation papers (0.27 M params); three "
        "blocks a stage: 274,802 params",
    ),
    "mbv3_050": Baseline(
        "mobilenetv3",
        {
            "stem_stride": 1,
            "width": 0.5,
            "stages": 3,
            "depths": 2,
            "kernels": 3,
            "expansions": 4,
            "head": 512,
        },
        "MobileNetV3-small-like at width 0.5: the mobile default, as small as it is usually "
        "taken; full resolution stem for 32 px",
    ),
    "mbv3_100": Baseline(
        "mobilenetv3",
        {
            "stem_stride": 1,
            "width": 1.0,
            "stages": 3,
            "depths": 2,
            "kernels": 3,
            "expansions": 4,
            "head": 512,
        },
        "the same MobileNetV3-small-like at width 1.0",
    ),
    "convnext": Baseline(
        "convnext",
        {"patch_size": 2, "depths": 2, "width": 24, "kernel": 7},
        "ConvNeXt-atto-like, scaled to 32 px: a 2 px patch stem, two blocks a stage, widths "
        "24-48-96-192, 7x7 depthwise kernels",
    ),
    "vit": Baseline(
        "vit",
        {"patch_size": 4, "depth": 4, "heads": 3, "head_dim": 32, "mlp_ratio": 2},
        "a small ViT (ViT-tiny's shape scaled down): 4 px patches (64 tokens at 32 px), 4 "
        "blocks, 3 heads of 32",
        {"lr": 0.003, "weight_decay": 0.05},
    ),
}


def make_subset(source: Path, dest: Path, per_class: int, test_per_class: int) -> Path:
    """``dest``: the first files of each class folder of ``source`` (by name), as links."""
    for split, n in (("train", per_class), ("test", test_per_class)):
        for cls in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            out = dest / split / cls.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:n]:
                link = out / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    return dest


def baseline_space(name: str, loss: str, path: Path) -> Path:
    """A space of one point: the baseline, its loss, its recipe."""
    b = BASELINES[name]
    doc = {
        "description": f"hand-picked baseline {name} with {loss} (benchmarks/vs_handpicked.py)",
        "families": {b.family: b.arch},
        "distill": {loss: LOSSES[loss]},
        "train": b.train,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Costs:
    """CPU seconds (this process and its workers) and wall seconds of each piece, kept in a
    file so a resumed benchmark adds to what earlier invocations spent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spent: dict[str, dict[str, float]] = (
            json.loads(path.read_text()) if path.is_file() else {}
        )

    def run(self, key: str, work: Callable[..., Any], **kwargs: Any) -> Any:
        """``work(**kwargs)``, its cost added to ``key``'s."""
        before, wall = _cpu_seconds(), time.perf_counter()
        out = work(**kwargs)
        entry = self.spent.setdefault(key, {"cpu_s": 0.0, "wall_s": 0.0})
        entry["cpu_s"] += _cpu_seconds() - before
        entry["wall_s"] += time.perf_counter() - wall
        self.path.write_text(json.dumps(self.spent, indent=2))
        return out

    def hours(self, prefix: str) -> float:
        return sum(v["cpu_s"] for k, v in self.spent.items() if k.startswith(prefix)) / 3600


class TreeCPU:
    """CPU seconds of this process and every process under it (training and search workers
    start from a fork server, so ``os.times`` never counts them): each descendant's figure is
    read from /proc every ``every`` seconds and its last reading kept."""

    def __init__(self, every: float = 0.5) -> None:
        self.seen: dict[int, float] = {}
        self.tick = os.sysconf("SC_CLK_TCK")
        threading.Thread(target=self._poll, args=(every,), daemon=True).start()

    def _poll(self, every: float) -> None:
        while True:
            self.read()
            time.sleep(every)

    def read(self) -> None:
        parents: dict[int, int] = {}
        times: dict[int, float] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(stat.parent.name)
            parents[pid] = int(fields[1])
            times[pid] = (int(fields[11]) + int(fields[12])) / self.tick
        me = os.getpid()

        def below_me(pid: int) -> bool:
            up = parents.get(pid, 0)
            while up > 1:
                if up == me:
                    return True
                up = parents.get(up, 0)
            return False

        for pid in filter(below_me, parents):
            self.seen[pid] = max(self.seen.get(pid, 0.0), times[pid])

    def seconds(self) -> float:
        self.read()
        t = os.times()
        return t.user + t.system + sum(self.seen.values())


_CPU: list[TreeCPU] = []  # started by the first piece timed, not on import


def _cpu_seconds() -> float:
    if not _CPU:
        _CPU.append(TreeCPU())
    return _CPU[0].seconds()


def search_options(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    return {
        "data": f"imagefolder:{data}",
        "teacher": args.teacher,
        "teacher_epochs": args.teacher_epochs,
        "threads": args.threads,
        "seed": args.seed,
        "out": str(args.work / "runs"),
    }


def students(outcome) -> list[dict[str, Any]]:
    keep = ("trial", "arch", "family", "loss", "params", "test_accuracy", "val_accuracy")
    return [{k: s.get(k) for k in keep} for s in outcome.students]


def time_side_by_side(runs: dict[str, tuple[Path, int]], searched: Path) -> dict[str, dict]:
    """Every student in one session of the searched run's target, beside its reference."""
    run = Run.open(searched)
    quiet = latency_reference(run.study)["quiet_ms"]
    models = {i: autodistill.load_student(d, t) for i, (d, t) in enumerate(runs.values())}
    data = run.prepare().data
    ref = Reference(
        run.config.latency_target, InputSpec(data.in_chans, data.image_size, data.num_classes)
    )
    timed = ref.side_by_side(models, quiet)
    return {key: timed[i] for i, key in enumerate(runs)}


def no_kd_space(work: Path) -> Path:
    """The default space with its distillation losses taken out: ``ce`` only."""
    doc = yaml.safe_load((SPACES_DIR / "default.yaml").read_text())
    doc["description"] = "the default space without distillation (ce only)"
    doc["distill"] = {"ce": {}}
    path = work / "spaces" / "no_kd.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def best_brief_at(trials, latency: float) -> float | None:
    """The best validation accuracy a search found (brief) at or below ``latency``."""
    done = trials[(trials["state"] == "COMPLETE") & (trials["latency_ms"] <= latency)]
    return float(done["val_accuracy"].max()) if not done.empty else None


def dominated(base: dict, searched: list[dict], margin: float) -> dict | None:
    """The most accurate searched student at no more than ``base``'s latency and params with at
    least its test accuracy + ``margin``; None if there is none."""
    ok = [
        s
        for s in searched
        if s["latency_ms"] <= base["latency_ms"]
        and s["params"] <= base["params"]
        and s["test_accuracy"] >= base["test_accuracy"] + margin
    ]
    return max(ok, key=lambda s: s["test_accuracy"]) if ok else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="an image folder (train/, test/)")
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="cpu: what this 2-core machine affords; full: all the data, long training (a GPU)",
    )
    p.add_argument("--per-class", type=int, help="use the first N train/ images of each class")
    p.add_argument("--test-per-class", type=int, help="and the first N test/ images of each")
    p.add_argument("--teacher", default="resnet18")
    p.add_argument("--teacher-epochs", type=int, default=15)
    p.add_argument("--budget", type=int, default=50)
    p.add_argument("--epochs", type=int, default=2, help="brief epochs of a search trial")
    p.add_argument("--train-epochs", type=int, default=10, help="full training, both sides")
    p.add_argument("--top", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baselines", default=",".join(BASELINES))
    p.add_argument("--pieces", default=",".join(CORE_PIECES))
    p.add_argument("--ablations", action="store_true", help="also random sampling, and no KD")
    p.add_argument("--work", type=Path, default=Path("/tmp/autodistill-vs_handpicked"))
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    chosen, _ = p.parse_known_args()
    if chosen.protocol:
        p.set_defaults(**PROTOCOLS[chosen.protocol])
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    args = p.parse_args()
    if args.markdown_only:
        write_markdown(json.loads((args.out / "vs_handpicked.json").read_text()), args.out)
        return 0
    if not (args.data / "train").is_dir() or not (args.data / "test").is_dir():
        print(f"vs_handpicked: {args.data}/train or /test not found; give an image folder")
        return 2
    os.environ.setdefault("AUTODISTILL_CACHE", str(args.work / "cache"))  # one teacher, cached
    data = args.data
    if args.per_class or args.test_per_class:
        data = make_subset(
            args.data, args.work / "data", args.per_class or 10**9, args.test_per_class or 10**9
        )
    pieces = set(args.pieces.split(","))
    names = [n for n in args.baselines.split(",") if n]
    costs = Costs(args.work / "costs.json")
    common = search_options(args, data)
    runs = args.work / "runs"
    brief = {"budget": args.budget, "epochs": args.epochs}

    def search(name: str, **extra: Any):
        return costs.run(
            f"search:{name}",
            lambda: autodistill.search(**common, **brief, study_name=name, **extra),
        )

    doc: dict[str, Any] = {"command": " ".join(["python", *sys.argv])}
    searched_dir = runs / "searched"
    if "search" in pieces:
        search("searched", space="default")
    if "train" in pieces:
        outcome = costs.run(
            "train:searched",
            lambda: autodistill.train(searched_dir, top=args.top, epochs=args.train_epochs),
        )
        doc["searched"] = {"students": students(outcome), "kendall_tau": outcome.kendall_tau}
    if "baselines" in pieces:
        doc["baselines"] = {}
        for name in names:
            for loss in LOSSES:
                key = f"{name}-{loss}"
                space = baseline_space(name, loss, args.work / "spaces" / f"{key}.yaml")
                costs.run(
                    f"brief:{key}",
                    autodistill.search,
                    **common,
                    space=str(space),
                    budget=1,
                    epochs=args.epochs,  # as the searched trials (its figures are not used)
                    study_name=key,
                )
                outcome = costs.run(
                    f"baseline:{key}",
                    autodistill.train,
                    run_dir=runs / key,
                    trial=0,
                    epochs=args.train_epochs,
                )
                doc["baselines"][key] = students(outcome)[0]
    if args.ablations:  # the same budget: TPE against random sampling, and without KD
        doc["ablation_trials"] = {
            "tpe": search("searched", space="default").trials,
            "random": search("random", space="default", sampler="random").trials,
            "no_kd": search("no_kd", space=str(no_kd_space(args.work))).trials,
        }
    if "time" in pieces and "searched" in doc and "baselines" in doc:
        which = {f"searched-{s['trial']}": (searched_dir, s["trial"]) for s in searched(doc)}
        which |= {key: (runs / key, 0) for key in doc["baselines"]}
        doc["timed"] = costs.run("time", lambda: time_side_by_side(which, searched_dir))
    doc["costs"] = costs.spent
    doc["host"] = device_name(torch.device("cpu"))
    report(doc, args, costs)
    print((args.out / "vs_handpicked.md").read_text())
    return 0


def searched(doc: dict) -> list[dict]:
    return doc["searched"]["students"]


def rows(doc: dict) -> list[dict]:
    """Every fully trained student with its side-by-side latency: searched first."""
    timed = doc.get("timed", {})
    out = [{"key": f"searched-{s['trial']}", "side": "searched", **s} for s in searched(doc)]
    out += [{"key": k, "side": "baseline", **s} for k, s in doc.get("baselines", {}).items()]
    for r in out:
        r["latency_ms"] = timed.get(r["key"], {}).get("latency_ms")
        r["disturbed"] = timed.get(r["key"], {}).get("disturbed", False)
    return out


def verdicts(table: list[dict], names: list[str], margin: float = 0.01) -> list[dict]:
    """Per baseline (the better of its kd and ce students): the searched student that
    dominates it by ``margin``, if any; and what kd added to it."""
    by_key = {r["key"]: r for r in table}
    found = [r for r in table if r["side"] == "searched" and r["latency_ms"] is not None]
    out = []
    for name in names:
        pair = [by_key[f"{name}-{loss}"] for loss in LOSSES if f"{name}-{loss}" in by_key]
        if not pair or any(r["latency_ms"] is None for r in pair):
            continue
        best = max(pair, key=lambda r: r["test_accuracy"])
        winner = dominated(best, found, margin)
        kd, ce = by_key.get(f"{name}-kd"), by_key.get(f"{name}-ce")
        out.append(
            {
                "baseline": name,
                "best": best["key"],
                "test_accuracy": best["test_accuracy"],
                "latency_ms": best["latency_ms"],
                "params": best["params"],
                "kd_gain": kd["test_accuracy"] - ce["test_accuracy"] if kd and ce else None,
                "dominated_by": winner["key"] if winner else None,
                "lead": winner["test_accuracy"] - best["test_accuracy"] if winner else None,
            }
        )
    return out


def ablation_table(doc: dict, table: list[dict]) -> list[dict]:
    """At each baseline's latency: the best brief validation accuracy each search found."""
    trials = doc.get("ablation_trials")
    if not trials:
        return []
    marks = sorted({r["latency_ms"] for r in table if r["side"] == "baseline" and r["latency_ms"]})
    return [
        {"latency_ms": m, **{name: best_brief_at(t, m) for name, t in trials.items()}}
        for m in marks
    ]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def report(doc: dict, args: argparse.Namespace, costs: Costs) -> None:
    """``vs_handpicked.{json,md,png}``: the table, the verdicts, the costs, the plot."""
    table = rows(doc) if "searched" in doc else []
    names = [n for n in args.baselines.split(",") if n]
    doc["table"] = table
    doc["verdicts"] = verdicts(table, names)
    doc["ablations"] = ablation_table(doc, table)
    doc["settings"] = {
        k: getattr(args, k)
        for k in ("threads", "budget", "epochs", "top", "teacher", "teacher_epochs")
    } | {"train_epochs": args.train_epochs}
    teacher = args.work / "runs" / "searched" / "teacher.json"
    if teacher.is_file():
        t = json.loads(teacher.read_text())
        doc["teacher"] = {k: t.get(k) for k in ("name", "params", "val_accuracy", "test_accuracy")}
    doc["cpu_hours"] = {
        "search": costs.hours("search:searched"),
        "train_searched": costs.hours("train:searched"),
        "baselines": costs.hours("baseline:"),
        "baseline_brief_trials": costs.hours("brief:"),
        "ablations": costs.hours("search:random") + costs.hours("search:no_kd"),
        "timing": costs.hours("time"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    dump = {k: v for k, v in doc.items() if k != "ablation_trials"}
    (args.out / "vs_handpicked.json").write_text(json.dumps(dump, indent=2, default=str))
    write_markdown(dump, args.out)
    if table and all(r["latency_ms"] for r in table):
        plot(table, args.out / "vs_handpicked.png")


def write_markdown(doc: dict, out: Path) -> None:
    """``vs_handpicked.md`` from what ``vs_handpicked.json`` holds."""
    h, a, table = doc["cpu_hours"], doc["settings"], doc["table"]
    t = doc.get("teacher") or {}
    teacher = (
        f"{t['name']} ({a['teacher_epochs']} epochs: {_pct(t['val_accuracy'])} validation, "
        f"{_pct(t['test_accuracy'])} test)"
        if t
        else f"{a['teacher']} ({a['teacher_epochs']} epochs)"
    )
    lines = [
        "# Searched students against hand-picked ones",
        "",
        f"`{doc['command']}` on {doc['host']}, {a['threads']} threads. Search: {a['budget']} "
        f"trials of {a['epochs']} epochs over the `default` space; the top {a['top']} of its "
        f"front and every baseline fully trained for {a['train_epochs']} epochs with the same "
        f"recipe (the trial's own, AdamW one cycle) against the same cached teacher "
        f"{teacher}; baselines with `kd` (T 4, alpha 0.9) "
        "and with `ce`. Latency: every student in one ONNX Runtime session, side by side with "
        "the study's reference (rotated passes, medians of per-pass ratios, scaled to its quiet "
        "figure). Test split read once per student. Accuracies on the JPEG copy run a little "
        "below raw CIFAR-10's.",
        "",
        "| student | side | arch | loss | params | latency ms | val | test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(table, key=lambda r: r["latency_ms"] or 0):
        flag = "*" if r["disturbed"] else ""
        lines.append(
            f"| {r['key']} | {r['side']} | {r['arch']} | {r['loss']} | {r['params']:,} | "
            f"{r['latency_ms']}{flag} | {_pct(r['val_accuracy'])} | {_pct(r['test_accuracy'])} |"
        )
    lines += [
        "",
        "Each baseline (the better of its `kd` and `ce` students) against the searched "
        "students (target: one at no more latency and params with at least +1.0 point of test "
        "accuracy):",
        "",
        "| baseline | its best | test | latency ms | params | kd - ce | dominated by | lead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in doc["verdicts"]:
        gain = "-" if v["kd_gain"] is None else f"{100 * v['kd_gain']:+.2f}"
        lead = "-" if v["lead"] is None else f"{100 * v['lead']:+.2f}"
        lines.append(
            f"| {v['baseline']} | {v['best']} | {_pct(v['test_accuracy'])} | {v['latency_ms']} | "
            f"{v['params']:,} | {gain} | {v['dominated_by'] or '**none**'} | {lead} |"
        )
    beaten = sum(v["dominated_by"] is not None for v in doc["verdicts"])
    lines += [
        "",
        f"**{beaten} of {len(doc['verdicts'])} baselines dominated** "
        f"({'met' if doc['verdicts'] and beaten == len(doc['verdicts']) else 'missed'}).",
        "",
        f"CPU hours: the search {h['search']:.2f} (the teacher included), fully training its "
        f"top {a['top']} {h['train_searched']:.2f}; the baselines' full training "
        f"{h['baselines']:.2f} (plus {h['baseline_brief_trials']:.2f} for the one brief trial "
        f"each baseline run makes); timing {h['timing']:.3f}.",
    ]
    if doc["ablations"]:
        lines += [
            "",
            f"The search against its ablations, the same budget ({h['ablations']:.2f} CPU h): "
            "the best validation accuracy (brief) each found at or below each baseline's "
            "latency:",
            "",
            "| latency ms | TPE (default) | random sampling | without KD |",
            "|---|---|---|---|",
        ]
        for row in doc["ablations"]:
            lines.append(
                f"| {row['latency_ms']} | {_pct(row['tpe'])} | {_pct(row['random'])} | "
                f"{_pct(row['no_kd'])} |"
            )
    tau = (doc.get("searched") or {}).get("kendall_tau")
    if tau is not None:
        lines += [
            "",
            f"Brief ranking against full training over the {a['top']} trained front students "
            f"(validation, Kendall tau): {tau:.2f}.",
        ]
    (out / "vs_handpicked.md").write_text("\n".join(lines) + "\n")


def plot(table: list[dict], path: Path) -> None:
    """Test accuracy against latency and against params: searched beside the baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, x, label in (
        (axes[0], "latency_ms", "ONNX Runtime latency (ms)"),
        (axes[1], "params", "params"),
    ):
        for r in table:
            searched_one = r["side"] == "searched"
            ax.scatter(
                r[x],
                100 * r["test_accuracy"],
                marker="o" if searched_one else "s",
                facecolors=(
                    "tab:blue" if searched_one else ("tab:orange" if r["loss"] != "ce" else "none")
                ),
                edgecolors="tab:blue" if searched_one else "tab:orange",
                s=50,
            )
            ax.annotate(
                r["key"].replace("searched-", "#"),
                (r[x], 100 * r["test_accuracy"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title(
        "searched (blue) against hand-picked (orange: kd filled, ce hollow)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: whole searches, as a user runs them, for three figures measured in one run.

Runs ``autodistill search --budget 50`` (mnist5k, default space) several times, one after the
other, each in a fresh run directory, and reads the studies back:

* search quality: hypervolume after 50 trials, TPE (default) vs random sampling, 3 seeds each,
  and the front of five hand-picked timm students trained with the same 3-epoch recipe;
* early stopping: hypervolume against time with and without the rung early stopping (seed 0);
* end to end: wall time of the default command with the teacher cached, and from an empty cache.

Hypervolume uses fixed bounds (error 0..1, log10 params 3..8, log10 latency -2..3, each mapped to
0..1, reference point the worst corner; ``autodistill.search.hypervolume``), so runs compare.
Writes results/benchmarks/{search_quality,early_stopping,end_to_end}.{json,md}.

    python benchmarks/search_runs.py [--budget 50] [--seeds 3] [--skip-cold]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from autodistill import study as search
from autodistill.config import SearchConfig
from autodistill.measure import device_name
from autodistill.objectives import DEFAULT
from autodistill.prepare import prepare
from autodistill.spaces import Candidate, load_space
from autodistill.study.candidate import TrialContext, measure_candidate, train_candidate

HAND_PICKED = [  # five timm students a user might try by hand, all with default KD
    ("resnet", {"stem_stride": 1, "depths": [2, 2, 2, 2], "width": 32}),  # ResNet-18 layout
    ("resnet", {"stem_stride": 2, "depths": [1, 1, 1, 1], "width": 16}),  # ResNet-10, narrow
    (
        "mobilenetv3",
        {
            "stem_stride": 1,
            "width": 1.0,
            "stages": 3,
            "depths": [1, 2, 2],
            "kernels": [3, 3, 5],
            "expansions": [4, 4, 6],
            "head": 512,
        },
    ),  # large-ish
    (
        "mobilenetv3",
        {
            "stem_stride": 2,
            "width": 0.5,
            "stages": 2,
            "depths": [1, 1],
            "kernels": [3, 3],
            "expansions": [3, 6],
            "head": 256,
        },
    ),  # small-ish
    ("convnext", {"patch_size": 1, "depths": [1, 1, 1, 1], "width": 16, "kernel": 7}),
]
DEFAULT_KD = {"temperature": 4.0, "alpha": 0.9}


def run_search(name: str, out: Path, budget: int, *args: str) -> dict:
    """One ``autodistill search`` as a user runs it; wall and CPU seconds, and its trials."""
    cmd = [
        sys.executable,
        "-m",
        "autodistill.cli",
        "search",
        "--budget",
        str(budget),
        "--quiet",
        "--out",
        str(out),
        "--study-name",
        name,
        *args,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return read_run(name, out, list(args), wall, cpu)


def read_run(name: str, out: Path, args: list[str], wall: float, cpu: float | None) -> dict:
    """A finished run's trials, read back from its study."""
    storage = search.open_storage(None, out / name)
    study = optuna.load_study(study_name=name, storage=storage)
    start = min(t.datetime_start for t in study.trials if t.datetime_start)
    trials = []
    for t in sorted(study.trials, key=lambda t: t.number):
        trials.append(
            {
                "number": t.number,
                "state": t.state.name,
                "values": [t.user_attrs[n] for n in DEFAULT]
                if t.state.name == "COMPLETE"
                else None,
                "done_s": (t.datetime_complete - start).total_seconds()
                if t.datetime_complete
                else None,
                "stopped": "stopped" in t.user_attrs,
                "infeasible": "infeasible" in t.user_attrs,
            }
        )
    done = np.array([t["values"] for t in trials if t["values"]])
    print(f"{name}: {wall:.0f} s, hv {search.hypervolume(done, DEFAULT):.4f}", file=sys.stderr)
    return {
        "name": name,
        "args": args,
        "wall_s": round(wall, 1),
        "cpu_s": None if cpu is None else round(cpu, 1),
        "hypervolume": round(search.hypervolume(done, DEFAULT), 5),
        "trials": trials,
        "stopped": sum(t["stopped"] for t in trials),
    }


def hv_curve(run: dict) -> list[tuple[float, float]]:
    """(seconds since the first trial started, hypervolume of what completed by then)."""
    seen, out = [], []
    for t in sorted(
        (t for t in run["trials"] if t["done_s"] is not None), key=lambda t: t["done_s"]
    ):
        if t["values"]:
            seen.append(t["values"])
        out.append((t["done_s"], search.hypervolume(np.array(seen), DEFAULT) if seen else 0.0))
    return out


def hand_picked(epochs: int) -> dict:
    """Train the five hand-picked students with the trial recipe; their front's hypervolume."""
    config = SearchConfig()
    prep = prepare(config, ("logits",))
    ctx = TrialContext(
        data=prep.data, aug=prep.aug, views=prep.views, epochs=epochs, seed=config.seed
    )
    rows = []
    for family, arch in HAND_PICKED:
        cand = Candidate(
            family=family, arch=arch, loss="kd", distill=DEFAULT_KD, train={"lr": 5e-3}
        )
        model, cost = measure_candidate(cand, ctx)
        trained = train_candidate(model, cand, ctx)
        rows.append({"arch": cost.arch, **cost.values, **trained.values})
        print(rows[-1], file=sys.stderr)
    values = np.array([[r[n] for n in DEFAULT] for r in rows])
    return {"students": rows, "hypervolume": round(search.hypervolume(values, DEFAULT), 5)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--skip-cold", action="store_true", help="no run from an empty cache")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    p.add_argument(
        "--recover",
        type=Path,
        metavar="WORK_DIR",
        help="reuse the finished runs of an interrupted invocation from its work dir "
        "(wall times from its runs.jsonl)",
    )
    args = p.parse_args()
    if args.render:
        raw = json.loads((args.out / "search_runs.json").read_text())
        _write(args.out, raw)
        return
    work = args.recover or Path(tempfile.mkdtemp(prefix="autodistill-search-runs-"))
    prepare(SearchConfig(), load_space("default").teacher_outputs())  # cached
    done = {}
    log = work / "runs.jsonl"  # each finished run, so an interrupted invocation can resume
    if log.is_file():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[r["name"]] = read_run(r["name"], work, r["args"], r["wall_s"], r["cpu_s"])
    plan = [("tpe-0", ["--seed", "0"]), ("tpe-0-no-early-stop", ["--seed", "0", "--no-early-stop"])]
    for seed in range(args.seeds):
        if seed:
            plan.append((f"tpe-{seed}", ["--seed", str(seed)]))
        plan.append((f"random-{seed}", ["--seed", str(seed), "--sampler", "random"]))
    if not args.skip_cold:
        cold_cache = Path(tempfile.mkdtemp(prefix="autodistill-cold-cache-"))
        plan.append(("cold", ["--seed", "0", "--cache-dir", str(cold_cache)]))
    runs = {}
    picked = None
    for name, run_args in plan:
        if name == "cold":  # after the cached runs; the hand-picked students use that teacher
            picked = hand_picked(SearchConfig().epochs)
        if name not in done:
            done[name] = run_search(name, work, args.budget, *run_args)
            with log.open("a") as f:
                f.write(
                    json.dumps({k: done[name][k] for k in ("name", "args", "wall_s", "cpu_s")})
                    + "\n"
                )
        runs[name] = done[name]
    picked = picked or hand_picked(SearchConfig().epochs)
    raw = {
        "meta": {
            "command": "python benchmarks/search_runs.py " + " ".join(sys.argv[1:]),
            "device": device_name(__import__("torch").device("cpu")),
            "cores": os.cpu_count(),
            "budget": args.budget,
            "date": time.strftime("%Y-%m-%d"),
        },
        "runs": runs,
        "hand_picked": picked,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_runs.json").write_text(json.dumps(raw, indent=1))
    _write(args.out, raw)


def _write(out: Path, raw: dict) -> None:
    m, runs = raw["meta"], raw["runs"]
    head = f"`{m['command']}`: {m['device']}, {m['cores']} cores, {m['date']}."
    # Search quality.
    tpe = [
        r["hypervolume"] for k, r in runs.items() if k.startswith("tpe-") and "no-early" not in k
    ]
    rnd = [r["hypervolume"] for k, r in runs.items() if k.startswith("random-")]
    picked = raw["hand_picked"]["hypervolume"]
    quality = {
        "tpe": tpe,
        "random": rnd,
        "tpe_mean": float(np.mean(tpe)),
        "random_mean": float(np.mean(rnd)),
        "tpe_over_random": round(float(np.mean(tpe) / np.mean(rnd)), 3),
        "hand_picked": picked,
        "hand_picked_students": raw["hand_picked"]["students"],
    }
    md = [
        f"# Search quality: hypervolume after {m['budget']} trials",
        "",
        head,
        "",
        "| sampler | hypervolume per seed | mean |",
        "|---|---|---|",
        f"| TPE (default) | {', '.join(f'{v:.4f}' for v in tpe)} | {np.mean(tpe):.4f} |",
        f"| random | {', '.join(f'{v:.4f}' for v in rnd)} | {np.mean(rnd):.4f} |",
        f"| 5 hand-picked students, same recipe | | {picked:.4f} |",
        "",
        f"TPE / random = **{quality['tpe_over_random']:.3f}x** on the mean.",
    ]
    _save(out, "search_quality", {"meta": m, **quality}, md)
    # Early stopping: the time the run with it takes to reach the final hypervolume of the run
    # without it.
    on, off = runs["tpe-0"], runs["tpe-0-no-early-stop"]
    target = off["hypervolume"]
    curve = hv_curve(on)
    reach = next((s for s, hv in curve if hv >= target - 1e-9), None)
    last_off = max(t["done_s"] for t in off["trials"] if t["done_s"] is not None)
    last_on = max(t["done_s"] for t in on["trials"] if t["done_s"] is not None)
    es = {
        "hv_with": on["hypervolume"],
        "hv_without": target,
        "stopped": on["stopped"],
        "trial_s_with": round(last_on, 1),
        "trial_s_without": round(last_off, 1),
        "cpu_s_with": on["cpu_s"],
        "cpu_s_without": off["cpu_s"],
        "time_ratio": round(on["cpu_s"] / off["cpu_s"], 3)
        if on["cpu_s"] and off["cpu_s"]
        else round(last_on / last_off, 3),
        "seconds_to_reach_hv_without": None if reach is None else round(reach, 1),
    }
    md = [
        "# Early stopping at epoch rungs (three objectives)",
        "",
        head,
        "",
        "| | trials stopped | hypervolume | CPU s (whole run) | s of trials |",
        "|---|---|---|---|---|",
        f"| without | 0 | {target:.4f} | {off['cpu_s'] or '-'} | {last_off:.0f} |",
        f"| with (default) | {on['stopped']} | {on['hypervolume']:.4f} | {on['cpu_s'] or '-'} | "
        f"{last_on:.0f} |",
        "",
        f"Time with / without: **{es['time_ratio']:.2f}x** (CPU seconds where recorded, else "
        f"seconds of trials: one process, fixed threads); hypervolume with / without: "
        f"**{on['hypervolume'] / target:.3f}x**.",
    ]
    if reach is not None:
        md.append(
            f"The run with early stopping reached the final hypervolume of the run "
            f"without it after {reach:.0f} s of trials ({reach / last_off:.0%} of its "
            "time)."
        )
    _save(out, "early_stopping", {"meta": m, **es}, md)
    # End to end.
    others = {
        k: r["wall_s"] for k, r in runs.items() if k.startswith("tpe-") and "no-early" not in k
    }
    e2e = {"cached_wall_s": on["wall_s"], "cached_wall_s_other_seeds": others}
    md = [
        f"# End to end: `autodistill search --budget {m['budget']}`",
        "",
        head,
        "",
        "| teacher | wall time |",
        "|---|---|",
        f"| cached (default command, seed 0) | {on['wall_s'] / 60:.1f} min "
        f"({on['wall_s']:.0f} s) |",
        f"| cached, the same command with seeds {', '.join(k[4:] for k in others)} | "
        + ", ".join(f"{v / 60:.1f} min" for v in others.values())
        + " |",
    ]
    if "cold" in runs:
        e2e["cold_wall_s"] = runs["cold"]["wall_s"]
        cold = runs["cold"]["wall_s"]
        md.append(
            f"| empty cache (teacher trained, outputs cached) | {cold / 60:.1f} min "
            f"({cold:.0f} s) |"
        )
    _save(out, "end_to_end", {"meta": m, **e2e}, md)


def _save(out: Path, name: str, doc: dict, md: list[str]) -> None:
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2))
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md) + "\n")


if __name__ == "__main__":
    main()

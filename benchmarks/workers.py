"""Benchmark: one search budget run by one worker, by --jobs 2, and by workers on PostgreSQL.

Each setting runs ``autodistill search`` as a user would, on mnist5k with the default teacher
already cached (so only trials are timed), each in its own study, one after the other in this
one run; throughput is reported as trials per minute and as a ratio to the single worker.
With ``--kill`` the PostgreSQL setting also SIGKILLs one worker mid-trial and checks that the
study still ends with exactly the budget.

    python benchmarks/workers.py [--budget 12] [--postgres URL] [--out results/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

from autodistill import study as search

SEARCH = [sys.executable, "-m", "autodistill.cli", "search", "--quiet"]
FIXED_SPACE = """\
description: one small ResNet; only the learning rate is sampled
families:
  resnet: {stem_stride: 2, depths: 1, width: 16}
distill:
  kd: {temperature: 4.0, alpha: 0.9}
train:
  lr: {low: 0.002, high: 0.02, log: true}
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=12)
    p.add_argument("--space", default=None, help="default: one fixed ResNet, lr sampled")
    p.add_argument("--postgres", default=os.environ.get("AUTODISTILL_TEST_POSTGRES"))
    p.add_argument("--kill", action="store_true", help="kill one database worker mid-trial")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    cores = os.cpu_count() or 1
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="autodistill-workers-"))
    if args.space is None:  # every trial costs the same, so trials per minute compare
        args.space = str(work / "fixed.yaml")
        Path(args.space).write_text(FIXED_SPACE)
    common = [
        "--budget",
        str(args.budget),
        "--space",
        args.space,
        "--out",
        str(work),
        "--no-early-stop",
    ]

    rows = []
    rows.append(_timed("1 worker", [SEARCH + common + ["--study-name", f"one-{tag}"]]))
    rows.append(
        _timed("--jobs 2", [SEARCH + common + ["--study-name", f"jobs-{tag}", "--jobs", "2"]])
    )
    if args.postgres:
        name = f"pg-{tag}"
        cmd = (
            SEARCH
            + common
            + [
                "--study-name",
                name,
                "--storage",
                args.postgres,
                "--threads",
                str(max(1, cores // 2)),
                "--heartbeat",
                "5",
            ]
        )
        rows.append(_timed("2 workers, PostgreSQL", [cmd, cmd], storage=args.postgres, name=name))
        if args.kill:
            cmd = [a if a != name else f"{name}-kill" for a in cmd]
            rows.append(
                _timed(
                    "2 workers, PostgreSQL",
                    [cmd, cmd],
                    kill=True,
                    storage=args.postgres,
                    name=f"{name}-kill",
                )
            )
    base = rows[0]["trials_per_min"]
    for r in rows:
        r["throughput_ratio"] = round(r["trials_per_min"] / base, 2)
    meta = {
        "command": "python benchmarks/workers.py " + " ".join(sys.argv[1:]),
        "budget": args.budget,
        "space": args.space,
        "data": "mnist5k (teacher cached beforehand)",
        "cpu": platform.processor() or platform.machine(),
        "cores": cores,
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "workers.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "workers.md").write_text(_markdown(meta, rows))
    print(_markdown(meta, rows))


def _timed(
    label: str, commands: list[list[str]], *, kill: bool = False, storage: str = "", name: str = ""
) -> dict:
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    killed = _kill_one(storage, name, procs) if kill else None
    errors = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - start
    codes = [p.returncode for p in procs]
    ok = [c for c in codes if c == 0]
    if not ok:
        raise SystemExit(f"{label}: every worker failed: {errors}")
    out_dir = Path(commands[0][commands[0].index("--out") + 1])
    study_name = commands[0][commands[0].index("--study-name") + 1]
    trials = _finished(
        storage or str(out_dir / study_name / search.DEFAULT_STORAGE_FILE), study_name
    )
    row = {
        "setting": label,
        "workers": len(commands),
        "exit_codes": codes,
        "finished_trials": trials,
        "seconds": round(seconds, 1),
        "trials_per_min": round(60 * trials / seconds, 2),
    }
    if killed is not None:
        row["killed_trial"] = killed
    return row


def _finished(storage_url: str, name: str) -> int:
    storage = search.open_storage(storage_url, Path("."))
    return search.finished_count(optuna.load_study(study_name=name, storage=storage))


def _kill_one(url: str, name: str, procs: list[subprocess.Popen]) -> int:
    storage = search.open_storage(url, Path("."))
    pids = {p.pid for p in procs}
    while True:
        time.sleep(0.5)
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        except KeyError:
            continue
        for t in trials:
            pid = int(str(t.user_attrs.get("worker") or "x:0").rpartition(":")[2])
            if t.state.name == "RUNNING" and "arch" in t.user_attrs and pid in pids:
                os.kill(pid, signal.SIGKILL)
                return t.number


def _markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        f"# Workers: {meta['budget']} equal trials (one fixed ResNet, lr sampled) on "
        f"{meta['data']}",
        "",
        f"`{meta['command']}` on {meta['cpu']}, {meta['cores']} cores, {meta['date']}.",
        "",
        "Wall time includes starting the processes (importing torch, loading the cached "
        "teacher); with a kill it includes the heartbeat grace (3 x 5 s) before the lost trial "
        "is queued again.",
        "",
        "| setting | finished trials | wall s | trials/min | vs 1 worker |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        note = (
            f", one SIGKILLed in trial {r['killed_trial']}, which another reran"
            if "killed_trial" in r
            else ""
        )
        lines.append(
            f"| {r['setting']}{note} | {r['finished_trials']} | {r['seconds']} | "
            f"{r['trials_per_min']} | {r['throughput_ratio']}x |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""The device check: autodistill's whole GPU path in one command, within 9 minutes.

Run on the GPU machine, in the repository root, with ``benchmarks/device/wheels`` carried
(``benchmarks/device/prepare.sh`` fills it here). It installs those wheels offline into a
target folder, then runs, each step under its own time limit and every output under ``$OUT``:

1. ``tests/test_cuda.py``;
2. a ``--fidelity multi`` search of the ``default`` space (four families, seven losses) under
   ``AUTODISTILL_SYNC_DEBUG=error``, so a training step that waits for the GPU fails its trial;
3. ``--jobs 2`` on one GPU;
4. ``train`` and ``compress --prune 0.5 --qat`` on the GPU;
5. ``benchmarks/gpu.py`` (trial times, kernel share per batch size, budget 50 with the teacher
   cached);

with ``nvidia-smi`` utilisation sampled every second, and prints a short table last.

    python3 benchmarks/device/check.py                 # there ($OUT is set by the device tool)
    python3 benchmarks/device/check.py --out /tmp/dc   # here: stops at its first CUDA step

Only the standard library is imported here: the packages are installed by the check itself.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WHEELS = Path(__file__).resolve().parent / "wheels"
DEADLINE_S = 540  # 9 minutes: a device call may run 10


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    exit: int | str = "not run"
    verdict: str = ""
    gpu_util: float | None = None  # mean nvidia-smi utilisation while it ran, %
    extra: dict = field(default_factory=dict)


class Sampler(threading.Thread):
    """``nvidia-smi`` utilisation and memory once a second, stamped with this clock."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.rows: list[tuple[float, float, float]] = []
        self.path = path
        self.done = threading.Event()

    def run(self) -> None:
        query = [
            "nvidia-smi",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ]
        while not self.done.wait(1.0):
            try:
                got = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                util, mem = (float(v) for v in got.splitlines()[0].split(","))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                continue
            self.rows.append((time.time(), util, mem))

    def mean_between(self, start: float, end: float) -> float | None:
        inside = [u for t, u, _ in self.rows if start <= t <= end]
        return round(sum(inside) / len(inside), 1) if inside else None

    def write(self) -> None:
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["unix_time", "gpu_util_percent", "memory_used_mib"])
            w.writerows(self.rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/autodistill-device-check")
    )
    p.add_argument("--deadline", type=int, default=DEADLINE_S, help="seconds for all steps")
    p.add_argument(
        "--cpu-rehearsal",
        action="store_true",
        help="every step on the CPU at a tiny scale: checks the check here, proves nothing",
    )
    args = p.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    begun = time.time()
    scratch = Path(tempfile.mkdtemp(prefix="autodistill-check-"))
    log = open(out / "log.txt", "w")  # noqa: SIM115 - every step appends to it
    env = _install(scratch, log)
    if not _cuda_here(env, log) and not args.cpu_rehearsal:
        print(
            "device check: no CUDA GPU here (torch.cuda.is_available() is False); nothing of "
            "the check runs without one: run it on the GPU machine (README, 'The GPU path')"
        )
        return 2
    device = "cpu" if args.cpu_rehearsal else "cuda"
    small = args.cpu_rehearsal  # budgets that only prove the steps run
    sampler = Sampler(out / "smi.csv")
    sampler.start()
    runs, cache = scratch / "runs", scratch / "cache"
    common = f"--device {device} --out {runs} --cache-dir {cache} --quiet --teacher-epochs "
    common += "1" if small else "5"
    cli = f"{sys.executable} -m autodistill.cli"
    steps: list[Step] = []

    def left() -> float:
        return args.deadline - (time.time() - begun)

    def run(name: str, cmd: str, limit: float, **extra_env: str) -> Step:
        step = Step(name)
        steps.append(step)
        limit = min(limit * (3 if small else 1), left() - 5)  # a CPU is slower
        if limit < 20:
            step.verdict = "skipped: the check's 9 minutes were spent"
            return step
        print(f"== {name} (at most {limit:.0f} s): {cmd}", file=log, flush=True)
        start = time.time()
        env_here = {**env, **extra_env}
        try:
            done = subprocess.run(
                cmd.split(),
                cwd=REPO,
                env=env_here,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=limit,
            )
            step.exit = done.returncode
        except subprocess.TimeoutExpired:
            step.exit = "timeout"
        step.seconds = round(time.time() - start, 1)
        step.gpu_util = sampler.mean_between(start, time.time())
        return step

    pytest = f"{sys.executable} -m pytest -q -p no:cacheprovider tests/test_cuda.py"
    tests = run("tests/test_cuda.py", pytest, 170)
    tests.verdict = _pytest_summary(out / "log.txt")
    budget = 4 if small else 16  # rungs of 2, 6 and 18 epochs; promotions on top
    multi = run(
        "search of default (4 families, 7 losses), --fidelity multi, sync debug",
        f"{cli} search {common} --budget {budget} --epochs 2 --fidelity multi --study-name multi",
        130,
        AUTODISTILL_SYNC_DEBUG="error",
    )
    multi.verdict = _trials_summary(runs, "multi", out)
    budget = 4 if small else 8
    jobs = run(
        f"search --jobs 2 on one {'CPU' if small else 'GPU'}",
        f"{cli} search {common} --budget {budget} --epochs 1 --jobs 2 --study-name jobs2",
        90,
    )
    jobs.verdict = _trials_summary(runs, "jobs2", None)
    run_dir = _run_dir(runs, "multi")
    epochs = 1 if small else 5
    train = run(
        f"train (knee, {epochs} epochs)",
        f"{cli} train {run_dir} --epochs {epochs} --device {device} --quiet",
        90,
    )
    compress = run(
        "compress --prune 0.5 --qat",
        f"{cli} compress {run_dir} --prune 0.5 --qat --epochs 1 --device {device} --quiet",
        90,
    )
    for step in (train, compress):
        step.verdict = "ok" if step.exit == 0 else step.verdict or "see log.txt"
    scale = "--device cpu --budget 2 --students 1 --batch-sizes 64 --teacher-epochs 1"
    scale = scale if small else "--students 4 --batch-sizes 64,256,1024"
    bench = run(
        "benchmarks/gpu.py",
        f"{sys.executable} benchmarks/gpu.py --out {out} {scale} --searches teacher-cached "
        "--search-timeout 150",
        400,
    )
    bench.verdict = _bench_summary(out / "gpu.json")
    sampler.done.set()
    sampler.join(timeout=5)
    sampler.write()
    table = _table(steps, time.time() - begun)
    (out / "check.md").write_text(table)
    doc = {
        "steps": [s.__dict__ for s in steps],
        "total_s": round(time.time() - begun, 1),
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    (out / "check.json").write_text(json.dumps(doc, indent=2, default=str))
    log.close()
    print(table)
    return 0 if all(s.exit == 0 for s in steps) else 1


def _install(scratch: Path, log) -> dict[str, str]:
    """The carried wheels installed offline into a folder of their own; the environment every
    step runs in (that folder and the repository on the path, a fresh cache)."""
    site = scratch / "site"
    wheels = sorted(glob.glob(str(WHEELS / "*.whl")))
    if wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--no-cache-dir",
                "--target",
                str(site),
                *wheels,
            ],
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    else:
        print(f"device check: no wheels in {WHEELS}; using what is installed", file=log)
    path = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {
        **os.environ,
        "PYTHONPATH": path.rstrip(os.pathsep),
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
        "AUTODISTILL_CACHE": str(scratch / "cache-home"),
    }


def _cuda_here(env: dict[str, str], log) -> bool:
    """The packages import, and torch sees a GPU: the check's first CUDA step."""
    probe = (
        "import autodistill, optuna, torch_pruning, mlxtend, torch; "
        "print(torch.__version__, torch.cuda.is_available() and "
        "torch.cuda.get_device_name(0))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True
    )
    print(done.stdout + done.stderr, file=log, flush=True)
    if done.returncode != 0:
        sys.exit(f"device check: the packages do not import: {done.stderr.strip()[-300:]}")
    return not done.stdout.strip().endswith("False")


def _pytest_summary(log: Path) -> str:
    words = (" passed", " failed", " skipped", " error")
    lines = [ln for ln in log.read_text().splitlines() if any(w in ln for w in words)]
    return lines[-1].strip("= ") if lines else "no summary: see log.txt"


def _run_dir(runs: Path, name: str) -> Path:
    found = [
        Path(p).parent
        for p in glob.glob(str(runs / "*" / "trials.csv"))
        if Path(p).parent.name.endswith(name) or name in Path(p).parent.name
    ]
    return found[0] if found else runs / name


def _trials_summary(runs: Path, name: str, out: Path | None) -> str:
    """States, the families and losses that ran, and trials failed by a synchronisation."""
    path = _run_dir(runs, name) / "trials.csv"
    if not path.is_file():
        return "no trials.csv"
    if out is not None:
        shutil.copy(path, out / f"trials-{name}.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    ran = [r for r in rows if r["state"] not in ("INFEASIBLE",)]
    families = sorted({r.get("family", "") for r in ran} - {""})
    losses = sorted({r.get("loss", "") for r in ran} - {""})
    sync = sum("synchroniz" in (r.get("failure_reason") or "") for r in rows)
    return (
        f"{', '.join(f'{k} {v}' for k, v in sorted(states.items()))}; families "
        f"{'/'.join(families)}; losses {'/'.join(losses)}; failed by a sync: {sync}"
    )


def _bench_summary(path: Path) -> str:
    if not path.is_file():
        return "no gpu.json"
    doc = json.loads(path.read_text())
    searches = ", ".join(
        f"{s['name']} {s['seconds']} s (exit {s['exit']})" for s in doc["searches"]
    )
    shares = [r["kernel_share"].get("64", {}).get("share") for r in doc["students"]]
    shares = [s for s in shares if s is not None]
    low = f"kernel share at batch 64: {min(shares)}-{max(shares)}" if shares else ""
    return f"budget {doc['meta'].get('budget')}: {searches}; {low}".rstrip("; ")


def _table(steps: list[Step], total: float) -> str:
    lines = [
        f"# Device check ({total:.0f} s)",
        "",
        "| step | s | exit | mean GPU util % | verdict |",
        "|---|---|---|---|---|",
    ]
    for s in steps:
        lines.append(f"| {s.name} | {s.seconds} | {s.exit} | {s.gpu_util} | {s.verdict} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

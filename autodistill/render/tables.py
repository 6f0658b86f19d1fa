"""Tables of a run, from its trials frame: the front as text, state counts, and the CSV files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from autodistill.files import atomic_path, write_text_atomic
from autodistill.measure import SPREAD as LATENCY_SPREAD
from autodistill.noise import SPREAD, ties, typical_spread
from autodistill.objectives import OBJECTIVES, get_objective

ACCURACY = "val_accuracy"  # the objective the front is sorted by


def pareto_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The front's rows, most accurate first."""
    if trials.empty:
        return trials
    front = trials[trials["pareto"].astype(bool)].copy()
    return front.sort_values([ACCURACY, "params"], ascending=[False, True])


def reference_text(ref: dict[str, Any], trials: pd.DataFrame) -> str:
    """How the run's latencies were taken: relative to which reference, timed when and where,
    and whether the front was timed again side by side."""
    side = "latency_side_by_side" in trials and bool(
        trials["latency_side_by_side"].fillna(False).astype(bool).any()
    )
    return (
        f"relative to the reference {ref['arch']}, {ref['quiet_ms']:.4f} ms in this "
        f"machine's quietest window seen ({ref['measured_at']}, {ref['target']})"
        + ("; the front timed side by side at the end" if side else "")
    )


def promoted(trials: pd.DataFrame) -> bool:
    """Whether a multi-fidelity search promoted any trial (its scores are of several rungs)."""
    return "promoted_from" in trials and bool(trials["promoted_from"].notna().any())


def front_columns(objectives: tuple[str, ...]) -> list[str]:
    """The study's objectives first, then the other recorded ones."""
    rest = [n for n, o in OBJECTIVES.items() if n not in objectives and o.always]
    return [*objectives, *rest]


def front_table(trials: pd.DataFrame, objectives: tuple[str, ...]) -> str:
    """The front as a fixed-width table for the terminal."""
    shown, note = front_cells(trials, objectives)
    if shown.empty:
        return "(no completed trials yet: the front is empty)"
    return shown.to_string(index=False) + (f"\n{note}" if note else "")


def front_cells(trials: pd.DataFrame, objectives: tuple[str, ...]) -> tuple[pd.DataFrame, str]:
    """The front as text cells, most accurate first, and a footnote (empty if none)."""
    front = pareto_frame(trials)
    if front.empty:
        return pd.DataFrame(), ""
    columns = [c for c in front_columns(objectives) if c in front and front[c].notna().any()]
    shown = front[["number", "family", "arch", "loss", *columns]].copy()
    for name in columns:
        text = get_objective(name).text
        shown[name] = shown[name].map(lambda v, t=text: "" if pd.isna(v) else t(v))
    notes = []
    if promoted(trials):  # multi-fidelity: the epochs behind each score differ
        shown.insert(
            4, "epochs", front["epochs_trained"].map(lambda v: "" if pd.isna(v) else str(int(v)))
        )
    typical = typical_spread(trials)
    if typical is not None:  # seeds measured: say how far apart, and what cannot be told apart
        at = list(shown.columns).index(ACCURACY) + 1 if ACCURACY in shown else len(shown.columns)
        shown.insert(
            at,
            "seed_spread",
            front[SPREAD].map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f} pts"),
        )
        tied = ties(trials)
        shown.insert(
            at + 1,
            "within_noise_of",
            front["number"].map(lambda n: f"#{tied[int(n)]}" if int(n) in tied else ""),
        )
        notes.append(
            f"seed spread: how far a second seed of the candidate landed; within noise "
            f"of #N: no more than the seed spread below trial N, so not worse than it "
            f"(a point trained once is given the mean spread, {100 * typical:.1f} pts, "
            f"measured at promoted rungs: briefly trained points vary more)"
        )
    if "latency_ms" in shown and "latency_disturbed" in front:
        disturbed = front["latency_disturbed"].fillna(False).astype(bool)
        if disturbed.any():
            shown.loc[disturbed, "latency_ms"] = shown.loc[disturbed, "latency_ms"] + "*"
            notes.append(
                f"* latency measured while other work disturbed the machine (its "
                f"rounds still differed by more than {100 * LATENCY_SPREAD:.0f}% when "
                "repeated)"
            )
    names = {n: n.replace("_", " ") for n in [*columns, "seed_spread", "within_noise_of"]}
    shown["number"] = shown["number"].astype(int).astype(str)
    return shown.rename(columns={"number": "trial", **names}), "\n".join(notes)


def times(ratio: float) -> str:
    """'2.1x faster', or '1.4x slower' for a ratio below 1 (never '0.7x faster')."""
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def target_text(trials: pd.DataFrame) -> str:
    """'onnxruntime fp32 on Intel Xeon ..., 2 threads, batch 1': what latency was timed on."""
    if "latency_threads" not in trials or trials["latency_threads"].isna().all():
        return ""
    row = trials[trials["latency_threads"].notna()].iloc[0]
    runtime = row.get("latency_runtime")
    where = row.get("latency_hardware")
    if not isinstance(where, str):  # runs made before latency had a target
        where, runtime = row.get("latency_device"), "torch"
    precision = (
        row.get("latency_precision") if isinstance(row.get("latency_precision"), str) else "fp32"
    )
    batch = row.get("latency_batch")
    batch = int(batch) if pd.notna(batch) else 1
    threads = int(row["latency_threads"])
    return (
        f"{runtime} {precision} on {where}, {threads} thread{'s' if threads != 1 else ''}, "
        f"batch {batch}" + (" (one forward pass)" if batch > 1 else "")
    )


def state_counts(trials: pd.DataFrame) -> str:
    """'40 trained, 6 stopped early, 4 infeasible (never trained), 0 failed' (retries apart)."""
    n = trials["state"].value_counts() if not trials.empty else pd.Series(dtype=int)
    parts = [f"{int(n.get('COMPLETE', 0))} trained"]
    if n.get("PROMOTED", 0):
        parts.append(f"{int(n['PROMOTED'])} promoted (trained on as later trials)")
    if n.get("SECOND_SEED", 0):
        parts.append(f"{int(n['SECOND_SEED'])} trained again with a second seed")
    if n.get("STOPPED", 0):
        parts.append(f"{int(n['STOPPED'])} stopped early")
    parts.append(f"{int(n.get('INFEASIBLE', 0))} infeasible (never trained)")
    if n.get("BELOW_FLOOR", 0):
        parts.append(f"{int(n['BELOW_FLOOR'])} below the accuracy floor")
    parts.append(f"{int(n.get('FAIL', 0))} failed")
    crashed = trials["crashed"].dropna() if "crashed" in trials else pd.Series(dtype=str)
    if len(crashed):
        signals = ", ".join(f"{k} x{v}" for k, v in crashed.value_counts().items())
        parts.append(
            f"{len(crashed)} crashed their worker ({signals}; {int(n.get('CRASHED', 0))}"
            " of them twice, not tried again)"
        )
    if n.get("RETRIED", 0):
        parts.append(f"{int(n['RETRIED'])} retried")
    return ", ".join(parts)


def write_tables(
    trials: pd.DataFrame, run_dir: Path, *, teacher: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write trials.csv, pareto.csv and teacher.json atomically; returns their paths by name."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"trials": run_dir / "trials.csv", "pareto": run_dir / "pareto.csv"}
    _atomic_csv(trials, paths["trials"])
    _atomic_csv(pareto_frame(trials), paths["pareto"])
    if teacher is not None:
        paths["teacher"] = run_dir / "teacher.json"
        write_text_atomic(paths["teacher"], json.dumps(teacher, indent=2))
    return paths


def _atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def teacher_timing(teacher: dict[str, Any]) -> str:
    """How the teacher's ``latency_ms`` was timed: on the students' target when it was
    (``latency_target``), else eager PyTorch (an ONNX teacher: ONNX Runtime) on the CPU its
    description names."""
    if "latency_target" in teacher:
        return str(teacher["latency_target"])
    where = teacher.get("latency_device")
    how = "ONNX Runtime" if str(teacher.get("name", "")).startswith("onnx:") else "PyTorch eager"
    return how + (f" on {where}" if where else "")

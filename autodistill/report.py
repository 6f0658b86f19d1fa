"""Result files of a run: trials.csv, pareto.csv and pareto.png, drawn from a trials table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import pandas as pd  # noqa: E402

from autodistill.files import atomic_path, write_text_atomic  # noqa: E402

FRONT_COLUMNS = ["number", "family", "arch", "loss", "val_accuracy", "params", "flops",
                 "latency_ms"]  # fmt: skip


def pareto_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """The front's rows, most accurate first."""
    if trials.empty:
        return trials
    front = trials[trials["pareto"]].copy()
    return front.sort_values(["val_accuracy", "params"], ascending=[False, True])


def write_outputs(
    trials: pd.DataFrame,
    run_dir: Path,
    *,
    teacher: dict[str, Any] | None = None,
    limits: dict[str, float | None] | None = None,
) -> dict[str, Path]:
    """Write the CSVs and the plot atomically; returns their paths by name."""
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "trials": run_dir / "trials.csv",
        "pareto": run_dir / "pareto.csv",
        "plot": run_dir / "pareto.png",
    }
    _atomic_csv(trials, paths["trials"])
    _atomic_csv(pareto_frame(trials), paths["pareto"])
    plot_front(trials, paths["plot"], teacher=teacher, limits=limits or {})
    if teacher is not None:
        paths["teacher"] = run_dir / "teacher.json"
        write_text_atomic(paths["teacher"], json.dumps(teacher, indent=2))
    return paths


def _atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def state_counts(trials: pd.DataFrame) -> str:
    """'40 trained, 6 stopped early, 4 infeasible (never trained), 0 failed' (retries apart)."""
    n = trials["state"].value_counts() if not trials.empty else pd.Series(dtype=int)
    parts = [f"{int(n.get('COMPLETE', 0))} trained"]
    if n.get("STOPPED", 0):
        parts.append(f"{int(n['STOPPED'])} stopped early")
    parts.append(f"{int(n.get('INFEASIBLE', 0))} infeasible (never trained)")
    parts.append(f"{int(n.get('FAIL', 0))} failed")
    if n.get("RETRIED", 0):
        parts.append(f"{int(n['RETRIED'])} retried")
    return ", ".join(parts)


def plot_front(
    trials: pd.DataFrame,
    path: Path,
    *,
    teacher: dict[str, Any] | None,
    limits: dict[str, float | None],
) -> None:
    """Validation accuracy against parameters and against latency; front circled, teacher starred.

    The accuracy axis is spaced by log error, so 98% vs 99% is as visible as 60% vs 80%.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    done = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    front = done[done["pareto"]] if not done.empty else done
    for ax, x, label, limit in (
        (axes[0], "params", "parameters", limits.get("max_params")),
        (axes[1], "latency_ms", "latency, batch 1 (ms)", limits.get("max_latency_ms")),
    ):
        if not done.empty:
            for family, rows in done.groupby("family"):
                ax.scatter(rows[x], _error(rows["val_accuracy"]), s=22, alpha=0.5, label=family)
            f = front.sort_values(x)
            ax.scatter(
                f[x],
                _error(f["val_accuracy"]),
                s=70,
                facecolors="none",
                edgecolors="black",
                linewidths=1.4,
                label="Pareto front",
                zorder=3,
            )
            for _, r in f.iterrows():
                ax.annotate(
                    f"#{r['number']}",
                    (r[x], _error(r["val_accuracy"])),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=7,
                )
        if teacher is not None and teacher.get(x) is not None:
            ax.scatter(
                [teacher[x]],
                [_error(teacher["val_accuracy"])],
                marker="*",
                s=220,
                color="crimson",
                label=f"teacher ({teacher['name']})",
                zorder=4,
            )
        if limit is not None:
            ax.axvline(limit, color="grey", linestyle="--", linewidth=1, label="limit")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(_plain))
        # The axis is the error on a log scale, labelled as the accuracy it stands for.
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{100 - v:g}%"))
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].invert_yaxis()  # the y axis is shared: invert once, so better is up
    axes[0].set_ylabel("validation accuracy (log scale of the error; up is better)")
    axes[1].legend(loc="best", fontsize=8)
    device = ""
    if not done.empty and done["latency_device"].notna().any():
        row = done.iloc[0]
        device = f" | latency on {row['latency_device']}, {int(row['latency_threads'])} threads"
    fig.suptitle(
        f"{state_counts(trials)}{device}",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _error(accuracy):
    """Error in percent, floored so a perfect score still has a place on a log axis."""
    return (
        (100.0 * (1.0 - accuracy)).clip(lower=0.05)
        if hasattr(accuracy, "clip")
        else max(0.05, 100.0 * (1.0 - accuracy))
    )


def _plain(value: float, _pos: int) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def front_table(trials: pd.DataFrame) -> str:
    """The front as a fixed-width table for the terminal."""
    front = pareto_frame(trials)
    if front.empty:
        return "(no completed trials yet: the front is empty)"
    shown = front[FRONT_COLUMNS].copy()
    shown["val_accuracy"] = (100 * shown["val_accuracy"]).map("{:.2f}%".format)
    shown["params"] = shown["params"].map(lambda n: f"{int(n):,}")
    shown["flops"] = shown["flops"].map(lambda n: f"{n / 1e6:.1f}M")
    shown["latency_ms"] = shown["latency_ms"].map("{:.3f}".format)
    shown = shown.rename(
        columns={"number": "trial", "val_accuracy": "val acc", "latency_ms": "latency ms"}
    )
    return shown.to_string(index=False)


def plot_3d(trials: pd.DataFrame, path: Path, *, teacher: dict[str, Any] | None) -> None:
    """All three objectives at once: log params, log latency and accuracy; front in black."""
    import numpy as np

    fig = plt.figure(figsize=(7, 5.5))
    ax = fig.add_subplot(projection="3d")
    done = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    if not done.empty:
        rest, front = done[~done["pareto"]], done[done["pareto"]]
        for rows, style in (
            (rest, {"alpha": 0.6, "s": 14, "color": "tab:blue", "label": "other trials"}),
            (front, {"s": 40, "color": "black", "label": "Pareto front"}),
        ):
            ax.scatter(np.log10(rows["params"].astype(float)),
                       np.log10(rows["latency_ms"].astype(float)),
                       100 * rows["val_accuracy"], **style)  # fmt: skip
    if teacher is not None:
        ax.scatter([np.log10(teacher["params"])], [np.log10(teacher["latency_ms"])],
                   [100 * teacher["val_accuracy"]], marker="*", s=160, color="crimson",
                   label="teacher")  # fmt: skip
    ax.set_xlabel("log10 parameters")
    ax.set_ylabel("log10 latency (ms)")
    ax.set_zlabel("val accuracy (%)")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_hypervolume(history: list[tuple[int, float]], path: Path) -> None:
    """How the front grew: hypervolume of the trials so far, after each trial."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if history:
        ax.plot([n for n, _ in history], [h for _, h in history], drawstyle="steps-post")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (normalised)")
    ax.set_title("error, log params, log latency; reference (1, 1, 1)", fontsize=9)
    ax.grid(True, alpha=0.3)
    _save(fig, path)


def plot_importances(importances: dict[str, float], path: Path) -> None:
    """Which hyperparameters mattered for validation accuracy."""
    fig, ax = plt.subplots(figsize=(6, 0.4 * max(3, len(importances)) + 1))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:green")
    ax.set_xlabel("importance for validation accuracy")
    ax.set_title("hyperparameters sampled in at least half the trials", fontsize=9)
    if not importances:
        ax.text(0.5, 0.5, "too few completed trials", ha="center", transform=ax.transAxes)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)

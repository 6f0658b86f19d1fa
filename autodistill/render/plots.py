"""Plots of a run: accuracy against each other objective, a 3-D view of three, hypervolume, and
hyperparameter importances. Drawn on matplotlib ``Figure`` objects (no pyplot), so nothing is
set globally and no window ever opens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from autodistill.files import atomic_path
from autodistill.objectives import get_objective
from autodistill.render.tables import ACCURACY, promoted, state_counts, target_text


def _teacher(teacher: dict[str, Any], name: str) -> Any:
    """The teacher's value of an objective, if it is comparable with the students': its
    latency only when it was timed on the students' target (teacher.json's is eager PyTorch)."""
    if name == "latency_ms" and "latency_target" not in teacher:
        return None
    return teacher.get(name)


def _done(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["state"] == "COMPLETE"] if not trials.empty else trials


def _promotion_paths(ax, trials: pd.DataFrame, x: str) -> None:
    """Each promoted candidate's earlier rungs as grey marks, joined to the rung after."""
    by_number = trials.set_index("number")
    drawn = False
    for _, r in trials[trials["promoted_from"].notna()].iterrows():
        parent = by_number.loc[int(r["promoted_from"])]
        before, after = _error(float(parent[ACCURACY])), _error(float(r[ACCURACY]))
        ax.plot(
            [parent[x], r[x]], [before, after], color="grey", linewidth=0.8, alpha=0.6, zorder=1
        )
        ax.scatter(
            [parent[x]],
            [before],
            marker="x",
            s=18,
            color="grey",
            label=None if drawn else "earlier rung (promoted)",
            zorder=2,
        )
        drawn = True


def plot_front(
    trials: pd.DataFrame,
    path: Path,
    *,
    objectives: tuple[str, ...],
    teacher: dict[str, Any] | None,
    limits: dict[str, float],
) -> None:
    """Validation accuracy against each other objective; front circled, teacher starred.

    The accuracy axis is spaced by log error, so 98% vs 99% is as visible as 60% vs 80%.
    """
    others = [n for n in objectives if n != ACCURACY]
    fig = Figure(figsize=(6 * len(others), 4.8))
    axes = fig.subplots(1, len(others), sharey=True, squeeze=False)[0]
    done = _done(trials)
    front = done[done["pareto"].astype(bool)] if not done.empty else done
    for ax, x in zip(axes, others, strict=True):
        objective = get_objective(x)
        if not done.empty:
            for family, rows in done.groupby("family"):
                ax.scatter(rows[x], _error(rows[ACCURACY]), s=22, alpha=0.5, label=family)
            f = front.sort_values(x)
            ax.scatter(
                f[x],
                _error(f[ACCURACY]),
                s=70,
                facecolors="none",
                edgecolors="black",
                linewidths=1.4,
                label="Pareto front",
                zorder=3,
            )
            multi = promoted(trials)
            if multi:
                _promotion_paths(ax, trials, x)
            for _, r in f.iterrows():
                epochs = f" {int(r['epochs_trained'])}ep" if multi else ""
                ax.annotate(
                    f"#{r['number']}{epochs}",
                    (r[x], _error(r[ACCURACY])),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=7,
                )
        if teacher is not None and _teacher(teacher, x) is not None:
            ax.scatter(
                [teacher[x]],
                [_error(teacher[ACCURACY])],
                marker="*",
                s=220,
                color="crimson",
                label=f"teacher ({teacher['name']})",
                zorder=4,
            )
        if limits.get(x) is not None:
            ax.axvline(limits[x], color="grey", linestyle="--", linewidth=1, label="limit")
        _log_axes(ax, log_x=objective.log)
        ax.set_xlabel(objective.label)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].invert_yaxis()  # the y axis is shared: invert once, so better is up
    axes[0].set_ylabel("validation accuracy (log scale of the error; up is better)")
    # One legend for all panels: the teacher may be drawn on some of them only.
    labelled = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label, handle)
    if labelled:
        axes[-1].legend(list(labelled.values()), list(labelled), loc="best", fontsize=8)
    device = ""
    if "latency_ms" in objectives and not done.empty and target_text(done):
        device = f"\nlatency: {target_text(done)}"
    fig.suptitle(f"{state_counts(trials)}{device}", fontsize=10)
    _save(fig, path, dpi=120)


def _log_axes(ax, *, log_x: bool) -> None:
    """The x axis on a log scale in plain units (when ``log_x``), and the y axis the error on a
    log scale, labelled as the accuracy it stands for."""
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(_plain))
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{100 - v:g}%"))


def _error(accuracy):
    """Error in percent, floored so a perfect score still has a place on a log axis."""
    if hasattr(accuracy, "clip"):
        return (100.0 * (1.0 - accuracy.astype(float))).clip(lower=0.05)
    return max(0.05, 100.0 * (1.0 - accuracy))


def _plain(value: float, _pos: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def _axis(objective_name: str, values) -> tuple[np.ndarray, str]:
    objective = get_objective(objective_name)
    v = np.asarray(values, dtype=float)
    if objective_name == ACCURACY:
        return 100 * v, "val accuracy (%)"
    if objective.log:
        return np.log10(v), f"{objective.label} (log scale)"
    return v, objective.label


def _log_ticks(logs: np.ndarray) -> tuple[list[float], list[str]]:
    """Ticks for an axis drawn in log10 units (3-D axes have no log scale), labelled in the
    real units: 1, 2 and 5 of each decade the values span, or decades alone when many."""
    low, high = float(np.min(logs)), float(np.max(logs))
    decades = range(int(np.floor(low)), int(np.ceil(high)) + 1)
    steps = (1,) if len(decades) > 4 else (1, 2, 5)
    values = [m * 10.0**d for d in decades for m in steps]
    inside = [v for v in values if low - 0.05 <= np.log10(v) <= high + 0.05]
    if len(inside) < 2:  # a narrow range: its two ends
        inside = [10**low, 10**high]
    return [float(np.log10(v)) for v in inside], [_plain(v, 0) for v in inside]


def plot_3d(
    trials: pd.DataFrame,
    path: Path,
    *,
    objectives: tuple[str, ...],
    teacher: dict[str, Any] | None,
) -> None:
    """The three objectives at once (only drawn for a study of exactly three); front in black."""
    if len(objectives) != 3:
        raise ValueError(f"a 3-D view needs three objectives, got {len(objectives)}")
    x_name, y_name = [n for n in objectives if n != ACCURACY][:2]
    fig = Figure(figsize=(7, 5.5))
    ax = fig.add_subplot(projection="3d")
    done = _done(trials)
    if not done.empty:
        rest, front = done[~done["pareto"].astype(bool)], done[done["pareto"].astype(bool)]
        for rows, style in (
            (rest, {"alpha": 0.6, "s": 14, "color": "tab:blue", "label": "other trials"}),
            (front, {"s": 40, "color": "black", "label": "Pareto front"}),
        ):
            ax.scatter(
                _axis(x_name, rows[x_name])[0],
                _axis(y_name, rows[y_name])[0],
                _axis(ACCURACY, rows[ACCURACY])[0],
                **style,
            )
    if teacher is not None and all(_teacher(teacher, n) is not None for n in objectives):
        ax.scatter(
            _axis(x_name, [teacher[x_name]])[0],
            _axis(y_name, [teacher[y_name]])[0],
            _axis(ACCURACY, [teacher[ACCURACY]])[0],
            marker="*",
            s=160,
            color="crimson",
            label="teacher",
        )
    ax.set_xlabel(_axis(x_name, [1.0])[1])
    ax.set_ylabel(_axis(y_name, [1.0])[1])
    ax.set_zlabel(_axis(ACCURACY, [1.0])[1])
    shown = pd.concat([done, pd.DataFrame([teacher])]) if teacher is not None else done
    for name, axis in ((x_name, ax.xaxis), (y_name, ax.yaxis)):
        if get_objective(name).log and name in shown and shown[name].notna().any():
            ticks, labels = _log_ticks(np.log10(shown[name].dropna().astype(float)))
            axis.set_ticks(ticks, labels=labels)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_hypervolume(
    history: list[tuple[int, float]], path: Path, *, objectives: tuple[str, ...]
) -> None:
    """How the front grew: hypervolume of the trials so far, after each trial."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    if history:
        ax.plot([n for n, _ in history], [h for _, h in history], drawstyle="steps-post")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (normalised)")
    names = ", ".join(("log " if get_objective(n).log else "") + n for n in objectives)
    ax.set_title(f"{names}; reference: the worst corner", fontsize=9)
    ax.grid(True, alpha=0.3)
    _save(fig, path)


_MARKERS = {"fp32": "o", "int8-ptq": "s", "int8-qat-kd": "D", "int8-qat": "D"}


def plot_compression(
    trials: pd.DataFrame, compressed: dict[str, Any], student: dict[str, Any], path: Path
) -> None:
    """A student's compressed variants (validation accuracy against ONNX Runtime latency and
    against params) beside the search's front, the fully trained student and the teacher.

    The front's accuracies are brief-training scores and its latencies the search's; the
    variants' are after fine-tuning, timed together in one run: the figure says so.
    """
    variants = pd.DataFrame(compressed["variants"])
    teacher = compressed["teacher"]
    fig = Figure(figsize=(12, 4.8))
    axes = fig.subplots(1, 2, sharey=True)
    done = _done(trials)
    front = done[done["pareto"].astype(bool)] if not done.empty else done
    for ax, x in zip(axes, ("latency_ms", "params"), strict=True):
        if x in front:
            ax.scatter(
                front[x],
                _error(front[ACCURACY]),
                s=40,
                facecolors="none",
                edgecolors="grey",
                label="search front (brief scores)",
            )
        ax.scatter(
            [student[x]],
            [_error(student[ACCURACY])],
            s=90,
            color="black",
            marker="P",
            label=f"trial {student['trial']} fully trained",
            zorder=4,
        )
        for precision, rows in variants.groupby("precision", sort=False):
            ax.scatter(
                rows[x],
                _error(rows[ACCURACY]),
                s=55,
                marker=_MARKERS.get(precision, "o"),
                label=f"compressed, {precision}",
                zorder=5,
            )
            for _, r in rows.iterrows():
                ax.annotate(
                    r["variant"].split("/")[0].removeprefix("prune-") + "%",
                    (r[x], _error(r[ACCURACY])),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=7,
                )
        ax.scatter(
            [teacher[x]],
            [_error(teacher.get("val_accuracy", teacher["test_accuracy"]))],
            marker="*",
            s=220,
            color="crimson",
            label=f"teacher ({teacher['name']})",
            zorder=4,
        )
        _log_axes(ax, log_x=True)
        ax.set_xlabel(get_objective(x).label)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].invert_yaxis()
    axes[0].set_ylabel("validation accuracy (log scale of the error; up is better)")
    axes[-1].legend(loc="best", fontsize=8)
    first = variants.iloc[0]
    fig.suptitle(
        f"trial {student['trial']} compressed: variants timed together in ONNX Runtime "
        f"on the cpu, {first['latency_threads']} threads, batch "
        f"{first['latency_batch']}; labels are the % of channels pruned\n(the front and "
        "the fully trained student as search and train timed them, at other moments)",
        fontsize=10,
    )
    _save(fig, path, dpi=120)


def plot_importances(importances: dict[str, float], path: Path) -> None:
    """Which hyperparameters mattered for validation accuracy."""
    fig = Figure(figsize=(6, 0.4 * max(3, len(importances)) + 1))
    ax = fig.subplots()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:green")
    ax.set_xlabel("importance for validation accuracy")
    ax.set_title(
        "hyperparameters sampled in at least half the trials (those of any measurable importance)",
        fontsize=9,
    )
    if not importances:
        ax.text(0.5, 0.5, "too few completed trials", ha="center", transform=ax.transAxes)
    _save(fig, path)


def _save(fig: Figure, path: Path, dpi: int = 110) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)

"""What users look at: tables, plots and the report page, drawn from a run's trials frame.

Knows no Optuna: the study package hands it frames and numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from autodistill.render.page import card_rows, write_page
from autodistill.render.plots import (
    plot_3d,
    plot_compression,
    plot_front,
    plot_hypervolume,
    plot_importances,
)
from autodistill.render.tables import front_table, pareto_frame, state_counts, write_tables


def write_results(
    trials: pd.DataFrame,
    run_dir: Path,
    *,
    objectives: tuple[str, ...],
    teacher: dict[str, Any] | None,
    limits: dict[str, float],
) -> dict[str, Path]:
    """What a search leaves when it stops: trials.csv, pareto.csv, pareto.png, teacher.json."""
    files = write_tables(trials, run_dir, teacher=teacher)
    files["plot"] = run_dir / "pareto.png"
    plot_front(trials, files["plot"], objectives=objectives, teacher=teacher, limits=limits)
    return files


def write_report(
    trials: pd.DataFrame,
    run_dir: Path,
    *,
    title: str,
    objectives: tuple[str, ...],
    teacher: dict[str, Any] | None,
    limits: dict[str, float],
    hypervolume: list[tuple[int, float]],
    importances: dict[str, float],
    students: list[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]],
    brief_epochs: int | None = None,
    ranking: dict[str, Any] | None = None,
    latency_reference: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """The result files, every plot, and report.html / report.md; returns the paths by name."""
    files = write_results(trials, run_dir, objectives=objectives, teacher=teacher, limits=limits)
    images = {"pareto": files["plot"]}
    if len(objectives) == 3:
        images["pareto3d"] = run_dir / "pareto3d.png"
        plot_3d(trials, images["pareto3d"], objectives=objectives, teacher=teacher)
    images["hypervolume"] = run_dir / "hypervolume.png"
    plot_hypervolume(hypervolume, images["hypervolume"], objectives=objectives)
    images["importances"] = run_dir / "importances.png"
    plot_importances(importances, images["importances"])
    for student, _, compressed in students:  # each compressed student beside the front
        if compressed:
            key = f"compress-trial-{student['trial']}"
            images[key] = run_dir / f"{key}.png"
            plot_compression(trials, compressed, student, images[key])
    files.update({k: v for k, v in images.items() if k != "pareto"})
    files.update(
        write_page(
            run_dir,
            title=title,
            trials=trials,
            objectives=objectives,
            teacher=teacher,
            students=students,
            images=images,
            brief_epochs=brief_epochs,
            ranking=ranking,
            latency_reference=latency_reference,
        )
    )
    return files


__all__ = [
    "card_rows",
    "front_table",
    "pareto_frame",
    "state_counts",
    "write_report",
    "write_results",
]

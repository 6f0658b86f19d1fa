"""Choosing students from a run's trials: by rule (knee, best, smallest, fastest) or by limits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from autodistill.errors import UserError

RULES = ("knee", "best", "smallest", "fastest")


def _done(trials: pd.DataFrame) -> pd.DataFrame:
    done = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    if done.empty:
        raise UserError("the run has no completed trials to choose from; run a search first")
    return done


def pick(trials: pd.DataFrame, rule: str) -> int:
    """The trial number a rule picks from the Pareto front.

    ``best``: highest validation accuracy; ``smallest``: fewest parameters; ``fastest``: lowest
    latency (ties go to the more accurate); ``knee``: the front point nearest the ideal corner
    once error, log parameters and log latency are each scaled to 0..1 across the front, i.e.
    the point that gives up least on every objective at once.
    """
    front = _done(trials)
    front = front[front["pareto"].astype(bool)]
    if rule == "best":
        return int(front.sort_values(["val_accuracy", "params"], ascending=[False, True])
                   .iloc[0]["number"])  # fmt: skip
    if rule == "smallest":
        return int(front.sort_values(["params", "val_accuracy"], ascending=[True, False])
                   .iloc[0]["number"])  # fmt: skip
    if rule == "fastest":
        return int(front.sort_values(["latency_ms", "val_accuracy"], ascending=[True, False])
                   .iloc[0]["number"])  # fmt: skip
    if rule == "knee":
        cols = np.stack([
            1.0 - front["val_accuracy"].to_numpy(float),
            np.log(front["params"].to_numpy(float)),
            np.log(front["latency_ms"].to_numpy(float)),
        ], axis=1)  # fmt: skip
        span = cols.max(0) - cols.min(0)
        scaled = (cols - cols.min(0)) / np.where(span > 0, span, 1.0)
        return int(front.iloc[int(np.argmin(np.linalg.norm(scaled, axis=1)))]["number"])
    raise UserError(f"unknown pick rule {rule!r}; known: {', '.join(RULES)}")


def pick_within(
    trials: pd.DataFrame, *, max_params: float | None, max_latency_ms: float | None
) -> int:
    """The most accurate completed trial within the limits (ties go to the smaller)."""
    done = _done(trials)
    ok = done
    if max_params is not None:
        ok = ok[ok["params"] <= max_params]
    if max_latency_ms is not None:
        ok = ok[ok["latency_ms"] <= max_latency_ms]
    if ok.empty:
        smallest, fastest = done["params"].min(), done["latency_ms"].min()
        raise UserError(f"no completed trial fits those limits (smallest has {int(smallest):,} "
                        f"params, fastest takes {fastest:.3f} ms); loosen them")  # fmt: skip
    return int(ok.sort_values(["val_accuracy", "params"], ascending=[False, True])
               .iloc[0]["number"])  # fmt: skip


def top_front(trials: pd.DataFrame, k: int) -> list[int]:
    """The ``k`` most accurate points of the front."""
    if k < 2:
        raise UserError(f"--top needs at least 2 students to rank, got {k}")
    front = _done(trials)
    front = front[front["pareto"].astype(bool)]
    ranked = front.sort_values(["val_accuracy", "params"], ascending=[False, True])
    return [int(n) for n in ranked["number"].head(k)]

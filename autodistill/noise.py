"""Seed noise on a front: how far apart two seeds of one candidate land, and which front points
cannot be told apart from a more accurate one by it (so neither is called better).

Read from the trials frame: ``seed_spread`` is |accuracy - second seed's accuracy| for the
promoted front points a multi-fidelity search trained twice.
"""

from __future__ import annotations

import pandas as pd

ACCURACY = "val_accuracy"
SPREAD = "seed_spread"


def typical_spread(trials: pd.DataFrame) -> float | None:
    """The mean seed spread over every trial trained with two seeds; None if none was."""
    if SPREAD not in trials or trials[SPREAD].isna().all():
        return None
    return float(trials[SPREAD].dropna().astype(float).mean())


def ties(trials: pd.DataFrame) -> dict[int, int]:
    """Front trial -> the most accurate other front trial it is within the seed spread of
    (the larger of the two points' spreads; a point trained once takes the typical spread).
    Empty when no spread was measured: then nothing can be said either way."""
    typical = typical_spread(trials)
    if typical is None:
        return {}
    front = trials[trials["pareto"].astype(bool)]
    front = front.sort_values([ACCURACY, "params"], ascending=[False, True])
    acc = front[ACCURACY].astype(float).tolist()
    spread = [typical if pd.isna(v) else float(v) for v in front[SPREAD]]
    numbers = [int(n) for n in front["number"]]
    out = {}
    for i in range(1, len(numbers)):
        for j in range(i):  # the more accurate ones, most accurate first
            if acc[j] - acc[i] <= max(spread[i], spread[j]):
                out[numbers[i]] = numbers[j]
                break
    return out


def tied_with(trials: pd.DataFrame, number: int) -> list[int]:
    """``number`` and the front trials within its seed spread of it and less accurate."""
    return [number, *(n for n, best in ties(trials).items() if best == number)]

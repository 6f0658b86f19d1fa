"""The same --seed proposes the same trials and, on CPU, trains them to the same accuracies."""

from __future__ import annotations

import pandas as pd
import yaml

from autodistill.cli import main
from tests.conftest import FAST as CONFTEST_FAST

FAST = [
    *CONFTEST_FAST,
    "--budget",
    "4",
    # Latency is no part of what repeats (a timing is the machine's): not timed, so cheaper.
    "--objectives",
    "val_accuracy,params",
]
# Stated in the README: on CPU with the same thread count, accuracies agree to this many points.
TOLERANCE_POINTS = 0.5


def test_the_same_seed_gives_the_same_trials_and_accuracies(tmp_path, shared_cache):
    frames = []
    for run in ("a", "b"):
        out = tmp_path / run
        args = ["search", *FAST, "--seed", "3", "--out", str(out), "--cache-dir", str(shared_cache)]
        assert main(args) == 0
        frames.append(pd.read_csv(out / "digits-default" / "trials.csv"))
    a, b = frames
    params = [c for c in a.columns if c.startswith("param.")]
    pd.testing.assert_frame_equal(a[params], b[params])  # the same candidates, in order
    assert list(a["arch"]) == list(b["arch"]) and list(a["state"]) == list(b["state"])
    done = a["state"] == "COMPLETE"
    assert done.sum() >= 2
    diff = (a.loc[done, "val_accuracy"] - b.loc[done, "val_accuracy"]).abs() * 100
    assert diff.max() <= TOLERANCE_POINTS, diff

    # The run dir records what it ran with: the resolved settings and the package versions.
    doc = yaml.safe_load((tmp_path / "a" / "digits-default" / "config.yaml").read_text())
    assert doc["config"]["seed"] == 3 and doc["resolved"]["threads"] == 2
    assert {"torch", "timm", "optuna", "autodistill"} <= set(doc["versions"])


def test_another_seed_proposes_other_trials(tmp_path, shared_cache):
    frames = []
    for seed in ("3", "4"):  # 3's teacher is the same-seed test's: one teacher trained, not two
        out = tmp_path / seed
        args = [
            "search",
            *FAST,
            "--budget",
            "2",
            "--seed",
            seed,
            "--out",
            str(out),
            "--cache-dir",
            str(shared_cache),
        ]
        assert main(args) == 0
        frames.append(pd.read_csv(out / "digits-default" / "trials.csv"))
    assert list(frames[0]["param.lr"]) != list(frames[1]["param.lr"])

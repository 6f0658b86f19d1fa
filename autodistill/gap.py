"""Whether validation predicts the test split: two accuracies held against their binomial noise.

The search selects on validation, which is carved from ``train/`` unless the data has a ``val/``
folder; when ``test/`` is drawn otherwise (another speaker, site or scanner), a model's
validation accuracy says little about its test accuracy, and every ranking made on it misleads.
"""

from __future__ import annotations

import math
from typing import Any

NOISE_SE = 2.0  # a gap beyond this many combined standard errors is not the splits' noise
REMEDY = (
    "validation is carved from train/ and does not resemble test/: give a val/ folder drawn "
    "like test/, or hold out whole groups with --group-by REGEX"
)


def split_gap(val_accuracy: float, n_val: int, test_accuracy: float, n_test: int) -> dict[str, Any]:
    """How far test accuracy falls below validation accuracy, and whether more than the noise
    of two binomial samples of these sizes explains (``NOISE_SE`` combined standard errors)."""
    se = math.sqrt(
        val_accuracy * (1 - val_accuracy) / max(n_val, 1)
        + test_accuracy * (1 - test_accuracy) / max(n_test, 1)
    )
    gap = val_accuracy - test_accuracy
    # A floor of one image in the smaller split: two perfect scores have no variance at all.
    noise = NOISE_SE * max(se, 1 / max(min(n_val, n_test), 1))
    return {
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
        "gap": gap,
        "noise": noise,
        "beyond_noise": bool(gap > noise),
    }


def gap_warning(gap: dict[str, Any], who: str) -> str | None:
    """One line when ``who``'s test accuracy is below its validation accuracy beyond noise."""
    if not gap["beyond_noise"]:
        return None
    return (
        f"{who} scores {100 * gap['val_accuracy']:.1f}% on validation but "
        f"{100 * gap['test_accuracy']:.1f}% on test, {100 * gap['gap']:.1f} points lower "
        f"(noise of the two splits: {100 * gap['noise']:.1f}); {REMEDY}"
    )

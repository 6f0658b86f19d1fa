"""benchmarks/held_out_speaker.py's synthesised folder is the issue's case: speakers named in
the file names as the issue's expression reads them, one of them only in test/, and a take
that depends on its speaker."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "held_out_speaker.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("held_out_speaker", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_folder_holds_one_speaker_out_and_the_expression_names_every_speaker(bench, tmp_path):
    from autodistill.data.groups import file_groups

    bench.make_folder(tmp_path, "theo", takes=1, seed=0)
    train = sorted((tmp_path / "train").rglob("*.png"))
    test = sorted((tmp_path / "test").rglob("*.png"))
    assert len(train) == 5 * 10 and len(test) == 10  # one take of each digit by each speaker
    assert set(file_groups(train, bench.GROUP_BY)) == set(bench.SPEAKERS) - {"theo"}
    assert set(file_groups(test, bench.GROUP_BY)) == {"theo"}
    from PIL import Image

    image = np.asarray(Image.open(test[0]))
    assert image.shape == (32, 32) and image.std() > 10  # a grayscale spectrogram, not blank


def test_a_take_depends_on_its_speaker_and_its_digit(bench):
    traits = bench.speaker_traits(0)

    def mean_image(digit: int, speaker: str, seed: int) -> np.ndarray:
        """The mean of 20 takes, in 4 x 4 blocks: the takes' own noise averaged away."""
        rng = np.random.default_rng(seed)
        takes = [bench.spectrogram(bench.utterance(digit, traits[speaker], rng)) for _ in range(20)]
        return np.mean(takes, axis=0).reshape(8, 4, 8, 4).mean(axis=(1, 3))

    theo = mean_image(3, "theo", seed=1)
    again = np.abs(theo - mean_image(3, "theo", seed=2)).mean()  # other takes, same voice
    others = [s for s in bench.SPEAKERS if s != "theo"]
    other_speaker = np.mean([np.abs(theo - mean_image(3, s, seed=2)).mean() for s in others])
    other_digit = np.abs(theo - mean_image(6, "theo", seed=2)).mean()
    # The digit shows plainly; the voice only modestly (these voices differ far less than real
    # speakers do, as the benchmark's results say), but more than other takes of one voice.
    assert other_digit > 2.5 * again and other_speaker > 1.2 * again

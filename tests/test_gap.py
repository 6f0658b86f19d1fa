"""Validation against test: a gap beyond the two splits' noise is said, in one line."""

from __future__ import annotations

import re

import pytest

from autodistill.errors import UserError
from autodistill.gap import gap_warning, split_gap


def test_a_gap_within_noise_is_not_a_warning_and_one_beyond_it_is():
    same = split_gap(0.90, 300, 0.88, 300)  # 2 points apart: two SEs are ~5 points here
    assert not same["beyond_noise"] and gap_warning(same, "the teacher") is None
    shifted = split_gap(0.931, 450, 0.486, 500)  # the spectrogram case: another speaker
    line = gap_warning(shifted, "the teacher resnet18")
    assert shifted["beyond_noise"] and line is not None and "\n" not in line
    assert "93.1% on validation but 48.6% on test" in line and "--group-by" in line


def test_test_above_validation_is_never_a_warning():
    assert not split_gap(0.70, 100, 0.95, 100)["beyond_noise"]


def test_two_perfect_small_splits_are_within_noise():
    assert not split_gap(1.0, 20, 0.95, 20)["beyond_noise"]  # one image of 20


def _write_folder(root, *, shift_test: bool) -> None:
    """Two classes told apart by which half (top, bottom: flips keep it) is bright; test/
    inverted when ``shift_test``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 100), ("test", 40)):
        for label, name in enumerate(("top", "bottom")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 60, (16, 16)).astype(np.uint8)
                pixels[label * 8 : label * 8 + 8] += 180
                if split == "test" and shift_test:
                    pixels = 255 - pixels  # a darkened-for-brightened scanner, say
                Image.fromarray(pixels, "L").save(root / split / name / f"{i:03d}.png")


def test_a_search_says_when_test_is_shifted_from_validation_and_not_otherwise(
    tmp_path, shared_cache, capsys, caplog
):
    import json

    from autodistill.cli import main

    space = tmp_path / "tiny.yaml"
    space.write_text(
        "families:\n  resnet: {stem_stride: 1, depths: 1, width: 8}\n"
        "distill:\n  ce: {}\ntrain:\n  lr: 0.03\n"
    )
    lines = {}
    for shifted in (True, False):
        data = tmp_path / f"shifted-{shifted}"
        _write_folder(data, shift_test=shifted)
        out = tmp_path / f"out-{shifted}"
        code = main(
            [
                "search",
                "--data",
                f"imagefolder:{data}",
                "--budget",
                "1",
                "--epochs",
                "6",
                "--teacher",
                "test_resnet",
                "--teacher-epochs",
                "3",
                "--views",
                "1",
                "--quiet",
                "--in-process",
                "--objectives",  # latency is not what this checks: not timed
                "val_accuracy,params",
                "--out",
                str(out),
                "--space",
                str(space),
                "--cache-dir",
                str(shared_cache),
            ]
        )
        printed = capsys.readouterr().out
        assert code == 0
        assert ("warning: the teacher test_resnet scores" in printed) is shifted, printed
        # said as soon as the teacher is ready, too: before any trial ranks on validation
        said = [r for r in caplog.records if r.name == "autodistill.api" and "scores" in r.message]
        assert bool(said) is shifted
        caplog.clear()
        run_dir = next(out.iterdir())
        lines[shifted] = json.loads((run_dir / "teacher.json").read_text())["validation_gap"]
    assert lines[True]["beyond_noise"] and lines[True]["test_accuracy"] < 0.5
    assert not lines[False]["beyond_noise"]


def _write_speakers(root, speakers=("ann", "bob", "cid", "dee"), per=6) -> None:
    """train/<digit>/<n>_<speaker>_take.png: each speaker's images carry its index in pixel 0."""
    import numpy as np
    from PIL import Image

    for label in ("one", "two"):
        (root / "train" / label).mkdir(parents=True, exist_ok=True)
        (root / "test" / label).mkdir(parents=True, exist_ok=True)
        for s, speaker in enumerate(speakers):
            for i in range(per):
                pixels = np.full((8, 8), 10 + i, dtype=np.uint8)
                pixels[0, 0] = 100 + s
                Image.fromarray(pixels, "L").save(root / "train" / label / f"{i}_{speaker}_t.png")
        Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(root / "test" / label / "x.png")


def test_group_by_puts_no_group_in_both_training_and_validation(tmp_path):
    from autodistill.data.sources import load_dataset

    _write_speakers(tmp_path)
    splits = load_dataset(f"imagefolder:{tmp_path}", image_size=8, group_by=r"^\d+_([a-z]+)_")
    train = set(splits.train.images[:, 0, 0, 0].tolist())
    val = set(splits.val.images[:, 0, 0, 0].tolist())
    assert val and train and not train & val  # whole speakers held out
    assert len(splits.train) + len(splits.val) == 48 and len(val) == 1  # one speaker of four
    assert set(splits.val.labels.tolist()) == {0, 1}  # both classes, as the groups allow
    plain = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert set(plain.train.images[:, 0, 0, 0].tolist()) & set(plain.val.images[:, 0, 0, 0].tolist())


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        (r"^\d+_([a-z]+", "is not a regular expression"),
        (r"^\d+_[a-z]+_", "has no capture group"),
        (r"^([A-Z]+)_", "matches no file name"),
        (r"^\d+_(ann|bob|cid)_", "names no group for 12 of 48 files"),
        (r"_(t)\.png$", "found 1 group ('t')"),
    ],
)
def test_bad_group_expressions_are_one_line(tmp_path, pattern, says):
    from autodistill.data.sources import load_dataset

    _write_speakers(tmp_path)
    with pytest.raises(UserError, match=re.escape(says)) as exc:
        load_dataset(f"imagefolder:{tmp_path}", image_size=8, group_by=pattern)
    assert "\n" not in str(exc.value)


def test_group_by_is_refused_for_data_without_file_names():
    from autodistill.data.sources import load_dataset

    with pytest.raises(UserError, match="groups the files of an image folder"):
        load_dataset("digits", group_by="(x)")


def test_a_resume_with_another_grouping_is_refused(tmp_path, shared_cache, capsys):
    from autodistill.cli import main

    _write_speakers(tmp_path / "data", per=10)
    base = [
        "search",
        "--data",
        f"imagefolder:{tmp_path / 'data'}",
        "--budget",
        "1",
        "--epochs",
        "1",
        "--teacher",
        "test_resnet",
        "--teacher-epochs",
        "1",
        "--views",
        "1",
        "--quiet",
        "--in-process",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(shared_cache),
    ]
    main([*base, "--group-by", r"^\d+_([a-z]+)_"])  # trained or not, the study is made
    assert (tmp_path / "out" / "folder-data-default" / "config.yaml").is_file()
    capsys.readouterr()
    assert main([*base, "--group-by", r"^(\d+)_"]) == 2
    err = capsys.readouterr().err
    assert "group_by" in err and err.count("\n") == 1

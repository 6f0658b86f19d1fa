"""Files a user hands in never run code when they are read: a training checkpoint planted in a
run directory, a CIFAR batch in --data-dir. Each gets one line and exit status 2."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from autodistill.cli import main
from autodistill.data import load_dataset
from autodistill.errors import UserError


class _Payload:
    """Unpickling this creates ``marker``: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_training_checkpoint_does_not_run_its_code(shipped_run, tmp_path, capsys):
    import torch

    marker = tmp_path / "ran"
    trained = next((shipped_run / "students").glob("trial-*"))
    number = trained.name.split("-")[1]
    others = [p for p in (shipped_run / "students").glob("trial-*") if p != trained]
    assert not others  # the planted checkpoint goes beside a student that is not trained yet
    from autodistill.study import load_study, open_storage

    study = load_study(open_storage(None, shipped_run), "digits-default")
    target = next(t.number for t in study.trials
                  if t.state.name == "COMPLETE" and str(t.number) != number)  # fmt: skip
    folder = shipped_run / "students" / f"trial-{target}"
    folder.mkdir(parents=True)
    torch.save({"config": _Payload(marker)}, folder / "checkpoint.pt")
    try:
        code = main(["train", str(shipped_run), "--trial", str(target), "--epochs", "1",
                     "--quiet"])  # fmt: skip
        err = capsys.readouterr().err
    finally:
        import shutil

        shutil.rmtree(folder)
    assert not marker.exists(), "the checkpoint's code ran"
    assert code == 2 and err.count("\n") == 1
    assert "cannot be read as tensors and plain values" in err and "delete it" in err


def test_a_planted_cifar_batch_does_not_run_its_code(tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    payload = pickle.dumps({b"data": _Payload(marker), b"labels": [0]})
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (folder / name).write_bytes(payload)
    with pytest.raises(UserError, match="not a readable CIFAR pickle .*refused: it could run"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists(), "the batch's code ran"

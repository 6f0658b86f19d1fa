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
    target = next(
        t.number for t in study.trials if t.state.name == "COMPLETE" and str(t.number) != number
    )
    folder = shipped_run / "students" / f"trial-{target}"
    folder.mkdir(parents=True)
    torch.save({"config": _Payload(marker)}, folder / "checkpoint.pt")
    try:
        code = main(["train", str(shipped_run), "--trial", str(target), "--epochs", "1", "--quiet"])
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


def test_a_storage_password_is_never_printed(tmp_path, capsys):
    from autodistill.config import mask_url

    assert mask_url("postgresql://me:s3cr3t@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert mask_url("postgresql://db/x") == "postgresql://db/x" and mask_url(None) is None
    url = "postgresql://me:SECRETWORD@127.0.0.1:1/nodb"
    code = main(["search", "--data", "digits", "--out", str(tmp_path), "--storage", url])
    captured = capsys.readouterr()
    assert code == 2 and "SECRETWORD" not in captured.out + captured.err
    assert "postgresql://me:***@127.0.0.1:1/nodb" in captured.err


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "a/b/c", "x" * 5000, "..", ".hidden"])
def test_a_study_name_that_is_not_a_name_is_refused(tmp_path, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    code = main(["search", "--data", "digits", "--out", str(out), "--study-name", name])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not a name" in err and len(err) < 400
    assert not any(tmp_path.rglob("config.yaml"))


def test_a_moved_run_trains_exports_and_reports_from_where_it_is(shipped_run, tmp_path):
    import shutil

    import autodistill

    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(shipped_run, moved)
    trained = next((moved / "students").glob("trial-*"))
    number = int(trained.name.split("-")[1])
    before = {p: p.stat().st_mtime_ns for p in shipped_run.rglob("*") if p.is_file()}
    assert main(["export", str(moved), "--trial", str(number)]) == 0
    assert main(["report", str(moved)]) == 0
    model = autodistill.load_student(moved, trial=number)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert main(["train", str(moved), "--trial", str(number), "--epochs", "1", "--quiet"]) == 0
    after = {p: p.stat().st_mtime_ns for p in shipped_run.rglob("*") if p.is_file()}
    assert after == before  # nothing of the original run was read for writing or rewritten
    assert (trained / "student.onnx").is_file()


def test_a_config_holding_a_password_is_owner_only_and_results_are_group_readable(
    shipped_run, shared_cache, tmp_path
):
    import stat

    from autodistill.config import SearchConfig
    from autodistill.rundir import save_config

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    with_password = SearchConfig(storage="postgresql://me:SECRETWORD@db/x", out=str(tmp_path))
    save_config(with_password, tmp_path)
    assert mode(tmp_path / "config.yaml") == 0o600
    # Every other file keeps the mode a new file gets: safetensors wrote 0600 weights, which a
    # cache or run shared by a group could not read.
    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    written = [
        p
        for folder in (shipped_run, shared_cache)
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    ]
    assert any(p.suffix == ".safetensors" for p in written)
    assert {str(p): oct(mode(p)) for p in written if mode(p) != expected} == {}

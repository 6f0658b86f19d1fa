"""The command line, end to end, as a user runs it."""

from __future__ import annotations

import pandas as pd
import pytest

from autodistill.cli import main
from tests.conftest import FAST, copy_run


@pytest.fixture()
def run(tmp_path, capsys, shared_cache):
    def run(*args: str) -> tuple[int, str, str]:
        code = main(
            ["search", *FAST, "--out", str(tmp_path), "--cache-dir", str(shared_cache), *args]
        )
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_search_writes_the_front_and_resumes(run, tmp_path, capsys, monkeypatch):
    code, out, _ = run()
    assert code == 0
    run_dir = tmp_path / "digits-default"
    for name in (
        "config.yaml",
        "trials.csv",
        "pareto.csv",
        "pareto.png",
        "teacher.json",
        "study.journal",
    ):
        assert (run_dir / name).is_file(), name
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3
    for column in (
        "number",
        "state",
        "family",
        "arch",
        "params",
        "flops",
        "latency_ms",
        "val_accuracy",
        "duration_s",
        "pareto",
        "failure_reason",
        "param.lr",
        "latency_runtime",
        "latency_precision",
        "latency_device",
        "latency_hardware",
        "latency_threads",
        "latency_batch",
        "latency_spread",
        "latency_disturbed",
    ):
        assert column in trials.columns, column
    timed = trials[trials["latency_ms"].notna()]
    assert (timed["latency_runtime"] == "onnxruntime").all()  # the default: what export ships
    assert (timed["latency_threads"] == 2).all() and (timed["latency_batch"] == 1).all()
    assert timed["latency_hardware"].str.len().gt(0).all()
    pareto = pd.read_csv(run_dir / "pareto.csv")
    assert set(pareto["number"]) == set(trials.loc[trials["pareto"], "number"])
    assert "Pareto front of digits-default" in out and str(run_dir / "pareto.png") in out

    # A second run finds the teacher cached: it must not even be built.
    import autodistill.teacher as teacher_mod

    def no_teacher(*a, **k):
        raise AssertionError("the teacher was built on a cached run")

    monkeypatch.setattr(teacher_mod, "build_teacher", no_teacher)
    code, out, _ = run("--budget", "4")
    assert code == 0 and "ran 1 trial(s)" in out
    assert len(pd.read_csv(run_dir / "trials.csv")) == 4

    (run_dir / "pareto.png").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "pareto.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "mnits"], "unknown dataset 'mnits'"),
        (["--budget", "0"], "--budget must be a positive number"),
        (["--space", "nope"], "unknown search space 'nope'"),
        (["--sampler", "cmaes"], "unknown sampler 'cmaes'"),
        (["--data", "cifar10", "--data-dir", "/nonexistent"], "--download"),
        (["--max-params", "lots"], "expected a count like 250000"),
        (["--teacher-checkpoint", "/nonexistent.pt"], "does not exist"),
        (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open storage"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(run, args, message, tmp_path):
    code, out, err = run(*args)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    runs = [p for p in tmp_path.iterdir() if p.name != "cache"]
    assert runs == []  # nothing written for a run that could not start


def test_an_unwritable_output_directory_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["search", *FAST, "--out", str(blocker / "results")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to output directory" in err and "--out" in err


def test_a_resumed_run_with_other_settings_is_refused(run, searched_run, tmp_path):
    copy_run(searched_run, tmp_path)
    code, _, err = run("--epochs", "2")
    assert code == 2 and "epochs: 1 -> 2" in err


def test_spaces_lists_every_space(capsys):
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    for name in ("default:", "resnet:", "mobilenetv3:", "convnext:", "vit:", "vit.patch_size"):
        assert name in out


def test_train_rebuilds_a_trial_trains_it_and_tests_it_once(searched_run, tmp_path, capsys):
    import json

    run_dir = copy_run(searched_run, tmp_path)
    assert main(["train", str(run_dir), "--pick", "best", "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    trials = pd.read_csv(run_dir / "trials.csv")
    best = trials[trials["pareto"]].sort_values("val_accuracy", ascending=False).iloc[0]
    student = run_dir / "students" / f"trial-{int(best['number'])}"
    metrics = json.loads((student / "metrics.json").read_text())
    assert (student / "student.safetensors").is_file() and not (student / "checkpoint.pt").exists()
    assert metrics["params"] == best["params"] and metrics["epochs"] == 2
    # The score the search selected it by, and how long that training was.
    assert metrics["search_epochs"] == best["epochs_trained"] == 1
    assert f"(the search's score: {100 * best['val_accuracy']:.2f}% after 1 epoch)" in out
    assert 0 < metrics["test_accuracy"] <= 1 and metrics["retention"] > 0
    learned = metrics["learned"]  # what it learned from the teacher, on test
    assert 0 <= learned["agreement_with_teacher"] <= 1 and learned["split"] == "test"
    assert len(learned["per_class"]) == 10 and 0 <= learned["student_ece"] <= 1
    assert learned["worst_class"] in {c["class"] for c in learned["per_class"]}
    assert "agrees with the teacher on" in out
    assert "retention" in out and "x smaller than the teacher" in out
    assert "already trained" not in out

    assert main(["train", str(run_dir), "--top", "2", "--epochs", "2", "--quiet"]) == 0
    ranking = json.loads((run_dir / "students" / "ranking.json").read_text())
    assert len(ranking["students"]) == 2
    assert ranking["kendall_tau"] in (-1.0, 1.0, None)
    out = capsys.readouterr().out
    assert "Kendall tau" in out
    # The best front point is among the top 2 and was trained above: it says it is reused.
    assert f"trial {int(best['number'])}: " in out and out.count("already trained with this") == 1
    assert "reused" not in json.loads((student / "metrics.json").read_text())
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert "These scores are brief: validation accuracy after 1 epoch of training" in page
    assert "Rank fidelity (train --top K)" in page
    assert "Kendall tau between the search&#x27;s score" in page  # escaped in the page
    assert "<th>its epochs</th>" in page and all(
        s["search_epochs"] == 1 for s in ranking["students"]
    )
    for s in ranking["students"]:
        assert f"<tr><td>{s['trial']}</td>" in page

    assert main(["train", str(run_dir), "--trial", "99"]) == 2
    assert "no trial 99" in capsys.readouterr().err


def test_export_writes_an_onnx_file_that_matches_torch_and_an_int8_one(
    searched_run, tmp_path, capsys
):
    import json

    import numpy as np
    import onnxruntime as ort

    run_dir = copy_run(searched_run, tmp_path)
    assert main(["export", str(run_dir)]) == 2  # nothing trained yet: one clear line
    assert "no fully trained student" in capsys.readouterr().err
    assert main(["train", str(run_dir), "--pick", "smallest", "--epochs", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(run_dir), "--int8"]) == 0
    out = capsys.readouterr().out
    student = next((run_dir / "students").glob("trial-*"))
    figures = json.loads((student / "export.json").read_text())
    assert figures["max_abs_diff"] < 1e-3
    assert figures["onnx_test_accuracy"] == figures["torch_test_accuracy"]
    assert figures["onnx_latency_ms"] > 0
    tried = {r["recipe"]: r for r in figures["int8"]["recipes"]}
    assert {"static-qdq-u8s8", "static-qdq-s8s8", "static-qoperator-u8s8"} <= set(tried)
    shipped = figures["int8"]["shipped"]
    assert figures["int8"]["why"] and figures["int8"]["why"] in out
    if shipped == "fp32":  # no recipe was faster, or all lost too much: no int8 file
        assert not (student / "student.int8.onnx").exists() and "int8_latency_ms" not in figures
    else:  # the fastest recipe within the tolerance of fp32's validation accuracy, and faster
        kept = [
            r
            for r in tried.values()
            if r["latency_ms"] is not None
            and r["val_accuracy"] >= figures["onnx_val_accuracy"] - 0.01
        ]
        assert shipped == min(kept, key=lambda r: r["latency_ms"])["recipe"]
        assert figures["int8_latency_ms"] < figures["onnx_latency_ms"]
        assert (student / "student.int8.onnx").is_file()
        assert abs(figures["int8_test_accuracy"] - figures["torch_test_accuracy"]) < 0.1
    assert "max |onnx - torch|" in out
    # Shipped for the run's --latency-batch (1), as the search timed it; any batch when asked.
    session = ort.InferenceSession(str(student / "student.onnx"))
    assert session.get_inputs()[0].shape == [1, 1, 8, 8] and figures["onnx_batch"] == 1
    with pytest.raises(Exception, match="[Ii]nvalid"):
        session.run(None, {"x": np.zeros((5, 1, 8, 8), dtype=np.float32)})
    assert main(["export", str(run_dir), "--dynamic-batch"]) == 0
    session = ort.InferenceSession(str(student / "student.onnx"))
    for batch in (1, 5):
        x = np.zeros((batch, 1, 8, 8), dtype=np.float32)
        assert session.run(None, {"x": x})[0].shape == (batch, 10)
    assert json.loads((student / "export.json").read_text())["onnx_batch"] == "dynamic"
    # Exported again without --int8: an int8 file left from before would look shipped.
    (student / "student.int8.onnx").write_bytes(b"from an earlier export")
    assert main(["export", str(run_dir)]) == 0
    assert not (student / "student.int8.onnx").exists()
    assert "int8" not in json.loads((student / "export.json").read_text())


def test_limits_nothing_satisfies_end_in_one_line_saying_so_and_keep_the_files(run, tmp_path):
    code, _, err = run("--max-params", "10")
    assert code == 2 and err.count("\n") == 1
    assert "all 3 trials were infeasible, none was trained" in err
    assert "over --max-params 10 (the lowest is " in err
    trials = pd.read_csv(tmp_path / "digits-default" / "trials.csv")
    assert (trials["state"] == "INFEASIBLE").all()
    assert trials["latency_ms"].isna().all()  # never timed: the size limit failed first


def test_a_prefix_of_an_option_is_not_taken_for_it(tmp_path, capsys):
    code = main(["search", *FAST, "--out", str(tmp_path), "--epoch", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "unrecognized arguments: --epoch 1" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["search", "train", "export", "report", "dashboard"])
def test_help_shows_each_default_once(command, capsys):
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in text.split(" --")[1:]:
        said = sum(option.count(w) for w in ("(default:", "by default", "the default"))
        assert said <= 1, option
    assert "(default: None)" not in text


def test_an_image_folder_run_has_a_readable_name():
    from autodistill.config import SearchConfig

    assert SearchConfig(data="imagefolder:/srv/data/my pets/").name == "folder-my_pets-default"
    assert SearchConfig(data="cifar10", space="search/r.yaml").name == "cifar10-r"


def test_report_prints_what_it_found(shipped_run, capsys):
    assert main(["report", str(shipped_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits-default: 3 trials (")
    assert "best val_accuracy" in out and "trained trial" in out and "report.html" in out


def test_a_search_whose_every_trial_failed_says_why_and_exits_2(run, tmp_path, monkeypatch):
    from autodistill.study import objective

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(objective, "train_candidate", broken)
    code, _, err = run("--in-process")  # where the patch is: a worker process would not see it
    assert code == 2 and err.count("\n") == 1
    assert "no trial trained: " in err and "RuntimeError: CUDA error: an illegal memory" in err
    trials = pd.read_csv(tmp_path / "digits-default" / "trials.csv")  # the results are kept
    assert set(trials["state"]) <= {"FAIL", "INFEASIBLE"}


def test_more_threads_than_cores_is_refused(tmp_path, capsys):
    import os

    too_many = str(4 * (os.cpu_count() or 1))
    code = main(["search", "--data", "digits", "--out", str(tmp_path), "--threads", too_many])
    err = capsys.readouterr().err
    assert code == 2 and "cores" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())

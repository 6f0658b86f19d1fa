"""Every mistake a user can make on ``autodistill search``, end to end through the CLI.

Each prints one line naming the problem and its fix, exits with status 2, shows no traceback and
loses nothing already written: a fresh run leaves nothing behind, and a resumed run leaves its
run directory byte for byte as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch

from autodistill.cli import main
from autodistill.families import InputSpec
from autodistill.teacher import build_teacher
from tests.conftest import FAST

RUN = "digits-space"  # the study name of a run with --space space.yaml

# A space of tiny students, and the lines of it that the cases below break. The run uses it as
# space.yaml, and a checkpoint as teacher.pt, both relative to the working directory: a test can
# then change either in its own directory and resume a copy of the run that names them.
SPACE = """\
families:
  resnet:
    stem_stride: 2
    depths: {low: 1, high: 1, per_stage: 4}
    width: {choices: [8, 16]}
distill:
  kd:
    temperature: {low: 1.0, high: 4.0}
    alpha: 0.1  # the teacher is untrained: learn from the labels, or the trial stays at chance
train:
  lr: {low: 0.005, high: 0.02, log: true}
"""


def _space(old: str, new: str) -> str:
    assert old in SPACE, old
    return SPACE.replace(old, new)


def _save_teacher(path: Path, model: torch.nn.Module) -> None:
    torch.save(model.state_dict(), path)


def _resnet(classes: int) -> torch.nn.Module:
    """The test_resnet teacher as built for 8px grey digits; its weights fit when classes=10.
    Its random weights are the same whatever ran before in the process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_teacher("test_resnet", InputSpec(1, 8, classes))


def _search(out: Path, cache: Path, *args: str) -> int:
    return main(
        [
            "search",
            *FAST,
            "--space",
            "space.yaml",
            "--teacher-checkpoint",
            "teacher.pt",
            "--out",
            str(out),
            "--cache-dir",
            str(cache),
            *args,
        ]
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A finished run in ``out/digits-space``, and the teacher cache every test shares."""
    root = tmp_path_factory.mktemp("made")
    (root / "space.yaml").write_text(SPACE)
    _save_teacher(root / "teacher.pt", _resnet(10))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert _search(root / "out", root / "cache", "--budget", "1") == 0  # one trial will do
    return root


@pytest.fixture()
def user(made, tmp_path, monkeypatch, capsys):
    """Runs ``autodistill search`` in a fresh directory holding the run's space and teacher."""
    shutil.copy(made / "space.yaml", tmp_path / "space.yaml")
    shutil.copy(made / "teacher.pt", tmp_path / "teacher.pt")
    monkeypatch.chdir(tmp_path)

    def search(*args: str, out: Path = tmp_path / "out") -> tuple[int, str, str]:
        capsys.readouterr()
        code = _search(out, made / "cache", *args)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return search


def assert_one_clear_line(code: int, out: str, err: str, problem: tuple, fix: tuple) -> None:
    """Exit status 2 and one line on stderr that names the problem and the fix."""
    assert code == 2, err
    assert "Traceback" not in out + err
    assert err.startswith("autodistill: error: ") and err.count("\n") == 1, err
    for word in (*problem, *fix):
        assert word in err, f"{word!r} missing from: {err}"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# Each case: (changes to the user's directory, extra arguments, words of the problem, of the fix).
# A change is {file name: text, bytes, or a function that writes the file at the path it is given}.
CASES = {
    "unknown dataset": (
        {},
        ["--data", "mnits"],
        ("unknown dataset 'mnits'",),
        ("known: ", "digits", "mnist5k"),
    ),
    "missing data directory": (
        {},
        ["--data", "cifar10", "--data-dir", "/nonexistent"],
        ("cifar10 files not found", "/nonexistent/cifar-10-batches-py"),
        ("pass --download", "--data-dir"),
    ),
    "missing image folder": (
        {},
        ["--data", "imagefolder:/nonexistent"],
        ("image folder /nonexistent not found",),
        ("existing folder",),
    ),
    "malformed YAML": (
        {"space.yaml": _space("    depths:", "     depths:")},
        [],  # one space too many
        ("space.yaml: malformed YAML at line 4,", "mapping values are not allowed"),
        ("fix the YAML there",),
    ),
    "malformed YAML, unclosed bracket": (
        {"space.yaml": _space("[8, 16]}", "[8, 16]")},
        [],  # seen on line 6, opened on 5
        ("space.yaml: malformed YAML at line 6,", "flow mapping started at line 5"),
        ("fix the YAML there",),
    ),
    "unknown family": (
        {"space.yaml": _space("resnet:", "resnt:")},
        [],
        ("space.yaml: families: unknown family 'resnt'",),
        ("known: convnext, from_teacher, mobilenetv3, resnet, vit",),
    ),
    "unknown parameter": (
        {"space.yaml": _space("stem_stride:", "stem_strde:")},
        [],
        ("space.yaml: families.resnet: unknown parameter 'stem_strde'",),
        ("allowed: stem_stride, depths, width",),
    ),
    "unknown loss": (
        {"space.yaml": _space("kd:", "kl:")},
        [],
        ("space.yaml: distill: unknown loss 'kl'",),
        ("known: ", "kd"),
    ),
    "unknown parameter of a loss": (
        {"space.yaml": _space("temperature:", "temprature:")},
        [],
        ("space.yaml: distill.kd: unknown parameter 'temprature'",),
        ("allowed: temperature, alpha",),
    ),
    "empty choices": (  # (low == high is not empty: it fixes the value)
        {"space.yaml": _space("[8, 16]", "[]")},
        [],
        ("space.yaml: families.resnet.width:",),
        ("'choices' must be a non-empty list",),
    ),
    "empty range of stages": (
        {"space.yaml": _space("per_stage: 4", "per_stage: 0")},
        [],
        ("space.yaml: families.resnet.depths:", "got 0"),
        ("'per_stage' must be 1..8",),
    ),
    "range with no whole step": (
        {"space.yaml": _space("{choices: [8, 16]}", "{low: 8, high: 12, step: 8}")},
        [],
        ("space.yaml: families.resnet.width:", "8..12 is not a whole number of steps 8"),
        ("make high - low a multiple of step",),
    ),
    "inverted range": (
        {"space.yaml": _space("low: 0.005, high: 0.02", "low: 0.02, high: 0.005")},
        [],
        ("space.yaml: train.lr: inverted range: low 0.02 > high 0.005",),
        ("swap them",),
    ),
    "width not a whole number": (  # was built as width 12
        {"space.yaml": _space("[8, 16]", "[8, 12.5]")},
        [],
        ("space.yaml: families.resnet.width: choice", "got 12.5 (not a whole number)"),
        ("must be an integer in [1, 2048]",),
    ),
    "negative temperature": (  # trained on inverted soft targets
        {"space.yaml": _space("{low: 1.0, high: 4.0}", "-1.0")},
        [],
        ("space.yaml: distill.kd.temperature", "got -1.0"),
        ("must be a number > 0 and <= 100",),
    ),
    "a 500-block stage": (  # a 196 M-parameter student, trained for minutes
        {"space.yaml": _space("{low: 1, high: 1, per_stage: 4}", "{low: 1, high: 500}")},
        [],
        ("space.yaml: families.resnet.depths: high", "got 500"),
        ("must be an integer in [1, 64]",),
    ),
    "infinite limit": (
        {},
        ["--max-params", "inf"],
        ("--max-params", "got 'inf'"),
        ("expected a positive count",),
    ),
    "teacher checkpoint of another model": (
        {"teacher.pt": lambda p: _save_teacher(p, timm.create_model("test_vit", num_classes=10))},
        [],
        ("teacher checkpoint teacher.pt does not fit --teacher test_resnet", "unexpected"),
        ("--teacher-checkpoint trained on this data", "--teacher it was saved from"),
    ),
    "teacher checkpoint for other classes": (
        {"teacher.pt": lambda p: _save_teacher(p, _resnet(3))},
        [],
        ("does not fit --teacher test_resnet", "its classifier has 3 classes but the data has 10"),
        ("--teacher-checkpoint trained on this data", "leave it out to train one"),
    ),
    "teacher checkpoint that is not one": (
        {"teacher.pt": b"not a checkpoint"},
        [],
        ("cannot read teacher checkpoint teacher.pt",),
        ("torch.save",),
    ),
    "zero budget": ({}, ["--budget", "0"], ("--budget", "got 0"), ("must be a positive number",)),
    "promotions without multi-fidelity": (
        {},
        ["--promotions", "5"],
        ("--promotions needs --fidelity multi",),
        ("a brief search promotes nothing",),
    ),
    "negative promotion time": (
        {},
        ["--fidelity", "multi", "--epochs", "2", "--promotion-time", "-1"],
        ("--promotion-time", "got -1.0"),
        ("0 (no bound)",),
    ),
    "multi-fidelity from one epoch": (
        {},
        ["--fidelity", "multi", "--epochs", "1"],
        ("--fidelity multi needs --epochs 2",),
        ("a first rung with a stable phase",),
    ),
    "accuracy floor in percent": (
        {},
        ["--min-accuracy", "95%"],
        ("--min-accuracy '95%'",),
        ("in (0, 1]", "(0.95x)"),
    ),
    "negative budget": (
        {},
        ["--budget", "-1"],
        ("--budget", "got -1"),
        ("must be a positive number",),
    ),
    "unreachable database": (
        {},
        ["--storage", "postgresql://nobody@127.0.0.1:1/none"],
        ("cannot open storage 'postgresql://nobody@127.0.0.1:1/none'",),
        ("check the URL", "database server is running"),
    ),
    "journal in a missing folder": (
        {},
        ["--storage", "/nonexistent/study.journal"],
        ("storage '/nonexistent/study.journal'", "/nonexistent does not exist"),
        ("create it", "--storage"),
    ),
}
# The dataset is part of what a study is (a resumed run that changes it is refused as such); a
# resumed run meets every other mistake: in the files it reads again, or in the options it may
# change between sessions.
ON_RESUME = [
    name
    for name in CASES
    if name not in {"unknown dataset", "missing data directory", "missing image folder"}
]


def _cases(names: list[str]) -> list:
    params = []
    for name in names:
        changes, args, problem, fix = CASES[name]
        params.append(pytest.param(changes, args, problem, fix, id=name))
    return params


def _apply(changes: dict) -> None:
    for name, content in changes.items():
        if callable(content):
            content(Path(name))
        elif isinstance(content, bytes):
            Path(name).write_bytes(content)
        else:
            Path(name).write_text(content)


@pytest.mark.parametrize(("changes", "args", "problem", "fix"), _cases(list(CASES)))
def test_a_fresh_run_refuses_bad_input_and_writes_nothing(
    user, tmp_path, changes, args, problem, fix
):
    _apply(changes)
    assert_one_clear_line(*user(*args), problem, fix)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("changes", "args", "problem", "fix"), _cases(ON_RESUME))
def test_a_resumed_run_refuses_bad_input_and_keeps_its_files(
    made, user, tmp_path, changes, args, problem, fix
):
    run_dir = tmp_path / "out" / RUN
    shutil.copytree(made / "out" / RUN, run_dir)
    before = _files(run_dir)
    assert {"config.yaml", "study.journal", "trials.csv"} <= set(before)
    _apply(changes)
    assert_one_clear_line(*user(*args), problem, fix)
    assert _files(run_dir) == before


def test_an_unwritable_output_directory_is_refused_before_any_work(user, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("kept")
    result = user(out=blocker / "results")
    assert_one_clear_line(
        *result,
        ("cannot write to output directory", "is not a writable folder"),
        ("choose another with --out",),
    )
    assert blocker.read_text() == "kept"


def test_limits_nothing_satisfies_keep_the_results_and_exit_2(user, tmp_path):
    code, out, err = user("--max-params", "10")
    assert_one_clear_line(
        code,
        out,
        err,
        ("all 3 trials were infeasible, none was trained", "3 over --max-params 10"),
        ("loosen the limits or choose another --space", "results kept in"),
    )
    run_dir = tmp_path / "out" / RUN
    for name in ("config.yaml", "study.journal", "trials.csv", "pareto.csv"):
        assert (run_dir / name).is_file(), name
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3 and (trials["state"] == "INFEASIBLE").all()


def test_a_floor_no_student_reaches_keeps_the_results_and_exits_2(user, tmp_path):
    code, out, err = user("--min-accuracy", "0.9999")
    assert_one_clear_line(
        code,
        out,
        err,
        ("no student reached --min-accuracy 0.9999", "3 trained below it"),
        ("lower the floor", "results kept in"),
    )
    trials = pd.read_csv(tmp_path / "out" / RUN / "trials.csv")
    assert (trials["state"] == "BELOW_FLOOR").all() and not trials["pareto"].any()
    assert trials["failure_reason"].str.contains("below the floor 99.99%").all()


def test_a_run_resumed_with_an_edited_space_is_refused_and_keeps_its_files(made, user, tmp_path):
    # A valid edit: the trials left would sample another space, and failed (exit 0) before.
    run_dir = tmp_path / "out" / RUN
    shutil.copytree(made / "out" / RUN, run_dir)
    before = _files(run_dir)
    _apply({"space.yaml": _space("[8, 16]", "[8, 24]")})
    assert_one_clear_line(
        *user("--budget", "2"),
        ("made with another search space", "edited"),
        ("restore it", "another --study-name"),
    )
    assert _files(run_dir) == before

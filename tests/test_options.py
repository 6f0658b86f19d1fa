"""Every option is defined once, in its options dataclass: the CLI's flag is generated from the
field, with the field's default, and the API passes the same keyword on unchanged."""

from __future__ import annotations

import inspect

import pytest

from autodistill import api, cli
from autodistill.config import SearchConfig
from autodistill.options import Declared, declared
from autodistill.ship.options import CompressOptions, ExportOptions, TrainOptions

COMMANDS = {
    "search": SearchConfig,
    "train": TrainOptions,
    "export": ExportOptions,
    "compress": CompressOptions,
}
API = {"search": api.search, "train": api.train, "export": api.export, "compress": api.compress}
RUN = {"search": [], "train": ["run"], "export": ["run"], "compress": ["run"]}


def _fields() -> list[tuple[str, str, Declared, object]]:
    """(command, dest, field, its default) for every option, nested ones by their dotted dest."""
    out = []
    for command, cls in COMMANDS.items():
        for d in declared(cls):
            if d.nested:
                out += [
                    (command, f"{d.name}.{n.name}", n, getattr(d.default, n.name))
                    for n in declared(d.kind)
                ]
            else:
                out.append((command, d.name, d, d.default))
    return out


FIELDS = _fields()


def _flags(command: str) -> dict[str, str]:
    """dest -> its flag, in the command's generated parser."""
    sub = cli.build_parser()._subparsers._group_actions[0].choices[command]
    return {a.dest: a.option_strings[0] for a in sub._actions if a.option_strings}


def _other(d: Declared, default: object) -> tuple[list[str], object]:
    """Command-line text that gives the option a value other than its default, and the value."""
    if d.option.per_objective:
        return ["--max-params", "5k"], {"params": 5000}
    if d.kind is bool:
        return [], not default
    if d.option.allowed():
        choice = next(c for c in d.option.allowed() if c != default)
        return [choice], choice
    if d.name == "prune":
        return ["0.3"], (0.3,)
    if d.name == "objectives":
        return ["val_accuracy,params"], "val_accuracy,params"
    if d.kind is int:
        return [str((default or 0) + 2)], (default or 0) + 2
    if d.kind is float:
        return ["0.375"], 0.375
    return ["something"], "something"


@pytest.mark.parametrize(
    ("command", "dest", "field", "default"), FIELDS, ids=[f"{c}-{d}" for c, d, _, _ in FIELDS]
)
def test_every_option_has_its_flag_its_keyword_and_one_default(command, dest, field, default):
    parser = cli.build_parser()
    flags = _flags(command)
    if field.option.per_objective:
        assert "max_params" in flags
    else:
        assert dest in flags, f"{command} has no flag for {dest}"
        assert field.option.help, f"{dest} has no help"
    # No flag given: the field's own default, the only one there is.
    given = cli._options(parser.parse_args([command, *RUN[command]]), COMMANDS[command])
    head, _, tail = dest.partition(".")
    assert (given[head][tail] if tail else given[head]) == default
    # The flag given: its value reaches the same keyword.
    text, value = _other(field, default)
    flag = "--max-params" if field.option.per_objective else flags[dest]
    argv = [command, *RUN[command], *([] if field.option.per_objective else [flag]), *text]
    got = cli._options(parser.parse_args(argv), COMMANDS[command])
    assert (got[head][tail] if tail else got[head]) == value
    # The API spells no option out again (a second default could drift): it passes them on.
    params = inspect.signature(API[command]).parameters
    assert head not in params
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_the_api_takes_each_option_by_the_fields_name():
    config = SearchConfig(
        **{
            "budget": 7,
            "early_stop": False,
            "heartbeat": 5,
            "limits": {"params": 1e4},
            "latency": {"threads": 1, "batch": 2},
            "fidelity": {"kind": "multi", "promotions": 2},
        }
    )
    assert (config.budget, config.early_stop, config.heartbeat) == (7, False, 5)
    assert (config.latency.threads, config.latency.batch, config.latency.runtime) == (
        1,
        2,
        "onnxruntime",
    )
    assert config.fidelity.kind == "multi" and config.resolved_promotions == 2
    assert TrainOptions(pick="best").pick == "best"
    assert CompressOptions(prune=(0.5, 0.25, 0.5)).prune == (0.25, 0.5)
    assert ExportOptions(int8_tolerance=0.02).int8_tolerance == 0.02


@pytest.mark.parametrize(
    ("cls", "given", "said"),
    [
        (SearchConfig, {"budget": 0}, "--budget must be a positive number"),
        (
            SearchConfig,
            {"fidelity": {"kind": "weekly"}},
            "--fidelity 'weekly': choose brief or multi",
        ),
        (SearchConfig, {"latency": {"batch": 0}}, "--latency-batch must be a positive integer"),
        (TrainOptions, {"trial": 1, "top": 3}, "give one of --trial, --pick"),
        (TrainOptions, {"pick": "nicest"}, "unknown pick rule 'nicest'"),
        (CompressOptions, {"prune": (1.5,)}, "a pruning ratio is the fraction"),
        (ExportOptions, {"int8_tolerance": 2.0}, "--int8-tolerance must be a fraction"),
    ],
)
def test_a_wrong_option_is_one_line_naming_its_flag(cls, given, said):
    from autodistill.errors import UserError

    with pytest.raises(UserError, match=said.replace("(", r"\(")):
        cls(**given)


def test_an_image_folder_run_made_before_image_size_is_read_at_32_px_as_it_was_made():
    from autodistill.rundir import config_from

    old = {"config": {"data": "imagefolder:/photos", "objectives": ["val_accuracy", "params"]}}
    assert config_from(old).image_size == 32  # what every folder was read at then
    assert config_from({"config": {"data": "digits"}}).image_size is None  # its own 8 px
    from autodistill.errors import UserError

    with pytest.raises(UserError, match="--image-size must be at least 8 pixels, got 4"):
        SearchConfig(image_size=4)


def test_an_unknown_keyword_is_one_line_naming_the_nearest_option():
    from autodistill.errors import UserError

    with pytest.raises(UserError, match="unknown option 'budgett'; did you mean 'budget'"):
        api.search(budgett=5)
    with pytest.raises(UserError, match=r"unknown option 'max_params'; give limits=\{'params'"):
        api.train("run", max_params=5)

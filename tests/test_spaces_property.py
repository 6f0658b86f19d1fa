"""Property: any space document or file parses to a valid space or gives one clear error."""

from __future__ import annotations

import copy
import datetime
import math
import tempfile
import warnings
from pathlib import Path

import optuna
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from autodistill.errors import UserError
from autodistill.families import FAMILIES
from autodistill.losses import LOSSES
from autodistill.spaces import (
    SPACES_DIR,
    TRAIN_PARAMS,
    Param,
    SearchSpace,
    list_spaces,
    load_space,
    parse_space,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARAM_NAMES = sorted(
    {p for f in FAMILIES.values() for p in f.params}
    | {p for loss in LOSSES.values() for p in loss.params}
    | set(TRAIN_PARAMS)
)

# ----------------------------------------------------------------------------- junk

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-5, 300),
    st.floats(),
    st.text(max_size=6),
    st.dates(),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=5), scalars), inner, max_size=3),
    ),
    max_leaves=8,
)
names = st.sampled_from([*PARAM_NAMES, "bogus", "from"])
spec_keys = st.sampled_from(["choices", "low", "high", "log", "step", "per_stage", "from", "x"])
numbers = st.one_of(
    st.integers(-3, 300), st.floats(-10.0, 10.0), st.sampled_from([0, 1, 2, 4, 8, 0.5, 1e-4])
)


@st.composite
def ranges(draw, *, sound: bool = False) -> dict:
    """A ``low``/``high`` (or ``choices``) spec. Unless ``sound``, it is often inverted, empty,
    zero-stepped or log-from-zero, and sometimes has a stray key or lacks one."""
    spec: dict = {}
    if draw(st.booleans()):
        spec["low"], spec["high"] = draw(numbers), draw(numbers)
        if sound:
            spec["low"], spec["high"] = sorted((spec["low"], spec["high"]))
        if draw(st.integers(0, 2)) == 0:
            spec["step"] = draw(st.sampled_from([1, 0.5]) if sound else st.one_of(numbers, scalars))
        elif draw(st.integers(0, 2)) == 0:
            spec["log"] = spec["low"] > 0 if sound else draw(st.one_of(st.booleans(), scalars))
    else:
        options = st.one_of(numbers, st.text(max_size=3)) if sound else st.one_of(numbers, junk)
        spec["choices"] = draw(st.lists(options, min_size=sound, max_size=4, unique_by=repr))
    if draw(st.integers(0, 4)) == 0:
        spec["per_stage"] = draw(st.integers(1, 8) if sound else st.one_of(names, junk))
    if not sound and draw(st.integers(0, 4)) == 0:
        spec[draw(spec_keys)] = draw(junk)
    if not sound and spec and draw(st.integers(0, 4)) == 0:
        del spec[draw(st.sampled_from(sorted(spec)))]
    return spec


specs = st.one_of(scalars, numbers, ranges(), st.lists(scalars, max_size=3), junk)
groups = st.dictionaries(names, specs, max_size=6)
documents = st.one_of(
    junk,
    st.fixed_dictionaries(
        {},
        optional={
            "families": st.one_of(
                junk,
                st.dictionaries(st.sampled_from([*sorted(FAMILIES), "resnt"]), groups, max_size=3),
            ),
            "distill": st.one_of(
                junk, st.dictionaries(st.sampled_from([*sorted(LOSSES), "kl"]), groups, max_size=3)
            ),
            "train": st.one_of(junk, groups),
            "description": junk,
            "extra": junk,
        },
    ),
)


@st.composite
def well_formed(draw) -> dict:
    """Real families and losses with every required key, each parameter a random spec: the
    documents that get past the structure checks and exercise the range checks."""
    fams = draw(st.lists(st.sampled_from(sorted(FAMILIES)), min_size=1, max_size=3, unique=True))
    losses = draw(st.lists(st.sampled_from(sorted(LOSSES)), min_size=1, max_size=2, unique=True))
    param = st.one_of(numbers, ranges(sound=draw(st.booleans())))
    doc = {
        "families": {f: {p: draw(param) for p in FAMILIES[f].params} for f in fams},
        "distill": {
            name: {p: draw(param) for p in LOSSES[name].params if draw(st.booleans())}
            for name in losses
        },
        "train": {"lr": draw(param)}
        | draw(st.dictionaries(st.sampled_from(tuple(TRAIN_PARAMS)), param)),
    }
    if draw(st.integers(0, 3)) == 0:  # one entry anywhere deleted or replaced by junk
        path = draw(st.sampled_from(sorted(_paths(doc), key=repr)))
        _replace(doc, path, draw(st.one_of(st.none(), junk)))
    return doc


def _shipped() -> list[dict]:
    return [yaml.safe_load((SPACES_DIR / f"{n}.yaml").read_text()) for n in list_spaces()]


def _paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))


def _replace(doc: dict, path: tuple, value) -> None:
    """Set ``doc[path]`` to ``value``; ``None`` deletes the entry instead."""
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@st.composite
def mutated(draw) -> dict:
    """A shipped space with one entry replaced by something random, or deleted."""
    doc = copy.deepcopy(draw(st.sampled_from(_shipped())))
    for _ in range(draw(st.integers(1, 3))):
        paths = sorted(_paths(doc), key=repr)
        if not paths:
            break
        _replace(doc, draw(st.sampled_from(paths)), draw(st.one_of(st.none(), specs)))
    return doc


# ----------------------------------------------------------------------------- checks


def _suggest_with(trial: optuna.Trial):
    """Sample a Param through Optuna, as the search does."""

    def suggest(name: str, p: Param):
        if p.kind == "categorical":
            return trial.suggest_categorical(name, list(p.choices))
        if p.kind == "int":
            return trial.suggest_int(
                name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        return trial.suggest_float(name, float(p.low), float(p.high), step=p.step, log=p.log)

    return suggest


def _check_param(p: Param) -> None:
    """What every parsed parameter promises the sampler."""
    assert p.kind in ("fixed", "categorical", "int", "float")
    if p.kind == "fixed":
        assert isinstance(p.value, str | int | float | bool)
        assert not isinstance(p.value, float) or math.isfinite(p.value)
    elif p.kind == "categorical":
        assert p.choices and len(set(map(repr, p.choices))) == len(p.choices)
    else:
        assert math.isfinite(p.low) and math.isfinite(p.high) and p.low < p.high
        assert p.step is None or (p.step > 0 and not p.log)
        assert not p.log or p.low > 0
        if p.kind == "int":
            assert all(isinstance(v, int) for v in (p.low, p.high, p.step or 1))
    if isinstance(p.per_stage, int):
        assert 1 <= p.per_stage <= 8


def _check_valid(space: SearchSpace) -> None:
    """A space that parsed is usable: its parameters are sound, and sampling it through Optuna
    gives candidates with every parameter of the chosen family, one value per stage."""
    assert space.families and space.losses and "lr" in space.train
    for group in (*space.families.values(), *space.losses.values(), space.train):
        for p in group.values():
            _check_param(p)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        with warnings.catch_warnings():  # a float step that does not divide the range
            warnings.simplefilter("ignore", UserWarning)
            cand = space.sample(_suggest_with(trial))
        params = space.families[cand.family]
        assert set(cand.arch) == set(FAMILIES[cand.family].params) == set(params)
        for key, p in params.items():
            if isinstance(p.per_stage, int):
                assert len(cand.arch[key]) == p.per_stage
            elif isinstance(p.per_stage, str):
                assert len(cand.arch[key]) == cand.arch[p.per_stage]
        assert set(cand.distill) == set(space.losses[cand.loss])
        domains = (
            (FAMILIES[cand.family].domains, cand.arch),
            (LOSSES[cand.loss].domains, cand.distill),
            (TRAIN_PARAMS, cand.train),
        )
        for domain, values in domains:  # every value drawn is one its builder takes
            for key, value in values.items():
                for v in value if isinstance(value, list) else [value]:
                    assert domain[key].problem(v) is None, (key, v)
        study.tell(trial, 0.0)


def _kind(message: str) -> str:
    """The problem a message names, without its place: for ``--hypothesis-show-statistics``."""
    parts = message.split(": ")[1:]
    return " ".join(next((p for p in parts if " " in p), parts[-1]).split()[:3])


def _check_error(exc: UserError, source: str) -> None:
    message = str(exc)
    assert message.strip() == message and "\n" not in message, message
    assert message.startswith(f"{source}: "), message  # names the file it is about


@SETTINGS
@given(st.one_of(documents, mutated(), well_formed()))
@example({"families": {"resnet": {"from": "a\x00b"}}})  # no file system takes the name
@example({"families": {"resnet": {"from": "default"}}})  # a block that inherits in turn
@example({"families": {"resnet": {"stem_stride": datetime.date(2001, 1, 1)}}})
@example({"families": {"resnet": {"stem_stride": math.nan}}})
@example(
    {
        "families": {"resnet": {"stem_stride": 1, "depths": 1, "width": 8}},
        "distill": {"ce": {"per_stage": "alpha"}},
        "train": {"lr": 0.01},
    }
)  # a parameter for a loss that takes none
def test_random_documents_give_a_valid_space_or_one_clear_error(doc):
    try:
        space = parse_space(doc)
    except UserError as exc:
        _check_error(exc, "<memory>")
        event(f"error: {_kind(str(exc))}")
        return
    # Anything else that parse_space raises fails this test: a crash is never an answer.
    event("valid space")
    _check_valid(space)


def _corrupt(text: str, draw) -> str:
    at = draw(st.integers(0, len(text)))
    cut = draw(st.integers(0, 5))
    return text[:at] + draw(st.text(max_size=4)) + text[at + cut :]


@st.composite
def files(draw) -> bytes:
    """Bytes of a space file: a shipped or random document as YAML, with a few characters
    inserted or cut anywhere, or raw bytes (not UTF-8, control characters)."""
    kind = draw(st.sampled_from(["yaml", "corrupt", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    doc = draw(st.one_of(mutated(), st.sampled_from(_shipped()), documents))
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return (_corrupt(text, draw) if kind == "corrupt" else text).encode()


@settings(SETTINGS, max_examples=200)
@given(files())
@example(b"families:\n  resnet: {width: 2001-13-01}\n")  # YAML reads a date, and fails
@example(b"families:\n  resnet: {width: !!int eight}\n")
@example("# caf\xe9\nfamilies: {}\n".encode("latin-1"))  # not UTF-8
@example(b"families: \x07\n")  # a character YAML refuses, reported over two lines
@example(b"[" * 5000 + b"]" * 5000)  # deeper than Python's recursion limit
def test_random_space_files_give_a_valid_space_or_one_clear_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_bytes(content)
        try:
            space = load_space(str(path))
        except UserError as exc:
            _check_error(exc, str(path))
            event(f"error: {_kind(str(exc))}")
            return
    event("valid space")
    _check_valid(space)

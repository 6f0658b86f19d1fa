"""Property: any document given to the space parser yields a valid space or one clear error."""

from __future__ import annotations

import copy
import random

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autodistill.errors import UserError
from autodistill.families import FAMILIES
from autodistill.losses import LOSSES
from autodistill.spaces import SPACES_DIR, Param, SearchSpace, list_spaces, parse_space

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.floats(), st.text(max_size=6)
)
names = st.sampled_from(
    sorted({p for f in FAMILIES.values() for p in f.params}
           | {p for loss in LOSSES.values() for p in loss.params}
           | {"lr", "weight_decay", "batch_size", "bogus"})
)  # fmt: skip
spec_keys = st.sampled_from(["choices", "low", "high", "log", "step", "per_stage", "from", "x"])
specs = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(spec_keys, st.one_of(scalars, st.lists(scalars, max_size=4)), max_size=4),
)
groups = st.dictionaries(names, specs, max_size=6)
documents = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.fixed_dictionaries(
        {},
        optional={
            "families": st.one_of(scalars, st.dictionaries(
                st.sampled_from([*sorted(FAMILIES), "resnt"]), groups, max_size=3)),
            "distill": st.one_of(scalars, st.dictionaries(
                st.sampled_from([*sorted(LOSSES), "kl"]), groups, max_size=3)),
            "train": st.one_of(scalars, groups),
            "description": scalars,
            "extra": scalars,
        },
    ),
)  # fmt: skip


def _shipped() -> list[dict]:
    return [yaml.safe_load((SPACES_DIR / f"{n}.yaml").read_text()) for n in list_spaces()]


def _leaves(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _leaves(v, (*prefix, k))


@st.composite
def mutated(draw) -> dict:
    """A shipped space with one entry replaced by something random, or deleted."""
    doc = copy.deepcopy(draw(st.sampled_from(_shipped())))
    path = draw(st.sampled_from(sorted(_leaves(doc))))
    node = doc
    for key in path[:-1]:
        node = node[key]
    if draw(st.booleans()):
        del node[path[-1]]
    else:
        node[path[-1]] = draw(specs)
    return doc


def _sample_all(space: SearchSpace) -> None:
    rng = random.Random(0)

    def suggest(name: str, p: Param):
        if p.kind == "categorical":
            return rng.choice(p.choices)
        if p.kind == "int":
            return rng.randrange(int(p.low), int(p.high) + 1, int(p.step or 1))
        return rng.uniform(p.low, p.high)

    for _ in range(3):
        space.sample(suggest)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(documents, mutated()))
def test_random_documents_give_a_valid_space_or_one_clear_error(doc):
    try:
        space = parse_space(doc)
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    _sample_all(space)  # a space that parsed must also sample without crashing

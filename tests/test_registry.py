"""Every axis that grows is one kind of registry: a name registered twice is refused, an
unknown one is a UserError that lists the known ones."""

from __future__ import annotations

import pytest

from autodistill.data.sources import DATASETS
from autodistill.errors import UserError
from autodistill.families import FAMILIES
from autodistill.losses import LOSSES
from autodistill.objectives import OBJECTIVES
from autodistill.registry import Registry
from autodistill.study import SAMPLERS

REGISTRIES = {
    "family": FAMILIES,
    "loss": LOSSES,
    "objective": OBJECTIVES,
    "dataset": DATASETS,
    "sampler": SAMPLERS,
}


@pytest.mark.parametrize("what", list(REGISTRIES))
def test_each_registry_refuses_twice_and_names_the_known_ones(what):
    registry = REGISTRIES[what]
    assert isinstance(registry, Registry) and registry.what == what
    first = next(iter(registry))
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(first, registry[first])
    with pytest.raises(UserError) as err:
        registry.get("no-such-thing")
    assert str(err.value) == (
        f"unknown {what} 'no-such-thing'; known: {', '.join(registry.names())}"
    )
    assert set(registry.names()) == set(registry) and len(registry) >= 2


def test_a_registry_keeps_registration_order_where_it_means_something():
    r: Registry[int] = Registry("thing", sort_known=False)
    r.register("b", 1)
    r.register("a", 2)
    assert r.names() == ["b", "a"] and dict(r) == {"b": 1, "a": 2}
    assert Registry("x").names() == []

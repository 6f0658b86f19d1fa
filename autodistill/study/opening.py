"""Opening a study: its sampler, and the identity (objectives, teacher, settings, search space)
a worker must share with the study before it may add trials to it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import BaseStorage

from autodistill.errors import UserError
from autodistill.identity import (
    INPUT_ATTR,
    OBJECTIVES_ATTR,
    SETTINGS_ATTR,
    SPACE_ATTR,
    changed_settings,
)
from autodistill.objectives import DEFAULT, get_objective
from autodistill.registry import Registry
from autodistill.signals import deferred
from autodistill.spaces import Param, SearchSpace
from autodistill.study.storage import claim, quiet_experimental

JOINED_ATTR = "workers_joined"  # study user attribute: how many workers have joined it


SamplerFactory = Callable[[int, int], optuna.samplers.BaseSampler]  # (seed, budget) -> sampler
SAMPLERS: Registry[SamplerFactory] = Registry("sampler", sort_known=False)


def _tpe(seed: int, budget: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE with ``group`` models each family's parameters jointly, and
    ``constant_liar`` keeps parallel workers from proposing the same point."""
    with quiet_experimental():  # ``group`` is stable in practice, labelled experimental
        return optuna.samplers.TPESampler(
            multivariate=True,
            group=True,
            constant_liar=True,
            n_startup_trials=max(5, min(10, budget // 4)),
            seed=seed,
        )


SAMPLERS.register("tpe", _tpe)
SAMPLERS.register("random", lambda seed, budget: optuna.samplers.RandomSampler(seed=seed))
SAMPLERS.register(
    "nsga2",
    lambda seed, budget: optuna.samplers.NSGAIISampler(
        population_size=max(4, min(20, budget // 3)), seed=seed
    ),
)
SAMPLERS.register("gp", lambda seed, budget: optuna.samplers.GPSampler(seed=seed))


def make_sampler(name: str, *, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    """The sampler for ``name``; TPE by default, as it handles conditional spaces in tens of
    trials."""
    return SAMPLERS.get(name)(seed, budget)


def check_sampler(name: str) -> None:
    SAMPLERS.get(name)  # an unknown name is one line that lists the known ones


def open_study(
    storage: BaseStorage,
    name: str,
    *,
    objectives: tuple[str, ...] = DEFAULT,
    sampler_name: str,
    seed: int,
    budget: int,
    identity: dict[str, str] | None = None,
    space: SearchSpace | None = None,
    samples: bool = True,
) -> optuna.Study:
    """Create the study, or join it to resume or to add a worker.

    The worker's one sampler is seeded from ``seed``, the trials the study already holds and
    the number of workers that joined before it: the same command proposes the same trials,
    a resumed study continues the same way every time, and workers that start together do not
    propose the same ones. ``identity`` (teacher weights, cache key, settings) is stored with
    the study by the first worker; a later worker with another one is refused before it
    changes anything, as its trials would not compare. A study made before objectives were
    recorded (accuracy in percent) is refused too.
    """
    check_sampler(sampler_name)
    directions = [get_objective(n).direction for n in objectives]
    with deferred(), claim(storage, name):
        # Look before creating: a journal records even a refused create_new_study, and a
        # refused worker must leave the study as it found it.
        study_id = _study_id(storage, name)
        if study_id is None:
            try:
                study_id = storage.create_new_study(
                    [optuna.study.StudyDirection[d.upper()] for d in directions], name
                )
                storage.set_study_user_attr(study_id, OBJECTIVES_ATTR, list(objectives))
            except optuna.exceptions.DuplicatedStudyError:  # another machine made it meanwhile
                study_id = storage.get_study_id_from_name(name)
        attrs = storage.get_study_user_attrs(study_id)
        if OBJECTIVES_ATTR not in attrs:
            raise UserError(
                f"study {name!r} was made by an older autodistill (accuracy in "
                "percent, objectives not recorded); it can be reported but not "
                "resumed: use another --study-name or --out"
            )
        theirs = tuple(attrs[OBJECTIVES_ATTR])
        if theirs != tuple(objectives):
            raise UserError(
                f"study {name!r} trades off {','.join(theirs)}, not "
                f"{','.join(objectives)}; give --objectives {','.join(theirs)} "
                "or another --study-name"
            )
        for key, value in (identity or {}).items():
            if key in attrs and attrs[key] != value:
                raise UserError(_identity_mismatch(name, key, attrs[key], value))
        conflicts = space_conflicts(storage, name, space) if space is not None else []
        if conflicts:  # also for studies made before spaces were fingerprinted
            raise UserError(
                f"study {name!r} sampled another search space ({conflicts[0]}"
                f"{f', and {len(conflicts) - 1} more' if len(conflicts) > 1 else ''}"
                "): the space was edited, or the study was made by an older "
                "autodistill; restore the space, or start a new study with another "
                "--study-name"
            )
        for key, value in (identity or {}).items():
            if key not in attrs:
                storage.set_study_user_attr(study_id, key, value)
        joined = int(attrs.get(JOINED_ATTR, 0))
        held = len(storage.get_all_trials(study_id, deepcopy=False))
        if samples:
            storage.set_study_user_attr(study_id, JOINED_ATTR, joined + 1)
    state = np.random.SeedSequence([seed, held, joined]).generate_state(1)[0]
    sampler = make_sampler(sampler_name, seed=int(state), budget=budget)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    with quiet_experimental():
        study.set_metric_names(list(objectives))
    return study


def recorded_identity(storage: BaseStorage, name: str) -> dict[str, Any]:
    """What the study ``name`` recorded about itself (its teacher, space, settings), read
    without changing anything; empty if there is no such study yet."""
    study_id = _study_id(storage, name)
    return {} if study_id is None else dict(storage.get_study_user_attrs(study_id))


def _study_id(storage: BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


REFERENCE_ATTR = "latency_reference"  # reference.ReferenceRecord, set once when a study starts
RETIMED_ATTR = "front_retimed"  # the front's latencies timed side by side (ship.retime)


def latency_reference(study: optuna.Study) -> dict[str, Any] | None:
    """The reference every latency of the study is relative to; None in a study made before
    references were recorded, or whose latency is not timed."""
    return study.user_attrs.get(REFERENCE_ATTR)


def record_latency_reference(study: optuna.Study, record: dict[str, Any]) -> None:
    study.set_user_attr(REFERENCE_ATTR, record)


def front_retimed(study: optuna.Study) -> dict[str, Any] | None:
    """The last side-by-side timing of the front: ``{"trials": {number: {...}}, ...}``."""
    return study.user_attrs.get(RETIMED_ATTR)


def record_front_retimed(study: optuna.Study, record: dict[str, Any]) -> None:
    study.set_user_attr(RETIMED_ATTR, record)


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    """The objectives a study trades off (the three defaults for studies older than that)."""
    return tuple(study.user_attrs.get(OBJECTIVES_ATTR, DEFAULT))


def _identity_mismatch(name: str, key: str, theirs: str, mine: str) -> str:
    if key == SPACE_ATTR:
        return (
            f"study {name!r} was made with another search space: the space file was edited "
            "since (a study mixing trials of two spaces compares nothing); restore it, or "
            "start a new study with another --study-name"
        )
    if key == INPUT_ATTR:
        old, new = json.loads(theirs), json.loads(mine)
        return (
            f"study {name!r} was made for {old.get('image_size')} px inputs with "
            f"{old.get('in_chans')} channel(s) and {old.get('num_classes')} classes; this data "
            f"gives {new.get('image_size')} px, {new.get('in_chans')} and "
            f"{new.get('num_classes')}: give --image-size {old.get('image_size')} and the "
            "study's data, or start another study with another --study-name"
        )
    if key == SETTINGS_ATTR:
        refusal = changed_settings(f"study {name!r}", json.loads(theirs), json.loads(mine))
        return refusal or f"study {name!r} recorded its settings otherwise"
    return (
        f"study {name!r} was made with {key} {theirs[:12]}, this worker has {mine[:12]}: "
        "give every worker the same teacher (a shared --cache-dir or the same "
        "--teacher-checkpoint)"
    )


def load_study(storage: BaseStorage, name: str) -> optuna.Study:
    """An existing study, read-only use (reports)."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserError(f"no study {name!r} in this storage; found: {names or 'none'}") from None


def distribution(p: Param) -> BaseDistribution:
    """The Optuna distribution a trial samples ``p`` from."""
    if p.kind == "categorical":
        return CategoricalDistribution(list(p.choices))
    if p.kind == "int":
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)


def space_conflicts(storage: BaseStorage, name: str, space: SearchSpace) -> list[str]:
    """Parameters the study ``name`` sampled from another distribution than ``space`` gives
    them: resuming would fail every trial (Optuna refuses a changed distribution)."""
    study_id = _study_id(storage, name)
    if study_id is None:
        return []
    recorded: dict[str, BaseDistribution] = {}
    for t in storage.get_all_trials(study_id, deepcopy=False):
        for key, dist in t.distributions.items():
            recorded.setdefault(key, dist)
    mine = space.parameters()
    return [
        f"{key}: {recorded[key]} in the study, {distribution(mine[key])} now"
        for key in recorded
        if key in mine and mine[key].kind != "fixed" and distribution(mine[key]) != recorded[key]
    ]

"""Search spaces as data: typed parameters, sampled through any suggest function.

A space names the student families to choose among (``families``), the distillation losses
(``distill``) and the training hyperparameters (``train``). Each parameter is a fixed value, a list
of ``choices``, or a ``low``/``high`` range (``log``, ``step``); ``per_stage: N`` (or the name of
an earlier parameter) samples one value per stage. ``spaces.parse`` reads them from YAML.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from autodistill.forward import OUTPUT_KINDS
from autodistill.losses import get_loss


@dataclass(frozen=True)
class Param:
    """One searchable (or fixed) parameter.

    ``kind`` is ``fixed``, ``categorical``, ``int`` or ``float``. ``per_stage`` repeats it.
    """

    kind: str
    value: Any = None
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    per_stage: int | str | None = None
    multiple_of: int | None = None  # every value a multiple of it (hardware-friendly widths)

    def describe(self) -> str:
        if self.kind == "fixed":
            text = repr(self.value)
        elif self.kind == "categorical":
            text = "{" + ", ".join(map(str, self.choices)) + "}"
        else:
            text = f"[{_num(self.low)}, {_num(self.high)}]"
            text += " log" if self.log else ""
            if self.step and self.step != self.multiple_of:
                text += f" step {_num(self.step)}"
        text += f" multiples of {self.multiple_of}" if self.multiple_of else ""
        return text + (f" per stage ({self.per_stage})" if self.per_stage is not None else "")


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


Suggest = Callable[[str, Param], Any]
"""Given a unique name and a non-fixed Param, return a sampled value (the search supplies it)."""


@dataclass(frozen=True)
class Candidate:
    """One sampled student: its architecture and how to distill and train it."""

    family: str
    arch: dict[str, Any]
    loss: str
    distill: dict[str, Any]
    train: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        return cls(d["family"], dict(d["arch"]), d["loss"], dict(d["distill"]), dict(d["train"]))


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, validated space."""

    name: str
    description: str
    families: dict[str, dict[str, Param]]
    losses: dict[str, dict[str, Param]]
    train: dict[str, Param] = field(default_factory=dict)
    source: str = ""

    def sample(self, suggest: Suggest) -> Candidate:
        """Draw one candidate; conditional parameters are sampled only for the chosen branch."""
        family = _pick(suggest, "family", tuple(self.families))
        loss = _pick(suggest, "loss", tuple(self.losses))
        return Candidate(
            family=family,
            arch=_sample_group(suggest, family, self.families[family]),
            loss=loss,
            distill=_sample_group(suggest, loss, self.losses[loss]),
            train=_sample_group(suggest, "", self.train),
        )

    def parameters(self) -> dict[str, Param]:
        """Every parameter the space can give a trial, by the name ``sample`` gives it, in
        sampling order (per-stage ones once per stage, up to the most stages)."""
        out: dict[str, Param] = {}
        for name, options in (("family", self.families), ("loss", self.losses)):
            if len(options) > 1:
                out[name] = Param("categorical", choices=tuple(options))
        groups = [*self.families.items(), *self.losses.items(), ("", self.train)]
        for prefix, params in groups:
            for key, p in params.items():
                name = f"{prefix}.{key}" if prefix else key
                if p.per_stage is None:
                    out[name] = p
                    continue
                stages = p.per_stage
                if isinstance(stages, str):
                    ref = params[stages]
                    stages = int(
                        max((ref.value,) if ref.kind == "fixed" else ref.choices or (ref.high,))
                    )
                out.update({f"{name}.{i}": p for i in range(stages)})
        return out

    def fingerprint(self) -> str:
        """A hash of what the space samples, in order (not its description or where it lies): a
        study resumed with an edited space would mix trials from two spaces."""
        canon = [
            [name, p.kind, p.value, list(p.choices), p.low, p.high, p.log, p.step]
            for name, p in self.parameters().items()
        ]
        return hashlib.sha256(json.dumps(["space-v1", canon]).encode()).hexdigest()

    def teacher_outputs(self) -> tuple[str, ...]:
        """The teacher outputs any of this space's losses reads (what the cache must hold)."""
        needs = set().union(*(get_loss(name).needs for name in self.losses))
        return tuple(k for k in OUTPUT_KINDS if k in needs or k == "logits")

    def table(self) -> list[tuple[str, str]]:
        """(qualified name, description) for every parameter, for ``autodistill spaces``."""
        rows = []
        if len(self.families) > 1:
            rows.append(("family", "{" + ", ".join(self.families) + "}"))
        for fam, params in self.families.items():
            rows += [(f"{fam}.{k}", p.describe()) for k, p in params.items()]
        if len(self.losses) > 1:
            rows.append(("loss", "{" + ", ".join(self.losses) + "}"))
        for loss, params in self.losses.items():
            rows += [(f"{loss}.{k}", p.describe()) for k, p in params.items()]
        rows += [(k, p.describe()) for k, p in self.train.items()]
        return rows


def _pick(suggest: Suggest, name: str, options: tuple[str, ...]) -> str:
    if len(options) == 1:
        return options[0]
    return suggest(name, Param("categorical", choices=options))


def _sample_group(suggest: Suggest, prefix: str, params: Mapping[str, Param]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, p in params.items():
        name = f"{prefix}.{key}" if prefix else key
        if p.per_stage is None:
            out[key] = _sample_one(suggest, name, p)
        else:
            n = p.per_stage if isinstance(p.per_stage, int) else int(out[p.per_stage])
            out[key] = [_sample_one(suggest, f"{name}.{i}", p) for i in range(n)]
    return out


def _sample_one(suggest: Suggest, name: str, p: Param) -> Any:
    return p.value if p.kind == "fixed" else suggest(name, p)

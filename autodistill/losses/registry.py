"""Registry of distillation losses, and the Distiller that applies one during training.

A loss is a pure function of what the student and the cached teacher produced (``Outputs``)
returning named, already-weighted parts; the trainer sums and logs them. A loss that learns
something of its own (a hint projection, a discriminator) declares the modules it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from autodistill.domain import Domain
from autodistill.errors import UserError
from autodistill.forward import OUTPUT_KINDS
from autodistill.registry import Registry


@dataclass
class Outputs:
    """What one training batch produced: the student's outputs and the cached teacher's, each by
    kind (``forward.OUTPUT_KINDS``: logits, features, attention), and the labels."""

    student: Mapping[str, Tensor]
    targets: Tensor
    teacher: Mapping[str, Tensor] = field(default_factory=dict)
    progress: float = 1.0  # fraction of training done (0..1), for losses with a warm-up


@dataclass(frozen=True)
class Dims:
    """Sizes a loss's own modules are built for."""

    num_classes: int
    student_features: int = 0
    teacher_features: int = 0


LossFn = Callable[..., dict[str, Tensor]]
ModuleFactory = Callable[[Dims, Mapping[str, Any]], dict[str, nn.Module]]
UpdateFn = Callable[..., dict[str, Tensor]]  # update(out, modules, **params) -> aux loss parts


@dataclass(frozen=True)
class Loss:
    """A registered loss: hyperparameters with defaults, what it reads, and how it learns."""

    name: str
    defaults: dict[str, float]
    domains: dict[str, Domain]  # the values a space may give each hyperparameter
    needs: frozenset[str]  # teacher outputs it reads, from forward.OUTPUT_KINDS
    fn: LossFn  # fn(out, modules, **params) -> parts
    doc: str
    modules: ModuleFactory | None = None  # trained with the student (e.g. a projection)
    aux_modules: ModuleFactory | None = None  # trained by ``update`` (e.g. a discriminator)
    update: UpdateFn | None = None
    aux_lr: float = 1e-3

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(self.defaults)

    @property
    def needs_teacher(self) -> bool:
        return bool(self.needs)


LOSSES: Registry[Loss] = Registry("loss")


def register_loss(
    name: str,
    *,
    defaults: Mapping[str, float] | None = None,
    domains: Mapping[str, Domain] | None = None,
    needs: tuple[str, ...] = ("logits",),
    modules: ModuleFactory | None = None,
    aux_modules: ModuleFactory | None = None,
    update: UpdateFn | None = None,
) -> Callable[[LossFn], LossFn]:
    """Register ``fn(out, modules, **params) -> parts`` as the loss ``name``.

    Every hyperparameter has a default and a domain (what a search space may give it).
    """

    def wrap(fn: LossFn) -> LossFn:
        unknown = set(needs) - set(OUTPUT_KINDS)
        if unknown:
            raise ValueError(f"loss {name!r} needs unknown teacher outputs {unknown}")
        if set(domains or {}) != set(defaults or {}):
            raise ValueError(f"loss {name!r}: give a domain for each default, and only those")
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        entry = Loss(
            name,
            dict(defaults or {}),
            dict(domains or {}),
            frozenset(needs),
            fn,
            doc,
            modules,
            aux_modules,
            update,
        )
        LOSSES.register(name, entry)
        return fn

    return wrap


def get_loss(name: str) -> Loss:
    """The loss called ``name``, or a UserError that lists the known ones."""
    return LOSSES.get(name)


def plain() -> Distiller:
    """Cross-entropy on the labels alone: training without a teacher (the teacher's own)."""
    return Distiller(get_loss("ce"), dims=Dims(0))


def total(parts: Mapping[str, Tensor]) -> Tensor:
    """The sum of a loss's parts (what the trainer back-propagates)."""
    return torch.stack(list(parts.values())).sum()


class Distiller(nn.Module):
    """One loss with its hyperparameters and its own learnable modules, ready to train with."""

    def __init__(self, loss: Loss, params: Mapping[str, Any] | None = None, *, dims: Dims):
        super().__init__()
        unknown = set(params or {}) - set(loss.defaults)
        if unknown:
            raise UserError(
                f"loss {loss.name!r} has no parameter(s) {sorted(unknown)}; "
                f"known: {', '.join(loss.defaults) or 'none'}"
            )
        self.loss = loss
        self.params = {**loss.defaults, **(params or {})}
        self.learned = nn.ModuleDict(loss.modules(dims, self.params) if loss.modules else {})
        self.aux = nn.ModuleDict(loss.aux_modules(dims, self.params) if loss.aux_modules else {})
        self._aux_opt = (
            torch.optim.Adam(self.aux.parameters(), lr=loss.aux_lr) if len(self.aux) else None
        )

    @property
    def needs(self) -> frozenset[str]:
        return self.loss.needs

    def modules_by_name(self) -> dict[str, nn.Module]:
        return {**self.learned, **self.aux}

    def forward(self, out: Outputs) -> dict[str, Tensor]:
        return self.loss.fn(out, self.modules_by_name(), **self.params)

    def after_step(self, out: Outputs) -> dict[str, Tensor]:
        """Train the loss's own adversary (if any) on this batch; the student is held fixed."""
        if self.loss.update is None or self._aux_opt is None:
            return {}
        detached = Outputs(
            student={"logits": out.student["logits"].detach()},
            targets=out.targets,
            teacher={"logits": out.teacher["logits"]},
            progress=out.progress,
        )
        self._aux_opt.zero_grad(set_to_none=True)  # also drops grads left by the student's step
        parts = self.loss.update(detached, self.modules_by_name(), **self.params)
        total(parts).backward()
        self._aux_opt.step()
        return {k: v.detach() for k, v in parts.items()}  # no host sync: the trainer sums them

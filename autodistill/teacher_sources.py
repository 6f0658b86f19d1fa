"""Where a teacher comes from: ``--teacher`` names a kind of teacher and where it is.

- a bare timm name (``resnet18``): built here with its stem shrunk for small images and trained
  on the data from scratch, or loaded from ``--teacher-checkpoint`` (``teacher.py``);
- ``timm:NAME`` with ``--teacher-weights FILE``: the unmodified timm architecture with weights
  the user has (pretrained, or fine-tuned), at its own input size;
- ``torchvision:NAME`` with ``--teacher-weights FILE``;
- ``hf:PATH``: a local Hugging Face image-classification folder (the ``hf`` extra);
- ``onnx:PATH``: a model from any framework, run in ONNX Runtime;
- ``pt2:PATH``: a ``torch.export`` program;
- in the Python API, any ``nn.Module`` (saved as a ``torch.export`` program in the cache).

Nothing a user gives is unpickled: weights are read as safetensors or with
``torch.load(weights_only=True)``, a Hugging Face folder only from safetensors, and a pt2 file
that holds pickled objects is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from autodistill.data.splits import DatasetSplits
from autodistill.errors import UserError, first_line
from autodistill.registry import Registry
from autodistill.teacher_input import TeacherInput, head_of, logits_of

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # torchvision's weights expect it


@dataclass(frozen=True)
class TeacherSpec:
    """``--teacher`` and the options that go with it, parsed."""

    kind: str  # "scratch" for a bare timm name, else the name of a kind in ``KINDS``
    target: str  # the model name or path after the prefix
    weights: str | None = None  # --teacher-weights
    size: int | None = None  # --teacher-size
    mean: tuple[float, ...] | None = None  # --teacher-mean
    std: tuple[float, ...] | None = None  # --teacher-std
    home: str | None = None  # the cache's teacher folder, where a module is kept as a program

    @property
    def given(self) -> bool:
        """Whether the user gave the teacher (any kind but a bare timm name)."""
        return self.kind != "scratch"

    @property
    def text(self) -> str:
        return self.target if not self.given else f"{self.kind}:{self.target}"


def parse_spec(
    teacher: str,
    *,
    weights: str | None = None,
    size: int | None = None,
    mean: str | None = None,
    std: str | None = None,
    home: str | None = None,
) -> TeacherSpec:
    """``--teacher`` with its options; one line for what cannot be a teacher."""
    kind, sep, target = teacher.partition(":")
    if not sep or kind not in KINDS:
        if weights is not None:
            raise UserError(
                f"--teacher-weights goes with a given teacher (timm:{teacher} or "
                f"torchvision:{teacher}); a bare name is trained here from scratch, or loaded "
                "from a --teacher-checkpoint of the architecture adapted to small images"
            )
        if sep and "/" not in teacher and "\\" not in teacher:  # "foo:bar", not a path
            raise UserError(
                f"unknown kind of teacher {kind!r} in --teacher {teacher}; known: "
                f"{', '.join(KINDS.names())} (KIND:NAME or KIND:PATH), or a bare timm name"
            )
        if size is not None or mean is not None or std is not None:
            raise UserError(
                "--teacher-size, --teacher-mean and --teacher-std describe a given teacher's "
                f"input (timm:, torchvision:, hf:, onnx:, pt2:); the bare name {teacher} is "
                "built for the data's own"
            )
        return TeacherSpec("scratch", teacher)
    if not target:
        raise UserError(f"--teacher {teacher} names no model after {kind}:")
    return TeacherSpec(
        kind, target, weights, size, _floats(mean, "--teacher-mean"), _floats(std), home
    )


def _floats(text: str | None, flag: str = "--teacher-std") -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise UserError(f"{flag} takes numbers separated by commas, got {text!r}") from None
    if flag == "--teacher-std" and any(v <= 0 for v in values):
        raise UserError(f"{flag} must be positive, got {text!r}")
    return values


HeadSwap = Callable[[nn.Module, int], str]


@dataclass
class Given:
    """A teacher the user gave, loaded as it is."""

    model: nn.Module  # its own input, its own classes, in eval mode
    input: TeacherInput
    classes: int
    names: tuple[str, ...] | None  # its class names, when it says them
    fingerprint: str  # sha256 of what it was loaded from
    # Gives it a new classifier for ``k`` classes and returns the classifier's parameter
    # prefix (what fine-tuning trains at the full rate); None: it cannot be given a new head.
    new_head: HeadSwap | None
    what: str  # how a line names it: "timm:resnet18 with weights w.safetensors"


Loader = Callable[[TeacherSpec, DatasetSplits], Given]
KINDS: Registry[Loader] = Registry("kind of teacher", sort_known=False)


def load_given(spec: TeacherSpec, data: DatasetSplits) -> Given:
    """The teacher ``spec`` names, loaded without running any code from its files."""
    return KINDS[spec.kind](spec, data)


def own_input(
    spec: TeacherSpec,
    data: DatasetSplits,
    *,
    size: int | None = None,
    in_chans: int | None = None,
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> TeacherInput:
    """The teacher's input: the options where given, else what the model says of itself
    (``size``, ``in_chans``, ``stats``), else the data's own."""
    chans = in_chans or data.in_chans
    mean, std = stats or data.stats
    return TeacherInput(
        size=spec.size or size or data.image_size,
        in_chans=chans,
        mean=spec.mean or mean,
        std=spec.std or std,
    )


def file_sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _existing(path: str | None, what: str) -> Path:
    if path is None:
        raise UserError(f"{what} needs --teacher-weights FILE")
    p = Path(path)
    if not p.is_file():
        raise UserError(f"teacher weights {path!r} do not exist")
    return p


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from torch.save read with ``weights_only``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(
            f"cannot read teacher weights {path}: {first_line(exc)}; give a state dict saved "
            "with safetensors, or with torch.save (read without unpickling code)"
        ) from None
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"teacher weights {path} are not a state dict of tensors")
    return state


def _load_strict(model: nn.Module, state: dict, path: Path, what: str) -> None:
    mine = model.state_dict()
    missing = sorted(set(mine) - set(state))
    unexpected = sorted(set(state) - set(mine))
    wrong = [k for k in mine if k in state and tuple(state[k].shape) != tuple(mine[k].shape)]
    if missing or unexpected or wrong:
        problem = (
            f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected "
            f"{tuple(mine[wrong[0]].shape)}"
            if wrong
            else f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
        raise UserError(f"teacher weights {path} do not fit {what}: {problem}")
    model.load_state_dict(state)


def _swap_linear(model: nn.Module, classes: int) -> HeadSwap:
    """A head swap for a model whose classifier is its last linear layer to ``classes``."""

    def swap(m: nn.Module, k: int) -> str:
        found = head_of(m, classes)
        if found is None:
            raise UserError("the teacher has no linear classifier to replace")
        name, old = found
        parent = m.get_submodule(name.rpartition(".")[0]) if "." in name else m
        setattr(parent, name.rpartition(".")[2], nn.Linear(old.in_features, k))
        return name

    return swap


def _timm(spec: TeacherSpec, data: DatasetSplits) -> Given:
    import timm
    from timm.data import resolve_data_config

    path = _existing(spec.weights, f"--teacher timm:{spec.target}")
    state = read_state(path)
    try:
        probe = timm.create_model(spec.target, pretrained=False)
    except RuntimeError as exc:
        raise UserError(f"unknown timm model {spec.target!r}: {first_line(exc)}") from None
    head = probe.pretrained_cfg.get("classifier", "")
    head = head[0] if isinstance(head, (list, tuple)) else head
    weight = state.get(f"{head}.weight")
    classes = int(weight.shape[0]) if weight is not None else probe.num_classes
    model = timm.create_model(spec.target, pretrained=False, num_classes=classes)
    _load_strict(model, state, path, f"timm:{spec.target} with {classes} classes")
    cfg = resolve_data_config({}, model=model)
    chans, _, size = cfg["input_size"]

    def new_head(m: nn.Module, k: int) -> str:
        m.reset_classifier(k)
        return head

    return Given(
        model.eval(),
        own_input(spec, data, size=size, in_chans=chans, stats=(cfg["mean"], cfg["std"])),
        classes,
        None,
        file_sha256(path),
        new_head,
        f"timm:{spec.target} with weights {path.name}",
    )


def _torchvision(spec: TeacherSpec, data: DatasetSplits) -> Given:
    import torchvision

    path = _existing(spec.weights, f"--teacher torchvision:{spec.target}")
    state = read_state(path)
    last = [k for k, v in state.items() if k.endswith(".weight") and v.ndim == 2]
    if not last:
        raise UserError(f"teacher weights {path} hold no classifier (no 2-D weight)")
    classes = int(state[last[-1]].shape[0])
    try:
        model = torchvision.models.get_model(spec.target, weights=None, num_classes=classes)
    except ValueError as exc:
        raise UserError(
            f"unknown torchvision model {spec.target!r}: {first_line(exc)}; known: "
            "torchvision.models.list_models()"
        ) from None
    _load_strict(model, state, path, f"torchvision:{spec.target} with {classes} classes")
    size = int(getattr(model, "image_size", 224))
    return Given(
        model.eval(),
        own_input(spec, data, size=size, in_chans=3, stats=IMAGENET),
        classes,
        None,
        file_sha256(path),
        _swap_linear(model, classes),
        f"torchvision:{spec.target} with weights {path.name}",
    )


def _hf(spec: TeacherSpec, data: DatasetSplits) -> Given:
    folder = Path(spec.target)
    if not (folder / "config.json").is_file():
        raise UserError(
            f"--teacher hf:{spec.target}: no Hugging Face model folder there (no config.json)"
        )
    if not list(folder.glob("*.safetensors")):
        raise UserError(
            f"--teacher hf:{spec.target} has no .safetensors weights; save it with "
            "save_pretrained(safe_serialization=True): pickled weights are not read"
        )
    try:
        from transformers import AutoModelForImageClassification
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise UserError(
            "--teacher hf:PATH needs the hf extra: pip install 'autodistill[hf]'"
        ) from None
    hf_logging.disable_progress_bar()  # autodistill shows its own progress
    try:
        model = AutoModelForImageClassification.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load --teacher hf:{spec.target}: {first_line(exc)}") from None
    config = model.config
    names = tuple(str(config.id2label[i]) for i in range(config.num_labels))
    proc = folder / "preprocessor_config.json"
    pre = json.loads(proc.read_text()) if proc.is_file() else {}
    size = pre.get("size", {})
    side = size if isinstance(size, int) else size.get("height", size.get("shortest_edge"))
    mean, std = pre.get("image_mean"), pre.get("image_std")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors"))
    return Given(
        _HFLogits(model).eval(),
        own_input(
            spec,
            data,
            size=side or getattr(config, "image_size", None),
            in_chans=getattr(config, "num_channels", 3),
            stats=(mean, std) if mean and std else None,
        ),
        config.num_labels,
        names,
        file_sha256(*files),
        _swap_linear(model, config.num_labels),
        f"hf:{folder.name}",
    )


class _HFLogits(nn.Module):
    """A Hugging Face classifier that returns its logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.hf = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.hf(pixel_values=x))


KINDS.register("timm", _timm)
KINDS.register("torchvision", _torchvision)
KINDS.register("hf", _hf)


# The kinds that are graphs or programs (onnx:, pt2:, an API module) register themselves.
from autodistill import teacher_graphs  # noqa: E402, F401

__all__ = ["KINDS", "Given", "TeacherSpec", "load_given", "own_input", "parse_spec", "read_state"]

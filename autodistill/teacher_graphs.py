"""Teachers that are graphs or programs: ``onnx:FILE`` run in ONNX Runtime, ``pt2:FILE`` (a
``torch.export`` program, loaded without unpickling), and an ``nn.Module`` given to the Python
API (kept as a pt2 program in the cache). They register in ``teacher_sources.KINDS``."""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from autodistill.data.splits import DatasetSplits
from autodistill.errors import UserError, first_line
from autodistill.teacher_input import OnnxTeacher, TeacherInput, logits_of
from autodistill.teacher_sources import KINDS, Given, TeacherSpec, file_sha256, own_input


def _onnx(spec: TeacherSpec, data: DatasetSplits) -> Given:
    path = Path(spec.target)
    if not path.is_file():
        raise UserError(f"--teacher onnx:{spec.target}: no such file")
    try:
        model = OnnxTeacher(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own errors: not a usable graph
        raise UserError(
            f"--teacher onnx:{spec.target} is not an ONNX model ONNX Runtime can run: "
            f"{first_line(exc)}"
        ) from None
    shape = model.session.get_inputs()[0].shape
    if len(shape) != 4:
        raise UserError(
            f"--teacher onnx:{spec.target} takes input of shape {shape}, not images [N, C, H, W]"
        )
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    meta = model.session.get_modelmeta().custom_metadata_map
    names = _names(meta.get("classes"))
    out = model.session.get_outputs()[0].shape
    classes = out[-1] if out and isinstance(out[-1], int) else None
    given_input = own_input(spec, data, size=dims[2], in_chans=dims[1])
    if classes is None:
        classes = _probe_classes(model, given_input)
    return Given(
        model.eval(),
        given_input,
        classes,
        names,
        file_sha256(path),
        None,
        f"onnx:{path.name}",
    )


def _names(text: str | None) -> tuple[str, ...] | None:
    """Class names from a model's metadata: a JSON list, or names separated by commas."""
    if not text:
        return None
    try:
        names = json.loads(text)
    except ValueError:
        names = text.split(",")
    return tuple(str(n).strip() for n in names) if isinstance(names, list) else None


def _probe_classes(model: nn.Module, own: TeacherInput) -> int:
    x = torch.zeros(1, own.in_chans, own.size, own.size)
    with torch.inference_mode():
        return int(logits_of(model(x)).shape[-1])


@contextlib.contextmanager
def _no_unpickling() -> Iterator[None]:
    """While a pt2 file loads, torch.load reads tensors only and pickle loads nothing: a file
    that needs either to load holds pickled objects, and is refused."""

    def refuse(*_a: object, **_k: object) -> None:
        raise pickle.UnpicklingError("the file holds pickled objects")

    real_load = torch.load

    def weights_only(*a: object, **k: object) -> object:
        k["weights_only"] = True
        return real_load(*a, **k)

    saved = (torch.load, pickle.loads, torch._C._pickle_load_obj)
    torch.load, pickle.loads = weights_only, refuse
    torch._C._pickle_load_obj = refuse
    try:
        yield
    finally:
        torch.load, pickle.loads, torch._C._pickle_load_obj = saved


def _pt2(spec: TeacherSpec, data: DatasetSplits) -> Given:
    path = Path(spec.target)
    if not path.is_file():
        raise UserError(f"--teacher pt2:{spec.target}: no such file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"--teacher pt2:{spec.target} is not a torch.export program (not a zip)")
    quiet = logging.getLogger("torch.export")  # it logs a traceback before raising
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        with _no_unpickling():
            program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - not a program, or one holding pickled objects
        raise UserError(
            f"--teacher pt2:{spec.target} is not a torch.export program that loads without "
            f"unpickling: {first_line(exc)}"
        ) from None
    finally:
        quiet.setLevel(level)
    args = program.example_inputs[0] if program.example_inputs else ()
    shape = tuple(args[0].shape) if args and hasattr(args[0], "shape") else ()
    dims = shape if len(shape) == 4 else (None, None, None, None)
    model = _Program(program.module(), _fixed_batch(program))
    given_input = own_input(spec, data, size=dims[2], in_chans=dims[1])
    return Given(
        model,
        given_input,
        _probe_classes(model, given_input),
        None,
        file_sha256(path),
        None,
        f"pt2:{path.name}",
    )


def _fixed_batch(program: torch.export.ExportedProgram) -> int | None:
    """The batch a program was captured for, when it is fixed (None: any batch)."""
    user = program.graph_signature.user_inputs
    for node in program.graph.nodes:
        if node.op == "placeholder" and user and node.name == user[0]:
            val = node.meta.get("val")
            first = val.shape[0] if val is not None and val.ndim else None
            return first if isinstance(first, int) else None
    return None


class _Program(nn.Module):
    """A ``torch.export`` program as a module: eval only (a program has no train mode), run on
    any batch, in chunks of its own where it was captured for a fixed one (``batch``; a last
    chunk padded with zeros)."""

    def __init__(self, model: nn.Module, batch: int | None) -> None:
        super().__init__()
        self.program, self.batch = model, batch

    def train(self, mode: bool = True) -> _Program:
        self.training = mode  # the program itself stays as it was captured
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None:
            return logits_of(self.program(x))
        outs = []
        for i in range(0, len(x), self.batch):
            part = x[i : i + self.batch]
            short = self.batch - len(part)
            if short:
                part = torch.cat([part, part.new_zeros(short, *part.shape[1:])])
            out = logits_of(self.program(part))
            outs.append(out[: len(out) - short])
        return torch.cat(outs)


# Modules given to the Python API in this process, by ``module_key``: ``module:KEY`` names one.
# A worker in another process, or a later command, finds it saved as a program in the cache.
MODULES: dict[str, nn.Module] = {}


def module_key(model: nn.Module) -> str:
    """The ``--teacher`` of an ``nn.Module`` given to the Python API (``module:KEY``, by its
    weights), remembered for this process."""
    from autodistill.cache import tensors_sha256

    key = tensors_sha256(model.state_dict())[:16]
    MODULES[key] = model
    return f"module:{key}"


def _module(spec: TeacherSpec, data: DatasetSplits) -> Given:
    folder = Path(spec.home or ".")
    path = folder / f"module-{spec.target}.pt2"
    model = MODULES.get(spec.target)
    if model is not None:
        _save_module(model, data, path, spec.size)
    elif not path.is_file():
        raise UserError(
            f"the teacher module {spec.target} is not in {folder}: give it again "
            "(teacher=model), or point --cache-dir at the cache of the search that had it"
        )
    given = _pt2(TeacherSpec("pt2", str(path), size=spec.size, mean=spec.mean, std=spec.std), data)
    given.what = f"module {type(model).__name__ if model is not None else spec.target}"
    return given


def _save_module(model: nn.Module, data: DatasetSplits, path: Path, size: int | None) -> None:
    """An ``nn.Module`` teacher saved as a ``torch.export`` program at ``path`` (once), captured
    for ``size`` px (else the data's) and the channels of its first convolution (else the
    data's). A module that ``torch.export`` cannot capture is refused in one line."""
    side = size or data.image_size
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    x = torch.zeros(2, first.in_channels if first is not None else data.in_chans, side, side)
    if not path.is_file():
        was_training = model.training
        try:
            batch = torch.export.Dim("batch", min=1, max=65536)
            program = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: batch},))
        except Exception as exc:  # noqa: BLE001 - torch.export's many ways to fail
            raise UserError(
                f"the teacher module cannot be captured by torch.export on "
                f"{tuple(x.shape)} input: {first_line(exc)}"
            ) from None
        finally:
            model.train(was_training)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.pt2")
        torch.export.save(program, str(tmp))
        tmp.replace(path)


KINDS.register("onnx", _onnx)
KINDS.register("pt2", _pt2)
KINDS.register("module", _module)

__all__ = ["MODULES", "module_key"]

"""Search spaces from YAML: every mistake one UserError naming the file and the field.

Each parameter is checked against its domain (``autodistill.domain``), as the family, loss or
trainer declares it; a family entry ``{from: NAME}`` reuses the family block of another space
file and may override some of its parameters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from autodistill.domain import NON_NEGATIVE, POSITIVE, Domain, integer
from autodistill.errors import UserError
from autodistill.families import get_family
from autodistill.losses import get_loss
from autodistill.spaces.model import Param, SearchSpace

# The shipped spaces are package data, so an installed wheel has them; the repository's top-level
# search_spaces/ is a link to this folder, for users to read and copy.
SPACES_DIR = Path(str(resources.files("autodistill") / "search_spaces"))
TRAIN_PARAMS: dict[str, Domain] = {
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "batch_size": integer(1, 65536),
    "image_size": integer(2, 4096),  # the student's input size, when not the data's
}
_SPEC_KEYS = {"choices", "low", "high", "log", "step", "per_stage", "multiple_of"}


def list_spaces() -> list[str]:
    """Names of the spaces shipped in ``search_spaces/``."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def resolve_space_path(name_or_path: str) -> Path:
    """A shipped space's name, or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if path.is_dir():
            raise UserError(f"search space {str(path)!r} is a folder; give a .yaml file")
        if not path.is_file():
            raise UserError(f"search space file {str(path)!r} does not exist")
        return path
    shipped = SPACES_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        known = ", ".join(list_spaces())
        raise UserError(f"unknown search space {name_or_path!r}; known: {known} (or a .yaml path)")
    return shipped


def load_space(name_or_path: str) -> SearchSpace:
    """Load and validate a space; every mistake raises one UserError naming file and field."""
    path = resolve_space_path(name_or_path)
    doc = _read_yaml(path)
    return parse_space(doc, name=path.stem, source=str(path), base_dir=path.parent)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that ``1e-3`` is a number (YAML 1.2, and what every
    user means): PyYAML wants ``1.0e-3`` and reads ``1e-3`` as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the space file as UTF-8"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read search space file {path}: {exc.strerror}") from None
    fix = "; fix the YAML there"
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark, opened = exc.problem_mark or exc.context_mark, exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        problem = _one_line(exc.problem or exc.context or type(exc).__name__)
        if exc.context and opened and mark and opened.line != mark.line:
            # An unclosed bracket shows up a line later: name where it was opened, too.
            problem += f" ({exc.context} started at line {opened.line + 1})"
        raise UserError(f"{path}: malformed YAML at {where}: {problem}{fix}") from None
    except yaml.YAMLError as exc:  # a ReaderError: a character YAML does not allow
        raise UserError(f"{path}: malformed YAML: {_one_line(str(exc))}{fix}") from None
    except ValueError as exc:  # an unquoted value YAML reads as a date or number, but invalid
        raise UserError(
            f"{path}: malformed YAML: a value reads as a date or number but is not one "
            f"({exc}); quote it or correct it"
        ) from None
    except RecursionError:
        raise UserError(f"{path}: malformed YAML: nested too deeply; flatten it") from None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def parse_space(
    doc: Any, *, name: str = "space", source: str = "<memory>", base_dir: Path = SPACES_DIR
) -> SearchSpace:
    """Validate a space document (a mapping) and build the SearchSpace."""
    where = source
    if not isinstance(doc, Mapping):
        raise UserError(
            f"{where}: a search space must be a mapping with 'families', "
            f"'distill' and 'train' keys, got {type(doc).__name__}"
        )
    unknown = set(doc) - {"description", "families", "distill", "train"}
    if unknown:
        raise UserError(
            f"{where}: unknown top-level key(s) {sorted(map(str, unknown))}; "
            "allowed: description, families, distill, train"
        )
    families = _parse_families(doc.get("families"), where, base_dir)
    losses = _parse_losses(doc.get("distill"), where)
    train = _parse_group(doc.get("train") or {}, f"{where}: train", TRAIN_PARAMS, required=("lr",))
    description = str(doc.get("description", "")).strip()
    return SearchSpace(name, description, families, losses, train, source)


def _parse_families(raw: Any, where: str, base_dir: Path) -> dict[str, dict[str, Param]]:
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{where}: 'families' must map at least one family name to its parameters")
    out = {}
    for fam, params in raw.items():
        family = _named(get_family, fam, f"{where}: families")
        params = _inherit(params, fam, where, base_dir)
        out[family.name] = _parse_group(
            params, f"{where}: families.{fam}", family.domains, required=family.params
        )
    return out


def _named(get: Callable[[str], Any], name: Any, where: str) -> Any:
    """A registry entry by name; an unknown one is reported with the file and block it is in."""
    try:
        return get(str(name))
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def _inherit(params: Any, fam: str, where: str, base_dir: Path) -> Any:
    """``{from: other_space, ...overrides}`` takes family ``fam`` from another space file."""
    if not isinstance(params, Mapping) or "from" not in params:
        return params
    name = params["from"]
    # Beside the file first; then the shipped spaces, so a copy of default.yaml edited in
    # the user's own folder still finds the family blocks it inherits.
    other, found = base_dir / f"{name}.yaml", False
    for folder in dict.fromkeys((base_dir, SPACES_DIR)):
        try:
            candidate = (folder / f"{name}.yaml").resolve()
            if candidate.is_file():
                other, found = candidate, True
                break
        except (OSError, ValueError):  # a name no file system accepts, e.g. with a NUL byte
            break
    if not found:
        raise UserError(
            f"{where}: families.{fam}.from names {name!r}, but {other} does not exist; "
            f"name a space file in {base_dir} or a shipped space, without '.yaml'"
        )
    base = _read_yaml(other)
    families = base.get("families") if isinstance(base, Mapping) else None
    inherited = families.get(fam) if isinstance(families, Mapping) else None
    if not isinstance(inherited, Mapping):
        raise UserError(f"{where}: {other} has no family {fam!r} block to inherit")
    if "from" in inherited:
        raise UserError(
            f"{where}: families.{fam}.from names {name!r}, whose {fam} block itself inherits "
            f"from {inherited['from']!r}; name that space instead (one level of 'from')"
        )
    return {**inherited, **{k: v for k, v in params.items() if k != "from"}}


def _parse_losses(raw: Any, where: str) -> dict[str, dict[str, Param]]:
    if raw is None:
        raw = {"ce": {}}
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{where}: 'distill' must map loss names (e.g. kd) to their parameters")
    out = {}
    for name, params in raw.items():
        loss = _named(get_loss, name, f"{where}: distill")
        # A loss parameter left out of the space keeps the loss's default value.
        out[loss.name] = _parse_group(params or {}, f"{where}: distill.{name}", loss.domains)
    return out


def _parse_group(
    raw: Any, where: str, allowed: Mapping[str, Domain], required: tuple[str, ...] = ()
) -> dict[str, Param]:
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: expected a mapping of parameter names, got {raw!r}")
    out: dict[str, Param] = {}
    for key, spec in raw.items():
        if key not in allowed:
            known = f"allowed: {', '.join(allowed)}" if allowed else "it takes no parameters"
            raise UserError(f"{where}: unknown parameter {key!r}; {known}")
        out[str(key)] = _parse_param(spec, f"{where}.{key}", allowed[key], earlier=out)
    missing = [k for k in required if k not in out]
    if missing:
        raise UserError(f"{where}: missing parameter(s) {', '.join(missing)}")
    return out


def _parse_param(spec: Any, where: str, domain: Domain, earlier: Mapping[str, Param]) -> Param:
    if not isinstance(spec, Mapping):
        if isinstance(spec, list):
            raise UserError(f"{where}: write a list of options as {{choices: {spec}}}")
        if not _is_value(spec):
            raise UserError(
                f"{where}: a fixed value must be a finite number, a string or a boolean, "
                f"got {spec!r} (or give {{choices: [...]}} or {{low: ..., high: ...}})"
            )
        _check(domain, spec, where)
        return Param("fixed", value=spec)
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {sorted(map(str, unknown))}; "
            f"allowed: {', '.join(sorted(_SPEC_KEYS))}"
        )
    per_stage = _per_stage(spec.get("per_stage"), where, earlier)
    multiple = _multiple_of(spec.get("multiple_of"), domain, where)
    if "choices" in spec:
        if {"low", "high", "log", "step"} & set(spec):
            raise UserError(f"{where}: use either 'choices' or 'low'/'high', not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}: 'choices' must be a non-empty list")
        if not all(_is_value(c) for c in choices):
            raise UserError(f"{where}: choices must be finite numbers, strings or booleans")
        if len(set(map(repr, choices))) != len(choices):
            raise UserError(f"{where}: 'choices' has duplicates: {choices}")
        for choice in choices:
            _check(domain, choice, f"{where}: choice")
            if multiple and choice % multiple:
                raise UserError(f"{where}: choice {choice} is not a multiple of {multiple}")
        return Param(
            "categorical", choices=tuple(choices), per_stage=per_stage, multiple_of=multiple
        )
    return _parse_range(spec, where, domain, per_stage, multiple)


def _multiple_of(value: Any, domain: Domain, where: str) -> int | None:
    if value is None:
        return None
    if domain.kind is not int:
        raise UserError(f"{where}: 'multiple_of' is for integer parameters (channel widths)")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: 'multiple_of' must be a positive whole number, got {value!r}")
    return value


def _check(domain: Domain, value: Any, where: str) -> None:
    problem = domain.problem(value)
    if problem:
        raise UserError(f"{where} {problem}")


def _is_value(v: Any) -> bool:
    """A fixed value or choice: what Optuna can store and a builder can take."""
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, str | int | bool)


def _parse_range(
    spec: Mapping[str, Any],
    where: str,
    domain: Domain,
    per_stage: int | str | None,
    multiple: int | None = None,
) -> Param:
    if "low" not in spec or "high" not in spec:
        raise UserError(f"{where}: a range needs both 'low' and 'high' (or use 'choices')")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    for key, v in (("low", low), ("high", high), ("step", step)):
        if key == "step" and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise UserError(f"{where}: '{key}' must be a number, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{where}: '{key}' must be finite, got {v!r}")
    if not isinstance(log, bool):
        raise UserError(f"{where}: 'log' must be true or false, got {log!r}")
    _check(domain, low, f"{where}: low")
    _check(domain, high, f"{where}: high")
    if domain.kind is int and step is not None and not isinstance(step, int):
        raise UserError(f"{where}: 'step' must be a whole number here, got {step!r}")
    if low > high:
        raise UserError(f"{where}: inverted range: low {low} > high {high}; swap them")
    if step is not None and step <= 0:
        raise UserError(f"{where}: 'step' must be positive, got {step}")
    if log and low <= 0:
        raise UserError(f"{where}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise UserError(f"{where}: 'log' and 'step' cannot be combined")
    if multiple:
        if log:
            raise UserError(f"{where}: 'log' and 'multiple_of' cannot be combined")
        for key, v in (("low", low), ("high", high), ("step", step)):
            if v is not None and v % multiple:
                raise UserError(
                    f"{where}: {key} {v} is not a multiple of {multiple} "
                    f"('multiple_of: {multiple}')"
                )
        step = step or multiple
    # A real parameter written with whole-number ends (temperature 1..8) is still sampled as real.
    is_int = domain.kind is int
    if step is not None and (high - low) / step % 1 > 1e-9 and is_int:
        raise UserError(
            f"{where}: the range {low}..{high} is not a whole number of steps {step}; "
            "make high - low a multiple of step"
        )
    if low == high:
        return Param("fixed", value=low, per_stage=per_stage)
    return Param(
        "int" if is_int else "float",
        low=low,
        high=high,
        log=log,
        step=step,
        per_stage=per_stage,
        multiple_of=multiple,
    )


def _per_stage(value: Any, where: str, earlier: Mapping[str, Param]) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    if isinstance(value, str) and value in earlier and earlier[value].per_stage is None:
        p = earlier[value]
        values = (p.value,) if p.kind == "fixed" else p.choices or (p.low, p.high)
        if all(isinstance(v, int) and 1 <= v <= 8 for v in values):
            return value
    raise UserError(
        f"{where}: 'per_stage' must be 1..8 or the name of an earlier integer "
        f"parameter with values 1..8, got {value!r}"
    )

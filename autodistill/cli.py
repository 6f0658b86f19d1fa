"""The ``autodistill`` command: parses arguments, calls the library, prints the results."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from autodistill import __version__
from autodistill.errors import Crashed, UserError


class _Parser(argparse.ArgumentParser):
    """One line and exit status 2 on a usage error; no prefix of an option is taken for it
    (``--epoch 1`` is an error, not ``--epochs 1``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line, exit status 2, no usage dump
        self.exit(2, f"autodistill: error: {message} (see '{self.prog} --help')\n")


class _Help(argparse.HelpFormatter):
    """Each default shown once: appended where the help does not already say it, and not at
    all where there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        if isinstance(default, tuple):  # 0.25,0.5 as it is typed, not a Python tuple
            return f"{text} (default: {','.join(map(str, default))})"
        return f"{text} (default: %(default)s)"


def _count(text: str) -> int:
    """A count such as 250000, 250k or 1.5M."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a count like 250000, 250k or 1.5M, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive count, got {text!r}")
    return int(value)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


_Group = argparse.ArgumentParser | argparse._ArgumentGroup


def _limit_options(parser: _Group, verb: str) -> None:
    """``--max-<objective>`` for every objective measured before training."""
    from autodistill.objectives import limitable

    for objective in limitable():
        parser.add_argument(
            objective.option,
            dest=f"max_{objective.name}",
            type=_count if objective.decimals == 0 else _positive,
            help=f"{verb} {objective.label} above this"
            + (" (e.g. 200k)" if objective.decimals == 0 else ""),
        )


def _add_options(
    parser: _Group, cls: type, *, default: Any = None, prefix: str = "", dest: str = ""
) -> None:
    """A flag for every option field of ``cls`` (nested option dataclasses as groups), with
    the field's help, type, choices and default (``default``: an instance whose values are the
    defaults, for a nested one)."""
    from autodistill.options import declared

    for d in declared(cls):
        opt = d.option
        value = d.default if default is None else getattr(default, d.name)
        if not opt.cli:
            continue
        if d.nested:
            group = parser.add_argument_group(opt.help)
            sub = f"{opt.prefix}-" if opt.prefix else ""
            _add_options(group, d.kind, default=value, prefix=sub, dest=f"{dest}{d.name}.")
            continue
        if opt.per_objective:
            _limit_options(parser, opt.help)
            continue
        name = prefix + d.name.replace("_", "-")
        how: dict[str, Any] = {"dest": dest + d.name, "help": opt.help}
        if d.kind is bool:
            how.update(action="store_false" if value else "store_true", default=value)
            flag = opt.flag or (f"--no-{name}" if value else f"--{name}")
        else:
            metavar = None if opt.allowed() else opt.metavar or d.name.upper()
            how.update(
                default=value, type=opt.parse or d.kind, metavar=metavar, choices=opt.allowed()
            )
            flag = opt.flag or f"--{name}"
        parser.add_argument(flag, **how)


def _options(args: argparse.Namespace, cls: type, dest: str = "") -> dict[str, Any]:
    """The parsed values of ``cls``'s options, as its keyword arguments."""
    from autodistill.options import declared

    out: dict[str, Any] = {}
    for d in declared(cls):
        if not d.option.cli:
            continue
        if d.nested:
            out[d.name] = _options(args, d.kind, f"{dest}{d.name}.")
        elif d.option.per_objective:
            out[d.name] = {
                k.removeprefix("max_"): v
                for k, v in vars(args).items()
                if k.startswith("max_") and v is not None
            }
        else:
            out[d.name] = getattr(args, dest + d.name)
    return out


def _process_options(parser: _Group, what: str) -> None:
    """How a command runs (not what it does): bars, and its process."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--in-process", action="store_true", help=what)


IN_PROCESS = (
    "work in this process, not a child process: for a debugger; a native crash then ends the "
    "command without saying where"
)


def build_parser() -> argparse.ArgumentParser:
    from autodistill.config import SearchConfig
    from autodistill.ship.options import CompressOptions, ExportOptions, TrainOptions

    p = _Parser(
        prog="autodistill",
        description="Find small, fast students by knowledge distillation: search the "
        "accuracy / size / latency front, then fully train, export and report a student. "
        "Start with: autodistill search --budget 50",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    p.add_argument("--version", action="version", version=f"autodistill {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("search", help="search for students on the accuracy/size/latency front")
    _add_options(s, SearchConfig)
    _process_options(
        s,
        "run the trials in this process, not in a supervised worker: for a "
        "debugger; a native crash then ends the search",
    )

    t = sub.add_parser("train", help="fully train a student of a run and test it once")
    t.add_argument("run_dir", type=Path, help="a run directory made by 'autodistill search'")
    _add_options(t, TrainOptions)
    _process_options(t, IN_PROCESS)

    e = sub.add_parser("export", help="export a trained student to ONNX (and int8), check, time")
    e.add_argument("run_dir", type=Path)
    _add_options(e, ExportOptions)

    c = sub.add_parser(
        "compress",
        help="prune a trained student with distillation, int8 "
        "after training and quantization-aware: the compression front",
    )
    c.add_argument("run_dir", type=Path)
    _add_options(c, CompressOptions)
    _process_options(c, IN_PROCESS)

    d = sub.add_parser("dashboard", help="browse a run's study in optuna-dashboard")
    d.add_argument("run_dir", type=Path)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument(
        "--allow-write",
        action="store_true",
        help="let the dashboard change the study (rename, delete, notes, tell)",
    )

    r = sub.add_parser(
        "report",
        help="redraw a run's CSVs and plots from its storage and write report.html / report.md",
    )
    r.add_argument("run_dir", type=Path)

    sub.add_parser("spaces", help="list the search spaces and their parameters")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command != "spaces":
            from autodistill.study import quiet_optuna_logs

            quiet_optuna_logs()
        return _COMMANDS[args.command](args)
    except UserError as exc:
        print(f"autodistill: error: {exc}", file=sys.stderr)
        return 2
    except Crashed as exc:  # a native crash in train or compress: said, not a glibc message
        print(f"autodistill: crashed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "autodistill: interrupted; finished trials are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:  # the output was piped into something that stopped reading (head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _warm_up(args: argparse.Namespace) -> None:
    """Start the fork server of the command's worker processes before importing the library:
    its imports (seconds on a small CPU) then overlap with this process's own."""
    if not args.in_process:
        from autodistill.processes import warm_up

        warm_up()


def _search(args: argparse.Namespace) -> int:
    _warm_up(args)
    from autodistill import api, terminal
    from autodistill.config import SearchConfig

    bars = terminal.Bars(not args.quiet)
    try:
        out = api.search(in_process=args.in_process, progress=bars, **_options(args, SearchConfig))
    finally:
        bars.close()
    terminal.print_search(out)
    return 0


def _train(args: argparse.Namespace) -> int:
    _warm_up(args)
    from autodistill import api, terminal
    from autodistill.ship.options import TrainOptions

    bars = terminal.Bars(not args.quiet)
    try:
        out = api.train(
            args.run_dir, in_process=args.in_process, progress=bars, **_options(args, TrainOptions)
        )
    finally:
        bars.close()
    terminal.print_train(out)
    return 0


def _export(args: argparse.Namespace) -> int:
    from autodistill import api, terminal
    from autodistill.ship.options import ExportOptions

    terminal.print_export(api.export(args.run_dir, **_options(args, ExportOptions)))
    return 0


def _compress(args: argparse.Namespace) -> int:
    _warm_up(args)
    from autodistill import api, terminal
    from autodistill.ship.options import CompressOptions

    bars = terminal.Bars(not args.quiet)
    try:
        out = api.compress(
            args.run_dir,
            in_process=args.in_process,
            progress=bars,
            **_options(args, CompressOptions),
        )
    finally:
        bars.close()
    terminal.print_compress(out)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from autodistill import api

    mode = "read and write" if args.allow_write else "read-only"
    print(
        f"optuna-dashboard for {args.run_dir}, {mode}: http://{args.host}:{args.port}/ "
        "(Ctrl-C stops)"
    )
    api.dashboard(args.run_dir, host=args.host, port=args.port, allow_write=args.allow_write)
    return 0


def _report(args: argparse.Namespace) -> int:
    from autodistill import api, terminal

    terminal.print_report(api.report(args.run_dir))
    return 0


def _spaces(args: argparse.Namespace) -> int:
    from autodistill import api, terminal

    terminal.print_spaces(api.list_spaces())
    return 0


_COMMANDS = {
    "search": _search,
    "train": _train,
    "compress": _compress,
    "export": _export,
    "report": _report,
    "dashboard": _dashboard,
    "spaces": _spaces,
}

if __name__ == "__main__":
    sys.exit(main())

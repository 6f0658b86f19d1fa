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
        if ("default" in text or default is None or default is False
                or default == argparse.SUPPRESS or not action.option_strings):  # fmt: skip
            return text
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


OTHER_TEACHER = (
    "distil from the teacher in the cache even when it is not the one the study "
    "recorded (a teacher trained again on another machine); its hash is recorded"
)


def _ratios(text: str) -> tuple[float, ...]:
    """``0.25,0.5``: pruning ratios, each a fraction of channels in (0, 1)."""
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of fractions "
                                         "such as 0.25,0.5") from None  # fmt: skip
    bad = [v for v in values if not 0 < v < 1]
    if bad:
        raise argparse.ArgumentTypeError(f"a pruning ratio is a fraction of channels in (0, 1); "
                                         f"got {bad[0]}")  # fmt: skip
    return values


def _limit_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, verb: str) -> None:
    """``--max-<objective>`` for every objective measured before training."""
    from autodistill.objectives import limitable

    for objective in limitable():
        parser.add_argument(
            objective.option, dest=f"max_{objective.name}",
            type=_count if objective.decimals == 0 else _positive,
            help=f"{verb} {objective.label} above this"
            + (" (e.g. 200k)" if objective.decimals == 0 else ""),
        )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from autodistill.config import SearchConfig
    from autodistill.device import CHOICES, PRECISIONS
    from autodistill.int8 import TOLERANCE as INT8_TOLERANCE
    from autodistill.latency import PRECISIONS as LATENCY_PRECISIONS
    from autodistill.latency import RUNTIMES
    from autodistill.objectives import OBJECTIVES
    from autodistill.ship.variants import TOLERANCE as COMPRESS_TOLERANCE

    D = SearchConfig()  # noqa: N806 - the defaults live in one place: the config
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
    s.add_argument(
        "--budget",
        type=int,
        default=D.budget,
        help="trials in the study (a resumed study runs only the rest); with --fidelity multi, "
        "promotions and second seeds come on top (--promotions, --promotion-time)",
    )
    s.add_argument(
        "--data",
        default=D.data,
        help="mnist5k (the default), digits, mnist, fashion-mnist, cifar10, cifar100, "
        "svhn or imagefolder:PATH",
    )
    s.add_argument("--data-dir", default=D.data_dir, help="where downloadable datasets live")
    s.add_argument("--download", action="store_true", help="download missing datasets")
    s.add_argument(
        "--group-by",
        metavar="REGEX",
        help="carve validation from train/ by whole groups: the first capture group of REGEX "
        r"in a file's name is its group (e.g. '^\d+_([a-z]+)_' for a speaker); image folders",
    )
    s.add_argument(
        "--search-subset",
        type=float,
        metavar="F",
        help="trials train on a stratified subset of the training split: a fraction of each "
        "class (0.25) or a count of images (5000); the teacher and 'train' use all of it",
    )
    s.add_argument("--space", default=D.space, help="search space name or YAML path")
    s.add_argument("--teacher", default=D.teacher, help="timm model name of the teacher")
    s.add_argument("--teacher-checkpoint", help="teacher weights (.safetensors or .pt)")
    s.add_argument(
        "--teacher-epochs",
        type=int,
        default=D.teacher_epochs,
        help="epochs to train the teacher when no checkpoint is given",
    )
    s.add_argument(
        "--views",
        type=int,
        default=D.views,
        help="augmented views per training image in the teacher cache",
    )
    s.add_argument(
        "--epochs",
        type=int,
        default=D.epochs,
        help="brief training epochs per trial (the first rung with --fidelity multi)",
    )
    s.add_argument(
        "--fidelity",
        default=D.fidelity,
        choices=("brief", "multi"),
        help="brief: every trial trains --epochs; multi: the best third of each rung "
        "(by the objectives) is promoted on, 3 -> 9 -> 27 epochs, continuing from "
        "where it was, so the front's scores are closer to full training",
    )
    s.add_argument("--promotions", type=int, default=D.promotions,
                   help="with --fidelity multi: how many promotions in all, paced over the "
                   "search, second seeds of promoted front points included (0: 15%% of the "
                   "budget)")  # fmt: skip
    s.add_argument("--promotion-time", type=float, default=D.promotion_time,
                   help="with --fidelity multi: promotions and second seeds take at most this "
                   "share of the time the first-rung trials took, paced as they finish "
                   "(default %(default)s: the search costs at most 1.5x a brief one; 0: no "
                   "bound)")  # fmt: skip
    s.add_argument(
        "--no-early-stop",
        action="store_true",
        help="train every feasible trial for all --epochs (by default a trial stops "
        "at an epoch where an earlier trial is more accurate and no worse on the others)",
    )
    s.add_argument(
        "--objectives",
        default=",".join(D.objectives),
        help="what the front trades off, two or more of: " + ", ".join(OBJECTIVES),
    )
    _limit_options(s, "refuse students with")
    s.add_argument("--min-accuracy", metavar="FLOOR",
                   help="the least validation accuracy a student may have: 0.9, or 0.95x of "
                   "the teacher's; a student below it is infeasible, and a trial is stopped at "
                   "an epoch from which no earlier trial gained enough to reach it")  # fmt: skip
    s.add_argument("--device", default=D.device, help=f"where to train: {CHOICES}")
    s.add_argument("--precision", default=D.precision, choices=PRECISIONS,
                   help="training precision: auto is bf16 on CUDA, fp32 elsewhere")  # fmt: skip
    target = s.add_argument_group("latency target (what every latency of the study is measured on)")
    target.add_argument("--latency-runtime", default=D.latency_runtime, choices=RUNTIMES,
                        help="onnxruntime times the exported ONNX file, as export ships it "
                        "(the default); torch the eager PyTorch model")  # fmt: skip
    target.add_argument("--latency-device", default=D.latency_device,
                        help="cpu (the default), cuda, cuda:N or mps (torch only); "
                        "independent of --device")  # fmt: skip
    target.add_argument("--latency-precision", default=D.latency_precision,
                        choices=LATENCY_PRECISIONS,
                        help="int8: the fastest measured int8 recipe (onnxruntime, cpu), or "
                        "fp32 where none is faster")  # fmt: skip
    target.add_argument("--latency-threads", type=int, default=D.latency_threads,
                        help="threads latency is timed with (by default 0: --threads)")  # fmt: skip
    target.add_argument("--latency-batch", type=int, default=D.latency_batch,
                        help="batch size latency is timed at")  # fmt: skip
    s.add_argument("--sampler", default=D.sampler, help="tpe (the default), random, nsga2 or gp")
    s.add_argument("--seed", type=int, default=D.seed,
                   help="seed of the data split, teacher, sampler and training")  # fmt: skip
    s.add_argument(
        "--threads",
        type=int,
        default=D.threads,
        help="CPU threads for training and latency (0: all cores)",
    )
    s.add_argument(
        "--jobs",
        type=int,
        default=D.jobs,
        help="worker processes on this machine; they share the budget and the cores, and "
        "one whose trial crashes it (a segmentation fault, the out-of-memory killer) is "
        "replaced",
    )
    s.add_argument(
        "--in-process",
        action="store_true",
        help="run the trials in this process, not in a supervised worker: for a debugger; "
        "a native crash then ends the search",
    )
    s.add_argument(
        "--storage",
        help="Optuna storage URL or journal file (by default study.journal in the run "
        "dir); workers started anywhere with the same --storage and --study-name "
        "join one study, e.g. postgresql://user:pass@host/db",
    )
    s.add_argument("--study-name", help="study name (by default <data>-<space>)")
    s.add_argument(
        "--heartbeat",
        type=int,
        default=D.heartbeat_s,
        metavar="SECONDS",
        help="with a database: a worker silent for 3x this long is dead and its trial runs again",
    )
    s.add_argument("--out", default=D.out, help="parent of the run directory")
    s.add_argument(
        "--cache-dir", help="teacher cache (by default $AUTODISTILL_CACHE or ~/.cache/autodistill)"
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("train", help="fully train a student of a run and test it once")
    t.add_argument("run_dir", type=Path, help="a run directory made by 'autodistill search'")
    how = t.add_argument_group("which student (one of; by default --pick knee)")
    how.add_argument("--trial", type=int, help="this trial number")
    how.add_argument(
        "--pick",
        choices=("knee", "best", "smallest", "fastest"),
        help="a point of the front by rule",
    )
    _limit_options(how, "the most accurate student without")
    how.add_argument(
        "--top",
        type=int,
        help="the K most accurate front points, and how well "
        "brief training ranked them (Kendall tau)",
    )
    t.add_argument("--epochs", type=int, default=30, help="full training epochs")
    t.add_argument("--device", help=f"where to train: {CHOICES} (by default the run's)")
    t.add_argument("--other-teacher", action="store_true", help=OTHER_TEACHER)
    t.add_argument("--seed", type=int,
                   help="training seed (by default the run's); a student trained with another "
                   "seed is trained again and replaced")  # fmt: skip
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument(
        "--in-process",
        action="store_true",
        help="work in this process, not a child process: for a debugger; a native crash then "
        "ends the command without saying where",
    )

    e = sub.add_parser("export", help="export a trained student to ONNX (and int8), check, time")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--trial", type=int, help="which trained student (needed if several)")
    e.add_argument("--int8", action="store_true", help="also quantize to int8 and re-test")
    e.add_argument("--threads", type=int, default=0, help="threads for timing (0: the run's)")
    e.add_argument("--int8-tolerance", type=float, default=INT8_TOLERANCE, metavar="FRACTION",
                   help="the most validation accuracy an int8 recipe may lose and still ship "
                   f"(default {INT8_TOLERANCE}: one point)")  # fmt: skip
    e.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="ship a graph of any batch; by default the run's --latency-batch is fixed in the "
        "file, as the search timed it (a ViT ran 15%% faster so)",
    )

    c = sub.add_parser("compress", help="prune a trained student with distillation, int8 "
                       "after training and quantization-aware: the compression front")  # fmt: skip
    c.add_argument("run_dir", type=Path)
    which = c.add_argument_group("which trained student (one of; needed if several)")
    which.add_argument("--trial", type=int, help="this trial number")
    which.add_argument("--pick", choices=("knee", "best", "smallest", "fastest"),
                       help="a point of the front by rule (it must be trained)")  # fmt: skip
    c.add_argument("--prune", type=_ratios, default=(0.25, 0.5), metavar="R[,R...]",
                   help="fractions of channels to remove, each a variant (default 0.25,0.5); "
                   "more than 0.3 is removed in rounds of at most 0.3, fine-tuned "
                   "between")  # fmt: skip
    c.add_argument(
        "--qat",
        action="store_true",
        help="also train each variant int8-quantization-aware, with distillation",
    )
    c.add_argument(
        "--epochs",
        type=int,
        default=5,
        help="fine-tuning epochs per pruning round and per QAT run (default 5)",
    )
    c.add_argument("--tolerance", type=float, default=COMPRESS_TOLERANCE, metavar="FRACTION",
                   help="the most validation accuracy a variant may lose and be chosen "
                   f"(default {COMPRESS_TOLERANCE}: half a point)")  # fmt: skip
    c.add_argument("--device", help=f"where to fine-tune: {CHOICES} (by default the run's)")
    c.add_argument("--other-teacher", action="store_true", help=OTHER_TEACHER)
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.add_argument(
        "--in-process",
        action="store_true",
        help="work in this process, not a child process: for a debugger; a native crash then "
        "ends the command without saying where",
    )

    d = sub.add_parser("dashboard", help="browse a run's study in optuna-dashboard")
    d.add_argument("run_dir", type=Path)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument(
        "--allow-write",
        action="store_true",
        help="let the dashboard change the study (rename, delete, notes, tell)",
    )

    r = sub.add_parser("report", help="redraw a run's CSVs and plots from its storage and "
                       "write report.html / report.md")  # fmt: skip
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


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    """``--max-<objective>`` options given, as ``{objective: most}``."""
    return {k.removeprefix("max_"): v for k, v in vars(args).items()
            if k.startswith("max_") and v is not None}  # fmt: skip


def _warm_up(args: argparse.Namespace) -> None:
    """Start the fork server of the command's worker processes before importing the library:
    its imports (seconds on a small CPU) then overlap with this process's own."""
    if not args.in_process:
        from autodistill.processes import warm_up

        warm_up()


def _search(args: argparse.Namespace) -> int:
    _warm_up(args)
    from autodistill import api, terminal

    bars = terminal.Bars(not args.quiet)
    try:
        out = api.search(
            budget=args.budget, data=args.data, data_dir=args.data_dir, download=args.download,
            group_by=args.group_by,
            search_subset=args.search_subset,
            space=args.space, teacher=args.teacher, teacher_checkpoint=args.teacher_checkpoint,
            teacher_epochs=args.teacher_epochs, views=args.views, epochs=args.epochs,
            fidelity=args.fidelity, promotions=args.promotions,
            promotion_time=args.promotion_time,
            no_early_stop=args.no_early_stop, objectives=args.objectives, limits=_limits(args),
            min_accuracy=args.min_accuracy,
            device=args.device, precision=args.precision, latency_runtime=args.latency_runtime,
            latency_device=args.latency_device, latency_precision=args.latency_precision,
            latency_threads=args.latency_threads, latency_batch=args.latency_batch,
            sampler=args.sampler, seed=args.seed, threads=args.threads,
            jobs=args.jobs, in_process=args.in_process, storage=args.storage,
            study_name=args.study_name,
            heartbeat=args.heartbeat, out=args.out, cache_dir=args.cache_dir, progress=bars,
        )  # fmt: skip
    finally:
        bars.close()
    terminal.print_search(out)
    return 0


def _train(args: argparse.Namespace) -> int:
    _warm_up(args)
    from autodistill import api, terminal

    bars = terminal.Bars(not args.quiet)
    try:
        out = api.train(
            args.run_dir, trial=args.trial, pick=args.pick, limits=_limits(args), top=args.top,
            epochs=args.epochs, device=args.device, other_teacher=args.other_teacher,
            seed=args.seed, in_process=args.in_process, progress=bars,
        )  # fmt: skip
    finally:
        bars.close()
    terminal.print_train(out)
    return 0


def _export(args: argparse.Namespace) -> int:
    from autodistill import api, terminal

    terminal.print_export(
        api.export(
            args.run_dir,
            trial=args.trial,
            int8=args.int8,
            threads=args.threads,
            tolerance=args.int8_tolerance,
            dynamic_batch=args.dynamic_batch,
        )  # fmt: skip
    )
    return 0


def _compress(args: argparse.Namespace) -> int:
    _warm_up(args)
    from autodistill import api, terminal

    bars = terminal.Bars(not args.quiet)
    try:
        out = api.compress(
            args.run_dir, trial=args.trial, pick=args.pick, prune=args.prune, qat=args.qat,
            epochs=args.epochs, tolerance=args.tolerance, device=args.device,
            other_teacher=args.other_teacher, in_process=args.in_process, progress=bars,
        )  # fmt: skip
    finally:
        bars.close()
    terminal.print_compress(out)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from autodistill import api

    mode = "read and write" if args.allow_write else "read-only"
    print(f"optuna-dashboard for {args.run_dir}, {mode}: http://{args.host}:{args.port}/ "
          "(Ctrl-C stops)")  # fmt: skip
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

"""The ``autodistill`` command: parses arguments, calls the library, prints the results."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from autodistill import __version__
from autodistill.errors import UserError


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
    from autodistill.device import CHOICES
    from autodistill.objectives import OBJECTIVES

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
    s.add_argument("--budget", type=int, default=D.budget, help="trials in the study")
    s.add_argument(
        "--data",
        default=D.data,
        help="mnist5k (the default), digits, mnist, fashion-mnist, cifar10, cifar100, "
        "svhn or imagefolder:PATH",
    )
    s.add_argument("--data-dir", default=D.data_dir, help="where downloadable datasets live")
    s.add_argument("--download", action="store_true", help="download missing datasets")
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
    s.add_argument("--epochs", type=int, default=D.epochs, help="brief training epochs per trial")
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
    s.add_argument("--device", default=D.device, help=f"where to train: {CHOICES}")
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
        help="worker processes on this machine; they share the budget and the cores",
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
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("export", help="export a trained student to ONNX (and int8), check, time")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--trial", type=int, help="which trained student (needed if several)")
    e.add_argument("--int8", action="store_true", help="also quantize to int8 and re-test")
    e.add_argument("--threads", type=int, default=0, help="threads for timing (0: the run's)")

    d = sub.add_parser("dashboard", help="browse a run's study in optuna-dashboard")
    d.add_argument("run_dir", type=Path)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8080)

    r = sub.add_parser("report", help="redraw a run's CSVs and plots from its storage and "
                       "write report.html / report.md")  # fmt: skip
    r.add_argument("run_dir", type=Path)

    sub.add_parser("spaces", help="list the search spaces and their parameters")
    return p


class _Bars:
    """The library's progress reports drawn as tqdm bars, one per task."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def __call__(self, task: str, done: int, total: int, *, unit: str = "", note: str = "") -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        bar = self.bars.get(task)
        if bar is None:
            bar = self.bars[task] = tqdm(total=total, initial=done, desc=task, unit=unit or "it")
        bar.update(done - bar.n)
        if note:
            bar.set_postfix_str(note)
        if done >= total:
            self.close(task)

    def close(self, task: str | None = None) -> None:
        for name in [task] if task is not None else list(self.bars):
            bar = self.bars.pop(name, None)
            if bar is not None:
                bar.close()


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
    except KeyboardInterrupt:
        print(
            "autodistill: interrupted; finished trials are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k.startswith("max_")}


def _search(args: argparse.Namespace) -> int:
    from autodistill import api
    from autodistill.render import front_table

    bars = _Bars(not args.quiet)
    try:
        out = api.search(
            budget=args.budget, data=args.data, data_dir=args.data_dir, download=args.download,
            space=args.space, teacher=args.teacher, teacher_checkpoint=args.teacher_checkpoint,
            teacher_epochs=args.teacher_epochs, views=args.views, epochs=args.epochs,
            no_early_stop=args.no_early_stop, objectives=args.objectives, **_limits(args),
            device=args.device, sampler=args.sampler, seed=args.seed, threads=args.threads,
            jobs=args.jobs, storage=args.storage, study_name=args.study_name,
            heartbeat=args.heartbeat, out=args.out, cache_dir=args.cache_dir, progress=bars,
        )  # fmt: skip
    finally:
        bars.close()
    t = out.teacher
    states = out.trials["state"].value_counts().to_dict() if not out.trials.empty else {}
    print(
        f"\nPareto front of {out.run_dir.name} ({len(out.trials)} trials: "
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
        + f"; objectives {', '.join(out.objectives)})"
    )
    print(front_table(out.trials, out.objectives))
    print(
        f"\nteacher {t['name']}: {t['params']:,} params, val {100 * t['val_accuracy']:.2f}%, "
        f"test {100 * t['test_accuracy']:.2f}%, {t['latency_ms']:.3f} ms"
    )
    print(f"teacher cache: {out.cache}")
    print(f"ran {out.ran_now} trial(s) in {out.seconds:.0f} s; files:")
    for name, path in out.files.items():
        print(f"  {name:12s} {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from autodistill import api

    bars = _Bars(not args.quiet)
    try:
        out = api.train(
            args.run_dir, trial=args.trial, pick=args.pick, **_limits(args), top=args.top,
            epochs=args.epochs, device=args.device, progress=bars,
        )  # fmt: skip
    finally:
        bars.close()
    for s in out.students:
        t = s["teacher"]
        print(f"\ntrial {s['trial']}: {s['arch']} ({s['loss']}), {s['epochs']} epochs, "
              f"seed {s['recipe']['seed']}")  # fmt: skip
        print(
            f"  test accuracy  {100 * s['test_accuracy']:.2f}%  (teacher {t['name']} "
            f"{100 * t['test_accuracy']:.2f}%, retention {100 * s['retention']:.1f}%)"
        )
        print(
            f"  val accuracy   {100 * s['val_accuracy']:.2f}%  (brief training: "
            f"{100 * s['brief_val_accuracy']:.2f}%)"
        )
        print(
            f"  parameters     {s['params']:,}  ({s['size_ratio']:.1f}x smaller than the teacher)"
        )
        print(
            f"  latency        {s['latency_ms']:.3f} ms  ({s['speedup']:.1f}x faster, batch 1, "
            f"{s['latency_threads']} threads)"
        )
        print(f"  weights        {s['weights']}")
    if out.kendall_tau is not None or "ranking" in out.files:
        tau = "undefined (ties)" if out.kendall_tau is None else f"{out.kendall_tau:.2f}"
        print(f"\nKendall tau, brief vs full validation ranking: {tau} ({out.files['ranking']})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from autodistill import api

    out = api.export(args.run_dir, trial=args.trial, int8=args.int8, threads=args.threads)
    f = out.figures
    size = f"{f['onnx_bytes'] / 1e3:.0f} kB" + (
        f", int8 {f['int8_bytes'] / 1e3:.0f} kB" if "int8_bytes" in f else ""
    )
    print(f"trial {out.trial} exported: {out.files['onnx']} ({size})")
    print(
        f"  max |onnx - torch| on {f['batch_sizes_checked'][1]} test images and on batch 1: "
        f"{f['max_abs_diff']:.2e}"
    )
    print(
        f"  test accuracy  torch {100 * f['torch_test_accuracy']:.2f}%  onnx "
        f"{100 * f['onnx_test_accuracy']:.2f}%"
        + (f"  int8 {100 * f['int8_test_accuracy']:.2f}%" if "int8_test_accuracy" in f else "")
    )
    print(
        f"  latency, batch 1, {f['threads']} threads (median)  torch {f['torch_latency_ms']:.3f} ms"
        f"  onnxruntime {f['onnx_latency_ms']:.3f} ms"
        + (f"  int8 {f['int8_latency_ms']:.3f} ms" if "int8_latency_ms" in f else "")
    )
    for name, path in out.files.items():
        print(f"  {name:12s} {path}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from autodistill import api

    print(f"optuna-dashboard for {args.run_dir}: http://{args.host}:{args.port}/ (Ctrl-C stops)")
    api.dashboard(args.run_dir, host=args.host, port=args.port)
    return 0


def _report(args: argparse.Namespace) -> int:
    from autodistill import api
    from autodistill.objectives import get_objective
    from autodistill.render import state_counts

    out = api.report(args.run_dir)
    print(f"{out.name}: {len(out.trials)} trials ({state_counts(out.trials)}); "
          f"objectives {', '.join(out.objectives)}; {len(out.front)} on the front")  # fmt: skip
    for name in out.objectives:
        objective = get_objective(name)
        if out.front.empty or name not in out.front:
            continue
        values = out.front[name].astype(float)
        row = out.front.loc[values.idxmax() if objective.maximize else values.idxmin()]
        print(f"  best {name:13s} {objective.text(row[name]):>12s}  trial {int(row['number'])} "
              f"({row['arch']}, {row['loss']})")  # fmt: skip
    if out.teacher:
        t = out.teacher
        print(f"  teacher {t['name']}: val {100 * t['val_accuracy']:.2f}%, "
              f"{t['params']:,} params, {t['latency_ms']:.3f} ms")  # fmt: skip
    for s in out.students:
        print(f"  trained trial {s['trial']}: test {100 * s['test_accuracy']:.2f}% after "
              f"{s['epochs']} epochs, {s['params']:,} params")  # fmt: skip
    print("files:")
    for name, path in out.files.items():
        print(f"  {name:12s} {path}")
    return 0


def _spaces(args: argparse.Namespace) -> int:
    from autodistill import api

    for space in api.spaces():
        print(f"{space.name}: {space.description}")
        for param, desc in space.table():
            print(f"  {param:28s} {desc}")
        print()
    return 0


_COMMANDS = {
    "search": _search,
    "train": _train,
    "export": _export,
    "report": _report,
    "dashboard": _dashboard,
    "spaces": _spaces,
}

if __name__ == "__main__":
    sys.exit(main())

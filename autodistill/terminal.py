"""What the command line shows: progress bars for the library's progress reports, and each
command's outcome as text. Only the CLI uses it; the library itself never prints."""

from __future__ import annotations

from typing import Any

from autodistill.api import ReportResult, SearchResult
from autodistill.gap import gap_warning
from autodistill.objectives import get_objective
from autodistill.render import front_table, state_counts
from autodistill.render.tables import reference_text, teacher_timing, times
from autodistill.ship import CompressOutcome, ExportOutcome, FullTrainOutcome
from autodistill.spaces import SearchSpace
from autodistill.teacher_input import TeacherInput


class Bars:
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


def print_search(out: SearchResult) -> None:
    """The front, the teacher, the cache and the files of a finished search."""
    t = out.teacher
    print(
        f"\nPareto front of {out.run_dir.name} ({len(out.trials)} trials: "
        f"{state_counts(out.trials)}; objectives {', '.join(out.objectives)})"
    )
    print(front_table(out.trials, out.objectives))
    print(
        f"\nteacher {t['name']}: {t['params']:,} params, val {100 * t['val_accuracy']:.2f}%, "
        f"test {100 * t['test_accuracy']:.2f}%, {t['latency_ms']:.3f} ms"
        f" ({teacher_timing(t)})"
    )
    if t.get("input"):  # a given teacher: what it saw, and where it came from
        own = TeacherInput(**t["input"])
        print(f"teacher input: {own.describe()} ({t['source']})")
    print(f"teacher cache: {out.cache}")
    if out.latency_reference is not None:
        print(f"latency: {reference_text(out.latency_reference, out.trials)}")
    for line in out.warnings:
        print(f"warning: {line}")
    print(f"ran {out.ran_now} trial(s) in {out.seconds:.0f} s; files:")
    for name, path in out.files.items():
        print(f"  {name:12s} {path}")


def print_train(out: FullTrainOutcome) -> None:
    """Each fully trained student against the teacher, and the ranking's Kendall tau."""
    for s in out.students:
        t = s["teacher"]
        again = (
            " (already trained with this recipe: read from its metrics.json, not trained again)"
            if s["trial"] in out.reused
            else ""
        )
        print(
            f"\ntrial {s['trial']}: {s['arch']} ({s['loss']}), {s['epochs']} epochs, "
            f"seed {s['recipe']['seed']}{again}"
        )
        print(
            f"  test accuracy  {100 * s['test_accuracy']:.2f}%  (teacher {t['name']} "
            f"{100 * t['test_accuracy']:.2f}%, retention {100 * s['retention']:.1f}%)"
        )
        searched = s.get("search_epochs")  # a promoted score is not brief: say how long
        print(
            f"  val accuracy   {100 * s['val_accuracy']:.2f}%  (the search's score: "
            f"{100 * s['brief_val_accuracy']:.2f}%"
            + (f" after {searched} epoch{'s' * (searched != 1)})" if searched else ")")
        )
        print(
            f"  parameters     {s['params']:,}  ({s['size_ratio']:.1f}x smaller than the teacher)"
        )
        print(
            f"  latency        {s['latency_ms']:.3f} ms  ({times(s['speedup'])} than the "
            f"teacher; {s.get('latency_runtime', 'torch')} {s.get('latency_precision', 'fp32')}, "
            f"batch {s.get('latency_batch', 1)}, {s['latency_threads']} threads"
            + (
                ", disturbed: see latency_spread in metrics.json"
                if s.get("latency_disturbed")
                else ""
            )
            + ")"
        )
        gap = s.get("validation_gap")
        warning = gap_warning(gap, f"trial {s['trial']}") if gap else None
        if warning:
            print(f"  warning: {warning}")
        learned = s.get("learned")
        if learned and learned.get("worst_class") is not None:
            print(
                f"  learned        agrees with the teacher on "
                f"{100 * learned['agreement_with_teacher']:.1f}% of test images; worst-kept "
                f"class {learned['worst_class']} ({100 * learned['worst_class_retention']:.1f}%"
                f" retained); ECE {learned['student_ece']:.3f} (teacher "
                f"{learned['teacher_ece']:.3f})"
            )
        weights = out.files[f"trial {s['trial']}"]
        print(f"  weights        {weights}")
    if out.kendall_tau is not None or "ranking" in out.files:
        tau = "undefined (ties)" if out.kendall_tau is None else f"{out.kendall_tau:.2f}"
        print(f"\nKendall tau, brief vs full validation ranking: {tau} ({out.files['ranking']})")


def print_export(out: ExportOutcome) -> None:
    """The exported files, their check against PyTorch, accuracy and latency."""
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
        f"  latency, batch {f.get('batch', 1)}, {f['threads']} threads (median)  torch "
        f"{f['torch_latency_ms']:.3f} ms  onnxruntime {f['onnx_latency_ms']:.3f} ms"
        + (f"  int8 {f['int8_latency_ms']:.3f} ms" if "int8_latency_ms" in f else "")
    )
    if "int8" in f:
        print(f"  int8           {f['int8']['why']}")
        for r in f["int8"]["recipes"]:
            got = (
                f"{r['latency_ms']:.3f} ms, val {100 * r['val_accuracy']:.2f}%"
                if r["latency_ms"] is not None
                else r["error"]
            )
            print(f"    {r['recipe']:28s} {got}")
    for name, path in out.files.items():
        print(f"  {name:12s} {path}")


def print_compress(out: CompressOutcome) -> None:
    """The compression front as a table, the variant chosen and why, and the files."""
    first = out.variants[0]
    print(
        f"trial {out.trial} compressed: {len(out.variants)} variants, ONNX Runtime on the cpu, "
        f"{first['latency_threads']} threads, batch {first['latency_batch']} (median of "
        "interleaved passes)"
    )
    if out.resumed:
        print(f"  finished before, not trained again: {', '.join(out.resumed)}")
    print(
        f"  {'variant':28s} {'params':>9s} {'kB':>7s} {'val':>7s} {'test':>7s} {'ms':>7s} "
        f"{'x student':>9s} {'x teacher':>9s}"
    )
    for v in out.variants:
        mark = "*" if v["variant"] == out.best else " "
        print(
            f"{mark} {v['variant']:28s} {v['params']:>9,} {v['onnx_bytes'] / 1e3:>7.1f} "
            f"{100 * v['val_accuracy']:>6.2f}% {100 * v['test_accuracy']:>6.2f}% "
            f"{v['latency_ms']:>7.3f} {v['speedup_vs_student']:>8.2f}x "
            f"{v['speedup_vs_teacher']:>8.1f}x"
        )
    print(f"chosen (on validation): {out.why}")
    for name, path in out.files.items():
        print(f"  {name:12s} {path}")


def print_report(out: ReportResult) -> None:
    """What the run holds (trials, the front's best of each objective, the teacher, trained
    students) and the files drawn."""
    print(
        f"{out.name}: {len(out.trials)} trials ({state_counts(out.trials)}); "
        f"objectives {', '.join(out.objectives)}; {len(out.front)} on the front"
    )
    for name in out.objectives:
        objective = get_objective(name)
        if out.front.empty or name not in out.front:
            continue
        values = out.front[name].astype(float)
        row = out.front.loc[values.idxmax() if objective.maximize else values.idxmin()]
        print(
            f"  best {name:13s} {objective.text(row[name]):>12s}  trial {int(row['number'])} "
            f"({row['arch']}, {row['loss']})"
        )
    if out.teacher:
        t = out.teacher
        print(
            f"  teacher {t['name']}: val {100 * t['val_accuracy']:.2f}%, "
            f"{t['params']:,} params, {t['latency_ms']:.3f} ms"
        )
    for s in out.students:
        print(
            f"  trained trial {s['trial']}: test {100 * s['test_accuracy']:.2f}% after "
            f"{s['epochs']} epochs, {s['params']:,} params"
        )
    print("files:")
    for name, path in out.files.items():
        print(f"  {name:12s} {path}")


def print_spaces(spaces: list[SearchSpace]) -> None:
    """Every space with its parameters."""
    for space in spaces:
        print(f"{space.name}: {space.description}")
        for param, desc in space.table():
            print(f"  {param:28s} {desc}")
        print()

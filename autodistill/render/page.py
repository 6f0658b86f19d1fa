"""report.html and report.md: the front, the plots and the teacher-vs-student card on one page.

The HTML embeds its images as data URIs, so the one file can be mailed or attached; a small
script records how many images decoded, which the browser test reads back.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

from autodistill.files import write_text_atomic
from autodistill.render.tables import (
    front_cells,
    front_table,
    promoted,
    reference_text,
    state_counts,
    teacher_timing,
    times,
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
"""
_SCRIPT = """
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.dataset.imagesTotal = imgs.length;
  document.body.dataset.imagesLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
});
"""


def _target(student: dict[str, Any]) -> str:
    return (
        f"{student.get('latency_runtime', 'torch')} {student.get('latency_precision', 'fp32')}"
        f", batch {student.get('latency_batch', 1)}"
    )


def _learned_rows(learned: dict[str, Any] | None) -> list[list[str]]:
    """Agreement with the teacher, the class kept worst, and calibration (students trained by
    an autodistill that measured them)."""
    if not learned:
        return []
    rows = [
        [
            "agreement with the teacher (test top-1)",
            "",
            f"{100 * learned['agreement_with_teacher']:.1f}%",
            "same answer as the teacher",
        ]
    ]
    worst = next((c for c in learned["per_class"] if c["class"] == learned["worst_class"]), None)
    if worst is not None:
        rows.append(
            [
                f"worst-kept class ({worst['class']})",
                f"{100 * worst['teacher_accuracy']:.1f}%",
                f"{100 * worst['student_accuracy']:.1f}%",
                f"{100 * worst['retention']:.1f}% retained",
            ]
        )
    rows.append(
        [
            "calibration error (ECE, test)",
            f"{learned['teacher_ece']:.3f}",
            f"{learned['student_ece']:.3f}",
            "0 is calibrated",
        ]
    )
    return rows


def _compressed_rows(compressed: dict[str, Any] | None) -> list[list[str]]:
    """The compressed variant chosen on validation against the teacher, both timed in the one
    interleaved run of ``compress``."""
    if not compressed:
        return []
    t = compressed["teacher"]
    best = next(v for v in compressed["variants"] if v["variant"] == compressed["best"])
    name = best["variant"]
    return [
        [
            f"compressed: {name}, test accuracy",
            f"{100 * t['test_accuracy']:.2f}%",
            f"{100 * best['test_accuracy']:.2f}%",
            f"{100 * best['retention']:.1f}% retained",
        ],
        [
            f"compressed: {name}, parameters / file",
            f"{t['params']:,}",
            f"{best['params']:,} / {best['onnx_bytes'] / 1e3:.0f} kB",
            f"{best['size_ratio']:.1f}x smaller",
        ],
        [
            f"compressed: {name}, latency (ONNX Runtime, compress timed both)",
            f"{t['latency_ms']:.3f} ms",
            f"{best['latency_ms']:.3f} ms",
            times(best["speedup_vs_teacher"]),
        ],
        ["compressed: why this variant", "", "", compressed["why"]],
    ]


def card_rows(
    student: dict[str, Any], export: dict[str, Any] | None, compressed: dict[str, Any] | None = None
) -> list[list[str]]:
    """Teacher vs student: accuracy and retention, size, latency and speed-up (fp32, int8), and
    the compressed variant chosen, when ``compress`` has run."""
    t = student["teacher"]
    acc_t = 100 * t["test_accuracy"]
    rows = [
        [
            "test accuracy",
            f"{acc_t:.2f}%",
            f"{100 * student['test_accuracy']:.2f}%",
            f"{100 * student['retention']:.1f}% retained",
        ],
        [
            "parameters",
            f"{t['params']:,}",
            f"{student['params']:,}",
            f"{student['size_ratio']:.1f}x smaller",
        ],
        [
            f"latency ({_target(student)})",
            f"{t['latency_ms']:.3f} ms",
            f"{student['latency_ms']:.3f} ms",
            times(student["speedup"]),
        ],
    ]
    gap = student.get("validation_gap")
    if gap:  # does validation, which the search selected on, predict test?
        rows.append(
            [
                "validation - test accuracy",
                "",
                f"{100 * gap['gap']:+.1f} points",
                "beyond noise: validation misleads"
                if gap["beyond_noise"]
                else f"within noise ({100 * gap['noise']:.1f})",
            ]
        )
    rows += _learned_rows(student.get("learned"))
    if export:
        torch_ms = export["torch_latency_ms"]
        onnx_ms = export["onnx_latency_ms"]
        # The teacher was timed on the run's target; when that is ONNX Runtime fp32, the
        # exported student compares with it, else with itself in PyTorch.
        same = _target(student).startswith("onnxruntime fp32")
        if not same:  # else the row above is this one, measured by train
            rows.append(
                [
                    "latency (ONNX Runtime fp32, export)",
                    "",
                    f"{onnx_ms:.3f} ms",
                    times(torch_ms / onnx_ms) + " than PyTorch",
                ]
            )
        if "int8_test_accuracy" in export:
            rows.append(
                [
                    "test accuracy (int8)",
                    f"{acc_t:.2f}%",
                    f"{100 * export['int8_test_accuracy']:.2f}%",
                    f"{100 * export['int8_test_accuracy'] / t['test_accuracy']:.1f}% retained",
                ]
            )
            int8_ms = export["int8_latency_ms"]
            recipe = export.get("int8", {}).get("shipped", "static-qdq-u8s8")  # older: one recipe
            # int8 against fp32 as export timed both, in one process.
            rows.append(
                [
                    f"latency (ONNX Runtime int8, {recipe})",
                    "",
                    f"{int8_ms:.3f} ms",
                    times(onnx_ms / int8_ms) + " than fp32 (export timed both)",
                ]
            )
            rows.append(
                [
                    "model file (int8 / fp32)",
                    "",
                    f"{export['int8_bytes'] / 1e3:.0f} kB / {export['onnx_bytes'] / 1e3:.0f} kB",
                    "",
                ]
            )
        elif "int8" in export:  # tried, and fp32 was faster or int8 lost too much
            rows.append(["latency (ONNX Runtime int8)", "", "not shipped", export["int8"]["why"]])
    return rows + _compressed_rows(compressed)


def write_page(
    run_dir: Path,
    *,
    title: str,
    trials: pd.DataFrame,
    objectives: tuple[str, ...],
    teacher: dict[str, Any] | None,
    students: list[tuple[dict[str, Any], dict[str, Any] | None]],
    images: dict[str, Path],
    brief_epochs: int | None = None,
    ranking: dict[str, Any] | None = None,
    latency_reference: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write report.html (self-contained) and report.md beside the images. ``brief_epochs``
    says what the front's scores are; ``ranking`` (students/ranking.json of ``train --top K``)
    how well they ranked the fully trained students; ``latency_reference`` what the
    latencies are relative to."""
    summary = f"{len(trials)} trials: {state_counts(trials)}."
    if teacher:
        summary += (
            f" Teacher {teacher['name']}: {teacher['params']:,} params, val "
            f"{100 * teacher['val_accuracy']:.2f}%, "
            f"test {100 * teacher['test_accuracy']:.2f}%, "
            f"{teacher['latency_ms']:.3f} ms "
            f"({teacher_timing(teacher)})."
        )
    if latency_reference:
        summary += f" Latency: {reference_text(latency_reference, trials)}."
    paths = {"html": run_dir / "report.html", "md": run_dir / "report.md"}
    table = front_table(trials, objectives)
    heading = f"Pareto front ({', '.join(o.replace('_', ' ') for o in objectives)})"
    cells, note = front_cells(trials, objectives)
    if brief_epochs and promoted(trials):
        note = (
            f"Multi-fidelity: each score is validation accuracy after the epochs shown (every "
            f"trial trained {brief_epochs}; the best third of each rung was promoted on), not "
            "after full training. " + note
        ).strip()
    elif brief_epochs:
        note = (
            f"These scores are brief: validation accuracy after {brief_epochs} epoch"
            f"{'s' if brief_epochs != 1 else ''} of training (a stopped trial's at the "
            "epoch it stopped), not after full training. " + note
        ).strip()
    sections = [_ranking_section(ranking)] if ranking else []
    write_text_atomic(
        paths["html"], _html(title, summary, heading, (cells, note), students, images, sections)
    )
    markdown = _markdown(title, summary, heading, table, students, images, run_dir, note, sections)
    write_text_atomic(paths["md"], markdown)
    return paths


Section = tuple[str, str, list[str], list[list[str]]]  # heading, sentence, header, rows


def _ranking_section(ranking: dict[str, Any]) -> Section:
    """How the search's scores ranked the students ``train --top K`` trained fully."""
    tau = ranking.get("kendall_tau")
    students = ranking.get("students", [])
    sentence = (
        f"Kendall tau between the search's score and the full validation accuracy of these "
        f"{len(students)} front points: "
        f"{'undefined (ties)' if tau is None else f'{tau:.2f}'} (1: the same order)."
    )
    rows = [
        [
            str(s["trial"]),
            str(s["arch"]),
            f"{100 * s['brief_val_accuracy']:.2f}%",
            str(s.get("search_epochs") or "brief"),
            f"{100 * s['val_accuracy']:.2f}%",
            f"{100 * s['test_accuracy']:.2f}%",
        ]
        for s in students
    ]
    header = ["trial", "arch", "search's val", "its epochs", "full val", "test"]
    return "Rank fidelity (train --top K)", sentence, header, rows


def _html(title, summary, heading, front, students, images, sections=()) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>",
    ]
    for student, export, compressed in students:
        parts.append(
            f"<h2>Trial {student['trial']}: {html.escape(str(student['arch']))} "
            f"({html.escape(student['loss'])}), fully trained {student['epochs']} epochs"
            "</h2>"
        )
        parts.append(
            _html_table(
                ["", "teacher", "student", "student vs teacher"],
                card_rows(student, export, compressed),
            )
        )
        if compressed:
            parts.append(_compression_table(compressed))
            key = f"compress-trial-{student['trial']}"
            if key in images:
                parts.append(_img(images[key], "compressed variants beside the front"))
    parts.append(f"<h2>{html.escape(heading)}</h2>")
    cells, note = front
    if cells.empty:
        parts.append("<p>No completed trials yet: the front is empty.</p>")
    else:
        parts.append(_html_table(list(cells.columns), cells.astype(str).values.tolist()))
        if note:
            parts.append(f"<p>{html.escape(note)}</p>")
    for head, sentence, header, rows in sections:
        parts += [
            f"<h2>{html.escape(head)}</h2><p>{html.escape(sentence)}</p>",
            _html_table(header, rows),
        ]
    if "pareto" in images:
        parts.append(_img(images["pareto"], "accuracy against the other objectives"))
    parts.append("<div class='grid'>")
    for key, alt in (
        ("pareto3d", "the three objectives"),
        ("hypervolume", "hypervolume by trial"),
        ("importances", "hyperparameter importances"),
    ):
        if key in images:
            parts.append(f"<div>{_img(images[key], alt)}</div>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


_VARIANT_HEADER = [
    "variant",
    "params",
    "file",
    "val",
    "test",
    "latency",
    "vs student",
    "vs teacher",
]


def _compression_table(compressed: dict[str, Any]) -> str:
    """Every variant ``compress`` made (students/trial-N/compress.csv), the chosen one marked."""
    rows = [
        [
            ("* " if v["variant"] == compressed["best"] else "") + v["variant"],
            f"{v['params']:,}",
            f"{v['onnx_bytes'] / 1e3:.0f} kB",
            f"{100 * v['val_accuracy']:.2f}%",
            f"{100 * v['test_accuracy']:.2f}%",
            f"{v['latency_ms']:.3f} ms",
            times(v["speedup_vs_student"]),
            times(v["speedup_vs_teacher"]),
        ]
        for v in compressed["variants"]
    ]
    return _html_table(_VARIANT_HEADER, rows)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _markdown(
    title, summary, heading, table, students, images, run_dir: Path, note="", sections=()
) -> str:
    lines = [f"# {title}", "", summary, ""]
    for student, export, compressed in students:
        lines += [
            f"## Trial {student['trial']}: {student['arch']} ({student['loss']}), fully "
            f"trained {student['epochs']} epochs",
            "",
            "| | teacher | student | student vs teacher |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {' | '.join(r)} |" for r in card_rows(student, export, compressed)]
        lines.append("")
    lines += [f"## {heading}", "", "```", table, "```", ""]
    if note:
        lines += [note, ""]
    for head, sentence, header, rows in sections:
        lines += [
            f"## {head}",
            "",
            sentence,
            "",
            f"| {' | '.join(header)} |",
            "|" + "---|" * len(header),
            *[f"| {' | '.join(r)} |" for r in rows],
            "",
        ]
    for key, path in images.items():  # the compression plots included
        lines.append(f"![{key}]({path.relative_to(run_dir)})")
    return "\n".join(lines) + "\n"

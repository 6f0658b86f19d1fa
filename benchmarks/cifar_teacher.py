"""Benchmark: what the default teacher recipe reaches on CIFAR-10 (the JPEG copy), epoch by
epoch, and what it costs on this machine.

The data is read as a user's would be (``imagefolder:PATH``: train/ with validation carved from
it, test/ held out), and the teacher is trained by the very code a search runs
(``teacher_store.prepare_teacher``) with the default recipe at ``--epochs``; validation accuracy is
recorded after every epoch (the search's progress callback), test accuracy once at the end. The
weights go to the teacher cache (``--cache-dir``), never to the repository, so later benchmarks
reuse them. Writes ``cifar_teacher.{json,md}`` under ``--out``.

    python benchmarks/cifar_teacher.py ../shared/data/cifar10-jpeg [--epochs 30] [--threads 2]

Accuracies on this JPEG copy (quality about 75) run a little below raw CIFAR-10's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from autodistill.config import default_cache_dir
from autodistill.data import default_augmentation, load_dataset
from autodistill.measure import device_name
from autodistill.teacher import TeacherRecipe
from autodistill.teacher_store import prepare_teacher


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="CIFAR-10 as JPEG class folders (train/, test/)")
    p.add_argument("--teacher", default="resnet18")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    if not (args.data / "train").is_dir():
        print(f"cifar_teacher: {args.data}/train not found; give the CIFAR-10 JPEG folder")
        return 2
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = load_dataset(f"imagefolder:{args.data}")
    load_s = time.perf_counter() - started
    epochs: list[dict] = []
    began = [time.perf_counter()]

    def progress(task: str, done: int, total: int, **kw) -> None:
        if task.startswith("teacher") and done > 0:
            now = time.perf_counter()
            epochs.append({"epoch": done, "note": kw.get("note", ""), "s": round(now - began[0])})
            began[0] = now
            print(f"epoch {done}/{total}: {kw.get('note', '')} ({epochs[-1]['s']} s)", flush=True)

    recipe = TeacherRecipe(epochs=args.epochs)
    aug = default_augmentation(data.name, data.image_size)
    info, _ = prepare_teacher(
        args.teacher,
        data,
        aug,
        cache_dir=args.cache_dir,
        threads=args.threads,
        recipe=recipe,
        progress=progress,
    )
    doc = {
        "command": " ".join(["python", *sys.argv]),
        "host": device_name(torch.device("cpu")),
        "threads": args.threads,
        "teacher": args.teacher,
        "recipe": dataclasses.asdict(recipe),
        "train_images": len(data.train),
        "val_images": len(data.val),
        "test_images": len(data.test),
        "load_s": round(load_s, 1),
        "epochs": epochs,
        "val_accuracy": info.val_accuracy,
        "test_accuracy": info.test_accuracy,
        "train_s": round(info.train_seconds, 1),
        "info": info.to_dict(),
    }
    write(doc, args.out)
    print(f"test {100 * info.test_accuracy:.2f}%, val {100 * info.val_accuracy:.2f}%")
    return 0


def write(doc: dict, out: Path) -> None:
    """``cifar_teacher.{json,md}`` under ``out`` from the measurement ``doc``."""
    from autodistill.teacher import TeacherInfo, undertrained

    info = TeacherInfo(**doc["info"])
    still = undertrained(info, doc["val_images"]) or "not undertrained by its own measure"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cifar_teacher.json").write_text(json.dumps(doc, indent=2, default=str))
    rows = "\n".join(
        f"| {e['epoch']} | {e['note'].split(' | ')[0].removeprefix('loss ')} | "
        f"{e['note'].split(' | ')[-1].removeprefix('val ')} | {e['s']} |"
        for e in doc["epochs"]
    )
    recipe = ", ".join(f"{k} {v}" for k, v in doc["recipe"].items())
    (out / "cifar_teacher.md").write_text(
        f"# The default teacher recipe on CIFAR-10 (JPEG copy)\n\n"
        f"`{doc['command']}` on {doc['host']}, {doc['threads']} threads: {doc['teacher']} "
        f"(timm, its stem shrunk for 32 px), the default recipe ({recipe}; SGD, one cycle, "
        f"shifts of 4 px and flips), {doc['train_images']} training, {doc['val_images']} "
        f"validation (carved from train/) and {doc['test_images']} test images; loading the "
        f"60,000 files took {doc['load_s']} s, training {doc['train_s'] / 60:.0f} min.\n\n"
        f"**Test accuracy {100 * doc['test_accuracy']:.2f}%** (validation "
        f"{100 * doc['val_accuracy']:.2f}%). Accuracies on this JPEG copy run a little below raw "
        f"CIFAR-10's. The search's own judgement of it: {still}.\n\n"
        f"| epoch | training loss | validation | seconds |\n|---|---|---|---|\n{rows}\n"
    )


if __name__ == "__main__":
    sys.exit(main())

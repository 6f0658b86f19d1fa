"""Benchmark: what distilling from the cached teacher costs, against plain cross-entropy and
against running the teacher online.

One brief trial (the trainer a search runs: ``train.fit`` for ``--epochs`` on mnist5k) of the
same student is timed three ways, interleaved ``--repeats`` times in this one process:
plain cross-entropy (no teacher), KD against the cached teacher logits (what a trial does),
and KD with the default teacher run on every batch, on the very same augmented views (what a
trial would cost without the cache). Writes results/benchmarks/cached_teacher.{json,md}.

    python benchmarks/cached_teacher.py [--repeats 3] [--epochs 3] [--out results/benchmarks]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from autodistill.cache import TeacherViews
from autodistill.config import SearchConfig
from autodistill.data.augment import Augmentation, normalize
from autodistill.families import InputSpec, build_student, get_family
from autodistill.measure import device_name
from autodistill.prepare import prepare
from autodistill.recipe import distil, recipe_for
from autodistill.spaces import Candidate
from autodistill.teacher import build_teacher

# The median-cost student of benchmarks/training_efficiency.py's sample.
STUDENT = ("resnet", {"stem_stride": 2, "depths": [2, 1, 1, 2], "width": 24})


class OnlineLogits:
    """Indexed like cached logits ``[view, image]``, but runs the teacher on those views."""

    def __init__(
        self,
        teacher: nn.Module,
        images: Tensor,
        params: Tensor,
        aug: Augmentation,
        stats,
        num_classes: int,
    ) -> None:
        self.teacher, self.images, self.params, self.aug, self.stats = (
            teacher,
            images,
            params,
            aug,
            stats,
        )
        self.shape = (params.shape[0], params.shape[1], num_classes)

    @torch.inference_mode()
    def __getitem__(self, key: tuple[Tensor, Tensor]) -> Tensor:
        v, idx = key
        x = self.aug.apply(self.images[idx], self.params[v, idx])
        return self.teacher(normalize(x, *self.stats)).clone()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args()
    config = SearchConfig()
    prep = prepare(config, ("logits",))
    data = prep.data
    spec = InputSpec(data.in_chans, data.image_size, data.num_classes)
    teacher = build_teacher(config.teacher, spec)
    weights = config.resolved_cache_dir / "teachers"
    teacher.load_state_dict(_teacher_state(weights, prep.teacher.weights_sha256))
    teacher.eval()
    logits = OnlineLogits(
        teacher, data.train.images, prep.views.params, prep.aug, data.stats, spec.num_classes
    )
    online = dataclasses.replace(prep.views, outputs={"logits": logits})

    def trial(how: str) -> float:
        torch.manual_seed(0)
        model = build_student(*STUDENT, spec)
        views: TeacherViews = online if how == "online" else prep.views
        loss = "ce" if how == "ce" else "kd"
        cand = Candidate(STUDENT[0], STUDENT[1], loss, {}, {"lr": 5e-3})
        cfg = recipe_for(cand, epochs=args.epochs, seed=0)  # the trials' own recipe
        t0 = time.perf_counter()
        distil(model, cand, cfg, data=data, aug=prep.aug, views=views)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"ce": [], "cached": [], "online": []}
    trial("ce")  # warm-up: first-call allocations and oneDNN kernel selection
    for _ in range(args.repeats):
        for how in times:
            times[how].append(trial(how))
            print(how, round(times[how][-1], 2), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    doc = {
        "meta": {
            "command": "python benchmarks/cached_teacher.py " + " ".join(sys.argv[1:]),
            "device": device_name(torch.device("cpu")),
            "threads": torch.get_num_threads(),
            "student": get_family(STUDENT[0]).describe(STUDENT[1]),
            "teacher": config.teacher,
            "trial": f"{args.epochs} epochs of mnist5k train ({len(data.train)} images), batch 64",
            "date": time.strftime("%Y-%m-%d"),
        },
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "cached_over_ce": round(med["cached"] / med["ce"], 3),
        "online_over_cached": round(med["online"] / med["cached"], 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cached_teacher.json").write_text(json.dumps(doc, indent=2))
    (args.out / "cached_teacher.md").write_text(_markdown(doc))
    print(_markdown(doc))


def _teacher_state(folder: Path, sha256: str) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    for meta in folder.glob("*.json"):
        if json.loads(meta.read_text()).get("weights_sha256") == sha256:
            return load_file(str(meta.with_suffix(".safetensors")))
    raise SystemExit(f"no cached teacher with weights {sha256[:12]} in {folder}")


def _markdown(doc: dict) -> str:
    m, med = doc["meta"], doc["median_s"]
    return "\n".join(
        [
            "# Cached teacher: trial time against plain CE and against an online teacher",
            "",
            f"`{m['command']}`: {m['device']}, {m['threads']} threads, {m['date']}. Student "
            f"{m['student']}, teacher {m['teacher']}, one trial = {m['trial']}; median of the "
            "interleaved repeats.",
            "",
            "| trial | median s | ratio |",
            "|---|---|---|",
            f"| plain cross-entropy | {med['ce']:.2f} | 1.00 |",
            f"| KD, cached teacher (what a trial does) | {med['cached']:.2f} | "
            f"**{doc['cached_over_ce']:.3f}x** CE |",
            f"| KD, teacher run online on the same views | {med['online']:.2f} | "
            f"**{doc['online_over_cached']:.2f}x** cached |",
            "",
        ]
    )


if __name__ == "__main__":
    main()

"""Memory layout: every batch reaches a model with real strides, and NHWC never meets oneDNN's
1x1 strided-convolution defect on the CPU (a grayscale folder crashed the search with it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from autodistill.data.augment import Augmentation
from autodistill.layout import in_layout, training_format


def test_a_grayscale_view_has_the_strides_of_nchw_not_ambiguous_ones():
    images = torch.randint(0, 255, (5, 1, 32, 32), dtype=torch.uint8)
    aug = Augmentation(shift=4, flip=True)
    view = aug.apply(images, aug.sample(5, torch.Generator().manual_seed(0)))
    # (H*W, 1, W, 1) would count as channels_last too, and a convolution would take it so
    assert view.stride() == (32 * 32, 32 * 32, 32, 1)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_in_layout_gives_the_strides_of_the_format_and_copies_only_when_needed(fmt):
    ambiguous = torch.randn(4, 16, 16, 1).permute(0, 3, 1, 2)  # C = 1: both layouts at once
    out = in_layout(ambiguous, fmt)
    want = (256, 256, 16, 1) if fmt == torch.contiguous_format else (256, 1, 16, 1)
    assert out.stride() == want and torch.equal(out, ambiguous)
    assert in_layout(out, fmt) is out


def test_nhwc_is_refused_on_the_cpu_for_a_narrow_strided_1x1_convolution():
    narrow = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 1, stride=2))
    wide = nn.Sequential(nn.Conv2d(1, 16, 3), nn.Conv2d(16, 32, 1, stride=2))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training_format(narrow, cpu, True) == torch.contiguous_format
    assert training_format(narrow, cuda, True) == torch.channels_last  # not oneDNN there
    assert training_format(wide, cpu, True) == torch.channels_last
    assert training_format(wide, cpu, False) == torch.contiguous_format


# A training step through the trainer (augmentation, normalisation, layout, forward, backward)
# over the shapes that crashed: run in a child process, so a crash fails this test and names the
# case instead of killing the test session.
GRID = textwrap.dedent(
    """
    import torch
    from torch import nn
    from autodistill.data.augment import Augmentation
    from autodistill.data.splits import ImageSet
    from autodistill.families import InputSpec, build_student
    from autodistill.trainer import TrainConfig, fit

    def refuse_nhwc(conv, inputs):  # the layer oneDNN's defect is in, on any CPU
        x = inputs[0]
        if x.stride(1) == 1 and x.shape[1] > 1:
            raise AssertionError(f"{conv} was given NHWC input {tuple(x.stride())}")

    NARROWEST = {
        "resnet": {"stem_stride": 1, "depths": [1, 1, 1, 1], "width": 8},
        "mobilenetv3": {"stem_stride": 1, "width": 0.25, "stages": 2, "depths": [1, 1],
                        "kernels": [3, 3], "expansions": [2.0, 2.0], "head": 128},
        "convnext": {"patch_size": 2, "depths": [1, 1, 1, 1], "width": 16, "kernel": 3},
        "vit": {"patch_size": 8, "depth": 1, "heads": 1, "head_dim": 16, "mlp_ratio": 2.0},
    }
    # Every family with every channel count in both layouts (where the crash was), and every
    # pair of all six factors at least once (threads, size and the odd last batch chosen to
    # cover the pairs not yet seen): 24 steps that cover what the full product's 192 did.
    import itertools
    FACTORS = {"family": list(NARROWEST), "chans": [1, 3, 8], "channels_last": [False, True],
               "threads": [1, 2], "px": [32, 64], "batch": [7, 8]}
    seen, cases = set(), []
    for family, chans, cl in itertools.product(*list(FACTORS.values())[:3]):
        def pairs(rest):
            row = dict(zip(FACTORS, (family, chans, cl, *rest)))
            return {(a, row[a], b, row[b]) for a, b in itertools.combinations(FACTORS, 2)}
        rest = max(itertools.product(*list(FACTORS.values())[3:]),
                   key=lambda r: len(pairs(r) - seen))
        seen |= pairs(rest)
        cases.append((family, chans, cl, *rest))
    every = {(a, x, b, y) for a, b in itertools.combinations(FACTORS, 2)
             for x in FACTORS[a] for y in FACTORS[b]}
    assert seen == every, sorted(every - seen)[:5]
    for family, chans, channels_last, threads, px, batch in cases:
        torch.set_num_threads(threads)
        # two steps, the last batch odd or even
        images = torch.randint(0, 255, (8 + batch, chans, px, px), dtype=torch.uint8)
        data = ImageSet(images, torch.arange(8 + batch) % 3)
        stats = ((0.5,) * chans, (0.25,) * chans)
        print(family, threads, chans, px, batch, channels_last, flush=True)
        model = build_student(family, NARROWEST[family], InputSpec(chans, px, 3))
        for m in model.modules():
            if (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
                    and m.stride != (1, 1) and m.in_channels < 16):
                m.register_forward_pre_hook(refuse_nhwc)
        cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=8, channels_last=channels_last)
        fit(model, data, Augmentation(shift=px // 8, flip=True), stats, cfg)
    print("all ran")
    """
)


def test_a_training_step_over_channels_sizes_batches_threads_and_families_does_not_crash():
    run = subprocess.run([sys.executable, "-c", GRID], capture_output=True, text=True, timeout=600)
    last = run.stdout.strip().splitlines()[-1:] or ["(nothing)"]
    assert run.returncode == 0, f"crashed ({run.returncode}) at {last[0]}: {run.stderr[-2000:]}"
    assert last == ["all ran"]


def test_a_search_on_a_grayscale_folder_with_an_odd_last_batch_trains_without_a_crash(
    tmp_path, shared_cache
):
    import numpy as np
    import pandas as pd
    from PIL import Image

    from autodistill.cli import main

    rng = np.random.default_rng(0)
    for split, n in (("train", 38), ("test", 6)):  # 76 -> 65 training images: a last batch of 1
        for label, name in enumerate(("dark", "light")):
            (tmp_path / "data" / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 120, (32, 32)).astype(np.uint8) + 120 * label
                Image.fromarray(pixels, "L").save(tmp_path / "data" / split / name / f"{i}.png")
    space = tmp_path / "narrow.yaml"  # the ResNet whose 8 -> 16 1x1 stride-2 conv crashed
    space.write_text(
        "families:\n  resnet: {stem_stride: 1, depths: 1, width: 8}\n"
        "distill:\n  kd: {temperature: 4.0, alpha: 0.5}\n"
        "train:\n  lr: 0.03\n"
    )
    code = main(
        [
            "search",
            "--data",
            f"imagefolder:{tmp_path / 'data'}",
            "--space",
            str(space),
            "--budget",
            "2",
            "--epochs",
            "5",
            "--teacher",
            "test_resnet",
            "--teacher-epochs",
            "1",
            "--views",
            "2",
            "--quiet",
            "--objectives",  # the training step is what this checks: latency not timed
            "val_accuracy,params",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(shared_cache),
        ]
    )
    trials = pd.read_csv(tmp_path / "out" / "folder-data-narrow" / "trials.csv")
    assert trials["crashed"].isna().all() and "CRASHED" not in set(trials["state"])
    assert code == 0 and (trials["state"] == "COMPLETE").all(), trials[["state", "failure_reason"]]

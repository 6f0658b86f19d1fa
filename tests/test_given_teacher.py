"""Teachers the user already has: each format, made here, runs a tiny search; its own input,
its classes, fine-tuning, and the files that are refused."""

from __future__ import annotations

import json
import pickle

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

import autodistill
from autodistill import runtime
from autodistill.cli import main
from autodistill.data import load_dataset
from autodistill.errors import UserError
from autodistill.teacher import class_order
from autodistill.teacher_graphs import _no_unpickling
from autodistill.teacher_input import AdaptedTeacher, OnnxTeacher, TeacherInput, hooked_outputs
from autodistill.teacher_sources import load_given, parse_spec
from autodistill.trainer import TrainConfig, _optimizer

TINY = dict(
    budget=2,
    data="digits",
    epochs=1,
    teacher_epochs=1,
    views=2,
    threads=2,
    objectives="val_accuracy,params",
    in_process=True,
)


def _search(tmp_path, cache, **kw):
    return autodistill.search(out=str(tmp_path / "out"), cache_dir=str(cache), **TINY, **kw)


def _finished(run) -> None:
    """Every trial ended as a trial may: trained, or ruled out before training with a reason."""
    assert len(run.trials) == TINY["budget"]
    assert set(run.trials["state"]) <= {"COMPLETE", "INFEASIBLE"}, run.trials.to_string()
    assert (run.trials["state"] == "COMPLETE").any()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _onnx(path, model, shape, **names):
    torch.onnx.export(
        model.eval(),
        (torch.zeros(*shape),),
        str(path),
        input_names=["input"],
        output_names=["out"],
        dynamic_axes={"input": {0: "b"}, "out": {0: "b"}},
        dynamo=False,
    )
    if names:
        import onnx

        proto = onnx.load(str(path))
        for k, v in names.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(path))
    return path


def test_a_timm_teacher_with_its_weights_runs_at_its_own_resolution(tmp_path, shared_cache):
    """A timm teacher (its unmodified architecture, its own mean and std) distils 8 px
    students at the size it is given."""
    model = timm.create_model("test_resnet", num_classes=10)
    save_file(model.state_dict(), str(tmp_path / "t.safetensors"))
    run = _search(
        tmp_path,
        shared_cache,
        teacher="timm:test_resnet",
        teacher_weights=str(tmp_path / "t.safetensors"),
        teacher_size=48,
    )
    _finished(run)
    t = run.teacher
    assert t["input"]["size"] == 48 and t["input"]["in_chans"] == 3
    assert t["input"]["mean"] == list(model.pretrained_cfg["mean"]) or tuple(
        t["input"]["mean"]
    ) == tuple(model.pretrained_cfg["mean"])
    assert t["source"].startswith("given: timm:test_resnet")
    assert set(t["outputs"]) == {"logits", "features", "attention"}


def test_the_same_weights_at_another_size_are_cached_apart(tmp_path, shared_cache):
    """The views a given teacher answers depend on the size it is shown: the same weights file
    at 48 and at 16 px are two caches, not one read back for both."""
    from autodistill.config import SearchConfig
    from autodistill.options import build
    from autodistill.prepare import prepare

    model = timm.create_model("test_resnet", num_classes=10)
    save_file(model.state_dict(), str(tmp_path / "t.safetensors"))
    made = {}
    for size in (48, 16):
        config = build(
            SearchConfig,
            dict(
                data="digits",
                views=1,
                threads=2,
                teacher="timm:test_resnet",
                teacher_weights=str(tmp_path / "t.safetensors"),
                teacher_size=size,
                cache_dir=str(shared_cache),
                out=str(tmp_path / "out"),
            ),
        )
        made[size] = prepare(config, ("logits",)).views
    assert made[48].key != made[16].key
    assert not torch.equal(made[48].outputs["logits"], made[16].outputs["logits"])


def test_the_adapter_brings_the_view_to_the_teachers_input(digits):
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.mean(dim=(2, 3))[:, :1].expand(-1, 10)

    own = TeacherInput(224, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    teacher = AdaptedTeacher(Probe(), own, digits.stats, digits.in_chans, 10)
    x = torch.zeros(2, 1, 8, 8)  # the data's mean, normalised: a mid-grey image
    teacher(x)
    assert seen[0].shape == (2, 3, 224, 224)
    grey = digits.stats[0][0]
    expected = (grey - torch.tensor(own.mean)) / torch.tensor(own.std)
    assert torch.allclose(seen[0][0, :, 100, 100], expected, atol=1e-4)


def test_a_torchvision_teacher_gives_features_and_maps_through_hooks(tmp_path, shared_cache):
    model = torchvision.models.get_model("resnet18", num_classes=10)
    out = hooked_outputs(model.eval(), torch.randn(2, 3, 64, 64), {"features", "attention"}, 8, 10)
    assert out["logits"].shape == (2, 10) and out["features"].shape == (2, 512)
    assert out["attention"].shape == (2, 3, 64)  # the deepest three stages, on an 8x8 grid
    # layer2-4 (8, 4, 2 px here), not the pooled 1x1: every map varies over the grid
    assert (out["attention"].std(dim=-1) > 0).all()
    save_file(model.state_dict(), str(tmp_path / "tv.safetensors"))
    run = _search(
        tmp_path,
        shared_cache,
        teacher="torchvision:resnet18",
        teacher_weights=str(tmp_path / "tv.safetensors"),
        teacher_size=16,
    )
    _finished(run)
    assert run.teacher["input"]["mean"][0] == pytest.approx(0.485)


def test_a_hugging_face_teacher_is_read_from_safetensors_and_its_classes_matched(
    tmp_path, shared_cache, digits
):
    transformers = pytest.importorskip("transformers")
    # Its labels name the digits in reverse: its column 0 is the data's class "9".
    labels = {i: str(9 - i) for i in range(10)}
    config = transformers.ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_labels=10,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    folder = tmp_path / "hf"
    transformers.ResNetForImageClassification(config).save_pretrained(str(folder))
    sizes = {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    (folder / "preprocessor_config.json").write_text(json.dumps(sizes))
    assert class_order(tuple(labels.values()), 10, digits) == (list(range(9, -1, -1)), None)
    run = _search(tmp_path, shared_cache, teacher=f"hf:{folder}")
    _finished(run)
    assert run.teacher["input"]["size"] == 32


def test_an_onnx_teacher_runs_in_onnx_runtime_with_logits_only(tmp_path, shared_cache, digits):
    net = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    path = _onnx(tmp_path / "t.onnx", net, (1, 1, 32, 32))
    run = autodistill.search(
        out=str(tmp_path / "out"),
        cache_dir=str(shared_cache),
        **{**TINY, "budget": 3, "objectives": "val_accuracy,latency_ms"},
        teacher=f"onnx:{path}",
    )
    assert run.teacher["outputs"] == ["logits"] or tuple(run.teacher["outputs"]) == ("logits",)
    # the graph's weights (its exporter folded batch norm into the convolutions)
    assert run.teacher["params"] == pytest.approx(sum(p.numel() for p in net.parameters()), 0.01)
    reasons = run.trials["failure_reason"].dropna().astype(str)
    # A candidate whose loss reads features or maps is ruled out before it trains.
    assert all("which this teacher does not give" in r for r in reasons)
    # Its latency is the graph's, after the adapter: one graph, timed in ONNX Runtime.
    adapted = AdaptedTeacher(
        OnnxTeacher(path.read_bytes()),
        TeacherInput(32, 1, digits.stats[0], digits.stats[1]),
        digits.stats,
        1,
        10,
    )
    graph = runtime.to_onnx(adapted, (1, 8, 8))
    sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 8, 8)
    joined = sess.run(None, {"x": x.numpy()})[0]
    assert np.allclose(joined, adapted(x).numpy(), atol=1e-4)


def test_a_teacher_file_changed_after_the_study_is_said_so(tmp_path, capsys, shared_cache):
    torch.manual_seed(0)
    path = _onnx(
        tmp_path / "t.onnx",
        timm.create_model("test_resnet", num_classes=10, in_chans=1),
        (1, 1, 8, 8),
    )
    args = ["search", "--data", "digits", "--teacher", f"onnx:{path}", "--budget", "1"]
    args += ["--epochs", "1", "--views", "1", "--objectives", "val_accuracy,params", "--quiet"]
    space = tmp_path / "kd.yaml"  # a loss that reads logits only: what an ONNX teacher gives
    space.write_text(
        "families:\n  resnet: {stem_stride: 1, depths: 1, width: 8}\n"
        "distill:\n  kd: {temperature: 4.0, alpha: 0.5}\ntrain:\n  lr: 0.01\n"
    )
    args += ["--space", str(space), "--out", str(tmp_path / "out")]
    args += ["--cache-dir", str(shared_cache), "--in-process"]
    assert main(args) == 0
    torch.manual_seed(1)
    _onnx(path, timm.create_model("test_resnet", num_classes=10, in_chans=1), (1, 1, 8, 8))
    capsys.readouterr()
    assert main([*args[:-1], "--budget", "2", "--in-process"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its file (or --teacher-weights) changed" in err, err


def test_a_search_whose_losses_all_need_what_the_teacher_lacks_says_so(
    tmp_path, capsys, shared_cache
):
    net = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    path = _onnx(tmp_path / "t.onnx", net, (1, 1, 8, 8))
    space = tmp_path / "hint.yaml"  # the only loss reads features: an ONNX graph of logits
    space.write_text(
        "families:\n  resnet: {stem_stride: 1, depths: 1, width: 8}\n"
        "distill:\n  hint: {weight: 1.0}\ntrain:\n  lr: 0.01\n"
    )
    args = ["search", "--data", "digits", "--teacher", f"onnx:{path}", "--budget", "1"]
    args += ["--space", str(space), "--out", str(tmp_path / "out"), "--quiet", "--in-process"]
    assert main([*args, "--cache-dir", str(shared_cache), "--views", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "1 sampled a loss that reads what the teacher does not give" in err, err


def test_a_module_given_to_the_api_is_kept_as_a_program(tmp_path, shared_cache, digits):
    """A 224 px colour teacher (a module, cheap: its first layer strides by 16) distils 8 px
    grayscale students; the module is kept as a torch.export program for later runs."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 16, stride=16),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    run = _search(tmp_path, shared_cache, teacher=net, teacher_size=224)
    _finished(run)
    assert run.teacher["input"]["size"] == 224 and run.teacher["input"]["in_chans"] == 3
    name = run.teacher["name"]
    assert name.startswith("module:")
    assert (shared_cache / "teachers" / f"module-{name.split(':')[1]}.pt2").is_file()
    # The search ran the module as that program (pt2:); named by its file, it loads alone.
    pt2 = shared_cache / "teachers" / f"module-{name.split(':')[1]}.pt2"
    given = load_given(parse_spec(f"pt2:{pt2}", size=224), digits)
    x = torch.rand(5, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(given.model(x), net.eval()(x), atol=1e-5)
    assert given.classes == 10 and given.new_head is None


def test_a_teacher_with_other_classes_is_fine_tuned_with_a_new_head(tmp_path, shared_cache):
    net = timm.create_model("test_resnet", num_classes=1000)
    torch.save(net.state_dict(), tmp_path / "imagenet.pt")
    run = _search(
        tmp_path,
        shared_cache,
        teacher="timm:test_resnet",
        teacher_weights=str(tmp_path / "imagenet.pt"),
        teacher_size=32,
    )
    _finished(run)
    t = run.teacher
    assert t["source"].startswith("fine-tuned: timm:test_resnet")
    assert len(t["val_history"]) == TINY["teacher_epochs"]


def test_fine_tuning_trains_the_body_slower_than_the_new_head():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    cfg = TrainConfig(epochs=1, lr=1e-3, head="1.", body_lr_scale=0.1)
    opt = _optimizer([model], cfg)
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rates[id(model[1].weight)] == pytest.approx(1e-3)
    assert rates[id(model[0].weight)] == pytest.approx(1e-4)


def test_a_teacher_with_other_classes_that_cannot_take_a_new_head_is_refused(
    tmp_path, capsys, shared_cache
):
    net = timm.create_model("test_resnet", num_classes=5, in_chans=1)
    path = _onnx(tmp_path / "five.onnx", net, (1, 1, 16, 16))
    args = ["search", "--data", "digits", "--teacher", f"onnx:{path}", "--out", str(tmp_path)]
    assert main([*args, "--cache-dir", str(shared_cache), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "it has 5 classes but the data has 10" in err and "new head" in err


def test_class_names_that_are_not_the_datas_are_said(digits):
    order, misfit = class_order(("cat", "dog") + tuple("23456789"), 10, digits)
    assert order is None and "not the data's" in misfit and "'0'" in misfit


@pytest.mark.parametrize(
    ("teacher", "extra", "said"),
    [
        ("onnx:{tmp}/junk.onnx", [], "not an ONNX model"),
        ("onnx:{tmp}/missing.onnx", [], "no such file"),
        ("pt2:{tmp}/junk.onnx", [], "not a torch.export program"),
        ("timm:test_resnet", [], "needs --teacher-weights"),
        ("timm:test_resnet", ["--teacher-weights", "{tmp}/evil.pt"], "cannot read teacher"),
        ("torchvision:resnet18", ["--teacher-weights", "{tmp}/t.safetensors"], "do not fit"),
        ("hf:{tmp}", [], "no Hugging Face model folder"),
        ("resnet18", ["--teacher-size", "224"], "describe a given teacher's input"),
        ("nosuchkind:x", [], "unknown kind of teacher"),
        ("onnx:{tmp}/junk.onnx", ["--teacher-checkpoint", "{tmp}/t.safetensors"], "goes with"),
    ],
)
def test_a_wrong_teacher_is_one_line_and_never_runs_a_pickle(
    tmp_path, capsys, shared_cache, teacher, extra, said
):
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    save_file({"fc.weight": torch.zeros(2, 2)}, str(tmp_path / "t.safetensors"))
    ran = tmp_path / "ran"
    torch.save({"fc.weight": _Evil(str(ran))}, tmp_path / "evil.pt")
    fmt = {"tmp": str(tmp_path)}
    args = ["search", "--data", "digits", "--teacher", teacher.format(**fmt)]
    args += [a.format(**fmt) for a in extra]
    code = main([*args, "--out", str(tmp_path / "out"), "--cache-dir", str(shared_cache)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and said in err, err
    assert not ran.exists()


class _Evil:
    """Unpickling this creates a file: what a loader must never do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_loading_a_program_unpickles_nothing(tmp_path):
    ran = tmp_path / "ran"
    blob = pickle.dumps(_Evil(str(ran)))
    with _no_unpickling():
        with pytest.raises(pickle.UnpicklingError):
            pickle.loads(blob)
        with pytest.raises(pickle.UnpicklingError):
            torch.save(_Evil(str(ran)), tmp_path / "x.pt")
            torch.load(tmp_path / "x.pt")  # weights_only is forced
    assert pickle.loads(pickle.dumps(3)) == 3  # restored after
    ran.unlink(missing_ok=True)


def test_a_spec_names_its_kind():
    assert parse_spec("resnet18").kind == "scratch"
    spec = parse_spec("timm:vit_tiny", weights="w.pt", mean="0.5,0.5,0.5")
    assert (spec.kind, spec.target, spec.mean) == ("timm", "vit_tiny", (0.5, 0.5, 0.5))
    with pytest.raises(UserError, match="positive"):
        parse_spec("onnx:x.onnx", std="0,1,1")

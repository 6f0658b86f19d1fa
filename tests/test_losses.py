"""Losses: each formula checked against a direct computation from its paper, and its invariances."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autodistill.errors import UserError
from autodistill.forward import attention_map
from autodistill.losses import LOSSES, Dims, Distiller, Outputs, get_loss, total

torch.manual_seed(0)
C = 6


def _batch(b: int = 8, c: int = C):
    g = torch.Generator().manual_seed(b * 31 + c)
    return (
        torch.randn(b, c, generator=g) * 2,
        torch.randn(b, c, generator=g) * 2,
        torch.randint(0, c, (b,), generator=g),
    )


def _out(logits, targets, teacher_logits=None, *, progress: float = 1.0, **parts) -> Outputs:
    """A batch's outputs, by kind: ``features=`` / ``attention=`` for the student's,
    ``teacher_features=`` / ``teacher_attention=`` for the cached teacher's."""
    student = {"logits": logits, **{k: v for k, v in parts.items() if not k.startswith("teacher_")}}
    teacher = {k.removeprefix("teacher_"): v for k, v in parts.items() if k.startswith("teacher_")}
    if teacher_logits is not None:
        teacher["logits"] = teacher_logits
    return Outputs(student, targets, teacher, progress=progress)


def _run(name: str, out: Outputs, modules=None, **params):
    loss = get_loss(name)
    return loss.fn(out, modules or {}, **{**loss.defaults, **params})


def _softmax(row: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_kd_matches_hintons_formula():
    s, t, y = _batch()
    T, alpha = 3.0, 0.7
    parts = _run("kd", _out(s, y, t), temperature=T, alpha=alpha)
    kl = 0.0
    for i in range(len(s)):
        ps, pt = _softmax(s[i].tolist(), T), _softmax(t[i].tolist(), T)
        kl += sum(q * math.log(q / p) for p, q in zip(ps, pt, strict=True))
    expected = (1 - alpha) * F.cross_entropy(s, y).item() + alpha * T * T * kl / len(s)
    assert total(parts).item() == pytest.approx(expected, rel=1e-5)


def test_dkd_matches_the_decoupled_formula():
    s, t, y = _batch()
    T, alpha, beta = 2.0, 1.5, 6.0
    parts = _run("dkd", _out(s, y, t), temperature=T, alpha=alpha, beta=beta)
    tckd = nckd = 0.0
    for i in range(len(s)):
        ps, pt = _softmax(s[i].tolist(), T), _softmax(t[i].tolist(), T)
        k = int(y[i])
        bs, bt = [ps[k], 1 - ps[k]], [pt[k], 1 - pt[k]]
        tckd += sum(q * math.log(q / p) for p, q in zip(bs, bt, strict=True))
        rest_s = _softmax([v for j, v in enumerate(s[i].tolist()) if j != k], T)
        rest_t = _softmax([v for j, v in enumerate(t[i].tolist()) if j != k], T)
        nckd += sum(q * math.log(q / p) for p, q in zip(rest_s, rest_t, strict=True))
    n = len(s)
    assert parts["tckd"].item() == pytest.approx(alpha * T * T * tckd / n, rel=1e-4)
    assert parts["nckd"].item() == pytest.approx(beta * T * T * nckd / n, rel=1e-4)
    assert parts["ce"].item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)


def _pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (z - mb) for x, z in zip(a, b, strict=True))
    va = math.sqrt(sum((x - ma) ** 2 for x in a))
    vb = math.sqrt(sum((z - mb) ** 2 for z in b))
    return cov / (va * vb)


def test_dist_matches_inter_and_intra_class_correlation():
    s, t, y = _batch()
    T, beta, gamma = 2.0, 1.5, 0.5
    parts = _run("dist", _out(s, y, t), temperature=T, beta=beta, gamma=gamma)
    ps = [_softmax(r.tolist(), T) for r in s]
    pt = [_softmax(r.tolist(), T) for r in t]
    inter = 1 - sum(_pearson(a, b) for a, b in zip(ps, pt, strict=True)) / len(ps)
    cols = range(C)
    intra = 1 - sum(_pearson([r[c] for r in ps], [r[c] for r in pt]) for c in cols) / C
    assert parts["inter"].item() == pytest.approx(beta * T * T * inter, rel=1e-4)
    assert parts["intra"].item() == pytest.approx(gamma * T * T * intra, rel=1e-4)


def test_attention_map_and_at_match_zagoruyko_komodakis():
    g = torch.Generator().manual_seed(3)
    fs, ft = torch.randn(2, 5, 4, 4, generator=g), torch.randn(2, 7, 4, 4, generator=g)
    ms, mt = attention_map(fs, 4), attention_map(ft, 4)
    q = (fs[0] ** 2).mean(0).flatten()
    assert torch.allclose(ms[0], q / q.norm(), atol=1e-6)
    out = _out(
        torch.zeros(2, C),
        torch.zeros(2, dtype=torch.long),
        attention=ms[:, None],
        teacher_attention=mt[:, None],
    )
    parts = _run("at", out, weight=10.0)
    expected = 10.0 / 2 * ((ms - mt) ** 2).mean()  # beta / (map elements x batch size)
    assert parts["at"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_hint_is_the_mse_of_the_projected_student_features():
    g = torch.Generator().manual_seed(4)
    fs, ft = torch.randn(4, 3, generator=g), torch.randn(4, 5, generator=g)
    d = Distiller(get_loss("hint"), {"weight": 2.0}, dims=Dims(C, 3, 5))
    out = _out(
        torch.zeros(4, C), torch.zeros(4, dtype=torch.long), features=fs, teacher_features=ft
    )
    proj = d.learned["proj"]
    expected = 2.0 * ((proj(fs) - ft) ** 2).mean()
    assert d(out)["hint"].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["kd", "dkd", "dist", "adversarial"])
def test_logit_losses_ignore_a_constant_added_to_a_row(name):
    s, t, y = _batch()
    shift = torch.randn(len(s), 1) * 5
    d = Distiller(get_loss(name), dims=Dims(C))
    a, b = d(_out(s, y, t)), d(_out(s + shift, y, t - shift))
    for k in a:
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-4, abs=1e-5), k


@pytest.mark.parametrize(
    ("name", "part"),
    [("kd", "kd"), ("dkd", "tckd"), ("dkd", "nckd"), ("dist", "inter"), ("dist", "intra")],
)
def test_teacher_terms_vanish_when_the_student_equals_the_teacher(name, part):
    _, t, y = _batch()
    assert abs(_run(name, _out(t.clone(), y, t))[part].item()) < 1e-5


def test_feature_terms_vanish_when_the_student_equals_the_teacher():
    m = attention_map(torch.randn(3, 4, 5, 5), 5)[:, None]
    at = _run(
        "at",
        _out(
            torch.zeros(3, C),
            torch.zeros(3, dtype=torch.long),
            attention=m,
            teacher_attention=m.clone(),
        ),
    )
    assert at["at"].item() < 1e-8
    d = Distiller(get_loss("hint"), dims=Dims(C, 4, 4))
    with torch.no_grad():
        d.learned["proj"].weight.copy_(torch.eye(4))
        d.learned["proj"].bias.zero_()
    f = torch.randn(3, 4)
    out = _out(
        torch.zeros(3, C), torch.zeros(3, dtype=torch.long), features=f, teacher_features=f.clone()
    )
    assert d(out)["hint"].item() < 1e-10


def test_gradients_reach_the_student_and_the_hint_projection():
    d = Distiller(get_loss("hint"), dims=Dims(C, 3, 5))
    feats = torch.randn(4, 3, requires_grad=True)
    logits = torch.randn(4, C, requires_grad=True)
    out = _out(
        logits, torch.zeros(4, dtype=torch.long), features=feats, teacher_features=torch.randn(4, 5)
    )
    total(d(out)).backward()
    assert feats.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0
    assert d.learned["proj"].weight.grad.abs().sum() > 0


def test_the_adversarial_discriminator_learns_to_tell_teacher_from_student():
    torch.manual_seed(0)
    d = Distiller(get_loss("adversarial"), dims=Dims(C))
    disc = d.aux["disc"]
    g = torch.Generator().manual_seed(5)
    student = torch.randn(64, C, generator=g)  # flat, uncertain outputs
    teacher = torch.randn(64, C, generator=g) * 6  # confident outputs
    y = torch.zeros(64, dtype=torch.long)

    def accuracy() -> float:
        with torch.no_grad():
            real = torch.sigmoid(disc(F.log_softmax(teacher / 4, 1))) > 0.5
            fake = torch.sigmoid(disc(F.log_softmax(student / 4, 1))) < 0.5
        return float(torch.cat([real, fake]).float().mean())

    first = d.after_step(_out(student, y, teacher))["disc"]
    for _ in range(300):
        last = d.after_step(_out(student, y, teacher))["disc"]
    assert last < first * 0.5 and accuracy() > 0.9
    # and the student's adversarial term pushes towards fooling it
    logits = student.clone().requires_grad_(True)
    d(_out(logits, y, teacher))["adv"].backward()
    assert logits.grad.abs().sum() > 0


def test_every_loss_has_a_paper_docstring_and_known_needs():
    for name, loss in LOSSES.items():
        assert loss.doc, name
        assert loss.needs <= {"logits", "features", "attention"}
    assert not LOSSES["ce"].needs_teacher
    assert LOSSES["hint"].needs == {"logits", "features"}
    assert LOSSES["at"].needs == {"logits", "attention"}


def test_unknown_loss_or_parameter_is_a_user_error():
    with pytest.raises(UserError, match="unknown loss 'kl'; known: adversarial, at, ce, dist"):
        get_loss("kl")
    with pytest.raises(UserError, match="loss 'kd' has no parameter"):
        Distiller(get_loss("kd"), {"beta": 1.0}, dims=Dims(C))


def test_dkd_warms_its_teacher_terms_up_linearly_over_the_first_part_of_training():
    s, t, y = _batch()
    full = _run("dkd", _out(s, y, t, progress=1.0), warmup=0.2)
    half = _run("dkd", _out(s, y, t, progress=0.1), warmup=0.2)
    start = _run("dkd", _out(s, y, t, progress=0.0), warmup=0.2)
    assert half["nckd"].item() == pytest.approx(full["nckd"].item() / 2, rel=1e-5)
    assert start["tckd"].item() == 0 and start["ce"].item() == full["ce"].item()

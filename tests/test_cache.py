"""Teacher cache: cached logits are the teacher's outputs on exactly the stored views, checked."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from autodistill.cache import cache_key, compute_views, load_views, tensors_sha256
from autodistill.data import Augmentation, default_augmentation, normalize


def test_cached_logits_are_the_teacher_on_the_stored_view(digits, teacher, views):
    _, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    idx = torch.arange(0, len(digits.train), 97)
    for v in range(views.count):
        x = aug.apply(digits.train.images[idx], views.params[v, idx])
        with torch.inference_mode():
            expected = model(normalize(x, *digits.stats))
        assert torch.allclose(
            views.outputs["logits"][v, idx].float(), expected, atol=2e-2, rtol=1e-2
        )
    assert views.outputs["logits"].dtype == torch.float16 and views.params.dtype == torch.int8
    assert views.params[0].abs().sum() == 0  # view 0 is the plain image
    assert views.params[1].abs().sum() > 0


def test_a_second_lookup_reads_the_file_and_other_keys_miss(views, cache_dir):
    again = load_views(cache_dir, views.key)
    assert again is not None and torch.equal(again.outputs["logits"], views.outputs["logits"])
    assert views.nbytes() > views.outputs["logits"].numel() * 2
    assert load_views(cache_dir, "0" * 64) is None


def test_key_changes_with_everything_the_logits_depend_on():
    aug = Augmentation(2, False)
    base = cache_key("w", "digits", "d", "train", aug, 4)
    assert (
        len(
            {
                base,
                cache_key("w2", "digits", "d", "train", aug, 4),
                cache_key("w", "digits", "d2", "train", aug, 4),
                cache_key("w", "digits", "d", "train", Augmentation(3, False), 4),
                cache_key("w", "digits", "d", "train", aug, 5),
                # the same weights shown another size, or normalised otherwise (a given teacher)
                cache_key("w", "digits", "d", "train", aug, 4, {"size": 64, "mean": [0.5]}),
                cache_key("w", "digits", "d", "train", aug, 4, {"size": 32, "mean": [0.5]}),
                cache_key("w", "digits", "d", "train", aug, 4, {"size": 32, "mean": [0.4]}),
            }
        )
        == 8
    )
    # a teacher that sees the data as it is keeps the key caches were written under
    assert cache_key("w", "digits", "d", "train", aug, 4, {}) == base


def _data_offset(path: Path) -> int:
    """Where a safetensors file's tensor bytes begin: after the 8-byte length and the header."""
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def _flip_a_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = _data_offset(path)
    data[start + (len(data) - start) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_checksum(path: Path) -> None:
    """Rewrite the file as a version without checksums wrote it: the same tensors, key only."""
    with safe_open(str(path), framework="pt") as f:
        key = f.metadata()["key"]
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    save_file(tensors, str(path), metadata={"key": key})


@pytest.mark.parametrize(
    ("damage", "warning"),
    [
        (_flip_a_data_byte, "fails its checksum"),
        (_truncate, "is unreadable"),
        (_drop_checksum, "has no checksum"),
    ],
    ids=["bit flip", "truncated", "no checksum"],
)
def test_a_damaged_cache_file_is_detected_and_rebuilt(
    digits, teacher, tmp_path, caplog, damage, warning
):
    _, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    key = "ab" * 32
    first = compute_views(
        model, digits.train, aug, digits.stats, key=key, views=1, cache_dir=tmp_path
    )
    assert load_views(tmp_path, key) is not None
    damage(first.paths[0])
    with caplog.at_level(logging.WARNING, logger="autodistill.cache"):
        assert load_views(tmp_path, key) is None
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warning in warned[0] and str(first.paths[0]) in warned[0]
    compute_views(model, digits.train, aug, digits.stats, key=key, views=1, cache_dir=tmp_path)
    again = load_views(tmp_path, key)
    assert again is not None and torch.equal(again.outputs["logits"], first.outputs["logits"])


def test_every_kind_of_cache_file_is_checked(digits, teacher, tmp_path):
    _, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    key = "ef" * 32
    kinds = ("logits", "features", "attention")
    views = compute_views(
        model, digits.train, aug, digits.stats, key=key, views=1, cache_dir=tmp_path, kinds=kinds
    )
    _flip_a_data_byte(views.paths[2])  # the attention maps
    assert load_views(tmp_path, key, ("logits", "features")) is not None
    assert load_views(tmp_path, key, kinds) is None


def test_the_checksum_covers_names_and_bytes_in_sorted_order():
    a, b = torch.arange(4, dtype=torch.float16), torch.ones(2, 3, dtype=torch.int8)
    expected = hashlib.sha256(b"a" + a.numpy().tobytes() + b"b" + b.numpy().tobytes()).hexdigest()
    assert tensors_sha256({"b": b, "a": a}) == expected
    assert tensors_sha256({"b": b, "a": a.flip(0)}) != expected
    assert tensors_sha256({"c": b, "a": a}) != expected


def test_features_and_attention_are_the_teachers_on_the_stored_view(digits, teacher, full_views):
    from autodistill.forward import forward_outputs, map_size

    _, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    idx = torch.arange(0, len(digits.train), 101)
    x = aug.apply(digits.train.images[idx], full_views.params[1, idx])
    with torch.inference_mode():
        got = forward_outputs(
            model,
            normalize(x, *digits.stats),
            ("features", "attention"),
            map_size(digits.image_size),
        )
    logits, feats, maps = got["logits"], got["features"], got["attention"]
    assert torch.allclose(
        full_views.outputs["logits"][1, idx].float(), logits, atol=2e-2, rtol=1e-2
    )
    assert torch.allclose(
        full_views.outputs["features"][1, idx].float(), feats, atol=2e-2, rtol=1e-2
    )
    assert torch.allclose(full_views.outputs["attention"][1, idx].float(), maps, atol=2e-3)
    assert full_views.outputs["attention"].shape[2] == 3 and full_views.map_size == map_size(
        digits.image_size
    )


def test_a_cache_of_logits_only_misses_when_features_are_asked_for(digits, teacher, tmp_path):
    _, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    key = "cd" * 32
    compute_views(model, digits.train, aug, digits.stats, key=key, views=1, cache_dir=tmp_path)
    assert load_views(tmp_path, key, ("logits",)) is not None
    assert load_views(tmp_path, key, ("logits", "features")) is None


def test_the_cache_reports_its_size_on_disk(full_views):
    assert full_views.nbytes() == sum(p.stat().st_size for p in full_views.paths)
    assert len(full_views.paths) == 3


def test_teacher_outputs_beyond_what_the_cache_holds_are_refused(digits, teacher, tmp_path):
    # Logits past fp16's range become inf in the cache, and every trial's loss NaN.
    from autodistill.errors import UserError

    _, model = teacher
    loud = torch.nn.Sequential(model, _Scale(1e6))
    aug = default_augmentation(digits.name, digits.image_size)
    with pytest.raises(UserError, match="NaN or beyond fp16's range"):
        compute_views(
            loud, digits.train, aug, digits.stats, key="0" * 16, views=1, cache_dir=tmp_path
        )
    assert not list(tmp_path.rglob("*.safetensors"))


class _Scale(torch.nn.Module):
    def __init__(self, by: float):
        super().__init__()
        self.by = by

    def forward(self, x):
        return x * self.by

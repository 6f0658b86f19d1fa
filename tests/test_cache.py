"""Teacher cache: cached logits are the teacher's outputs on exactly the stored views."""

from __future__ import annotations

import torch

from autodistill.cache import cache_key, compute_views, load_views
from autodistill.data import Augmentation, default_augmentation, normalize


def test_cached_logits_are_the_teacher_on_the_stored_view(digits, teacher, views):
    _, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    idx = torch.arange(0, len(digits.train), 97)
    for v in range(views.count):
        x = aug.apply(digits.train.images[idx], views.params[v, idx])
        with torch.inference_mode():
            expected = model(normalize(x, *digits.stats))
        assert torch.allclose(views.logits[v, idx].float(), expected, atol=2e-2, rtol=1e-2)
    assert views.logits.dtype == torch.float16 and views.params.dtype == torch.int8
    assert views.params[0].abs().sum() == 0  # view 0 is the plain image
    assert views.params[1].abs().sum() > 0


def test_a_second_lookup_reads_the_file_and_other_keys_miss(views, cache_dir):
    again = load_views(cache_dir, views.key)
    assert again is not None and torch.equal(again.logits, views.logits)
    assert views.nbytes() > views.logits.numel() * 2
    assert load_views(cache_dir, "0" * 64) is None


def test_key_changes_with_everything_the_logits_depend_on():
    aug = Augmentation(2, False)
    base = cache_key("w", "digits", "d", "train", aug, 4)
    assert len({
        base,
        cache_key("w2", "digits", "d", "train", aug, 4),
        cache_key("w", "digits", "d2", "train", aug, 4),
        cache_key("w", "digits", "d", "train", Augmentation(3, False), 4),
        cache_key("w", "digits", "d", "train", aug, 5),
    }) == 5  # fmt: skip


def test_a_truncated_cache_file_is_detected_and_rebuilt(digits, teacher, tmp_path):
    _, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    key = "ab" * 32
    first = compute_views(model, digits.train, aug, digits.stats, key=key, views=1,
                          cache_dir=tmp_path, progress=False)  # fmt: skip
    path = first.paths[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert load_views(tmp_path, key) is None
    compute_views(model, digits.train, aug, digits.stats, key=key, views=1, cache_dir=tmp_path,
                  progress=False)  # fmt: skip
    again = load_views(tmp_path, key)
    assert again is not None and torch.equal(again.logits, first.logits)


def test_features_and_attention_are_the_teachers_on_the_stored_view(digits, teacher, full_views):
    from autodistill.forward import forward_parts, map_size

    _, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    idx = torch.arange(0, len(digits.train), 101)
    x = aug.apply(digits.train.images[idx], full_views.params[1, idx])
    with torch.inference_mode():
        logits, feats, maps = forward_parts(
            model,
            normalize(x, *digits.stats),
            features=True,
            maps=True,
            size=map_size(digits.image_size),
        )
    assert torch.allclose(full_views.logits[1, idx].float(), logits, atol=2e-2, rtol=1e-2)
    assert torch.allclose(full_views.features[1, idx].float(), feats, atol=2e-2, rtol=1e-2)
    assert torch.allclose(full_views.maps[1, idx].float(), maps, atol=2e-3)
    assert full_views.maps.shape[2] == 3 and full_views.map_size == map_size(digits.image_size)


def test_a_cache_of_logits_only_misses_when_features_are_asked_for(digits, teacher, tmp_path):
    _, model = teacher
    aug = default_augmentation(digits.name, digits.image_size)
    key = "cd" * 32
    compute_views(model, digits.train, aug, digits.stats, key=key, views=1, cache_dir=tmp_path,
                  progress=False)  # fmt: skip
    assert load_views(tmp_path, key, ("logits",)) is not None
    assert load_views(tmp_path, key, ("logits", "features")) is None


def test_the_cache_reports_its_size_on_disk(full_views):
    assert full_views.nbytes() == sum(p.stat().st_size for p in full_views.paths)
    assert len(full_views.paths) == 3

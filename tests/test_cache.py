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
    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 2])
    assert load_views(tmp_path, key) is None

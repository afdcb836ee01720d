"""Text side of the commentator: how lines become token ids and back.

Two codecs, one interface (:class:`TextCodec`):

* :class:`WordCodec`: the project's word-level :class:`~models.lm.vocab.Vocab` (used by
  the small from-scratch backbone; its specials ``<sil>``/``<eol>`` are ordinary rows
  of that model's own embedding table);
* :class:`HFCodec`: a Hugging Face tokenizer of a pretrained backbone. The silence
  token does not exist in a pretrained vocabulary, so it is one *extra* id,
  ``len(tokenizer)``, with its own learned input and output vectors in the
  commentator (the streaming-EOS idea of VideoLLM-online, Chen et al. 2024); the end
  of a line is the tokenizer's end-of-sequence token.

Output ids of the model are ``0 .. n_ids - 1``; ids ``>= base_vocab`` are the extra
rows (``n_extra = n_ids - base_vocab``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from models.lm.vocab import Vocab, words

__all__ = ["HFCodec", "TextCodec", "WordCodec", "spoken_ids"]


class TextCodec(Protocol):
    """Token ids of commentary lines (see module docstring)."""

    @property
    def base_vocab(self) -> int:
        """Rows of the backbone's own embedding table."""

    @property
    def n_ids(self) -> int:
        """All ids the commentator can emit (``base_vocab`` + extra rows)."""

    @property
    def sil_id(self) -> int:
        """The learned silence token: say nothing (more) in this step."""

    @property
    def eol_id(self) -> int:
        """End of the current line."""

    def encode(self, text: str) -> list[int]:
        """Ids of one line's text (without ``eol_id``)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a line's ids (specials dropped)."""

    def banned_ids(self) -> list[int]:
        """Ids never emitted while decoding (padding, chat markers...)."""

    def to_dict(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild the codec."""


class WordCodec:
    """Word-level codec over a :class:`~models.lm.vocab.Vocab` (lower-cased words)."""

    kind = "word"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    @property
    def base_vocab(self) -> int:
        return len(self.vocab)

    @property
    def n_ids(self) -> int:
        return len(self.vocab)

    @property
    def sil_id(self) -> int:
        return self.vocab.sil_id

    @property
    def eol_id(self) -> int:
        return self.vocab.eol_id

    def encode(self, text: str) -> list[int]:
        return self.vocab.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.vocab.decode(ids)

    def banned_ids(self) -> list[int]:
        return [self.vocab.pad_id]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab": self.vocab.to_dict()}

    @classmethod
    def build(cls, texts: Sequence[str]) -> WordCodec:
        """A codec whose vocabulary is every word of ``texts``."""
        return cls(Vocab.build(texts))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordCodec:
        """Inverse of :meth:`to_dict`."""
        return cls(Vocab.from_dict(d["vocab"]))


class HFCodec:
    """Codec over a Hugging Face tokenizer, plus one extra silence id.

    Lines are lower-cased words joined by spaces (as :func:`models.lm.vocab.words`
    normalises them) and tokenised with a leading space, so that a line's tokens are
    the same wherever it appears.
    """

    kind = "hf"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        if tokenizer.eos_token_id is None:
            raise ValueError("the backbone's tokenizer has no end-of-sequence token (needed as end of line)")
        self._base = len(tokenizer)
        self._special = sorted(set(tokenizer.all_special_ids) - {tokenizer.eos_token_id})

    @property
    def base_vocab(self) -> int:
        return self._base

    @property
    def n_ids(self) -> int:
        return self._base + 1

    @property
    def sil_id(self) -> int:
        return self._base

    @property
    def eol_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def encode(self, text: str) -> list[int]:
        ws = words(text)
        return list(self.tokenizer.encode(" " + " ".join(ws), add_special_tokens=False)) if ws else []

    def decode(self, ids: Sequence[int]) -> str:
        keep = [int(i) for i in ids if 0 <= int(i) < self._base]
        return self.tokenizer.decode(keep, skip_special_tokens=True).strip()

    def banned_ids(self) -> list[int]:
        return list(self._special)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


def spoken_ids(codec: TextCodec, texts: Sequence[str]) -> list[int]:
    """Every output id a model trained on ``texts`` learned to emit: the ids of the
    lines plus silence and end of line (the shortlist of
    :meth:`models.lm.commentator.Commentator.restrict_output`).

    Args:
        codec: The model's text codec.
        texts: Its training lines.

    Returns:
        Sorted distinct ids.
    """
    return sorted({i for t in texts for i in codec.encode(t)} | {codec.sil_id, codec.eol_id})

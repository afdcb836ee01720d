"""Word-level vocabulary of the duplex commentator.

The commentator emits one text token per model step (5 Hz). Besides words, three
special tokens carry the duplex protocol:

* ``<sil>``: the model says nothing this step (it also serves as the "previous token"
  of the very first step of a session);
* ``<eol>``: the current line (utterance) ends here;
* ``<unk>``: a word the vocabulary does not know;
* ``<pad>``: padding of training batches, never emitted (and ignored by the loss).

Words are lowercase runs of letters, digits and apostrophes; punctuation is dropped,
so ``"Goal! Red scores."`` encodes as ``["goal", "red", "scores"]``. The vocabulary is
saved inside the commentator checkpoint as a plain dict (:meth:`Vocab.to_dict`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["EOL", "PAD", "SIL", "SPECIALS", "UNK", "Vocab", "words"]

PAD = "<pad>"
SIL = "<sil>"
EOL = "<eol>"
UNK = "<unk>"
SPECIALS: tuple[str, ...] = (PAD, SIL, EOL, UNK)  # fixed ids 0..3, in this order

_WORD_RE = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """Splits text into the vocabulary's word units.

    Args:
        text: Any text; case and punctuation are ignored.

    Returns:
        Lowercase words (letters, digits, apostrophes), in order.
    """
    return [w.strip("'") for w in _WORD_RE.findall(text.lower()) if w.strip("'")]


class Vocab:
    """A word <-> id mapping with the duplex specials at fixed ids.

    Attributes:
        itos: Token strings by id; ``itos[:4]`` are :data:`SPECIALS`.
        stoi: Id by token string.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        """Creates a vocabulary from its full token list.

        Args:
            tokens: All tokens by id, starting with :data:`SPECIALS` in order.

        Raises:
            ValueError: If the specials are missing or misplaced, or a token repeats.
        """
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(
                f"vocabulary must start with {list(SPECIALS)}, got {tokens[:4]}"
            )
        if len(set(tokens)) != len(tokens):
            dup = [t for t, c in Counter(tokens).items() if c > 1]
            raise ValueError(f"vocabulary has repeated tokens: {dup[:5]}")
        self.itos: list[str] = tokens
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 1) -> Vocab:
        """Builds a vocabulary from transcript lines.

        Args:
            texts: Transcript texts (any case and punctuation).
            min_count: Words seen fewer times than this map to ``<unk>``.

        Returns:
            The vocabulary: specials, then words by decreasing count (ties sorted
            alphabetically, so the result is deterministic).
        """
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(words(text))
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
            key=lambda w: (-counts[w], w),
        )
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def pad_id(self) -> int:
        return self.stoi[PAD]

    @property
    def sil_id(self) -> int:
        return self.stoi[SIL]

    @property
    def eol_id(self) -> int:
        return self.stoi[EOL]

    @property
    def unk_id(self) -> int:
        return self.stoi[UNK]

    def encode(self, text: str) -> list[int]:
        """Encodes text into word ids (no ``<eol>`` appended).

        Args:
            text: Any text; see :func:`words` for how it is split.

        Returns:
            One id per word; unknown words become ``<unk>``.
        """
        unk = self.unk_id
        return [self.stoi.get(w, unk) for w in words(text)]

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """Decodes ids into space-separated words.

        Args:
            ids: Token ids.
            skip_special: Drop ``<pad>``, ``<sil>`` and ``<eol>`` (``<unk>`` is kept
                as the literal ``"<unk>"`` so that a reader sees a word was there).

        Returns:
            The words joined by single spaces.

        Raises:
            ValueError: If an id is out of range.
        """
        out = []
        skip = {self.pad_id, self.sil_id, self.eol_id} if skip_special else set()
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"token id {i} out of range [0, {len(self.itos)})")
            if i not in skip:
                out.append(self.itos[i])
        return " ".join(out)

    def is_word(self, token_id: int) -> bool:
        """True if ``token_id`` is a word (or ``<unk>``), not pad/sil/eol."""
        return token_id not in (self.pad_id, self.sil_id, self.eol_id)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON/pickle-friendly form, stored in checkpoints."""
        return {"version": 1, "tokens": list(self.itos)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        """Rebuilds a vocabulary saved with :meth:`to_dict`.

        Args:
            d: ``{"version": 1, "tokens": [...]}``.

        Returns:
            The vocabulary.

        Raises:
            ValueError: If the dict is not a saved vocabulary of a known version.
        """
        if not isinstance(d, dict) or d.get("version") != 1 or "tokens" not in d:
            raise ValueError(f"not a saved vocabulary (version 1): {str(d)[:80]}")
        return cls(d["tokens"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __hash__(self) -> int:
        return hash(tuple(self.itos))

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"

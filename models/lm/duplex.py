"""Duplex formats: how watching and talking share one token sequence.

A clip is a grid of model steps (5 Hz, one video frame each) plus timed lines. Both
formats turn it into a sequence of *positions*; each position has optional video
input (the step's B-Flow tokens, pooled by the commentator), optional text input (one
token id) and a target (the id to emit there, or :data:`IGNORE`).

``interleaved`` (default; time interleaving as in LiveCC, Chen et al. 2025): each step
appends one video position, then the text tokens said in that step, at most ``k``.
The video position's target is the step's first text token or the silence token; a
text position's target is the next token of the step, or silence when the step's text
ends early (the streaming-EOS idea of VideoLLM-online, Chen et al. 2024). After ``k``
tokens the next step's video position comes regardless, mid-sentence if need be, so
speaking never blocks watching; the line goes on at the next step.

``parallel`` (Moshi-style, Défossez et al. 2024): one position per step; its input is
the pooled video of the step *plus* the text token emitted at the previous step
(silence included) and its target is the token of this step (``k = 1``).

Lines are laid out token by token from their start step, at most ``k`` tokens per step,
each followed by the end-of-line id; a line starts no earlier than the step after the
previous line ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["FORMATS", "IGNORE", "NO_TEXT", "PositionSequence", "build_sequence", "layout_lines"]

FORMATS = ("interleaved", "parallel")
IGNORE = -100  # target of a position that is not scored (torch cross_entropy's ignore_index)
NO_TEXT = -1  # text input of a position without text


@dataclass(frozen=True)
class PositionSequence:
    """One clip as model positions.

    Attributes:
        step: int64 ``[P]`` model step (video frame) each position belongs to.
        is_frame: bool ``[P]``, True for positions that carry the step's video.
        text_in: int64 ``[P]`` text input id, or :data:`NO_TEXT`.
        target: int64 ``[P]`` id to emit, or :data:`IGNORE`.
    """

    step: np.ndarray
    is_frame: np.ndarray
    text_in: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return int(self.step.shape[0])


def layout_lines(
    lines: Iterable[tuple[float, list[int]]],
    n_steps: int,
    *,
    tokens_per_step: int,
    eol_id: int,
    fps_hz: float,
    delay_steps: int = 0,
) -> list[list[int]]:
    """Assigns each line's tokens to model steps.

    Args:
        lines: ``(start_s, ids)`` per line (ids without end-of-line; any order).
        n_steps: Steps of the clip ``T``.
        tokens_per_step: At most this many tokens per step (``k``).
        eol_id: End-of-line id appended to each line.
        fps_hz: Model steps per second.
        delay_steps: Extra delay of every line, in steps.

    Returns:
        ``T`` lists of ids (empty in silent steps); tokens past the clip's end are dropped.
    """
    out: list[list[int]] = [[] for _ in range(n_steps)]
    cursor = 0
    for start_s, ids in sorted(lines, key=lambda x: x[0]):
        if not ids:
            continue
        t = max(round(start_s * fps_hz) + delay_steps, cursor, 0)
        seq = [*ids, eol_id]
        for i in range(0, len(seq), tokens_per_step):
            if t < n_steps:
                out[t] = seq[i : i + tokens_per_step]
            t += 1
        cursor = t
    return out


def build_sequence(step_ids: list[list[int]], fmt: str, *, k: int, sil_id: int) -> PositionSequence:
    """Turns per-step token lists into model positions (see module docstring).

    Args:
        step_ids: Per step, the ids said in it (from :func:`layout_lines`).
        fmt: ``"interleaved"`` or ``"parallel"``.
        k: Most tokens per step (``parallel`` needs every list to hold at most 1).
        sil_id: The silence id.

    Returns:
        The clip's positions.

    Raises:
        ValueError: On an unknown format or a step with more than ``k`` tokens.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown duplex format {fmt!r}, expected one of {FORMATS}")
    step, is_frame, text_in, target = [], [], [], []
    prev = sil_id
    for t, ids in enumerate(step_ids):
        if len(ids) > (1 if fmt == "parallel" else k):
            raise ValueError(f"step {t} has {len(ids)} tokens, more than allowed in {fmt} format (k={k})")
        first = ids[0] if ids else sil_id
        step.append(t)
        is_frame.append(True)
        target.append(first)
        if fmt == "parallel":
            text_in.append(prev)
            prev = first
            continue
        text_in.append(NO_TEXT)
        for j, tok in enumerate(ids):
            step.append(t)
            is_frame.append(False)
            text_in.append(tok)
            target.append(ids[j + 1] if j + 1 < len(ids) else (sil_id if len(ids) < k else IGNORE))
    return PositionSequence(
        step=np.asarray(step, np.int64),
        is_frame=np.asarray(is_frame, bool),
        text_in=np.asarray(text_in, np.int64),
        target=np.asarray(target, np.int64),
    )

"""Streaming metrics of VideoLLM-online, teacher-forced over one clip, plus event scores.

VideoLLM-online (Chen et al., CVPR 2024) scores a streaming model with one teacher-forced
forward pass per sample: ``LiveMixin.stream_evaluate`` in ``models/modeling_live.py`` of
showlab/videollm-online (commit 4ea416c). Its clip means are averaged over samples and the
frame offset turned into seconds (``/ frame_fps``) by ``compute_metrics`` in
``data/ego4d/narration.py``. The definitions, per turn (a turn is everything up to and
including the ``eos`` that ends an assistant reply):

* **stream positions**: the last token of each frame of the turn, whose label is the
  frame interval token ``,`` ("keep watching") except at the turn's last frame, whose label
  starts the reply (``]\\n``). The prediction there "responds" iff its argmax is not the
  interval token (``frame_token_interval_threshold`` = 0: plain argmax).
* **lm positions**: the reply tokens (``Assistant: ... eos``).
* **LM-PPL** = ``exp(cross_entropy)`` over the turn's lm positions; the clip value is the
  mean of the turn values.
* **LM-Correctness** = (correct lm tokens before the first wrong one) / (lm tokens).
* **frame_diff**: with ``n`` stream positions and ``i`` the first that responds,
  ``frame_diff = n - i - 1`` (> 0: the model would have spoken that many frames *early*,
  0: on time). If none responds (*late*), the code trims the KV cache before the reply,
  appends ``min(frames of next turn, n - 1)`` future frames (the reply is assumed absent)
  and sets ``frame_diff = -(k + 1)`` for the first appended frame ``k`` that responds, or
  ``-(number appended)`` if none does; it is 0 for the last turn ("no future frame") and
  when nothing can be appended. **TimeDiff** = mean ``|frame_diff|`` / fps.
* **Fluency** (needs stream and lm positions) with ``V`` stream positions, ``L`` lm tokens
  and ``c`` correct lm tokens before the first error: ``(V + c) / (V + L)`` if
  ``frame_diff == 0``; ``(V - frame_diff) / (V + L)`` if early; ``(V - 1) / (V + L)`` if
  late.

Mapping onto our arrays (one entry per position of the model's input sequence):

* A **reply** is a run of non-``sil_id`` targets that ends at (and includes) an
  ``eol_id`` target; a run cut by silence or by the end of the clip without ``eol_id``
  also counts. Reply tokens are the **lm positions**: ``L`` = reply length, ``c`` = leading
  reply positions with ``pred == target``. LM-PPL therefore includes the reply's first
  token, which in our format is a word (in VideoLLM-online the first lm token follows a
  template prefix).
* A **turn** runs from the position after the previous reply (or 0) to the reply's end.
  Its **stream positions** are the frame positions (``is_frame``) from the turn's start
  through the reply's first position ``p0`` (the frame where the reply should start):
  ``V`` of them. In the parallel format a reply's later tokens also sit on frames; they
  are lm positions, not stream positions (time passes while speaking, no decision is made).
  ``p0`` is both the last stream position (the decision to speak) and the first lm
  position (the first word), so ``V + L`` counts it twice, as the two losses would.
* "Responds" = ``pred != sil_id`` (silence is our interval token).
* Offsets are measured in seconds on ``frame_time_s``, not in frames, so clips at other
  frame rates combine: early ``= t[p0] - t[first responding stream position]``.
* **Late** turns (``pred == sil_id`` at every stream position): teacher forcing gives no
  run where the model watches on *without* the reply (every position after ``p0`` sees
  the true reply), so the paper's look-ahead cannot be reproduced from these arrays. We
  keep its bounds: with ``F`` frame positions after ``p0`` up to the next reply's start
  (or the clip's end), the paper's window is ``min(F, V - 1)`` frames; if it is 0, the
  offset is 0 (as in the paper; the paper's "last turn" case is ``F == 0`` because its
  clips end at the last reply) and fluency takes the on-time branch. Otherwise the offset
  is the *lower bound* the paper can assign, one frame: ``t[next frame after p0] - t[p0]``,
  and fluency is ``(V - 1) / (V + L)`` (the paper's late fluency does not depend on the
  offset). So ``time_diff_late_s`` and, when there are late turns, ``time_diff_s`` are
  lower bounds.
* A turn without stream positions (a reply right after the previous one, interleaved
  format) gets LM metrics only, as in the paper. Frame positions after the last reply
  belong to no turn: a clip's trailing false alarms are not scored (nor in the paper).
* Aggregation: sums over turns, pooled across clips (``+``/:func:`combine`). The paper
  averages turns within a sample, then samples; the two agree when clips have equal turn
  counts. ``lm_ppl`` is the token-level ``exp(mean NLL)`` over all reply tokens;
  ``lm_ppl_turn_mean`` is the paper's mean of per-turn perplexities. A metric with no
  turn to average is ``None`` (the paper reports 1, 0 and 1 there).

:func:`event_scores` counts event recall / precision with a time tolerance for clips with
scripted events.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["StreamMetrics", "combine", "event_scores", "stream_metrics"]


@dataclass(frozen=True, slots=True)
class StreamMetrics:
    """Sums and counts of the streaming metrics over turns; add them to combine clips.

    Attributes:
        n_turns: Turns (replies) scored.
        n_reply_tokens: Reply (lm) positions scored.
        nll_sum: Sum of ``-log p(target)`` over reply positions, nats.
        turn_ppl_sum: Sum over turns of ``exp(mean NLL of the turn)``.
        lm_correctness_sum: Sum over turns of ``c / L``.
        n_timed: Turns with at least one stream (frame) position: TimeDiff and Fluency
            are averaged over these.
        n_early: Timed turns where the model responds before the reply frame.
        n_on_time: Timed turns where it responds first at the reply frame.
        n_late: Timed turns where it stays silent through the reply frame.
        time_diff_sum_s: Sum of ``|offset|`` over timed turns, seconds.
        early_diff_sum_s: Sum of ``|offset|`` over early turns, seconds.
        late_diff_sum_s: Sum of the lower bounds of ``|offset|`` over late turns, seconds.
        fluency_sum: Sum of the per-turn fluency over timed turns.
    """

    n_turns: int = 0
    n_reply_tokens: int = 0
    nll_sum: float = 0.0
    turn_ppl_sum: float = 0.0
    lm_correctness_sum: float = 0.0
    n_timed: int = 0
    n_early: int = 0
    n_on_time: int = 0
    n_late: int = 0
    time_diff_sum_s: float = 0.0
    early_diff_sum_s: float = 0.0
    late_diff_sum_s: float = 0.0
    fluency_sum: float = 0.0

    def __add__(self, other: StreamMetrics) -> StreamMetrics:
        if not isinstance(other, StreamMetrics):
            return NotImplemented
        return StreamMetrics(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)}
        )

    def summary(self) -> dict[str, Any]:
        """Means of the metrics; a mean with nothing to average is None.

        Returns:
            ``lm_ppl`` (exp of the mean NLL over all reply tokens), ``lm_ppl_turn_mean``
            (mean of per-turn perplexities, the paper's LM-PPL), ``lm_correctness``,
            ``time_diff_s`` (mean ``|offset|`` in seconds over timed turns, a lower bound
            if there are late turns), ``time_diff_early_s``, ``time_diff_late_s`` (lower
            bound), ``fluency``, ``early_rate`` / ``on_time_rate`` / ``late_rate``
            (fractions of timed turns), ``n_turns`` and ``n_timed``.
        """

        def mean(total: float, n: int) -> float | None:
            return total / n if n else None

        return {
            "lm_ppl": _exp(self.nll_sum / self.n_reply_tokens) if self.n_reply_tokens else None,
            "lm_ppl_turn_mean": mean(self.turn_ppl_sum, self.n_turns),
            "lm_correctness": mean(self.lm_correctness_sum, self.n_turns),
            "time_diff_s": mean(self.time_diff_sum_s, self.n_timed),
            "time_diff_early_s": mean(self.early_diff_sum_s, self.n_early),
            "time_diff_late_s": mean(self.late_diff_sum_s, self.n_late),
            "fluency": mean(self.fluency_sum, self.n_timed),
            "early_rate": mean(self.n_early, self.n_timed),
            "on_time_rate": mean(self.n_on_time, self.n_timed),
            "late_rate": mean(self.n_late, self.n_timed),
            "n_turns": self.n_turns,
            "n_timed": self.n_timed,
        }


def combine(parts: Iterable[StreamMetrics]) -> StreamMetrics:
    """Pools the turns of several clips (an empty iterable gives all zeros)."""
    total = StreamMetrics()
    for part in parts:
        total = total + part
    return total


def _exp(x: float) -> float:
    """``exp`` that saturates to ``inf`` instead of raising (a target given p = 0)."""
    return math.exp(x) if x < 709.0 else math.inf


def _replies(target: npt.NDArray[np.int64], *, sil_id: int, eol_id: int) -> list[tuple[int, int]]:
    """``(first, last)`` positions (inclusive) of each reply, in order."""
    spans: list[tuple[int, int]] = []
    p, n = 0, len(target)
    while p < n:
        if target[p] == sil_id:
            p += 1
            continue
        q = p
        while q + 1 < n and target[q] != eol_id and target[q + 1] != sil_id:
            q += 1
        spans.append((p, q))
        p = q + 1
    return spans


def _check(name: str, a: Any, kind: str, size: int | None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1 or arr.dtype.kind not in kind or (size is not None and arr.shape[0] != size):
        want = {"iu": "int", "f": "float", "b": "bool"}[kind]
        shape = "[P]" if size is None else f"[{size}]"
        raise ValueError(f"{name}: expected {want} {shape}, got {arr.dtype} {list(arr.shape)}")
    return arr


def stream_metrics(
    target: npt.ArrayLike,
    pred: npt.ArrayLike,
    logprob_target: npt.ArrayLike,
    is_frame: npt.ArrayLike,
    frame_time_s: npt.ArrayLike,
    *,
    sil_id: int,
    eol_id: int,
) -> StreamMetrics:
    """VideoLLM-online's LM-PPL, LM-Correctness, TimeDiff and Fluency for one teacher-forced clip.

    See the module docstring for the definitions and how they map onto positions. Works for
    both duplex formats: *parallel* (every position is a frame, one token per frame) and
    *interleaved* (a frame position, then 0..k text positions; a reply's first token is
    predicted at a frame position).

    Args:
        target: int [P], the token the model should emit at each position; ``sil_id``
            means "say nothing now".
        pred: int [P], the model's argmax at each position (teacher forced).
        logprob_target: float [P], log-probability (nats) the model gave ``target[p]``.
        is_frame: bool [P], True where a new video frame came in.
        frame_time_s: float [P], media time in seconds of the latest frame at each position.
        sil_id: The silence token.
        eol_id: The end-of-line token that ends a reply.

    Returns:
        The clip's sums and counts; :meth:`StreamMetrics.summary` gives the means.

    Raises:
        ValueError: If the arrays are not 1-D of one length and the expected dtype kinds, or
            if a reply that follows silence does not start at a frame position.
    """
    target_a = _check("target", target, "iu", None)
    n = target_a.shape[0]
    pred_a = _check("pred", pred, "iu", n)
    logp = _check("logprob_target", logprob_target, "f", n).astype(np.float64)
    frame = _check("is_frame", is_frame, "b", n)
    t_s = _check("frame_time_s", frame_time_s, "f", n).astype(np.float64)

    replies = _replies(target_a, sil_id=sil_id, eol_id=eol_id)
    frame_pos = np.flatnonzero(frame)
    turns: list[StreamMetrics] = []
    turn_start = 0
    for r, (p0, end) in enumerate(replies):
        # lm positions: the reply
        ok = pred_a[p0 : end + 1] == target_a[p0 : end + 1]
        n_lm = end - p0 + 1
        n_correct = n_lm if ok.all() else int(np.argmin(ok))
        nll = -float(logp[p0 : end + 1].sum())
        lm = StreamMetrics(
            n_turns=1, n_reply_tokens=n_lm, nll_sum=nll, turn_ppl_sum=_exp(nll / n_lm),
            lm_correctness_sum=n_correct / n_lm,
        )
        # stream positions: frames from the turn's start through p0
        stream = frame_pos[(frame_pos >= turn_start) & (frame_pos <= p0)]
        turn_start = end + 1
        if stream.size == 0:
            turns.append(lm)
            continue
        if stream[-1] != p0:
            raise ValueError(f"reply at position {p0} follows silence but is not at a frame position")
        v = int(stream.size)
        responds = np.flatnonzero(pred_a[stream] != sil_id)
        if responds.size:
            frame_diff = v - int(responds[0]) - 1
            offset_s = float(t_s[p0] - t_s[stream[responds[0]]])
        else:  # late: the paper's look-ahead is not observable, keep its lower bound
            stop = replies[r + 1][0] if r + 1 < len(replies) else n - 1
            future = frame_pos[(frame_pos > p0) & (frame_pos <= stop)]
            if min(int(future.size), v - 1) == 0:
                frame_diff, offset_s = 0, 0.0
            else:
                frame_diff, offset_s = -1, float(t_s[future[0]] - t_s[p0])
        if frame_diff == 0:
            fluency = (v + n_correct) / (v + n_lm)
        elif frame_diff > 0:
            fluency = (v - frame_diff) / (v + n_lm)
        else:
            fluency = (v - 1) / (v + n_lm)
        early, late = frame_diff > 0, responds.size == 0
        turns.append(lm + StreamMetrics(
            n_timed=1, n_early=int(early), n_on_time=int(not early and not late), n_late=int(late),
            time_diff_sum_s=abs(offset_s), early_diff_sum_s=abs(offset_s) if early else 0.0,
            late_diff_sum_s=abs(offset_s) if late else 0.0, fluency_sum=fluency,
        ))
    return combine(turns)


def event_scores(
    events: Sequence[tuple[float, str]],
    lines: Sequence[tuple[float, str]],
    tolerance_s: float = 1.0,
    *,
    mentions: Callable[[str, str], bool],
) -> tuple[int, int, int, int]:
    """Counts for event recall and precision with a time tolerance.

    An event is *recalled* if some line starting within ``±tolerance_s`` of it mentions
    it; a line is *precise* if it mentions some event within ``±tolerance_s`` of its start.
    ``event_recall = recall_hits / n_events`` and ``event_precision = precision_hits /
    n_lines`` (undefined, report None, when the denominator is 0); sum the counts over
    clips before dividing.

    Args:
        events: ``(t_s, kind)`` per scripted event, seconds on the clip's clock.
        lines: ``(start_s, text)`` per produced line, seconds on the same clock.
        tolerance_s: Allowed ``|start_s - t_s|``, seconds (inclusive).
        mentions: ``mentions(text, kind)`` tells whether a line mentions an event kind
            (e.g. ``models.training.evaluate.mentions``).

    Returns:
        ``(recall_hits, n_events, precision_hits, n_lines)``.

    Raises:
        ValueError: If ``tolerance_s`` is negative or not finite.
    """
    if not math.isfinite(tolerance_s) or tolerance_s < 0:
        raise ValueError(f"tolerance_s: expected a finite value >= 0, got {tolerance_s}")
    hit_lines = [False] * len(lines)
    recall_hits = 0
    for t_s, kind in events:
        recalled = False
        for i, (start_s, text) in enumerate(lines):
            if abs(start_s - t_s) <= tolerance_s and mentions(text, kind):
                recalled = hit_lines[i] = True
        recall_hits += recalled
    return recall_hits, len(events), sum(hit_lines), len(lines)


def noun_lemma(word: str) -> str:
    """The singular of a plural English noun, for matching mentions (``people`` → ``person``,
    ``cars`` → ``car``, ``buses`` → ``bus``); other words unchanged. Lowercase input."""
    irregular = {"people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
                 "sheep": "sheep", "geese": "goose", "feet": "foot", "teeth": "tooth", "knives": "knife"}
    if word in irregular:
        return irregular[word]
    for suffix, repl in (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("sses", "ss"), ("xes", "x"), ("uses", "us")):
        if word.endswith(suffix) and len(word) > len(suffix):
            return word[: -len(suffix)] + repl
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def object_mention_scores(
    produced: Sequence[tuple[float, str]],
    references: Sequence[tuple[float, str]],
    nouns: Iterable[str],
    tolerance_s: float = 2.0,
    *,
    words: Callable[[str], list[str]],
) -> tuple[int, int, int, int]:
    """Counts for object mention recall and precision against reference lines.

    A reference line's object noun is *recalled* when a produced line starting within
    ``±tolerance_s`` of it says the same noun (plurals count as their singular); a
    noun said in a produced line is *precise* when a reference line within ``±tolerance_s``
    has it. ``recall = recall_hits / n_reference_nouns``, ``precision = precision_hits /
    n_said_nouns``; sum the counts over clips before dividing. This is
    :func:`event_scores` with each (line, noun) pair as an event.

    Args:
        produced: ``(start_s, text)`` per produced line, seconds on the clip's clock.
        references: ``(start_s, text)`` per reference line (the teachers' labels).
        nouns: The object nouns (singular, lowercase) that count; other words are ignored.
        tolerance_s: Allowed ``|start_s - start_s'|``, seconds.
        words: Splits a line into lowercase words (e.g. ``models.lm.vocab.words``).

    Returns:
        ``(recall_hits, n_reference_nouns, precision_hits, n_said_nouns)``.

    Raises:
        ValueError: If ``tolerance_s`` is negative or not finite.
    """
    vocab = set(nouns)

    def said(lines: Sequence[tuple[float, str]]) -> list[tuple[float, str]]:
        out = []
        for start_s, text in lines:
            for noun in dict.fromkeys(noun_lemma(w) for w in words(text)):
                if noun in vocab:
                    out.append((start_s, noun))
        return out

    def mentions(text: str, noun: str) -> bool:
        return noun in {noun_lemma(w) for w in words(text)}

    rec_hits, n_ref, _, _ = event_scores(said(references), produced, tolerance_s, mentions=mentions)
    prec_hits, n_said, _, _ = event_scores(said(produced), references, tolerance_s, mentions=mentions)
    return rec_hits, n_ref, prec_hits, n_said

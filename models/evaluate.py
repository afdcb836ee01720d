"""Evaluation of the commentator on clips with scripted events.

The model runs exactly as the live commentator actor runs it: one
:meth:`CommentatorRuntime.step` per model step, fed the same B-Flow tokens
(:mod:`models.dataset`), greedy decoding, a fresh session state per clip. Produced
lines are the words up to ``<eol>``; a line is stamped with the media time of its
first word.

Metrics:

* ``event_mention_rate``: fraction of scripted events for which some produced line
  starting within ``±tolerance_s`` of the event contains one of
  ``EVENT_KEYWORDS[kind]`` (event recall, as in VideoLLM-online's time-tolerant
  scoring); also per event kind;
* ``event_mention_rate_strict``: the same, but a pan line must also name the
  pan's direction (``procedural.matches_event``);
* ``time_diff_s``: mean ``|line start - event time|`` of the closest matching line
  of each mentioned event (VideoLLM-online's TimeDiff);
* ``false_alarm_rate``: fraction of produced lines that mention no event within the
  tolerance;
* ``lines_per_min`` (produced vs reference), ``lm_ppl`` (teacher-forced perplexity
  of word and ``<eol>`` targets) and streaming ``steps_per_s``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.commentator import CommentatorRuntime
from models.dataset import ClipFeatures, load_all_features, make_targets
from models.vocab import words

__all__ = ["ProducedLine", "evaluate", "mentions", "run_clip", "score_clip"]


@dataclass(frozen=True)
class ProducedLine:
    """A line the commentator said.

    Attributes:
        start_s: Media time of its first word, seconds on the clip's clock.
        text: Its words, space-separated.
    """

    start_s: float
    text: str


#: Tokens per step of the dense baseline (:func:`models.bflow.dense_tokens`, 8x8 grid).
DENSE_TOKENS_PER_STEP = 64


def run_clip(rt: CommentatorRuntime, feats: ClipFeatures) -> list[ProducedLine]:
    """Streams one clip through the runtime, step by step, from a fresh state.

    Args:
        rt: The loaded commentator.
        feats: The clip's per-step tokens.

    Returns:
        The produced lines in order (an unfinished last line is included).
    """
    state = rt.new_state()
    lines: list[ProducedLine] = []
    cur: list[str] = []
    start = 0.0
    for t in range(feats.n_steps):
        out = rt.step(state, feats.step_tokens(t))
        if out.word is not None:
            if not cur:
                start = float(feats.pts_s[t])
            cur.append(out.word)
        elif out.end_of_line and cur:
            lines.append(ProducedLine(start, " ".join(cur)))
            cur = []
    if cur:
        lines.append(ProducedLine(start, " ".join(cur)))
    return lines


def mentions(text: str, kind: str, *, strict: bool = False) -> bool:
    """Tells whether a line mentions an event kind.

    Args:
        text: The line.
        kind: Event kind.
        strict: Also require the direction word of pans (``left``/``right``), as
            :func:`models.procedural.matches_event` does.

    Returns:
        True if the line contains one of ``EVENT_KEYWORDS[kind]`` (and, if strict,
        the pan direction).
    """
    from models.procedural import EVENT_KEYWORDS, PAN_DIRECTION_WORDS

    ws = set(words(text))
    if not ws & EVENT_KEYWORDS.get(kind, frozenset()):
        return False
    direction = PAN_DIRECTION_WORDS.get(kind) if strict else None
    return direction is None or direction in ws


def score_clip(
    events: list[tuple[float, str]],
    lines: list[ProducedLine],
    tolerance_s: float,
    *,
    strict: bool = False,
) -> tuple[list[float | None], list[bool]]:
    """Matches produced lines against scripted events.

    Args:
        events: ``(t_s, kind)`` per scripted event.
        lines: Produced lines.
        tolerance_s: Allowed ``|line start - event time|`` in seconds.
        strict: See :func:`mentions`.

    Returns:
        ``(diffs, line_hits)``: per event, the smallest ``|Δt|`` in seconds of a
        matching line (see :func:`mentions`) or None if unmentioned; per line,
        whether it mentions any event within the tolerance.
    """
    diffs: list[float | None] = []
    hits = [False] * len(lines)
    for t_s, kind in events:
        best: float | None = None
        for i, ln in enumerate(lines):
            dt = abs(ln.start_s - t_s)
            if dt <= tolerance_s and mentions(ln.text, kind, strict=strict):
                hits[i] = True
                best = dt if best is None else min(best, dt)
        diffs.append(best)
    return diffs, hits


def _lm_nll(rt: CommentatorRuntime, feats: ClipFeatures, targets: np.ndarray) -> tuple[float, int]:
    """Teacher-forced NLL summed over word and <eol> targets (and their count)."""
    v = rt.vocab
    t = feats.n_steps
    cap = rt.model.cfg.capacity
    nll, n = 0.0, 0
    for s0 in range(0, t, cap):  # clips longer than the cache: independent chunks
        s1 = min(t, s0 + cap)
        counts = feats.counts()[s0:s1]
        nmax = max(1, int(counts.max()) if len(counts) else 1)
        vt = torch.zeros(1, s1 - s0, nmax, rt.model.cfg.token_dim)
        vm = torch.zeros(1, s1 - s0, nmax, dtype=torch.bool)
        for i in range(s0, s1):
            a = feats.step_tokens(i)
            vt[0, i - s0, : a.shape[0]] = torch.from_numpy(a)
            vm[0, i - s0, : a.shape[0]] = True
        y = torch.from_numpy(targets[s0:s1])
        prev = torch.cat([torch.tensor([v.sil_id]), y[:-1]])[None]
        with torch.no_grad():
            logits = rt.model(vt, vm, prev)[0]
        keep = y != v.sil_id
        if keep.any():
            nll += float(F.cross_entropy(logits[keep], y[keep], reduction="sum"))
            n += int(keep.sum())
    return nll, n


def evaluate(
    checkpoint: Path,
    clips: list[Path],
    *,
    tolerance_s: float = 2.0,
    silence_bias: float | None = None,
    out_json: Path | None = None,
    progress: bool = False,
    workers: int = 2,
) -> dict[str, Any]:
    """Evaluates a checkpoint on clips with scripted events (streaming path).

    Args:
        checkpoint: Commentator checkpoint (``.pt``).
        clips: Video files, each with a ``.json`` transcript with events.
        tolerance_s: Time tolerance of an event mention, seconds.
        silence_bias: Override of the checkpoint's ``silence_bias``.
        out_json: Also write the metrics there as JSON.
        progress: Show progress bars.
        workers: Processes for (uncached) feature extraction.

    Returns:
        Metrics (see module docstring; a rate is None when it has no denominator),
        plus ``per_kind`` and ``examples`` (events, reference and produced lines of
        the first three clips).

    Raises:
        CheckpointError: If the checkpoint is missing or invalid.
        MediaError: If a clip cannot be decoded.
        ValueError: If ``clips`` is empty.
    """
    from tqdm.auto import tqdm

    from models.procedural import read_transcript

    if not clips:
        raise ValueError("no clips to evaluate")
    rt = CommentatorRuntime.load(Path(checkpoint), silence_bias=silence_bias)
    delay = int(rt.meta.get("train", {}).get("delay_steps", 0))
    feats_all = load_all_features(
        [Path(c) for c in clips], workers=workers, progress=progress, desc="eval features"
    )
    per_kind: dict[str, list[int]] = {}
    all_diffs: list[float] = []
    n_events = n_hit = n_hit_strict = n_lines = n_false = n_ref_lines = 0
    duration_s = 0.0
    nll_sum, nll_n = 0.0, 0
    steps, step_time = 0, 0.0
    n_tokens = 0  # B-Flow tokens the model read
    examples: list[dict[str, Any]] = []
    for clip, feats in tqdm(
        list(zip(clips, feats_all, strict=True)), desc="eval", disable=not progress
    ):
        events_raw, ref_lines = read_transcript(Path(clip).with_suffix(".json"))
        events = [(float(e.t_s), str(e.kind)) for e in events_raw]
        t0 = time.perf_counter()
        lines = run_clip(rt, feats)
        step_time += time.perf_counter() - t0
        steps += feats.n_steps
        diffs, hits = score_clip(events, lines, tolerance_s)
        strict_diffs, _ = score_clip(events, lines, tolerance_s, strict=True)
        n_hit_strict += sum(d is not None for d in strict_diffs)
        for (_, kind), d, ds in zip(events, diffs, strict_diffs, strict=True):
            k = per_kind.setdefault(kind, [0, 0, 0])
            k[0] += 1
            k[1] += d is not None
            k[2] += ds is not None
            if d is not None:
                all_diffs.append(d)
        n_events += len(events)
        n_hit += sum(d is not None for d in diffs)
        n_lines += len(lines)
        n_false += sum(not h for h in hits)
        n_ref_lines += len(ref_lines)
        duration_s += feats.n_steps / 5.0 if feats.n_steps else 0.0
        n_tokens += int(feats.counts().sum())
        targets = make_targets(
            [(float(ln.start_s), str(ln.text)) for ln in ref_lines],
            feats.n_steps,
            rt.vocab,
            delay_steps=delay,
        )
        nll, n = _lm_nll(rt, feats, targets)
        nll_sum += nll
        nll_n += n
        if len(examples) < 3:
            examples.append(
                {
                    "clip": Path(clip).name,
                    "events": [{"t_s": t, "kind": k} for t, k in events],
                    "reference": [{"start_s": float(r.start_s), "text": r.text} for r in ref_lines],
                    "produced": [{"start_s": ln.start_s, "text": ln.text} for ln in lines],
                }
            )
    minutes = max(duration_s / 60.0, 1e-9)
    metrics: dict[str, Any] = {
        "clips": len(clips),
        "events": n_events,
        "event_mention_rate": n_hit / n_events if n_events else None,
        "event_mention_rate_strict": n_hit_strict / n_events if n_events else None,
        "per_kind": {
            k: {"events": v[0], "mentioned": v[1], "rate": v[1] / v[0], "rate_strict": v[2] / v[0]}
            for k, v in sorted(per_kind.items())
        },
        "time_diff_s": float(np.mean(all_diffs)) if all_diffs else None,
        "lines": n_lines,
        "false_alarm_rate": n_false / n_lines if n_lines else 0.0,
        "lines_per_min": n_lines / minutes,
        "reference_lines_per_min": n_ref_lines / minutes,
        "lm_ppl": math.exp(nll_sum / nll_n) if nll_n else None,
        "steps_per_s": steps / step_time if step_time > 0 else None,
        # Token budget: B-Flow against the dense baseline (an 8x8 key view every step,
        # bflow.dense_tokens) on the same clips.
        "bflow_tokens_per_s": n_tokens / duration_s if duration_s else 0.0,
        "dense_tokens_per_s": DENSE_TOKENS_PER_STEP * steps / duration_s if duration_s else 0.0,
        "tolerance_s": tolerance_s,
        "silence_bias": rt.model.cfg.silence_bias,
        "examples": examples,
    }
    if out_json is not None:
        Path(out_json).write_text(json.dumps(metrics, indent=2))
    return metrics

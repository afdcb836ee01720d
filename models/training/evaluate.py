"""Evaluation of the commentator on clips with scripted events.

Two passes per clip, both through the same model code the live actor runs:

* **streaming** (:func:`run_clip`): one :meth:`CommentatorRuntime.step` per model
  step, fed the same B-Flow tokens (:mod:`models.data.dataset`), greedy decoding, the
  bounded KV cache; produced lines are stamped with the media time of their first
  token. From these: ``event_recall`` / ``event_precision`` (a line within
  ``±tolerance_s`` that mentions the event, :func:`models.training.metrics.event_scores`),
  ``per_kind`` recall, ``semantic_similarity`` to the reference lines
  (all-MiniLM-L6-v2, :mod:`models.training.similarity`), ``steps_per_s`` and
  ``positions_per_s``;
* **teacher-forced** (:func:`teacher_forced`): the reference transcript in the duplex
  format, for VideoLLM-online's ``lm_ppl``, ``time_diff_s`` and ``fluency`` (with the
  early/late variants; :mod:`models.training.metrics`).

Token budget: ``bflow_tokens_per_s`` against ``dense_tokens_per_s``, the dense
baseline of an 8x8 key view every step (:func:`models.vision.bflow.dense_tokens`), on the
same clips.

``continuous=True`` streams all clips through one session without a reset (an
endless stream; the KV cache fills and slides), and ``window_positions`` overrides
the cache window (a huge one is the unbounded-cache reference).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.data.dataset import ClipFeatures, clip_sequence, gather_video, gather_views, load_all_features
from models.data.label import OBJECT_NOUNS
from models.lm.commentator import CommentatorRuntime, CommentatorState
from models.lm.duplex import IGNORE, PositionSequence
from models.lm.vocab import words
from models.training.metrics import combine, event_scores, object_mention_scores, stream_metrics
from models.vision.video import MODEL_FPS_HZ

__all__ = ["ProducedLine", "evaluate", "mentions", "run_clip", "teacher_forced"]


@dataclass(frozen=True)
class ProducedLine:
    """A line the commentator said.

    Attributes:
        start_s: Media time of its first token, seconds on the clip's clock.
        text: Its text.
    """

    start_s: float
    text: str


#: Tokens per step of the dense baseline (:func:`models.vision.bflow.dense_tokens`, 8x8 grid).
DENSE_TOKENS_PER_STEP = 64


def run_clip(
    rt: CommentatorRuntime, feats: ClipFeatures, state: CommentatorState | None = None
) -> list[ProducedLine]:
    """Streams one clip through the runtime, step by step.

    Args:
        rt: The loaded commentator.
        feats: The clip's per-step tokens.
        state: Session state to continue (default: a fresh one, released at the end).

    Returns:
        The produced lines in order (an unfinished last line is included).
    """
    if state is None:
        state = rt.new_state()
        try:
            return run_clip(rt, feats, state)
        finally:
            state.release()
    lines: list[ProducedLine] = []
    cur, start = "", 0.0
    for t in range(feats.n_steps):
        for piece in rt.step(state, feats.step_tokens(t), feats.step_views(t)):
            if piece.text and not cur:
                start = float(feats.pts_s[t])
            cur += piece.text
            if piece.end_of_line and cur.strip():
                lines.append(ProducedLine(start, cur.strip()))
                cur = ""
    if cur.strip():
        lines.append(ProducedLine(start, cur.strip()))
    return lines


@torch.no_grad()
def teacher_forced(
    rt: CommentatorRuntime, feats: ClipFeatures, seq: PositionSequence
) -> tuple[np.ndarray, np.ndarray]:
    """Runs the reference sequence with a causal mask, in windows of the cache capacity.

    Args:
        rt: The loaded commentator.
        feats: The clip's per-step tokens.
        seq: The clip's positions (:func:`models.data.dataset.clip_sequence`).

    Returns:
        ``(pred int64 [P], logprob_target float32 [P])``: argmax and log-probability of
        the target at each position (0 where the target is ignored).
    """
    model = rt.model
    cap = model.cfg.capacity
    n = len(seq)
    pred = np.zeros(n, np.int64)
    logp = np.zeros(n, np.float32)
    for a in range(0, n, cap):
        b = min(n, a + cap)
        frames = seq.is_frame[a:b]
        tokens, mask = gather_video(feats, seq.step[a:b], frames)
        views, view_mask = gather_views(feats, seq.step[a:b], frames)
        vt, vm = torch.from_numpy(tokens)[None], torch.from_numpy(mask)[None]
        vv, vvm = torch.from_numpy(views)[None], torch.from_numpy(view_mask)[None]
        text = torch.from_numpy(seq.text_in[a:b].copy())[None]
        logits = model(vt, vm, torch.from_numpy(frames.copy())[None], text, vv, vvm)[0]
        logits = logits.masked_fill(model.banned, float("-inf"))
        lp = torch.log_softmax(logits, -1)
        y = torch.from_numpy(seq.target[a:b].copy())
        pred[a:b] = lp.argmax(-1).numpy()
        ok = y != IGNORE
        logp[a:b][ok.numpy()] = lp[ok, y[ok]].numpy()
    return pred, logp


def mentions(text: str, kind: str, *, strict: bool = False) -> bool:
    """Tells whether a line mentions an event kind.

    Args:
        text: The line.
        kind: Event kind.
        strict: Also require the direction word of pans (``left``/``right``), as
            :func:`models.data.procedural.matches_event` does.

    Returns:
        True if the line contains one of ``EVENT_KEYWORDS[kind]`` (and, if strict,
        the pan direction).
    """
    from models.data.procedural import EVENT_KEYWORDS, PAN_DIRECTION_WORDS

    ws = set(words(text))
    if not ws & EVENT_KEYWORDS.get(kind, frozenset()):
        return False
    direction = PAN_DIRECTION_WORDS.get(kind) if strict else None
    return direction is None or direction in ws


def evaluate(
    checkpoint: Path,
    clips: list[Path],
    *,
    tolerance_s: float = 1.0,
    silence_bias: float | None = None,
    int8: bool = False,
    window_positions: int | None = None,
    continuous: bool = False,
    similarity: bool = True,
    out_json: Path | None = None,
    progress: bool = False,
    workers: int = 2,
) -> dict[str, Any]:
    """Evaluates a checkpoint on clips with scripted events.

    Args:
        checkpoint: Commentator checkpoint (``.pt``).
        clips: Video files, each with a ``.json`` transcript with events.
        tolerance_s: Time tolerance of an event mention, seconds.
        silence_bias: Override of the checkpoint's ``silence_bias``.
        int8: Quantize the backbone to int8 (as the live commentator can, ``int8_backbone``).
        window_positions: Override of the KV cache window (streaming pass only).
        continuous: One session for all clips (an endless stream) instead of a fresh
            session per clip.
        similarity: Compute ``semantic_similarity`` (loads all-MiniLM-L6-v2).
        out_json: Also write the metrics there as JSON.
        progress: Show progress bars.
        workers: Processes for (uncached) feature extraction.

    Returns:
        Metrics (see module docstring; a rate without denominator is None), plus
        ``per_kind`` and ``per_clip`` (events, reference and produced lines of every clip).

    Raises:
        CheckpointError: If the checkpoint is missing or invalid.
        BackboneError: If its backbone is not available locally.
        MediaError: If a clip cannot be decoded.
        ValueError: If ``clips`` is empty.
    """
    from tqdm.auto import tqdm

    from models.data.procedural import read_transcript

    if not clips:
        raise ValueError("no clips to evaluate")
    rt = CommentatorRuntime.load(Path(checkpoint), silence_bias=silence_bias, int8=int8)
    cfg = rt.model.cfg
    if window_positions is not None:
        rt.model.cfg = replace(cfg, window_positions=int(window_positions))
    delay = int(rt.meta.get("train", {}).get("delay_steps", 0))
    encoder = None
    if similarity:
        from models.training.similarity import SentenceEncoder, semantic_similarity

        encoder = SentenceEncoder.load()
    feats_all = load_all_features([Path(c) for c in clips], workers=workers, progress=progress, desc="eval features",
                                  tokenizer=cfg.video_tokenizer)
    per_kind: dict[str, list[int]] = {}
    recall_hits = n_events = precision_hits = n_lines = n_ref_lines = ref_hits = 0
    sims: list[float] = []
    parts = []
    duration_s = 0.0
    steps = positions = n_tokens = n_views = 0
    obj = [0, 0, 0, 0]  # object mentions: recall hits, reference nouns, precise nouns, said nouns
    distinct: set[str] = set()
    step_time = 0.0
    kv_bytes = 0
    per_clip: list[dict[str, Any]] = []
    state = rt.new_state() if continuous else None
    for clip, feats in tqdm(list(zip(clips, feats_all, strict=True)), desc="eval", disable=not progress):
        events_raw, ref_raw = read_transcript(Path(clip).with_suffix(".json"))
        events = [(float(e.t_s), str(e.kind)) for e in events_raw]
        refs = [(float(r.start_s), str(r.text)) for r in ref_raw]
        st = state if state is not None else rt.new_state()  # one state for all clips when continuous
        p0 = st.positions
        t0 = time.perf_counter()
        lines = run_clip(rt, feats, st)
        step_time += time.perf_counter() - t0
        kv_bytes = max(kv_bytes, st.nbytes())
        if not continuous:
            st.release()
        steps += feats.n_steps
        positions += st.positions - p0
        produced = [(ln.start_s, ln.text) for ln in lines]
        ref_hits += event_scores(events, refs, tolerance_s, mentions=mentions)[0]
        r_hit, n_ev, p_hit, n_ln = event_scores(events, produced, tolerance_s, mentions=mentions)
        recall_hits, n_events, precision_hits, n_lines = (
            recall_hits + r_hit, n_events + n_ev, precision_hits + p_hit, n_lines + n_ln)
        for t_s, kind in events:
            k = per_kind.setdefault(kind, [0, 0])
            k[0] += 1
            k[1] += event_scores([(t_s, kind)], produced, tolerance_s, mentions=mentions)[0]
        if encoder is not None and refs:
            sim = semantic_similarity(produced, refs, encoder, window_s=2.0)
            if sim is not None:
                sims.append(sim)
        n_ref_lines += len(refs)
        duration_s += feats.n_steps / MODEL_FPS_HZ
        n_tokens += int(feats.counts().sum())
        n_views += feats.views_taken() if cfg.view_dim else 0  # a model without views runs no encoder
        obj = [a + b for a, b in zip(obj, object_mention_scores(produced, refs, OBJECT_NOUNS, 2.0, words=words),
                                     strict=True)]
        distinct.update(" ".join(words(ln.text)) for ln in lines)

        seq = clip_sequence(refs, feats.n_steps, rt.codec, fmt=cfg.duplex_format, k=cfg.step_tokens,
                            delay_steps=delay)
        pred, logp = teacher_forced(rt, feats, seq)
        parts.append(stream_metrics(seq.target, pred, logp, seq.is_frame, feats.pts_s[seq.step],
                                    sil_id=rt.codec.sil_id, eol_id=rt.codec.eol_id))
        per_clip.append({
            "clip": Path(clip).name,
            "events": [{"t_s": t, "kind": k} for t, k in events],
            "reference": [{"start_s": t, "text": x} for t, x in refs],
            "produced": [{"start_s": ln.start_s, "text": ln.text} for ln in lines],
        })
    minutes = max(duration_s / 60.0, 1e-9)
    tf = combine(parts).summary()
    metrics: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "backbone": cfg.backbone,
        "duplex_format": cfg.duplex_format,
        "video_tokenizer": cfg.video_tokenizer,
        "clips": len(clips),
        "events": n_events,
        "event_recall": recall_hits / n_events if n_events else None,
        "event_precision": precision_hits / n_lines if n_lines else None,
        "tolerance_s": tolerance_s,
        # The reference transcript scored the same way: the ceiling of a model that imitates it.
        "reference_event_recall": ref_hits / n_events if n_events else None,
        "per_kind": {k: {"events": v[0], "recalled": v[1], "recall": v[1] / v[0]} for k, v in sorted(per_kind.items())},
        **{k: tf[k] for k in ("lm_ppl", "time_diff_s", "fluency", "time_diff_early_s", "time_diff_late_s",
                              "early_rate", "on_time_rate", "late_rate", "lm_correctness", "n_turns")},
        "semantic_similarity": float(np.mean(sims)) if sims else None,
        "lines": n_lines,
        "lines_per_min": n_lines / minutes,
        # Nouns of the reference (teacher) lines said within ±2 s, and nouns said that a reference has.
        "object_mention_recall": obj[0] / obj[1] if obj[1] else None,
        "object_mention_precision": obj[2] / obj[3] if obj[3] else None,
        "object_nouns": {"reference": obj[1], "said": obj[3]},
        # A commentator that repeats one sentence is not commentating.
        "distinct_lines_per_min": len(distinct) / minutes,
        "reference_lines_per_min": n_ref_lines / minutes,
        "steps_per_s": steps / step_time if step_time > 0 else None,
        "positions_per_s": positions / step_time if step_time > 0 else None,
        "bflow_tokens_per_s": n_tokens / duration_s if duration_s else 0.0,
        # What B-Flow buys: the image encoder runs only on key views, not on every step.
        "encoder_calls_per_s": n_views / duration_s if duration_s else 0.0,
        "dense_tokens_per_s": DENSE_TOKENS_PER_STEP * steps / duration_s if duration_s else 0.0,
        "kv_cache_bytes_per_session": kv_bytes,
        "window_positions": rt.model.cfg.window_positions,
        "continuous": continuous,
        "silence_bias": rt.model.cfg.silence_bias,
        "int8": int8,
        "per_clip": per_clip,
    }
    if out_json is not None:
        Path(out_json).write_text(json.dumps(metrics, indent=2))
    return metrics

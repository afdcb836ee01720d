"""VideoLLM-online streaming metrics on small hand-made teacher-forced clips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.data.procedural import EVENT_KEYWORDS
from models.training.metrics import StreamMetrics, combine, event_scores, stream_metrics

SIL, EOL = 0, 9
LOGP = math.log(0.5)  # every target gets p = 0.5: perplexity 2


def parallel(target: list[int], pred: list[int] | None = None) -> StreamMetrics:
    """Parallel format: every position is a frame, 5 frames per second."""
    t = np.array(target, dtype=np.int64)
    p = t.copy() if pred is None else np.array(pred, dtype=np.int64)
    n = len(t)
    return stream_metrics(t, p, np.full(n, LOGP, np.float32), np.ones(n, bool), np.arange(n) * 0.2,
                          sil_id=SIL, eol_id=EOL)


# Parallel clip: reply "1 2 <eol>" should start at frame 3 (0.6 s), "3 <eol>" at frame 8 (1.6 s).
PAR = [0, 0, 0, 1, 2, 9, 0, 0, 3, 9]


def with_pred(changes: dict[int, int], base: list[int] = PAR) -> list[int]:
    out = list(base)
    for p, tok in changes.items():
        out[p] = tok
    return out


def test_perfect_prediction_parallel() -> None:
    s = parallel(PAR).summary()
    assert s["n_turns"] == 2 and s["n_timed"] == 2
    assert s["fluency"] == 1.0
    assert s["time_diff_s"] == 0.0
    assert s["on_time_rate"] == 1.0 and s["early_rate"] == 0.0 and s["late_rate"] == 0.0
    assert s["lm_correctness"] == 1.0
    assert s["lm_ppl"] == pytest.approx(2.0)
    assert s["lm_ppl_turn_mean"] == pytest.approx(2.0)
    assert s["time_diff_early_s"] is None and s["time_diff_late_s"] is None


def test_early_response() -> None:
    m = parallel(PAR, with_pred({1: 1}))  # speaks at frame 1, reply due at frame 3
    assert (m.n_early, m.n_on_time, m.n_late) == (1, 1, 0)
    s = m.summary()
    assert s["time_diff_early_s"] == pytest.approx(0.4)
    assert s["time_diff_s"] == pytest.approx(0.4 / 2)
    # turn 1: V = 4 stream frames, L = 3 reply tokens, frame_diff = 2 -> (4 - 2) / 7
    assert s["fluency"] == pytest.approx((2 / 7 + 1.0) / 2)


def test_late_response_is_one_frame_lower_bound() -> None:
    m = parallel(PAR, with_pred({3: SIL}))  # silent at the reply frame
    assert (m.n_early, m.n_on_time, m.n_late) == (0, 1, 1)
    s = m.summary()
    assert s["time_diff_late_s"] == pytest.approx(0.2)
    assert s["fluency"] == pytest.approx(((4 - 1) / 7 + 1.0) / 2)
    assert s["lm_correctness"] == pytest.approx((0 + 1) / 2)


def test_late_without_future_frames_counts_zero_offset() -> None:
    # The last reply is a lone <eol> on the last frame: no frame follows, offset 0 and
    # fluency takes the on-time branch, (V + c) / (V + L) with c = 0.
    m = parallel([0, 0, 9], [0, 0, 0])
    assert m.n_late == 1
    assert m.summary()["time_diff_s"] == 0.0
    assert m.summary()["fluency"] == pytest.approx(3 / 4)
    # A reply at the very first frame (V = 1) leaves no look-ahead window either.
    m = parallel([5, 9, 0, 0], [0, 9, 0, 0])
    assert m.time_diff_sum_s == 0.0 and m.fluency_sum == pytest.approx(1 / 3)


def test_wrong_token_mid_reply() -> None:
    m = parallel(PAR, with_pred({4: 7}))
    s = m.summary()
    assert s["on_time_rate"] == 1.0 and s["time_diff_s"] == 0.0
    assert s["fluency"] == pytest.approx((5 / 7 + 1.0) / 2)  # c = 1 of L = 3
    assert s["lm_correctness"] == pytest.approx((1 / 3 + 1.0) / 2)


def test_lm_ppl_uses_reply_tokens_only() -> None:
    t = np.array(PAR, dtype=np.int64)
    logp = np.where(t == SIL, -50.0, math.log(0.25)).astype(np.float32)
    m = stream_metrics(t, t, logp, np.ones(len(t), bool), np.arange(len(t)) * 0.2, sil_id=SIL, eol_id=EOL)
    assert m.n_reply_tokens == 5
    assert m.summary()["lm_ppl"] == pytest.approx(4.0)


# Interleaved clip: F F F(1) T(2) T(eol) F F(3) T(eol); text positions keep their frame's time.
IL_TARGET = [0, 0, 1, 2, 9, 0, 3, 9]
IL_FRAME = [True, True, True, False, False, True, True, False]
IL_TIME = [0.0, 0.2, 0.4, 0.4, 0.4, 0.6, 0.8, 0.8]


def interleaved(pred: list[int], target: list[int] = IL_TARGET, is_frame: list[bool] = IL_FRAME,
                time_s: list[float] = IL_TIME) -> StreamMetrics:
    n = len(target)
    return stream_metrics(np.array(target), np.array(pred), np.full(n, LOGP), np.array(is_frame),
                          np.array(time_s), sil_id=SIL, eol_id=EOL)


def test_interleaved_format() -> None:
    perfect = interleaved(IL_TARGET).summary()
    assert perfect["fluency"] == 1.0 and perfect["time_diff_s"] == 0.0 and perfect["n_timed"] == 2
    # Text positions are lm positions, not stream positions: V = 3 for the first turn.
    early = interleaved(with_pred({0: 1}, IL_TARGET))
    assert early.n_early == 1 and early.early_diff_sum_s == pytest.approx(0.4)
    assert early.fluency_sum == pytest.approx((3 - 2) / (3 + 3) + 1.0)
    late = interleaved(with_pred({2: SIL}, IL_TARGET))
    assert late.n_late == 1 and late.late_diff_sum_s == pytest.approx(0.2)  # next frame at 0.6 s
    assert late.fluency_sum == pytest.approx((3 - 1) / 6 + 1.0)


def test_interleaved_reply_right_after_reply_gets_lm_metrics_only() -> None:
    m = interleaved([0, 1, 9, 2, 9], target=[0, 1, 9, 2, 9], is_frame=[True, True, False, False, False],
                    time_s=[0.0, 0.2, 0.2, 0.2, 0.2])
    assert (m.n_turns, m.n_timed, m.n_reply_tokens) == (2, 1, 4)


def test_reply_after_silence_off_frame_is_rejected() -> None:
    with pytest.raises(ValueError, match="not at a frame position"):
        interleaved([0, 1, 9], target=[0, 1, 9], is_frame=[True, False, False], time_s=[0.0, 0.0, 0.0])


def test_combining_clips_pools_turns() -> None:
    a, b = parallel(PAR), parallel(PAR, with_pred({1: 1}))
    both = combine([a, b])
    assert both == a + b
    s = both.summary()
    assert s["n_turns"] == 4
    assert s["fluency"] == pytest.approx((1 + 1 + 2 / 7 + 1) / 4)
    assert s["time_diff_s"] == pytest.approx(0.4 / 4)
    assert combine([]) == StreamMetrics()


def test_no_reply_is_undefined_not_nan() -> None:
    s = parallel([0, 0, 0], [0, 5, 0]).summary()
    assert s["n_turns"] == 0
    assert all(v is None for k, v in s.items() if not k.startswith("n_"))


def test_shape_and_dtype_errors() -> None:
    t = np.zeros(4, np.int64)
    good: dict[str, np.ndarray] = dict(pred=t, logprob_target=np.zeros(4, np.float32), is_frame=np.ones(4, bool),
                                       frame_time_s=np.zeros(4))
    with pytest.raises(ValueError, match=r"pred: expected int \[4\], got int64 \[3\]"):
        stream_metrics(t, **{**good, "pred": t[:3]}, sil_id=SIL, eol_id=EOL)
    with pytest.raises(ValueError, match="is_frame: expected bool"):
        stream_metrics(t, **{**good, "is_frame": np.ones(4)}, sil_id=SIL, eol_id=EOL)
    with pytest.raises(ValueError, match="target: expected int"):
        stream_metrics(t.reshape(2, 2), **good, sil_id=SIL, eol_id=EOL)
    with pytest.raises(ValueError, match="frame_time_s"):
        stream_metrics(t, **{**good, "frame_time_s": np.zeros(5)}, sil_id=SIL, eol_id=EOL)


def keyword_mentions(text: str, kind: str) -> bool:
    return bool(set(text.split()) & EVENT_KEYWORDS[kind])


def test_event_recall_and_precision() -> None:
    events = [(1.0, "goal"), (5.0, "save"), (8.0, "pass")]
    lines = [(1.5, "goal for red"), (5.0, "what a pass"), (9.0, "he passes it on"), (20.0, "goal again")]
    assert event_scores(events, lines, mentions=keyword_mentions) == (2, 3, 2, 4)
    # the tolerance is inclusive and can be widened
    assert event_scores(events, lines, 0.5, mentions=keyword_mentions) == (1, 3, 1, 4)
    assert event_scores(events, lines, 3.0, mentions=keyword_mentions) == (2, 3, 3, 4)
    assert event_scores([], [], mentions=keyword_mentions) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="tolerance_s"):
        event_scores(events, lines, -1.0, mentions=keyword_mentions)


def test_zero_probability_target_gives_infinite_perplexity() -> None:
    t = np.array(PAR, dtype=np.int64)
    logp = np.full(len(t), -1e4, np.float32)
    s = stream_metrics(t, t, logp, np.ones(len(t), bool), np.arange(len(t)) * 0.2, sil_id=SIL, eol_id=EOL).summary()
    assert s["lm_ppl"] == math.inf and s["lm_ppl_turn_mean"] == math.inf


def test_object_mentions_count_nouns_said_near_the_reference() -> None:
    from models.lm.vocab import words
    from models.training.metrics import noun_lemma, object_mention_scores

    assert [noun_lemma(w) for w in ["people", "cars", "buses", "bus", "glass", "benches", "cat"]] == \
        ["person", "car", "bus", "bus", "glass", "bench", "cat"]
    refs = [(1.0, "a person walks in from the left"), (5.0, "two cars drive past a bus"), (9.0, "the camera pans")]
    produced = [(2.5, "people walk to the right"), (5.5, "a car passes"), (7.9, "a dog runs"), (20.0, "a bus")]
    nouns = {"person", "car", "bus", "dog", "camera"}
    rec, n_ref, prec, n_said = object_mention_scores(produced, refs, nouns, 2.0, words=words)
    # Reference nouns: person@1, car@5, bus@5, camera@9 -> person (2.5) and car (5.5) said in time.
    assert (rec, n_ref) == (2, 4)
    # Said nouns: person@2.5 (ref at 1.0: yes), car@5.5 (yes), dog@7.9 (no), bus@20 (too late).
    assert (prec, n_said) == (2, 4)
    assert object_mention_scores([], refs, nouns, words=words) == (0, 4, 0, 0)

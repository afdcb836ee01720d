"""Duplex formats on hand-made clips: line layout and the exact model positions."""

from __future__ import annotations

import numpy as np
import pytest

from models.lm.duplex import FORMATS, IGNORE, NO_TEXT, PositionSequence, build_sequence, layout_lines

SIL, EOL = 1, 2
FPS_HZ = 5.0


def test_formats() -> None:
    assert FORMATS == ("interleaved", "parallel")
    assert IGNORE == -100 and NO_TEXT == -1


def test_layout_places_k_tokens_per_step_from_the_start_step() -> None:
    # 0.4 s at 5 Hz is step 2; [5, 6, 7, <eol>] in pairs.
    out = layout_lines([(0.4, [5, 6, 7])], 8, tokens_per_step=2, eol_id=EOL, fps_hz=FPS_HZ)
    assert out == [[], [], [5, 6], [7, EOL], [], [], [], []]
    out = layout_lines([(0.4, [5, 6, 7])], 8, tokens_per_step=1, eol_id=EOL, fps_hz=FPS_HZ)
    assert out == [[], [], [5], [6], [7], [EOL], [], []]
    # round(start * fps): 0.38 s is step 1.9 -> 2, 0.28 s is 1.4 -> 1.
    assert layout_lines([(0.38, [5])], 4, tokens_per_step=2, eol_id=EOL, fps_hz=FPS_HZ)[2] == [5, EOL]
    assert layout_lines([(0.28, [5])], 4, tokens_per_step=2, eol_id=EOL, fps_hz=FPS_HZ)[1] == [5, EOL]


def test_layout_delay_shifts_every_line() -> None:
    out = layout_lines([(0.0, [5]), (1.0, [6])], 10, tokens_per_step=2, eol_id=EOL, fps_hz=FPS_HZ, delay_steps=3)
    assert out == [[], [], [], [5, EOL], [], [], [], [], [6, EOL], []]


def test_layout_shifts_overlapping_lines_after_the_previous_one() -> None:
    # Given out of order; the line at 0.6 s (step 3) waits for the end of the one at step 2.
    lines = [(0.6, [8]), (0.4, [5, 6, 7]), (3.0, [9, 10])]
    out = layout_lines(lines, 20, tokens_per_step=2, eol_id=EOL, fps_hz=FPS_HZ)
    expect: list[list[int]] = [[] for _ in range(20)]
    expect[2], expect[3] = [5, 6], [7, EOL]
    expect[4] = [8, EOL]  # shifted from step 3
    expect[15], expect[16] = [9, 10], [EOL]
    assert out == expect
    # A line that would start before the previous line ended starts right after it.
    out = layout_lines([(0.0, [5, 6, 7]), (0.2, [8])], 6, tokens_per_step=1, eol_id=EOL, fps_hz=FPS_HZ)
    assert out == [[5], [6], [7], [EOL], [8], [EOL]]


def test_layout_drops_tokens_past_the_end_and_empty_lines() -> None:
    out = layout_lines([(0.4, [5, 6, 7]), (0.0, [])], 3, tokens_per_step=1, eol_id=EOL, fps_hz=FPS_HZ)
    assert out == [[], [], [5]]
    out = layout_lines([(9.0, [5])], 3, tokens_per_step=1, eol_id=EOL, fps_hz=FPS_HZ)
    assert out == [[], [], []]


def _arrays(seq: PositionSequence) -> tuple[list[int], list[bool], list[int], list[int]]:
    for a, dtype in ((seq.step, np.int64), (seq.is_frame, np.bool_), (seq.text_in, np.int64), (seq.target, np.int64)):
        assert a.dtype == dtype and a.shape == (len(seq),)
    return seq.step.tolist(), seq.is_frame.tolist(), seq.text_in.tolist(), seq.target.tolist()


def test_build_sequence_interleaved() -> None:
    # Steps: silent; a full step of k=2 tokens; a step ending early; k tokens again.
    seq = build_sequence([[], [5, 6], [7], [8, EOL]], "interleaved", k=2, sil_id=SIL)
    step, is_frame, text_in, target = _arrays(seq)
    assert len(seq) == 9
    assert step == [0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert is_frame == [True, True, False, False, True, False, True, False, False]
    assert text_in == [NO_TEXT, NO_TEXT, 5, 6, NO_TEXT, 7, NO_TEXT, 8, EOL]
    # Frame -> first token (or silence); text -> next token, silence if the step
    # ends early, IGNORE after k tokens (the next frame comes regardless).
    assert target == [SIL, 5, 6, IGNORE, 7, SIL, 8, EOL, IGNORE]


def test_build_sequence_interleaved_k1_never_targets_silence_after_text() -> None:
    seq = build_sequence([[5], [], [EOL]], "interleaved", k=1, sil_id=SIL)
    step, is_frame, text_in, target = _arrays(seq)
    assert step == [0, 0, 1, 2, 2]
    assert is_frame == [True, False, True, True, False]
    assert text_in == [NO_TEXT, 5, NO_TEXT, NO_TEXT, EOL]
    assert target == [5, IGNORE, SIL, EOL, IGNORE]


def test_build_sequence_parallel() -> None:
    seq = build_sequence([[], [5], [6], [], [EOL]], "parallel", k=1, sil_id=SIL)
    step, is_frame, text_in, target = _arrays(seq)
    assert step == [0, 1, 2, 3, 4]
    assert all(is_frame)
    # Text input is the previous step's id (silence first and after silent steps).
    assert text_in == [SIL, SIL, 5, 6, SIL]
    assert target == [SIL, 5, 6, SIL, EOL]


def test_layout_then_build_round_trip() -> None:
    per_step = layout_lines([(0.2, [5, 6, 7])], 6, tokens_per_step=2, eol_id=EOL, fps_hz=FPS_HZ)
    seq = build_sequence(per_step, "interleaved", k=2, sil_id=SIL)
    # Every laid-out token is the target of exactly one position, in order.
    said = [int(y) for y in seq.target if y not in (SIL, IGNORE)]
    assert said == [5, 6, 7, EOL]
    assert seq.is_frame.sum() == 6 and len(seq) == 6 + 4


def test_build_sequence_errors() -> None:
    with pytest.raises(ValueError, match="unknown duplex format"):
        build_sequence([[]], "stacked", k=1, sil_id=SIL)
    with pytest.raises(ValueError, match="step 1 has 2 tokens"):
        build_sequence([[], [5, 6]], "parallel", k=4, sil_id=SIL)
    with pytest.raises(ValueError, match="k=2"):
        build_sequence([[5, 6, 7]], "interleaved", k=2, sil_id=SIL)
    empty = build_sequence([], "parallel", k=1, sil_id=SIL)
    assert len(empty) == 0

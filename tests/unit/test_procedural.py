"""Unit tests of models/data/procedural.py: determinism, events, commentary, encoding."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import numpy as np
import pytest

from models.data.procedural import (
    EVENT_KEYWORDS,
    EVENT_KINDS,
    LINE_GAP_S,
    MATCH_EVENT_KINDS,
    MOVE_PLACES,
    MOVE_WAYS,
    SCENE_EVENT_KINDS,
    SECONDS_PER_WORD,
    TEMPLATES,
    VOCABULARY,
    ClipSpec,
    Event,
    Line,
    TranscriptError,
    make_dataset,
    matches_event,
    read_transcript,
    render_clip,
    write_clip,
)

SEEDS = range(6)


def frames_at(spec: ClipSpec, indices: list[int]) -> dict[int, np.ndarray]:
    """Frames of ``spec`` at the given indices, rendering only up to the last one."""
    frames, _, _ = render_clip(spec)
    wanted = set(indices)
    return {i: f for i, f in enumerate(itertools.islice(frames, max(indices) + 1)) if i in wanted}


def find_clip(kind: str, event_kind: str) -> tuple[ClipSpec, Event]:
    """First seed whose clip has an event of ``event_kind`` (scripts only, no frames)."""
    for seed in range(50):
        spec = ClipSpec(kind=kind, seed=seed)
        _, events, _ = render_clip(spec)
        for event in events:
            if event.kind == event_kind:
                return spec, event
    raise AssertionError(f"no {event_kind} in 50 {kind} clips")


@pytest.mark.parametrize("kind", ["match", "scene"])
def test_same_seed_gives_the_same_clip(kind: str) -> None:
    spec = ClipSpec(kind=kind, seed=7, duration_s=8.0)
    frames_a, events_a, lines_a = render_clip(spec)
    frames_b, events_b, lines_b = render_clip(spec)
    assert events_a == events_b and lines_a == lines_b
    n = 0
    for a, b in zip(frames_a, frames_b, strict=True):
        assert a.dtype == np.uint8 and a.shape == (240, 320, 3)
        np.testing.assert_array_equal(a, b)
        n += 1
    assert n == spec.n_frames == 200
    _, events_c, _ = render_clip(ClipSpec(kind=kind, seed=8, duration_s=8.0))
    assert events_c != events_a


def test_custom_size_and_rate() -> None:
    spec = ClipSpec(kind="match", seed=1, duration_s=4.0, fps=10, width=160, height=120)
    frames = list(render_clip(spec)[0])
    assert len(frames) == 40
    assert all(f.shape == (120, 160, 3) and f.dtype == np.uint8 for f in frames)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "movie"}, "kind"),
        ({"kind": "match", "width": 321}, "width"),
        ({"kind": "match", "height": 10}, "height"),
        ({"kind": "scene", "fps": 0}, "fps"),
        ({"kind": "scene", "duration_s": -1.0}, "duration_s"),
    ],
)
def test_clip_spec_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ClipSpec(seed=0, **kwargs)


def test_every_event_kind_occurs_across_a_few_seeds() -> None:
    seen: dict[str, set[str]] = {"match": set(), "scene": set()}
    for kind in seen:
        for seed in SEEDS:
            _, events, _ = render_clip(ClipSpec(kind=kind, seed=seed))
            seen[kind].update(e.kind for e in events)
    assert seen["match"] == set(MATCH_EVENT_KINDS)
    assert seen["scene"] == set(SCENE_EVENT_KINDS)


@pytest.mark.parametrize("kind", ["match", "scene"])
def test_each_event_has_a_timely_matching_line(kind: str) -> None:
    for seed in SEEDS:
        spec = ClipSpec(kind=kind, seed=seed)
        _, events, lines = render_clip(spec)
        assert len(events) >= 3 and len(lines) == len(events)
        assert [e.t_s for e in events] == sorted(e.t_s for e in events)
        for event, line in zip(events, lines, strict=True):
            assert matches_event(line.text, event.kind), (event, line)
            others = set().union(*(EVENT_KEYWORDS[k] for k in EVENT_KINDS if k != event.kind))
            assert not (set(line.text.split()) & others - EVENT_KEYWORDS[event.kind])
            # Human-like reaction, timed to the event (not queued behind the shot line).
            assert event.t_s + 0.2 - 1e-6 <= line.start_s <= event.t_s + 0.7, (event, line)
            assert line.end_s - line.start_s == pytest.approx(len(line.text.split()) * SECONDS_PER_WORD, abs=2e-3)
            assert line.end_s <= spec.duration_s
            assert set(line.text.split()) <= VOCABULARY
        for a, b in itertools.pairwise(lines):
            assert b.start_s >= a.start_s + LINE_GAP_S - 1e-6, (a, b)


def test_match_events_follow_football_logic() -> None:
    for seed in SEEDS:
        _, events, _ = render_clip(ClipSpec(kind="match", seed=seed))
        kinds = [e.kind for e in events]
        for i, k in enumerate(kinds):
            if k in ("save", "goal"):
                assert kinds[i - 1] == "shot"
                assert 0.25 <= events[i].t_s - events[i - 1].t_s <= 0.65
            if k == "shot":
                assert i + 1 < len(kinds) and kinds[i + 1] in ("save", "goal")


def test_templates_vocabulary_and_keywords() -> None:
    assert set(TEMPLATES) == set(EVENT_KINDS) == set(EVENT_KEYWORDS)
    assert len(VOCABULARY) < 150
    assert all(w.isalpha() and w.islower() for w in VOCABULARY)
    slot_values = [
        {"team": "red", "colour": "green", "shape": "square", "side": "left", "place": place, "way": way}
        for place, way in itertools.product(MOVE_PLACES.values(), MOVE_WAYS.values())
    ]
    for kind, templates in TEMPLATES.items():
        for template, slots in itertools.product(templates, slot_values):
            text = template.format(**slots)
            assert matches_event(text, kind), text
            assert set(text.split()) <= VOCABULARY, text
            for other in EVENT_KINDS:
                if EVENT_KEYWORDS[other] != EVENT_KEYWORDS[kind]:
                    assert not matches_event(text, other), (text, other)
    assert matches_event("the camera pans left", "pan_left")
    assert not matches_event("the camera pans left", "pan_right")


def test_static_stretch_has_identical_frames() -> None:
    spec = ClipSpec(kind="scene", seed=3)
    _, events, _ = render_clip(spec)
    frames = list(render_clip(spec)[0])
    half_s = spec.fps // 2
    for event in events[1:]:  # quiet gaps of >= 1 s precede every event but the first
        f = int(round(event.t_s * spec.fps))
        for i in range(f - half_s, f - 1):
            np.testing.assert_array_equal(frames[i], frames[i + 1])
        assert np.any(frames[f] != frames[f - 1]), event  # the event is visible at t_s


def test_goal_flash_changes_the_mean_colour() -> None:
    spec, goal = find_clip("match", "goal")
    f = int(round(goal.t_s * spec.fps))
    flash = f + int(round(0.45 * spec.fps))
    frames = frames_at(spec, [f, flash])
    before = frames[f].reshape(-1, 3).mean(axis=0)
    during = frames[flash].reshape(-1, 3).mean(axis=0)
    assert np.abs(during - before).max() > 60.0, (before, during)
    _, _, lines = render_clip(spec)
    team = next(line.text for line in lines if "goal" in line.text.split())
    scorer = "red" if "red" in team.split() else "blue"
    channel = 0 if scorer == "red" else 2
    assert during[channel] == during.max()


@pytest.mark.parametrize("kind", ["pan_left", "pan_right"])
def test_pan_translates_the_image(kind: str) -> None:
    spec, pan = find_clip("scene", kind)
    f = int(round(pan.t_s * spec.fps))
    k = int(0.6 * spec.fps)
    frames = frames_at(spec, [f - 1, f + k])
    a, b = frames[f - 1].astype(np.int16), frames[f + k].astype(np.int16)
    errors = {}
    for d in range(-80, 81):
        if d >= 0:
            errors[d] = np.abs(b[:, d:] - a[:, : a.shape[1] - d]).mean()
        else:
            errors[d] = np.abs(b[:, :d] - a[:, -d:]).mean()
    best = min(errors, key=errors.__getitem__)
    # The camera pans left: the content moves right on screen (and vice versa).
    assert best > 5 if kind == "pan_left" else best < -5, best
    assert errors[best] < 0.5 < errors[0], (errors[best], errors[0])


def test_write_clip_round_trips(tmp_path: Path) -> None:
    spec = ClipSpec(kind="match", seed=2, duration_s=6.0)
    path = write_clip(spec, tmp_path / "sub" / "clip.mp4")
    assert path == tmp_path / "sub" / "clip.mp4" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.json", "clip.mp4"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == spec.fps
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
        n = sum(1 for _ in container.decode(stream))
    assert abs(n - spec.n_frames) <= 2
    _, events, lines = render_clip(spec)
    assert read_transcript(path) == (events, lines)
    assert read_transcript(path.with_suffix(".json")) == (events, lines)
    stored = json.loads(path.with_suffix(".json").read_text())
    assert ClipSpec(**stored["spec"]) == spec


def test_read_transcript_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="transcript not found"):
        read_transcript(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TranscriptError, match="not valid JSON"):
        read_transcript(bad)
    bad.write_text(json.dumps({"events": [{"t_s": 1.0, "kind": "dance"}], "lines": []}))
    with pytest.raises(TranscriptError, match="unknown kind"):
        read_transcript(bad)
    bad.write_text(json.dumps({"events": [], "lines": [{"start_s": 2.0, "end_s": 1.0, "text": "x"}]}))
    with pytest.raises(TranscriptError, match="before start_s"):
        read_transcript(bad)
    good = tmp_path / "real.json"  # a real corpus transcript needs no spec
    good.write_text(json.dumps({"events": [], "lines": [{"start_s": 0.5, "end_s": 1.0, "text": "hello"}]}))
    assert read_transcript(good) == ([], [Line(0.5, 1.0, "hello")])
    # "move" is labelled on real footage only (models.data.autolabel), never rendered.
    moved = tmp_path / "moved.json"
    text = "something moves on the left"
    line = {"start_s": 0.5, "end_s": 2.1, "text": text}
    moved.write_text(json.dumps({"events": [{"t_s": 0.2, "kind": "move"}], "lines": [line]}))
    assert read_transcript(moved) == ([Event(0.2, "move")], [Line(0.5, 2.1, text)])
    assert "move" not in SCENE_EVENT_KINDS and matches_event(text, "move")


def test_make_dataset_is_deterministic(tmp_path: Path) -> None:
    calls: list[int] = []
    a = make_dataset(tmp_path / "a", 3, seed=5, duration_s=4.0, progress=calls.append)
    b = make_dataset(tmp_path / "b", 3, seed=5, duration_s=4.0)
    assert calls == [1, 2, 3]
    assert [p.name for p in a] == ["clip_00000.mp4", "clip_00001.mp4", "clip_00002.mp4"]
    for pa, pb in zip(a, b, strict=True):
        assert pa.with_suffix(".json").read_text() == pb.with_suffix(".json").read_text()
    kinds = {json.loads(p.with_suffix(".json").read_text())["spec"]["kind"] for p in a}
    assert kinds <= {"match", "scene"}
    with pytest.raises(ValueError, match="match_fraction"):
        make_dataset(tmp_path / "c", 1, match_fraction=1.5)

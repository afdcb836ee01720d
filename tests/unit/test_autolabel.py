"""Unit tests of models/data/autolabel.py on small procedural scene clips (ground truth known)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from models.data.autolabel import (
    LABEL_KINDS,
    AutolabelConfig,
    augment_clip,
    commentary,
    detect_events,
    label_video,
    make_real_dataset,
    match_events,
    measure_video,
    write_labels,
)
from models.data.procedural import (
    LINE_GAP_S,
    MOVE_PLACES,
    REACTION_DELAY_S,
    SECONDS_PER_WORD,
    VOCABULARY,
    ClipSpec,
    Event,
    matches_event,
    read_transcript,
    write_clip,
)

# 6 s scene clips at 160x120, 10 fps, each scripted with one event (or none); the seeds
# were picked by their scripts: 8 pans left, 5 pans right, 0 cuts, 17 enters, 21 is static.
SCENES = {"pan_left": 8, "pan_right": 5, "cut": 0, "enter": 17, "static": 21}


def write_moving_disc(
    path: Path,
    start_xy: tuple[float, float],
    end_xy: tuple[float, float],
    *,
    duration_s: float = 4.0,
    move_s: tuple[float, float] = (1.0, 3.0),
) -> Path:
    """A 160x120, 10 fps clip: a red disc (radius 10 px) still, then moving in a straight
    line from ``start_xy`` to ``end_xy`` (px) during ``move_s``, over a static texture."""
    fps, w, h, r = 10, 160, 120, 10.0
    rng = np.random.default_rng(0)
    background = np.kron(rng.uniform(40, 215, (6, 8, 3)), np.ones((h // 6, w // 8, 1)))
    background += rng.normal(0, 18, (h // 4, w // 4, 1)).repeat(4, 0).repeat(4, 1)
    background = np.clip(background, 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(round(duration_s * fps)):
            a = float(np.clip((i / fps - move_s[0]) / (move_s[1] - move_s[0]), 0.0, 1.0))
            x, y = (s + a * (e - s) for s, e in zip(start_xy, end_xy, strict=True))
            img = background.copy()
            d = np.hypot(xx - x, yy - y)
            img[d <= r + 2] = (15, 15, 15)
            img[d <= r] = (225, 30, 30)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def scene_spec(seed: int) -> ClipSpec:
    return ClipSpec(kind="scene", seed=seed, duration_s=6.0, fps=10, width=160, height=120)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The clips of SCENES written with their scripted transcripts."""
    root = tmp_path_factory.mktemp("scenes")
    return {name: write_clip(scene_spec(seed), root / f"{name}.mp4") for name, seed in SCENES.items()}


@pytest.mark.parametrize("name", ["pan_left", "pan_right", "cut", "enter"])
def test_scripted_event_is_found_within_a_second(scenes: dict[str, Path], name: str) -> None:
    truth, _ = read_transcript(scenes[name])
    assert [e.kind for e in truth] == [name]
    events, lines = label_video(scenes[name])
    assert match_events(truth, events, tolerance_s=1.0) == 1, events
    assert len(events) == 1, f"expected only the scripted event, got {events}"
    line = lines[0]
    assert matches_event(line.text, name)
    if name == "enter":
        scripted = read_transcript(scenes[name])[1][0].text
        assert line.text.split()[-1] == scripted.split()[-1]  # same side


def test_static_scene_gets_no_events(scenes: dict[str, Path]) -> None:
    assert read_transcript(scenes["static"]) == ([], [])
    assert label_video(scenes["static"]) == ([], [])


def test_labels_round_trip_through_read_transcript(scenes: dict[str, Path], tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(scenes["pan_left"].read_bytes())
    json_path = write_labels(clip, seed=3)
    assert json_path == clip.with_suffix(".json")
    data = json.loads(json_path.read_text())
    assert data["source"] == "autolabel"
    assert data["thresholds"] == AutolabelConfig().__dict__
    assert read_transcript(clip) == label_video(clip, seed=3)
    with pytest.raises(ValueError, match="json"):
        write_labels(json_path)


@pytest.mark.parametrize("name", ["pan_left", "enter"])
def test_flip_swaps_left_and_right(scenes: dict[str, Path], tmp_path: Path, name: str) -> None:
    swap = {"left": "right", "right": "left"}
    plain = augment_clip(scenes[name], tmp_path / "plain.mp4", seed=1, duration_s=6.0, flip=False)
    flipped = augment_clip(scenes[name], tmp_path / "flipped.mp4", seed=1, duration_s=6.0, flip=True)
    events_p, lines_p = read_transcript(plain)
    events_f, lines_f = read_transcript(flipped)
    assert len(events_p) == len(events_f) == 1, (events_p, events_f)
    if name == "pan_left":
        assert (events_p[0].kind, events_f[0].kind) == ("pan_left", "pan_right")
    side_p, side_f = lines_p[0].text.split()[-1], lines_f[0].text.split()[-1]
    assert side_f == swap[side_p]
    meta = json.loads(flipped.with_suffix(".json").read_text())["augmentation"]
    assert meta["flip"] is True and meta["offset_s"] == 0.0


def test_augment_crops_at_source_rate(scenes: dict[str, Path], tmp_path: Path) -> None:
    out = augment_clip(scenes["cut"], tmp_path / "aug.mp4", seed=5, duration_s=3.0, min_keep=0.5)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate is not None and float(stream.average_rate) == pytest.approx(10.0)
        assert 80 <= stream.codec_context.width <= 160 and 60 <= stream.codec_context.height <= 120
        assert sum(1 for _ in container.decode(stream)) == 30
    data = json.loads(out.with_suffix(".json").read_text())
    x, y, w, h = data["augmentation"]["crop_xywh"]
    assert w >= 80 and h >= 60 and x + w <= 160 and y + h <= 120


def test_make_real_dataset_names_and_labels(scenes: dict[str, Path], tmp_path: Path) -> None:
    done: list[int] = []
    paths = make_real_dataset(
        [scenes["pan_right"], scenes["static"]], tmp_path / "real", 3, seed=2, duration_s=2.0, progress=done.append
    )
    assert [p.name for p in paths] == ["real_00000.mp4", "real_00001.mp4", "real_00002.mp4"]
    assert done == [1, 2, 3]
    sources = [json.loads(p.with_suffix(".json").read_text())["augmentation"]["source_video"] for p in paths]
    assert sources == [str(scenes["pan_right"]), str(scenes["static"]), str(scenes["pan_right"])]
    for p in paths:
        events, lines = read_transcript(p)
        assert {e.kind for e in events} <= set(LABEL_KINDS)
        assert len(events) == len(lines)


def test_commentary_timing_follows_the_procedural_commentator() -> None:
    events = [Event(1.0, "pan_left"), Event(1.2, "enter:right"), Event(1.4, "cut"), Event(9.0, "leave:left")]
    kept, lines = commentary(events, duration_s=10.0, seed=0, config=AutolabelConfig(max_line_lag_s=3.0))
    assert len(kept) == len(lines)
    # The cut's line would start > 3 s after it (the two lines before it are spoken): dropped.
    assert [e.kind for e in kept] == ["pan_left", "enter", "leave"]
    previous_end = -1.0
    for event, line in zip(kept, lines, strict=True):
        words = line.text.split()
        assert set(words) <= VOCABULARY and matches_event(line.text, event.kind)
        assert line.start_s >= event.t_s + REACTION_DELAY_S[0] - 1e-9
        assert line.start_s >= previous_end + LINE_GAP_S - 1e-9
        assert line.end_s == pytest.approx(line.start_s + len(words) * SECONDS_PER_WORD, abs=2e-3)
        previous_end = line.end_s
    assert lines[1].text.endswith("right") and lines[2].text.endswith("left")


# A disc moving inside the frame (never near the left/right edges) in each third.
MOVES = {
    "left": ((30, 30), (30, 90)),  # down
    "middle": ((60, 60), (100, 60)),  # right
    "right": ((130, 90), (130, 30)),  # up
}


@pytest.mark.parametrize("place", list(MOVES))
def test_motion_inside_the_frame_is_a_move_in_its_third(tmp_path: Path, place: str) -> None:
    clip = write_moving_disc(tmp_path / f"{place}.mp4", *MOVES[place])  # moves from 1 s to 3 s
    found = detect_events(measure_video(clip))
    assert [e.kind.split(":")[0] for e in found] == ["move"], found
    assert 1.0 <= found[0].t_s <= 2.0
    assert found[0].kind.split(":")[1] == place
    events, lines = label_video(clip)
    assert [e.kind for e in events] == ["move"]
    assert lines[0].text.endswith(MOVE_PLACES[place]) and matches_event(lines[0].text, "move")


def test_a_long_move_is_told_where_then_which_way(tmp_path: Path) -> None:
    clip = write_moving_disc(tmp_path / "long.mp4", (40, 60), (120, 60), duration_s=7.0, move_s=(1.0, 6.0))
    events, lines = label_video(clip)
    assert [e.kind for e in events] == ["move", "move"]
    assert events[1].t_s - events[0].t_s >= AutolabelConfig().move_repeat_s
    assert lines[0].text == "something moves on the left"
    assert lines[1].text.endswith("moves to the right")


def test_move_lines_follow_their_description() -> None:
    events = [Event(1.0, "move:left:-:big"), Event(4.0, "move:middle:up:small"), Event(7.0, "move:right:-:small")]
    kept, lines = commentary(events, duration_s=10.0, seed=0)
    assert [e.kind for e in kept] == ["move"] * 3
    assert lines[0].text == "something big moves on the left"
    assert lines[1].text.endswith("moves up")
    assert lines[2].text == "something moves on the right"
    for line in lines:
        assert set(line.text.split()) <= VOCABULARY


def test_sample_clip_rabbit_gets_a_move_line() -> None:
    from streams.settings import sample_clip

    clip = sample_clip()
    if not clip.is_file():
        pytest.skip(f"sample clip not fetched: {clip}")
    # A big grey rabbit comes out of its burrow on the left and walks to the middle.
    events, lines = label_video(clip)
    moves = [line.text for e, line in zip(events, lines, strict=True) if e.kind == "move"]
    assert moves, lines
    assert any({"left", "middle"} & set(text.split()) for text in moves), moves

"""The teacher labeller (models/data/label.py) on clips made here from the committed test photos.

The detector tests are skipped without the converted detector ONNX (scripts/convert_detector.py);
the on-screen text test without rapidocr.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from models.data.autolabel import LineCandidate, detect_tilts, measure_video, schedule_lines
from models.data.label import (
    _IMAGENET_NOUNS,
    _PRIORITY_FLOW,
    _PRIORITY_MINOR,
    _PRIORITY_VIEW,
    _STREET_MARKS,
    COCO_NOUNS,
    OBJECT_NOUNS,
    KnownMotion,
    LabelConfig,
    Teachers,
    _in_view,
    _Named,
    _named_options,
    _Obs,
    _Track,
    _with_known,
    describe_video,
    known_motions,
    plural,
)
from models.lm.vocab import words
from models.training.metrics import noun_lemma
from models.vision.detector import COCO_CLASSES, DEFAULT_MODEL, ObjectDetector

DATA = Path(__file__).resolve().parents[1] / "data"
needs_detector = pytest.mark.skipif(not DEFAULT_MODEL.is_file(),
                                    reason=f"{DEFAULT_MODEL} absent (python3.11 scripts/convert_detector.py)")
W, H, FPS = 320, 180, 10


def photo(name: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB of a photo in tests/data."""
    with av.open(str(DATA / name)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=w, height=h).to_ndarray()


def textured(seed: int = 0) -> np.ndarray:
    """A W x H background of random colour blocks with fine noise (flow can see it move)."""
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.uniform(60, 200, (9, 16, 3)), np.ones((H // 9 + 1, W // 16 + 1, 1)))[:H, :W]
    return np.clip(blocks + rng.normal(0, 10, (H, W, 1)), 0, 255).astype(np.uint8)


def write(path: Path, frames: list[np.ndarray]) -> Path:
    """H.264 at FPS frames per second."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_person_clip(path: Path, *, enter_s: float | None = 1.5, duration_s: float = 6.0) -> Path:
    """The astronaut photo (a person, 70 % of the height) over a textured background: entering from
    the left at ``enter_s`` (its right edge crosses the border then) at a quarter of the width per
    second, or standing still at 30 % of the width when ``enter_s`` is None."""
    sprite = photo("detector_astronaut.jpg")
    sh = int(0.7 * H)
    sprite = resize(sprite, sh, sh)
    bg = textured()
    frames = []
    for i in range(int(duration_s * FPS)):
        t = i / FPS
        x = int(round(0.3 * W if enter_s is None else -sh + (t - enter_s) * 0.25 * W))
        img = bg.copy()
        a, b = max(0, x), min(W, x + sh)
        if b > a:
            img[(H - sh) // 2 : (H - sh) // 2 + sh, a:b] = sprite[:, a - x : b - x]
        frames.append(img)
    return write(path, frames)


@pytest.fixture(scope="module")
def teachers() -> Teachers:
    return Teachers(detector=ObjectDetector())


@needs_detector
def test_a_person_entering_from_the_left_is_named_on_time(teachers: Teachers, tmp_path: Path) -> None:
    clip = write_person_clip(tmp_path / "enter.mp4")
    events, lines, info = describe_video(clip, teachers=teachers)
    said = [line for line in lines if "person" in line.text.split() and line.text.endswith("from the left")]
    assert len(said) == 1, lines
    assert abs(said[0].start_s - 1.5) <= 1.0
    assert [t["noun"] for t in info["tracks"]] == ["person"]
    # Event kinds are kept only for lines that say them ("enters" for enter).
    assert all(e.kind == "enter" for e in events) and len(events) == ("enters" in said[0].text.split())


@needs_detector
def test_a_static_scene_gets_what_is_in_view_at_most(teachers: Teachers, tmp_path: Path) -> None:
    clip = write_person_clip(tmp_path / "static.mp4", enter_s=None, duration_s=4.0)
    events, lines, _ = describe_video(clip, teachers=teachers)
    assert len(lines) <= 1 and events == []
    for line in lines:
        assert line.start_s < 1.0 and line.text in ("we see a person", "there is a person")


@needs_detector
def test_a_tilt_up_is_said(teachers: Teachers, tmp_path: Path) -> None:
    tall = resize(photo("detector_astronaut.jpg"), W, 2 * W)  # the view moves up it: content moves down
    frames = []
    for i in range(5 * FPS):
        y = int(2 * W - H - min(max(0.0, (i / FPS - 1.0) * 0.25 * H), 2 * W - H))
        frames.append(tall[y : y + H])
    clip = write(tmp_path / "tilt.mp4", frames)
    assert [e.kind for e in detect_tilts(measure_video(clip))] == ["tilt_up"]
    _, lines, _ = describe_video(clip, teachers=teachers)
    tilts = [line for line in lines if "tilts up" in line.text]
    assert len(tilts) == 1 and 1.0 <= tilts[0].start_s <= 2.0


def test_object_nouns_cover_every_noun_the_lines_say() -> None:
    tracked = {*COCO_NOUNS.values(), "cyclist", "motorcyclist", "van"}  # nouns of tracks: counted, plural
    seen: set[str] = set()

    def said(text: str) -> set[str]:
        return {noun_lemma(w) for w in words(text)} & OBJECT_NOUNS

    for noun in sorted(set(_IMAGENET_NOUNS.values()) - tracked):  # said of a whole view, one at a time
        assert noun in said(f"cut to a {noun}")
    for noun in sorted(tracked):
        head = noun.split()[-1]
        assert noun_lemma(plural(noun).split()[-1]) == head, f"{plural(noun)!r} does not read back as {head!r}"
        for what, way in (("enter", "left"), ("leave", "right"), ("cross", "left"), ("stop", ""), ("pass", "bus")):
            for count in (1, 2, 3, 5):
                kind, options = _named_options(_Named(1.0, what, noun, way, count=count))
                for text in options:
                    assert head in said(text), text
                    seen |= said(text)
        obs = [_Obs(t_s=0.0, x1=0.1, y1=0.1, x2=0.4, y2=0.9, wx=0.25, score=0.9, name="person")]
        listing = _in_view([_Track(0, obs, noun=noun), _Track(0, obs, noun="car"), _Track(0, obs, noun="car")],
                           0.0, None, LabelConfig())
        assert ({"street", "car"} if noun in _STREET_MARKS else {head, "car"}) <= said(listing), listing
    assert "street" in seen | said(listing)
    assert not {"camera", "view", "left", "right"} & OBJECT_NOUNS
    assert {COCO_NOUNS[c] for c in ("person", "bicycle", "car", "bus", "truck", "dog", "cat")} <= OBJECT_NOUNS
    assert "scissors" not in COCO_NOUNS and len(COCO_NOUNS) < len(COCO_CLASSES)


def test_named_lines_read_well() -> None:
    assert _named_options(_Named(1.0, "cross", "person", "right", count=2))[1][1] == "two people cross to the right"
    assert _named_options(_Named(1.0, "enter", "person", "left", count=5))[1][0] == \
        "a group of people walk in from the left"
    assert _named_options(_Named(1.0, "pass", "cyclist", "van"))[1][0] == "a cyclist rides past a van"
    assert _named_options(_Named(1.0, "cross", "car", "left"))[1][0] == "a car drives to the left"
    assert _named_options(_Named(1.0, "leave", "bus", "right", count=2))[1][0] == "the two buses leave to the right"
    assert _named_options(_Named(1.0, "enter", "elephant", "right"))[1][1] == "an elephant enters from the right"


def test_known_motions_replace_what_the_teachers_said_of_them(tmp_path: Path) -> None:
    clip = tmp_path / "beach-001-person_from_left.mp4"
    clip.with_suffix(".gen.json").write_text(json.dumps({"kind": "composite", "events": [
        {"t_s": 1.4, "end_s": 3.0, "kind": "enter:left", "object": "dog"},
        {"t_s": 5.0, "end_s": 6.2, "kind": "leave:right", "object": "dog"}]}))
    known = known_motions(clip)
    assert known == [KnownMotion(1.4, 3.0, "enter", "left", "dog"), KnownMotion(5.0, 6.2, "leave", "right", "dog")]
    said = [LineCandidate(0.0, "", ("we see a beach",), _PRIORITY_VIEW),
            LineCandidate(1.6, "enter", ("a squirrel comes in from the left",), 1),  # the detector misnamed it
            LineCandidate(3.5, "", ("the squirrel stops",), _PRIORITY_MINOR),
            LineCandidate(5.2, "leave", ("something leaves to the right",), _PRIORITY_FLOW),
            LineCandidate(9.0, "leave", ("something leaves to the left",), _PRIORITY_FLOW)]  # outside every window
    out = _with_known(said, known, LabelConfig())
    assert [c.options[0] for c in out] == ["we see a beach", "a dog walks in from the left",
                                           "the dog leaves to the right", "something leaves to the left"]
    assert [c.kind for c in out] == ["", "enter", "leave", "leave"]
    camera = tmp_path / "beach-002-pan_left.mp4"
    camera.with_suffix(".gen.json").write_text(json.dumps({"kind": "camera", "events": [
        {"t_s": 1.0, "end_s": 4.0, "kind": "pan_left"}]}))
    assert known_motions(camera) == [] and known_motions(tmp_path / "other.mp4") == []
    camera.with_suffix(".gen.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a generator sidecar"):
        known_motions(camera)


def test_schedule_lines_places_by_priority_and_spacing() -> None:
    low = LineCandidate(0.0, "", ("something moves on the left side of the view",), priority=1)
    high = LineCandidate(0.5, "cut", ("a hard cut",), priority=0)
    pairs = schedule_lines([low, high], duration_s=10.0)
    assert [line.text for _, line in pairs] == ["a hard cut"]  # the long low line no longer fits within 2 s
    short = LineCandidate(0.0, "", ("one", "two"), priority=1)
    pairs = schedule_lines([short, high], duration_s=10.0, min_spacing_s=1.5)
    assert [e.kind for e, _ in pairs] == ["", "cut"] or [e.kind for e, _ in pairs] == ["cut"]
    starts = [line.start_s for _, line in pairs]
    assert all(b - a >= 1.5 - 1e-9 for a, b in zip(starts, starts[1:], strict=False))


def test_on_screen_text_is_read() -> None:
    pytest.importorskip("rapidocr")
    from PIL import Image, ImageDraw, ImageFont

    from models.data.ocr import TextReader

    img = Image.new("RGB", (640, 360), (90, 120, 90))
    draw = ImageDraw.Draw(img)
    draw.rectangle((200, 130, 440, 220), fill=(250, 250, 250))
    draw.text((235, 145), "OPEN", fill=(200, 0, 0), font=ImageFont.load_default(size=56))
    (box,) = TextReader().read(np.asarray(img))
    assert box.text == "open" and box.score >= 0.9
    assert 180 <= box.x1 < box.x2 <= 460 and 120 <= box.y1 < box.y2 <= 230
    assert TextReader().read(np.full((360, 640, 3), 120, np.uint8)) == []


@needs_detector
def test_a_sign_in_view_is_read_out(teachers: Teachers, tmp_path: Path) -> None:
    pytest.importorskip("rapidocr")
    from PIL import Image, ImageDraw, ImageFont

    from models.data.ocr import TextReader

    img = Image.fromarray(textured())
    draw = ImageDraw.Draw(img)
    draw.rectangle((100, 60, 220, 110), fill=(250, 250, 250))
    draw.text((118, 66), "OPEN", fill=(200, 0, 0), font=ImageFont.load_default(size=32))
    clip = write(tmp_path / "sign.mp4", [np.asarray(img)] * (3 * FPS))
    _, lines, _ = describe_video(clip, teachers=Teachers(detector=teachers.detector, reader=TextReader()))
    assert [line.text for line in lines] in (["the sign says open"], ["it says open"])
    assert lines[0].start_s < 1.0

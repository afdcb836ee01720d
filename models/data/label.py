"""Teacher-labelled real footage: transcripts that name what is in view and what it does.

Real video has no commentary. :mod:`models.data.autolabel` measures what moves from the
optical flow but cannot say *what* moves ("something moves in the middle"). This
labeller adds offline vision teachers and writes a transcript in the procedural format
(:func:`models.data.procedural.read_transcript` reads it) next to each video, so real
footage trains the commentator to name things: "a person walks in from the left", "two
people cross to the right", "a cyclist rides past a car", "cut to a street with two cars
and a bus", "the camera tilts up a building", "the sign says open".

Teachers (all offline, CPU):

* **objects**: the COCO detector (:class:`models.vision.detector.ObjectDetector`,
  CenterNet-MobileNetV3) on frames decoded at the source's own resolution (scaled down
  to ``max_width``) at ``detect_hz``;
* **tracks**: ``norfair`` (the maintained fork ``norfair-enough``, BSD-3-Clause; the
  original ``norfair`` 2.3 pins numpy < 2 and Roboflow's ``trackers`` needs the GUI build
  of OpenCV). Its Kalman tracker links detections frame to frame in *world* coordinates:
  the camera motion the flow labeller measures is passed as a translation, so an object
  that stands still while the camera pans keeps its track and does not "move";
* **camera motion and cuts**: :func:`models.data.autolabel.measure_video` (pans, cuts,
  tilts, and enter/leave/move of anonymous moving regions for what the detector misses);
* **what the detector's 80 classes miss**: ImageNet labels of the key-view encoder
  (:func:`models.vision.encoder.load_encoder`, EfficientNet-Lite0) at each shot start and
  during tilts, summed over the classes of one noun (118 dog breeds are one "dog"), used
  only above ``imagenet_min_prob``; it also tells a van from a car on the crop of a
  vehicle track;
* **on-screen text**: :class:`models.data.ocr.TextReader` (RapidOCR) at most ``ocr_hz``
  times a second, and after a reading that found none only once the view has changed
  (``ocr_change``) or ``ocr_refresh_s`` later; text seen in two readings in a row.

From tracks to lines. A track is *named* only when it has ``track_min_obs`` detections
with a mean score of ``name_min_score``; a person over a bicycle (motorcycle) is a
cyclist (motorcyclist), a bicycle moving on its own too. Positions are fractions of the
frame width, world positions the screen position minus the camera's shift since the
shot began. Per shot:

* **in view** at its start (0 s or a cut): the named tracks seen within
  ``view_window_s``, counted ("two people and a car"); several vehicles, or one with a
  traffic light or a sign, make it "a street with ..."; with nothing named, the ImageNet
  noun if confident ("we see a lion"); a cut says "cut to ...";
* **enter**: a track that begins at the left/right border after ``shot_settle_s`` and
  moves ``enter_min_travel`` inward; **leave**: one that ends at a border moving outward
  before its shot ends; **cross**: one that travels ``cross_min_travel`` in the world
  ("a person walks to the right"); **stop**: moved ``stop_moving_travel`` in 2 s, then
  still for ``stop_still_s``; **pass**: a moving track whose position overtakes a
  slower track of another noun with overlapping heights ("a cyclist rides past a car");
* **groups**: events of one kind, side and noun within ``group_window_s`` are one line
  ("two people cross to the right", "a group of people walk in from the left").

The verb goes with the noun (a person walks or runs, a cyclist rides, a car drives, a
bird flies, other things move). Each line is timed at the start of what it describes
(the flow labeller's time when it saw the same enter or leave earlier) and scheduled
with :func:`models.data.autolabel.schedule_lines`: a reaction delay, no overlap, at most
one line start per ``min_line_spacing_s``, and priorities: what is in view, cuts and
camera motion first, then named objects, then stops, named moves and text, and last the
flow labeller's anonymous enter/leave/move lines, kept only where no named track
explains them (a flow "move" over a named track becomes "the person moves on the left").
The transcript's ``events`` list holds the event kinds of the procedural vocabulary
(:data:`models.data.procedural.EVENT_KINDS`) whose line says the kind's keyword
(``matches_event``), so event recall on these transcripts counts what a line says.

**Known motions.** A clip made by :mod:`models.data.realclips` that composites an object
over a background records in its ``.gen.json`` sidecar what moves, from which side and
when (:func:`known_motions`). The teachers' lines about that motion (enters, leaves,
moves and stops while it travels) are then replaced by lines that say it: the detector
may miss or misname a pasted cut-out, the generator cannot.

Cost, measured with ``mmduplex label`` on the footage of :mod:`mmduplex.footage` on the
shared 2-core machine (load average 3-5, December 2026): 216 s for the 301 s of the
training videos (43 s per minute of video) and 122 s for the 130 s of the held-out ones
(56 s per minute); the detector is most of it (0.1-0.26 s a frame), then RapidOCR
(0.1-0.4 s a reading) and the flow labeller.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.data.autolabel import (
    AutolabelConfig,
    LineCandidate,
    Measurements,
    detect_events,
    detect_tilts,
    lines_for,
    measure_video,
    schedule_lines,
)
from models.data.ocr import OcrConfig, TextReader
from models.data.procedural import (
    EVENT_KINDS,
    MOVE_PLACES,
    MOVE_WAYS,
    Event,
    Line,
    label_each,
    matches_event,
    videos_in,
    write_transcript,
)
from models.vision import video
from models.vision.detector import DetectorConfig, ObjectDetector
from models.vision.encoder import EncoderConfig, ImageEncoder, load_encoder
from streams.errors import MediaError, MMDError, ModelError

__all__ = [
    "OBJECT_NOUNS",
    "KnownMotion",
    "LabelConfig",
    "Teachers",
    "describe_video",
    "label_dir",
    "label_video",
    "known_motions",
    "load_teachers",
    "videos_in",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# Nouns, verbs and phrases
# ---------------------------------------------------------------------------------------

#: COCO class -> the noun said for it. Classes left out are never named: plural-only or
#: odd words (scissors, skis, tie: "ties" would not read back as "tie") and the hot dog.
COCO_NOUNS: dict[str, str] = {
    "person": "person", "bicycle": "bicycle", "car": "car", "motorcycle": "motorcycle", "airplane": "plane",
    "bus": "bus", "train": "train", "truck": "truck", "boat": "boat", "traffic light": "traffic light",
    "fire hydrant": "hydrant", "stop sign": "stop sign", "parking meter": "parking meter", "bench": "bench",
    "bird": "bird", "cat": "cat", "dog": "dog", "horse": "horse", "sheep": "sheep", "cow": "cow",
    "elephant": "elephant", "bear": "bear", "zebra": "zebra", "giraffe": "giraffe", "backpack": "backpack",
    "umbrella": "umbrella", "handbag": "bag", "suitcase": "suitcase", "frisbee": "frisbee",
    "snowboard": "snowboard", "sports ball": "ball", "kite": "kite", "baseball bat": "bat",
    "baseball glove": "glove", "skateboard": "skateboard", "surfboard": "surfboard", "tennis racket": "racket",
    "bottle": "bottle", "wine glass": "glass", "cup": "cup", "fork": "fork", "knife": "knife", "spoon": "spoon",
    "bowl": "bowl", "banana": "banana", "apple": "apple", "sandwich": "sandwich", "orange": "orange",
    "broccoli": "broccoli", "carrot": "carrot", "pizza": "pizza", "donut": "donut", "cake": "cake",
    "chair": "chair", "couch": "couch", "potted plant": "plant", "bed": "bed", "dining table": "table",
    "toilet": "toilet", "tv": "television", "laptop": "laptop", "mouse": "mouse", "remote": "remote",
    "keyboard": "keyboard", "cell phone": "phone", "microwave": "microwave", "oven": "oven",
    "toaster": "toaster", "sink": "sink", "refrigerator": "fridge", "book": "book", "clock": "clock",
    "vase": "vase", "teddy bear": "teddy", "hair drier": "hairdryer", "toothbrush": "toothbrush",
}

#: Detector classes tracked together (the detector may call one van a car in one frame
#: and a truck in the next); the track's noun is its best-scoring class.
_TRACK_GROUPS: dict[str, str] = {
    "car": "vehicle", "truck": "vehicle", "bus": "vehicle", "train": "vehicle",
    "bicycle": "two-wheeler", "motorcycle": "two-wheeler",
    "cat": "animal", "dog": "animal", "horse": "animal", "sheep": "animal", "cow": "animal", "bear": "animal",
}

#: ImageNet class indices (EfficientNet-Lite0's 1000 classes) -> noun, for what the
#: detector's classes miss; dog breeds, birds and butterflies each sum to one noun.
_IMAGENET_NOUNS: dict[int, str] = {
    **dict.fromkeys((0, 1, 5, 6, *range(389, 398)), "fish"), **dict.fromkeys(range(2, 5), "shark"),
    **dict.fromkeys((7, 8), "chicken"), **dict.fromkeys((*range(9, 25), *range(80, 101), *range(127, 147)), "bird"),
    **dict.fromkeys(range(30, 33), "frog"), **dict.fromkeys(range(33, 38), "turtle"),
    **dict.fromkeys(range(38, 49), "lizard"), **dict.fromkeys((49, 50), "crocodile"),
    **dict.fromkeys(range(52, 69), "snake"), **dict.fromkeys((101, 385, 386), "elephant"), 104: "kangaroo",
    105: "koala", **dict.fromkeys(range(151, 269), "dog"), **dict.fromkeys(range(269, 273), "wolf"),
    **dict.fromkeys(range(277, 281), "fox"), **dict.fromkeys(range(281, 286), "cat"),
    **dict.fromkeys((288, 289, 290), "leopard"), 291: "lion", 292: "tiger", 293: "cheetah",
    **dict.fromkeys(range(294, 298), "bear"), 309: "bee", **dict.fromkeys(range(321, 327), "butterfly"),
    **dict.fromkeys(range(330, 333), "rabbit"), 335: "squirrel", 340: "zebra", **dict.fromkeys(range(341, 344), "pig"),
    345: "cow", **dict.fromkeys((348, 349), "sheep"), 354: "camel", 355: "llama",
    **dict.fromkeys(range(365, 383), "monkey"), 388: "panda",
    **dict.fromkeys((442, 497), "church"), 668: "mosque", 483: "castle",
    **dict.fromkeys((498, 624, 663, 698, 727, 743), "building"), 425: "barn", 580: "greenhouse",
    437: "lighthouse", 900: "tower", **dict.fromkeys((415, 424, 454, 467, 509, 582, 788, 860, 865), "shop"),
    762: "restaurant", **dict.fromkeys((821, 839, 888), "bridge"), 718: "pier", 970: "mountain",
    **dict.fromkeys((972, 976), "cliff"), 975: "lake", **dict.fromkeys((977, 978), "beach"), 979: "valley",
    980: "volcano", 562: "fountain", 703: "bench", 919: "sign", 829: "tram", **dict.fromkeys((654, 779, 874), "bus"),
    **dict.fromkeys((656, 675, 734), "van"), 985: "flower", **dict.fromkeys((504, 968), "cup"), 967: "coffee",
    **dict.fromkeys((665, 670), "scooter"),
}
_PLACES = frozenset({"church", "mosque", "castle", "building", "barn", "greenhouse", "lighthouse", "tower", "shop",
                     "restaurant", "bridge", "pier", "mountain", "cliff", "lake", "beach", "valley", "volcano",
                     "fountain"})
_TALL = frozenset({"church", "mosque", "castle", "building", "lighthouse", "tower", "mountain", "cliff"})
_VEHICLES = frozenset({"car", "van", "bus", "truck", "motorcycle", "bicycle", "cyclist", "motorcyclist"})
_STREET_MARKS = frozenset({"traffic light", "stop sign", "parking meter", "hydrant"})
_ANIMALS = frozenset({"cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"})
_LIVING = _ANIMALS | {"person", "cyclist", "motorcyclist", "bird"}

#: Singular -> plural where adding "s"/"es" is wrong.
_IRREGULAR_PLURALS: dict[str, str] = {"person": "people", "sheep": "sheep", "knife": "knives", "mouse": "mice",
                                      "fish": "fish", "broccoli": "broccoli", "wolf": "wolves"}

#: Noun -> (singular, plural) verb of its motion; other things "move".
_MOTION_VERBS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("person", *_ANIMALS), ("walks", "walk")),
    **dict.fromkeys(("cyclist", "motorcyclist", "motorcycle"), ("rides", "ride")),
    **dict.fromkeys(("car", "van", "bus", "truck"), ("drives", "drive")),
    **dict.fromkeys(("bird", "plane", "kite"), ("flies", "fly")),
    "boat": ("sails", "sail"),
}
_FAST_VERBS = ("runs", "run")  # a person or an animal faster than run_heights_s

_NUMBERS = {2: "two", 3: "three"}


def plural(noun: str) -> str:
    """``"bus"`` -> ``"buses"``, ``"person"`` -> ``"people"``; a two-word noun pluralises its last word."""
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        word = _IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "sh", "ch", "x")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}".strip()


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _count(noun: str, n: int) -> str:
    """``"a person"``, ``"two people"``, ``"three cars"``, ``"a group of people"`` / ``"several cars"``."""
    if n <= 1:
        return _a(noun)
    if n in _NUMBERS:
        return f"{_NUMBERS[n]} {plural(noun)}"
    return f"a group of {plural(noun)}" if noun in _LIVING else f"several {plural(noun)}"


def _verb(noun: str, n: int, *, fast: bool = False) -> str:
    """The motion verb agreeing with ``n`` things: ``"walks"``, ``"ride"``, ``"runs"``."""
    pair = _FAST_VERBS if fast and noun in ("person", *_ANIMALS) else _MOTION_VERBS.get(noun, ("moves", "move"))
    return pair[0] if n <= 1 else pair[1]


def _agree(singular: str, n: int) -> str:
    """``"enters"`` -> ``"enter"`` for several things (regular verbs only)."""
    return singular if n <= 1 else singular[:-1]


def _listing(counts: list[tuple[str, int]]) -> str:
    """``[("car", 2), ("bus", 1)]`` -> ``"two cars and a bus"`` (no commas: lines have no punctuation)."""
    parts = [_count(noun, n) for noun, n in counts]
    return parts[0] if len(parts) == 1 else " ".join(parts[:-1]) + " and " + parts[-1]


def _object_nouns() -> frozenset[str]:
    nouns = set(COCO_NOUNS.values()) | set(_IMAGENET_NOUNS.values()) | {"cyclist", "motorcyclist", "street"}
    # Two-word names count by their head word, the word the mention metric sees.
    return frozenset(n.rpartition(" ")[2] for n in nouns)


#: Every object noun the labeller's lines can say, singular and lowercase (for the
#: object mention metric, :func:`models.training.metrics.object_mention_scores`); of a
#: two-word name ("traffic light") the head word. "camera" and "view" are not objects.
OBJECT_NOUNS: frozenset[str] = _object_nouns()


# ---------------------------------------------------------------------------------------
# Configuration and teachers
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelConfig:
    """Rates and thresholds of the labeller; positions and travels are parts of the frame width."""

    detect_hz: float = 4.0  # detector frames per second
    max_width: int = 960  # frames are decoded at the source's size, scaled down to at most this width, px
    track_min_obs: int = 3  # a named track has at least this many detections ...
    name_min_score: float = 0.5  # ... scoring this on average (franck's still "traffic light": 0.46, people 0.6-0.8)
    moving_name_min_score: float = 0.4  # ... or this, for a track of twice as many detections travelling
    # half of cross_min_travel (a small motorcycle composited over a train photo: 0.46)
    link_distance: float = 1.0  # a detection joins a track within this many box diagonals of its prediction
    track_hold_s: float = 1.0  # a track survives this long without a detection
    border: float = 0.03  # a box this close to the left/right edge touches it
    shot_settle_s: float = 0.5  # objects seen this soon after a shot starts were in view: no enter
    view_window_s: float = 1.0  # what is in view at a shot start: seen this soon after it
    enter_min_travel: float = 0.04  # an entering object moves this far inward in its first 2 s
    leave_min_travel: float = 0.03  # a leaving object moves this far outward in its last 2 s
    cross_min_travel: float = 0.25  # a crossing travels this far (world)
    onset_travel: float = 0.03  # motion starts where a track is this far from where it was
    stop_still_s: float = 1.5  # a stop: still (within onset_travel) this long ...
    stop_moving_travel: float = 0.1  # ... after moving this far in the 2 s before
    pass_min_travel: float = 0.15  # a passing track travels this far, at least twice as fast as the other
    run_heights_s: float = 1.5  # a person (animal) moving this many box heights a second runs
    rider_overlap: float = 0.3  # a person box covering this part of a bicycle's box rides it ...
    rider_frames: float = 0.6  # ... in this part of their common frames
    group_window_s: float = 1.5  # same-noun events this close are one line ("two people ...")
    explain_s: float = 1.5  # a flow event this close to a named line about the same thing is dropped
    min_line_spacing_s: float = 1.5  # at most one line starts per this
    imagenet_min_prob: float = 0.6  # summed ImageNet probability of a noun to say it (train sources: right
    # nouns 0.82-0.95, the worst wrong one 0.47, a "dog" for Big Buck Bunny)
    named_move_repeat_s: float = 8.0  # a named track is said to move at most once per this
    ocr_hz: float = 1.0  # on-screen text is read at most this often ...
    ocr_change: float = 3.0  # ... when the view changed this much (mean grey levels) since a reading without
    ocr_refresh_s: float = 5.0  # text, or this long after it
    ocr_max_lines: int = 3  # distinct texts said per video at most
    # The flow labeller's thresholds; a pan must explain the view's change (on the training talking heads
    # the median flow followed the person across a plain wall: 38-57 % left unexplained, procedural pans 0 %).
    flow: AutolabelConfig = field(default_factory=lambda: AutolabelConfig(pan_max_residual=0.25))

    def __post_init__(self) -> None:
        if not 0.5 <= self.detect_hz <= 30:
            raise ValueError(f"detect_hz must be in [0.5, 30], got {self.detect_hz}")
        if self.max_width < 64:
            raise ValueError(f"max_width must be >= 64, got {self.max_width}")
        if self.track_min_obs < 1:
            raise ValueError(f"track_min_obs must be >= 1, got {self.track_min_obs}")
        if not 0.0 < self.ocr_hz <= self.detect_hz:
            raise ValueError(f"ocr_hz must be in (0, detect_hz], got {self.ocr_hz}")


@dataclass
class Teachers:
    """The loaded teacher models (load once with :func:`load_teachers`, reuse for many videos).

    Attributes:
        detector: The COCO detector.
        encoder: The ImageNet classifier, or None to name nothing the detector misses.
        reader: The text reader, or None for no on-screen text.
    """

    detector: ObjectDetector
    encoder: ImageEncoder | None = None
    reader: TextReader | None = None

    @property
    def names(self) -> dict[str, Any]:
        """Which teachers ran, as written into transcripts."""
        return {"detector": "centernet-mobilenetv3 (COCO)", "tracker": "norfair",
                "imagenet": "efficientnet-lite0" if self.encoder is not None else None,
                "ocr": "rapidocr" if self.reader is not None else None, "flow": "autolabel"}


def load_teachers(*, ocr: bool = True, imagenet: bool = True, threads: int = 1) -> Teachers:
    """Loads the detector and, where they can be loaded, the ImageNet classifier and the text reader.

    Args:
        ocr: Load the text reader (RapidOCR).
        imagenet: Load EfficientNet-Lite0 (fetched by ``mmduplex fetch-models``).
        threads: ONNX Runtime threads of each model.

    Returns:
        The teachers; a classifier or reader that cannot be loaded is None (logged as a warning).

    Raises:
        ModelError: If the detector cannot be loaded.
    """
    detector = ObjectDetector(DetectorConfig(threads=threads))
    encoder = reader = None
    if imagenet:
        try:
            encoder = load_encoder(EncoderConfig(threads=threads))
        except ModelError as exc:
            log.warning("no ImageNet labels: %s", exc)
    if ocr:
        try:
            reader = TextReader(OcrConfig(threads=threads))
        except ModelError as exc:
            log.warning("no on-screen text: %s", exc)
    return Teachers(detector=detector, encoder=encoder, reader=reader)


# ---------------------------------------------------------------------------------------
# Observation: detections, tracks, ImageNet nouns, text
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Obs:
    """One detection of a track: time (s), screen box (parts of width/height), world centre x, score, class."""

    t_s: float
    x1: float
    y1: float
    x2: float
    y2: float
    wx: float
    score: float
    name: str

    @property
    def cx(self) -> float:
        return 0.5 * (self.x1 + self.x2)


@dataclass
class _Track:
    shot: int
    obs: list[_Obs] = field(default_factory=list)
    noun: str = ""  # set when the track is named
    absorbed: bool = False  # a bicycle whose rider's track speaks for it

    @property
    def t0(self) -> float:
        return self.obs[0].t_s

    @property
    def t1(self) -> float:
        return self.obs[-1].t_s

    def wx_at(self, t_s: float) -> float:
        return float(np.interp(t_s, [o.t_s for o in self.obs], [o.wx for o in self.obs]))


@dataclass
class _Seen:
    """Everything the teachers saw in one video."""

    duration_s: float
    shot_starts: list[float]  # 0 and each cut, seconds
    tracks: list[_Track]
    scene_nouns: dict[int, tuple[str, float]]  # shot -> (ImageNet noun, summed probability) at its start
    tilt_nouns: dict[float, str]  # tilt time -> ImageNet noun seen during it
    texts: list[tuple[float, str]]  # (time, text) per stable reading, first sighting
    flow_events: list[Event]
    tilts: list[Event]


def _box_distance(detection: Any, tracked: Any) -> float:
    """Centre distance of a detection from a track's predicted box, in box diagonals, plus the log size ratio."""
    det, est = np.asarray(detection.points, np.float64), np.asarray(tracked.estimate, np.float64)
    d_diag = float(np.hypot(*(det[1] - det[0])))
    e_diag = float(np.hypot(*(est[1] - est[0])))
    centre = float(np.hypot(*(det.mean(axis=0) - est.mean(axis=0))))
    return centre / max(d_diag, e_diag, 1.0) + abs(math.log(max(d_diag, 1.0) / max(e_diag, 1.0)))


def _tracker(cfg: LabelConfig, hold: int) -> Any:
    """A norfair tracker linking boxes by :func:`_box_distance`; every detection starts a track at once."""
    from norfair import Tracker

    nf_log = logging.getLogger("norfair.tracker")
    level = nf_log.level
    nf_log.setLevel(logging.ERROR)  # it warns that a per-pair distance is slow: a few boxes a frame cost nothing
    try:
        return Tracker(distance_function=_box_distance, distance_threshold=cfg.link_distance,
                       hit_counter_max=hold, initialization_delay=0)
    finally:
        nf_log.setLevel(level)


def _camera_shift(m: Measurements) -> tuple[np.ndarray, np.ndarray]:
    """Media times and the content's horizontal shift since the first step, parts of the width."""
    return m.pts_s, np.cumsum(m.camera_dx.astype(np.float64)) / m.width


def _frame_size(path: Path, max_width: int) -> tuple[int, int]:
    """Decoding size: the source's, scaled down to ``max_width`` (even numbers)."""
    container = video.open_container(str(path))
    try:
        ctx = container.streams.video[0].codec_context
        w, h = int(ctx.width), int(ctx.height)
    finally:
        container.close()
    if w < 2 or h < 2:
        raise MediaError(f"{path}: video stream reports a {w}x{h} frame")
    scale = min(1.0, max_width / w)
    return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)


def _imagenet_noun(encoder: ImageEncoder, rgb: npt.NDArray[np.uint8]) -> tuple[str, float]:
    """The noun whose ImageNet classes (top 10) hold the most probability, and that probability."""
    (top,) = encoder.classify(rgb[None], top_k=10)
    index = {name: i for i, name in enumerate(getattr(encoder, "class_names", []))}
    sums: defaultdict[str, float] = defaultdict(float)
    for name, p in top:
        noun = _IMAGENET_NOUNS.get(index.get(name, -1))
        if noun:
            sums[noun] += p
    return max(sums.items(), key=lambda kv: kv[1]) if sums else ("", 0.0)


def _observe(path: Path, m: Measurements, teachers: Teachers, cfg: LabelConfig) -> _Seen:
    """Runs the detector, tracker, classifier and text reader over one video."""
    from norfair import Detection as NfDetection
    from norfair.camera_motion import TranslationTransformation

    flow_events = detect_events(m, cfg.flow)
    tilts = detect_tilts(m, cfg.flow)
    shot_starts = [0.0] + [e.t_s for e in flow_events if e.kind == "cut"]
    tilt_probe = {round(e.t_s + 0.6, 3): e.t_s for e in tilts}  # classify ~0.6 s into each tilt
    shift_t, shift = _camera_shift(m)
    width, height = _frame_size(path, cfg.max_width)
    grid = video.ModelGrid(fps_hz=cfg.detect_hz, width=width, height=height)
    hold = max(2, round(cfg.track_hold_s * cfg.detect_hz))

    tracks: dict[tuple[int, int], _Track] = {}
    scene_nouns: dict[int, tuple[str, float]] = {}
    tilt_nouns: dict[float, str] = {}
    readings: list[tuple[float, set[str]]] = []
    tracker = None
    shot = -1
    t_first = None
    next_ocr_s = 0.0
    last_thumb = np.zeros(0)
    for frame in video.iter_model_frames(path, grid=grid):
        t_first = frame.pts_s if t_first is None else t_first
        t_s = frame.pts_s - t_first
        s = int(np.searchsorted(shot_starts, t_s + 1e-6)) - 1
        if s != shot:  # a new shot: a fresh tracker, and what the classifier sees at its start
            shot = s
            tracker = _tracker(cfg, hold)
            if teachers.encoder is not None:
                scene_nouns[shot] = _imagenet_noun(teachers.encoder, frame.rgb)
        assert tracker is not None
        if teachers.encoder is not None:
            for probe_s, tilt_s in list(tilt_probe.items()):
                if t_s + 1e-6 >= probe_s:
                    noun, p = _imagenet_noun(teachers.encoder, frame.rgb)
                    tilt_nouns[tilt_s] = noun if p >= cfg.imagenet_min_prob else ""
                    del tilt_probe[probe_s]
        dx_px = float(np.interp(t_s, shift_t, shift)) * width  # content shift since the start, px
        detections = []
        for d in teachers.detector.detect(frame.rgb):
            if d.name in COCO_NOUNS:
                detections.append(NfDetection(points=np.array([[d.x1, d.y1], [d.x2, d.y2]], np.float64),
                                              scores=np.array([d.score, d.score]), data=d,
                                              label=_TRACK_GROUPS.get(d.name, d.name)))
        mine = {id(d.data) for d in detections}  # the tracker keeps copies of detections, not their data
        for obj in tracker.update(detections, coord_transformations=TranslationTransformation(np.array([dx_px, 0.0]))):
            if id(obj.last_detection.data) not in mine:
                continue  # not seen in this frame: only predicted
            d = obj.last_detection.data
            track = tracks.setdefault((shot, obj.id), _Track(shot=shot))
            cx = 0.5 * (d.x1 + d.x2) / width
            track.obs.append(_Obs(t_s=round(t_s, 3), x1=d.x1 / width, y1=d.y1 / height, x2=d.x2 / width,
                                  y2=d.y2 / height, wx=cx - dx_px / width, score=d.score, name=d.name))
        if teachers.reader is not None and t_s + 1e-6 >= next_ocr_s:
            next_ocr_s = t_s + 1.0 / cfg.ocr_hz
            thumb = frame.rgb[::8, ::8].mean(axis=2)  # coarse luma: did the view change since the last reading?
            if (not readings or readings[-1][1] or t_s - readings[-1][0] >= cfg.ocr_refresh_s
                    or float(np.abs(thumb - last_thumb).mean()) >= cfg.ocr_change):
                readings.append((round(t_s, 3), {b.text for b in teachers.reader.read(frame.rgb)}))
                last_thumb = thumb
    if t_first is None:
        raise MediaError(f"{path}: no frame could be decoded")
    out = [t for t in tracks.values() if t.obs]
    _name_tracks(out, teachers.encoder, path, grid, cfg)
    return _Seen(duration_s=m.duration_s, shot_starts=shot_starts, tracks=sorted(out, key=lambda t: t.t0),
                 scene_nouns=scene_nouns, tilt_nouns=tilt_nouns, texts=_stable_texts(readings), flow_events=flow_events,
                 tilts=tilts)


def _stable_texts(readings: list[tuple[float, set[str]]]) -> list[tuple[float, str]]:
    """Texts read in two readings in a row, at their first sighting, with enough letters to be words."""
    out: list[tuple[float, str]] = []
    said: set[str] = set()
    for (t_s, now), (_, after) in zip(readings, readings[1:], strict=False):
        for text in sorted(now & after):
            words = text.split()
            if text not in said and 1 <= len(words) <= 4 and all(len(w) >= 2 for w in words) and len(text) >= 3:
                said.add(text)
                out.append((t_s, text))
    return out


def _name_tracks(tracks: list[_Track], encoder: ImageEncoder | None, path: Path, grid: video.ModelGrid,
                 cfg: LabelConfig) -> None:
    """Names confident tracks, makes riders of people on bicycles, and vans of van-shaped cars."""
    for track in tracks:
        scores: defaultdict[str, float] = defaultdict(float)
        for o in track.obs:
            scores[o.name] += o.score
        best = max(scores, key=scores.__getitem__)
        mean = float(np.mean([o.score for o in track.obs]))
        moving = len(track.obs) >= 2 * cfg.track_min_obs and abs(_travel(track)) >= 0.5 * cfg.cross_min_travel
        if len(track.obs) >= cfg.track_min_obs and mean >= (cfg.moving_name_min_score if moving
                                                           else cfg.name_min_score):
            track.noun = COCO_NOUNS[best]
    people = [t for t in tracks if t.noun == "person"]
    for bike in (t for t in tracks if t.noun in ("bicycle", "motorcycle")):
        boxes = {o.t_s: o for o in bike.obs}
        for person in people:
            common = [(o, boxes[o.t_s]) for o in person.obs if o.t_s in boxes]
            if len(common) < 2:
                continue
            riding = sum(_covers(p, b) >= cfg.rider_overlap for p, b in common)
            if riding >= cfg.rider_frames * len(common):
                person.noun = "cyclist" if bike.noun == "bicycle" else "motorcyclist"
                bike.absorbed = True
                break
        if not bike.absorbed and bike.noun == "bicycle" and abs(_travel(bike)) >= cfg.onset_travel * 3:
            bike.noun = "cyclist"  # a bicycle on the move has a rider the detector missed
    if encoder is not None:
        _vans(tracks, encoder, path, grid, cfg)


def _covers(a: _Obs, b: _Obs) -> float:
    """Part of box ``b``'s area that box ``a`` covers."""
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    return w * h / max((b.x2 - b.x1) * (b.y2 - b.y1), 1e-9)


def _vans(tracks: list[_Track], encoder: ImageEncoder, path: Path, grid: video.ModelGrid, cfg: LabelConfig) -> None:
    """A car or truck whose largest crop ImageNet calls a minivan, moving van or police van is a van."""
    wanted: dict[float, list[tuple[int, _Obs]]] = {}
    for i, t in enumerate(tracks):
        if t.noun in ("car", "truck") and not t.absorbed:
            o = max(t.obs, key=lambda o: (o.x2 - o.x1) * (o.y2 - o.y1))
            wanted.setdefault(o.t_s, []).append((i, o))
    if not wanted:
        return
    t_first = None
    for frame in video.iter_model_frames(path, grid=grid):  # a second pass, only when vehicles were named
        t_first = frame.pts_s if t_first is None else t_first
        for i, o in wanted.pop(round(frame.pts_s - t_first, 3), []):
            h, w = frame.rgb.shape[:2]
            crop = frame.rgb[int(o.y1 * h) : max(int(o.y2 * h), int(o.y1 * h) + 2),
                             int(o.x1 * w) : max(int(o.x2 * w), int(o.x1 * w) + 2)]
            noun, p = _imagenet_noun(encoder, np.ascontiguousarray(crop))
            if noun == "van" and p >= cfg.imagenet_min_prob:
                tracks[i].noun = "van"
        if not wanted:
            break


# ---------------------------------------------------------------------------------------
# Tracks -> events
# ---------------------------------------------------------------------------------------


@dataclass
class _Named:
    """A named event before grouping: what happened, to which noun, which way, and to which tracks."""

    t_s: float
    what: str  # enter, leave, cross, stop, pass
    noun: str
    way: str = ""  # side (enter/leave), direction (cross); for pass the other noun
    fast: bool = False
    tracks: list[_Track] = field(default_factory=list)
    count: int = 1


def _travel(track: _Track) -> float:
    """World travel from the first to the last detection (medians of two), part of the width."""
    xs = [o.wx for o in track.obs]
    return float(np.median(xs[-2:]) - np.median(xs[:2]))


def _fast(track: _Track, cfg: LabelConfig, aspect: float) -> bool:
    """Whether a person or an animal runs: world speed in box heights per second (``aspect`` = width/height)."""
    if track.noun not in ("person", *_ANIMALS) or track.t1 - track.t0 < 0.5:
        return False
    speed = abs(_travel(track)) / (track.t1 - track.t0) * aspect  # in frame heights per second
    height = float(np.median([o.y2 - o.y1 for o in track.obs]))
    return speed >= cfg.run_heights_s * max(height, 1e-3)


def _onset_s(track: _Track, cfg: LabelConfig) -> float:
    """When the track starts to move: just before the first detection this far from where it began."""
    x0 = track.obs[0].wx
    for prev, o in zip(track.obs, track.obs[1:], strict=False):
        if abs(o.wx - x0) >= cfg.onset_travel:
            return prev.t_s
    return track.t0


def _track_events(track: _Track, shot_start: float, shot_end: float, cfg: LabelConfig,
                  aspect: float) -> list[_Named]:
    """Enter, leave, cross and stop of one named track."""
    out: list[_Named] = []
    half_step = 0.5 / cfg.detect_hz
    first, last = track.obs[0], track.obs[-1]
    fast = _fast(track, cfg, aspect)
    head = [o for o in track.obs if o.t_s <= track.t0 + 2.0]
    entered = False
    if track.t0 >= shot_start + cfg.shot_settle_s:
        inward = head[-1].wx - head[0].wx
        if first.x1 <= cfg.border and inward >= cfg.enter_min_travel:
            out.append(_Named(max(shot_start, track.t0 - half_step), "enter", track.noun, "left", fast, [track]))
            entered = True
        elif first.x2 >= 1 - cfg.border and -inward >= cfg.enter_min_travel:
            out.append(_Named(max(shot_start, track.t0 - half_step), "enter", track.noun, "right", fast, [track]))
            entered = True
    travel = _travel(track)
    if not entered and abs(travel) >= cfg.cross_min_travel:
        out.append(_Named(_onset_s(track, cfg), "cross", track.noun, "right" if travel > 0 else "left", fast, [track]))
    tail = [o for o in track.obs if o.t_s >= track.t1 - 2.0]
    outward = tail[-1].wx - tail[0].wx
    side = ""
    if track.t1 <= shot_end - 0.5:  # a track that lasts to the end of its shot has not left
        if last.x1 <= cfg.border and -outward >= cfg.leave_min_travel:
            side = "left"
        elif last.x2 >= 1 - cfg.border and outward >= cfg.leave_min_travel:
            side = "right"
    if side:
        touching = [o for o in tail if (o.x1 <= cfg.border if side == "left" else o.x2 >= 1 - cfg.border)]
        out.append(_Named(max(touching[0].t_s - half_step, track.t1 - 2.0), "leave", track.noun, side, fast, [track]))
    stop = _stop_s(track, cfg)
    if stop is not None:
        out.append(_Named(stop, "stop", track.noun, "", False, [track]))
    return out


def _stop_s(track: _Track, cfg: LabelConfig) -> float | None:
    """Time a moving track comes to rest (still for ``stop_still_s`` after moving), or None."""
    for i, o in enumerate(track.obs):
        if o.t_s - track.t0 < 1.0 or track.t1 - o.t_s < cfg.stop_still_s:
            continue
        rest = [p.wx for p in track.obs[i:] if p.t_s <= o.t_s + cfg.stop_still_s]
        before = track.wx_at(o.t_s - 2.0)
        if max(abs(x - o.wx) for x in rest) <= cfg.onset_travel and abs(o.wx - before) >= cfg.stop_moving_travel:
            return o.t_s
    return None


def _passes(tracks: list[_Track], cfg: LabelConfig) -> list[_Named]:
    """A moving track overtaking a slower one of another noun, timed when their boxes first meet."""
    out = []
    for a in tracks:
        ta = _travel(a)
        if abs(ta) < cfg.pass_min_travel or a.t1 - a.t0 <= 0:
            continue
        va = ta / (a.t1 - a.t0)
        for b in tracks:
            if b is a or b.noun == a.noun or b.shot != a.shot:
                continue
            lo, hi = max(a.t0, b.t0), min(a.t1, b.t1)
            if hi - lo < 1.0:
                continue
            vb = (b.wx_at(hi) - b.wx_at(lo)) / (hi - lo)
            if abs(vb) > 0.5 * abs(va) or (vb * va < 0 and abs(vb) > 0.1 * abs(va)):
                continue
            common = [o for o in a.obs if lo <= o.t_s <= hi]
            rel = [o.wx - b.wx_at(o.t_s) for o in common]
            if len(rel) < 3 or np.sign(rel[0]) == np.sign(rel[-1]) or np.sign(rel[0]) != -np.sign(va):
                continue
            bobs = {o.t_s: o for o in b.obs}
            meet = next((o.t_s for o in common if o.t_s in bobs and _covers(o, bobs[o.t_s]) > 0
                         and min(o.y2, bobs[o.t_s].y2) > max(o.y1, bobs[o.t_s].y1)), None)
            if meet is not None:
                out.append(_Named(max(a.t0, meet - 0.5 / cfg.detect_hz), "pass", a.noun, b.noun, False, [a, b]))
    return out


def _grouped(events: list[_Named], cfg: LabelConfig) -> list[_Named]:
    """Same kind, way and noun within ``group_window_s`` of the first: one event of several things."""
    out: list[_Named] = []
    for e in sorted(events, key=lambda e: e.t_s):
        mate = next((g for g in out if e.what in ("enter", "leave", "cross") and g.what == e.what
                     and g.noun == e.noun and g.way == e.way and e.t_s - g.t_s <= cfg.group_window_s
                     and not set(map(id, g.tracks)) & set(map(id, e.tracks))), None)
        if mate is None:
            out.append(dataclasses.replace(e, tracks=list(e.tracks)))
        else:
            mate.count += 1
            mate.tracks += e.tracks
            mate.fast = mate.fast and e.fast
    return out


def _named_options(e: _Named) -> tuple[str, tuple[str, ...]]:
    """Event kind (procedural vocabulary, or "") and the lines that can say a named event."""
    n = e.count
    some = _count(e.noun, n)
    the = f"the {e.noun}" if n == 1 else f"the {_count(e.noun, n)}" if n in _NUMBERS else _count(e.noun, n)
    verb = _verb(e.noun, n, fast=e.fast)
    if e.what == "enter":
        return "enter", (f"{some} {verb} in from the {e.way}", f"{some} {_agree('enters', n)} from the {e.way}",
                         f"{some} {_agree('comes', n)} in from the {e.way}")
    if e.what == "leave":
        return "leave", (f"{the} {_agree('leaves', n) if n == 1 else 'leave'} to the {e.way}",
                         f"{the} {verb} out to the {e.way}", f"{the} {verb} off to the {e.way}")
    if e.what == "cross":
        return "move", (f"{some} {verb} to the {e.way}", f"{some} {'crosses' if n == 1 else 'cross'} to the {e.way}",
                        f"{some} {verb} across to the {e.way}")
    if e.what == "pass":
        return "move", (f"{some} {verb} past {_a(e.way)}", f"{some} {'goes' if n == 1 else 'go'} past {_a(e.way)}")
    return "", (f"{the} {'stops' if n == 1 else 'stop'}", f"{the} {'comes' if n == 1 else 'come'} to a stop")


def _in_view(tracks: list[_Track], start: float, noun: tuple[str, float] | None, cfg: LabelConfig, *,
             max_nouns: int = 2) -> str:
    """What is in view at a shot start: ``"two people and a car"``, ``"a street with ..."``, ``"a lion"`` or ``""``.

    The ``max_nouns`` most prominent nouns (count x box area) are listed.
    """
    window = [t for t in tracks if t.noun and not t.absorbed and t.t0 <= start + cfg.view_window_s]
    per_time: dict[str, Counter[float]] = defaultdict(Counter)
    area: defaultdict[str, float] = defaultdict(float)
    for t in window:
        for o in t.obs:
            if o.t_s <= start + cfg.view_window_s:
                per_time[t.noun][o.t_s] += 1
                area[t.noun] += (o.x2 - o.x1) * (o.y2 - o.y1)
    counts = {n: max(c.values()) for n, c in per_time.items()}
    things = sorted((n for n in counts if n not in _STREET_MARKS), key=lambda n: (-counts[n] * area[n], n))
    things = things[:max_nouns]
    place = noun[0] if noun and noun[1] >= cfg.imagenet_min_prob else ""
    if not things:
        return _a(place) if place else ""
    listing = _listing([(n, counts[n]) for n in things])
    vehicles = sum(counts[n] for n in counts if n in _VEHICLES)
    if vehicles >= 2 or (vehicles and set(counts) & _STREET_MARKS):
        return f"a street with {listing}"
    return f"{_a(place)} with {listing}" if place in _PLACES else listing


# ---------------------------------------------------------------------------------------
# Lines
# ---------------------------------------------------------------------------------------

_PRIORITY_VIEW, _PRIORITY_NAMED, _PRIORITY_MINOR, _PRIORITY_FLOW = 0, 1, 2, 3


def _candidates(seen: _Seen, cfg: LabelConfig, aspect: float) -> list[LineCandidate]:
    """Every line the teachers' observations can support, with its time and priority."""
    named_tracks = [t for t in seen.tracks if t.noun and not t.absorbed]
    shots = [*seen.shot_starts, seen.duration_s]
    cands: list[LineCandidate] = []
    in_view: set[int] = set()  # ids of tracks told at a shot start
    named: list[_Named] = []
    for s, (start, end) in enumerate(zip(shots, shots[1:], strict=False)):
        tracks = [t for t in named_tracks if t.shot == s]
        per_track = [e for t in tracks for e in _track_events(t, start, end, cfg, aspect)]
        shot_named = _grouped(per_track, cfg) + _passes(tracks, cfg)
        named += shot_named
        # What is in view is said briefly (one noun) when something happens soon after.
        busy = any(e.what != "stop" and e.t_s < start + 3.0 for e in shot_named)
        listing = _in_view(tracks, start, seen.scene_nouns.get(s), cfg, max_nouns=1 if busy else 2)
        in_view.update(id(t) for t in tracks if t.t0 <= start + cfg.view_window_s)
        if s == 0 and listing:
            verb = "are" if listing.split()[0] in ("two", "three", "several") else "is"
            options: tuple[str, ...] = ((listing,) if listing.startswith("a street")
                                        else (f"we see {listing}", f"there {verb} {listing}"))
            cands.append(LineCandidate(start, "", options, _PRIORITY_VIEW))
        elif s > 0:
            options = (f"cut to {listing}",) if listing else lines_for("cut")[1]
            cands.append(LineCandidate(start, "cut", options, _PRIORITY_VIEW))
    # A pan that keeps a named thing in view while it travels the same way follows it; its
    # crossing is then told by the pan line.
    follows = {e.t_s: _followed(e, named_tracks) for e in seen.flow_events if e.kind in ("pan_left", "pan_right")}
    followed = {id(t): t_s for t_s, t in follows.items() if t is not None}
    named = [e for e in named if not (e.what == "cross" and any(abs(followed.get(id(t), math.inf) - e.t_s) <= 3.0
                                                                for t in e.tracks))]
    # A named enter/leave the flow labeller saw earlier on the same side takes the flow's (earlier) time.
    flow_sides = [(e.t_s, e.kind) for e in seen.flow_events if e.kind.startswith(("enter:", "leave:"))]
    for e in named:
        if e.what in ("enter", "leave"):
            earlier = [t for t, k in flow_sides if k == f"{e.what}:{e.way}" and e.t_s - 1.5 <= t <= e.t_s]
            e.t_s = min([e.t_s, *earlier])
        kind, options = _named_options(e)
        minor = e.what == "stop"
        cands.append(LineCandidate(e.t_s, kind, options, _PRIORITY_MINOR if minor else _PRIORITY_NAMED))
    moved: dict[int, float] = {}  # track id -> time of its last named move
    for ev in seen.flow_events:
        kind, _, detail = ev.kind.partition(":")
        if kind == "cut":
            continue  # said with what is in view after it
        if kind in ("pan_left", "pan_right"):
            track, way = follows[ev.t_s], kind[4:]
            options = lines_for(ev.kind)[1] if track is None else (
                f"the camera pans {way} with the {track.noun}", f"the camera follows the {track.noun} to the {way}")
            cands.append(LineCandidate(ev.t_s, kind, options, _PRIORITY_VIEW))
            continue
        if kind in ("enter", "leave") and _explained(ev, kind, detail, named_tracks, named, cfg):
            continue
        here = _tracks_at(ev, named_tracks) if kind == "move" else []
        if here and any(abs(n.t_s - ev.t_s) <= cfg.explain_s and {id(t) for t in n.tracks} & {id(t) for t in here}
                        for n in named):
            continue  # a named line tells this motion already
        if here:  # the flow saw a named thing move: say its name
            _, place, way, _ = ev.kind.split(":")
            track = max(here, key=lambda t: len(t.obs))
            if ev.t_s - moved.get(id(track), -math.inf) < cfg.named_move_repeat_s:
                continue
            moved[id(track)] = ev.t_s
            subject = f"the {track.noun}" if id(track) in in_view else _a(track.noun)
            told = MOVE_WAYS[way] if way != "-" else MOVE_PLACES[place]
            cands.append(LineCandidate(ev.t_s, "move", (f"{subject} moves {told}",), _PRIORITY_MINOR))
            continue
        cands.append(LineCandidate(ev.t_s, *lines_for(ev.kind), _PRIORITY_FLOW))
    for ev in seen.tilts:
        way = "up" if ev.kind == "tilt_up" else "down"
        noun = seen.tilt_nouns.get(ev.t_s, "")
        options = (f"the camera tilts {way} {_a(noun)}",) if noun in _TALL else (
            f"the camera tilts {way}", f"the view tilts {way}")
        cands.append(LineCandidate(ev.t_s, "", options, _PRIORITY_VIEW))
    for t_s, text in seen.texts[: cfg.ocr_max_lines]:
        cands.append(LineCandidate(t_s, "", (f"the sign says {text}", f"it says {text}"), _PRIORITY_MINOR))
    return sorted(cands, key=lambda c: (c.t_s, c.priority))


def _followed(pan: Event, tracks: list[_Track]) -> _Track | None:
    """The named track a pan follows: over its first 2 s the track travels at least 0.1 of the width
    the way the camera turns while it moves at most half as far on screen (the longest such track)."""
    sign = 1.0 if pan.kind == "pan_right" else -1.0
    best = None
    for t in tracks:
        during = [o for o in t.obs if pan.t_s <= o.t_s <= pan.t_s + 2.0]
        if len(during) < 3:
            continue
        world, screen = during[-1].wx - during[0].wx, during[-1].cx - during[0].cx
        if sign * world >= 0.1 and abs(screen) <= 0.5 * abs(world) and (best is None or len(t.obs) > len(best.obs)):
            best = t
    return best


def _explained(e: Event, kind: str, side: str, tracks: list[_Track], named: list[_Named], cfg: LabelConfig) -> bool:
    """Whether a flow enter/leave on ``side`` is a named event, a named track starting/ending there,
    or part of a named thing that reaches that border meanwhile (a talking head's shoulder)."""
    if any(n.what == kind and n.way == side and abs(n.t_s - e.t_s) <= cfg.explain_s for n in named):
        return True

    def at_side(o: _Obs) -> bool:
        return o.x1 <= 0.1 if side == "left" else o.x2 >= 0.9

    for t in tracks:
        if kind == "enter":  # the detector names a thing once most of it is in view: up to a second later
            o, lag = t.obs[0], t.t0 - e.t_s
            fits = -0.5 <= lag <= cfg.explain_s + 1.0
        else:  # the flow times a leave at the start of the outward motion, up to 2 s before the exit
            o, lag = t.obs[-1], t.t1 - e.t_s
            fits = -0.5 <= lag <= cfg.explain_s + cfg.flow.leave_lookback_s
        if (fits and at_side(o)) or any(abs(p.t_s - e.t_s) <= 0.5 and at_side(p) for p in t.obs):
            return True
    return False


def _tracks_at(e: Event, tracks: list[_Track]) -> list[_Track]:
    """Named tracks seen within 0.5 s of a flow move whose box covers (or whose centre is in) its third."""
    place = e.kind.split(":")[1]
    centre = {"left": 1 / 6, "middle": 0.5, "right": 5 / 6}[place]
    here = []
    for t in tracks:
        near = [o for o in t.obs if abs(o.t_s - e.t_s) <= 0.5]
        if any(o.x1 <= centre <= o.x2 or abs(o.cx - centre) < 1 / 6 for o in near):
            here.append(t)
    return here


def describe_video(path: Path, *, config: LabelConfig = LabelConfig(), teachers: Teachers,
                   seed: int = 0, known: list[KnownMotion] | None = None,
                   ) -> tuple[list[Event], list[Line], dict[str, Any]]:
    """Labels one video with the teachers: events, lines and what was seen.

    Args:
        path: A video file.
        config: Rates and thresholds.
        teachers: Loaded teacher models.
        seed: Seed of the template and reaction-delay choices.
        known: Object motions known for certain (:func:`known_motions`); what the
            teachers said of them is replaced by lines that say them.

    Returns:
        ``(events, lines, info)``: lines sorted by start; events (kinds in
        :data:`models.data.procedural.EVENT_KINDS`) for the lines that say their kind;
        ``info`` holds ``duration_s`` and the named tracks (noun, first and last time).

    Raises:
        MediaError: If the file cannot be decoded.
    """
    path = Path(path)
    m = measure_video(path, config=config.flow)
    if m.n_steps == 0:
        raise MediaError(f"{path}: no frame could be decoded")
    seen = _observe(path, m, teachers, config)
    width, height = _frame_size(path, config.max_width)
    cands = _with_known(_candidates(seen, config, width / height), known or [], config)
    pairs = schedule_lines(cands, duration_s=seen.duration_s, seed=seed,
                           config=config.flow, min_spacing_s=config.min_line_spacing_s)
    events = [e for e, line in pairs if e.kind in EVENT_KINDS and matches_event(line.text, e.kind)]
    lines = [line for _, line in pairs]
    info = {"duration_s": round(seen.duration_s, 3),
            "tracks": [{"noun": t.noun, "first_s": t.t0, "last_s": t.t1, "detections": len(t.obs)}
                       for t in seen.tracks if t.noun and not t.absorbed]}
    return events, lines, info


@dataclass(frozen=True)
class KnownMotion:
    """An object motion the clip's generator made, so known for certain (composites of
    :mod:`models.data.realclips`): it stands in for what the teachers saw of it.

    Attributes:
        t_s: When the motion starts, seconds on the clip's clock.
        end_s: When it ends (the object has stopped inside, or is out of view), seconds.
        what: ``"enter"`` or ``"leave"``.
        way: The side it enters from or leaves to: ``"left"`` or ``"right"``.
        noun: What moves (``"person"``, ``"cat"``, ...).
    """

    t_s: float
    end_s: float
    what: str
    way: str
    noun: str


def known_motions(path: Path) -> list[KnownMotion]:
    """The object motions a clip's ``.gen.json`` sidecar records (none without one, or for
    clips other than composites).

    Args:
        path: The video file; its sidecar is ``path.with_suffix(".gen.json")``.

    Returns:
        The motions, by start time.

    Raises:
        ValueError: If the sidecar is not valid JSON or an event lacks a field.
    """
    sidecar = Path(path).with_suffix(".gen.json")
    if not sidecar.is_file():
        return []
    try:
        data = json.loads(sidecar.read_text())
        if data.get("kind") != "composite":
            return []
        out = []
        for e in data["events"]:
            what, _, way = e["kind"].partition(":")
            if what in ("enter", "leave") and way in ("left", "right"):
                out.append(KnownMotion(float(e["t_s"]), float(e["end_s"]), what, way, str(e["object"])))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{sidecar}: not a generator sidecar ({exc})") from exc
    return sorted(out, key=lambda k: k.t_s)


def _with_known(cands: list[LineCandidate], known: list[KnownMotion], cfg: LabelConfig) -> list[LineCandidate]:
    """Replaces what the teachers said of known motions (enters, leaves, moves and stops
    while the object travels, and up to ``explain_s`` after) by lines that say them."""
    if not known:
        return cands
    windows = [(k.t_s - 0.5, k.end_s + cfg.explain_s) for k in known]
    mover = ("enter", "leave", "move")
    kept = [c for c in cands
            if not ((c.kind in mover or c.priority == _PRIORITY_MINOR) and any(a <= c.t_s <= b for a, b in windows))]
    for k in known:
        kind, options = _named_options(_Named(t_s=k.t_s, what=k.what, noun=k.noun, way=k.way))
        kept.append(LineCandidate(k.t_s, kind, options, _PRIORITY_NAMED))
    return sorted(kept, key=lambda c: (c.t_s, c.priority))


def _seed_of(path: Path) -> int:
    """A seed from the file name, so that each video draws its own templates (and again the same ones)."""
    return zlib.crc32(path.name.encode())


def label_video(path: Path, *, config: LabelConfig = LabelConfig(), teachers: Teachers | None = None,
                seed: int | None = None) -> Path:
    """Labels a video with the teachers and writes its transcript next to it (``path.with_suffix(".json")``).

    The JSON holds ``{"source": "label", "teachers": {...}, "config": {...}, "seed",
    "known_motions": [...], "duration_s", "tracks": [...], "events": [{"t_s", "kind"}], "lines": [{"start_s",
    "end_s", "text"}]}``, written to a temporary name and renamed into place.

    Args:
        path: The video file.
        config: Rates and thresholds.
        teachers: Loaded teachers (None: :func:`load_teachers` for this call).
        seed: Seed of the template choices (None: from the file name).

    Returns:
        The transcript path.

    Raises:
        ValueError: If ``path`` ends in ``.json``.
        MediaError: If the video cannot be decoded.
        ModelError: If ``teachers`` is None and the detector cannot be loaded.
        OSError: If the file cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise ValueError(f"video path must not end in .json, got {path}")
    teachers = teachers or load_teachers()
    seed = _seed_of(path) if seed is None else seed
    known = known_motions(path)
    events, lines, info = describe_video(path, config=config, teachers=teachers, seed=seed, known=known)
    data: dict[str, Any] = {
        "source": "label",
        "teachers": teachers.names,
        "config": dataclasses.asdict(config),
        "seed": seed,
        "known_motions": [dataclasses.asdict(k) for k in known],
        **info,
        "events": [dataclasses.asdict(e) for e in events],
        "lines": [dataclasses.asdict(line) for line in lines],
    }
    json_path = write_transcript(path, data)
    log.info("%s: %d lines over %.1f s", path.name, len(lines), info["duration_s"])
    return json_path


def label_dir(
    folder: Path,
    *,
    asr: bool = False,
    ocr: bool = True,
    force: bool = False,
    config: LabelConfig = LabelConfig(),
    progress: Callable[[int, int, Path, MMDError | None], None] | None = None,
) -> list[Path]:
    """Writes a transcript next to every video in a folder that has none (every one with ``force``).

    The teachers (or, with ``asr``, the speech recogniser of :mod:`models.data.asr`) are
    loaded once. A video that cannot be decoded (or, with ``asr``, has no audio) is
    skipped with a warning; the others are still labelled.

    Args:
        folder: The folder (see :func:`videos_in`).
        asr: Transcribe the videos' commentary audio (:func:`models.data.asr.label_asr`)
            instead of labelling them with the vision teachers.
        ocr: Read on-screen text (vision teachers only).
        force: Label videos that already have a transcript too.
        config: Rates and thresholds of the vision teachers.
        progress: Called after each video labelled or skipped as undecodable with
            ``(done, total, video, error)``; ``total`` counts the videos to label,
            ``error`` is the error that made it skip the video, else None.

    Returns:
        The transcripts written, in video order.

    Raises:
        NotADirectoryError: If ``folder`` is not a folder.
        ModelError: If the detector (or the speech model) cannot be loaded.
        OSError: If a transcript cannot be written.
    """
    todo = [v for v in videos_in(folder) if force or not v.with_suffix(".json").is_file()]
    if not todo:
        return []
    if asr:
        from models.data.asr import SpeechRecognizer, label_asr

        recognizer = SpeechRecognizer()

        def label(path: Path) -> Path:
            return label_asr(path, model=recognizer)
    else:
        teachers = load_teachers(ocr=ocr)

        def label(path: Path) -> Path:
            return label_video(path, config=config, teachers=teachers)
    return label_each(todo, label, progress)

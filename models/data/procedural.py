"""Procedural training clips: rendered video with scripted events and timed commentary.

Two clip kinds are rendered with NumPy only:

* ``match``: a top-down 2-D football match. Red (keeper yellow) defends the left goal
  and attacks right; blue (keeper cyan) defends the right goal and attacks left.
  Events: ``pass``, ``shot``, ``save``, ``goal`` (the frame then flashes the scoring
  team's colour and play resets to a kick-off).
* ``scene``: generic textured scenes. Events: ``pan_left``, ``pan_right``, ``cut``,
  ``enter``, ``leave``; static stretches in between.

One more event kind, ``move`` (something moves inside the frame), is never rendered
here: it is measured on real footage by :mod:`models.data.autolabel`, and is registered
below so that its transcripts read and its lines score like the others.

Every event gets one commentary line that starts 0.2-0.6 s after the event (at least
``LINE_GAP_S`` after the previous line's start) and lasts ``SECONDS_PER_WORD`` per word.
Lines are timed to their event, not queued behind the previous spoken line: a save or
goal line may start while the shot line is still being spoken (the TTS stage queues
speech; the text should be as timely as the reaction). The next scripted action waits
until the commentator is quiet, so only shot -> save/goal lines overlap. A clip on disk
is an H.264 MP4 plus a JSON transcript next to it, the same format a real commentary corpus is converted to.

Timing convention: frame ``i`` shows media time ``i / fps``. An event's ``t_s`` is the
time of the first frame that shows it (first frame of motion for pass/shot/pan/enter/
leave, ball contact for save, ball on the goal line for goal, first new frame for cut).

Everything is driven by one ``numpy.random.Generator`` seeded from ``ClipSpec.seed``:
the same spec gives the same frames, events and lines.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from streams.errors import MediaError, MMDError

__all__ = [
    "CLIP_KINDS",
    "EVENT_KEYWORDS",
    "EVENT_KINDS",
    "MOVE_PLACES",
    "MOVE_WAYS",
    "PAN_DIRECTION_WORDS",
    "SECONDS_PER_WORD",
    "TEMPLATES",
    "VOCABULARY",
    "ClipSpec",
    "Event",
    "Line",
    "TranscriptError",
    "make_dataset",
    "matches_event",
    "read_transcript",
    "render_clip",
    "write_clip",
]

logger = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]

# ---------------------------------------------------------------------------------------
# Event vocabulary and commentary templates
# ---------------------------------------------------------------------------------------

CLIP_KINDS: tuple[str, ...] = ("match", "scene")
MATCH_EVENT_KINDS: tuple[str, ...] = ("pass", "shot", "save", "goal")
SCENE_EVENT_KINDS: tuple[str, ...] = ("pan_left", "pan_right", "cut", "enter", "leave")
REAL_EVENT_KINDS: tuple[str, ...] = ("move",)  # labelled on real footage only, never rendered
EVENT_KINDS: tuple[str, ...] = MATCH_EVENT_KINDS + SCENE_EVENT_KINDS + REAL_EVENT_KINDS

# Words that identify an event kind; every line of a kind contains at least one of its
# keywords and no keyword of another kind (pan_left and pan_right share "pans").
EVENT_KEYWORDS: dict[str, frozenset[str]] = {
    "pass": frozenset({"pass", "passes"}),
    "shot": frozenset({"shot", "shoots"}),
    "save": frozenset({"save", "saves"}),
    "goal": frozenset({"goal"}),
    "pan_left": frozenset({"pans"}),
    "pan_right": frozenset({"pans"}),
    "cut": frozenset({"cut"}),
    "enter": frozenset({"enters"}),
    "leave": frozenset({"leaves"}),
    "move": frozenset({"moves"}),
}
# Pan lines must also contain their direction word.
PAN_DIRECTION_WORDS: dict[str, str] = {"pan_left": "left", "pan_right": "right"}

SECONDS_PER_WORD = 0.4  # spoken duration of one commentary word
REACTION_DELAY_S = (0.2, 0.6)  # line start after its event, like a human commentator
LINE_GAP_S = 0.1  # minimum silence between two lines

# Slots: {team} red|blue (for save: the keeper's team), {colour} {shape} of a scene
# object, {side} left|right (enter: side it comes from; leave: side it exits to);
# move only: {place} where it moves (third of the frame), {way} where it goes, both
# phrases of several words (MOVE_PLACES, MOVE_WAYS).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "pass": ("{team} passes it on", "a pass from {team}", "{team} passes", "nice pass by {team}"),
    # Shot lines are short: the save or goal line usually has to wait for them.
    "shot": ("{team} shoots", "big shot", "nice shot"),
    "save": ("the {team} keeper saves", "what a save", "great save by {team}", "{team} saves it"),
    "goal": ("goal for {team}", "{team} scores a goal", "what a goal by {team}", "a goal for {team}"),
    "pan_left": ("the camera pans left", "the view pans to the left", "it pans left"),
    "pan_right": ("the camera pans right", "the view pans to the right", "it pans right"),
    "cut": ("cut to a new scene", "a hard cut", "cut to something new"),
    "enter": (
        "a {colour} {shape} enters from the {side}",
        "something enters from the {side}",
        "a new object enters from the {side}",
    ),
    "leave": (
        "the {colour} {shape} leaves",
        "the {colour} {shape} leaves to the {side}",
        "something leaves to the {side}",
    ),
    "move": (
        "something moves {place}",
        "something big moves {place}",
        "something moves {way}",
        "it moves {way}",
    ),
}
#: Phrases of the move slots: third of the frame -> {place}, direction -> {way}.
MOVE_PLACES: dict[str, str] = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
MOVE_WAYS: dict[str, str] = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}

_TEAM_NAMES = ("red", "blue")
_SIDES = ("left", "right")
_OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (30, 200, 60),
    "blue": (35, 70, 235),
    "yellow": (250, 225, 30),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
_OBJECT_SHAPES = ("circle", "square")
_SLOT_VALUES: dict[str, tuple[str, ...]] = {
    "team": _TEAM_NAMES,
    "colour": tuple(_OBJECT_COLOURS),
    "shape": _OBJECT_SHAPES,
    "side": _SIDES,
    "place": tuple(MOVE_PLACES.values()),
    "way": tuple(MOVE_WAYS.values()),
}


def _vocabulary() -> frozenset[str]:
    words: set[str] = set()
    for templates in TEMPLATES.values():
        for template in templates:
            for word in template.split():
                if word.startswith("{"):
                    words.update(w for value in _SLOT_VALUES[word.strip("{}")] for w in value.split())
                else:
                    words.add(word)
    return frozenset(words)


VOCABULARY: frozenset[str] = _vocabulary()  # every word any line can contain


def _max_line_s(kind: str) -> float:
    """Longest spoken duration of a line of ``kind`` in seconds (a slot: its longest value)."""

    def words(token: str) -> int:
        if token.startswith("{"):
            return max(len(v.split()) for v in _SLOT_VALUES[token.strip("{}")])
        return 1

    return max(sum(words(w) for w in t.split()) for t in TEMPLATES[kind]) * SECONDS_PER_WORD


def matches_event(text: str, kind: str) -> bool:
    """Tells whether a commentary line names an event kind.

    Args:
        text: Lowercase line, words separated by spaces.
        kind: One of ``EVENT_KINDS``.

    Returns:
        True if ``text`` contains a keyword of ``kind`` (and, for pans, its direction).

    Raises:
        KeyError: If ``kind`` is not an event kind.
    """
    words = set(text.split())
    if not words & EVENT_KEYWORDS[kind]:
        return False
    direction = PAN_DIRECTION_WORDS.get(kind)
    return direction is None or direction in words


# ---------------------------------------------------------------------------------------
# Public types
# ---------------------------------------------------------------------------------------


class TranscriptError(MMDError, ValueError):
    """A transcript file exists but is not a valid clip transcript."""

    code = "transcript"


@dataclass(frozen=True, slots=True)
class Event:
    """A scripted event in a clip.

    Attributes:
        t_s: Media time of the first frame showing the event, seconds from clip start.
        kind: One of ``EVENT_KINDS``.
    """

    t_s: float
    kind: str


@dataclass(frozen=True, slots=True)
class Line:
    """One timed commentary line.

    Attributes:
        start_s: Media time the line starts being spoken, seconds from clip start.
        end_s: Media time the line ends, seconds; ``end_s >= start_s``.
        text: Lowercase words separated by single spaces, no punctuation.
    """

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """What to render; the same spec always renders the same clip.

    Attributes:
        kind: ``"match"`` or ``"scene"``.
        seed: Seed of the clip's random generator.
        duration_s: Clip length in seconds.
        fps: Frame rate in frames per second.
        width: Frame width in pixels (even, for yuv420p).
        height: Frame height in pixels (even, for yuv420p).
    """

    kind: str
    seed: int
    duration_s: float = 20.0
    fps: int = 25
    width: int = 320
    height: int = 240

    def __post_init__(self) -> None:
        if self.kind not in CLIP_KINDS:
            raise ValueError(f"ClipSpec.kind must be one of {CLIP_KINDS}, got {self.kind!r}")
        if not 0.0 < self.duration_s <= 3600.0:
            raise ValueError(f"ClipSpec.duration_s must be in (0, 3600], got {self.duration_s}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"ClipSpec.fps must be in [1, 120], got {self.fps}")
        for name, value, low in (("width", self.width, 64), ("height", self.height, 48)):
            if value < low or value > 4096 or value % 2:
                raise ValueError(f"ClipSpec.{name} must be even and in [{low}, 4096], got {value}")
        if self.n_frames < 1:
            raise ValueError(f"ClipSpec gives no frames: {self.duration_s} s at {self.fps} fps")

    @property
    def n_frames(self) -> int:
        """Number of frames of the clip."""
        return int(round(self.duration_s * self.fps))


# ---------------------------------------------------------------------------------------
# Drawing helpers (in place on uint8 [H, W, 3] RGB images; pixel centres at integers)
# ---------------------------------------------------------------------------------------


def _blend(region: Frame, alpha: np.ndarray, rgb: tuple[int, int, int]) -> None:
    """region <- (1 - alpha) * region + alpha * rgb, alpha float32 [h, w] in [0, 1]."""
    a = alpha[..., None]
    out = region * (1.0 - a) + a * np.asarray(rgb, np.float32)
    region[...] = (out + 0.5).astype(np.uint8)


def _bbox(img: Frame, cx: float, cy: float, r: float) -> tuple[int, int, int, int] | None:
    h, w = img.shape[:2]
    x0, x1 = max(int(math.floor(cx - r - 1)), 0), min(int(math.ceil(cx + r + 1)) + 1, w)
    y0, y1 = max(int(math.floor(cy - r - 1)), 0), min(int(math.ceil(cy + r + 1)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _disc(
    img: Frame,
    cx: float,
    cy: float,
    r: float,
    rgb: tuple[int, int, int],
    outline: tuple[int, int, int] | None = None,
    outline_px: float = 1.0,
) -> None:
    """Anti-aliased filled circle of radius ``r`` px, with an optional outline ring."""
    box = _bbox(img, cx, cy, r + outline_px)
    if box is None:
        return
    x0, y0, x1, y1 = box
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2, dtype=np.float32)
    region = img[y0:y1, x0:x1]
    if outline is not None:
        _blend(region, np.clip(r + outline_px + 0.5 - d, 0.0, 1.0), outline)
    _blend(region, np.clip(r + 0.5 - d, 0.0, 1.0), rgb)


def _square(
    img: Frame,
    cx: float,
    cy: float,
    r: float,
    rgb: tuple[int, int, int],
    outline: tuple[int, int, int] | None = None,
    outline_px: float = 1.0,
) -> None:
    """Anti-aliased axis-aligned filled square of half side ``r`` px."""
    box = _bbox(img, cx, cy, r + outline_px)
    if box is None:
        return
    x0, y0, x1, y1 = box
    yy, xx = np.ogrid[y0:y1, x0:x1]
    dx = np.abs(xx - cx).astype(np.float32)
    dy = np.abs(yy - cy).astype(np.float32)
    region = img[y0:y1, x0:x1]
    if outline is not None:
        e = r + outline_px + 0.5
        _blend(region, np.clip(e - dx, 0.0, 1.0) * np.clip(e - dy, 0.0, 1.0), outline)
    _blend(region, np.clip(r + 0.5 - dx, 0.0, 1.0) * np.clip(r + 0.5 - dy, 0.0, 1.0), rgb)


def _ring(img: Frame, cx: float, cy: float, r: float, width: float, rgb: tuple[int, int, int]) -> None:
    """Anti-aliased circle line of radius ``r`` px and line width ``width`` px."""
    box = _bbox(img, cx, cy, r + width)
    if box is None:
        return
    x0, y0, x1, y1 = box
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2, dtype=np.float32)
    _blend(img[y0:y1, x0:x1], np.clip(width / 2 + 0.5 - np.abs(d - r), 0.0, 1.0), rgb)


def _rect(img: Frame, x0: float, y0: float, x1: float, y1: float, rgb: tuple[int, int, int]) -> None:
    """Filled rectangle over pixels [x0, x1) x [y0, y1), coordinates rounded, clipped."""
    h, w = img.shape[:2]
    xa, xb = max(int(round(x0)), 0), min(int(round(x1)), w)
    ya, yb = max(int(round(y0)), 0), min(int(round(y1)), h)
    if xa < xb and ya < yb:
        img[ya:yb, xa:xb] = rgb


def _rect_outline(img: Frame, x0: float, y0: float, x1: float, y1: float, rgb: tuple[int, int, int], px: int) -> None:
    _rect(img, x0, y0, x1, y0 + px, rgb)
    _rect(img, x0, y1 - px, x1, y1, rgb)
    _rect(img, x0, y0, x0 + px, y1, rgb)
    _rect(img, x1 - px, y0, x1, y1, rgb)


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of float32 [gh, gw, C] to float32 [h, w, C]."""
    gh, gw = grid.shape[:2]
    ys = np.linspace(0.0, gh - 1.0, h, dtype=np.float32)
    xs = np.linspace(0.0, gw - 1.0, w, dtype=np.float32)
    y0 = np.minimum(ys.astype(np.int64), gh - 2) if gh > 1 else np.zeros(h, np.int64)
    x0 = np.minimum(xs.astype(np.int64), gw - 2) if gw > 1 else np.zeros(w, np.int64)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    y1 = np.minimum(y0 + 1, gh - 1)
    x1 = np.minimum(x0 + 1, gw - 1)
    rows = grid[y0] * (1.0 - fy) + grid[y1] * fy  # [h, gw, C]
    return rows[:, x0] * (1.0 - fx) + rows[:, x1] * fx


# ---------------------------------------------------------------------------------------
# Commentary
# ---------------------------------------------------------------------------------------


class _Commentator:
    """Turns events into timed lines (each 0.2-0.6 s after its event, in order)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self.events: list[Event] = []
        self.lines: list[Line] = []
        self.busy_until_s = 0.0

    def say(self, kind: str, t_s: float, **slots: str) -> None:
        templates = TEMPLATES[kind]
        text = templates[int(self._rng.integers(len(templates)))].format(**slots)
        prev_start = self.lines[-1].start_s if self.lines else -LINE_GAP_S
        start = max(t_s + float(self._rng.uniform(*REACTION_DELAY_S)), prev_start + LINE_GAP_S)
        end = start + len(text.split()) * SECONDS_PER_WORD
        self.events.append(Event(t_s=round(t_s, 6), kind=kind))
        self.lines.append(Line(start_s=round(start, 3), end_s=round(end, 3), text=text))
        self.busy_until_s = max(self.busy_until_s, end)


def _ramp(n: int) -> np.ndarray:
    """float32 [n]: (k + 1) / n for k in 0..n-1 (reaches 1 at the last frame)."""
    return (np.arange(1, n + 1, dtype=np.float32) / n) if n > 0 else np.zeros(0, np.float32)


# ---------------------------------------------------------------------------------------
# Match
# ---------------------------------------------------------------------------------------

_TEAM_RGB = ((220, 40, 40), (40, 80, 235))
_KEEPER_RGB = ((245, 215, 35), (35, 225, 235))
_BALL_RGB = (255, 255, 255)
_LINE_RGB = (235, 240, 235)
_OUTLINE_RGB = (20, 20, 20)
_PITCH_RGB = ((40, 135, 55), (48, 150, 62))  # mowing stripes
_NET_RGB = (120, 130, 120)
_PER_TEAM = 5  # keeper + 4 outfield players
# (u, v) per player, u from the team's own goal line along the pitch, v across; keeper first.
_FORMATION_UV = ((0.03, 0.5), (0.2, 0.28), (0.2, 0.72), (0.36, 0.42), (0.44, 0.62))
_KICKER = 4  # takes kick-offs
_ATTACK_SHIFT = 0.16  # formation shift toward the opponent goal while in possession, x L
_DEFEND_SHIFT = 0.10  # shift of the defending team toward its own goal, x L
_SHIFT_TAU_S = 1.2  # time constant of the formation shift
_SAVE_PROBABILITY = 0.55
_PASS_DURATION_S = (0.5, 1.0)
_SHOT_DURATION_S = (0.3, 0.6)
_FLASH_DELAY_S = 0.2  # goal frame -> flash start
_FLASH_S = 0.5
_FLASH_ALPHA = 0.7
_GAP_S = (1.0, 3.0)  # quiet stretch between events


@dataclass(frozen=True, slots=True)
class _Pitch:
    """Pitch geometry in pixels for a frame size."""

    width: int
    height: int

    @property
    def x0(self) -> float:
        return 0.07 * self.width

    @property
    def x1(self) -> float:
        return self.width - 1 - 0.07 * self.width

    @property
    def y0(self) -> float:
        return 0.08 * self.height

    @property
    def y1(self) -> float:
        return self.height - 1 - 0.08 * self.height

    @property
    def length(self) -> float:
        return self.x1 - self.x0

    @property
    def breadth(self) -> float:
        return self.y1 - self.y0

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    @property
    def goal_half_width(self) -> float:
        return 0.13 * self.breadth

    @property
    def goal_depth(self) -> float:
        return 0.75 * self.x0

    @property
    def player_r(self) -> float:
        return max(3.0, 0.028 * self.height)

    @property
    def ball_r(self) -> float:
        return max(1.5, 0.013 * self.height)

    @property
    def scale(self) -> float:
        """Speeds are given for a 320 px wide frame and scale with the width."""
        return self.width / 320.0

    def xy(self, team: int, u: float, v: float) -> tuple[float, float]:
        x = self.x0 + u * self.length if team == 0 else self.x1 - u * self.length
        return x, self.y0 + v * self.breadth

    def goal_line_x(self, defending_team: int) -> float:
        return self.x0 if defending_team == 0 else self.x1


def _attack_dir(team: int) -> float:
    return 1.0 if team == 0 else -1.0


def _team_of(player: int) -> int:
    return player // _PER_TEAM


def _draw_pitch(p: _Pitch) -> Frame:
    img = np.empty((p.height, p.width, 3), np.uint8)
    img[...] = _PITCH_RGB[0]
    stripe = p.length / 10
    for k in range(-1, 12, 2):
        _rect(img, p.x0 + k * stripe, 0, p.x0 + (k + 1) * stripe, p.height, _PITCH_RGB[1])
    lw = max(1, int(round(p.height / 160)))
    cx, cy = p.centre
    gh = p.goal_half_width
    for team in (0, 1):  # goals: net behind the goal line
        gx = p.goal_line_x(team)
        xa, xb = (gx - p.goal_depth, gx) if team == 0 else (gx + 1, gx + 1 + p.goal_depth)
        _rect(img, xa, cy - gh, xb, cy + gh, _NET_RGB)
        step = max(2, int(round(p.height / 60)))
        for yy in np.arange(cy - gh, cy + gh, step):
            _rect(img, xa, yy, xb, yy + 1, (170, 180, 170))
        for xx in np.arange(xa, xb, step):
            _rect(img, xx, cy - gh, xx + 1, cy + gh, (170, 180, 170))
        _rect_outline(img, xa, cy - gh - lw, xb, cy + gh + lw, _LINE_RGB, lw)
        box_x = p.xy(team, 0.16, 0.0)[0]
        bx0, bx1 = sorted((gx, box_x))
        _rect_outline(img, bx0, cy - 2.4 * gh, bx1 + 1, cy + 2.4 * gh, _LINE_RGB, lw)
    _rect_outline(img, p.x0, p.y0, p.x1 + 1, p.y1 + 1, _LINE_RGB, lw)
    _rect(img, cx - lw / 2, p.y0, cx + lw / 2, p.y1, _LINE_RGB)
    _ring(img, cx, cy, 0.17 * p.breadth, lw, _LINE_RGB)
    _disc(img, cx, cy, 1.5 * lw, _LINE_RGB)
    return img


@dataclass(frozen=True, slots=True)
class _MatchTrack:
    """Everything needed to render a match clip."""

    pitch: _Pitch
    players: np.ndarray  # float32 [T, P, 2] centre x, y in px
    ball: np.ndarray  # float32 [T, 2] centre x, y in px
    flash: np.ndarray  # int8 [T]: team whose colour flashes, -1 for none


class _MatchScript:
    """Builds a match timeline event by event, in time order.

    Per-frame arrays always hold "the current state continues to the end of the clip";
    each event overwrites them from its first frame on, so positions of frames before
    the event being planned are final.
    """

    def __init__(self, spec: ClipSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng
        self.fps = spec.fps
        self.n = spec.n_frames
        self.pitch = p = _Pitch(spec.width, spec.height)
        n_players = 2 * _PER_TEAM
        self.home = np.array([p.xy(team, u, v) for team in (0, 1) for (u, v) in _FORMATION_UV], np.float32)
        amp = np.full((n_players, 2), 0.035 * p.length, np.float32)
        amp[0::_PER_TEAM] = (0.01 * p.length, 0.05 * p.breadth)  # keepers barely move
        t = np.arange(self.n, dtype=np.float32)[:, None, None, None] / self.fps
        freq = rng.uniform(0.05, 0.22, (1, 2, n_players, 2)).astype(np.float32)
        phase = rng.uniform(0.0, 2 * np.pi, (1, 2, n_players, 2)).astype(np.float32)
        weight = rng.uniform(0.4, 0.6, (1, 2, n_players, 2)).astype(np.float32)
        self.drift = (np.sin(2 * np.pi * freq * t + phase) * weight).sum(axis=1) * amp  # [T, P, 2]
        self.possession = np.zeros(self.n, np.int8)  # team in possession per frame
        self.kickoffs: list[int] = []
        self.ov_w = np.zeros((self.n, n_players), np.float32)  # position override weight
        self.ov_xy = np.zeros((self.n, n_players, 2), np.float32)
        self.ball_owner = np.full(self.n, -1, np.int16)  # -1: ball free at ball_xy
        self.ball_xy = np.zeros((self.n, 2), np.float32)
        self.flash = np.full(self.n, -1, np.int8)
        self.owner = -1
        self.commentator = _Commentator(rng)
        self._positions: np.ndarray | None = None

    # -- state ---------------------------------------------------------------------------

    def positions(self) -> np.ndarray:
        """float32 [T, P, 2] player centres in px for the timeline planned so far."""
        if self._positions is None:
            alpha = 1.0 - math.exp(-1.0 / (_SHIFT_TAU_S * self.fps))
            shift = np.zeros((self.n, 2), np.float32)  # x shift per team, px
            state = [0.0, 0.0]
            kickoffs = set(self.kickoffs)
            length = self.pitch.length
            for f, attacker in enumerate(self.possession.tolist()):
                for team in (0, 1):
                    if f in kickoffs:
                        state[team] = 0.0
                    else:
                        amount = _ATTACK_SHIFT if team == attacker else _DEFEND_SHIFT
                        target = _attack_dir(attacker) * amount * length
                        state[team] += alpha * (target - state[team])
                shift[f] = state
            pos = self.home[None] + self.drift
            outfield = np.ones(2 * _PER_TEAM, bool)
            outfield[0::_PER_TEAM] = False
            team_of = np.arange(2 * _PER_TEAM) // _PER_TEAM
            pos[:, outfield, 0] += shift[:, team_of[outfield]]
            w = self.ov_w[..., None]
            self._positions = (pos * (1.0 - w) + self.ov_xy * w).astype(np.float32)
        return self._positions

    def _invalidate(self) -> None:
        self._positions = None

    def feet_offset(self, player: int) -> np.ndarray:
        p = self.pitch
        return np.array([_attack_dir(_team_of(player)) * (p.player_r + p.ball_r), 0.0], np.float32)

    def feet(self, player: int, f: int) -> np.ndarray:
        return self.positions()[f, player] + self.feet_offset(player)

    def set_owner(self, player: int, f: int) -> None:
        self.ball_owner[f:] = player
        self.owner = player

    def fly(self, f: int, p0: np.ndarray, p1: np.ndarray, nd: int) -> None:
        """Ball free in frames f..f+nd-1, moving linearly from p0 (exclusive) to p1."""
        end = min(f + nd, self.n)
        frac = _ramp(nd)[: end - f, None]
        self.ball_owner[f:] = -1
        self.ball_xy[f:end] = p0 + (p1 - p0) * frac
        if end < self.n:
            self.ball_xy[end:] = self.ball_xy[end - 1]

    def override(self, player: int, f: int, xy: np.ndarray, w: np.ndarray) -> None:
        """Pulls a player toward xy ([k, 2] or [2]) with weights w [k] from frame f on."""
        end = min(f + len(w), self.n)
        if end <= f:
            return
        self.ov_w[f:end, player] = w[: end - f]
        self.ov_xy[f:end, player] = xy if np.ndim(xy) == 1 else xy[: end - f]
        self._invalidate()

    def frames(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.fps)))

    # -- events --------------------------------------------------------------------------

    def kickoff(self, f: int, team: int) -> None:
        kicker = team * _PER_TEAM + _KICKER
        self.kickoffs.append(f)
        self.possession[f:] = team
        spot = np.array(self.pitch.centre, np.float32) - self.feet_offset(kicker)
        hold, release = self.frames(1.0), self.frames(1.5)
        w = np.concatenate([np.ones(hold, np.float32), 1.0 - _ramp(release)])
        self.override(kicker, f, spot, w)
        self.set_owner(kicker, f)

    def do_pass(self, f: int) -> int:
        """Pass from the owner to a teammate starting at frame f; returns the arrival frame."""
        passer = self.owner
        team = _team_of(passer)
        mates = [team * _PER_TEAM + k for k in range(1, _PER_TEAM) if team * _PER_TEAM + k != passer]
        receiver = mates[int(self.rng.integers(len(mates)))]
        p0 = self.feet(passer, f - 1)
        speed = float(self.rng.uniform(110.0, 150.0)) * self.pitch.scale
        dist = float(np.linalg.norm(self.feet(receiver, f) - p0))
        nd = self.frames(float(np.clip(dist / speed, *_PASS_DURATION_S)))
        arrival = min(f + nd - 1, self.n - 1)
        self.fly(f, p0, self.feet(receiver, arrival), nd)
        self.set_owner(receiver, arrival)
        self.commentator.say("pass", f / self.fps, team=_TEAM_NAMES[team])
        return arrival

    def do_shot(self, f: int) -> int:
        """Shot by the owner at frame f, then a save or a goal; returns the last action frame."""
        p = self.pitch
        shooter = self.owner
        team = _team_of(shooter)
        other = 1 - team
        keeper = other * _PER_TEAM
        p0 = self.feet(shooter, f - 1)
        speed = float(self.rng.uniform(380.0, 480.0)) * p.scale
        _, cy = p.centre
        gh = p.goal_half_width
        gx = p.goal_line_x(other)
        keeper_x = float(self.positions()[f - 1, keeper, 0])
        self.commentator.say("shot", f / self.fps, team=_TEAM_NAMES[team])
        if self.rng.random() < _SAVE_PROBABILITY:
            return self._save(f, p0, speed, keeper, keeper_x)
        ty = float(self.rng.uniform(cy - gh + p.ball_r + 1, cy + gh - p.ball_r - 1))
        p1 = np.array([gx, ty], np.float32)
        nd = self.frames(float(np.clip(np.linalg.norm(p1 - p0) / speed, *_SHOT_DURATION_S)))
        goal_f = min(f + nd - 1, self.n - 1)
        self.fly(f, p0, p1, nd)
        # The keeper dives the wrong way.
        wrong_y = cy - np.sign(ty - cy + 1e-3) * float(self.rng.uniform(0.6, 0.9)) * gh
        dive = np.concatenate([0.8 * _ramp(nd), np.full(self.n, 0.8, np.float32)])
        self.override(keeper, f, np.array([keeper_x, wrong_y], np.float32), dive)
        # The ball rolls on into the net at the same speed and stops there.
        step = (p1 - p0) / nd
        p2 = np.array([gx + _attack_dir(team) * 0.6 * p.goal_depth, ty + self.rng.uniform(-2, 2)], np.float32)
        n2 = max(1, int(round(float(np.linalg.norm(p2 - p1)) / max(float(np.linalg.norm(step)), 1e-3))))
        if goal_f + 1 < self.n:
            self.fly(goal_f + 1, p1, p2, n2)
        self.commentator.say("goal", goal_f / self.fps, team=_TEAM_NAMES[team])
        flash_f = goal_f + self.frames(_FLASH_DELAY_S)
        kickoff_f = flash_f + self.frames(_FLASH_S)
        self.flash[flash_f:kickoff_f] = team
        if kickoff_f < self.n:
            self.override(keeper, kickoff_f, np.zeros(2, np.float32), np.zeros(self.n, np.float32))
            self.kickoff(kickoff_f, other)
        return min(kickoff_f, self.n - 1)

    def _save(self, f: int, p0: np.ndarray, speed: float, keeper: int, keeper_x: float) -> int:
        p = self.pitch
        _, cy = p.centre
        gh = p.goal_half_width
        ty = float(self.rng.uniform(cy - 0.9 * gh, cy + 0.9 * gh))
        stand = np.array([keeper_x, ty], np.float32)
        contact = stand + self.feet_offset(keeper)
        nd = self.frames(float(np.clip(np.linalg.norm(contact - p0) / speed, *_SHOT_DURATION_S)))
        save_f = min(f + nd - 1, self.n - 1)
        self.override(keeper, f, stand, np.concatenate([_ramp(nd), np.ones(self.n, np.float32)]))
        self.fly(f, p0, contact, nd)
        self.possession[save_f:] = _team_of(keeper)
        self._invalidate()
        self.commentator.say("save", save_f / self.fps, team=_TEAM_NAMES[_team_of(keeper)])
        # The ball bounces back toward the field, slowing down ...
        nb = self.frames(0.35)
        rest = contact + np.array(
            [_attack_dir(_team_of(keeper)) * 0.08 * p.length, self.rng.uniform(-0.06, 0.06) * p.breadth],
            np.float32,
        )
        if save_f + 1 < self.n:
            ease = 1.0 - (1.0 - _ramp(nb)) ** 2
            end = min(save_f + 1 + nb, self.n)
            self.ball_owner[save_f + 1 :] = -1
            self.ball_xy[save_f + 1 : end] = contact + (rest - contact) * ease[: end - save_f - 1, None]
            self.ball_xy[end:] = rest
        # ... the keeper steps onto it and then drifts back home with the ball.
        gather_f = save_f + 1 + nb
        ng = self.frames(0.5)
        walk = stand + (rest - self.feet_offset(keeper) - stand) * _ramp(ng)[:, None]
        self.override(keeper, gather_f, walk, np.ones(ng, np.float32))
        held_f = gather_f + ng - 1
        back = 1.0 - _ramp(self.frames(0.8))
        home = np.concatenate([back, np.zeros(self.n, np.float32)])
        self.override(keeper, held_f + 1, rest - self.feet_offset(keeper), home)
        if held_f < self.n:
            self.set_owner(keeper, held_f)
        return min(held_f, self.n - 1)

    # -- timeline --------------------------------------------------------------------------

    def build(self) -> tuple[_MatchTrack, list[Event], list[Line]]:
        rng, fps = self.rng, self.fps
        duration = self.n / fps
        pass_need = _PASS_DURATION_S[1] + REACTION_DELAY_S[1] + _max_line_s("pass")
        shot_need = (
            _SHOT_DURATION_S[1]
            + REACTION_DELAY_S[1]
            + _max_line_s("shot")
            + LINE_GAP_S
            + max(_max_line_s("save"), _max_line_s("goal"))
            + LINE_GAP_S
        )
        self.kickoff(0, int(rng.integers(2)))
        next_f = self.frames(float(rng.uniform(0.5, 1.5)))
        passes_left = int(rng.integers(1, 4))
        while True:
            f = max(next_f, int(math.ceil(self.commentator.busy_until_s * fps)), 1)
            t = f / fps
            if passes_left == 0 and t + shot_need <= duration:
                end = self.do_shot(f)
                passes_left = int(rng.integers(1, 4))
            elif t + pass_need <= duration:
                end = self.do_pass(f)
                passes_left = max(passes_left - 1, 0)
            else:
                break
            next_f = end + self.frames(float(rng.uniform(*_GAP_S)))
        players = self.positions()
        ball = self.ball_xy.copy()
        owned = self.ball_owner >= 0
        idx = np.nonzero(owned)[0]
        owners = self.ball_owner[idx].astype(np.int64)
        offsets = np.stack([self.feet_offset(int(o)) for o in range(2 * _PER_TEAM)])
        ball[idx] = players[idx, owners] + offsets[owners]
        track = _MatchTrack(self.pitch, players, ball, self.flash.copy())
        return track, self.commentator.events, self.commentator.lines


def _match_frames(track: _MatchTrack) -> Iterator[Frame]:
    p = track.pitch
    background = _draw_pitch(p)
    colours = [_KEEPER_RGB[0]] + [_TEAM_RGB[0]] * (_PER_TEAM - 1)
    colours += [_KEEPER_RGB[1]] + [_TEAM_RGB[1]] * (_PER_TEAM - 1)
    for f in range(track.players.shape[0]):
        img = background.copy()
        for (x, y), rgb in zip(track.players[f].tolist(), colours, strict=True):
            _disc(img, x, y, p.player_r, rgb, _OUTLINE_RGB)
        bx, by = track.ball[f].tolist()
        _disc(img, bx, by, p.ball_r, _BALL_RGB, _OUTLINE_RGB)
        team = int(track.flash[f])
        if team >= 0:
            tint = np.asarray(_TEAM_RGB[team], np.float32) * _FLASH_ALPHA
            img = (img * (1.0 - _FLASH_ALPHA) + tint + 0.5).astype(np.uint8)
        yield img


# ---------------------------------------------------------------------------------------
# Scene
# ---------------------------------------------------------------------------------------

_CANVAS_WIDTHS = 3  # background canvas is this many frame widths wide (room to pan)
_MAX_OBJECTS = 3


def _background(rng: np.random.Generator, h: int, w: int) -> Frame:
    """A random textured background, uint8 [h, w, 3] RGB, with structure along x."""
    style = int(rng.integers(4))
    c0, c1 = rng.uniform(20, 235, (2, 3)).astype(np.float32)
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    if style == 0:  # smooth colour noise
        grid = rng.uniform(20, 235, (int(rng.integers(3, 6)), max(2, w // int(rng.integers(30, 60))), 3))
        img = _upsample(grid.astype(np.float32), h, w)
    elif style == 1:  # linear gradient at an angle that varies along x
        angle = float(rng.uniform(-1.0, 1.0))
        s = xx * math.cos(angle) + yy * math.sin(angle)
        s = (s - s.min()) / max(float(s.max() - s.min()), 1.0)
        s = 0.5 + 0.5 * np.sin(2 * np.pi * s * float(rng.uniform(0.8, 2.0)))
        img = c0 + (c1 - c0) * s[..., None]
    elif style == 2:  # soft stripes, far from horizontal
        angle = float(rng.uniform(-1.0, 1.0))
        period = float(rng.uniform(14, 48)) * h / 240
        s = xx * math.cos(angle) + yy * math.sin(angle)
        s = np.clip(2.0 * np.sin(2 * np.pi * s / period), -1.0, 1.0) * 0.5 + 0.5
        img = c0 + (c1 - c0) * s[..., None]
    else:  # two-colour soft patches (no round shapes that could pass for objects)
        grid = rng.uniform(0.0, 1.0, (int(rng.integers(3, 6)), max(2, w // int(rng.integers(25, 50))), 1))
        field = _upsample(grid.astype(np.float32), h, w)
        s = np.clip((field - 0.5) * 4.0 + 0.5, 0.0, 1.0)
        img = c0 + (c1 - c0) * s
    # Medium-scale detail everywhere so that motion is visible on every background.
    cell = max(4, h // 24)
    detail = rng.normal(0.0, 1.0, (h // cell + 2, w // cell + 2, 1)).astype(np.float32)
    img = img + 14.0 * _upsample(detail, h, w)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


@dataclass(slots=True)
class _SceneObject:
    colour: str
    shape: str
    radius: float
    x: np.ndarray  # float32 [T] world x in canvas px
    y: np.ndarray  # float32 [T] y in px
    alive: np.ndarray  # bool [T]


@dataclass(frozen=True, slots=True)
class _SceneTrack:
    canvases: list[Frame]  # uint8 [H, _CANVAS_WIDTHS * W, 3]
    canvas_index: np.ndarray  # int16 [T]
    offset: np.ndarray  # int32 [T] x of the view's left edge on the canvas, px
    objects: list[_SceneObject]
    width: int


class _SceneScript:
    """Builds a scene timeline event by event; arrays hold "state continues" tails."""

    def __init__(self, spec: ClipSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng
        self.fps = spec.fps
        self.n = spec.n_frames
        self.w, self.h = spec.width, spec.height
        self.scale = spec.width / 320.0
        self.canvases = [_background(rng, self.h, _CANVAS_WIDTHS * self.w)]
        self.canvas_index = np.zeros(self.n, np.int16)
        self.offset = np.full(self.n, self.w, np.int32)
        self.objects: list[_SceneObject] = []
        self.active: list[_SceneObject] = []
        self.commentator = _Commentator(rng)

    def frames(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.fps)))

    def screen_x(self, obj: _SceneObject, f: int) -> float:
        return float(obj.x[f]) - float(self.offset[f])

    def _new_object(self, f: int) -> _SceneObject | None:
        used = {(o.colour, o.shape) for o in self.active}
        choices = [(c, s) for c in _OBJECT_COLOURS for s in _OBJECT_SHAPES if (c, s) not in used]
        colour, shape = choices[int(self.rng.integers(len(choices)))]
        r = float(self.rng.uniform(0.07, 0.11)) * self.h
        for _ in range(20):
            sx = float(self.rng.uniform(0.25, 0.75)) * self.w
            sy = float(self.rng.uniform(0.25, 0.75)) * self.h
            if all(math.hypot(sx - self.screen_x(o, f), sy - float(o.y[f])) > r + o.radius + 6 for o in self.active):
                off = float(self.offset[f])
                return _SceneObject(
                    colour,
                    shape,
                    r,
                    np.full(self.n, sx + off, np.float32),
                    np.full(self.n, sy, np.float32),
                    np.zeros(self.n, bool),
                )
        return None

    # -- events --------------------------------------------------------------------------

    def do_pan(self, f: int) -> int | None:
        speed = float(self.rng.uniform(60.0, 110.0)) * self.scale
        dist = speed * float(self.rng.uniform(1.0, 2.0))
        min_dist = 0.12 * self.w
        off0 = int(self.offset[f - 1])
        rooms = {
            # Camera pans left: the view moves left on the canvas, content moves right.
            "pan_left": min([float(off0)] + [self.w - 2 - o.radius - self.screen_x(o, f - 1) for o in self.active]),
            "pan_right": min(
                [float((_CANVAS_WIDTHS - 1) * self.w - off0)]
                + [self.screen_x(o, f - 1) - o.radius - 2 for o in self.active]
            ),
        }
        kinds = [k for k, room in rooms.items() if room >= min_dist]
        if not kinds:
            return None
        kind = kinds[int(self.rng.integers(len(kinds)))]
        dist = min(dist, rooms[kind])
        nd = self.frames(max(1.0, dist / speed))
        sign = -1 if kind == "pan_left" else 1
        end = min(f + nd, self.n)
        steps = np.round(dist * _ramp(nd)).astype(np.int32)[: end - f]
        self.offset[f:end] = off0 + sign * steps
        self.offset[end:] = off0 + sign * int(round(dist))
        self.commentator.say(kind, f / self.fps)
        return end - 1

    def do_cut(self, f: int) -> int:
        self.canvases.append(_background(self.rng, self.h, _CANVAS_WIDTHS * self.w))
        self.canvas_index[f:] = len(self.canvases) - 1
        self.offset[f:] = self.w
        for o in self.active:
            o.alive[f:] = False
        self.active = []
        self.commentator.say("cut", f / self.fps)
        return f

    def do_enter(self, f: int) -> int | None:
        obj = self._new_object(f)
        if obj is None:
            return None
        side = _SIDES[int(self.rng.integers(2))]
        rest_sx = self.screen_x(obj, f)
        start_sx = -obj.radius - 1.0 if side == "left" else self.w + obj.radius + 1.0
        speed = float(self.rng.uniform(110.0, 170.0)) * self.scale
        nd = self.frames(float(np.clip(abs(rest_sx - start_sx) / speed, 0.8, 2.0)))
        end = min(f + nd, self.n)
        off = float(self.offset[f])
        path = start_sx + (rest_sx - start_sx) * _ramp(nd)
        obj.x[f:end] = path[: end - f] + off
        obj.alive[f:] = True
        self.objects.append(obj)
        self.active.append(obj)
        self.commentator.say("enter", f / self.fps, colour=obj.colour, shape=obj.shape, side=side)
        return end - 1

    def do_leave(self, f: int) -> int:
        obj = self.active.pop(int(self.rng.integers(len(self.active))))
        sx = self.screen_x(obj, f - 1)
        side = "left" if sx < self.w / 2 else "right"
        target_sx = -obj.radius - 2.0 if side == "left" else self.w + obj.radius + 2.0
        speed = float(self.rng.uniform(110.0, 170.0)) * self.scale
        nd = self.frames(float(np.clip(abs(target_sx - sx) / speed, 0.6, 2.0)))
        end = min(f + nd, self.n)
        off = float(self.offset[f])
        path = sx + (target_sx - sx) * _ramp(nd)
        obj.x[f:end] = path[: end - f] + off
        obj.x[end:] = target_sx + off
        obj.alive[end:] = False
        self.commentator.say("leave", f / self.fps, colour=obj.colour, shape=obj.shape, side=side)
        return end - 1

    # -- timeline --------------------------------------------------------------------------

    def build(self) -> tuple[_SceneTrack, list[Event], list[Line]]:
        rng, fps = self.rng, self.fps
        duration = self.n / fps
        for _ in range(int(rng.integers(0, 2))):  # objects already in view at the start
            obj = self._new_object(0)
            if obj is not None:
                obj.alive[:] = True
                self.objects.append(obj)
                self.active.append(obj)
        next_f = self.frames(float(rng.uniform(0.5, 1.5)))
        action_max_s = 2.0
        while True:
            f = max(next_f, int(math.ceil(self.commentator.busy_until_s * fps)), 1)
            t = f / fps
            options = {"pan": 3.0, "cut": 1.5, "enter": 3.0, "leave": 2.5}
            if len(self.active) >= _MAX_OBJECTS:
                del options["enter"]
            if not self.active:
                del options["leave"]
            need = {
                "pan": max(_max_line_s("pan_left"), _max_line_s("pan_right")),
                "cut": _max_line_s("cut"),
                "enter": _max_line_s("enter"),
                "leave": _max_line_s("leave"),
            }
            options = {k: v for k, v in options.items() if t + action_max_s + REACTION_DELAY_S[1] + need[k] <= duration}
            end: int | None = None
            while options and end is None:
                names = list(options)
                weights = np.array([options[k] for k in names])
                kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
                del options[kind]
                if kind == "pan":
                    end = self.do_pan(f)
                elif kind == "cut":
                    end = self.do_cut(f)
                elif kind == "enter":
                    end = self.do_enter(f)
                else:
                    end = self.do_leave(f)
            if end is None:
                break
            next_f = end + self.frames(float(rng.uniform(*_GAP_S)))
        track = _SceneTrack(self.canvases, self.canvas_index, self.offset, self.objects, self.w)
        return track, self.commentator.events, self.commentator.lines


def _scene_frames(track: _SceneTrack) -> Iterator[Frame]:
    w = track.width
    for f in range(track.offset.shape[0]):
        off = int(track.offset[f])
        img = track.canvases[int(track.canvas_index[f])][:, off : off + w].copy()
        for obj in track.objects:
            if obj.alive[f]:
                draw = _disc if obj.shape == "circle" else _square
                draw(
                    img,
                    float(obj.x[f]) - off,
                    float(obj.y[f]),
                    obj.radius,
                    _OBJECT_COLOURS[obj.colour],
                    _OUTLINE_RGB,
                    2.0,
                )
        yield img


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def render_clip(spec: ClipSpec) -> tuple[Iterator[Frame], list[Event], list[Line]]:
    """Scripts and renders one clip.

    The script (events, lines, all trajectories) is computed eagerly; frames are drawn
    lazily as the iterator is consumed.

    Args:
        spec: What to render.

    Returns:
        ``(frames, events, lines)``: an iterator over ``spec.n_frames`` frames, each
        uint8 [spec.height, spec.width, 3] RGB at ``spec.fps``; the events sorted by
        ``t_s``; one line per event, in the same order (see the module docstring on timing).

    Raises:
        ValueError: If ``spec.kind`` is unknown.
    """
    rng = np.random.default_rng(spec.seed)
    if spec.kind == "match":
        match_track, events, lines = _MatchScript(spec, rng).build()
        return _match_frames(match_track), events, lines
    if spec.kind == "scene":
        scene_track, events, lines = _SceneScript(spec, rng).build()
        return _scene_frames(scene_track), events, lines
    raise ValueError(f"unknown clip kind {spec.kind!r}, expected one of {CLIP_KINDS}")


def _transcript_dict(spec: ClipSpec, events: list[Event], lines: list[Line]) -> dict[str, Any]:
    return {
        "spec": dataclasses.asdict(spec),
        "events": [dataclasses.asdict(e) for e in events],
        "lines": [dataclasses.asdict(line) for line in lines],
    }


def write_clip(spec: ClipSpec, path: Path) -> Path:
    """Renders a clip to an H.264 MP4 plus a JSON transcript next to it.

    Video: libx264, yuv420p, crf 23, preset veryfast, one keyframe every 2 s, at
    ``spec.fps``. Transcript: ``path.with_suffix(".json")`` holding
    ``{"spec": {...}, "events": [{"t_s", "kind"}], "lines": [{"start_s", "end_s", "text"}]}``.
    Both files are written to temporary names first and renamed into place.

    Args:
        spec: What to render.
        path: Output video path, normally ending in ``.mp4``.

    Returns:
        ``path``.

    Raises:
        ValueError: If ``path`` ends in ``.json`` (the transcript would overwrite it).
        av.FFmpegError: If encoding fails.
        OSError: If a file cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise ValueError(f"video path must not end in .json, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    frames, events, lines = render_clip(spec)
    video_tmp = path.with_name(path.name + ".part")
    json_path = path.with_suffix(".json")
    json_tmp = json_path.with_name(json_path.name + ".part")
    try:
        with av.open(str(video_tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=spec.fps)
            stream.width = spec.width
            stream.height = spec.height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.gop_size = 2 * spec.fps
            stream.options = {"crf": "23", "preset": "veryfast"}
            time_base = Fraction(1, spec.fps)
            for i, arr in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                frame.pts = i
                frame.time_base = time_base
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        json_tmp.write_text(json.dumps(_transcript_dict(spec, events, lines), indent=1))
        os.replace(video_tmp, path)
        os.replace(json_tmp, json_path)
    except BaseException:
        video_tmp.unlink(missing_ok=True)
        json_tmp.unlink(missing_ok=True)
        raise
    return path


def _number(item: dict[str, Any], key: str, where: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TranscriptError(f"{where}: {key!r} must be a finite number, got {value!r}")
    return float(value)


#: File name endings treated as videos when a folder is labelled (lowercase).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".flv", ".mpg",
                            ".mpeg", ".wmv", ".ogv", ".3gp"})


def videos_in(folder: Path) -> list[Path]:
    """The videos of a folder (not its sub-folders), by name: files ending in one of :data:`VIDEO_SUFFIXES`.

    Raises:
        NotADirectoryError: If ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def label_each(
    videos: list[Path],
    label: Callable[[Path], Path],
    progress: Callable[[int, int, Path, MMDError | None], None] | None = None,
) -> list[Path]:
    """Labels videos one by one; a video that cannot be decoded is skipped with a warning.

    Args:
        videos: The videos, in order.
        label: Writes one video's transcript and returns its path; raises ``MediaError``
            for a video it cannot read.
        progress: Called after each video with ``(done, total, video, error)``; ``error``
            is the error that made it skip the video, else None.

    Returns:
        The transcripts written, in video order.
    """
    written: list[Path] = []
    for done, video in enumerate(videos, start=1):
        error: MMDError | None = None
        try:
            written.append(label(video))
        except MediaError as exc:
            logger.warning("skipping %s: %s", video.name, exc)
            error = exc
        if progress is not None:
            progress(done, len(videos), video, error)
    return written


def write_transcript(video: Path, data: dict[str, Any]) -> Path:
    """Writes a transcript (``{"events": [...], "lines": [...], ...}``) next to a video, atomically.

    Args:
        video: The video file; the transcript goes to ``video.with_suffix(".json")``.
        data: The transcript and any provenance fields (JSON-serialisable).

    Returns:
        The transcript's path.
    """
    json_path = video.with_suffix(".json")
    tmp = json_path.with_name(json_path.name + ".part")
    try:
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, json_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return json_path


def read_transcript(path: Path) -> tuple[list[Event], list[Line]]:
    """Reads the transcript of a clip written by :func:`write_clip` (or a real corpus).

    Args:
        path: The clip's ``.mp4`` (its ``.json`` sibling is read) or the ``.json`` itself.

    Returns:
        ``(events, lines)`` as stored.

    Raises:
        FileNotFoundError: If the transcript file does not exist.
        TranscriptError: If the file is not valid JSON or does not have the expected
            fields and types (unknown event kind, non-numeric time, end before start...).
    """
    json_path = Path(path).with_suffix(".json")
    if not json_path.is_file():
        raise FileNotFoundError(f"transcript not found: {json_path} (for {path})")
    try:
        data = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TranscriptError(f"{json_path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TranscriptError(f"{json_path}: expected a JSON object, got {type(data).__name__}")
    raw_events, raw_lines = data.get("events"), data.get("lines")
    if not isinstance(raw_events, list) or not isinstance(raw_lines, list):
        raise TranscriptError(f"{json_path}: expected lists under 'events' and 'lines'")
    events: list[Event] = []
    for i, item in enumerate(raw_events):
        where = f"{json_path}: events[{i}]"
        if not isinstance(item, dict):
            raise TranscriptError(f"{where}: expected an object, got {item!r}")
        kind = item.get("kind")
        if kind not in EVENT_KINDS:
            raise TranscriptError(f"{where}: unknown kind {kind!r}, expected one of {EVENT_KINDS}")
        events.append(Event(t_s=_number(item, "t_s", where), kind=kind))
    lines: list[Line] = []
    for i, item in enumerate(raw_lines):
        where = f"{json_path}: lines[{i}]"
        if not isinstance(item, dict):
            raise TranscriptError(f"{where}: expected an object, got {item!r}")
        start, end = _number(item, "start_s", where), _number(item, "end_s", where)
        text = item.get("text")
        if not isinstance(text, str):
            raise TranscriptError(f"{where}: 'text' must be a string, got {text!r}")
        if end < start:
            raise TranscriptError(f"{where}: end_s {end} is before start_s {start}")
        lines.append(Line(start_s=start, end_s=end, text=text))
    return events, lines


def make_dataset(
    out_dir: Path,
    n_clips: int,
    *,
    seed: int = 0,
    match_fraction: float = 0.6,
    duration_s: float = 20.0,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Writes ``clip_00000.mp4`` / ``.json`` ... into ``out_dir``.

    Clip kinds and seeds are drawn from ``seed``, so the same arguments write the same
    dataset. Frame size and rate are the ``ClipSpec`` defaults.

    Args:
        out_dir: Output directory, created if missing.
        n_clips: Number of clips.
        seed: Dataset seed.
        match_fraction: Probability that a clip is a ``match`` (else ``scene``).
        duration_s: Length of each clip in seconds.
        progress: Called with the number of clips written after each clip.

    Returns:
        The video paths, in order.

    Raises:
        ValueError: If ``n_clips < 0`` or ``match_fraction`` is outside [0, 1], or
            ``duration_s`` is invalid for a ``ClipSpec``.
        OSError: If a file cannot be written.
    """
    if n_clips < 0:
        raise ValueError(f"n_clips must be >= 0, got {n_clips}")
    if not 0.0 <= match_fraction <= 1.0:
        raise ValueError(f"match_fraction must be in [0, 1], got {match_fraction}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    specs = []
    for _ in range(n_clips):
        kind = "match" if rng.random() < match_fraction else "scene"
        specs.append(ClipSpec(kind=kind, seed=int(rng.integers(0, 2**31 - 1)), duration_s=duration_s))
    paths: list[Path] = []
    for i, spec in enumerate(specs):
        paths.append(write_clip(spec, out_dir / f"clip_{i:05d}.mp4"))
        logger.debug("wrote %s (%s, seed %d)", paths[-1], spec.kind, spec.seed)
        if progress is not None:
            progress(i + 1)
    return paths

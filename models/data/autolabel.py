"""Automatic transcripts for real footage: pans, cuts, objects entering, leaving, moving.

Real video has no commentary. This module measures what the model is asked to comment
on and writes a transcript in the procedural format (:mod:`models.data.procedural`), so a
real clip trains exactly like a procedural one. The measurements come from the
project's own live pipeline, at the model's 5 Hz grid (160x120, aspect not kept):

    iter_model_frames -> to_luma -> optical_flow(prev, cur) -> BFlowTokenizer.step

* **cut**: a B-Flow key view (scene-change score above ``BFlowConfig.cut_threshold``)
  after the first step that also changes ``cut_min_raw_change`` of the pixels without
  compensation (else the key view came from a wrong camera estimate); key views closer
  than ``cut_min_gap_s`` give one cut.
* **pan_left / pan_right**: the B-Flow camera token (the median flow). Content moving
  right (dx > 0) means the camera pans left. The camera motion counts only where
  compensating it lowers the changed fraction (B-Flow ``cut_score`` below the
  uncompensated one); otherwise a moving object dragged the median. A pan starts when the camera speed exceeds
  ``pan_start_px_s`` and continues while it stays above ``pan_stop_px_s`` (hysteresis);
  runs of the same direction less than ``pan_merge_s`` apart are one pan, and a pan
  must last ``pan_min_s`` and move the view by ``pan_min_fraction`` of its width.
* **enter / leave**: the residual flow (flow minus the camera motion) above
  ``object_motion_px_s`` marks moving pixels; moving cells (``cell_px`` squares) are
  grouped into 4-connected regions of at least ``object_min_fraction`` of the frame,
  and regions are linked from step to step into tracks (predicted by their own flow).
  A track that starts at the left/right border moving inward is an ``enter`` from
  that side; a track that ends at a border moving outward is a ``leave`` to that side,
  timed at the start of its motion (at most ``leave_lookback_s`` before the exit), as
  the procedural script times it. No enter/leave is taken while the camera moves.
* **move**: sustained motion inside the frame. A run of a track's steps whose regions
  stay off the left/right borders (``border_px``), while the camera does not pan, that
  lasts ``move_min_s`` with a mean area of at least ``move_min_fraction``. It is timed
  at the start of the run and described over its first ``move_min_s``: the third of
  the frame holding the median centroid (left / middle / right), "big" if the mean
  area is at least ``move_big_fraction``, and a direction (left / right / up / down)
  if the summed flow of the region moves it by ``move_travel_fraction`` of the frame
  (width for x, height for y) and at least twice as far as along the other axis. The
  first line about a track says where it is ("something big moves in the middle");
  a later one says which way it goes when that is clear ("it moves to the left"). A
  track speaks at most once per ``move_repeat_s``, its enter and leave included (so an
  object entering is not also said to move).

Thresholds are in model-grid pixels per second (160 px wide; 1 px/s = 0.6 % of the
width per second) or fractions. They were chosen from the procedural scene script and
then checked on its clips: procedural pans move 19-34 % of the width per second
(30-55 px/s on the grid) for at least 1 s and at least 12 % of the width; objects move
at 34-53 % of the width per second (55-85 px/s) and cover 0.7-1.9 % of the frame each.
``pan_start_px_s`` = 10 px/s is a third of the slowest procedural pan and well above
the median-flow noise of a static shot (< 1 px/s); ``object_motion_px_s`` = 7.5 px/s
is B-Flow's own ``motion_threshold_px`` (1.5 px per step).

Measured on procedural scene clips (``ClipSpec("scene", seed, duration_s=20)``,
320x240 at 25 fps; an event counts when a detected event of the same kind
lies within ±1 s of it, each detection matched once; see ``evaluate_on_scenes``):

Scene clips 0-9 (used while choosing the thresholds):

    | kind      | scripted | found | recall | precision |
    |-----------|----------|-------|--------|-----------|
    | all       |       51 |    51 |   1.00 |      1.00 |

Held-out scene clips 10-39 (not looked at while tuning, except to add the
no-enter/leave-while-panning rule after seeing its false leaves):

    | kind      | scripted | found | recall | precision |
    |-----------|----------|-------|--------|-----------|
    | pan_left  |       33 |    33 |   0.97 |      0.97 |
    | pan_right |       26 |    26 |   0.96 |      0.96 |
    | cut       |       23 |    24 |   1.00 |      0.96 |
    | enter     |       47 |    41 |   0.87 |      1.00 |
    | leave     |       19 |    18 |   0.84 |      0.89 |
    | all       |      148 |   142 |   0.93 |      0.96 |

Misses and false alarms are mostly optical-flow failures, not thresholds: on stripe
backgrounds a pan can alias to the wrong direction (one clip has both its pans
reversed), and a large object moving over weak texture drags the median flow (the
camera check below catches most of these). Enter misses are objects whose first
regions merge with others. A crop to about half the height, stretched to the 4:3
grid, makes that worse (objects twice as large): see ``augment_clip``.

``move`` was added later, for real footage where nothing crosses a border: the table
above is unchanged by it (same numbers on the same seeds; ``"all"`` counts the scripted
kinds only). Its thresholds: ``move_min_fraction`` = 0.5 % of the frame lies between
the smallest region kept (0.4 %) and the smallest procedural object (0.7 %);
``move_big_fraction`` = 10 % is five times the largest procedural object (the rabbit
below covers 7-31 %); ``move_travel_fraction`` = 6 % per ``move_min_s`` = 1 s is far
below procedural object speeds and a little below the rabbit's 8 % as it comes out.
Scenes script no move, yet an object the script makes enter or leave does move in
the frame: on scene clips 0-39, 3 move events in 40 clips (37 clips none, 3 one):
two tell objects whose enter was missed, one repeats an enter whose track split.

On the Big Buck Bunny sample (5.3 s, static camera, no cut: a big rabbit comes out of
its burrow left of centre, stands up and stretches) the labeller finds no pan, cut,
enter or leave, and one move at 0.1 s: "something big moves in the middle" (its
moving region's median centroid is at 34 % of the width). The rest of its motion is
the same track within ``move_repeat_s`` or shorter than ``move_min_s``.

A transcript line is produced per event as the procedural commentator does: a
template of ``procedural.TEMPLATES`` whose slots can be filled from measurements
(``{side}``, and ``{place}`` / ``{way}`` for move; colour and shape are not measured;
"big" move lines only for big regions), starting a reaction delay after
the event, one word per ``SECONDS_PER_WORD``, never overlapping the previous line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.data import realclips
from models.data.dataset import iter_pipeline
from models.data.procedural import (
    LINE_GAP_S,
    MOVE_PLACES,
    MOVE_WAYS,
    REACTION_DELAY_S,
    SECONDS_PER_WORD,
    TEMPLATES,
    ClipSpec,
    Event,
    Line,
    read_transcript,
    write_clip,
    write_transcript,
)
from models.vision import bflow, video

__all__ = [
    "LABEL_KINDS",
    "SCRIPTED_KINDS",
    "AutolabelConfig",
    "LineCandidate",
    "Measurements",
    "Region",
    "augment_clip",
    "commentary",
    "detect_events",
    "detect_tilts",
    "evaluate_on_scenes",
    "label_video",
    "lines_for",
    "make_real_dataset",
    "match_events",
    "measure_video",
    "schedule_lines",
    "write_labels",
]

log = logging.getLogger(__name__)

#: Event kinds the labeller can measure on real footage.
LABEL_KINDS: tuple[str, ...] = ("pan_left", "pan_right", "cut", "enter", "leave", "move")
#: Kinds a procedural scene scripts, hence scored by :func:`evaluate_on_scenes`.
SCRIPTED_KINDS: tuple[str, ...] = ("pan_left", "pan_right", "cut", "enter", "leave")


@dataclass(frozen=True)
class AutolabelConfig:
    """Detector thresholds; pixels are model-grid pixels (``video.MODEL_WIDTH`` wide)."""

    pan_start_px_s: float = 10.0  # camera speed that starts a pan (6 % of the width per s)
    pan_stop_px_s: float = 5.0  # a pan continues while the camera is at least this fast
    pan_min_s: float = 0.6  # shortest pan, seconds (procedural pans last >= 1 s)
    pan_min_fraction: float = 0.08  # a pan moves the view by at least this part of the width
    pan_merge_s: float = 1.0  # same-direction runs closer than this are one pan
    cut_min_gap_s: float = 1.0  # key views closer than this are one cut (flashes, fades)
    cut_min_raw_change: float = 0.35  # a cut also changes this part of the pixels uncompensated
    object_motion_px_s: float = 7.5  # residual speed that marks a pixel as moving
    cell_px: int = 4  # moving cells are cell_px x cell_px squares
    cell_moving_fraction: float = 0.5  # a cell moves when this part of its pixels move
    object_min_fraction: float = 0.004  # smallest moving region, part of the frame area
    object_max_fraction: float = 0.4  # larger moving regions are not objects (zoom, parallax)
    border_px: float = 6.0  # a region this close to the left/right edge touches it
    object_min_steps: int = 2  # shortest object track, model steps
    object_link_px: float = 24.0  # largest distance from a track's predicted position, px
    leave_lookback_s: float = 2.0  # a leave is timed at most this long before its exit
    max_line_lag_s: float = 2.0  # an event whose line would start later than this is dropped
    move_min_s: float = 1.0  # shortest motion inside the frame that is a move, seconds
    move_min_fraction: float = 0.005  # its smallest mean area, part of the frame
    move_big_fraction: float = 0.1  # a move region this large (mean area) is "big"
    move_travel_fraction: float = 0.06  # travel that gives a direction, part of width/height
    move_repeat_s: float = 3.0  # a track speaks (move, enter, leave) at most once per this
    pan_max_residual: float = 1.0  # a pan's compensated change is at most this part of its raw change (1: off)
    tilt_max_residual: float = 0.25  # the same for a tilt


@dataclass(frozen=True)
class Region:
    """A connected moving region of one step, model-grid pixels.

    Attributes:
        x0: Left edge, px.
        x1: Right edge (exclusive), px.
        cx: Centroid x, px.
        cy: Centroid y, px.
        area_fraction: Area as a fraction of the frame.
        rel_dx: Mean horizontal residual flow (motion against the camera), px/step.
        abs_dx: Mean horizontal flow on screen, px/step.
        abs_dy: Mean vertical flow on screen, px/step.
    """

    x0: float
    x1: float
    cx: float
    cy: float
    area_fraction: float
    rel_dx: float
    abs_dx: float
    abs_dy: float


@dataclass(frozen=True)
class Measurements:
    """Per-step measurements of one video on the model grid.

    Attributes:
        pts_s: float64 [T] media time of each step, seconds from the first frame.
        is_key: bool [T] B-Flow key view taken (step 0 always is).
        cut_score: float32 [T] B-Flow scene-change score: fraction of pixels changed
            after camera-motion compensation (1 on step 0).
        raw_change: float32 [T] fraction of pixels changed without compensation
            (same luma threshold; 1 on step 0).
        camera_dx: float32 [T] camera (median) flow x, px/step, from the B-Flow camera
            token; 0 without one, and 0 when compensating it does not lower the
            changed fraction (``cut_score >= raw_change``: the median was fooled).
        camera_dy: float32 [T] camera flow y, px/step.
        regions: T lists of moving :class:`Region` (empty on key steps).
        width: Model-grid width, px.
        height: Model-grid height, px.
        fps_hz: Model steps per second.
    """

    pts_s: np.ndarray
    is_key: np.ndarray
    cut_score: np.ndarray
    raw_change: np.ndarray
    camera_dx: np.ndarray
    camera_dy: np.ndarray
    regions: list[list[Region]]
    width: int = video.MODEL_WIDTH
    height: int = video.MODEL_HEIGHT
    fps_hz: float = video.MODEL_FPS_HZ

    @property
    def n_steps(self) -> int:
        return int(self.pts_s.shape[0])

    @property
    def duration_s(self) -> float:
        """Media time covered: last step plus one step."""
        return float(self.pts_s[-1] + 1.0 / self.fps_hz) if self.n_steps else 0.0


# ---------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------


def _camera_from_tokens(tokens: np.ndarray, scale_px: float) -> tuple[float, float]:
    """Camera flow (dx, dy) px/step from a step's B-Flow tokens; (0, 0) without a camera token."""
    cams = tokens[(tokens[:, 1] == 1.0) & (tokens[:, 2] == 1.0)]
    if not len(cams):
        return 0.0, 0.0
    return float(cams[0, 5]) * scale_px, float(cams[0, 6]) * scale_px


def _regions(flow_px: np.ndarray, camera: tuple[float, float], cfg: AutolabelConfig, fps_hz: float) -> list[Region]:
    """Connected moving regions of one flow field.

    Args:
        flow_px: float32 [H, W, 2] flow, px/step.
        camera: Camera flow (dx, dy), px/step.
        cfg: Thresholds.
        fps_hz: Model steps per second.

    Returns:
        Regions between ``object_min_fraction`` and ``object_max_fraction`` of the frame.
    """
    h, w = flow_px.shape[:2]
    rel = flow_px - np.asarray(camera, np.float32)
    moving = np.hypot(rel[..., 0], rel[..., 1]) > cfg.object_motion_px_s / fps_hz
    c = cfg.cell_px
    rows, cols = h // c, w // c
    cells = moving[: rows * c, : cols * c].reshape(rows, c, cols, c).mean(axis=(1, 3)) > cfg.cell_moving_fraction
    if not cells.any():
        return []
    # 4-connected labelling by flood fill: few cells move, so plain Python is fast enough.
    label = np.zeros(cells.shape, np.int32)
    out: list[tuple[float, np.ndarray, np.ndarray]] = []  # (area fraction, rows, columns) per group
    for r0, c0 in zip(*np.nonzero(cells), strict=True):
        if label[r0, c0]:
            continue
        n = len(out) + 1
        label[r0, c0] = n
        stack, members = [(int(r0), int(c0))], []
        while stack:
            r, k = stack.pop()
            members.append((r, k))
            for rr, kk in ((r - 1, k), (r + 1, k), (r, k - 1), (r, k + 1)):
                if 0 <= rr < rows and 0 <= kk < cols and cells[rr, kk] and not label[rr, kk]:
                    label[rr, kk] = n
                    stack.append((rr, kk))
        rs, ks = np.asarray(members).T
        area = len(members) * c * c / (h * w)
        out.append((area, rs, ks))
    regions = []
    for area, rs, ks in out:
        if not cfg.object_min_fraction <= area <= cfg.object_max_fraction:
            continue
        mask = np.zeros((rows, cols), bool)
        mask[rs, ks] = True
        pix = np.repeat(np.repeat(mask, c, axis=0), c, axis=1) & moving[: rows * c, : cols * c]
        if not pix.any():
            continue
        sub = flow_px[: rows * c, : cols * c][pix]
        sub_rel = rel[: rows * c, : cols * c][pix]
        regions.append(
            Region(
                x0=float(ks.min() * c),
                x1=float((ks.max() + 1) * c),
                cx=float((ks.mean() + 0.5) * c),
                cy=float((rs.mean() + 0.5) * c),
                area_fraction=float(area),
                rel_dx=float(sub_rel[:, 0].mean()),
                abs_dx=float(sub[:, 0].mean()),
                abs_dy=float(sub[:, 1].mean()),
            )
        )
    return regions


def measure_video(path: Path, *, config: AutolabelConfig = AutolabelConfig()) -> Measurements:
    """Runs the live pipeline (decoder, flow, B-Flow) over a video and measures each step.

    The stages are :func:`models.data.dataset.iter_pipeline`, as live; the flow field is used
    to find moving regions.

    Args:
        path: A video file.
        config: Thresholds (only the region ones are used here).

    Returns:
        The video's measurements; times start at 0 at the first decoded frame.

    Raises:
        MediaError: If the file cannot be decoded.
    """
    grid = video.ModelGrid()
    cfg = bflow.BFlowConfig()
    pts, keys, scores, raw, cam_x, cam_y, regions = [], [], [], [], [], [], []
    for st in iter_pipeline(path, grid=grid):
        step, f = st.step, st.flow
        if st.prev_luma is None:
            raw.append(1.0)
        else:
            raw.append(float((np.abs(st.luma - st.prev_luma) > cfg.change_threshold).mean()))
        scores.append(step.cut_score)
        camera = (0.0, 0.0) if step.is_key else _camera_from_tokens(step.tokens, cfg.flow_scale_px)
        if step.cut_score >= raw[-1]:
            # Compensating the camera motion does not explain the change better than no
            # motion: the median flow was dragged by a large moving object on weak
            # texture (measured on procedural scenes), not a camera move.
            camera = (0.0, 0.0)
        pts.append(st.frame.pts_s)
        keys.append(step.is_key)
        cam_x.append(camera[0])
        cam_y.append(camera[1])
        regions.append([] if step.is_key else _regions(f, camera, config, grid.fps_hz))
    pts_s = np.asarray(pts, np.float64)
    if len(pts_s):
        pts_s -= pts_s[0]
    return Measurements(
        pts_s=pts_s,
        is_key=np.asarray(keys, bool),
        cut_score=np.asarray(scores, np.float32),
        raw_change=np.asarray(raw, np.float32),
        camera_dx=np.asarray(cam_x, np.float32),
        camera_dy=np.asarray(cam_y, np.float32),
        regions=regions,
        width=grid.width,
        height=grid.height,
        fps_hz=grid.fps_hz,
    )


# ---------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------


def _onset_s(m: Measurements, t: int) -> float:
    """Media time at which something first seen in step ``t``'s flow happened.

    The flow of step ``t`` covers (pts[t-1], pts[t]]: its midpoint is the estimate.
    """
    return float(0.5 * (m.pts_s[t - 1] + m.pts_s[t])) if t > 0 else float(m.pts_s[0])


def _detect_cuts(m: Measurements, cfg: AutolabelConfig) -> list[Event]:
    events: list[Event] = []
    # A key view whose frames barely differ without compensation came from a wrong
    # camera estimate (flow fooled by a moving object on weak texture), not a cut.
    cuts = m.is_key & (m.raw_change >= cfg.cut_min_raw_change)
    for t in np.nonzero(cuts)[0][1:] if m.n_steps else []:
        t_s = _onset_s(m, int(t))
        if not events or t_s - events[-1].t_s >= cfg.cut_min_gap_s:
            events.append(Event(t_s=round(t_s, 3), kind="cut"))
    return events


def _camera_moves(m: Measurements, cfg: AutolabelConfig, *, vertical: bool) -> list[tuple[int, int, int]]:
    """Runs of camera motion along one axis: ``(sign, first step, last step)``.

    ``sign`` is the sign of the content motion (+1: content moves right, or down when
    ``vertical``). A run starts above ``pan_start_px_s``, continues while the camera is
    at least ``pan_stop_px_s`` fast that way (hysteresis), runs of the same sign less than
    ``pan_merge_s`` apart merge, and a kept run lasts ``pan_min_s``, moves the view by
    ``pan_min_fraction`` of the frame's width (height when ``vertical``), and explains the
    change: summed over its steps, the change left after compensating the camera
    (``cut_score``) is at most ``pan_max_residual`` (``tilt_max_residual``) of the
    uncompensated change. A step counts for the axis along which the camera moves more.

    The residual check: procedural pans leave at most 0.1 % (scene clips 0-11, 12 s), and
    so does a synthetic tilt over a photo; on the training footage's talking heads over a
    plain blue wall (``franck``, ``cap12_edit``) and a pen pushing a coin over a plain
    table (``motion.mov``) the median flow follows the person or the pen and leaves
    29-84 % (pans 38-84 %, tilts 29-48 %). A pan that follows an object over a weak
    texture leaves that object's share too (81 % for a person filling a fifth of a
    synthetic clip), so the check also drops such pans. It is off for pans by default (the
    tables above were measured without it); :mod:`models.data.label` sets it to 0.25.
    """
    along, across = (m.camera_dy, m.camera_dx) if vertical else (m.camera_dx, m.camera_dy)
    speed = along * m.fps_hz  # px/s of content motion
    dominant = np.abs(along) > np.abs(across) if vertical else np.abs(along) >= np.abs(across)
    runs: list[list[int]] = []  # [sign, first step, last step]
    t = 0
    while t < m.n_steps:
        if m.is_key[t] or not dominant[t] or abs(speed[t]) < cfg.pan_start_px_s:
            t += 1
            continue
        sign = 1 if speed[t] > 0 else -1
        end = t
        while (end + 1 < m.n_steps and not m.is_key[end + 1]
               and sign * speed[end + 1] >= cfg.pan_stop_px_s):
            end += 1
        runs.append([sign, t, end])
        t = end + 1
    merged: list[list[int]] = []
    for run in runs:
        last = merged[-1] if merged else None
        if (last is not None and last[0] == run[0]
                and m.pts_s[run[1]] - m.pts_s[last[2]] < cfg.pan_merge_s
                and not m.is_key[last[2] + 1 : run[1] + 1].any()):
            last[2] = run[2]
        else:
            merged.append(run)
    extent = m.height if vertical else m.width
    max_residual = cfg.tilt_max_residual if vertical else cfg.pan_max_residual
    kept = []
    for sign, first, end in merged:
        duration_s = (end - first + 1) / m.fps_hz
        shift_px = abs(float(along[first : end + 1].sum()))
        residual = float(m.cut_score[first : end + 1].sum())
        if (duration_s >= cfg.pan_min_s and shift_px >= cfg.pan_min_fraction * extent
                and (max_residual >= 1.0 or residual <= max_residual * float(m.raw_change[first : end + 1].sum()))):
            kept.append((sign, first, end))
    return kept


def _detect_pans(m: Measurements, cfg: AutolabelConfig) -> list[Event]:
    # Content moving right (sign +1) means the camera pans left.
    return [Event(t_s=round(_onset_s(m, first), 3), kind="pan_left" if sign > 0 else "pan_right")
            for sign, first, _ in _camera_moves(m, cfg, vertical=False)]


def detect_tilts(m: Measurements, config: AutolabelConfig = AutolabelConfig()) -> list[Event]:
    """Detects the camera tilting up or down (vertical pans), as pans are detected.

    The thresholds are the pans' (``pan_*``; the view must move by ``pan_min_fraction``
    of its height), and a tilt must explain the view's change (``tilt_max_residual``; see
    ``_camera_moves``). Content moving down means the camera tilts up. Tilts are not among
    :data:`LABEL_KINDS` (procedural clips script none, and no transcript event kind
    names them): :func:`detect_events` leaves them out, and :mod:`models.data.label`
    says them as lines.

    Args:
        m: Measurements from :func:`measure_video`.
        config: Thresholds.

    Returns:
        ``"tilt_up"`` / ``"tilt_down"`` events sorted by time, each timed at the start
        of the tilt.
    """
    return [Event(t_s=round(_onset_s(m, first), 3), kind="tilt_up" if sign > 0 else "tilt_down")
            for sign, first, _ in _camera_moves(m, config, vertical=True)]


@dataclass
class _Track:
    steps: list[int] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)


def _tracks(m: Measurements, cfg: AutolabelConfig) -> list[_Track]:
    """Links moving regions step to step (greedy nearest to the predicted position)."""
    done: list[_Track] = []
    live: list[_Track] = []
    for t in range(m.n_steps):
        if m.is_key[t]:
            done += live
            live = []
            continue
        free = list(m.regions[t])
        still: list[_Track] = []
        pairs = []
        for i, tr in enumerate(live):
            last = tr.regions[-1]
            gap = t - tr.steps[-1]
            px, py = last.cx + gap * last.abs_dx, last.cy + gap * last.abs_dy
            for j, r in enumerate(free):
                d = math.hypot(r.cx - px, r.cy - py)
                if r.x0 <= px <= r.x1 and abs(r.cy - py) <= cfg.object_link_px:
                    d = min(d, cfg.object_link_px)  # swallowed by a larger region
                if d <= cfg.object_link_px:
                    pairs.append((d, i, j))
        used_t, used_r = set(), set()
        for _, i, j in sorted(pairs):
            if i in used_t or j in used_r:
                continue
            used_t.add(i)
            used_r.add(j)
            live[i].steps.append(t)
            live[i].regions.append(free[j])
        for i, tr in enumerate(live):
            # A track survives one step without a region (flow dropouts), then ends.
            (still if i in used_t or t - tr.steps[-1] <= 1 else done).append(tr)
        for j, r in enumerate(free):
            if j not in used_r:
                still.append(_Track([t], [r]))
        live = still
    done += live
    return sorted(done, key=lambda tr: tr.steps[0])


def _detect_objects(m: Measurements, cfg: AutolabelConfig) -> list[Event]:
    events: list[Event] = []
    # While the camera moves, objects cross the borders because of the camera and the
    # flow on them near the border is unreliable: no enter/leave then (and one step
    # around), which removed most false leaves on procedural scenes. Nor a move: the
    # residual flow is then the least reliable.
    panning = np.abs(m.camera_dx) * m.fps_hz >= cfg.pan_stop_px_s
    panning = panning | np.roll(panning, 1) | np.roll(panning, -1)
    for tr in _tracks(m, cfg):
        if len(tr.steps) < cfg.object_min_steps:
            continue
        n_before = len(events)
        _enter_leave(m, tr, cfg, panning, events)
        spoken = [e.t_s for e in events[n_before:]]
        events += _moves(m, tr, cfg, panning, spoken)
    return events


def _enter_leave(m: Measurements, tr: _Track, cfg: AutolabelConfig, panning: np.ndarray, events: list[Event]) -> None:
    """Appends the enter and leave events of one track to ``events``."""
    w = m.width
    lookback = round(cfg.leave_lookback_s * m.fps_hz)
    min_dx = cfg.object_motion_px_s / m.fps_hz
    first, last = tr.regions[0], tr.regions[-1]
    # Enter: appears at a border, moving inward (and not in the first flow of a shot,
    # where whatever moves was already in view).
    # The flow of the first step is unreliable on the object (it was not in the
    # previous frame: occlusion), so the direction is read from the next steps.
    shot_start = tr.steps[0] == 0 or m.is_key[tr.steps[0] - 1]
    inward_dx = float(np.mean([r.rel_dx for r in tr.regions[1:4]]))
    if not shot_start and not panning[tr.steps[0]]:
        if first.x0 <= cfg.border_px and inward_dx >= min_dx:
            events.append(Event(t_s=round(_onset_s(m, tr.steps[0]), 3), kind="enter:left"))
        elif first.x1 >= w - cfg.border_px and inward_dx <= -min_dx:
            events.append(Event(t_s=round(_onset_s(m, tr.steps[0]), 3), kind="enter:right"))
    # Leave: last seen at (or one step from) a border, moving outward, and the track
    # ends before the clip does.
    if tr.steps[-1] >= m.n_steps - 1 or panning[tr.steps[-1]]:
        return
    reach = max(cfg.border_px, abs(last.abs_dx))
    side = None
    if last.x0 <= reach and last.rel_dx <= -min_dx:
        side = "left"
    elif last.x1 >= w - reach and last.rel_dx >= min_dx:
        side = "right"
    if side is None:
        return
    sign = -1 if side == "left" else 1
    # Time the leave at the start of the outward motion that took it out.
    k = len(tr.steps) - 1
    while k > 0 and tr.steps[-1] - tr.steps[k - 1] <= lookback and sign * tr.regions[k - 1].rel_dx >= min_dx:
        k -= 1
    events.append(Event(t_s=round(_onset_s(m, tr.steps[k]), 3), kind=f"leave:{side}"))


def _describe_move(m: Measurements, regions: list[Region], cfg: AutolabelConfig, *, way_known: bool) -> str:
    """``"move:{place}:{way}:{size}"`` of a run of regions.

    ``way`` is ``-`` when the direction is unclear or not ``way_known`` (the first line
    about a track says where it is, not where it goes).
    """
    cx = float(np.median([r.cx for r in regions]))
    place = "left" if cx < m.width / 3 else "right" if cx >= 2 * m.width / 3 else "middle"
    size = "big" if np.mean([r.area_fraction for r in regions]) >= cfg.move_big_fraction else "small"
    # Travel as a part of the frame's width (x) and height (y).
    tx = sum(r.abs_dx for r in regions) / m.width
    ty = sum(r.abs_dy for r in regions) / m.height
    way = "-"
    if way_known and abs(tx) >= max(cfg.move_travel_fraction, 2 * abs(ty)):
        way = "right" if tx > 0 else "left"
    elif way_known and abs(ty) >= max(cfg.move_travel_fraction, 2 * abs(tx)):
        way = "down" if ty > 0 else "up"
    return f"move:{place}:{way}:{size}"


def _moves(m: Measurements, tr: _Track, cfg: AutolabelConfig, panning: np.ndarray, spoken: list[float]) -> list[Event]:
    """Move events of one track; ``spoken``: times of its other events (kept apart)."""
    inside = [
        cfg.border_px < r.x0 and r.x1 < m.width - cfg.border_px and not panning[t]
        for t, r in zip(tr.steps, tr.regions, strict=True)
    ]
    spoken = list(spoken)
    events: list[Event] = []
    a = 0
    while a < len(tr.steps):
        # The longest run from a: inside steps, at most one step missing between two.
        b = a
        while inside[a] and b + 1 < len(tr.steps) and inside[b + 1] and tr.steps[b + 1] - tr.steps[b] <= 2:
            b += 1
            if (tr.steps[b] - tr.steps[a] + 1) / m.fps_hz >= cfg.move_min_s - 1e-6:
                break
        t_s = _onset_s(m, tr.steps[a])
        window = tr.regions[a : b + 1]
        if (
            inside[a]
            and (tr.steps[b] - tr.steps[a] + 1) / m.fps_hz >= cfg.move_min_s - 1e-6
            and np.mean([r.area_fraction for r in window]) >= cfg.move_min_fraction
            and all(abs(t_s - s) >= cfg.move_repeat_s for s in spoken)
        ):
            kind = _describe_move(m, window, cfg, way_known=any(s < t_s for s in spoken))
            events.append(Event(t_s=round(t_s, 3), kind=kind))
            spoken.append(t_s)
        a += 1
    return events


def detect_events(m: Measurements, config: AutolabelConfig = AutolabelConfig()) -> list[Event]:
    """Detects pans, cuts, and objects entering, leaving or moving inside the frame.

    Args:
        m: Measurements from :func:`measure_video`.
        config: Thresholds.

    Returns:
        Events sorted by time. ``enter`` and ``leave`` kinds carry their side as
        ``"enter:left"``, ``"leave:right"``...; ``move`` carries its place (left,
        middle, right), direction (left, right, up, down, or ``-``) and size (big,
        small) as ``"move:left:-:big"``. :func:`commentary` turns these into lines.
    """
    events = _detect_cuts(m, config) + _detect_pans(m, config) + _detect_objects(m, config)
    return sorted(events, key=lambda e: (e.t_s, e.kind))


def _fillable(kind: str) -> tuple[str, ...]:
    """Templates of ``kind`` whose slots are all measurable (``{side}`` at most)."""
    return tuple(t for t in TEMPLATES[kind] if set(re.findall(r"{(\w+)}", t)) <= {"side"})


def lines_for(detected_kind: str) -> tuple[str, tuple[str, ...]]:
    """Event kind and the lines that can describe a detected event.

    Args:
        detected_kind: As from :func:`detect_events`: ``"cut"``, ``"enter:left"``,
            ``"move:middle:up:big"`` (place, way or ``-``, size).

    Returns:
        ``(kind, lines)``: the procedural kind and its filled templates that fit. A move
        with a way is told by its way, else by its place ("big" lines for big ones).
    """
    kind, *detail = detected_kind.split(":")
    if kind != "move":
        side = detail[0] if detail else ""
        return kind, tuple(t.format(side=side) for t in _fillable(kind))
    place, way, size = detail
    if way != "-":
        fits = [t for t in TEMPLATES["move"] if "{way}" in t]
    else:
        fits = [t for t in TEMPLATES["move"] if "{place}" in t and ("big" in t.split()) == (size == "big")]
    return kind, tuple(t.format(place=MOVE_PLACES[place], way=MOVE_WAYS.get(way, "")) for t in fits)


@dataclass(frozen=True, slots=True)
class LineCandidate:
    """Something worth a line: when it happened, what may be said about it, how much it matters.

    Attributes:
        t_s: Media time of what the line describes, seconds from the first frame.
        kind: Event kind stored with the line (:func:`schedule_lines` does not read it).
        options: Lines that may describe it (one is drawn); lowercase words.
        priority: Lines of a lower priority are placed first, so a line of priority 0 is
            never pushed out by one of priority 1.
    """

    t_s: float
    kind: str
    options: tuple[str, ...]
    priority: int = 0


def schedule_lines(
    candidates: list[LineCandidate],
    *,
    duration_s: float,
    seed: int = 0,
    config: AutolabelConfig = AutolabelConfig(),
    min_spacing_s: float = 0.0,
) -> list[tuple[Event, Line]]:
    """Times one line per candidate, procedural-style, and drops those that do not fit.

    One of a candidate's options and a reaction delay (uniform in ``REACTION_DELAY_S``)
    are drawn per candidate in the given order. Candidates are then placed by priority,
    in the given order within one: a line starts at the earliest time after its event
    plus the delay at which it overlaps no placed line (``LINE_GAP_S`` of silence on
    either side) and starts at least ``min_spacing_s`` from every placed line's start;
    it lasts ``SECONDS_PER_WORD`` per word. A candidate whose line would start more than
    ``max_line_lag_s`` after its event, or at or after ``duration_s``, is dropped. With a
    single priority and time-sorted candidates each line simply follows the previous one.

    Args:
        candidates: What could be said, sorted by time.
        duration_s: Clip length, seconds.
        seed: Seed of the option and delay choices.
        config: ``max_line_lag_s``.
        min_spacing_s: Smallest time between two line starts, seconds.

    Returns:
        ``(event, line)`` per kept candidate, sorted by line start; the event holds the
        candidate's time (rounded to ms) and kind.
    """
    rng = np.random.default_rng(seed)
    drawn = []
    for c in candidates:
        text = c.options[int(rng.integers(len(c.options)))]
        drawn.append((c, text, float(rng.uniform(*REACTION_DELAY_S))))
    placed: list[tuple[float, float, LineCandidate, str]] = []  # (start, end, candidate, text), by start
    for c, text, delay in sorted(drawn, key=lambda d: d[0].priority):
        length_s = len(text.split()) * SECONDS_PER_WORD
        start = c.t_s + delay
        for p_start, p_end, _, _ in placed:
            overlaps = start < p_end + LINE_GAP_S and p_start < start + length_s + LINE_GAP_S
            if overlaps or abs(start - p_start) < min_spacing_s:
                start = max(p_end + LINE_GAP_S, p_start + min_spacing_s)
        if start - c.t_s > config.max_line_lag_s or start >= duration_s:
            continue
        placed.append((start, start + length_s, c, text))
        placed.sort(key=lambda p: p[0])
    return [(Event(t_s=round(c.t_s, 3), kind=c.kind), Line(start_s=round(start, 3), end_s=round(end, 3), text=text))
            for start, end, c, text in placed]


def commentary(
    events: list[Event], *, duration_s: float, seed: int = 0, config: AutolabelConfig = AutolabelConfig()
) -> tuple[list[Event], list[Line]]:
    """Turns detected events into procedural-style timed lines.

    Each line starts a reaction delay (uniform in ``REACTION_DELAY_S``) after its event
    and at least ``LINE_GAP_S`` after the previous line ends, and lasts
    ``SECONDS_PER_WORD`` per word. An event whose line would start more than
    ``max_line_lag_s`` after it, or after ``duration_s``, is dropped with its line
    (:func:`schedule_lines` with one priority).

    Args:
        events: Detected events sorted by time (kinds as from :func:`detect_events`).
        duration_s: Clip length, seconds.
        seed: Seed of the template and delay choices.
        config: Thresholds.

    Returns:
        ``(events, lines)``: one line per kept event, same order, kinds in ``EVENT_KINDS``.
    """
    candidates = [LineCandidate(e.t_s, *lines_for(e.kind)) for e in events]
    pairs = schedule_lines(candidates, duration_s=duration_s, seed=seed, config=config)
    return [e for e, _ in pairs], [line for _, line in pairs]


def label_video(
    path: Path, *, config: AutolabelConfig = AutolabelConfig(), seed: int = 0
) -> tuple[list[Event], list[Line]]:
    """Labels a video: detected events and their commentary lines.

    Args:
        path: A video file.
        config: Thresholds.
        seed: Seed of the template and reaction-delay choices.

    Returns:
        ``(events, lines)`` as :func:`models.data.procedural.read_transcript` returns them;
        event kinds are among :data:`LABEL_KINDS`, times in seconds from the first frame.

    Raises:
        MediaError: If the file cannot be decoded.
    """
    m = measure_video(Path(path), config=config)
    return commentary(detect_events(m, config), duration_s=m.duration_s, seed=seed, config=config)


def write_labels(
    path: Path, *, config: AutolabelConfig = AutolabelConfig(), seed: int = 0, extra: dict[str, Any] | None = None
) -> Path:
    """Labels a video and writes its transcript next to it (``path.with_suffix(".json")``).

    The JSON holds ``{"source": "autolabel", "thresholds": {...}, "seed", "events":
    [{"t_s", "kind"}], "lines": [{"start_s", "end_s", "text"}]}`` plus ``extra``; it is
    written to a temporary name and renamed into place.

    Args:
        path: The video file.
        config: Thresholds (stored under ``"thresholds"``).
        seed: Seed of the template choices.
        extra: More top-level fields (e.g. how the clip was made).

    Returns:
        The transcript path.

    Raises:
        ValueError: If ``path`` ends in ``.json``.
        MediaError: If the video cannot be decoded.
        OSError: If the file cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise ValueError(f"video path must not end in .json, got {path}")
    events, lines = label_video(path, config=config, seed=seed)
    data: dict[str, Any] = {
        "source": "autolabel",
        "thresholds": dataclasses.asdict(config),
        "seed": seed,
        **(extra or {}),
        "events": [dataclasses.asdict(e) for e in events],
        "lines": [dataclasses.asdict(line) for line in lines],
    }
    return write_transcript(path, data)


# ---------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------


def augment_clip(
    src: Path,
    out: Path,
    *,
    seed: int,
    duration_s: float | None = None,
    flip: bool | None = None,
    min_keep: float = 0.5,
    max_width: int = 640,
    config: AutolabelConfig = AutolabelConfig(),
) -> Path:
    """Writes a varied, labelled training clip cut from a real video.

    Random choices (from ``seed``): a start offset, a crop keeping at least ``min_keep``
    of each side, and a horizontal flip (probability 1/2 unless ``flip`` is given).
    Time is never reversed (motion would mean something else). The result is H.264
    (yuv420p, crf 23) at the source frame rate (25 fps if unknown), scaled down to at
    most ``max_width`` pixels wide, then labelled with :func:`write_labels` (labels are
    measured on the new video, so a flip swaps left and right by itself).

    Args:
        src: Source video file.
        out: Output video path (``.mp4``); its ``.json`` transcript is written next to it.
        seed: Seed of the random choices.
        duration_s: Output length, seconds; None: from the offset to the end of the
            source (offset then within the first 30 % of it).
        flip: Force the flip on or off; None draws it.
        min_keep: Smallest kept fraction of the width and of the height, in (0, 1].
        max_width: Largest output width, px.
        config: Labelling thresholds.

    Returns:
        ``out``.

    Raises:
        ValueError: If ``min_keep`` or ``duration_s`` is out of range, or ``out`` ends
            in ``.json``.
        MediaError: If the source cannot be read or has no frame after the offset.
        OSError: If a file cannot be written.
    """
    if not 0.0 < min_keep <= 1.0:
        raise ValueError(f"min_keep must be in (0, 1], got {min_keep}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    out = Path(out)
    if out.suffix.lower() == ".json":
        raise ValueError(f"video path must not end in .json, got {out}")
    info = realclips.probe_video(src)
    aug = realclips.draw_augmentation(np.random.default_rng(seed), width=info.width, height=info.height,
                                      total_s=info.duration_s, duration_s=duration_s, min_keep=min_keep, flip=flip)
    out_w, out_h, rate, _ = realclips.write_segment(src, out, offset_s=aug.offset_s, duration_s=duration_s,
                                                    crop_xywh=aug.crop_xywh, flip=aug.flip, max_width=max_width)
    offset_s, (x0, y0, crop_w, crop_h), do_flip = aug.offset_s, aug.crop_xywh, aug.flip
    augmentation = {
        "source_video": str(src),
        "offset_s": round(offset_s, 3),
        "crop_xywh": [x0, y0, crop_w, crop_h],
        "flip": do_flip,
        "size": [out_w, out_h],
        "fps": float(rate),
        "augment_seed": seed,
    }
    write_labels(out, config=config, seed=seed, extra={"augmentation": augmentation})
    return out


def make_real_dataset(
    sources: list[Path],
    out_dir: Path,
    n_clips: int,
    *,
    seed: int = 0,
    duration_s: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Writes ``real_00000.mp4`` / ``.json`` ... into ``out_dir`` from real videos.

    Clip ``i`` is :func:`augment_clip` of ``sources[i % len(sources)]`` with a seed drawn
    from ``seed``, so the same arguments write the same dataset.

    Args:
        sources: Real video files, cycled through.
        out_dir: Output directory, created if missing.
        n_clips: Number of clips.
        seed: Dataset seed.
        duration_s: Length of each clip (None: see :func:`augment_clip`).
        progress: Called with the number of clips written after each clip.

    Returns:
        The video paths, in order.

    Raises:
        ValueError: If ``n_clips < 0`` or ``sources`` is empty while ``n_clips > 0``.
        MediaError: If a source cannot be read.
        OSError: If a file cannot be written.
    """
    if n_clips < 0:
        raise ValueError(f"n_clips must be >= 0, got {n_clips}")
    if n_clips and not sources:
        raise ValueError("no source videos")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, n_clips)
    paths = []
    for i in range(n_clips):
        src = Path(sources[i % len(sources)])
        paths.append(augment_clip(src, out_dir / f"real_{i:05d}.mp4", seed=int(seeds[i]), duration_s=duration_s))
        log.debug("wrote %s from %s", paths[-1], src)
        if progress is not None:
            progress(i + 1)
    return paths


# ---------------------------------------------------------------------------------------
# Honest check against scripted events
# ---------------------------------------------------------------------------------------


def _same_kind(truth: str, found: str) -> bool:
    """``truth`` without a side (``"leave"``) matches any side of ``found``."""
    return found == truth or (":" not in truth and found.partition(":")[0] == truth)


def match_events(truth: list[Event], found: list[Event], *, tolerance_s: float = 1.0) -> int:
    """Number of true events matched by a found event of the same kind within ``tolerance_s``.

    Kinds may carry a side (``"enter:left"``); a true kind without one matches any
    side. Each found event matches at most one true event (greedy by time distance).
    """
    pairs = sorted(
        (abs(f.t_s - t.t_s), i, j)
        for i, t in enumerate(truth)
        for j, f in enumerate(found)
        if _same_kind(t.kind, f.kind) and abs(f.t_s - t.t_s) <= tolerance_s
    )
    used_t, used_f = set(), set()
    for _, i, j in pairs:
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t)


def _with_side(kind: str, text: str) -> str:
    """``"enter"`` + line ``"... from the left"`` -> ``"enter:left"``; other kinds unchanged."""
    words = text.split()
    if kind in ("enter", "leave") and words[-1] in ("left", "right") and words[-3] in ("from", "to"):
        return f"{kind}:{words[-1]}"
    return kind


def evaluate_on_scenes(
    work_dir: Path,
    seeds: range = range(10),
    *,
    duration_s: float = 20.0,
    tolerance_s: float = 1.0,
    config: AutolabelConfig = AutolabelConfig(),
) -> dict[str, dict[str, float]]:
    """Recall and precision of the detector against scripted procedural scene events.

    Args:
        work_dir: Where the clips are rendered (reused if present).
        seeds: Scene clip seeds.
        duration_s: Clip length, seconds.
        tolerance_s: Largest time error of a match, seconds.
        config: Thresholds.

    Returns:
        ``{kind: {"truth", "found", "matched", "recall", "precision"}}`` per kind of
        :data:`LABEL_KINDS` plus ``"all"`` (over :data:`SCRIPTED_KINDS`). An enter or
        leave matches only if its side is right, when the scripted line names the side
        (some leave lines do not). Scenes script no ``move``: its entry only counts
        the move events found (recall and precision NaN).
    """
    stats: dict[str, dict[str, float]] = {k: {"truth": 0, "found": 0, "matched": 0} for k in (*LABEL_KINDS, "all")}
    for seed in seeds:
        spec = ClipSpec(kind="scene", seed=seed, duration_s=duration_s)
        path = Path(work_dir) / f"scene_{seed:05d}.mp4"
        if not path.is_file():
            write_clip(spec, path)
        events, lines = read_transcript(path)
        truth = [Event(e.t_s, _with_side(e.kind, line.text)) for e, line in zip(events, lines, strict=True)]
        found = detect_events(measure_video(path, config=config), config)
        for kind in LABEL_KINDS:
            t = [e for e in truth if e.kind.partition(":")[0] == kind]
            f = [e for e in found if e.kind.partition(":")[0] == kind]
            n = match_events(t, f, tolerance_s=tolerance_s)
            for key, value in (("truth", len(t)), ("found", len(f)), ("matched", n)):
                stats[kind][key] += value
                if kind in SCRIPTED_KINDS:
                    stats["all"][key] += value
    for s in stats.values():
        s["recall"] = s["matched"] / s["truth"] if s["truth"] else float("nan")
        s["precision"] = s["matched"] / s["found"] if s["found"] else float("nan")
    return stats



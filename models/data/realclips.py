"""Training and held-out clips from real footage: video segments, and photos animated with pans, zooms and composites.

The footage catalogue (:mod:`mmduplex.footage`) holds real videos and photos split by
*source*. :func:`make_real_clips` turns it into two flat folders of clips, MP4 H.264
yuv420p at :data:`FPS` fps, that ``mmduplex label`` then labels (it writes ``<clip>.json``
next to each clip) and the trainer reads::

    out_dir/train/<source>-<i>-<what>.mp4     + <clip>.gen.json
    out_dir/heldout/<source>-<i>-<what>.mp4   + <clip>.gen.json

Held-out clips come only from held-out sources; a composite takes its object and its
background from sources of the clip's own split.

**Videos.** A video longer than :data:`SEGMENT_S`'s upper bound is cut into segments of
10-20 s: at a scene cut where FFmpeg's ``scdet`` filter shows one (its default threshold,
10, not tuned here), else at evenly spaced times (:func:`split_segments`). Segments are
re-encoded at most ``max_width`` px wide and resampled to :data:`FPS` fps by presentation
time (a source frame is shown until the next one is due). Training clips are
augmentations of a training source's segments (:func:`draw_augmentation`): a start offset
in the first 30 % of the segment, a crop keeping at least :data:`MIN_KEEP` of each side, a
horizontal flip with probability 1/2; time is never reversed. Held-out segments are
written as they are (scaled and resampled only).

**Photos.** A clip of 6-10 s (:data:`PHOTO_CLIP_S`) at ``photo_size`` (4:3, like the model
grid) looks at a photo through a moving window (:func:`render_camera_move`): a pan or
tilt (``pan_left``, ``pan_right``, ``tilt_up``, ``tilt_down``: the *camera* turns that
way, so the content moves the other way on screen, as ``models.data.autolabel`` names
pans) at 7-14 % of the window per second, eased in and out, or a zoom (``zoom_in``,
``zoom_out``) by 1.4-2x, onto the photo's object when it has a cut-out. Or a composite
(:func:`render_composite`): an object cut out of one photo slides in from the left or the
right over another photo at 20-40 % of the frame width per second, stops, and in half the
clips walks on and out of the other side, so that "a person walks in from the left" or
"a cat comes in from the right" happens on real pixels.

The cut-out is a rectangle with soft edges (alpha ramps over 12 % of its shorter side,
smoothstepped): real photos come without masks, and a box is what the labeller's own
detector sees. The boxes of :data:`CUTOUTS` are the best box of the project's COCO
detector (:mod:`models.vision.detector`, CenterNet-MobileNetV3, score >= 0.4) for that
object on that photo, rounded to 0.01 of the photo and checked by eye; the name is what
the photo shows (the detector called the quokka a bear and the cheetah a bird, so those
carry no COCO class). Photos whose object fills the whole frame (lion, dog, car) have no
cut-out, except the cat of ``chelsea`` (a close-up of its face: it comes in as a framed
face). An object with a facing enters moving the way it faces; in training, a person or
a cat may also be mirrored (an augmentation, never in held-out clips).

Each clip's ``<clip>.gen.json`` says what was done: ``{"generator", "version", "split",
"source", "sources", "kind": "segment"|"camera"|"composite", "plan": {...},
"events": [{"t_s", "end_s", "kind", ...}], "object", "direction", "width", "height",
"fps", "frames", "duration_s", "licence", "description", "animated"}``. ``events`` is the
ground truth of a generated motion: ``pan_left`` ... ``zoom_out`` for a camera move,
``enter:<side>`` (the side it comes in from, from the first visible frame until it stops)
and ``leave:<side>`` (the side it goes out of, from when it moves on until it is gone) for
a composite; real segments have none (their labels come from the labeller).
:func:`make_real_clips` is deterministic for a seed and skips a clip whose
``.gen.json`` holds the same plan.

Measured on the footage catalogue (December 2026, 2 cores shared with other work, load
average ~4; ``make_real_clips(out, seed=0)``, i.e. 20 clips per training source, 4 per
held-out photo): 320 training clips from 16 sources (100 video segments, 140 camera moves,
80 composites: person 35, cat, cheetah, motorcycle, quokka 10 each, bus 5; 51 of them
far), 43.7 min in all; 36 held-out clips from 11 sources (8 segments, 22 camera moves, 6
composites), 5.8 min. The first 12 clips per source took 435 s wall; a second run skips
everything in 7 s. ``scdet`` found no cut in the five videos longer than 20 s (three
talking heads, the campus and the tree), so they were split evenly; it finds five in
``bikes`` (10 s, one segment).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import av
import numpy as np
from av.filter import Graph
from PIL import Image

from models.vision import video
from streams.errors import MediaError

if TYPE_CHECKING:
    from mmduplex.footage import FootageItem

__all__ = [
    "CAMERA_MOTIONS",
    "CUTOUTS",
    "FPS",
    "GEN_SUFFIX",
    "MIN_KEEP",
    "PHOTO_CLIP_S",
    "PHOTO_SIZE",
    "SEGMENT_S",
    "Augmentation",
    "CameraPlan",
    "ClipJob",
    "CompositePlan",
    "Cutout",
    "SegmentPlan",
    "VideoInfo",
    "Window",
    "composite_track",
    "draw_augmentation",
    "draw_camera_move",
    "draw_composite",
    "find_cuts",
    "make_real_clips",
    "plan_clips",
    "probe_video",
    "read_photo",
    "render_camera_move",
    "render_composite",
    "run_job",
    "split_segments",
    "write_segment",
]

log = logging.getLogger(__name__)

FPS = 25
"""Frame rate of every generated clip, Hz."""
MAX_WIDTH = 640
"""Widest video segment, px (narrower sources are not scaled up)."""
PHOTO_SIZE = (480, 360)
"""Width and height of an animated photo clip, px (4:3, the model grid's aspect)."""
SEGMENT_S = (10.0, 20.0)
"""Shortest and longest segment a long video is cut into, seconds."""
PHOTO_CLIP_S = (6.0, 10.0)
"""Shortest and longest animated photo clip, seconds."""
MIN_KEEP = 0.6
"""Smallest part of each side a training crop keeps."""
CAMERA_MOTIONS: tuple[str, ...] = ("pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out")
"""Camera moves over a photo; pans and tilts name the way the camera turns."""
GEN_SUFFIX = ".gen.json"
"""Suffix of a clip's sidecar (``clip.mp4`` -> ``clip.gen.json``)."""
GEN_VERSION = 1

_CUT_THRESHOLD = 10.0  # scdet's default scene-change threshold (percent of the frame's mean absolute difference)
_PAN_SPEED = (0.07, 0.14)  # window widths (heights for tilts) per second
_PAN_MAX_TRAVEL = 0.75  # largest pan, window widths
_ZOOM_FACTOR = (1.4, 2.0)
_OBJECT_HEIGHT = (0.45, 0.75)  # cut-out height, part of the frame height
_FAR_OBJECT_HEIGHT = (0.15, 0.4)  # ... of a far object (training composites only)
_FAR_P = 0.5  # probability that a training composite's object is far
_OBJECT_MAX_WIDTH = 0.6  # widest cut-out, part of the frame width
_OBJECT_SPEED = (0.2, 0.4)  # frame widths per second
_FEATHER = 0.12  # soft edge, part of the cut-out's shorter side
_EPS_S = 1e-6


# ---------------------------------------------------------------------------------------
# Video segments (shared with models.data.autolabel.augment_clip)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's header says.

    Attributes:
        width: Frame width, px.
        height: Frame height, px.
        fps: Average frame rate, Hz (25 when unknown or outside 1-120).
        duration_s: Length, seconds (``math.inf`` when the header does not say).
    """

    width: int
    height: int
    fps: Fraction
    duration_s: float


def probe_video(path: Path) -> VideoInfo:
    """Reads a video's size, rate and duration from its header (decodes nothing).

    Raises:
        MediaError: If the file cannot be opened or holds no video stream.
    """
    container = video.open_container(str(path))
    try:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25).limit_denominator(1001)
        if not 1 <= rate <= 120:
            rate = Fraction(25)
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = math.inf
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, rate, duration_s)
    finally:
        container.close()


@dataclass(frozen=True)
class Augmentation:
    """Random changes of a real video segment.

    Attributes:
        offset_s: Start, seconds after the segment's start.
        crop_xywh: Kept rectangle ``(x, y, width, height)`` in source pixels.
        flip: Mirrored left-right.
    """

    offset_s: float
    crop_xywh: tuple[int, int, int, int]
    flip: bool


def draw_augmentation(
    rng: np.random.Generator,
    *,
    width: int,
    height: int,
    total_s: float,
    duration_s: float | None = None,
    min_keep: float = 0.5,
    flip: bool | None = None,
) -> Augmentation:
    """Draws a start offset, a crop and a flip for a segment of a real video.

    Draws, in this order: the offset (uniform in the first 30 % of ``total_s`` when
    ``duration_s`` is None, else in ``[0, total_s - duration_s]``; 0 for an unknown
    length), the kept width and height fractions (uniform in ``[min_keep, 1]``), the
    crop's corner, the flip (probability 1/2, unless ``flip`` is given).

    Args:
        rng: Source of the draws.
        width: Source width, px.
        height: Source height, px.
        total_s: Length of what the offset is taken in, seconds (may be ``math.inf``).
        duration_s: Length of the output, seconds; None: to the end.
        min_keep: Smallest kept fraction of each side, in (0, 1].
        flip: Force the flip on or off; None draws it.

    Returns:
        The augmentation.

    Raises:
        ValueError: If ``min_keep`` is not in (0, 1].
    """
    if not 0.0 < min_keep <= 1.0:
        raise ValueError(f"min_keep must be in (0, 1], got {min_keep}")
    if not math.isfinite(total_s):
        offset_s = 0.0
    elif duration_s is None:
        offset_s = float(rng.uniform(0.0, 0.3 * total_s))
    else:
        offset_s = float(rng.uniform(0.0, max(total_s - duration_s, 0.0)))
    kw, kh = rng.uniform(min_keep, 1.0, 2)
    crop_w, crop_h = max(2, int(width * kw)), max(2, int(height * kh))
    x0, y0 = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    do_flip = bool(rng.integers(2)) if flip is None else flip
    return Augmentation(offset_s=offset_s, crop_xywh=(x0, y0, crop_w, crop_h), flip=do_flip)


def _encode(frames: Iterable[np.ndarray], out: Path, *, fps: Fraction, size: tuple[int, int],
            threads: int = 0, empty: str = "no frame to write") -> int:
    """Encodes RGB frames to an H.264 MP4 (yuv420p, crf 23, veryfast, a keyframe every 2 s).

    Frames of another size are scaled to ``size``. Written to ``out.part``, renamed when done.

    Args:
        frames: uint8 [H, W, 3] RGB frames.
        out: Output path.
        fps: Frame rate, Hz.
        size: Output ``(width, height)``, px, both even.
        threads: x264 threads (0: FFmpeg's choice).
        empty: The reason given when no frame came.

    Returns:
        Frames written.

    Raises:
        MediaError: If no frame came, or FFmpeg fails.
        OSError: If the file cannot be written.
    """
    tmp = out.with_name(out.name + ".part")
    written = 0
    try:
        with av.open(str(tmp), mode="w", format="mp4") as sink:
            enc = sink.add_stream("libx264", rate=fps)
            enc.width, enc.height, enc.pix_fmt = size[0], size[1], "yuv420p"
            enc.codec_context.gop_size = max(1, round(2 * fps))
            enc.codec_context.thread_count = threads
            enc.options = {"crf": "23", "preset": "veryfast"}
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                frame.pts, frame.time_base = written, 1 / fps
                sink.mux(enc.encode(frame))
                written += 1
            sink.mux(enc.encode(None))
        if not written:
            raise MediaError(empty)
        os.replace(tmp, out)
    except av.error.FFmpegError as exc:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"cannot write {out}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


def _timed_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  fps: Fraction) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decoded frames with their presentation times, seconds (counted at ``fps`` when a frame has none)."""
    n = 0
    for frame in container.decode(stream):
        pts, time_base = frame.pts, frame.time_base
        yield (float(pts * time_base) if pts is not None and time_base is not None else float(n / fps)), frame
        n += 1


def _resample(timed: Iterator[tuple[float, av.VideoFrame]], *, offset_s: float, n_max: float, fps: Fraction,
              source_fps: Fraction) -> Iterator[av.VideoFrame]:
    """The source frame showing at ``offset_s + k / fps`` for k = 0, 1, ... (the last one due by then)."""
    k, held, held_t = 0, None, 0.0
    for t_s, frame in timed:
        if held is not None:
            while k < n_max and offset_s + k / fps < t_s - _EPS_S:
                yield held
                k += 1
        if k >= n_max:
            return
        held, held_t = frame, t_s
    if held is not None:  # the last frame shows for one source frame period
        while k < n_max and offset_s + k / fps < held_t + 1 / source_fps - _EPS_S:
            yield held
            k += 1


@dataclass(frozen=True)
class SegmentPlan:
    """A segment of a real video, as it is written.

    Attributes:
        src: Source video file.
        offset_s: Start in the source's media time, seconds.
        duration_s: Length, seconds.
        crop_xywh: Kept rectangle in source pixels; None keeps the whole frame.
        flip: Mirrored left-right.
        max_width: Widest output, px.
        fps: Output frame rate, Hz.
    """

    src: str
    offset_s: float
    duration_s: float
    crop_xywh: tuple[int, int, int, int] | None
    flip: bool
    max_width: int
    fps: int


def write_segment(
    src: Path,
    out: Path,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    crop_xywh: tuple[int, int, int, int] | None = None,
    flip: bool = False,
    max_width: int = MAX_WIDTH,
    fps: Fraction | int | None = None,
    threads: int = 0,
) -> tuple[int, int, Fraction, int]:
    """Cuts, crops, mirrors and re-encodes a part of a video (H.264 yuv420p MP4).

    The source is decoded from the keyframe before ``offset_s``; the crop is scaled down to
    at most ``max_width`` px wide (even sizes). With ``fps`` None every source frame from
    ``offset_s`` on is written once at the source's rate; with ``fps`` the output shows, at
    each of its ticks, the last source frame due by then (frames repeat or drop).

    Args:
        src: Source video file.
        out: Output path (``.mp4``), written to ``out.part`` and renamed.
        offset_s: Start in the source's media time, seconds.
        duration_s: Length, seconds; None: to the end of the source.
        crop_xywh: Kept rectangle ``(x, y, width, height)`` in source pixels; None: all.
        flip: Mirror left-right.
        max_width: Widest output, px.
        fps: Output frame rate, Hz; None: the source's.
        threads: x264 threads (0: FFmpeg's choice).

    Returns:
        ``(width, height, fps, frames)`` of the output.

    Raises:
        ValueError: If ``duration_s`` is not positive or the crop lies outside the frame.
        MediaError: If the source cannot be read or has no frame after ``offset_s``.
        OSError: If the file cannot be written.
    """
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    info = probe_video(src)
    x0, y0, crop_w, crop_h = crop_xywh if crop_xywh is not None else (0, 0, info.width, info.height)
    if x0 < 0 or y0 < 0 or crop_w < 2 or crop_h < 2 or x0 + crop_w > info.width or y0 + crop_h > info.height:
        raise ValueError(f"crop {crop_xywh} does not fit a {info.width}x{info.height} frame")
    rate = info.fps if fps is None else Fraction(fps)
    scale = min(1.0, max_width / crop_w)
    size = (max(2, int(crop_w * scale) // 2 * 2), max(2, int(crop_h * scale) // 2 * 2))
    n_max = math.inf if duration_s is None else round(duration_s * rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    container = video.open_container(str(src))
    try:
        stream = container.streams.video[0]
        if offset_s > 0 and stream.time_base is not None:
            container.seek(int(offset_s / stream.time_base), stream=stream)  # keyframe before
        timed = _timed_frames(container, stream, info.fps)
        if fps is None:
            chosen: Iterator[av.VideoFrame] = itertools.islice(
                (f for t, f in timed if t + _EPS_S >= offset_s), None if duration_s is None else int(n_max))
        else:
            chosen = _resample(timed, offset_s=offset_s, n_max=n_max, fps=rate, source_fps=info.fps)

        def rgb_frames() -> Iterator[np.ndarray]:
            for frame in chosen:
                rgb = frame.to_ndarray(format="rgb24")[y0 : y0 + crop_h, x0 : x0 + crop_w]
                yield rgb[:, ::-1] if flip else rgb

        written = _encode(rgb_frames(), out, fps=rate, size=size, threads=threads,
                          empty=f"{src}: no frame after {offset_s:.2f} s")
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot cut {src}: {exc}") from None
    finally:
        container.close()
    return size[0], size[1], rate, written


def find_cuts(path: Path, *, threshold: float = _CUT_THRESHOLD) -> list[float]:
    """Scene cuts of a video: media times of the first frame of each new shot, seconds.

    FFmpeg's ``scdet`` filter on the frames scaled to 160 px wide (it scores the mean
    absolute difference to the previous frame, less that of the frame before, in percent).

    Args:
        path: A video file.
        threshold: Score above which a frame starts a new shot (``scdet``'s default: 10).

    Raises:
        MediaError: If the file cannot be decoded.
    """
    container = video.open_container(str(path))
    cuts: list[float] = []
    try:
        stream = container.streams.video[0]
        graph = Graph()
        src = graph.add_buffer(template=stream)
        scale = graph.add("scale", "w=160:h=-2")
        scdet = graph.add("scdet", f"threshold={threshold}")
        sink = graph.add("buffersink")
        src.link_to(scale)
        scale.link_to(scdet)
        scdet.link_to(sink)
        graph.configure()

        def drain() -> None:
            while True:
                try:
                    frame = graph.pull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    return
                if "lavfi.scd.time" in frame.metadata:
                    cuts.append(float(frame.metadata["lavfi.scd.time"]))

        for frame in container.decode(stream):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot read {path}: {exc}") from None
    finally:
        container.close()
    return cuts


def split_segments(duration_s: float, cuts: Sequence[float], *, min_s: float = SEGMENT_S[0],
                   max_s: float = SEGMENT_S[1]) -> list[tuple[float, float]]:
    """Cuts ``[0, duration_s]`` into segments of ``min_s``-``max_s`` seconds, at scene cuts where possible.

    A video no longer than ``max_s`` is one segment. Otherwise, from the start, the next
    boundary is the scene cut closest to an even split of what is left, among the cuts
    that leave this segment and the rest at least ``min_s`` long and this one at most
    ``max_s``; without one, the even split itself.

    Args:
        duration_s: Length of the video, seconds.
        cuts: Scene cut times, seconds.
        min_s: Shortest segment, seconds (a whole video may be shorter).
        max_s: Longest segment, seconds; at least ``2 * min_s``.

    Returns:
        ``(start_s, end_s)`` pairs covering ``[0, duration_s]`` in order.

    Raises:
        ValueError: If ``duration_s`` is not positive and finite, or ``max_s < 2 * min_s``.
    """
    if not 0 < duration_s < math.inf:
        raise ValueError(f"duration_s must be positive and finite, got {duration_s}")
    if max_s < 2 * min_s:
        raise ValueError(f"max_s must be at least 2 * min_s, got {min_s}, {max_s}")
    segments, start = [], 0.0
    while duration_s - start > max_s:
        left = duration_s - start
        target = start + left / math.ceil(left / max_s)
        lo, hi = start + min_s, min(start + max_s, duration_s - min_s)
        inside = [c for c in cuts if lo <= c <= hi]
        end = min(inside, key=lambda c: abs(c - target)) if inside else target
        segments.append((start, end))
        start = end
    segments.append((start, duration_s))
    return segments


# ---------------------------------------------------------------------------------------
# Photos: camera moves and composites
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cutout:
    """An object in a photo, cut out as a soft-edged rectangle.

    Attributes:
        name: What it is, in plain words (``person``, ``cat``, ``cheetah``).
        coco_class: Its COCO detection class when it has one, else None.
        box: ``(x0, y0, x1, y1)`` as fractions of the photo's width and height.
        facing: The way it faces (``"left"``/``"right"``), None if neither.
    """

    name: str
    coco_class: str | None
    box: tuple[float, float, float, float]
    facing: Literal["left", "right"] | None = None


CUTOUTS: dict[str, tuple[Cutout, ...]] = {
    # train
    "astronaut": (Cutout("person", "person", (0.02, 0.02, 0.72, 1.0)),),
    "camera": (Cutout("person", "person", (0.02, 0.12, 0.57, 1.0)),),
    "chelsea": (Cutout("cat", "cat", (0.0, 0.01, 0.91, 0.99)),),
    "motorcycle": (Cutout("motorcycle", "motorcycle", (0.16, 0.11, 0.91, 0.88), "right"),),
    "ultralytics-bus": (Cutout("person", "person", (0.06, 0.37, 0.27, 0.84)),
                        Cutout("bus", "bus", (0.02, 0.21, 0.97, 0.68), "left")),
    "ultralytics-zidane": (Cutout("person", "person", (0.58, 0.07, 0.89, 0.99)),),
    "quokka": (Cutout("quokka", None, (0.14, 0.07, 0.57, 0.98)),),
    "gradio-cheetah-running": (Cutout("cheetah", None, (0.17, 0.35, 0.75, 0.68), "right"),),
    # held out
    "opencv-messi": (Cutout("person", "person", (0.14, 0.19, 0.82, 0.96)),),
    "opencv-basketball": (Cutout("person", "person", (0.05, 0.16, 0.26, 0.99)),
                          Cutout("person", "person", (0.69, 0.04, 1.0, 0.98))),
    "opencv-squirrel": (Cutout("squirrel", None, (0.24, 0.27, 0.73, 0.86)),),
}
"""Cut-outs by footage source (see the module docstring for where the boxes come from)."""


def read_photo(path: Path) -> np.ndarray:
    """Decodes a photo (PNG, JPEG, any format FFmpeg reads) to uint8 [H, W, 3] RGB.

    Raises:
        MediaError: If the file cannot be decoded.
    """
    try:
        with av.open(str(path)) as container:
            return next(container.decode(video=0)).to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration, OSError) as exc:
        raise MediaError(f"cannot read photo {path}: {exc}") from None


def _photo_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a photo from its header."""
    info = probe_video(path)
    return info.width, info.height


@dataclass(frozen=True)
class Window:
    """A view of a photo, in the photo's pixels (the frame's aspect).

    Attributes:
        cx: Centre x, px.
        cy: Centre y, px.
        width: Width, px (the height follows from the frame's aspect).
    """

    cx: float
    cy: float
    width: float


@dataclass(frozen=True)
class CameraPlan:
    """A camera move over a photo.

    Attributes:
        photo: Photo file.
        motion: One of :data:`CAMERA_MOTIONS`.
        duration_s: Clip length, seconds.
        start_s: The move starts, seconds.
        end_s: The move ends, seconds (smoothstep easing between).
        start: Window before the move (photo pixels, after the flip).
        end: Window after it.
        flip: The photo is mirrored left-right first.
        focus: The cut-out a zoom closes in on (its name), else None.
        size: Frame ``(width, height)``, px.
        fps: Frame rate, Hz.
    """

    photo: str
    motion: str
    duration_s: float
    start_s: float
    end_s: float
    start: Window
    end: Window
    flip: bool
    focus: str | None
    size: tuple[int, int]
    fps: int


@dataclass(frozen=True)
class CompositePlan:
    """An object cut out of one photo sliding over another photo.

    The object enters from ``direction`` at ``speed_px_s`` from ``start_s`` (fully outside
    the frame then) until its centre reaches ``stop_cx``; with ``leave`` it moves on the
    same way from ``leave_start_s`` until it is out of the other side.

    Attributes:
        background: Background photo file.
        background_window: The (static) view of the background, its pixels after the flip.
        background_flip: The background is mirrored.
        object_photo: Photo the object is cut from.
        cutout: The object.
        object_flip: The cut-out is mirrored.
        object_size: Its ``(width, height)`` in the frame, px.
        bottom_y: Its bottom edge in the frame, px.
        direction: Side it comes in from (``"left"``/``"right"``).
        speed_px_s: Its speed, frame px per second.
        start_s: It starts to come in, seconds.
        stop_cx: Where its centre stops, frame px.
        leave: It moves on and out.
        leave_start_s: It moves on, seconds (meaningless without ``leave``).
        duration_s: Clip length, seconds.
        size: Frame ``(width, height)``, px.
        fps: Frame rate, Hz.
    """

    background: str
    background_window: Window
    background_flip: bool
    object_photo: str
    cutout: Cutout
    object_flip: bool
    object_size: tuple[int, int]
    bottom_y: float
    direction: Literal["left", "right"]
    speed_px_s: float
    start_s: float
    stop_cx: float
    leave: bool
    leave_start_s: float
    duration_s: float
    size: tuple[int, int]
    fps: int


def _between(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Uniform in ``[lo, hi]``; ``lo`` when rounding made ``hi`` a hair smaller."""
    return float(rng.uniform(lo, max(lo, hi)))


def _full_window(photo_wh: tuple[int, int], size: tuple[int, int]) -> tuple[float, float]:
    """Width and height of the largest frame-aspect window inside the photo, px."""
    aspect = size[0] / size[1]
    width = min(photo_wh[0], photo_wh[1] * aspect)
    return width, width / aspect


def draw_camera_move(rng: np.random.Generator, motion: str, photo: Path, photo_wh: tuple[int, int], *,
                     size: tuple[int, int] = PHOTO_SIZE, fps: int = FPS, flip: bool = False,
                     focus: Cutout | None = None) -> CameraPlan:
    """Draws a pan, tilt or zoom over a photo.

    Pans and tilts move at 7-14 % of the window per second by at most 0.75 window, with the
    window as large as that travel allows; zooms change the window's width by 1.4-2x
    (geometrically), ending (zoom in) or starting (zoom out) on ``focus`` if given, else on
    a point in the middle 60 % of the photo.

    Args:
        rng: Source of the draws.
        motion: One of :data:`CAMERA_MOTIONS`.
        photo: The photo file (recorded in the plan).
        photo_wh: Its ``(width, height)``, px.
        size: Frame ``(width, height)``, px.
        fps: Frame rate, Hz.
        flip: Mirror the photo first.
        focus: A cut-out of the photo for a zoom to close in on.

    Returns:
        The plan.

    Raises:
        ValueError: If ``motion`` is not one of :data:`CAMERA_MOTIONS`.
    """
    if motion not in CAMERA_MOTIONS:
        raise ValueError(f"motion must be one of {CAMERA_MOTIONS}, got {motion!r}")
    pw, ph = photo_wh
    aspect = size[0] / size[1]
    full_w, full_h = _full_window(photo_wh, size)
    duration_s = float(rng.uniform(*PHOTO_CLIP_S))
    focus_name = None
    if motion.startswith(("pan", "tilt")):
        speed = float(rng.uniform(*_PAN_SPEED))
        travel = min(_PAN_MAX_TRAVEL, speed * (duration_s - 2.0))
        move_s = travel / speed
        if motion.startswith("pan"):
            ww = min(pw / (1 + travel), full_w)
            wh = ww / aspect
            d = travel * ww
            cy = _between(rng, wh / 2, ph - wh / 2)
            x_hi = _between(rng, ww / 2 + d, pw - ww / 2)
            # pan_left: the camera turns left, the window moves left.
            (x0, x1) = (x_hi, x_hi - d) if motion == "pan_left" else (x_hi - d, x_hi)
            start, end = Window(x0, cy, ww), Window(x1, cy, ww)
        else:
            wh = min(ph / (1 + travel), full_h)
            ww = wh * aspect
            d = travel * wh
            cx = _between(rng, ww / 2, pw - ww / 2)
            y_hi = _between(rng, wh / 2 + d, ph - wh / 2)
            # tilt_up: the camera turns up, the window moves up (smaller y).
            (y0, y1) = (y_hi, y_hi - d) if motion == "tilt_up" else (y_hi - d, y_hi)
            start, end = Window(cx, y0, ww), Window(cx, y1, ww)
    else:
        zoom = float(rng.uniform(*_ZOOM_FACTOR))
        move_s = float(rng.uniform(3.0, duration_s - 1.5))
        wide_w = full_w * float(rng.uniform(0.9, 1.0))
        wide_h = wide_w / aspect
        wide = Window(_between(rng, wide_w / 2, pw - wide_w / 2), _between(rng, wide_h / 2, ph - wide_h / 2), wide_w)
        narrow_w, narrow_h = wide_w / zoom, wide_h / zoom
        if focus is not None:
            x0, y0, x1, y1 = focus.box
            if flip:
                x0, x1 = 1.0 - x1, 1.0 - x0
            fx, fy = 0.5 * (x0 + x1) * pw, 0.5 * (y0 + y1) * ph
            focus_name = focus.name
        else:
            fx, fy = float(rng.uniform(0.2, 0.8)) * pw, float(rng.uniform(0.2, 0.8)) * ph
        narrow = Window(float(np.clip(fx, narrow_w / 2, pw - narrow_w / 2)),
                        float(np.clip(fy, narrow_h / 2, ph - narrow_h / 2)), narrow_w)
        start, end = (wide, narrow) if motion == "zoom_in" else (narrow, wide)
    start_s = float(rng.uniform(0.5, duration_s - 0.5 - move_s))
    return CameraPlan(photo=str(photo), motion=motion, duration_s=round(duration_s, 3), start_s=round(start_s, 3),
                      end_s=round(start_s + move_s, 3), start=start, end=end, flip=flip, focus=focus_name,
                      size=size, fps=fps)


def _smoothstep(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _sample(img: Image.Image, window: Window, size: tuple[int, int]) -> np.ndarray:
    """Bilinear view of ``img`` through ``window`` (Pillow's affine transform).

    Args:
        img: RGB image; ``window`` is in its pixels (edges at 0 and its width).
        window: The view.
        size: Frame ``(width, height)``, px.

    Returns:
        uint8 [height, width, 3] RGB.
    """
    step = window.width / size[0]
    left, top = window.cx - window.width / 2, window.cy - step * size[1] / 2
    view = img.transform(size, Image.Transform.AFFINE, (step, 0.0, left, 0.0, step, top),
                         resample=Image.Resampling.BILINEAR)
    return np.asarray(view)


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [height, width, 3]: box filter when shrinking, bilinear when enlarging."""
    resample = Image.Resampling.BOX if width <= rgb.shape[1] else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), resample))


def _working_image(rgb: np.ndarray, widest: float, frame_width: int) -> tuple[Image.Image, float]:
    """The photo shrunk (box filter) so that its widest window is at most the frame's width.

    Windows are then never shrunk by the bilinear sampler, which would alias.

    Returns:
        The image, and the factor its pixels are of the original's.
    """
    factor = min(1.0, frame_width / widest)
    if factor < 1.0:
        width = max(2, round(rgb.shape[1] * factor))
        factor, rgb = width / rgb.shape[1], _resize(rgb, width, max(2, round(rgb.shape[0] * factor)))
    return Image.fromarray(np.ascontiguousarray(rgb)), factor


def _scaled(window: Window, factor: float) -> Window:
    return Window(window.cx * factor, window.cy * factor, window.width * factor)


def render_camera_move(photo: np.ndarray, plan: CameraPlan) -> Iterator[np.ndarray]:
    """The frames of a camera move over a photo.

    The window goes from ``plan.start`` to ``plan.end`` between ``start_s`` and ``end_s``
    (smoothstep; centre linear, width geometric in the eased time), still before and after.

    Args:
        photo: uint8 [H, W, 3] RGB, the photo ``plan`` was drawn for (before its flip).
        plan: The move.

    Yields:
        uint8 [plan.size[1], plan.size[0], 3] RGB frames at ``plan.fps``.
    """
    if plan.flip:
        photo = photo[:, ::-1]
    img, factor = _working_image(photo, max(plan.start.width, plan.end.width), plan.size[0])
    a, b = _scaled(plan.start, factor), _scaled(plan.end, factor)
    for i in range(round(plan.duration_s * plan.fps)):
        p = float(_smoothstep((i / plan.fps - plan.start_s) / max(plan.end_s - plan.start_s, 1e-9)))
        window = Window(a.cx + p * (b.cx - a.cx), a.cy + p * (b.cy - a.cy), a.width * (b.width / a.width) ** p)
        yield _sample(img, window, plan.size)


def draw_composite(rng: np.random.Generator, *, background: Path, background_wh: tuple[int, int],
                   object_photo: Path, object_wh: tuple[int, int], cutout: Cutout, augment: bool,
                   size: tuple[int, int] = PHOTO_SIZE, fps: int = FPS) -> CompositePlan:
    """Draws an object's entrance (and maybe exit) over a background photo.

    The cut-out is 45-75 % of the frame high (at most 60 % of its width), its bottom in the
    lowest tenth of the frame; with ``augment``, half the time it is far instead: 15-40 %
    of the frame high, its bottom in the lower 45 % (small people in a street or a hall,
    as the held-out sources show them); it enters 0.5-1.5 s in at 20-40 % of the frame width per
    second, stops with its centre in the middle 40 % of the frame, and with probability 1/2
    walks on and out of the other side after 1-2.5 s, when that fits in 10 s. An object
    with a facing comes in moving the way it faces (mirrored to do so when ``augment``);
    with ``augment`` the background view is 80-100 % of the largest one and both photos
    may be mirrored.

    Args:
        rng: Source of the draws.
        background: Background photo file.
        background_wh: Its ``(width, height)``, px.
        object_photo: Photo the object is cut from.
        object_wh: Its ``(width, height)``, px.
        cutout: The object.
        augment: Allow the training augmentations (mirroring, background crop).
        size: Frame ``(width, height)``, px.
        fps: Frame rate, Hz.

    Returns:
        The plan.
    """
    fw, fh = size
    direction: Literal["left", "right"] = "left" if rng.random() < 0.5 else "right"
    object_flip = False
    if cutout.facing is not None:
        faces_right = cutout.facing == "right"
        if augment:
            object_flip = faces_right != (direction == "left")
        else:
            direction = "left" if faces_right else "right"
    elif augment:
        object_flip = bool(rng.random() < 0.5)
    moves_right = direction == "left"
    x0, y0, x1, y1 = cutout.box
    aspect = (x1 - x0) * object_wh[0] / ((y1 - y0) * object_wh[1])
    far = augment and bool(rng.random() < _FAR_P)
    obj_h = float(rng.uniform(*(_FAR_OBJECT_HEIGHT if far else _OBJECT_HEIGHT))) * fh
    obj_w = obj_h * aspect
    if obj_w > _OBJECT_MAX_WIDTH * fw:
        obj_w = _OBJECT_MAX_WIDTH * fw
        obj_h = obj_w / aspect
    ow, oh = max(4, round(obj_w)), max(4, round(obj_h))
    bottom_y = max(float(rng.uniform(*((0.55, 1.0) if far else (0.9, 1.0)))) * fh, float(oh))
    speed = float(rng.uniform(*_OBJECT_SPEED)) * fw
    start_s = float(rng.uniform(0.5, 1.5))
    lo, hi = max(ow / 2 + 4, 0.3 * fw), min(fw - ow / 2 - 4, 0.7 * fw)
    stop_cx = float(rng.uniform(lo, hi)) if lo < hi else fw / 2
    start_cx = -ow / 2 if moves_right else fw + ow / 2
    stop_s = start_s + abs(stop_cx - start_cx) / speed
    leave = bool(rng.random() < 0.5)
    leave_start_s = stop_s + float(rng.uniform(1.0, 2.5))
    leave_end_s = leave_start_s + (fw + ow / 2 - stop_cx if moves_right else stop_cx + ow / 2) / speed
    tail_s = float(rng.uniform(0.5, 1.5))
    if leave and leave_end_s + tail_s <= PHOTO_CLIP_S[1]:
        duration_s = max(PHOTO_CLIP_S[0], leave_end_s + tail_s)
    else:
        leave = False
        duration_s = min(max(PHOTO_CLIP_S[0], stop_s + float(rng.uniform(2.0, 4.0))), PHOTO_CLIP_S[1])
    bw, bh = _full_window(background_wh, size)
    scale = float(rng.uniform(0.8, 1.0)) if augment else 1.0
    bw, bh = bw * scale, bh * scale
    window = Window(_between(rng, bw / 2, background_wh[0] - bw / 2), _between(rng, bh / 2, background_wh[1] - bh / 2),
                    bw)
    return CompositePlan(
        background=str(background), background_window=window,
        background_flip=bool(augment and rng.random() < 0.5), object_photo=str(object_photo), cutout=cutout,
        object_flip=object_flip, object_size=(ow, oh), bottom_y=round(bottom_y, 2), direction=direction,
        speed_px_s=round(speed, 3), start_s=round(start_s, 3), stop_cx=round(stop_cx, 2), leave=leave,
        leave_start_s=round(leave_start_s, 3), duration_s=round(duration_s, 3), size=size, fps=fps)


def composite_track(plan: CompositePlan) -> tuple[np.ndarray, dict[str, float]]:
    """Where the composited object is in each frame, and when it comes and goes.

    Args:
        plan: The composite.

    Returns:
        float64 [N] centre x of the object in frame px per frame (N frames at
        ``plan.fps``), and the times in seconds: ``enter_start_s`` (it starts to come in),
        ``inside_s`` (wholly inside), ``stop_s``, and with ``leave`` ``leave_start_s``,
        ``outside_s`` (wholly out).
    """
    fw = plan.size[0]
    ow = plan.object_size[0]
    sign = 1.0 if plan.direction == "left" else -1.0
    start_cx = -ow / 2 if sign > 0 else fw + ow / 2
    stop_s = plan.start_s + abs(plan.stop_cx - start_cx) / plan.speed_px_s
    t = np.arange(round(plan.duration_s * plan.fps)) / plan.fps
    cx = start_cx + sign * plan.speed_px_s * np.clip(t - plan.start_s, 0.0, stop_s - plan.start_s)
    times = {"enter_start_s": plan.start_s, "inside_s": plan.start_s + ow / plan.speed_px_s, "stop_s": stop_s}
    if plan.leave:
        cx = cx + sign * plan.speed_px_s * np.clip(t - plan.leave_start_s, 0.0, None)
        out_cx = fw + ow / 2 if sign > 0 else -ow / 2
        times["leave_start_s"] = plan.leave_start_s
        times["outside_s"] = plan.leave_start_s + abs(out_cx - plan.stop_cx) / plan.speed_px_s
    return cx, {k: round(v, 3) for k, v in times.items()}


def _soft_alpha(width: int, height: int) -> np.ndarray:
    """float32 [height, width, 1] alpha of a rectangle, smoothstep ramps over ``_FEATHER`` of its shorter side."""
    feather = max(2.0, _FEATHER * min(width, height))
    ax = _smoothstep(np.minimum(np.arange(width) + 0.5, width - np.arange(width) - 0.5) / feather)
    ay = _smoothstep(np.minimum(np.arange(height) + 0.5, height - np.arange(height) - 0.5) / feather)
    return (ay[:, None] * ax[None, :]).astype(np.float32)[..., None]


def render_composite(background: np.ndarray, object_photo: np.ndarray, plan: CompositePlan) -> Iterator[np.ndarray]:
    """The frames of a composite: the cut-out slides over the static background view.

    Args:
        background: uint8 [H, W, 3] RGB, the background photo (before its flip).
        object_photo: uint8 [H', W', 3] RGB, the photo the object is cut from.
        plan: The composite.

    Yields:
        uint8 [plan.size[1], plan.size[0], 3] RGB frames at ``plan.fps``.
    """
    fw, fh = plan.size
    if plan.background_flip:
        background = background[:, ::-1]
    img, factor = _working_image(background, plan.background_window.width, fw)
    back = _sample(img, _scaled(plan.background_window, factor), plan.size)
    ph, pw = object_photo.shape[:2]
    x0, y0, x1, y1 = plan.cutout.box
    crop = object_photo[round(y0 * ph) : max(round(y1 * ph), round(y0 * ph) + 1),
                        round(x0 * pw) : max(round(x1 * pw), round(x0 * pw) + 1)]
    if plan.object_flip:
        crop = crop[:, ::-1]
    ow, oh = plan.object_size
    obj = _resize(crop, ow, oh).astype(np.float32)
    alpha = _soft_alpha(ow, oh)
    top = round(plan.bottom_y) - oh
    cxs, _ = composite_track(plan)
    for cx in cxs:
        frame = back.copy()
        left = round(cx - ow / 2)
        a, b = max(left, 0), min(left + ow, fw)
        r0, r1 = max(top, 0), min(top + oh, fh)
        if a < b and r0 < r1:
            o = obj[r0 - top : r1 - top, a - left : b - left]
            m = alpha[r0 - top : r1 - top, a - left : b - left]
            region = frame[r0:r1, a:b].astype(np.float32)
            frame[r0:r1, a:b] = np.clip(region + m * (o - region) + 0.5, 0, 255).astype(np.uint8)
        yield frame


# ---------------------------------------------------------------------------------------
# The clip set
# ---------------------------------------------------------------------------------------


Plan = SegmentPlan | CameraPlan | CompositePlan


@dataclass(frozen=True)
class ClipJob:
    """One clip to write and what to record about it.

    Attributes:
        out: Output video path (``.mp4``); the sidecar goes to ``out.with_suffix(".gen.json")``.
        split: ``"train"`` or ``"heldout"``.
        plan: How the clip is made.
        about: Provenance for the sidecar: ``source``, ``sources`` (every footage source
            in it), ``file``, ``licence``, ``description``, ``animated``, and for a
            composite ``background`` (its ``source``, ``file``, ``licence``, ``description``).
    """

    out: Path
    split: str
    plan: Plan
    about: dict[str, Any]

    @property
    def kind(self) -> str:
        return {SegmentPlan: "segment", CameraPlan: "camera", CompositePlan: "composite"}[type(self.plan)]

    def plan_json(self) -> dict[str, Any]:
        """The plan as it reads back from JSON (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self.plan)))


def _sidecar(job: ClipJob) -> Path:
    return job.out.with_suffix(GEN_SUFFIX)


def _is_done(job: ClipJob) -> bool:
    side = _sidecar(job)
    if not (job.out.is_file() and side.is_file()):
        return False
    try:
        data = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return data.get("version") == GEN_VERSION and data.get("plan") == job.plan_json()


def run_job(job: ClipJob, *, threads: int = 1) -> Path:
    """Writes one clip and its ``.gen.json`` sidecar (skipped when the sidecar holds the same plan).

    Args:
        job: The clip.
        threads: x264 threads.

    Returns:
        ``job.out``.

    Raises:
        MediaError: If a source cannot be read or the clip cannot be encoded.
        OSError: If a file cannot be written.
    """
    if _is_done(job):
        return job.out
    job.out.parent.mkdir(parents=True, exist_ok=True)
    plan = job.plan
    events: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    if isinstance(plan, SegmentPlan):
        width, height, fps, frames = write_segment(
            Path(plan.src), job.out, offset_s=plan.offset_s, duration_s=plan.duration_s, crop_xywh=plan.crop_xywh,
            flip=plan.flip, max_width=plan.max_width, fps=plan.fps, threads=threads)
    else:
        (width, height), fps = plan.size, Fraction(plan.fps)
        if isinstance(plan, CameraPlan):
            rendered = render_camera_move(read_photo(Path(plan.photo)), plan)
            events = [{"t_s": plan.start_s, "end_s": plan.end_s, "kind": plan.motion}]
            if plan.focus is not None:
                extra["object"] = plan.focus
        else:
            rendered = render_composite(read_photo(Path(plan.background)), read_photo(Path(plan.object_photo)), plan)
            _, times = composite_track(plan)
            cut = plan.cutout
            events = [{"t_s": times["enter_start_s"], "end_s": times["stop_s"], "kind": f"enter:{plan.direction}",
                       "object": cut.name, "coco_class": cut.coco_class}]
            if plan.leave:
                other = "right" if plan.direction == "left" else "left"
                events.append({"t_s": times["leave_start_s"], "end_s": times["outside_s"], "kind": f"leave:{other}",
                               "object": cut.name, "coco_class": cut.coco_class})
            extra.update(object=cut.name, coco_class=cut.coco_class, direction=plan.direction, times=times)
        frames = _encode(rendered, job.out, fps=fps, size=(width, height), threads=threads)
    data = {
        "generator": __name__,
        "version": GEN_VERSION,
        "split": job.split,
        **job.about,
        "kind": job.kind,
        "plan": job.plan_json(),
        "events": events,
        **extra,
        "width": width,
        "height": height,
        "fps": float(fps),
        "frames": frames,
        "duration_s": round(frames / float(fps), 3),
    }
    side = _sidecar(job)
    tmp = side.with_name(side.name + ".part")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, side)
    log.debug("wrote %s", job.out)
    return job.out


def _rng(seed: int, split: str, source: str, index: int) -> np.random.Generator:
    """The generator of one clip: independent of the catalogue's order and of the other clips."""
    return np.random.default_rng([seed, zlib.crc32(f"{split}/{source}".encode()), index])


def _about(item: FootageItem, background: FootageItem | None = None) -> dict[str, Any]:
    """Provenance of a clip made from ``item`` (and, for a composite, ``background``)."""
    about: dict[str, Any] = {
        "source": item.source, "sources": [item.source], "file": item.path.name, "licence": item.licence,
        "description": item.description, "animated": item.animated,
    }
    if background is not None:
        about["sources"].append(background.source)
        about["background"] = {"source": background.source, "file": background.path.name,
                               "licence": background.licence, "description": background.description}
    return about


def _segment_jobs(split: str, source: str, items: list[FootageItem], cuts: Mapping[Path, list[float]], *,
                  seed: int, n_per_source: int, max_width: int, fps: int, out_dir: Path) -> list[ClipJob]:
    """Training: ``n_per_source`` augmented clips cycling through the source's segments; held out: each segment once."""
    infos = {item.path: probe_video(item.path) for item in items}
    segments = []
    for item in items:
        info = infos[item.path]
        if math.isfinite(info.duration_s):
            segments += [(item, a, b) for a, b in split_segments(info.duration_s, cuts.get(item.path, []))]
        else:
            segments.append((item, 0.0, SEGMENT_S[1]))
    jobs = []
    count = n_per_source if split == "train" else len(segments)
    for i in range(count):
        item, a, b = segments[i % len(segments)]
        info = infos[item.path]
        if split == "train":
            aug = draw_augmentation(_rng(seed, split, source, i), width=info.width, height=info.height,
                                    total_s=b - a, min_keep=MIN_KEEP)
            plan = SegmentPlan(str(item.path), round(a + aug.offset_s, 3), round(b - a - aug.offset_s, 3),
                               aug.crop_xywh, aug.flip, max_width, fps)
        else:
            plan = SegmentPlan(str(item.path), round(a, 3), round(b - a, 3), None, False, max_width, fps)
        out = out_dir / split / f"{source}-{i:03d}-seg{i % len(segments):02d}.mp4"
        jobs.append(ClipJob(out, split, plan, {**_about(item), "segment_s": [round(a, 3), round(b, 3)]}))
    return jobs


def _photo_jobs(split: str, item: FootageItem, others: list[FootageItem], cutouts: Mapping[str, Sequence[Cutout]],
                sizes: Mapping[Path, tuple[int, int]], *, seed: int, count: int, size: tuple[int, int], fps: int,
                out_dir: Path) -> list[ClipJob]:
    """``count`` clips of one photo: camera moves (in a shuffled order), alternating with composites of its cut-outs."""
    own = list(cutouts.get(item.source, ()))
    order_rng = _rng(seed, split, f"{item.source}/order", 0)
    motions = [CAMERA_MOTIONS[k] for k in order_rng.permutation(len(CAMERA_MOTIONS))]
    augment = split == "train"
    jobs = []
    for i in range(count):
        rng = _rng(seed, split, item.source, i)
        plan: Plan
        if own and others and i % 2 == 1:
            cutout = own[(i // 2) % len(own)]
            back = others[int(rng.integers(len(others)))]
            plan = draw_composite(rng, background=back.path, background_wh=sizes[back.path],
                                        object_photo=item.path, object_wh=sizes[item.path], cutout=cutout,
                                        augment=augment, size=size, fps=fps)
            what = f"{cutout.name.replace(' ', '_')}_from_{plan.direction}"
            about = _about(item, back)
        else:
            motion = motions[(i // 2 if own and others else i) % len(motions)]
            focus = own[(i // 2) % len(own)] if own and motion.startswith("zoom") else None
            plan = draw_camera_move(rng, motion, item.path, sizes[item.path], size=size, fps=fps,
                                    flip=bool(augment and rng.random() < 0.5), focus=focus)
            what = motion
            about = _about(item)
        jobs.append(ClipJob(out_dir / split / f"{item.source}-{i:03d}-{what}.mp4", split, plan, about))
    return jobs


def plan_clips(
    items: Sequence[FootageItem],
    out_dir: Path,
    *,
    seed: int,
    n_per_source: int,
    heldout_per_photo: int,
    cuts: Mapping[Path, list[float]],
    cutouts: Mapping[str, Sequence[Cutout]] = CUTOUTS,
    photo_size: tuple[int, int] = PHOTO_SIZE,
    max_width: int = MAX_WIDTH,
    fps: int = FPS,
) -> list[ClipJob]:
    """Every clip :func:`make_real_clips` writes, in order (reads headers only).

    Args:
        items: Footage (present on disk).
        out_dir: Where the split folders go.
        seed: Clip set seed.
        n_per_source: Clips per training source.
        heldout_per_photo: Clips per held-out photo.
        cuts: Scene cuts per video file (videos longer than a segment), seconds.
        cutouts: Cut-outs by source.
        photo_size: Animated photo frame ``(width, height)``, px.
        max_width: Widest video segment, px.
        fps: Frame rate, Hz.

    Returns:
        The jobs.

    Raises:
        MediaError: If a file's header cannot be read.
    """
    jobs: list[ClipJob] = []
    for split in ("train", "heldout"):
        by_source: dict[str, list[FootageItem]] = {}
        for item in items:
            if item.split == split:
                by_source.setdefault(item.source, []).append(item)
        photos = [group[0] for group in by_source.values() if group[0].kind == "photo"]
        sizes = {p.path: _photo_size(p.path) for p in photos}
        for source, group in sorted(by_source.items()):
            if group[0].kind == "video":
                jobs += _segment_jobs(split, source, group, cuts, seed=seed, n_per_source=n_per_source,
                                      max_width=max_width, fps=fps, out_dir=out_dir)
            else:
                others = [p for p in photos if p.source != source]
                count = n_per_source if split == "train" else heldout_per_photo
                jobs += _photo_jobs(split, group[0], others, cutouts, sizes, seed=seed, count=count, size=photo_size,
                                    fps=fps, out_dir=out_dir)
    return jobs


def _run_in_worker(job: ClipJob) -> Path:
    return run_job(job, threads=1)


def make_real_clips(
    out_dir: Path,
    *,
    seed: int = 0,
    n_per_source: int = 20,
    heldout_per_photo: int = 4,
    items: Sequence[FootageItem] | None = None,
    cutouts: Mapping[str, Sequence[Cutout]] = CUTOUTS,
    photo_size: tuple[int, int] = PHOTO_SIZE,
    max_width: int = MAX_WIDTH,
    fps: int = FPS,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Writes the training and held-out clips of the footage into ``out_dir/train`` and ``out_dir/heldout``.

    Each training source gives ``n_per_source`` clips: a video's augmented segments, or a
    photo's camera moves alternating with composites of its cut-outs (when it has some)
    over other training photos. Each held-out video segment is written once, unaugmented;
    each held-out photo gives ``heldout_per_photo`` clips, unaugmented, composited only over
    held-out photos. Deterministic for a seed; a clip whose sidecar holds the same plan is
    skipped. Clips are encoded in ``workers`` spawned processes (one x264 thread each).

    Args:
        out_dir: Output folder.
        seed: Clip set seed.
        n_per_source: Clips per training source.
        heldout_per_photo: Clips per held-out photo.
        items: Footage; default :func:`mmduplex.footage.catalogue` (run
            :func:`mmduplex.footage.fetch_footage` first).
        cutouts: Cut-outs by source.
        photo_size: Animated photo frame ``(width, height)``, px, both even.
        max_width: Widest video segment, px.
        fps: Frame rate of every clip, Hz.
        workers: Encoding processes (``<= 1``: this process).
        progress: Show a tqdm progress bar.

    Returns:
        ``{"train": [paths], "heldout": [paths]}``, each in plan order.

    Raises:
        ValueError: If ``n_per_source`` or ``heldout_per_photo`` is negative, or a photo size is odd.
        FileNotFoundError: If a footage file is missing.
        MediaError: If a source cannot be read or a clip cannot be encoded.
        OSError: If a file cannot be written.
    """
    from tqdm.auto import tqdm

    if n_per_source < 0 or heldout_per_photo < 0:
        raise ValueError(f"clip counts must be >= 0, got {n_per_source}, {heldout_per_photo}")
    if photo_size[0] % 2 or photo_size[1] % 2:
        raise ValueError(f"photo_size must be even, got {photo_size}")
    if items is None:
        from mmduplex.footage import catalogue

        items = catalogue()
    missing = [str(item.path) for item in items if not item.path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} footage files missing (run mmduplex.footage.fetch_footage()): "
                                f"{', '.join(missing[:3])}")
    out_dir = Path(out_dir)
    long_videos = [i.path for i in items if i.kind == "video" and probe_video(i.path).duration_s > SEGMENT_S[1]]
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if workers > 1 else None
    try:
        found = list(pool.map(find_cuts, long_videos)) if pool else [find_cuts(p) for p in long_videos]
        cuts = dict(zip(long_videos, found, strict=True))
        jobs = plan_clips(items, out_dir, seed=seed, n_per_source=n_per_source, heldout_per_photo=heldout_per_photo,
                          cuts=cuts, cutouts=cutouts, photo_size=photo_size, max_width=max_width, fps=fps)
        todo = [job for job in jobs if not _is_done(job)]
        log.info("%d clips planned, %d to write (%d cut(s) found in %d long videos)", len(jobs), len(todo),
                 sum(map(len, found)), len(long_videos))
        with tqdm(total=len(todo), desc="real clips", unit="clip", disable=not progress) as bar:
            for _ in pool.map(_run_in_worker, todo) if pool else map(_run_in_worker, todo):
                bar.update()
    finally:
        if pool is not None:
            pool.shutdown()
    return {split: [job.out for job in jobs if job.split == split] for split in ("train", "heldout")}

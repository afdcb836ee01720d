"""Key views for the commentator: when to look at a whole frame, and its pretrained features.

B-Flow tokens (:mod:`models.vision.bflow`) say what *moves*; they cannot say what things
*are*. For that, a pretrained image encoder (:mod:`models.vision.encoder`) looks at a
full frame now and then, and its features travel with the step's tokens as *views*.
The encoder runs only on the steps this module selects, never on every frame:

* every B-Flow key view (the first frame, a cut, a flash);
* when motion starts: the first step with object flow tokens after
  ``quiet_steps`` steps without any (something came into view or began to move);
* a refresh every ``refresh_s`` seconds, so that what the scene holds stays inside the
  commentator's sliding KV-cache window on a long static shot;
* with object tracks: after ``untracked_steps`` steps in a row with object flow tokens
  outside every tracked box (something the detector has not seen moves);

and never twice within ``min_gap_s`` seconds. The calls per second of video this costs
are what B-Flow buys against encoding every frame (docs/MODEL.md).

A view is ``1 + cells**2`` rows (the pooled feature, then the encoder's spatial cells
row-major), each row ``[feature (D), x0, y0, x1, y1, is_cell]``: the feature and the
region it covers in normalised image coordinates (``[0, 1]``, origin top left).

With ``objects > 0`` the COCO detector (:mod:`models.vision.detector`) also looks at each
key view and its best ``objects`` boxes follow the encoder's rows as *object rows*; every
row then has :data:`OBJECT_META` more columns, ``[class scores (80), is_object]``: zero
on encoder rows, the detection's score at its class on object rows (whose feature columns
are zero and whose region is the box). The detector's classes are the teacher's own
(:mod:`models.data.label` names tracks by them), so the commentator can learn to say what
the detector saw on sources it never trained on. With ``objects_as = "tracks"`` the boxes
are not view rows: they are carried along by the flow until the next key view and tag the
B-Flow object tokens that lie in them with their class (:mod:`models.vision.objects`).

(The seed called key views "B-frames"; to a video engineer that word means
bidirectionally predicted frames, so MM-Duplex does not use it.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.vision.bflow import BFlowStep
from models.vision.detector import COCO_CLASSES, Detection, DetectorConfig, ObjectDetector
from models.vision.encoder import EncoderConfig, ImageEncoder, load_encoder
from models.vision.objects import ObjectTracks

#: Region columns appended to each view row: x0, y0, x1, y1, is_cell.
VIEW_META = 5

#: Object columns of every row when the detector looks too: a score per COCO class, is_object.
OBJECT_META = len(COCO_CLASSES) + 1


@dataclass(frozen=True)
class ViewConfig:
    """When the encoder looks (see the module docstring)."""

    refresh_s: float = 4.0  # a view at least this often, seconds of video
    min_gap_s: float = 1.0  # never two views closer than this, seconds (B-Flow key views excepted)
    quiet_steps: int = 3  # steps without object flow tokens before new motion triggers a view
    fps_hz: float = 5.0  # model steps per second
    objects: int = 0  # detector boxes per view, best first (0: no detector)
    object_score: float = 0.3  # the detector's score threshold for object rows
    objects_as: str = "rows"  # the detector's boxes as view rows, or as "tracks" tagging B-Flow tokens
    untracked_steps: int = 2  # tracks: steps in a row with untracked motion that trigger a view

    def __post_init__(self) -> None:
        if self.objects_as not in ("rows", "tracks"):
            raise ValueError(f"objects_as: expected 'rows' or 'tracks', got {self.objects_as!r}")
        if self.objects < 0:
            raise ValueError(f"objects: expected >= 0, got {self.objects}")
        if not 0.0 <= self.object_score <= 1.0:
            raise ValueError(f"object_score: expected in [0, 1], got {self.object_score}")


@dataclass
class ViewState:
    """Per-stream view scheduling state.

    Attributes:
        steps: Steps seen so far.
        last_view_step: Step of the last view, or None before the first.
        quiet: Consecutive steps without object flow tokens.
        untracked: Consecutive steps with untracked object flow tokens (tracks only).
        views: Views taken so far (encoder calls).
        tracks: The detector's boxes, moved with the flow (``objects_as = "tracks"``).
    """

    steps: int = 0
    last_view_step: int | None = None
    quiet: int = 0
    untracked: int = 0
    views: int = 0
    tracks: ObjectTracks = field(default_factory=ObjectTracks)

    def reset(self) -> None:
        """Forget the stream (its next step takes a view)."""
        self.steps, self.last_view_step, self.quiet, self.untracked, self.views = 0, None, 0, 0, 0
        self.tracks = ObjectTracks()


def view_dim(feature_dim: int, *, objects: bool = False) -> int:
    """Width of one view row for an encoder of ``feature_dim`` features (and object rows)."""
    return feature_dim + VIEW_META + (OBJECT_META if objects else 0)


class KeyViewEncoder:
    """Chooses the steps to look at and encodes them, batched over streams.

    Args:
        encoder: The image encoder (default: :func:`models.vision.encoder.load_encoder`
            of ``encoder_config``).
        encoder_config: Used when ``encoder`` is None.
        config: The view schedule (``objects > 0``: the detector looks too).
        threads: ONNX Runtime threads of the detector.

    Raises:
        ModelError: If the encoder or the detector cannot be loaded (not fetched: run
            ``mmduplex fetch-models``).
    """

    def __init__(
        self,
        encoder: ImageEncoder | None = None,
        *,
        encoder_config: EncoderConfig = EncoderConfig(),
        config: ViewConfig = ViewConfig(),
        threads: int = 1,
    ) -> None:
        self.encoder = encoder if encoder is not None else load_encoder(encoder_config)
        self.config = config
        self.detector = (ObjectDetector(DetectorConfig(threads=threads, score_threshold=config.object_score,
                                                       max_detections=config.objects))
                         if config.objects > 0 else None)
        self.rows = self.detector is not None and config.objects_as == "rows"
        self.tracking = self.detector is not None and not self.rows
        self.dim = view_dim(self.encoder.feature_dim, objects=self.rows)

    def wants_view(self, state: ViewState, step: BFlowStep, untracked: int = 0) -> bool:
        """Advances ``state`` by one step; True if this step should be encoded.

        ``untracked``: object flow tokens of the step outside every tracked box (tracks only).
        """
        cfg = self.config
        t = state.steps
        state.steps += 1
        moving = step.n_flow - _camera_tokens(step) > 0
        started = moving and state.quiet >= cfg.quiet_steps
        state.quiet = 0 if moving else state.quiet + 1
        state.untracked = state.untracked + 1 if untracked else 0
        started = started or (self.tracking and state.untracked >= cfg.untracked_steps)
        since = None if state.last_view_step is None else (t - state.last_view_step) / cfg.fps_hz
        take = (
            since is None
            or step.is_key
            or (since >= cfg.min_gap_s and (started or since >= cfg.refresh_s))
        )
        if take:
            state.last_view_step = t
            state.views += 1
        return take

    def step_batch(
        self, states: Sequence[ViewState], steps: Sequence[BFlowStep], rgbs: np.ndarray | Sequence[np.ndarray],
        flows: np.ndarray | Sequence[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Views of one step of several streams, with one encoder call for all that look.

        Args:
            states: Each stream's view state (advanced in place).
            steps: Each stream's B-Flow step; with ``objects_as = "tracks"`` its object
                flow tokens are tagged in place (:mod:`models.vision.objects`).
            rgbs: Each stream's frame, uint8 ``[H, W, 3]`` RGB (one size for all, or a list).
            flows: Each stream's flow of this step, float32 ``[H, W, 2]`` pixels (needed to
                move the tracks; None: they stay where they were found).

        Returns:
            Per stream, float32 ``[K, dim]`` view rows (``K = 0`` when it does not look):
            the encoder's rows, then (with the detector's rows) one object row per box.
        """
        untracked = [0] * len(states)
        if self.tracking:  # the boxes move with this step's flow first: what moves outside them is new
            for i, (state, step) in enumerate(zip(states, steps, strict=True)):
                h, w = np.asarray(rgbs[i]).shape[:2]
                if flows is not None:
                    state.tracks.advance(np.asarray(flows[i]))
                untracked[i] = state.tracks.untracked(step.tokens, w, h)
        take = [i for i, (s, st, u) in enumerate(zip(states, steps, untracked, strict=True))
                if self.wants_view(s, st, u)]
        out = [np.zeros((0, self.dim), np.float32) for _ in states]
        if take:
            feats = self.encoder.encode(np.stack([np.asarray(rgbs[i]) for i in take]))  # [B, K, D]
            rows = view_rows(feats)
            for j, i in enumerate(take):
                if self.detector is None:
                    out[i] = rows[j]
                    continue
                rgb = np.asarray(rgbs[i])
                boxes = self.detector.detect(rgb)
                if not self.rows:
                    states[i].tracks.reset(boxes)
                    out[i] = rows[j]
                    continue
                obj = object_rows(boxes, rgb.shape[1], rgb.shape[0], feats.shape[-1])
                enc = np.concatenate([rows[j], np.zeros((len(rows[j]), OBJECT_META), np.float32)], -1)
                out[i] = np.concatenate([enc, obj])
        if self.tracking:
            for i, (state, step) in enumerate(zip(states, steps, strict=True)):
                h, w = np.asarray(rgbs[i]).shape[:2]
                state.tracks.tag(step.tokens, w, h)
        return out


def viewer_from_meta(meta: Mapping[str, Any] | None) -> KeyViewEncoder | None:
    """The view schedule and encoder a commentator checkpoint was trained with.

    Args:
        meta: The checkpoint's ``meta["views"]`` (``{"config": ..., "encoder": ...}``), or
            None for a model trained without views.

    Returns:
        The viewer, or None when the model takes no views.

    Raises:
        ModelError: If the encoder cannot be loaded.
        ValueError: If the metadata has unknown fields.
    """
    if not meta:
        return None
    try:
        config, enc = ViewConfig(**meta["config"]), EncoderConfig(**meta["encoder"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"invalid view metadata in the checkpoint: {exc}") from None
    return KeyViewEncoder(encoder_config=enc, config=config)


def view_rows(features: np.ndarray) -> np.ndarray:
    """Appends each row's region to encoder features.

    Args:
        features: float32 ``[B, 1 + c*c, D]``: the pooled feature, then ``c x c`` cells row-major.

    Returns:
        float32 ``[B, 1 + c*c, D + VIEW_META]``.

    Raises:
        ValueError: If the number of rows is not ``1 + c*c``.
    """
    b, k, _ = features.shape
    c = round((k - 1) ** 0.5)
    if c * c != k - 1:
        raise ValueError(f"expected 1 + c*c feature rows per view, got {k}")
    meta = np.zeros((k, VIEW_META), np.float32)
    meta[0, :4] = (0.0, 0.0, 1.0, 1.0)
    for r in range(c):
        for q in range(c):
            meta[1 + r * c + q] = (q / c, r / c, (q + 1) / c, (r + 1) / c, 1.0)
    return np.concatenate([features.astype(np.float32, copy=False), np.broadcast_to(meta, (b, k, VIEW_META))], -1)


def object_rows(detections: Sequence[Detection], width: int, height: int, feature_dim: int) -> np.ndarray:
    """View rows of detected objects (see the module docstring).

    Args:
        detections: The detector's boxes, in pixels of a ``width`` x ``height`` image.
        width: Image width in pixels.
        height: Image height in pixels.
        feature_dim: The encoder's feature width ``D`` (zero columns on object rows).

    Returns:
        float32 ``[len(detections), D + VIEW_META + OBJECT_META]``: zero features, the box
        in normalised image coordinates, ``is_cell = 0``, the score at the class's column
        and ``is_object = 1``.
    """
    rows = np.zeros((len(detections), feature_dim + VIEW_META + OBJECT_META), np.float32)
    for r, d in enumerate(detections):
        rows[r, feature_dim:feature_dim + 4] = (d.x1 / width, d.y1 / height, d.x2 / width, d.y2 / height)
        rows[r, feature_dim + VIEW_META + d.class_id] = d.score
        rows[r, -1] = 1.0
    return rows


def _camera_tokens(step: BFlowStep) -> int:
    """Camera tokens among a step's flow tokens (0 or 1; bflow token layout: index 2)."""
    if step.is_key or step.n_flow == 0:
        return 0
    return int((step.tokens[:, 2] > 0.5).sum())

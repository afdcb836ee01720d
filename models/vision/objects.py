"""Object tracks between key views: which B-Flow object token belongs to which detected thing.

The COCO detector (:mod:`models.vision.detector`) looks only at key views (a few per
second at most: it costs 55-75 ms a frame here). Between them its boxes are carried along
by the optical flow: each box moves by the median flow inside it, step by step, and is
dropped once it has left the frame; the next detection replaces them all. Every B-Flow
object flow token (:mod:`models.vision.bflow`) whose cell centre lies inside a tracked
box is then *tagged* with that box's class, in the token's columns that object tokens
leave at zero:

| index | tagged object flow token |
|---|---|
| 16 | 1: the cell lies in a tracked box |
| 17 | the box's detector score |
| 18 .. 63 | one-hot of the box's class, COCO classes 0-45 (person .. bowl) |

so a token says not only *that* something moves here, but *what* moves: the commentator
can say "a person walks in from the right" on a source it never saw, where the detector
sees a person and the flow says that it moves. Other tokens are left as they are. Where
boxes overlap, the best-scoring box containing the cell wins. Object tokens outside every
box are *untracked*: something moves that the detector has not seen (it came in, or
started to move), and the view schedule looks again (:mod:`models.vision.views`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.vision.detector import Detection

TAG_FLAG, TAG_SCORE, TAG_CLASS0 = 16, 17, 18
#: Classes a tag can name: COCO indices 0 .. TAGGED_CLASSES - 1 (person .. bowl).
TAGGED_CLASSES = 46


@dataclass
class ObjectTracks:
    """Per-stream boxes of the last detection, moved with the flow since.

    Attributes:
        boxes: float64 [M, 4] ``x1, y1, x2, y2`` in pixels of the model-grid frame.
        scores: float64 [M] detector scores.
        classes: int64 [M] COCO class indices.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def reset(self, detections: Sequence[Detection]) -> None:
        """Replaces the tracks by a new detection's boxes (pixels of the frame they were found in)."""
        self.boxes = np.array([[d.x1, d.y1, d.x2, d.y2] for d in detections], np.float64).reshape(-1, 4)
        self.scores = np.array([d.score for d in detections], np.float64)
        self.classes = np.array([d.class_id for d in detections], np.int64)

    def advance(self, flow: np.ndarray) -> None:
        """Moves each box by the median flow inside it; drops boxes that have left the frame.

        Args:
            flow: float32 ``[H, W, 2]`` optical flow of this step (pixels, previous -> current frame).
        """
        if not len(self.boxes):
            return
        h, w = flow.shape[:2]
        for b in self.boxes:
            x1, y1 = max(0, int(b[0])), max(0, int(b[1]))
            x2, y2 = min(w, max(x1 + 1, int(np.ceil(b[2])))), min(h, max(y1 + 1, int(np.ceil(b[3]))))
            if x1 < w and y1 < h:
                d = np.median(flow[y1:y2, x1:x2].reshape(-1, 2), axis=0)
                b += (d[0], d[1], d[0], d[1])
        keep = (self.boxes[:, 2] > 0) & (self.boxes[:, 0] < w) & (self.boxes[:, 3] > 0) & (self.boxes[:, 1] < h)
        self.boxes, self.scores, self.classes = self.boxes[keep], self.scores[keep], self.classes[keep]

    def untracked(self, tokens: np.ndarray, width: int, height: int) -> int:
        """Object flow tokens of a step that lie in no tracked box (something the detector has not seen)."""
        objects = _object_tokens(tokens)
        if not len(self.boxes):
            return len(objects)
        return int((~self._inside(tokens[objects], width, height).any(axis=1)).sum())

    def _inside(self, tokens: np.ndarray, width: int, height: int) -> np.ndarray:
        """bool [n, M]: token ``i``'s cell centre lies in box ``j``."""
        x, y = tokens[:, 3:4] * width, tokens[:, 4:5] * height  # [n, 1] cell centres, px
        b = self.boxes
        return (x >= b[:, 0]) & (x <= b[:, 2]) & (y >= b[:, 1]) & (y <= b[:, 3])

    def tag(self, tokens: np.ndarray, width: int, height: int) -> int:
        """Tags the object flow tokens that lie in a tracked box, in place (see the module docstring).

        Args:
            tokens: float32 ``[N, 64]`` B-Flow tokens of one step.
            width: Frame width in pixels.
            height: Frame height in pixels.

        Returns:
            How many tokens were tagged.
        """
        if not len(self.boxes) or not len(tokens):
            return 0
        objects = _object_tokens(tokens)
        if not len(objects):
            return 0
        inside = self._inside(tokens[objects], width, height)
        best = np.where(inside, self.scores[None, :], -1.0).argmax(axis=1)
        hit = inside[np.arange(len(objects)), best]
        for i, j in zip(objects[hit], best[hit], strict=True):
            tokens[i, TAG_FLAG] = 1.0
            tokens[i, TAG_SCORE] = self.scores[j]
            if self.classes[j] < TAGGED_CLASSES:
                tokens[i, TAG_CLASS0 + self.classes[j]] = 1.0
        return int(hit.sum())


def _object_tokens(tokens: np.ndarray) -> np.ndarray:
    """Indices of the object flow tokens (not key, not camera) among B-Flow tokens ``[N, 64]``."""
    return np.flatnonzero((tokens[:, 1] > 0.5) & (tokens[:, 2] < 0.5) & (tokens[:, 0] < 0.5))

"""Object tracks: boxes move with the flow and tag the object flow tokens inside them."""

from __future__ import annotations

import numpy as np

from models.vision.bflow import TOKEN_DIM
from models.vision.detector import COCO_CLASSES, Detection
from models.vision.objects import TAG_CLASS0, TAG_FLAG, TAG_SCORE, ObjectTracks


def _det(x1: float, y1: float, x2: float, y2: float, score: float, name: str) -> Detection:
    return Detection(x1=x1, y1=y1, x2=x2, y2=y2, score=score, class_id=COCO_CLASSES.index(name), name=name)


def _object_token(cx: float, cy: float) -> np.ndarray:
    t = np.zeros(TOKEN_DIM, np.float32)
    t[1], t[3], t[4] = 1.0, cx, cy  # a flow token, not the camera's, at this cell centre
    return t


def test_boxes_follow_the_flow_and_leave() -> None:
    tracks = ObjectTracks()
    tracks.reset([_det(10, 40, 30, 80, 0.7, "person"), _det(120, 40, 150, 80, 0.5, "car")])
    flow = np.zeros((120, 160, 2), np.float32)
    flow[:, :60] = (4.0, -1.0)  # the left part of the frame moves right and up
    tracks.advance(flow)
    np.testing.assert_allclose(tracks.boxes, [[14, 39, 34, 79], [120, 40, 150, 80]])
    flow[:] = (12.0, 0.0)
    for _ in range(4):  # the car (x 120..150) is pushed past the right edge (x1 = 168)
        tracks.advance(flow)
    assert [COCO_CLASSES[c] for c in tracks.classes] == ["person"] and tracks.boxes[0, 0] == 62


def test_tags_name_what_moves_and_leave_other_tokens() -> None:
    tracks = ObjectTracks()
    tracks.reset([_det(0, 0, 80, 120, 0.4, "dog"), _det(20, 20, 60, 100, 0.8, "person")])
    key = np.zeros(TOKEN_DIM, np.float32)
    key[0], key[16:] = 1.0, 0.5  # a key token's thumbnail occupies the tag columns: untouched
    camera = _object_token(0.5, 0.5)
    camera[2] = 1.0
    tokens = np.stack([_object_token(40 / 160, 60 / 120), _object_token(5 / 160, 5 / 120),
                       _object_token(150 / 160, 60 / 120), camera, key])
    before = tokens.copy()
    assert tracks.tag(tokens, 160, 120) == 2
    assert tokens[0, TAG_FLAG] == 1 and tokens[0, TAG_SCORE] == np.float32(0.8)  # in both: the better box
    assert np.flatnonzero(tokens[0, TAG_CLASS0:]).tolist() == [COCO_CLASSES.index("person")]
    assert np.flatnonzero(tokens[1, TAG_CLASS0:]).tolist() == [COCO_CLASSES.index("dog")]
    np.testing.assert_array_equal(tokens[2:], before[2:])  # outside every box, the camera, a key token
    assert ObjectTracks().tag(tokens, 160, 120) == 0

"""The COCO detector on real photos (skipped without the converted ONNX file), and its NMS."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from models.vision.detector import COCO_CLASSES, DEFAULT_MODEL, DetectorConfig, ObjectDetector, class_wise_nms
from streams.errors import ModelError

DATA = Path(__file__).resolve().parents[1] / "data"
needs_model = pytest.mark.skipif(not DEFAULT_MODEL.is_file(),
                                 reason=f"{DEFAULT_MODEL} absent (python3.11 scripts/convert_detector.py)")


def load_rgb(name: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels of a photo in tests/data (see detector_photos.txt)."""
    with av.open(str(DATA / name)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def detector() -> ObjectDetector:
    return ObjectDetector()


@needs_model
def test_finds_the_astronaut(detector: ObjectDetector) -> None:
    rgb = load_rgb("detector_astronaut.jpg")  # 320x320; Eileen Collins fills the left two thirds
    dets = detector.detect(rgb)
    assert [d.name for d in dets] == ["person"]
    (person,) = dets
    assert person.class_id == COCO_CLASSES.index("person") == 0
    assert person.score > 0.5
    assert person.x1 < 0.1 * 320 and 0.55 * 320 < person.x2 < 0.85 * 320
    assert person.y1 < 0.1 * 320 and person.y2 > 0.9 * 320


@needs_model
def test_finds_chelsea_the_cat_and_nothing_else(detector: ObjectDetector) -> None:
    rgb = load_rgb("detector_chelsea.jpg")  # 320x213; the cat spans nearly the whole photo
    dets = detector.detect(rgb)
    assert [d.name for d in dets] == ["cat"]
    assert dets[0].score > 0.5
    assert dets[0].x2 - dets[0].x1 > 0.8 * 320 and dets[0].y2 - dets[0].y1 > 0.8 * 213


@needs_model
def test_boxes_are_in_pixels_of_the_input(detector: ObjectDetector) -> None:
    rgb = load_rgb("detector_chelsea.jpg")
    twice = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)  # 640x426, same network input after resizing
    (small,) = detector.detect(rgb)
    (big,) = detector.detect(twice)
    assert big.name == small.name
    np.testing.assert_allclose([big.x1, big.y1, big.x2, big.y2],
                               [2 * small.x1, 2 * small.y1, 2 * small.x2, 2 * small.y2], atol=0.02 * 640)
    assert 0 <= big.x1 < big.x2 <= 640 and 0 <= big.y1 < big.y2 <= 426


@needs_model
def test_threshold_and_cap(detector: ObjectDetector) -> None:
    rgb = load_rgb("detector_chelsea.jpg")
    loose = ObjectDetector(DetectorConfig(score_threshold=0.05, max_detections=5)).detect(rgb)
    assert len(loose) == 5 and loose[0].name == "cat"
    assert all(a.score >= b.score for a, b in zip(loose, loose[1:], strict=False))
    assert ObjectDetector(DetectorConfig(score_threshold=0.99)).detect(rgb) == []


@needs_model
def test_rejects_what_is_not_an_rgb_image(detector: ObjectDetector) -> None:
    with pytest.raises(ValueError, match=r"expected uint8 \[H, W, 3\], got float32 \[4, 4, 3\]"):
        detector.detect(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"got uint8 \[4, 4\]"):
        detector.detect(np.zeros((4, 4), np.uint8))


def test_missing_or_foreign_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        ObjectDetector(DetectorConfig(model_path=tmp_path / "absent.onnx"))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match="cannot load"):
        ObjectDetector(DetectorConfig(model_path=garbage))


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="threads"):
        DetectorConfig(threads=0)
    with pytest.raises(ValueError, match="score_threshold"):
        DetectorConfig(score_threshold=1.5)


def test_nms_suppresses_within_a_class_only() -> None:
    boxes = np.array([[0, 0, 10, 10],  # cat, best
                      [1, 1, 11, 11],  # cat, IoU 0.68 with the first: suppressed
                      [1, 1, 11, 11],  # dog at the same place: kept
                      [20, 20, 30, 30]], np.float32)  # cat elsewhere: kept
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([15, 15, 16, 15])
    assert class_wise_nms(boxes, scores, classes, 0.4).tolist() == [0, 2, 3]
    assert class_wise_nms(boxes, scores, classes, 0.7).tolist() == [0, 1, 2, 3]
    assert class_wise_nms(boxes[:0], scores[:0], classes[:0], 0.4).tolist() == []

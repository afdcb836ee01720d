"""Class-swap augmentation: object rows and words are swapped together, a person never."""

from __future__ import annotations

import numpy as np

from models.data.dataset import ClipFeatures
from models.training.augment import SWAP_GROUPS, class_permutation, swap_line, swapped_copies, word_map
from models.vision.detector import COCO_CLASSES, Detection
from models.vision.views import object_rows

D = 4  # encoder feature width of these fake features


def _features(names: list[str]) -> ClipFeatures:
    dets = [Detection(x1=0.0, y1=0.0, x2=80.0, y2=60.0, score=0.5 + 0.1 * i, class_id=COCO_CLASSES.index(n), name=n)
            for i, n in enumerate(names)]
    encoder_row = np.zeros((1, D + 5 + len(COCO_CLASSES) + 1), np.float32)
    encoder_row[0, :D] = 1.0
    views = np.concatenate([encoder_row, object_rows(dets, 160, 120, D)])
    return ClipFeatures(pts_s=np.array([0.0, 0.2]), tokens=np.zeros((0, 64), np.float32),
                        offsets=np.zeros(3, np.int64), is_key=np.array([True, False]), views=views,
                        view_offsets=np.array([0, len(views), len(views)], np.int64))


def test_permutation_stays_inside_groups_and_keeps_people() -> None:
    perm = class_permutation(np.random.default_rng(3))
    assert sorted(perm.tolist()) == list(range(80)) and perm[COCO_CLASSES.index("person")] == 0
    for group in SWAP_GROUPS:
        ids = {COCO_CLASSES.index(c) for c in group}
        assert {int(perm[i]) for i in ids} == ids


def test_lines_swap_nouns_plurals_riders_and_articles() -> None:
    perm = np.arange(80)
    car, bus, bike, moto, dog, elephant = (COCO_CLASSES.index(c) for c in
                                           ("car", "bus", "bicycle", "motorcycle", "dog", "elephant"))
    perm[[car, bus, bike, moto, dog, elephant]] = [bus, car, moto, bike, elephant, dog]
    words = word_map(perm)
    assert swap_line("a cyclist rides past two cars", words) == "a motorcyclist rides past two buses"
    assert swap_line("a dog walks in from the left", words) == "an elephant walks in from the left"
    assert swap_line("two people cross to the right", words) == "two people cross to the right"


def test_copies_move_what_the_detector_saw_and_the_lines_name() -> None:
    feats = _features(["person", "car"])
    lines = [(1.0, "a car drives in from the left"), (3.0, "a person walks out")]
    copies = swapped_copies(feats, lines, feature_dim=D, copies=3, rng=np.random.default_rng(0))
    assert len(copies) == 3
    for f, ln in copies:
        (new,) = {w for w in ln[0][1].split()} & {"truck", "bus", "train"}
        assert ln[1] == lines[1]  # people are not swapped
        scores = f.views[:, D + 5 : -1]
        assert scores[2, COCO_CLASSES.index(new)] == np.float32(0.6) and scores[2, COCO_CLASSES.index("car")] == 0
        assert scores[1, 0] == np.float32(0.5)  # the person's row is kept
        np.testing.assert_array_equal(f.views[:, : D + 5], feats.views[:, : D + 5])  # look and boxes are kept
    # Nothing to swap: the car is not said, or nothing swappable was seen.
    assert swapped_copies(feats, [(1.0, "a person walks out")], feature_dim=D, copies=2,
                          rng=np.random.default_rng(0)) == []
    assert swapped_copies(_features(["person"]), lines, feature_dim=D, copies=2, rng=np.random.default_rng(0)) == []


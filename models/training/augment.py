"""Class-swap augmentation: the commentator learns to say the class the detector reports.

The real training sources show few kinds of things (a motorcycle, a bus, a cat, ...), so a
commentator trained on them alone can only ever say those nouns, whatever the detector's
object rows (:mod:`models.vision.views`) report on a new source. A swapped copy of a
clip permutes the classes of a group of interchangeable classes (vehicles that drive,
two-wheelers, animals that walk, small things on a table), *consistently* in the object
rows' class columns and in the words of the transcript: the motorcycle photo, its object
rows saying "bicycle", is said to show "a bicycle"; "two cars" becomes "two buses". The
model then learns that the noun follows the class column and not the look of the
thing, for every class of the group. A person is never swapped (the most common noun,
and the teachers' lines give people verbs of their own). The idea is the label-swap
augmentation of counterfactual data augmentation (Kaushik, Hovy and Lipton, "Learning
the Difference that Makes a Difference with Counterfactually-Augmented Data", ICLR 2020),
here with the swap made in both the input and the target.

The encoder's feature of the key view is left as it is: the copy's look and its words
disagree on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from models.data.dataset import ClipFeatures
from models.data.label import COCO_NOUNS, plural
from models.vision.detector import COCO_CLASSES
from models.vision.views import OBJECT_META, VIEW_META

#: Groups of COCO classes whose nouns take the same verbs in the teachers' lines.
SWAP_GROUPS: tuple[tuple[str, ...], ...] = (
    ("car", "truck", "bus", "train"),
    ("bicycle", "motorcycle"),
    ("cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
    ("bottle", "cup", "bowl", "vase", "book", "laptop", "clock", "banana", "apple", "orange"),
)

_SWAPPABLE = frozenset(c for g in SWAP_GROUPS for c in g)

#: The rider of a two-wheeler is named by it ("a cyclist rides past a car").
_RIDERS = {"bicycle": "cyclist", "motorcycle": "motorcyclist"}


def class_permutation(rng: np.random.Generator) -> np.ndarray:
    """A random permutation of the 80 COCO classes within each of :data:`SWAP_GROUPS`.

    Returns:
        int64 ``[80]``: class ``c`` becomes class ``perm[c]`` (``perm[c] == c`` outside the groups).
    """
    perm = np.arange(len(COCO_CLASSES))
    for group in SWAP_GROUPS:
        ids = np.array([COCO_CLASSES.index(c) for c in group])
        perm[ids] = rng.permutation(ids)
    return perm


def word_map(perm: np.ndarray) -> dict[str, str]:
    """Words of the transcript to replace under ``perm``: nouns, plurals and riders."""
    out: dict[str, str] = {}
    for c, d in enumerate(perm):
        if c == d:
            continue
        a, b = COCO_CLASSES[c], COCO_CLASSES[int(d)]
        na, nb = COCO_NOUNS[a], COCO_NOUNS[b]
        out[na], out[plural(na)] = nb, plural(nb)
        if a in _RIDERS:
            out[_RIDERS[a]], out[plural(_RIDERS[a])] = _RIDERS[b], plural(_RIDERS[b])
    return out


def swap_line(text: str, words: dict[str, str]) -> str:
    """One transcript line with ``words`` replaced and the articles before them agreeing.

    ``"an elephant walks in"`` with ``{"elephant": "dog"}`` -> ``"a dog walks in"``.
    """
    out = [words.get(w, w) for w in text.split()]
    for i in range(len(out) - 1):
        if out[i] in ("a", "an") and text.split()[i + 1] in words:
            out[i] = "an" if out[i + 1][0] in "aeiou" else "a"
    return " ".join(out)


def detected_classes(feats: ClipFeatures, feature_dim: int) -> set[int]:
    """COCO classes of the clip's object rows (empty for features without them)."""
    if feats.views.shape[1] != feature_dim + VIEW_META + OBJECT_META or not len(feats.views):
        return set()
    scores = feats.views[:, -OBJECT_META:-1]
    return {int(c) for c in np.flatnonzero(scores.max(axis=0) > 0)}


def swapped_copies(
    feats: ClipFeatures, lines: Sequence[tuple[float, str]], *, feature_dim: int, copies: int,
    rng: np.random.Generator,
) -> list[tuple[ClipFeatures, list[tuple[float, str]]]]:
    """Class-swapped copies of one clip (see the module docstring).

    Args:
        feats: The clip's features; view rows ``[feature (feature_dim), region (5), object columns]``.
        lines: ``(start_s, text)`` of its transcript.
        feature_dim: The encoder's feature width.
        copies: Copies wanted.
        rng: Random source.

    Returns:
        Up to ``copies`` ``(features, lines)`` pairs, each with a permutation that moves at
        least one class the detector saw and the transcript names; none when the clip has
        no such class.
    """
    said = {w for _, text in lines for w in text.split()}
    movable = [c for c in detected_classes(feats, feature_dim) if COCO_CLASSES[c] in _SWAPPABLE
               and (COCO_NOUNS[COCO_CLASSES[c]] in said or _RIDERS.get(COCO_CLASSES[c]) in said)]
    out: list[tuple[ClipFeatures, list[tuple[float, str]]]] = []
    if not movable:
        return out
    for _ in range(copies):
        perm = class_permutation(rng)
        while all(perm[c] == c for c in movable):
            perm = class_permutation(rng)
        views = feats.views.copy()
        cols = slice(feature_dim + VIEW_META, feature_dim + VIEW_META + len(COCO_CLASSES))
        views[:, cols][:, perm] = feats.views[:, cols]
        words = word_map(perm)
        out.append((replace(feats, views=views), [(t, swap_line(text, words)) for t, text in lines]))
    return out

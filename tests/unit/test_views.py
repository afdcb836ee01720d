"""Key views: when the encoder looks, what a view row holds, and the commentator taking them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.vision.bflow import BFlowState, BFlowTokenizer
from models.vision.detector import COCO_CLASSES, Detection
from models.vision.encoder import EncoderConfig, load_encoder
from models.vision.views import (
    OBJECT_META,
    VIEW_META,
    KeyViewEncoder,
    ViewConfig,
    ViewState,
    object_rows,
    view_rows,
)

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random-config CLIP vision tower saved to a local folder (any HF tower plugs in)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    path = tmp_path_factory.mktemp("clip")
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8)
    CLIPVisionModel(cfg).save_pretrained(path)
    return str(path)


def _frames(n: int, *, mover_from: int) -> list[np.ndarray]:
    """A static textured scene; from frame ``mover_from`` a bright square moves right."""
    rng = np.random.default_rng(0)
    base = (rng.random((120, 160, 3)) * 60 + 60).astype(np.uint8)
    out = []
    for i in range(n):
        f = base.copy()
        if i >= mover_from:
            x = 10 + 6 * (i - mover_from)
            f[50:80, x : x + 30] = 250
        out.append(f)
    return out


def _steps(frames: list[np.ndarray]) -> list:
    from models.vision.flow import optical_flow, to_luma, to_numpy

    tok, state, prev, steps = BFlowTokenizer(), BFlowState(), None, []
    for f in frames:
        luma = to_numpy(to_luma(f, np))
        flow = np.zeros((*luma.shape, 2), np.float32) if prev is None else to_numpy(optical_flow(prev, luma, xp=np))
        steps.append(tok.step(state, f, flow))
        prev = luma
    return steps


def test_schedule_looks_at_start_on_new_motion_and_on_refresh(tiny_clip: str) -> None:
    viewer = KeyViewEncoder(encoder_config=EncoderConfig(kind="hf", path=tiny_clip),
                            config=ViewConfig(refresh_s=4.0, min_gap_s=1.0, quiet_steps=3))
    frames = _frames(60, mover_from=12)
    steps = _steps(frames)
    state = ViewState()
    taken = [t for t, (f, st) in enumerate(zip(frames, steps, strict=True))
             if len(viewer.step_batch([state], [st], [f])[0])]
    assert taken[0] == 0  # the first frame is a key view
    assert 12 in taken or 13 in taken  # the square starts to move: look at it
    assert state.views == len(taken)
    gaps = np.diff(taken) / 5.0
    assert gaps.max() <= 4.0 + 1e-9  # refreshed at least every 4 s
    assert gaps.min() >= 1.0 - 1e-9  # never two views within 1 s (no cut here)
    assert len(taken) / (len(frames) / 5.0) <= 1.0  # at most one encoder call per second


def test_view_rows_hold_features_and_regions(tiny_clip: str) -> None:
    enc = load_encoder(EncoderConfig(kind="hf", path=tiny_clip, cells=2))
    feats = enc.encode(np.stack(_frames(2, mover_from=0)))
    rows = view_rows(feats)
    assert rows.shape == (2, 5, enc.feature_dim + VIEW_META) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[:, :, : enc.feature_dim], feats)
    assert rows[0, 0, -5:].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]  # the pooled view covers the frame
    assert rows[0, 4, -5:].tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]  # the last cell: bottom right
    with pytest.raises(ValueError, match="1 \\+ c\\*c"):
        view_rows(np.zeros((1, 3, 8), np.float32))


def test_object_rows_carry_class_score_and_box() -> None:
    person = Detection(x1=16.0, y1=12.0, x2=48.0, y2=108.0, score=0.7, class_id=0, name="person")
    car = Detection(x1=80.0, y1=60.0, x2=160.0, y2=120.0, score=0.4, class_id=2, name="car")
    rows = object_rows([person, car], 160, 120, 8)
    assert rows.shape == (2, 8 + VIEW_META + OBJECT_META) and OBJECT_META == len(COCO_CLASSES) + 1
    assert not rows[:, :8].any()  # no encoder feature on object rows
    assert rows[0, 8:13].tolist() == pytest.approx([0.1, 0.1, 0.3, 0.9, 0.0])  # box in parts of the frame
    assert rows[1, 8:13].tolist() == pytest.approx([0.5, 0.5, 1.0, 1.0, 0.0])
    classes = rows[:, 8 + VIEW_META : -1]
    assert classes[0, 0] == pytest.approx(0.7) and classes[1, 2] == pytest.approx(0.4)
    assert np.count_nonzero(classes) == 2 and rows[:, -1].tolist() == [1.0, 1.0]
    assert object_rows([], 160, 120, 8).shape == (0, 8 + VIEW_META + OBJECT_META)


def _astronaut() -> np.ndarray:
    """A model-grid frame (uint8 [120, 160, 3]) with the astronaut photo: a person on the left."""
    import av

    path = Path(__file__).resolve().parents[1] / "data" / "detector_astronaut.jpg"
    with av.open(str(path)) as container:  # 320x320, a person fills the left two thirds
        photo = next(container.decode(video=0)).reformat(width=120, height=120, format="rgb24").to_ndarray()
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, 20:140] = photo
    return frame


def test_detector_looks_at_key_views_too(tiny_clip: str) -> None:
    """With ``objects``, a view is the encoder's rows (object columns zero) then one row per box."""
    frame = _astronaut()
    viewer = KeyViewEncoder(encoder_config=EncoderConfig(kind="hf", path=tiny_clip), config=ViewConfig(objects=4))
    assert viewer.detector is not None and viewer.dim == viewer.encoder.feature_dim + VIEW_META + OBJECT_META
    step = _steps([frame])[0]
    (rows,) = viewer.step_batch([ViewState()], [step], [frame])
    boxes = viewer.detector.detect(frame)
    assert [b.name for b in boxes] == ["person"]
    assert rows.shape == (1 + len(boxes), viewer.dim)
    assert not rows[0, -OBJECT_META:].any()  # the encoder's pooled row
    np.testing.assert_allclose(rows[1:], object_rows(boxes, 160, 120, viewer.encoder.feature_dim))
    with pytest.raises(ValueError, match="objects"):
        ViewConfig(objects=-1)


def test_tracks_tag_object_tokens_instead_of_rows(tiny_clip: str) -> None:
    """With ``objects_as="tracks"`` the view is the encoder's alone; the person's box tags the token inside it."""
    from models.vision.bflow import TOKEN_DIM, BFlowStep
    from models.vision.objects import TAG_CLASS0, TAG_FLAG

    frame = _astronaut()
    viewer = KeyViewEncoder(encoder_config=EncoderConfig(kind="hf", path=tiny_clip),
                            config=ViewConfig(objects=4, objects_as="tracks"))
    assert viewer.dim == viewer.encoder.feature_dim + VIEW_META
    tokens = np.zeros((2, TOKEN_DIM), np.float32)
    tokens[:, 1] = 1.0
    tokens[0, 3:5] = (60 / 160, 60 / 120)  # on the astronaut
    tokens[1, 3:5] = (150 / 160, 10 / 120)  # on the black border
    step = BFlowStep(tokens=tokens, is_key=False, cut_score=0.0, motion_px=2.0, n_flow=2)
    state = ViewState()
    (rows,) = viewer.step_batch([state], [step], [frame], [np.zeros((120, 160, 2), np.float32)])
    assert rows.shape == (1, viewer.dim) and [COCO_CLASSES[c] for c in state.tracks.classes] == ["person"]
    assert tokens[0, TAG_FLAG] == 1 and tokens[0, TAG_CLASS0 + COCO_CLASSES.index("person")] == 1
    assert not tokens[1, TAG_FLAG:].any()
    with pytest.raises(ValueError, match="objects_as"):
        ViewConfig(objects_as="boxes")


def test_untracked_motion_makes_the_detector_look_again(tiny_clip: str) -> None:
    """Tracks: motion outside every tracked box for two steps (after the 1 s gap) takes a view."""
    from models.vision.bflow import TOKEN_DIM, BFlowStep

    frame = _astronaut()
    viewer = KeyViewEncoder(encoder_config=EncoderConfig(kind="hf", path=tiny_clip),
                            config=ViewConfig(objects=4, objects_as="tracks", refresh_s=100.0))
    still = np.zeros((120, 160, 2), np.float32)

    def step(x: float | None) -> BFlowStep:
        tokens = np.zeros((0 if x is None else 1, TOKEN_DIM), np.float32)
        if x is not None:
            tokens[0, 1], tokens[0, 3], tokens[0, 4] = 1.0, x / 160, 0.5
        return BFlowStep(tokens=tokens, is_key=False, cut_score=0.0, motion_px=1.0, n_flow=len(tokens))

    state = ViewState()
    xs = [None, 60, 60, 60, 60, 60, 60, 150, 150, 150]  # the person moves in its box, then something at x=150
    taken = [t for t, x in enumerate(xs) if len(viewer.step_batch([state], [step(x)], [frame], [still])[0])]
    assert taken == [0, 8]  # the first frame; the second step of untracked motion (steps 7, 8)

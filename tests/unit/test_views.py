"""Key views: when the encoder looks, what a view row holds, and the commentator taking them."""

from __future__ import annotations

import numpy as np
import pytest

from models.vision.bflow import BFlowState, BFlowTokenizer
from models.vision.encoder import EncoderConfig, load_encoder
from models.vision.views import VIEW_META, KeyViewEncoder, ViewConfig, ViewState, view_rows

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

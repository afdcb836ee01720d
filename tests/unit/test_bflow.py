"""B-Flow v0: nothing on a static scene, tokens in proportion to motion, key views on cuts."""

from __future__ import annotations

import numpy as np

from models.vision.bflow import TOKEN_DIM, BFlowState, BFlowStep, BFlowTokenizer, dense_tokens
from models.vision.flow import optical_flow, to_luma

H, W = 120, 160
Y, X = np.mgrid[0:H, 0:W].astype(np.float32)


def texture(dx: float = 0.0, dy: float = 0.0, seed: int = 0) -> np.ndarray:
    """A smooth coloured texture shifted by (dx, dy) pixels: uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    x, y = X - dx, Y - dy
    v = sum(np.sin(x / rng.uniform(4, 12) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(4, 12)) for _ in range(4))
    v = (v - v.min()) / (v.max() - v.min())
    tint = rng.uniform(0.3, 1.0, 3)
    return (np.stack([v * tint[0], v * tint[1], v * tint[2]], -1) * 255).astype(np.uint8)


def run(frames: list[np.ndarray]) -> list[BFlowStep]:
    tokenizer, state, prev, steps = BFlowTokenizer(), BFlowState(), None, []
    for frame in frames:
        luma = to_luma(frame)
        flow = np.zeros((H, W, 2), np.float32) if prev is None else optical_flow(prev, luma)
        prev = luma
        steps.append(tokenizer.step(state, frame, flow))
    return steps


def test_static_scene_costs_nothing_after_the_first_key_view() -> None:
    steps = run([texture()] * 21)
    assert steps[0].is_key and steps[0].n_key == 16
    assert [len(s.tokens) for s in steps[1:]] == [0] * 20
    assert not any(s.is_key for s in steps[1:])


def test_moving_square_gives_a_few_flow_tokens_where_it_moves() -> None:
    frames = []
    for i in range(6):
        frame = texture()
        frame[40:64, 20 + 6 * i: 44 + 6 * i] = (255, 255, 255)
        frames.append(frame)
    steps = run(frames)
    for step in steps[1:]:
        assert not step.is_key
        assert 1 <= step.n_flow <= 8
        centres = step.tokens[:, 3:5]
        assert np.all((centres[:, 1] > 0.2) & (centres[:, 1] < 0.7))  # rows of the square


def test_pan_is_flow_not_key_views() -> None:
    steps = run([texture(dx=4 * i) for i in range(8)])
    assert not any(s.is_key for s in steps[1:])
    for step in steps[1:]:
        camera = step.tokens[step.tokens[:, 2] == 1]
        assert len(camera) == 1 and camera[0, 5] * 8 > 3  # camera moves right ~4 px
    assert np.median([len(s.tokens) for s in steps[1:]]) <= 3  # a pan is one camera token


def test_hard_cut_takes_a_key_view() -> None:
    steps = run([texture(seed=1)] * 3 + [texture(seed=2)] * 3)
    assert steps[3].is_key and steps[3].n_key == 16
    assert steps[3].n_flow == 0 and len(steps[3].tokens) == 16  # the key view replaces the flow
    assert not steps[4].is_key and len(steps[4].tokens) == 0


def test_fast_pan_up_to_15_px_is_one_camera_token() -> None:
    steps = run([texture(dx=15 * i) for i in range(6)])
    assert not any(s.is_key for s in steps[1:])
    assert [len(s.tokens) for s in steps[1:]] == [1] * 5
    assert all(abs(s.motion_px - 15) < 1 for s in steps[1:])


def test_sensor_noise_on_a_static_scene_costs_nothing() -> None:
    rng = np.random.default_rng(0)
    base = texture().astype(np.float32)
    frames = [np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    assert [len(s.tokens) for s in run(frames)[1:]] == [0] * 7


def test_more_moving_area_gives_more_tokens() -> None:
    def moving(size: int) -> int:
        frames = []
        for i in range(3):
            frame = texture()
            frame[10:10 + size, 10 + 5 * i:10 + size + 5 * i] = (250, 250, 250)
            frames.append(frame)
        return len(run(frames)[2].tokens)

    assert moving(16) < moving(48) <= moving(90)


def test_token_shapes_and_dtypes() -> None:
    for step in run([texture(dx=3 * i) for i in range(4)]):
        assert step.tokens.dtype == np.float32 and step.tokens.shape[1] == TOKEN_DIM
    assert dense_tokens(texture()).shape == (64, TOKEN_DIM)


def test_batched_equals_single() -> None:
    tokenizer = BFlowTokenizer()
    frames = [texture(dx=3 * i) for i in range(3)]
    flows = [np.zeros((H, W, 2), np.float32)] + [
        optical_flow(to_luma(a), to_luma(b)) for a, b in zip(frames, frames[1:], strict=False)]
    singles = [BFlowState(), BFlowState()]
    batched = [BFlowState(), BFlowState()]
    for frame, flow in zip(frames, flows, strict=True):
        one = [tokenizer.step(s, frame, flow) for s in singles]
        many = tokenizer.step_batch(batched, np.stack([frame, frame]), np.stack([flow, flow]))
        for a, b in zip(one, many, strict=True):
            np.testing.assert_allclose(a.tokens, b.tokens, atol=1e-5)
            assert a.is_key == b.is_key

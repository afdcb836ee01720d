"""Dense pyramidal Lucas-Kanade flow on synthetic textures with known motion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.vision.flow import (
    FlowConfig,
    array_module,
    end_point_error,
    optical_flow,
    to_luma,
    to_numpy,
    translated_texture,
)

H, W = 120, 160
CROP = 16  # border pixels left out of the EPE (content enters/leaves the frame there)


def texture(dx: float = 0.0, dy: float = 0.0, seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """A texture translated by a known (dx, dy): see :func:`models.vision.flow.translated_texture`."""
    return translated_texture(dx, dy, seed, h, w)


def interior_epe(flow: np.ndarray, dx: float, dy: float) -> float:
    truth = np.broadcast_to(np.array([dx, dy], np.float32), flow.shape)
    return end_point_error(flow[..., CROP:-CROP, CROP:-CROP, :], truth[..., CROP:-CROP, CROP:-CROP, :])


def test_array_module_is_numpy_without_a_gpu() -> None:
    assert array_module() is np


@pytest.mark.parametrize(("dx", "dy"), [(2.5, -1.25), (0.3, 0.2), (8.0, 5.0), (12.0, -9.0)])
def test_translation_is_recovered_to_subpixel_accuracy(dx: float, dy: float) -> None:
    for seed in range(2):
        flow = to_numpy(optical_flow(texture(seed=seed), texture(dx, dy, seed=seed)))
        assert flow.shape == (H, W, 2) and flow.dtype == np.float32
        epe = interior_epe(flow, dx, dy)
        assert epe < 0.25, f"shift ({dx}, {dy}) seed {seed}: EPE {epe:.3f} px"


def test_global_brightness_change_does_not_break_the_flow() -> None:
    cur = texture(3.0, 1.0) * 0.8 + 0.1  # auto-exposure: gain and offset
    assert interior_epe(to_numpy(optical_flow(texture(), cur)), 3.0, 1.0) < 0.25


def test_zero_motion_gives_zero_flow() -> None:
    img = texture(seed=3)
    flow = to_numpy(optical_flow(img, img.copy()))
    assert np.abs(flow).max() < 1e-3


def test_textureless_image_gives_zero_flow() -> None:
    flat = np.full((H, W), 0.4, np.float32)
    brighter = np.full((H, W), 0.45, np.float32)
    for cur in (flat, brighter):
        assert np.abs(to_numpy(optical_flow(flat, cur))).max() < 1e-3


def test_sensor_noise_on_a_flat_image_gives_small_flow() -> None:
    rng = np.random.default_rng(0)
    a, b = (np.float32(0.5) + rng.normal(0, 2 / 255, (2, H, W))).astype(np.float32)
    assert np.linalg.norm(to_numpy(optical_flow(a, b)), axis=-1).mean() < 0.5


def test_batched_equals_per_item() -> None:
    shifts = [(2.5, -1.25), (0.0, 0.0), (-6.0, 4.0)]
    prev = np.stack([texture(seed=i) for i in range(len(shifts))])
    cur = np.stack([texture(dx, dy, seed=i) for i, (dx, dy) in enumerate(shifts)])
    batched = to_numpy(optical_flow(prev, cur))
    assert batched.shape == (len(shifts), H, W, 2)
    for i in range(len(shifts)):
        np.testing.assert_allclose(batched[i], to_numpy(optical_flow(prev[i], cur[i])), atol=1e-4)


def test_speed_knob_finest_level_keeps_accuracy() -> None:
    config = dataclasses.replace(FlowConfig(), finest_level=1)
    flow = to_numpy(optical_flow(texture(), texture(4.0, 2.0), config))
    assert flow.shape == (H, W, 2)
    assert interior_epe(flow, 4.0, 2.0) < 0.25


def test_odd_sizes_work() -> None:
    flow = to_numpy(optical_flow(texture(h=61, w=83), texture(2.0, 1.0, h=61, w=83)))
    assert flow.shape == (61, 83, 2)
    assert end_point_error(flow[8:-8, 8:-8], np.array([2.0, 1.0])) < 0.5


def test_to_luma() -> None:
    rgb = np.zeros((2, H, W, 3), np.uint8)
    rgb[0] = 255
    rgb[1, ..., 1] = 255
    luma = to_numpy(to_luma(rgb))
    assert luma.shape == (2, H, W) and luma.dtype == np.float32
    np.testing.assert_allclose(luma[0], 1.0, atol=1e-5)
    np.testing.assert_allclose(luma[1], 0.587, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        to_luma(rgb.astype(np.float32))


def test_end_point_error() -> None:
    flow = np.zeros((4, 5, 2), np.float32)
    truth = np.zeros_like(flow)
    truth[..., 0] = 3.0
    truth[..., 1] = 4.0
    assert end_point_error(flow, truth) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        end_point_error(flow[..., :1], truth[..., :1])


def test_invalid_inputs_raise() -> None:
    img = texture()
    with pytest.raises(ValueError, match="same shape"):
        optical_flow(img, img[:-1])
    with pytest.raises(ValueError, match="float"):
        optical_flow((img * 255).astype(np.uint8), (img * 255).astype(np.uint8))
    with pytest.raises(ValueError):
        optical_flow(img[None, None], img[None, None])
    with pytest.raises(ValueError):
        FlowConfig(levels=0)
    with pytest.raises(ValueError):
        FlowConfig(tikhonov=-1.0)

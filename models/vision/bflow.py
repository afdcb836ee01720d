"""B-Flow v0: video tokens for what *changed*, not for every frame.

Most of a video is redundant from one step to the next. B-Flow splits it into

* **key views**: a full view of the frame as ``key_cols x key_rows`` patch
  tokens, taken only when the scene changes a lot — the first frame, a cut, a flash —
  detected as a large changed area after camera-motion compensation;
* **flow tokens**: one *camera* token when the whole image moves (its median flow),
  plus one token per grid cell whose motion differs from the camera's (objects),
  keeping the strongest ``max_flow_tokens`` cells.

A static scene therefore costs nothing after its first key view, a pan costs one token
per step, and a moving object costs tokens in proportion to the area it covers: the
budget is tokens per second, not tokens per frame (DESIGN.md §1).

Token layout (``TOKEN_DIM = 64`` float32 features, unused entries are 0):

| index | key token | camera token | object flow token |
|---|---|---|---|
| 0 | 1 (is key) | 0 | 0 |
| 1 | 0 | 1 (is flow) | 1 (is flow) |
| 2 | 0 | 1 (is camera) | 0 |
| 3, 4 | cell centre x, y in [0, 1] | 0.5, 0.5 | cell centre x, y in [0, 1] |
| 5, 6 | 0 | camera dx, dy / ``flow_scale_px`` | cell residual dx, dy / ``flow_scale_px`` |
| 7 | 0 | camera magnitude / scale | residual magnitude / scale |
| 8–10 | cell mean RGB in [0, 1] | frame mean RGB | cell mean RGB |
| 11 | scene-change score | scene-change score | fraction of the cell that moves |
| 12–15 | 0 | 0 | cell absolute dx, dy, magnitude / scale; 0 |
| 16–63 | 4x4 RGB thumbnail of the cell (48 values) | 0 | 0 |

The scene-change score is the fraction of pixels whose luma changed by more than
``change_threshold`` once the camera motion (the median flow) is compensated. A key
step carries only key tokens: the flow across a cut relates unrelated pictures.

The heavy array work (cell statistics, residuals) runs on the array module of
:mod:`models.vision.flow` (CuPy with a GPU, else NumPy) and is batched over streams in
:meth:`BFlowTokenizer.step_batch`; outputs are NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.vision.flow import _Warper, array_module, to_luma, to_numpy

TOKEN_DIM = 64
_THUMB = 4  # key-token thumbnail side (4x4 RGB = 48 values)


@dataclass(frozen=True)
class BFlowConfig:
    """B-Flow v0 hyperparameters."""

    key_cols: int = 4  # key view grid: columns of patch tokens
    key_rows: int = 4  # key view grid: rows of patch tokens
    flow_cols: int = 8  # flow grid: cells across
    flow_rows: int = 6  # flow grid: cells down
    motion_threshold_px: float = 1.5  # cell residual motion (px/step) below this emits no token
    camera_threshold_px: float = 0.6  # median (camera) motion below this emits no camera token
    moving_fraction: float = 0.2  # fraction of a cell's pixels that must move for it to count
    change_threshold: float = 0.1  # luma change (0..1) that marks a pixel as changed
    cut_threshold: float = 0.35  # fraction of changed pixels above which a key view is taken
    max_flow_tokens: int = 12  # object flow tokens per step at most (strongest cells kept)
    flow_scale_px: float = 8.0  # flow features are divided by this (px/step)


@dataclass
class BFlowState:
    """Per-stream tokenizer state.

    Attributes:
        prev_luma: float32 [H, W] luma of the previous step in [0, 1], or None at start.
        steps: Steps tokenized so far.
        key_views: Key views taken so far.
        tokens: Tokens emitted so far.
    """

    prev_luma: np.ndarray | None = None
    steps: int = 0
    key_views: int = 0
    tokens: int = 0

    def reset(self) -> None:
        """Forget the stream (the next step takes a key view)."""
        self.prev_luma = None
        self.steps = self.key_views = self.tokens = 0


@dataclass(frozen=True)
class BFlowStep:
    """Tokens of one model step.

    Attributes:
        tokens: float32 [N, TOKEN_DIM]; N may be 0.
        is_key: Whether a key view was taken.
        cut_score: Scene-change score: fraction of pixels (0..1) whose luma changed by
            more than ``change_threshold`` after camera-motion compensation; 1.0 on
            the first step of a stream.
        motion_px: Mean optical-flow magnitude, pixels per step.
        n_key: Key tokens in ``tokens``.
        n_flow: Flow tokens (camera + object) in ``tokens``.
    """

    tokens: np.ndarray
    is_key: bool
    cut_score: float
    motion_px: float
    n_key: int = 0
    n_flow: int = 0


def _cell_means(x: Any, rows: int, cols: int, xp: Any) -> Any:
    """Mean over a rows x cols grid: ``[B, H, W, C]`` → float32 ``[B, rows, cols, C]``
    (crops the remainder; uint8 input is summed in float32 without a float copy)."""
    b, h, w, c = x.shape
    ch, cw = h // rows, w // cols
    x = x[:, : ch * rows, : cw * cols]
    # Two reductions over contiguous runs (rows within a cell, then columns) are ~6x
    # faster than one mean over the two strided axes.
    per_row = x.reshape(b, rows, ch, cols * cw * c).sum(axis=2, dtype=xp.float32)
    return per_row.reshape(b, rows, cols, cw, c).sum(axis=3) / xp.float32(ch * cw)


def _magnitude(v: Any, xp: Any) -> Any:
    """Euclidean length of 2-D vectors: float32 ``[..., 2]`` → ``[..., ]`` (two
    elementwise squares: a sum over the last axis of size 2 is ~4x slower)."""
    return xp.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1])


@dataclass
class BFlowTokenizer:
    """The B-Flow v0 tokenizer (stateless: per-stream state is a :class:`BFlowState`)."""

    config: BFlowConfig = field(default_factory=BFlowConfig)

    def step(self, state: BFlowState, rgb: np.ndarray, flow: np.ndarray) -> BFlowStep:
        """Tokenize one model step of one stream.

        Args:
            state: The stream's state (updated).
            rgb: uint8 [H, W, 3] RGB frame.
            flow: float32 [H, W, 2] optical flow from the previous step, pixels.

        Returns:
            The step's tokens.

        Raises:
            ValueError: If the shapes or dtypes are wrong.
        """
        return self.step_batch([state], rgb[None], flow[None])[0]

    def step_batch(self, states: list[BFlowState], rgbs: np.ndarray, flows: np.ndarray) -> list[BFlowStep]:
        """Tokenize one step of B streams at once.

        Args:
            states: B per-stream states (updated).
            rgbs: uint8 [B, H, W, 3] RGB frames.
            flows: float32 [B, H, W, 2] flows from each stream's previous step, pixels.

        Returns:
            B :class:`BFlowStep`.

        Raises:
            ValueError: If the shapes or dtypes are wrong.
        """
        if rgbs.ndim != 4 or rgbs.shape[-1] != 3 or rgbs.dtype != np.uint8:
            raise ValueError(f"expected uint8 [B, H, W, 3], got {rgbs.dtype} {list(rgbs.shape)}")
        if flows.shape != (*rgbs.shape[:3], 2):
            raise ValueError(f"expected flow [B, H, W, 2] = {[*rgbs.shape[:3], 2]}, got {list(flows.shape)}")
        if len(states) != rgbs.shape[0]:
            raise ValueError(f"{len(states)} states for {rgbs.shape[0]} frames")
        cfg = self.config
        xp = array_module()
        rgb_u8 = xp.asarray(rgbs)
        flow = xp.asarray(flows, dtype=xp.float32)
        luma = to_luma(rgbs, xp)
        b, h, w = luma.shape

        # Camera motion = median flow; objects = cells whose flow differs from it.
        camera = xp.median(flow.reshape(b, -1, 2), axis=1)  # [B, 2]
        # Scene change: the fraction of the picture that the camera motion does not
        # explain (prev(x) vs cur(x + camera)). A pan or a moving object changes a
        # small part; a cut or a flash changes most of it.
        have_prev = [s.prev_luma is not None and s.prev_luma.shape == (h, w) for s in states]
        prev = xp.stack([xp.asarray(s.prev_luma) if ok else luma[i]
                         for i, (s, ok) in enumerate(zip(states, have_prev, strict=True))])
        shift_x = xp.broadcast_to(camera[:, 0, None, None], (b, h, w))
        shift_y = xp.broadcast_to(camera[:, 1, None, None], (b, h, w))
        warped, inside = _Warper((b, h, w), xp)(luma, shift_x, shift_y)
        changed = (xp.abs(prev - warped) > cfg.change_threshold) & inside
        cut = changed.reshape(b, -1).sum(1) / xp.maximum(inside.reshape(b, -1).sum(1), 1)

        rel = flow - camera[:, None, None, :]
        rel_mag = _magnitude(rel, xp)
        mag = _magnitude(flow, xp)
        moving = (rel_mag > cfg.motion_threshold_px).astype(xp.float32)
        grid = (cfg.flow_rows, cfg.flow_cols)
        flow_cells = _cell_means(flow, *grid, xp)  # the mean relative flow is the mean flow - camera
        per_pixel = _cell_means(xp.stack([rel_mag, moving, mag], axis=-1), *grid, xp)
        cells = xp.concatenate([
            flow_cells - camera[:, None, None, :], per_pixel[..., :2], flow_cells, per_pixel[..., 2:],
            _cell_means(rgb_u8, *grid, xp) / xp.float32(255.0),
        ], axis=-1)  # [B, rows, cols, 10]: rel dx, dy, |rel|, moving fraction, dx, dy, |f|, r, g, b
        key_cells = _cell_means(rgb_u8, cfg.key_rows, cfg.key_cols, xp) / xp.float32(255.0)
        thumbs = _cell_means(rgb_u8, cfg.key_rows * _THUMB, cfg.key_cols * _THUMB, xp) / xp.float32(255.0)
        mean_rgb = _cell_means(rgb_u8, 1, 1, xp)[:, 0, 0] / xp.float32(255.0)

        out = []
        cut_np, camera_np, cells_np = to_numpy(cut), to_numpy(camera), to_numpy(cells)
        key_np, thumbs_np, mean_rgb = to_numpy(key_cells), to_numpy(thumbs), to_numpy(mean_rgb)
        motion_np, luma_np = to_numpy(mag.mean(axis=(1, 2))), to_numpy(luma)
        for i, state in enumerate(states):
            score = 1.0 if not have_prev[i] else float(cut_np[i])
            is_key = score > cfg.cut_threshold
            tokens = []
            if is_key:
                # The key view replaces the flow: across a cut the flow is noise.
                tokens.append(self._key_tokens(key_np[i], thumbs_np[i], score))
                flow_tokens = np.zeros((0, TOKEN_DIM), np.float32)
            else:
                flow_tokens = self._flow_tokens(camera_np[i], cells_np[i], mean_rgb[i], score)
            tokens.append(flow_tokens)
            all_tokens = np.concatenate(tokens, axis=0).astype(np.float32)
            n_key = cfg.key_rows * cfg.key_cols if is_key else 0
            state.prev_luma = luma_np[i]
            state.steps += 1
            state.key_views += int(is_key)
            state.tokens += len(all_tokens)
            out.append(BFlowStep(all_tokens, is_key, score, float(motion_np[i]), n_key, len(flow_tokens)))
        return out

    def _key_tokens(self, cells: np.ndarray, thumbs: np.ndarray, score: float) -> np.ndarray:
        cfg = self.config
        rows, cols = cfg.key_rows, cfg.key_cols
        tok = np.zeros((rows * cols, TOKEN_DIM), np.float32)
        tok[:, 0] = 1.0
        ys, xs = np.mgrid[0:rows, 0:cols]
        tok[:, 3] = ((xs + 0.5) / cols).ravel()
        tok[:, 4] = ((ys + 0.5) / rows).ravel()
        tok[:, 8:11] = cells.reshape(-1, 3)
        tok[:, 11] = score
        patches = thumbs.reshape(rows, _THUMB, cols, _THUMB, 3).transpose(0, 2, 1, 3, 4)
        tok[:, 16:64] = patches.reshape(rows * cols, _THUMB * _THUMB * 3)
        return tok

    def _flow_tokens(self, camera: np.ndarray, cells: np.ndarray, mean_rgb: np.ndarray, score: float) -> np.ndarray:
        cfg = self.config
        scale = cfg.flow_scale_px
        tokens = []
        cam_mag = float(np.hypot(*camera))
        if cam_mag > cfg.camera_threshold_px:
            tok = np.zeros(TOKEN_DIM, np.float32)
            tok[1] = tok[2] = 1.0
            tok[3:5] = 0.5
            tok[5:7] = camera / scale
            tok[7] = cam_mag / scale
            tok[8:11] = mean_rgb
            tok[11] = score
            tokens.append(tok)
        rows, cols = cells.shape[:2]
        # A cell counts when enough of its pixels move against the camera.
        active = np.argwhere((cells[..., 3] > cfg.moving_fraction)
                             & (cells[..., 2] > cfg.motion_threshold_px * cfg.moving_fraction))
        strongest = active[np.argsort(-cells[active[:, 0], active[:, 1], 2])][: cfg.max_flow_tokens]
        for r, c in strongest:
            cell = cells[r, c]
            tok = np.zeros(TOKEN_DIM, np.float32)
            tok[1] = 1.0
            tok[3], tok[4] = (c + 0.5) / cols, (r + 0.5) / rows
            tok[5:8] = cell[0:3] / scale
            tok[8:11] = cell[7:10]
            tok[11] = cell[3]
            tok[12:15] = cell[4:7] / scale
            tokens.append(tok)
        return np.stack(tokens) if tokens else np.zeros((0, TOKEN_DIM), np.float32)


def dense_tokens(rgb: np.ndarray, grid: int = 8) -> np.ndarray:
    """The dense baseline: a ``grid x grid`` key view of every frame.

    Args:
        rgb: uint8 [H, W, 3] RGB.
        grid: Patches per side (8 → 64 tokens per frame).

    Returns:
        float32 [grid * grid, TOKEN_DIM] key-style tokens.
    """
    tokenizer = BFlowTokenizer(BFlowConfig(key_cols=grid, key_rows=grid))
    frame = rgb[None].astype(np.float32) / 255.0
    cells = _cell_means(frame, grid, grid, np)[0]
    thumbs = _cell_means(frame, grid * _THUMB, grid * _THUMB, np)[0]
    return tokenizer._key_tokens(cells, thumbs, 1.0)

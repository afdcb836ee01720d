"""Dense optical flow written once against an array module (CuPy or NumPy).

Method: coarse-to-fine pyramidal dense Lucas-Kanade with iterative warping.

* B. D. Lucas and T. Kanade, "An iterative image registration technique with an
  application to stereo vision", IJCAI 1981: per-pixel least squares on the
  brightness-constancy linearisation over a small window.
* J.-Y. Bouguet, "Pyramidal implementation of the affine Lucas Kanade feature
  tracker", Intel Corporation, 2001: image pyramid, flow propagated from coarse to
  fine, several warp-and-solve iterations per level, with the spatial gradient
  matrix ``G`` of the *previous* image computed once per level.

Differences from the textbook tracker, to make it dense, stable and batched:

* The flow is solved at every pixel at once; window sums are separable box
  filters (shifted adds, or cumulative sums for large radii; no SciPy, no
  OpenCV: only operations that exist in both NumPy and CuPy). Warping is a
  bilinear gather with flat indices.
* Each iteration *re-solves* for the window's displacement with the current
  image linearised around every pixel's own flow (the update structure of
  G. Farnebäck, "Two-frame motion estimation based on polynomial expansion",
  SCIA 2003) instead of adding an increment: increments computed through a
  per-pixel warp do not converge (measured: the error grows with iterations).
* ``G`` gets a Tikhonov term ``alpha * I`` pulling the solution toward the flow
  the level started from (the upsampled coarser estimate; zero at the coarsest
  level). Textureless areas therefore keep the coarse flow, which is zero when
  the flat region is larger than a coarse window; a constant image gets exactly
  zero flow, and sensor noise on flat areas is damped instead of amplified.
* Pixels whose warped position falls outside the current image get a zero
  temporal residual, so they take their flow from their textured neighbours.
* Before each residual, the warped image is mapped to the mean and standard
  deviation of the previous one over their overlap, so global exposure changes
  (auto-exposure, fades) do not read as motion.

Flow convention: for an image pair ``(prev, cur)`` the flow ``f`` satisfies

    prev(x) ≈ cur(x + f(x)),

i.e. ``f(x) = (dx, dy)`` is where the content at pixel ``x`` of ``prev`` moved to
in ``cur``, in pixels per frame; ``dx`` is positive to the right, ``dy`` positive
downwards.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FlowConfig",
    "array_module",
    "end_point_error",
    "optical_flow",
    "to_luma",
    "to_numpy",
    "translated_texture",
]

# ITU-R BT.601 luma weights for R, G, B.
_BT601 = (0.299, 0.587, 0.114)
# Box filters up to this radius use shifted adds, larger ones cumulative sums.
_SHIFT_ADD_MAX_RADIUS = 8


@functools.cache
def array_module() -> types.ModuleType:
    """Returns the array module used for the heavy array work (probed once, cached).

    Returns:
        ``cupy`` when it imports and a CUDA device is available, else ``numpy``.
        Any exception raised while probing CuPy (missing package, missing driver,
        broken CUDA install) falls back to ``numpy``.
    """
    try:
        import cupy  # type: ignore[import-not-found]

        if cupy.cuda.is_available():
            return cupy
    except Exception:  # noqa: BLE001 - any CuPy/CUDA failure means "use NumPy"
        pass
    return np


def to_numpy(a: Any) -> np.ndarray:
    """Moves an array of either module to host memory.

    Args:
        a: A NumPy or CuPy array (or anything ``np.asarray`` accepts).

    Returns:
        The same data as a NumPy array (no copy when it already is one).
    """
    get = getattr(a, "get", None)
    if callable(get) and not isinstance(a, np.ndarray):
        return get()
    return np.asarray(a)


def to_luma(rgb: Any, xp: types.ModuleType | None = None) -> Any:
    """Converts RGB frames to luma in [0, 1] with BT.601 weights.

    Args:
        rgb: uint8 ``[..., H, W, 3]`` RGB frames (any leading batch dims).
        xp: Array module to compute with; defaults to :func:`array_module`.

    Returns:
        float32 ``[..., H, W]`` luma in [0, 1], an array of module ``xp``.

    Raises:
        ValueError: If ``rgb`` is not uint8 with a trailing dimension of 3.
    """
    xp = array_module() if xp is None else xp
    rgb = xp.asarray(rgb)
    if rgb.dtype != xp.uint8 or rgb.ndim < 3 or rgb.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 [..., H, W, 3] RGB, got {rgb.dtype} {list(rgb.shape)}"
        )
    w = xp.asarray(np.asarray(_BT601, dtype=np.float32) / np.float32(255.0))
    return rgb.astype(xp.float32) @ w


@dataclass(frozen=True)
class FlowConfig:
    """Hyperparameters of the pyramidal dense Lucas-Kanade flow.

    The defaults were chosen on synthetic 1/f textures at 160x120 (see
    ``bench/bench_flow.py`` and ``tests/unit/test_flow.py``): they handle
    translations of up to ~15 px (5 levels: the coarsest is 1/16 scale, 7x10 px,
    where 15 px is under 1 px) at a mean end-point error of a few hundredths of a
    pixel. With 4 levels one texture in ~6 failed at 15 px.
    """

    levels: int = 5  # pyramid levels including full resolution (each halves H and W)
    min_level_size: int = 6  # a coarser level is built only if min(H, W) there >= this
    iterations: int = 2  # warp-and-solve iterations at each coarse level
    finest_iterations: int = 1  # iterations at the finest solved level (the costly one)
    window_radius: int = 4  # LK window is (2r+1)^2 pixels at every level
    tikhonov: float = 3e-5  # alpha: weight of the coarse-level flow prior, luma^2/px^2 per px
    blur_input: bool = True  # smooth inputs with a [1,2,1]/4 binomial before the pyramid
    smooth_radius: int = 0  # box-smooth the flow after every iteration (0 = off)
    finest_level: int = 0  # solve down to this level, then upsample (1 = ~2x faster)
    match_brightness: bool = True  # match warped cur's mean/std to prev's (exposure changes)

    def __post_init__(self) -> None:
        """Validates the fields.

        Raises:
            ValueError: If a count is below 1, a radius or ``tikhonov`` is
                negative, or ``min_level_size < 2``.
        """
        if min(self.levels, self.iterations, self.finest_iterations) < 1:
            raise ValueError(f"levels and iterations must be >= 1, got {self}")
        if min(self.window_radius, self.smooth_radius, self.finest_level) < 0:
            raise ValueError(f"radii and finest_level must be >= 0, got {self}")
        if self.tikhonov < 0 or self.min_level_size < 2:
            raise ValueError(f"need tikhonov >= 0 and min_level_size >= 2, got {self}")


# ---------------------------------------------------------------------------
# Small filters (all vectorised over leading dims; NumPy and CuPy both have them)
# ---------------------------------------------------------------------------


def _box_sum_axis(x: Any, r: int, axis: int, xp: types.ModuleType) -> Any:
    """Sum over a truncated window of radius ``r`` along ``axis`` (-1 or -2).

    Windows are truncated at the image border (no padding): the caller divides by
    :func:`_window_count`.

    Args:
        x: float32 ``[..., H, W]``.
        r: Window radius in pixels (>= 1).
        axis: -1 (along W) or -2 (along H).
        xp: Array module.

    Returns:
        float32 ``[..., H, W]`` window sums.
    """
    n = x.shape[axis]
    r = min(r, n - 1)
    if r <= _SHIFT_ADD_MAX_RADIUS:
        # Shifted adds: fastest with NumPy for the radii used here (measured).
        s = x.copy()
        for j in range(1, r + 1):
            if axis == -1:
                s[..., j:] += x[..., :-j]
                s[..., :-j] += x[..., j:]
            else:
                s[..., j:, :] += x[..., :-j, :]
                s[..., :-j, :] += x[..., j:, :]
        return s
    # Prefix sums: cost independent of r. S[i] = C[min(i + r, n - 1) + 1] - C[max(i - r, 0)].
    shape = list(x.shape)
    shape[axis] = n + 1
    c = xp.zeros(shape, dtype=x.dtype)
    if axis == -1:
        xp.cumsum(x, axis=-1, out=c[..., 1:])
    else:
        xp.cumsum(x, axis=-2, out=c[..., 1:, :])
    i = xp.arange(n)
    hi = xp.minimum(i + r, n - 1) + 1
    lo = xp.maximum(i - r, 0)
    return xp.take(c, hi, axis=axis) - xp.take(c, lo, axis=axis)


def _window_count(n: int, r: int, xp: types.ModuleType) -> Any:
    """Number of in-image samples of each truncated window along one axis.

    Args:
        n: Axis length.
        r: Window radius.
        xp: Array module.

    Returns:
        float32 ``[n]`` counts.
    """
    i = xp.arange(n, dtype=xp.float32)
    return xp.minimum(i, r) + xp.minimum(n - 1 - i, r) + 1


def _box_sum(x: Any, r: int, xp: types.ModuleType) -> Any:
    """Sum over a (2r+1)^2 window truncated at the image border.

    Args:
        x: float32 ``[..., H, W]``.
        r: Window radius in pixels (>= 0).
        xp: Array module.

    Returns:
        float32 ``[..., H, W]`` window sums (divide by :func:`_window_area` for means).
    """
    if r == 0:
        return x
    return _box_sum_axis(_box_sum_axis(x, r, -1, xp), r, -2, xp)


def _window_area(h: int, w: int, r: int, xp: types.ModuleType) -> Any:
    """In-image pixel count of each truncated (2r+1)^2 window.

    Args:
        h: Image height.
        w: Image width.
        r: Window radius.
        xp: Array module.

    Returns:
        float32 ``[H, W]`` counts.
    """
    return _window_count(h, r, xp)[:, None] * _window_count(w, r, xp)[None, :]


def _box_mean(x: Any, r: int, xp: types.ModuleType) -> Any:
    """Box mean over a (2r+1)^2 window truncated at the image border.

    Args:
        x: float32 ``[..., H, W]``.
        r: Window radius in pixels (>= 0).
        xp: Array module.

    Returns:
        float32 ``[..., H, W]`` window means.
    """
    if r == 0:
        return x
    s = _box_sum(x, r, xp)
    s /= _window_area(x.shape[-2], x.shape[-1], r, xp)
    return s


def _blur121(x: Any, xp: types.ModuleType) -> Any:
    """Separable [1, 2, 1] / 4 binomial blur with edge replication.

    Args:
        x: float32 ``[..., H, W]``.
        xp: Array module.

    Returns:
        float32 ``[..., H, W]``.
    """
    s = x * np.float32(2.0)
    s[..., 1:] += x[..., :-1]
    s[..., :-1] += x[..., 1:]
    s[..., 0] += x[..., 0]
    s[..., -1] += x[..., -1]
    out = s * np.float32(2.0)
    out[..., 1:, :] += s[..., :-1, :]
    out[..., :-1, :] += s[..., 1:, :]
    out[..., 0, :] += s[..., 0, :]
    out[..., -1, :] += s[..., -1, :]
    out *= np.float32(1.0 / 16.0)
    return out


def _gradients(x: Any, xp: types.ModuleType) -> tuple[Any, Any]:
    """Central-difference gradients (one-sided halves at the border).

    Args:
        x: float32 ``[..., H, W]``.
        xp: Array module.

    Returns:
        ``(gx, gy)``, each float32 ``[..., H, W]`` in intensity per pixel.
    """
    half = np.float32(0.5)
    gx = xp.empty_like(x)
    gx[..., 1:-1] = x[..., 2:] - x[..., :-2]
    gx[..., 0] = x[..., 1] - x[..., 0]
    gx[..., -1] = x[..., -1] - x[..., -2]
    gx *= half
    gy = xp.empty_like(x)
    gy[..., 1:-1, :] = x[..., 2:, :] - x[..., :-2, :]
    gy[..., 0, :] = x[..., 1, :] - x[..., 0, :]
    gy[..., -1, :] = x[..., -1, :] - x[..., -2, :]
    gy *= half
    return gx, gy


def _downsample(x: Any) -> Any:
    """2x2 block mean; an odd last row/column is dropped.

    Args:
        x: float32 ``[B, H, W]``.

    Returns:
        float32 ``[B, H // 2, W // 2]``.
    """
    b, h, w = x.shape
    h2, w2 = h // 2, w // 2
    x = x[:, : 2 * h2, : 2 * w2]
    s = x[:, 0::2, 0::2] + x[:, 1::2, 0::2]
    s += x[:, 0::2, 1::2]
    s += x[:, 1::2, 1::2]
    s *= np.float32(0.25)
    return s


def _upsample_flow(u: Any, shape: tuple[int, int], xp: types.ModuleType) -> Any:
    """Doubles a flow component's resolution and magnitude.

    Args:
        u: float32 ``[B, h, w]`` one flow component in coarse pixels.
        shape: Target ``(H, W)`` with ``H in (2h, 2h + 1)``, same for ``W``.
        xp: Array module.

    Returns:
        float32 ``[B, H, W]`` in fine pixels (nearest-neighbour, edge-padded).
    """
    h, w = shape
    up = xp.repeat(xp.repeat(u, 2, axis=1), 2, axis=2)
    ph, pw = h - up.shape[1], w - up.shape[2]
    if ph or pw:
        up = xp.pad(up, [(0, 0), (0, ph), (0, pw)], mode="edge")
    up *= np.float32(2.0)
    return up


class _Warper:
    """Bilinear warping of ``[B, H, W]`` images by a per-pixel displacement."""

    def __init__(self, shape: tuple[int, int, int], xp: types.ModuleType) -> None:
        b, h, w = shape
        self.xp = xp
        self.h, self.w = h, w
        self.gx = xp.arange(w, dtype=xp.float32)[None, None, :]
        self.gy = xp.arange(h, dtype=xp.float32)[None, :, None]
        # Flat gather indices; int32 is faster and enough below 2**31 elements.
        self.index_dtype = xp.int32 if b * h * w + w + 2 < 2**31 else xp.int64
        self.base = (xp.arange(b, dtype=self.index_dtype) * (h * w))[:, None, None]
        # Clamp just inside the last pixel so that x0 + 1 stays in the image.
        self.xmax = np.float32(max(w - 1 - 1e-3, 0))
        self.ymax = np.float32(max(h - 1 - 1e-3, 0))

    def __call__(self, img: Any, u: Any, v: Any) -> tuple[Any, Any]:
        """Samples ``img`` at ``(x + u, y + v)``.

        Args:
            img: float32 ``[B, H, W]``.
            u: float32 ``[B, H, W]`` horizontal displacement in pixels.
            v: float32 ``[B, H, W]`` vertical displacement in pixels.

        Returns:
            ``(warped, inside)``: float32 ``[B, H, W]`` samples (border-clamped) and
            a bool ``[B, H, W]`` mask of positions that fall inside the image.
        """
        xp, h, w = self.xp, self.h, self.w
        x = self.gx + u
        y = self.gy + v
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        xp.clip(x, 0, self.xmax, out=x)
        xp.clip(y, 0, self.ymax, out=y)
        x0 = xp.floor(x)
        y0 = xp.floor(y)
        x -= x0  # fractional parts, float32
        y -= y0
        idx = y0.astype(self.index_dtype)
        idx *= w
        idx += x0.astype(self.index_dtype)
        idx += self.base
        flat = img.reshape(-1)
        a = xp.take(flat, idx)
        bb = xp.take(flat, idx + 1)
        idx += w
        c = xp.take(flat, idx)
        d = xp.take(flat, idx + 1)
        bb -= a
        bb *= x
        bb += a  # top row
        d -= c
        d *= x
        d += c  # bottom row
        d -= bb
        d *= y
        d += bb
        return d, inside


def _match_brightness(prev: Any, warped: Any, inside: Any, xp: types.ModuleType) -> None:
    """Maps ``warped`` in place to the mean and std of ``prev`` on their overlap.

    Cancels global gain/offset changes (auto-exposure, fades) that would otherwise
    violate brightness constancy everywhere. Moments (not a regression) are used,
    so the estimate is not biased while the images are still misaligned; only the
    pixels that stay inside the image are compared, so content entering or
    leaving the frame does not bias it.

    Args:
        prev: float32 ``[B, H, W]``.
        warped: float32 ``[B, H, W]``, current image warped onto ``prev``; modified.
        inside: bool ``[B, H, W]``, pixels whose warped position is in the image.
        xp: Array module.
    """
    m = inside.astype(xp.float32)
    n = xp.maximum(m.sum(axis=(1, 2), keepdims=True), np.float32(1.0))
    pm = prev * m
    cm = warped * m
    mp = pm.sum(axis=(1, 2), keepdims=True) / n
    mc = cm.sum(axis=(1, 2), keepdims=True) / n
    vp = (pm * prev).sum(axis=(1, 2), keepdims=True) / n - mp * mp
    vc = (cm * warped).sum(axis=(1, 2), keepdims=True) / n - mc * mc
    tiny = np.float32(1e-6)
    gain = xp.where((vc > tiny) & (vp > tiny), xp.sqrt(xp.maximum(vp, tiny) / xp.maximum(vc, tiny)), np.float32(1.0))
    warped -= mc
    warped *= gain.astype(xp.float32)
    warped += mp


def _check_pair(prev: Any, cur: Any) -> None:
    """Validates the shapes and dtypes of a luma pair.

    Raises:
        ValueError: On mismatched or malformed inputs.
    """
    if prev.shape != cur.shape:
        raise ValueError(
            f"prev and cur must have the same shape, got {list(prev.shape)} and "
            f"{list(cur.shape)}"
        )
    if prev.ndim not in (2, 3):
        raise ValueError(
            f"expected float32 luma [H, W] or [B, H, W], got {list(prev.shape)}"
        )
    if min(prev.shape[-2:]) < 2:
        raise ValueError(f"images must be at least 2x2, got {list(prev.shape)}")
    for name, a in (("prev", prev), ("cur", cur)):
        if a.dtype.kind != "f":
            raise ValueError(
                f"expected float luma in [0, 1] for {name}, got {a.dtype} "
                f"{list(a.shape)} (use to_luma on uint8 RGB)"
            )


def optical_flow(
    prev: Any,
    cur: Any,
    config: FlowConfig = FlowConfig(),
    xp: types.ModuleType | None = None,
) -> Any:
    """Dense optical flow from ``prev`` to ``cur`` (pyramidal Lucas-Kanade).

    The flow ``f`` satisfies ``prev(x) ≈ cur(x + f(x))`` (see module docstring).
    Batched inputs are solved together; each item is independent of the others.

    Args:
        prev: float32 ``[H, W]`` or ``[B, H, W]`` luma in [0, 1] at time t.
        cur: float32, same shape as ``prev``, luma at time t + 1.
        config: Flow hyperparameters.
        xp: Array module; defaults to :func:`array_module`.

    Returns:
        float32 ``[H, W, 2]`` or ``[B, H, W, 2]`` flow ``(dx, dy)`` in pixels per
        frame, an array of module ``xp``.

    Raises:
        ValueError: If the shapes differ, are not 2-D/3-D, are smaller than 2x2,
            or are not float.
    """
    xp = array_module() if xp is None else xp
    prev = xp.asarray(prev)
    cur = xp.asarray(cur)
    _check_pair(prev, cur)

    single = prev.ndim == 2
    if single:
        prev, cur = prev[None], cur[None]
    prev = prev.astype(xp.float32, copy=False)
    cur = cur.astype(xp.float32, copy=False)
    if config.blur_input:
        # One call for both images halves the per-call overhead.
        both = _blur121(xp.stack([prev, cur]), xp)
        prev, cur = both[0], both[1]

    # Image pyramids, finest first.
    pyr_p, pyr_c = [prev], [cur]
    while (
        len(pyr_p) < config.levels
        and min(pyr_p[-1].shape[1:]) // 2 >= config.min_level_size
    ):
        pyr_p.append(_downsample(pyr_p[-1]))
        pyr_c.append(_downsample(pyr_c[-1]))
    finest = min(config.finest_level, len(pyr_p) - 1)

    alpha = np.float32(config.tikhonov)
    r = config.window_radius
    u = v = None
    for level in range(len(pyr_p) - 1, finest - 1, -1):
        p, c = pyr_p[level], pyr_c[level]
        b, h, w = p.shape
        if u is None:
            u = xp.zeros((b, h, w), dtype=xp.float32)
            v = xp.zeros((b, h, w), dtype=xp.float32)
        else:
            u = _upsample_flow(u, (h, w), xp)
            v = _upsample_flow(v, (h, w), xp)

        # Spatial gradient matrix G of prev, once per level (Bouguet 2001), as
        # window sums; alpha is scaled by the window area, i.e. it is a Tikhonov
        # weight per pixel of the window.
        ix, iy = _gradients(p, xp)
        prods = xp.empty((3, b, h, w), dtype=xp.float32)
        xp.multiply(ix, ix, out=prods[0])
        xp.multiply(ix, iy, out=prods[1])
        xp.multiply(iy, iy, out=prods[2])
        ixx, ixy, iyy = prods[0], prods[1], prods[2]
        g = _box_sum(prods, r, xp)
        reg = alpha * _window_area(h, w, r, xp)  # [h, w]
        gxx = g[0] + reg
        gxy = g[1]
        gyy = g[2] + reg
        det = gxx * gyy - gxy * gxy
        # det >= reg^2 > 0 when alpha > 0; guard alpha == 0 on flat images.
        inv_det = np.float32(1.0) / xp.maximum(det, np.float32(1e-20))
        # (G + reg I)^-1 entries.
        m_xx = gyy * inv_det
        m_xy = -gxy * inv_det
        m_yy = gxx * inv_det
        # Tikhonov prior: the flow this level starts from (zero at the coarsest).
        # Solving toward it (rather than toward zero) keeps sub-pixel accuracy on
        # low-contrast texture; flat areas keep the prior, zero for flat images.
        prior_u = reg * u
        prior_v = reg * v

        warp = _Warper((b, h, w), xp)
        rhs = xp.empty((2, b, h, w), dtype=xp.float32)
        tmp = xp.empty((b, h, w), dtype=xp.float32)
        n_iter = config.finest_iterations if level == finest else config.iterations
        for _ in range(n_iter):
            it, inside = warp(c, u, v)
            if config.match_brightness:
                _match_brightness(p, it, inside, xp)
            it -= p
            it *= inside
            # Linearise cur around each pixel's own current flow and solve for the
            # displacement shared by the window: a re-solve as in Farneback 2003,
            # rather than an increment, because increments computed through a
            # per-pixel warp do not converge (measured: the error grows).
            # rhs = sum_window(grad grad^T flow - grad * It)
            xp.multiply(ixx, u, out=rhs[0])
            rhs[0] += xp.multiply(ixy, v, out=tmp)
            rhs[0] -= xp.multiply(ix, it, out=tmp)
            xp.multiply(ixy, u, out=rhs[1])
            rhs[1] += xp.multiply(iyy, v, out=tmp)
            rhs[1] -= xp.multiply(iy, it, out=tmp)
            sums = _box_sum(rhs, r, xp)
            su, sv = sums[0], sums[1]
            su += prior_u
            sv += prior_v
            u = m_xx * su
            u += xp.multiply(m_xy, sv, out=tmp)
            v = m_xy * su
            v += xp.multiply(m_yy, sv, out=tmp)
            if config.smooth_radius:
                uv = _box_mean(xp.stack([u, v]), config.smooth_radius, xp)
                u, v = uv[0], uv[1]

    # Upsample to full resolution if we stopped early.
    for level in range(finest - 1, -1, -1):
        hw = pyr_p[level].shape[1:]
        u = _upsample_flow(u, hw, xp)
        v = _upsample_flow(v, hw, xp)
    flow = xp.stack([u, v], axis=-1)
    return flow[0] if single else flow


def end_point_error(flow: Any, truth: Any) -> float:
    """Mean end-point error between two flow fields.

    Args:
        flow: float ``[..., 2]`` estimated flow ``(dx, dy)`` in pixels.
        truth: float, same shape as ``flow`` (or broadcastable to it), in pixels.

    Returns:
        Mean Euclidean distance in pixels over all positions.

    Raises:
        ValueError: If the last dimension is not 2 or the shapes do not broadcast.
    """
    f = to_numpy(flow).astype(np.float64)
    t = to_numpy(truth).astype(np.float64)
    if f.shape[-1] != 2 or t.shape[-1] != 2:
        raise ValueError(
            f"expected flows [..., 2], got {list(f.shape)} and {list(t.shape)}"
        )
    try:
        d = f - t
    except ValueError as e:
        raise ValueError(
            f"flow shapes do not broadcast: {list(f.shape)} vs {list(t.shape)}"
        ) from e
    return float(np.mean(np.sqrt(np.sum(d * d, axis=-1))))


def translated_texture(dx: float = 0.0, dy: float = 0.0, seed: int = 0, h: int = 120, w: int = 160) -> np.ndarray:
    """Smooth random texture sampled at ``(x - dx, y - dy)``: float32 [h, w] in [0.1, 0.9].

    A sum of sinusoids with random orientation and 1/sqrt(f) amplitudes over
    0.005..0.1 cycles/px (natural-image-like, no aliasing at 160x120). The
    normalisation does not depend on the shift, so ``translated_texture(dx, dy)`` is an
    exact translation of ``translated_texture()`` by ``(dx, dy)``; the true flow is ``(dx, dy)``.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = x - dx, y - dy
    img = np.zeros((h, w))
    amp_sum = 0.0
    for _ in range(32):
        f = np.exp(rng.uniform(np.log(0.005), np.log(0.1)))
        theta, phase = rng.uniform(0, 2 * np.pi, 2)
        amp = (0.005 / f) ** 0.5
        img += amp * np.sin(2 * np.pi * f * (np.cos(theta) * x + np.sin(theta) * y) + phase)
        amp_sum += amp
    return (0.5 + 0.4 * img / amp_sum * 2.5).clip(0.1, 0.9).astype(np.float32)

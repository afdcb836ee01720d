"""Training data of the commentator: per-step B-Flow tokens and per-step text targets.

A clip is a video file plus a timed transcript (``clip.mp4`` + ``clip.json``, see
:mod:`models.data.procedural`). Its features are computed exactly as the live pipeline
computes them, stage by stage:

    iter_model_frames (decoder, 5 Hz) -> to_luma -> optical_flow(prev, cur)
    (zero flow for the first frame) -> BFlowTokenizer.step -> tokens float32 [N_t, 64]
    -> KeyViewEncoder (the pretrained encoder on the steps it selects) -> views float32 [K_t, view_dim]

and cached next to the clip as ``<stem>.feat-<key>.npz``, where ``<key>`` hashes
everything that determines them (feature format version, token width, model grid,
flow, tokenizer, view and encoder configs, and the source code of the video, flow,
tokenizer, view and encoder modules),
so retraining never recomputes and a code change never reuses stale features.

Targets: each transcript line is tokenised by the model's text codec and laid out
over the steps from ``round(start_s * fps) + delay`` by the duplex format
(:mod:`models.lm.duplex`), which turns the clip into model positions.

This module does not import torch (feature extraction runs in worker processes).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import multiprocessing as mp
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.lm.duplex import PositionSequence, build_sequence, layout_lines
from models.vision import bflow, detector, encoder, flow, objects, video, views

if TYPE_CHECKING:
    from models.lm.text import TextCodec

__all__ = [
    "FEATURE_VERSION",
    "ClipExample",
    "ClipFeatures",
    "clip_lines",
    "VIDEO_TOKENIZERS",
    "compute_dense_features",
    "PipelineStep",
    "compute_features",
    "gather_video",
    "iter_pipeline",
    "feature_key",
    "find_clips",
    "load_all_features",
    "load_examples",
    "examples_from_features",
    "gather_views",
    "load_features",
    "clip_sequence",
]

log = logging.getLogger(__name__)

FEATURE_VERSION = 2  # bump when the cached .npz layout or the feature pipeline changes


@dataclass(frozen=True)
class ClipFeatures:
    """B-Flow tokens and key views of one clip, one model step per decoded frame.

    Attributes:
        pts_s: float64 ``[T]`` media time of each step, seconds on the clip's clock.
        tokens: float32 ``[sum_t N_t, 64]`` all steps' tokens, concatenated in order.
        offsets: int64 ``[T + 1]``; step ``t`` owns ``tokens[offsets[t]:offsets[t+1]]``.
        is_key: bool ``[T]``, True where the tokenizer emitted a key view.
        views: float32 ``[sum_t K_t, view_dim]`` all steps' key-view rows
            (:mod:`models.vision.views`; ``[0, 0]`` for features without views).
        view_offsets: int64 ``[T + 1]``; step ``t`` owns ``views[view_offsets[t]:view_offsets[t+1]]``
            (all zeros for features without views).
    """

    pts_s: np.ndarray
    tokens: np.ndarray
    offsets: np.ndarray
    is_key: np.ndarray
    views: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    view_offsets: np.ndarray | None = None

    @property
    def n_steps(self) -> int:
        return int(self.pts_s.shape[0])

    def step_tokens(self, t: int) -> np.ndarray:
        """Tokens of step ``t``: float32 ``[N_t, 64]`` (``N_t`` may be 0)."""
        return self.tokens[self.offsets[t] : self.offsets[t + 1]]

    def step_views(self, t: int) -> np.ndarray | None:
        """Key-view rows of step ``t``: float32 ``[K_t, view_dim]``, or None if it has none."""
        if self.view_offsets is None or self.view_offsets[t] == self.view_offsets[t + 1]:
            return None
        return self.views[self.view_offsets[t] : self.view_offsets[t + 1]]

    def counts(self) -> np.ndarray:
        """int64 ``[T]`` tokens per step."""
        return np.diff(self.offsets)

    def view_counts(self) -> np.ndarray:
        """int64 ``[T]`` key-view rows per step."""
        return np.zeros(self.n_steps, np.int64) if self.view_offsets is None else np.diff(self.view_offsets)

    def views_taken(self) -> int:
        """Steps with a key view (encoder calls)."""
        return int((self.view_counts() > 0).sum())


@dataclass(frozen=True)
class ClipExample:
    """One training/evaluation clip: features plus per-step targets.

    Attributes:
        path: The clip's video file.
        features: Its B-Flow tokens.
        sequence: Its model positions and targets (see :func:`clip_sequence`).
    """

    path: Path
    features: ClipFeatures
    sequence: PositionSequence


#: Video tokenizers of the features: B-Flow with key views on the steps that
#: :class:`~models.vision.views.KeyViewEncoder` selects (what the live system runs), the
#: same with the encoder on every frame (``every-frame``), and the dense baseline of the
#: ablation (an 8x8 key view of every frame, :func:`compute_dense_features`).
#: ``bflow-objects`` is ``bflow`` with the detector's object rows on its key views,
#: ``bflow-tracks`` with its boxes moved by the flow tagging the object flow tokens
#: (the ablations of the teacher feeding the live tokenizer, docs/MODEL.md).
VIDEO_TOKENIZERS = ("bflow", "bflow-objects", "bflow-tracks", "every-frame", "dense")

#: View schedule of each tokenizer that takes views: the encoder on B-Flow's key views,
#: with the detector's 8 best boxes too (as rows, or as tracks), or on every step.
VIEW_CONFIGS = {"bflow": views.ViewConfig(), "bflow-objects": views.ViewConfig(objects=8),
                "bflow-tracks": views.ViewConfig(objects=8, objects_as="tracks"),
                "every-frame": views.ViewConfig(refresh_s=0.0, min_gap_s=0.0)}


def feature_key(tokenizer: str = "bflow") -> str:
    """Hash of everything that determines cached features (12 hex digits)."""
    if tokenizer not in VIDEO_TOKENIZERS:
        raise ValueError(f"unknown video tokenizer {tokenizer!r}, expected one of {VIDEO_TOKENIZERS}")
    h = hashlib.sha256()
    if tokenizer == "dense":
        h.update(inspect.getsource(compute_dense_features).encode())
    h.update(f"v{FEATURE_VERSION};dim{bflow.TOKEN_DIM};{video.ModelGrid()!r};".encode())
    h.update(repr(flow.FlowConfig()).encode())
    if tokenizer in VIEW_CONFIGS:
        h.update(f"{VIEW_CONFIGS[tokenizer]!r};{encoder.EncoderConfig()!r};".encode())
        for mod in (views, encoder) + ((detector, objects) if VIEW_CONFIGS[tokenizer].objects else ()):
            h.update(inspect.getsource(mod).encode())
    for cfg_name in ("BFlowConfig", "TokenizerConfig"):
        cfg_cls = getattr(bflow, cfg_name, None)
        if cfg_cls is not None:
            try:
                h.update(repr(cfg_cls()).encode())
            except TypeError:  # not default-constructible: the source hash covers it
                pass
    for mod in (video, flow, bflow):
        h.update(inspect.getsource(mod).encode())
    for fn in (iter_pipeline, compute_features):
        h.update(inspect.getsource(fn).encode())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class PipelineStep:
    """One model step of the live pipeline over a file (see :func:`iter_pipeline`).

    Attributes:
        frame: The decoded model-grid frame (``.rgb`` uint8 ``[H, W, 3]``, ``.pts_s``).
        luma: float32 ``[H, W]`` luma of the frame.
        prev_luma: Luma of the previous step, or None at the first step.
        flow: float32 ``[H, W, 2]`` optical flow from the previous step, pixels (zero first).
        step: The B-Flow tokenizer's output for this step.
        views: float32 ``[K, view_dim]`` key-view rows of this step (``K = 0`` without a
            view, or when the pipeline runs without an encoder).
    """

    frame: video.ModelFrame
    luma: np.ndarray
    prev_luma: np.ndarray | None
    flow: np.ndarray
    step: bflow.BFlowStep
    views: np.ndarray


def iter_pipeline(
    path: Path, *, grid: video.ModelGrid | None = None, viewer: views.KeyViewEncoder | None = None
) -> Iterator[PipelineStep]:
    """Runs decoder -> flow -> B-Flow tokenizer (-> key views) over a video file, as live, step by step.

    Args:
        path: A video file.
        grid: Model grid (default :class:`models.vision.video.ModelGrid`).
        viewer: Takes and encodes the key views (None: no views).

    Yields:
        One :class:`PipelineStep` per model-grid frame.

    Raises:
        MediaError: If the file cannot be decoded.
    """
    tok = bflow.BFlowTokenizer()
    state = bflow.BFlowState()
    view_state = views.ViewState()
    no_views = np.zeros((0, 0), np.float32)
    prev_luma = None
    for frame in video.iter_model_frames(path, grid=grid or video.ModelGrid()):
        luma = flow.to_numpy(flow.to_luma(frame.rgb, np))
        if prev_luma is None:
            f = np.zeros((*luma.shape, 2), dtype=np.float32)
        else:
            f = flow.to_numpy(flow.optical_flow(prev_luma, luma, xp=np))
        step = tok.step(state, frame.rgb, f)
        rows = viewer.step_batch([view_state], [step], [frame.rgb], [f])[0] if viewer is not None else no_views
        yield PipelineStep(frame, luma, prev_luma, f, step, rows)
        prev_luma = luma


_VIEWERS: dict[str, views.KeyViewEncoder] = {}  # one encoder per process and schedule


def _viewer(tokenizer: str) -> views.KeyViewEncoder:
    if tokenizer not in _VIEWERS:
        _VIEWERS[tokenizer] = views.KeyViewEncoder(config=VIEW_CONFIGS[tokenizer])
    return _VIEWERS[tokenizer]


def compute_features(path: Path, *, tokenizer: str = "bflow") -> ClipFeatures:
    """B-Flow tokens and key views of a video file, computed by :func:`iter_pipeline` (as live).

    Args:
        path: A video file.
        tokenizer: ``"bflow"`` (key views as live) or ``"every-frame"`` (a view of every step).

    Returns:
        The clip's features (one step per model-grid frame).

    Raises:
        MediaError: If the file cannot be decoded.
        ModelError: If the image encoder is not available (``mmduplex fetch-models``).
    """
    viewer = _viewer(tokenizer)
    pts, chunks, view_chunks, is_key = [], [], [], []
    for st in iter_pipeline(path, viewer=viewer):
        pts.append(st.frame.pts_s)
        chunks.append(np.asarray(st.step.tokens, dtype=np.float32).reshape(-1, bflow.TOKEN_DIM))
        view_chunks.append(st.views)
        is_key.append(bool(st.step.is_key))
    tokens, offsets = _ragged(chunks, bflow.TOKEN_DIM)
    view_rows, view_offsets = _ragged(view_chunks, viewer.dim)
    return ClipFeatures(
        pts_s=np.asarray(pts, dtype=np.float64),
        tokens=tokens,
        offsets=offsets,
        is_key=np.asarray(is_key, dtype=bool),
        views=view_rows,
        view_offsets=view_offsets,
    )


def _ragged(chunks: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated rows ``float32 [sum_t N_t, width]`` and offsets ``int64 [T + 1]`` of per-step chunks."""
    counts = np.array([c.shape[0] for c in chunks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rows = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, width), np.float32)
    return rows.reshape(-1, width), offsets


def gather_video(feats: ClipFeatures, steps: np.ndarray, is_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Video input of a run of model positions: each frame position gets its step's tokens.

    Args:
        feats: The clip's features.
        steps: int64 ``[P]`` step of each position.
        is_frame: bool ``[P]``, True at video positions (other rows stay empty).

    Returns:
        ``(tokens float32 [P, N, 64], mask bool [P, N])`` with ``N`` the most tokens of
        any frame position (at least 1).
    """
    return _gather(feats.tokens, feats.offsets, steps, is_frame)


def gather_views(feats: ClipFeatures, steps: np.ndarray, is_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Key-view rows of a run of model positions, as :func:`gather_video` gathers tokens.

    Returns:
        ``(views float32 [P, K, view_dim], mask bool [P, K])`` with ``K`` the most rows
        of any frame position (at least 1).
    """
    offsets = feats.view_offsets if feats.view_offsets is not None else np.zeros(feats.n_steps + 1, np.int64)
    return _gather(feats.views, offsets, steps, is_frame)


def _gather(rows: np.ndarray, offsets: np.ndarray, steps: np.ndarray, is_frame: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per position, the ragged rows of its step: ``(float32 [P, N, width], bool [P, N])``."""
    counts = np.diff(offsets)[steps] * is_frame
    out = np.zeros((len(steps), max(1, int(counts.max(initial=0))), rows.shape[1]), np.float32)
    mask = np.zeros(out.shape[:2], bool)
    for i in np.flatnonzero(counts):
        t = int(steps[i])
        chunk = rows[offsets[t] : offsets[t + 1]]
        out[i, : chunk.shape[0]] = chunk
        mask[i, : chunk.shape[0]] = True
    return out, mask


def compute_dense_features(path: Path) -> ClipFeatures:
    """The dense baseline: 64 key-view tokens of every frame (:func:`models.vision.bflow.dense_tokens`).

    Args:
        path: A video file.

    Returns:
        The clip's features (one step per model-grid frame, 64 tokens each).

    Raises:
        MediaError: If the file cannot be decoded.
    """
    pts, chunks = [], []
    for frame in video.iter_model_frames(path):
        pts.append(frame.pts_s)
        chunks.append(bflow.dense_tokens(frame.rgb))
    counts = np.array([c.shape[0] for c in chunks], dtype=np.int64)
    return ClipFeatures(
        pts_s=np.asarray(pts, dtype=np.float64),
        tokens=np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, bflow.TOKEN_DIM), np.float32),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        is_key=np.ones(len(chunks), dtype=bool),
    )


_CACHE_PREFIX = {"bflow": "feat", "bflow-objects": "featobj", "bflow-tracks": "feattrk", "every-frame": "every",
                 "dense": "dense"}


def _cache_path(path: Path, key: str, tokenizer: str) -> Path:
    return path.with_name(f"{path.stem}.{_CACHE_PREFIX[tokenizer]}-{key}.npz")


def load_features(path: Path, *, key: str | None = None, tokenizer: str = "bflow") -> ClipFeatures:
    """Features of a clip, from the ``.npz`` cache or computed (and then cached).

    The cache is used only if the video's size and modification time match those it
    was made from. Writing a new cache file removes the clip's cache files of other
    keys (features of older code).

    Args:
        path: The clip's video file.
        key: :func:`feature_key` (pass it when calling in a loop; computed if None).
        tokenizer: One of :data:`VIDEO_TOKENIZERS`.

    Returns:
        The clip's features.

    Raises:
        MediaError: If the video cannot be decoded.
        ModelError: If the image encoder is not available (``mmduplex fetch-models``).
    """
    path = Path(path)
    cache = _cache_path(path, key or feature_key(tokenizer), tokenizer)
    st = path.stat()
    source = np.array([st.st_size, st.st_mtime_ns], dtype=np.int64)  # a replaced video invalidates the cache
    if cache.is_file():
        try:
            with np.load(cache) as z:
                if np.array_equal(z["source"], source):
                    return ClipFeatures(pts_s=z["pts_s"], tokens=z["tokens"], offsets=z["offsets"], is_key=z["is_key"],
                                        views=z["views"], view_offsets=z["view_offsets"])
        except (OSError, KeyError, ValueError) as e:
            log.warning("ignoring unreadable feature cache %s: %s", cache, e)
    feats = compute_dense_features(path) if tokenizer == "dense" else compute_features(path, tokenizer=tokenizer)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    view_offsets = feats.view_offsets if feats.view_offsets is not None else np.zeros(feats.n_steps + 1, np.int64)
    np.savez(tmp, pts_s=feats.pts_s, tokens=feats.tokens, offsets=feats.offsets, is_key=feats.is_key,
             views=feats.views, view_offsets=view_offsets, source=source)
    tmp.replace(cache)
    for stale in path.parent.glob(f"{path.stem}.{_CACHE_PREFIX[tokenizer]}-*.npz"):  # features of older code
        if stale != cache:
            stale.unlink(missing_ok=True)
    return feats


def _load_one(args: tuple[str, str, str]) -> ClipFeatures:
    return load_features(Path(args[0]), key=args[1], tokenizer=args[2])


def load_all_features(
    paths: Sequence[Path],
    *,
    workers: int = 2,
    progress: bool = False,
    desc: str = "features",
    tokenizer: str = "bflow",
) -> list[ClipFeatures]:
    """Loads or computes the features of many clips, in worker processes.

    Args:
        paths: Video files.
        tokenizer: One of :data:`VIDEO_TOKENIZERS`.
        workers: Processes (``<= 1``: in this process).
        progress: Show a tqdm progress bar.
        desc: Progress bar label.

    Returns:
        Features in the order of ``paths``.

    Raises:
        MediaError: If a video cannot be decoded.
    """
    from tqdm.auto import tqdm

    key = feature_key(tokenizer)
    jobs = [(str(p), key, tokenizer) for p in paths]
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit="clip")
    out: list[ClipFeatures] = []
    try:
        if workers <= 1 or len(jobs) <= 1:
            for j in jobs:
                out.append(_load_one(j))
                bar.update()
        else:
            # spawn: the parent may hold torch thread pools that fork would copy.
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
                for f in ex.map(_load_one, jobs, chunksize=1):
                    out.append(f)
                    bar.update()
    finally:
        bar.close()
    return out


def clip_sequence(
    lines: Iterable[tuple[float, str]],
    n_steps: int,
    codec: TextCodec,
    *,
    fmt: str,
    k: int,
    fps_hz: float = video.MODEL_FPS_HZ,
    delay_steps: int = 0,
) -> PositionSequence:
    """Model positions and targets of one clip.

    Args:
        lines: ``(start_s, text)`` of each transcript line (any order).
        n_steps: Steps of the clip (``T``).
        codec: The model's text codec.
        fmt: Duplex format (``"interleaved"`` or ``"parallel"``).
        k: Most text tokens per step (1 for ``parallel``).
        fps_hz: Model steps per second.
        delay_steps: Extra delay of every line, in steps.

    Returns:
        The positions (see :func:`models.lm.duplex.build_sequence`).
    """
    ids = [(start_s, codec.encode(text)) for start_s, text in lines]
    per_step = layout_lines(ids, n_steps, tokens_per_step=k, eol_id=codec.eol_id, fps_hz=fps_hz,
                            delay_steps=delay_steps)
    return build_sequence(per_step, fmt, k=k, sil_id=codec.sil_id)


def find_clips(data_dir: Path) -> list[Path]:
    """Video files under ``data_dir`` (recursively) with a transcript (``.json``) next to them.

    Returns:
        ``.mp4`` paths sorted by their path relative to ``data_dir``.
    """
    return sorted(
        p for p in Path(data_dir).rglob("*.mp4") if p.with_suffix(".json").is_file()
    )


def clip_lines(path: Path) -> list[tuple[float, str]]:
    """``(start_s, text)`` of each transcript line of a clip."""
    from models.data.procedural import read_transcript

    _, lines = read_transcript(path.with_suffix(".json"))
    return [(float(ln.start_s), str(ln.text)) for ln in lines]


def load_examples(
    paths: Sequence[Path],
    codec: TextCodec,
    *,
    fmt: str,
    k: int,
    delay_steps: int = 0,
    workers: int = 2,
    progress: bool = False,
    desc: str = "features",
    tokenizer: str = "bflow",
) -> list[ClipExample]:
    """Features and position sequences of many clips.

    Args:
        paths: Video files (each with a ``.json`` transcript).
        codec: The model's text codec.
        fmt: Duplex format.
        k: Most text tokens per step.
        delay_steps: See :func:`clip_sequence`.
        workers: Feature extraction processes.
        progress: Show progress.
        desc: Progress bar label.
        tokenizer: One of :data:`VIDEO_TOKENIZERS`.

    Returns:
        One example per clip, in order.

    Raises:
        MediaError: If a video cannot be decoded.
        ModelError: If the image encoder is not available (``mmduplex fetch-models``).
    """
    feats = load_all_features(paths, workers=workers, progress=progress, desc=desc, tokenizer=tokenizer)
    return examples_from_features(paths, feats, codec, fmt=fmt, k=k, delay_steps=delay_steps)


def examples_from_features(
    paths: Sequence[Path], feats: Sequence[ClipFeatures], codec: TextCodec, *, fmt: str, k: int,
    delay_steps: int = 0, lines: Sequence[Sequence[tuple[float, str]]] | None = None,
) -> list[ClipExample]:
    """Position sequences of clips whose features are loaded (see :func:`load_examples`).

    ``lines``: each clip's ``(start_s, text)`` lines (default: its transcript, :func:`clip_lines`).
    """
    texts = lines if lines is not None else [clip_lines(Path(p)) for p in paths]
    return [
        ClipExample(
            path=Path(p),
            features=f,
            sequence=clip_sequence(ln, f.n_steps, codec, fmt=fmt, k=k, delay_steps=delay_steps),
        )
        for p, f, ln in zip(paths, feats, texts, strict=True)
    ]

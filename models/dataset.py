"""Training data of the commentator: per-step B-Flow tokens and per-step text targets.

A clip is a video file plus a timed transcript (``clip.mp4`` + ``clip.json``, see
:mod:`models.procedural`). Its features are computed exactly as the live pipeline
computes them, stage by stage:

    iter_model_frames (decoder, 5 Hz) -> to_luma -> optical_flow(prev, cur)
    (zero flow for the first frame) -> BFlowTokenizer.step -> tokens float32 [N_t, 64]

and cached next to the clip as ``<stem>.feat-<key>.npz``, where ``<key>`` hashes
everything that determines them (feature format version, token width, model grid,
flow and tokenizer configs, and the source code of the video/flow/tokenizer modules),
so retraining never recomputes and a code change never reuses stale features.

Targets (one text token per step): each transcript line's words are placed one word
per step from step ``round(start_s * fps) + delay``, followed by ``<eol>``; ``<sil>``
elsewhere. A line that would start before the previous one ended is shifted later.

This module does not import torch (feature extraction runs in worker processes).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import multiprocessing as mp
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import bflow, flow, video
from models.vocab import Vocab

__all__ = [
    "FEATURE_VERSION",
    "ClipExample",
    "ClipFeatures",
    "clip_lines",
    "compute_features",
    "feature_key",
    "find_clips",
    "load_all_features",
    "load_examples",
    "load_features",
    "make_targets",
]

log = logging.getLogger(__name__)

FEATURE_VERSION = 1  # bump when the cached .npz layout or the feature pipeline changes


@dataclass(frozen=True)
class ClipFeatures:
    """B-Flow tokens of one clip, one model step per decoded frame.

    Attributes:
        pts_s: float64 ``[T]`` media time of each step, seconds on the clip's clock.
        tokens: float32 ``[sum_t N_t, 64]`` all steps' tokens, concatenated in order.
        offsets: int64 ``[T + 1]``; step ``t`` owns ``tokens[offsets[t]:offsets[t+1]]``.
        is_key: bool ``[T]``, True where the tokenizer emitted a key view.
    """

    pts_s: np.ndarray
    tokens: np.ndarray
    offsets: np.ndarray
    is_key: np.ndarray

    @property
    def n_steps(self) -> int:
        return int(self.pts_s.shape[0])

    def step_tokens(self, t: int) -> np.ndarray:
        """Tokens of step ``t``: float32 ``[N_t, 64]`` (``N_t`` may be 0)."""
        return self.tokens[self.offsets[t] : self.offsets[t + 1]]

    def counts(self) -> np.ndarray:
        """int64 ``[T]`` tokens per step."""
        return np.diff(self.offsets)


@dataclass(frozen=True)
class ClipExample:
    """One training/evaluation clip: features plus per-step targets.

    Attributes:
        path: The clip's video file.
        features: Its B-Flow tokens.
        targets: int64 ``[T]`` token to emit at each step (see :func:`make_targets`).
    """

    path: Path
    features: ClipFeatures
    targets: np.ndarray


def feature_key() -> str:
    """Hash of everything that determines cached features (12 hex digits)."""
    h = hashlib.sha256()
    h.update(f"v{FEATURE_VERSION};dim{bflow.TOKEN_DIM};{video.ModelGrid()!r};".encode())
    h.update(repr(flow.FlowConfig()).encode())
    for cfg_name in ("BFlowConfig", "TokenizerConfig"):
        cfg_cls = getattr(bflow, cfg_name, None)
        if cfg_cls is not None:
            try:
                h.update(repr(cfg_cls()).encode())
            except TypeError:  # not default-constructible: the source hash covers it
                pass
    for mod in (video, flow, bflow):
        h.update(inspect.getsource(mod).encode())
    h.update(inspect.getsource(compute_features).encode())
    return h.hexdigest()[:12]


def compute_features(path: Path) -> ClipFeatures:
    """Runs decoder -> flow -> B-Flow tokenizer over a video file, as live.

    Args:
        path: A video file.

    Returns:
        The clip's features (one step per model-grid frame).

    Raises:
        MediaError: If the file cannot be decoded.
    """
    tok = bflow.BFlowTokenizer()
    state = bflow.BFlowState()
    pts, chunks, is_key = [], [], []
    prev_luma = None
    for frame in video.iter_model_frames(path):
        luma = flow.to_numpy(flow.to_luma(frame.rgb, np))
        if prev_luma is None:
            f = np.zeros((*luma.shape, 2), dtype=np.float32)
        else:
            f = flow.to_numpy(flow.optical_flow(prev_luma, luma, xp=np))
        prev_luma = luma
        out = tok.step(state, frame.rgb, f)
        t = np.asarray(out.tokens, dtype=np.float32).reshape(-1, bflow.TOKEN_DIM)
        pts.append(frame.pts_s)
        chunks.append(t)
        is_key.append(bool(out.is_key))
    counts = np.array([c.shape[0] for c in chunks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    tokens = (
        np.concatenate(chunks).astype(np.float32)
        if chunks
        else np.zeros((0, bflow.TOKEN_DIM), np.float32)
    )
    return ClipFeatures(
        pts_s=np.asarray(pts, dtype=np.float64),
        tokens=tokens,
        offsets=offsets,
        is_key=np.asarray(is_key, dtype=bool),
    )


def _cache_path(path: Path, key: str) -> Path:
    return path.with_name(f"{path.stem}.feat-{key}.npz")


def load_features(path: Path, *, key: str | None = None) -> ClipFeatures:
    """Features of a clip, from the ``.npz`` cache or computed (and then cached).

    Writing a new cache file removes the clip's cache files of other keys (features
    of older code).

    Args:
        path: The clip's video file.
        key: :func:`feature_key` (pass it when calling in a loop; computed if None).

    Returns:
        The clip's features.

    Raises:
        MediaError: If the video cannot be decoded.
    """
    path = Path(path)
    cache = _cache_path(path, key or feature_key())
    if cache.is_file():
        try:
            with np.load(cache) as z:
                return ClipFeatures(
                    pts_s=z["pts_s"], tokens=z["tokens"], offsets=z["offsets"], is_key=z["is_key"]
                )
        except (OSError, KeyError, ValueError) as e:
            log.warning("ignoring unreadable feature cache %s: %s", cache, e)
    feats = compute_features(path)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(
        tmp, pts_s=feats.pts_s, tokens=feats.tokens, offsets=feats.offsets, is_key=feats.is_key
    )
    tmp.replace(cache)
    for stale in path.parent.glob(f"{path.stem}.feat-*.npz"):  # features of older code
        if stale != cache:
            stale.unlink(missing_ok=True)
    return feats


def _load_one(args: tuple[str, str]) -> ClipFeatures:
    return load_features(Path(args[0]), key=args[1])


def load_all_features(
    paths: Sequence[Path],
    *,
    workers: int = 2,
    progress: bool = False,
    desc: str = "features",
) -> list[ClipFeatures]:
    """Loads or computes the features of many clips, in worker processes.

    Args:
        paths: Video files.
        workers: Processes (``<= 1``: in this process).
        progress: Show a tqdm progress bar.
        desc: Progress bar label.

    Returns:
        Features in the order of ``paths``.

    Raises:
        MediaError: If a video cannot be decoded.
    """
    from tqdm.auto import tqdm

    key = feature_key()
    jobs = [(str(p), key) for p in paths]
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


def make_targets(
    lines: Iterable[tuple[float, str]],
    n_steps: int,
    vocab: Vocab,
    *,
    fps_hz: float = video.MODEL_FPS_HZ,
    delay_steps: int = 0,
) -> np.ndarray:
    """Per-step text targets of a clip.

    Args:
        lines: ``(start_s, text)`` of each transcript line (any order).
        n_steps: Steps of the clip (``T``).
        vocab: Vocabulary (unknown words become ``<unk>``).
        fps_hz: Model steps per second.
        delay_steps: Extra delay of every line, in steps (the text stream trails
            the video it talks about).

    Returns:
        int64 ``[T]``: words one per step from ``round(start_s * fps) + delay``, then
        ``<eol>``; ``<sil>`` elsewhere. Overlapping lines are shifted later; what
        falls past the end of the clip is dropped.
    """
    y = np.full(n_steps, vocab.sil_id, dtype=np.int64)
    cursor = 0
    for start_s, text in sorted(lines, key=lambda x: x[0]):
        ids = vocab.encode(text)
        if not ids:
            continue
        t0 = max(round(start_s * fps_hz) + delay_steps, cursor, 0)
        seq = [*ids, vocab.eol_id]
        for i, tok in enumerate(seq):
            if t0 + i < n_steps:
                y[t0 + i] = tok
        cursor = t0 + len(seq)
    return y


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
    from models.procedural import read_transcript

    _, lines = read_transcript(path.with_suffix(".json"))
    return [(float(ln.start_s), str(ln.text)) for ln in lines]


def load_examples(
    paths: Sequence[Path],
    vocab: Vocab,
    *,
    delay_steps: int = 0,
    workers: int = 2,
    progress: bool = False,
    desc: str = "features",
) -> list[ClipExample]:
    """Features and targets of many clips.

    Args:
        paths: Video files (each with a ``.json`` transcript).
        vocab: Vocabulary for the targets.
        delay_steps: See :func:`make_targets`.
        workers: Feature extraction processes.
        progress: Show progress.
        desc: Progress bar label.

    Returns:
        One example per clip, in order.

    Raises:
        MediaError: If a video cannot be decoded.
    """
    feats = load_all_features(paths, workers=workers, progress=progress, desc=desc)
    return [
        ClipExample(
            path=Path(p),
            features=f,
            targets=make_targets(clip_lines(Path(p)), f.n_steps, vocab, delay_steps=delay_steps),
        )
        for p, f in zip(paths, feats, strict=True)
    ]


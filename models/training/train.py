"""Training of the duplex commentator (CPU-sized: minutes for ``tiny``, ~half an hour for SmolLM2).

Pipeline: procedural clips (generated into ``data_dir`` if it holds none,
:func:`models.data.procedural.make_dataset`) plus any further clip folders (real footage
labelled by :mod:`models.data.autolabel`, or a corpus in the same format: video + timed
transcript) -> features (:mod:`models.data.dataset`, cached) -> position sequences of the
duplex format (:mod:`models.lm.duplex`) -> AdamW on the teacher-forced next-token loss
-> checkpoints -> streaming evaluation on held-out clips
(:func:`models.training.evaluate.evaluate`).

What trains: the video projector (:class:`~models.lm.commentator.VideoPooler`), the
silence token's input/output vectors, and either the whole ``tiny`` backbone or the
LoRA adapters of a frozen pretrained one.

Sequences: each training item is a run of whole clips concatenated in time and
cropped to ``capacity`` positions (the KV cache size), so the model also trains at
the cache positions that a long live stream keeps using once its cache is full.
Most targets are silence; their loss weight is ``sil_weight`` (< 1).

Checkpoints: every ``checkpoint_every`` steps the held-out teacher-forced loss is
measured; the best model so far is written to ``out`` and the full training state
(model, optimizer, step, random state) to ``out`` with suffix ``.state.pt``, from
which ``resume=True`` continues.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.data.dataset import (
    VIEW_CONFIGS,
    ClipExample,
    clip_lines,
    examples_from_features,
    feature_key,
    find_clips,
    gather_video,
    gather_views,
    load_all_features,
)
from models.lm.commentator import Commentator, CommentatorConfig, build_commentator, load_checkpoint, save_checkpoint
from models.lm.duplex import IGNORE, NO_TEXT
from models.lm.text import WordCodec, spoken_ids
from models.training.augment import swapped_copies
from models.vision import bflow
from models.vision.encoder import EncoderConfig
from models.vision.video import MODEL_FPS_HZ
from models.vision.views import OBJECT_META, VIEW_META
from streams import settings

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_DATA_DIR",
    "TrainBatch",
    "backbone_config",
    "generate_clips",
    "make_batch",
    "train",
]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = settings.cache_dir() / "procedural"
DEFAULT_CHECKPOINT = settings.REPO_ROOT / "models" / "checkpoints" / "commentator.pt"


def backbone_config(
    backbone: str, *, backbone_path: str = "", duplex_format: str = "interleaved", video_tokenizer: str = "bflow"
) -> CommentatorConfig:
    """The default architecture for a backbone (see docs/MODEL.md).

    ``tiny``: 4 x 128 Llama, 4 sinks + 124 window positions. Pretrained backbones:
    LoRA rank 8 on q/v, 4 sinks + 252 window positions.
    """
    if backbone == "tiny":
        return CommentatorConfig(backbone="tiny", duplex_format=duplex_format, video_tokenizer=video_tokenizer)
    return CommentatorConfig(
        backbone=backbone, backbone_path=backbone_path, duplex_format=duplex_format, window_positions=252,
        video_tokenizer=video_tokenizer,
    )


TrainBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def make_batch(
    examples: list[ClipExample],
    batch_size: int,
    seq_len: int,
    rng: np.random.Generator,
    *,
    random_start_p: float = 0.5,
    feature_dropout: float = 0.0,
    probs: np.ndarray | None = None,
) -> TrainBatch:
    """Samples a training batch of clip runs.

    Each item starts in a random clip (at its first position, or with probability
    ``random_start_p`` at a random video position), continues through further
    random clips and is cropped to ``seq_len`` positions.

    Args:
        examples: Training clips.
        batch_size: Items ``B``.
        seq_len: Positions per item ``P`` (at most the model's cache capacity).
        rng: Random generator.
        random_start_p: Probability of starting mid-clip.
        feature_dropout: Probability of zeroing the encoder's features (not their regions)
            in a view that has the detector's object rows (views with object columns
            only, :mod:`models.vision.views`), so that the model learns to name
            things from the object rows' classes too (they generalise to unseen sources,
            the look of 16 training sources does not).
        probs: float64 ``[len(examples)]`` probability of drawing each clip (None: uniform).

    Returns:
        ``(video_tokens float32 [B, P, Nmax, 64], token_mask bool [B, P, Nmax],
        is_frame bool [B, P], text_in int64 [B, P], targets int64 [B, P],
        views float32 [B, P, Kmax, view_dim], view_mask bool [B, P, Kmax])``; positions
        past the data have ``targets = IGNORE``.
    """
    items = []
    for _ in range(batch_size):
        parts: list[tuple[ClipExample, int, int]] = []  # (clip, first position, end position)
        n = 0
        while n < seq_len:
            i = rng.integers(len(examples)) if probs is None else rng.choice(len(examples), p=probs)
            ex = examples[int(i)]
            seq = ex.sequence
            start = 0
            if not parts and rng.random() < random_start_p and len(seq) > 1:
                frames = np.flatnonzero(seq.is_frame)
                start = int(frames[rng.integers(len(frames))])
            end = min(len(seq), start + seq_len - n)
            parts.append((ex, start, end))
            n += end - start
        items.append(parts)
    videos = [[gather_video(ex.features, ex.sequence.step[a:b], ex.sequence.is_frame[a:b]) for ex, a, b in parts]
              for parts in items]
    views = [[gather_views(ex.features, ex.sequence.step[a:b], ex.sequence.is_frame[a:b]) for ex, a, b in parts]
             for parts in items]
    vt, vm = _stack(videos, batch_size, seq_len, examples[0].features.tokens.shape[1])
    vv, vvm = _stack(views, batch_size, seq_len, examples[0].features.views.shape[1])
    if feature_dropout > 0:
        is_object = vv[..., -1] > 0.5  # [B, P, K]
        drop = is_object.any(-1) & (rng.random(is_object.shape[:2]) < feature_dropout)  # [B, P]
        feature_dim = vv.shape[-1] - VIEW_META - OBJECT_META
        vv[..., :feature_dim] *= ~(drop[..., None, None] & ~is_object[..., None])
    frame = np.zeros((batch_size, seq_len), bool)
    text = np.full((batch_size, seq_len), NO_TEXT, np.int64)
    ys = np.full((batch_size, seq_len), IGNORE, np.int64)
    for bi, parts in enumerate(items):
        p = 0
        for ex, a, b in parts:
            seq = ex.sequence
            frame[bi, p : p + b - a] = seq.is_frame[a:b]
            text[bi, p : p + b - a] = seq.text_in[a:b]
            ys[bi, p : p + b - a] = seq.target[a:b]
            p += b - a
    return (torch.from_numpy(vt), torch.from_numpy(vm), torch.from_numpy(frame), torch.from_numpy(text),
            torch.from_numpy(ys), torch.from_numpy(vv), torch.from_numpy(vvm))


def _stack(rows: list[list[tuple[np.ndarray, np.ndarray]]], batch_size: int, seq_len: int, width: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Batch items made of runs of ``(float32 [p, n, width], bool [p, n])`` gathered rows
    -> ``(float32 [B, P, Nmax, width], bool [B, P, Nmax])``."""
    nmax = max(r[0].shape[1] for row in rows for r in row)
    out = np.zeros((batch_size, seq_len, nmax, width), np.float32)
    mask = np.zeros((batch_size, seq_len, nmax), bool)
    for bi, row in enumerate(rows):
        p = 0
        for t, m in row:
            out[bi, p : p + len(t), : t.shape[1]] = t
            mask[bi, p : p + len(t), : m.shape[1]] = m
            p += len(t)
    return out, mask


def _loss(model: Commentator, batch: TrainBatch, weight: torch.Tensor) -> torch.Tensor:
    vt, vm, frame, text, y, vv, vvm = batch
    logits = model(vt, vm, frame, text, vv, vvm)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), weight=weight, ignore_index=IGNORE)


@torch.no_grad()
def _held_out_loss(model: Commentator, examples: list[ClipExample], weight: torch.Tensor, seq_len: int) -> float:
    """Teacher-forced loss on fixed windows of the held-out clips (deterministic)."""
    model.eval()
    rng = np.random.default_rng(1234)
    losses = [float(_loss(model, make_batch(examples, 4, seq_len, rng, random_start_p=0.0), weight))
              for _ in range(4)]
    model.train()
    return float(np.mean(losses))


def _lr_at(step: int, total: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac))))


def _generate_shard(args: tuple[str, int, int, float]) -> int:
    from models.data.procedural import make_dataset

    return len(make_dataset(Path(args[0]), args[1], seed=args[2], duration_s=args[3]))


def generate_clips(
    data_dir: Path,
    n_clips: int,
    *,
    seed: int = 0,
    duration_s: float = 20.0,
    workers: int = 2,
    progress: bool = False,
) -> list[Path]:
    """Writes ``n_clips`` procedural clips with :func:`models.data.procedural.make_dataset`.

    With ``workers > 1`` the set is split into shards ``data_dir/shard<i>/`` written
    by parallel processes (shard ``i`` uses dataset seed ``seed * 1000 + i``), since
    rendering and encoding run on one core each.

    Args:
        data_dir: Output folder.
        n_clips: Clips in total.
        seed: Dataset seed.
        duration_s: Length of each clip in seconds.
        workers: Processes.
        progress: Show a progress bar.

    Returns:
        The clips (see :func:`models.data.dataset.find_clips`).

    Raises:
        OSError: If a file cannot be written.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    data_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers, n_clips))
    sizes = [n_clips // workers + (i < n_clips % workers) for i in range(workers)]
    jobs = [
        (str(data_dir / f"shard{i}"), n, seed * 1000 + i, duration_s) for i, n in enumerate(sizes)
    ]
    bar = tqdm(total=n_clips, desc="clips", unit="clip", disable=not progress)
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            pending = {ex.submit(_generate_shard, j) for j in jobs}
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()  # re-raise a worker's error
                bar.n = len(find_clips(data_dir))
                bar.refresh()
    finally:
        bar.close()
    return find_clips(data_dir)


def train(
    *,
    backbone: str = "tiny",
    backbone_path: str = "",
    duplex_format: str = "interleaved",
    video_tokenizer: str = "bflow-tracks",
    data_dir: Path = DEFAULT_DATA_DIR,
    extra_data: tuple[Path, ...] = (),
    out: Path = DEFAULT_CHECKPOINT,
    n_clips: int = 400,
    held_out: int = 20,
    steps: int = 1000,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    config: CommentatorConfig | None = None,
    lr: float | None = None,
    weight_decay: float = 0.05,
    sil_weight: float = 0.2,
    delay_steps: int = 0,
    workers: int = 2,
    threads: int = 2,
    checkpoint_every: int = 100,
    resume: bool = False,
    eval_json: Path | None = None,
    swap_copies: int = 2,
    feature_dropout: float = 0.5,
    procedural_share: float | None = None,
) -> dict[str, Any]:
    """Trains the commentator; keeps the best checkpoint by held-out loss.

    Args:
        backbone: ``tiny``, ``smollm2-135m`` or ``hf`` (see :mod:`models.lm.backbone`).
        backbone_path: Local model folder for ``hf``.
        duplex_format: ``interleaved`` or ``parallel`` (see :mod:`models.lm.duplex`).
        video_tokenizer: ``bflow-tracks`` (the default model's: B-Flow tokens, key views and
            the detector's tracks), ``bflow``, ``bflow-objects``, ``every-frame``
            (a key view of every step) or ``dense`` (ablation baselines).
        data_dir: Procedural clips (``*.mp4`` + ``*.json``, also in subfolders);
            generated with :func:`generate_clips` when it holds no clip.
        extra_data: More clip folders used for training only (real footage with
            automatic labels, or any corpus in the same format).
        out: Checkpoint path (``.pt``); the training state goes next to it.
        n_clips: Procedural clips to generate (if needed) and use; the last
            ``held_out`` (sorted by name) are held out for evaluation.
        held_out: Clips kept out of training.
        steps: Optimizer steps in total (also when resuming).
        batch_size: Sequences per step.
        seed: Seed of data generation, initialization and sampling.
        progress: Show progress bars.
        config: Model config (default :func:`backbone_config`); overrides
            ``backbone``/``duplex_format``.
        lr: Peak learning rate (linear warmup, cosine decay to 10 %); default 2e-3
            for ``tiny``, 1e-3 for pretrained backbones.
        weight_decay: AdamW weight decay of matrices.
        sil_weight: Loss weight of silence targets (text and end of line: 1).
        delay_steps: Text stream delay behind the video, in steps.
        workers: Processes for clip generation and feature extraction.
        threads: Torch intra-op threads.
        checkpoint_every: Steps between held-out checks and checkpoints.
        resume: Continue from ``out``'s training state if there is one.
        eval_json: Also write the metrics here.
        swap_copies: Class-swapped copies of each ``extra_data`` clip whose key views hold
            detector classes its lines name (:mod:`models.training.augment`; 0: none; only
            with the detector's object rows).
        feature_dropout: See :func:`make_batch` (only with the detector's object rows).
        procedural_share: Part of the drawn clips that are procedural (from ``data_dir``),
            the rest from ``extra_data``; None: every clip is drawn alike.

    Returns:
        ``{"train": {...}, "eval": {...}, "timing_s": {...}, "params": {...}, ...}``.

    Raises:
        ValueError: If there are not enough clips for the split.
        MediaError: If a clip cannot be decoded.
        BackboneError: If a pretrained backbone is not available locally.

    Note:
        With ``workers > 1`` clips and features are made in ``spawn`` worker
        processes: a script calling this must guard its entry point with
        ``if __name__ == "__main__":``.
    """
    from tqdm.auto import tqdm

    from models.training.evaluate import evaluate

    t_start = time.perf_counter()
    torch.set_num_threads(threads)
    data_dir = Path(data_dir).expanduser()
    out = Path(out)
    state_path = out.with_suffix(".state.pt")
    timing: dict[str, float] = {}

    clips = find_clips(data_dir)
    if not clips:
        log.info("no clips in %s: generating %d procedural clips", data_dir, n_clips)
        t0 = time.perf_counter()
        generate_clips(data_dir, n_clips, seed=seed, workers=workers, progress=progress)
        timing["generate"] = time.perf_counter() - t0
        clips = find_clips(data_dir)
    clips = clips[:n_clips]
    if len(clips) <= held_out or held_out < 1:
        raise ValueError(f"need more than held_out={held_out} clips (>= 1 held out), found {len(clips)} in {data_dir}")
    train_clips, eval_clips = clips[:-held_out], clips[-held_out:]
    extra_clips = [c for d in extra_data for c in find_clips(Path(d).expanduser())]
    train_clips = train_clips + extra_clips

    cfg = config or backbone_config(backbone, backbone_path=backbone_path, duplex_format=duplex_format,
                                    video_tokenizer=video_tokenizer)
    t0 = time.perf_counter()
    feats = load_all_features(train_clips + eval_clips, workers=workers, progress=progress,
                              tokenizer=cfg.video_tokenizer)
    timing["features"] = time.perf_counter() - t0
    cfg = replace(cfg, view_dim=max(f.views.shape[1] for f in feats))  # 0 without views (dense)
    lines = [clip_lines(p) for p in train_clips + eval_clips]
    n_train = len(train_clips)
    paths, swapped = list(train_clips + eval_clips), []
    views = VIEW_CONFIGS.get(cfg.video_tokenizer)
    object_rows = views is not None and views.objects > 0 and views.objects_as == "rows"
    dropout = feature_dropout if object_rows else 0.0
    if swap_copies and object_rows:
        feature_dim = cfg.view_dim - VIEW_META - OBJECT_META
        swap_rng = np.random.default_rng(seed + 1)
        for i in range(len(train_clips) - len(extra_clips), len(train_clips)):
            for f, ln in swapped_copies(feats[i], lines[i], feature_dim=feature_dim, copies=swap_copies,
                                        rng=swap_rng):
                swapped.append((paths[i], f, ln))
        log.info("%d class-swapped copies of %d real clips", len(swapped), len({s[0] for s in swapped}))
    paths[n_train:n_train] = [s[0] for s in swapped]
    feats = feats[:n_train] + [s[1] for s in swapped] + feats[n_train:]
    lines = lines[:n_train] + [s[2] for s in swapped] + lines[n_train:]
    n_train += len(swapped)
    train_texts = [text for ln in lines[:n_train] for _, text in ln]
    saved = torch.load(state_path, map_location="cpu", weights_only=False) if resume and state_path.is_file() else None
    words = None
    if cfg.backbone == "tiny":
        words = WordCodec.from_dict(saved["codec"]) if saved else WordCodec.build(train_texts)
    torch.manual_seed(seed)
    model = build_commentator(cfg, words)
    codec = model.codec
    examples = examples_from_features(paths, feats, codec, fmt=cfg.duplex_format, k=cfg.step_tokens,
                                      delay_steps=delay_steps, lines=lines)
    train_ex, eval_ex = examples[:n_train], examples[n_train:]
    probs = None
    n_procedural = len(train_clips) - len(extra_clips)
    if procedural_share is not None and n_procedural and n_train > n_procedural:
        if not 0.0 < procedural_share < 1.0:
            raise ValueError(f"procedural_share must be in (0, 1), got {procedural_share}")
        probs = np.full(n_train, (1.0 - procedural_share) / (n_train - n_procedural))
        probs[:n_procedural] = procedural_share / n_procedural

    lr = lr if lr is not None else (2e-3 if cfg.backbone == "tiny" else 1e-3)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.dim() >= 2 and "embed" not in n and "extra" not in n]
    no_decay = [p for n, p in named if not (p.dim() >= 2 and "embed" not in n and "extra" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95),
    )
    weight = torch.ones(codec.n_ids)
    weight[codec.sil_id] = sil_weight
    seq_len = cfg.capacity
    warmup = max(1, min(100, steps // 10))
    rng = np.random.default_rng(seed)
    start_step, best, history = 0, math.inf, []
    if saved:
        model.load_state_dict(saved["model"], strict=False)
        opt.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        start_step, best, history = saved["step"], saved["best"], saved["history"]
        log.info("resuming from %s at step %d (best held-out loss %.4f)", state_path, start_step, best)

    trainable, total = model.num_params()
    meta: dict[str, Any] = {
        "feature_key": feature_key(cfg.video_tokenizer),
        "bflow_config": asdict(bflow.BFlowConfig()),
        "token_dim": bflow.TOKEN_DIM,
        "views": ({"config": asdict(VIEW_CONFIGS[cfg.video_tokenizer]), "encoder": asdict(EncoderConfig())}
                  if cfg.video_tokenizer in VIEW_CONFIGS else None),
        "fps_hz": MODEL_FPS_HZ,
        "data_dir": str(data_dir),
        "extra_data": [str(d) for d in extra_data],
        "params": {"trainable": trainable, "total": total},
        "eval_clips": [p.name for p in eval_clips],
        "spoken_ids": spoken_ids(codec, train_texts),
    }
    train_settings = {
        "steps": steps, "batch_size": batch_size, "seq_len": seq_len, "lr": lr, "sil_weight": sil_weight,
        "delay_steps": delay_steps, "n_train_clips": len(train_clips), "n_extra_clips": len(extra_clips),
        "n_swapped_copies": len(swapped), "feature_dropout": dropout, "procedural_share": procedural_share,
        "n_eval_clips": len(eval_clips), "seed": seed,
    }

    def checkpoint(step: int) -> None:
        nonlocal best
        val = _held_out_loss(model, eval_ex, weight, seq_len)
        history.append({"step": step, "train_loss": float(np.mean(losses[-50:])) if losses else None,
                        "held_out_loss": val})
        if val < best:
            best = val
            save_checkpoint(out, model, {**meta, "train": {**train_settings, "best_step": step,
                                                          "held_out_loss": val, "history": history}})
        tmp = state_path.with_name(state_path.name + ".tmp")
        torch.save({"model": model.trainable_state_dict(), "optimizer": opt.state_dict(),
                    "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "step": step, "best": best, "history": history,
                    "codec": codec.to_dict()}, tmp)
        tmp.replace(state_path)
        log.info("step %d: held-out loss %.4f (best %.4f)", step, val, best)

    t0 = time.perf_counter()
    model.train()
    losses: list[float] = []
    bar = tqdm(range(start_step, steps), desc=f"train {cfg.backbone}/{cfg.duplex_format}", disable=not progress,
               initial=start_step, total=steps)
    for it in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(it, steps, lr, warmup)
        batch = make_batch(train_ex, batch_size, seq_len, rng, feature_dropout=dropout, probs=probs)
        loss = _loss(model, batch, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
        opt.step()
        losses.append(loss.item())
        if it % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", best=f"{best:.3f}")
        if (it + 1) % checkpoint_every == 0 or it + 1 == steps:
            checkpoint(it + 1)
    bar.close()
    timing["train"] = time.perf_counter() - t0
    if not out.is_file():  # nothing to train (resumed at the end) and no checkpoint yet
        checkpoint(steps)

    t0 = time.perf_counter()
    eval_metrics = evaluate(out, eval_clips, progress=progress, workers=workers)
    timing["eval"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start
    best_model, best_meta = load_checkpoint(out)
    save_checkpoint(out, best_model, {**best_meta, "eval": eval_metrics, "timing_s": timing})
    result = {
        "train": {**train_settings, "history": history, "best_held_out_loss": best},
        "eval": eval_metrics,
        "timing_s": timing,
        "params": {"trainable": trainable, "total": total},
        "config": asdict(cfg),
        "checkpoint": str(out),
        "checkpoint_bytes": out.stat().st_size,
    }
    if eval_json is not None:
        Path(eval_json).write_text(json.dumps(result, indent=2))
    return result

"""Training of the v0 duplex commentator on procedural clips (CPU, minutes).

Pipeline: generate the procedural clips if ``data_dir`` has none
(:func:`models.procedural.make_dataset`) -> features and targets
(:mod:`models.dataset`, cached) -> AdamW on the teacher-forced next-token loss ->
streaming evaluation on the held-out clips (:func:`models.evaluate.evaluate`) ->
checkpoint (:func:`models.commentator.save_checkpoint`).

Sequences: each training item is a run of whole clips concatenated in time and
cropped to ``capacity`` steps (the KV cache size), so the model also trains at the
cache positions that a long live stream keeps using once its cache is full.

Imbalance: most steps are ``<sil>``; its loss weight is ``sil_weight`` (< 1), words
and ``<eol>`` weigh 1.
"""

from __future__ import annotations

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

from models import bflow
from models.commentator import Commentator, CommentatorConfig, save_checkpoint
from models.dataset import ClipExample, clip_lines, feature_key, find_clips, load_examples
from models.video import MODEL_FPS_HZ
from models.vocab import Vocab

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_DATA_DIR",
    "TrainBatch",
    "default_config",
    "generate_clips",
    "make_batch",
    "train",
]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("~/.cache/mmduplex/procedural").expanduser()
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "commentator-v0.pt"


def default_config(vocab_size: int) -> CommentatorConfig:
    """The v0 architecture (see docs/MODEL_CARD.md)."""
    return CommentatorConfig(vocab_size=vocab_size)


TrainBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def make_batch(
    examples: list[ClipExample],
    batch_size: int,
    seq_len: int,
    rng: np.random.Generator,
    *,
    sil_id: int,
    pad_id: int,
    random_start_p: float = 0.5,
) -> TrainBatch:
    """Samples a training batch of clip runs.

    Each item starts in a random clip (at step 0, or with probability
    ``random_start_p`` at a random step), continues through further random clips
    and is cropped to ``seq_len`` steps.

    Args:
        examples: Training clips.
        batch_size: Items ``B``.
        seq_len: Steps per item ``T`` (at most the model's cache capacity).
        rng: Random generator.
        sil_id: ``<sil>`` id (the text input before a session's first step).
        pad_id: ``<pad>`` id (targets past the data; ignored by the loss).
        random_start_p: Probability of starting mid-clip.

    Returns:
        ``(video_tokens float32 [B, T, Nmax, 64], token_mask bool [B, T, Nmax],
        prev_text int64 [B, T], targets int64 [B, T])``.
    """
    items = []
    for _ in range(batch_size):
        steps: list[np.ndarray] = []
        tgt: list[np.ndarray] = []
        prev0 = sil_id
        first = True
        n = 0
        while n < seq_len:
            ex = examples[int(rng.integers(len(examples)))]
            f = ex.features
            start = 0
            if first and rng.random() < random_start_p and f.n_steps > 1:
                start = int(rng.integers(f.n_steps))
                prev0 = int(ex.targets[start - 1]) if start > 0 else sil_id
            first = False
            for t in range(start, f.n_steps):
                steps.append(f.step_tokens(t))
            tgt.append(ex.targets[start:])
            n += f.n_steps - start
        y = np.concatenate(tgt)[:seq_len]
        items.append((steps[:seq_len], y, prev0))
    nmax = max(1, max(a.shape[0] for s, _, _ in items for a in s))
    dim = items[0][0][0].shape[1] if items[0][0] else 64
    vt = np.zeros((batch_size, seq_len, nmax, dim), np.float32)
    vm = np.zeros((batch_size, seq_len, nmax), bool)
    ys = np.full((batch_size, seq_len), pad_id, np.int64)
    prev = np.full((batch_size, seq_len), pad_id, np.int64)
    for b, (steps, y, prev0) in enumerate(items):
        for t, a in enumerate(steps):
            vt[b, t, : a.shape[0]] = a
            vm[b, t, : a.shape[0]] = True
        ys[b, : len(y)] = y
        prev[b, 0] = prev0
        prev[b, 1 : len(y)] = y[:-1]
    return (torch.from_numpy(vt), torch.from_numpy(vm), torch.from_numpy(prev), torch.from_numpy(ys))


def _lr_at(step: int, total: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac))))


def _generate_shard(args: tuple[str, int, int, float]) -> int:
    from models.procedural import make_dataset

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
    """Writes ``n_clips`` procedural clips with :func:`models.procedural.make_dataset`.

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
        The clips (see :func:`models.dataset.find_clips`).

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
    data_dir: Path = DEFAULT_DATA_DIR,
    out: Path = DEFAULT_CHECKPOINT,
    n_clips: int = 200,
    held_out: int = 20,
    steps: int = 1000,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    config: CommentatorConfig | None = None,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    sil_weight: float = 0.2,
    delay_steps: int = 0,
    workers: int = 2,
    threads: int = 2,
    eval_json: Path | None = None,
) -> dict[str, Any]:
    """Trains the commentator and saves its checkpoint.

    Args:
        data_dir: Folder of clips (``*.mp4`` + ``*.json``, also in subfolders);
            generated with :func:`generate_clips` when it holds no clip.
        out: Checkpoint path (``.pt``).
        n_clips: Clips to generate (if needed) and use; the first
            ``n_clips - held_out`` (sorted by name) train, the last ``held_out``
            evaluate.
        held_out: Clips kept out of training for evaluation.
        steps: Optimizer steps.
        batch_size: Sequences per step.
        seed: Seed of data generation, initialization and sampling.
        progress: Show progress bars.
        config: Model config (``vocab_size`` is overwritten); default
            :func:`default_config`.
        lr: Peak learning rate (linear warmup, cosine decay to 10 %).
        weight_decay: AdamW weight decay of matrices.
        sil_weight: Loss weight of ``<sil>`` targets (words and ``<eol>``: 1).
        delay_steps: Text stream delay behind the video, in steps.
        workers: Processes for clip generation and feature extraction.
        threads: Torch intra-op threads.
        eval_json: Also write the held-out metrics here.

    Returns:
        Metrics: ``{"train": {...}, "eval": {...}, "timing_s": {...}, "params": n}``.

    Raises:
        ValueError: If there are not enough clips for the split.
        MediaError: If a clip cannot be decoded.

    Note:
        With ``workers > 1`` clips and features are made in ``spawn`` worker
        processes: a script calling this must guard its entry point with
        ``if __name__ == "__main__":`` (console scripts and ``python -m`` modules
        with a ``main()`` are fine).
    """
    from tqdm.auto import tqdm

    from models.evaluate import evaluate

    t_start = time.perf_counter()
    torch.set_num_threads(threads)
    data_dir = Path(data_dir).expanduser()
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
        raise ValueError(
            f"need more than held_out={held_out} clips (>= 1 held out), found {len(clips)} "
            f"in {data_dir}"
        )
    train_clips, eval_clips = clips[:-held_out], clips[-held_out:]

    vocab = Vocab.build(text for p in train_clips for _, text in clip_lines(p))
    t0 = time.perf_counter()
    examples = load_examples(
        clips, vocab, delay_steps=delay_steps, workers=workers, progress=progress
    )
    timing["features"] = time.perf_counter() - t0
    train_ex = examples[: len(train_clips)]

    cfg = replace(config or default_config(len(vocab)), vocab_size=len(vocab))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Commentator(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "emb" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    weight = torch.ones(cfg.vocab_size)
    weight[vocab.sil_id] = sil_weight
    seq_len = cfg.capacity
    warmup = max(1, min(100, steps // 10))

    t0 = time.perf_counter()
    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc="train", disable=not progress)
    for it in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(it, steps, lr, warmup)
        vt, vm, prev, y = make_batch(
            train_ex, batch_size, seq_len, rng, sil_id=vocab.sil_id, pad_id=vocab.pad_id
        )
        logits = model(vt, vm, prev)
        loss = F.cross_entropy(
            logits.reshape(-1, cfg.vocab_size),
            y.reshape(-1),
            weight=weight,
            ignore_index=vocab.pad_id,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if it % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    model.eval()
    timing["train"] = time.perf_counter() - t0

    train_metrics = {
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lr": lr,
        "sil_weight": sil_weight,
        "delay_steps": delay_steps,
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "n_train_clips": len(train_clips),
        "n_eval_clips": len(eval_clips),
        "seed": seed,
    }
    meta: dict[str, Any] = {
        "train": train_metrics,
        "feature_key": feature_key(),
        "bflow_config": asdict(bflow.BFlowConfig()),
        "token_dim": bflow.TOKEN_DIM,
        "fps_hz": MODEL_FPS_HZ,
        "data_dir": str(data_dir),
        "params": model.num_params(),
        "eval_clips": [p.name for p in eval_clips],
    }
    out = Path(out)
    save_checkpoint(out, model, vocab, meta)

    t0 = time.perf_counter()
    eval_metrics = evaluate(out, eval_clips, progress=progress, workers=workers)
    timing["eval"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start
    meta.update(eval=eval_metrics, timing_s=timing)
    save_checkpoint(out, model, vocab, meta)  # again, with the metrics in meta
    result = {
        "train": train_metrics,
        "eval": eval_metrics,
        "timing_s": timing,
        "params": model.num_params(),
        "config": asdict(cfg),
        "checkpoint": str(out),
        "checkpoint_bytes": out.stat().st_size,
    }
    if eval_json is not None:
        import json

        Path(eval_json).write_text(json.dumps(result, indent=2))
    return result

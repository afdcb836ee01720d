"""Unit tests of the commentator's data, training and evaluation pipeline (small, fast, CPU)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.data.dataset import (
    ClipExample,
    ClipFeatures,
    clip_lines,
    clip_sequence,
    feature_key,
    load_examples,
    load_features,
)
from models.lm.commentator import CommentatorConfig, CommentatorRuntime, build_commentator
from models.lm.duplex import IGNORE, NO_TEXT, build_sequence
from models.lm.text import WordCodec, spoken_ids
from models.training.evaluate import mentions, run_clip, teacher_forced
from models.training.train import backbone_config, generate_clips, make_batch, train
from models.vision.views import view_dim

TINY = CommentatorConfig(
    d_model=32, n_layers=1, n_heads=2, pool_heads=2, dropout=0.0, sink_positions=2, window_positions=30
)
EVAL_KEYS = ("event_recall", "event_precision", "time_diff_s", "fluency", "lm_ppl", "semantic_similarity",
             "bflow_tokens_per_s", "dense_tokens_per_s", "steps_per_s", "encoder_calls_per_s",
             "object_mention_recall", "object_mention_precision", "distinct_lines_per_min")


def _fake_example(t: int, rng: np.random.Generator, fmt: str, k: int = 2) -> ClipExample:
    """A clip of ``t`` steps with 0-3 random tokens each, a key view of 1-2 rows (width 6)
    every 3rd step, and random words (ids 4-9) in some steps."""
    counts = rng.integers(0, 4, size=t)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    view_counts = np.where(np.arange(t) % 3 == 0, rng.integers(1, 3, size=t), 0)
    view_offsets = np.concatenate([[0], np.cumsum(view_counts)]).astype(np.int64)
    feats = ClipFeatures(
        pts_s=np.arange(t) / 5.0,
        tokens=rng.normal(size=(int(offsets[-1]), 64)).astype(np.float32),
        offsets=offsets,
        is_key=np.zeros(t, bool),
        views=rng.normal(size=(int(view_offsets[-1]), 6)).astype(np.float32),
        view_offsets=view_offsets,
    )
    kk = 1 if fmt == "parallel" else k
    per_step = [[int(w) for w in rng.integers(4, 10, size=rng.integers(0, kk + 1))] for _ in range(t)]
    return ClipExample(Path("x.mp4"), feats, build_sequence(per_step, fmt, k=kk, sil_id=1))


@pytest.mark.parametrize("fmt", ["interleaved", "parallel"])
def test_make_batch_concatenates_clips_to_seq_len(fmt: str) -> None:
    rng = np.random.default_rng(0)
    exs = [_fake_example(7, rng, fmt), _fake_example(5, rng, fmt)]
    b, p = 3, 40
    batch = make_batch(exs, b, p, rng, random_start_p=0.0)
    assert len(batch) == 7
    vt, vm, frame, text, y, vv, vvm = batch
    assert vt.dtype == torch.float32 and vt.shape[:2] == (b, p) and vt.shape[3] == 64
    assert vm.dtype == torch.bool and vm.shape == vt.shape[:3]
    assert vv.dtype == torch.float32 and vv.shape[:2] == (b, p) and vv.shape[3] == 6
    assert vvm.dtype == torch.bool and vvm.shape == vv.shape[:3] and vvm.any()
    assert frame.dtype == torch.bool and text.dtype == y.dtype == torch.int64
    assert frame.shape == text.shape == y.shape == (b, p)
    # Whole clips from their start, concatenated: every position holds data.
    assert frame[:, 0].all() and (frame | (text != NO_TEXT)).all()
    if fmt == "parallel":
        assert frame.all() and (y != IGNORE).all()
    else:
        assert ((y == IGNORE) <= ~frame).all()  # only a text position after k tokens is unscored
    # Each row is a concatenation of whole clip sequences.
    seqs = [ex.sequence for ex in exs]
    for row in range(b):
        pos = 0
        while pos < p:
            fits = [s for s in seqs if np.array_equal(s.target[: p - pos], y[row, pos : pos + len(s)].numpy())
                    and np.array_equal(s.text_in[: p - pos], text[row, pos : pos + len(s)].numpy())
                    and np.array_equal(s.is_frame[: p - pos], frame[row, pos : pos + len(s)].numpy())]
            assert fits, f"row {row} position {pos} does not start a clip"
            pos += len(fits[0])


def test_make_batch_draws_clips_by_their_probabilities() -> None:
    rng = np.random.default_rng(0)
    short = [_fake_example(4, rng, "interleaved") for _ in range(3)]  # 4 steps each
    long = _fake_example(60, rng, "interleaved")
    examples = [*short, long]
    only_long = make_batch(examples, 4, 16, rng, random_start_p=0.0, probs=np.array([0.0, 0.0, 0.0, 1.0]))
    np.testing.assert_array_equal(only_long[4][0], only_long[4][1])  # every item is the long clip's start
    seq = long.sequence
    np.testing.assert_array_equal(only_long[4][0].numpy(), seq.target[:16])


@pytest.mark.parametrize("start_p", [0.0, 1.0])
def test_make_batch_video_rows_match_the_steps_tokens(start_p: float) -> None:
    rng = np.random.default_rng(1)
    exs = [_fake_example(9, rng, "interleaved", k=3) for _ in range(3)]
    # Every step's tokens, by their bytes (random normals: unique per step, empty steps share b"").
    by_bytes = {ex.features.step_tokens(t).tobytes(): ex.features.counts()[t]
                for ex in exs for t in range(ex.features.n_steps)}
    views_by_bytes = {v.tobytes(): len(v) for ex in exs for t in range(ex.features.n_steps)
                      if (v := ex.features.step_views(t)) is not None}
    vt, vm, frame, _, _, vv, vvm = make_batch(exs, 4, 25, rng, random_start_p=start_p)
    k = vvm.sum(-1)
    for b, p in zip(*np.nonzero(k.numpy()), strict=True):
        assert frame[b, p] and views_by_bytes.get(vv[b, p, : k[b, p]].numpy().tobytes()) == k[b, p]
    assert int(k.gt(0).sum()) > 0
    n = vm.sum(-1)
    assert vt.shape[2] == max(1, int(n.max()))
    for b in range(4):
        assert frame[b, 0]  # random starts are at a frame position too
        for p in range(25):
            if not frame[b, p]:
                assert n[b, p] == 0 and not vt[b, p].any()
                continue
            real = vt[b, p, : n[b, p]].numpy()
            assert vm[b, p, : n[b, p]].all() and not vt[b, p, n[b, p] :].any()
            assert by_bytes.get(real.tobytes()) == n[b, p]  # the mask counts exactly that step's tokens


def test_mentions() -> None:
    assert mentions("Red passes it on", "pass")
    assert mentions("A PASS, from blue!", "pass")
    assert not mentions("red shoots", "pass")
    assert mentions("what a goal", "goal") and not mentions("goalkeeper", "goal")
    assert mentions("it pans right", "pan_left")  # keyword only
    assert not mentions("it pans right", "pan_left", strict=True)
    assert mentions("the camera pans left", "pan_left", strict=True)
    assert mentions("blue shoots", "shot", strict=True)  # no direction needed
    assert not mentions("red passes", "teleport")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.data.procedural import make_dataset

    d = tmp_path_factory.mktemp("clips")
    make_dataset(d, 3, seed=1, duration_s=6.0)
    return d


def test_features_are_cached(clip_dir: Path) -> None:
    clip = sorted(clip_dir.glob("*.mp4"))[0]
    f1 = load_features(clip)
    cache = clip.with_name(f"{clip.stem}.feat-{feature_key()}.npz")
    assert cache.is_file()
    assert f1.n_steps == 30 and f1.offsets.shape == (31,)
    assert f1.tokens.dtype == np.float32 and f1.tokens.shape[1] == 64
    assert np.allclose(np.diff(f1.pts_s), 0.2)
    f2 = load_features(clip)
    np.testing.assert_array_equal(f1.tokens, f2.tokens)


def test_streaming_and_teacher_forced_passes(clip_dir: Path) -> None:
    """run_clip and teacher_forced on a real clip with an untrained tiny model."""
    clip = sorted(clip_dir.glob("*.mp4"))[0]
    codec = WordCodec.build([text for _, text in clip_lines(clip)])
    cfg = replace(TINY, window_positions=10, silence_bias=-1e9, max_line_tokens=3)  # talks all the time
    torch.manual_seed(0)
    rt = CommentatorRuntime(build_commentator(cfg, codec).eval())
    (ex,) = load_examples([clip], codec, fmt=cfg.duplex_format, k=cfg.step_tokens, workers=1)
    assert len(ex.sequence) > cfg.capacity  # several cache windows

    lines = run_clip(rt, ex.features)
    assert len(lines) >= ex.features.n_steps  # 4 ids a step, 3 words a line
    assert lines[0].start_s == ex.features.pts_s[0]
    assert all(1 <= len(ln.text.split()) <= 3 for ln in lines)
    assert [ln.start_s for ln in lines] == sorted(ln.start_s for ln in lines)

    pred, logp = teacher_forced(rt, ex.features, ex.sequence)
    seq = ex.sequence
    assert pred.shape == logp.shape == (len(seq),)
    scored = seq.target != IGNORE
    assert (logp[~scored] == 0).all() and (logp[scored] < 0).all()
    assert not rt.model.banned[torch.from_numpy(pred)].any()
    # The reference sequence is the one clip_sequence builds from the transcript.
    again = clip_sequence(clip_lines(clip), ex.features.n_steps, codec, fmt="interleaved", k=4)
    np.testing.assert_array_equal(again.target, seq.target)


@pytest.mark.parametrize("fmt", ["interleaved", "parallel"])
def test_train_and_evaluate_end_to_end(clip_dir: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "c.pt"
    cfg = replace(TINY, duplex_format=fmt)
    res = train(data_dir=clip_dir, out=out, n_clips=3, held_out=1, steps=3, batch_size=2, seed=0, progress=False,
                config=cfg, workers=1, threads=1, checkpoint_every=2, eval_json=tmp_path / "m.json")
    assert out.is_file() and out.with_suffix(".state.pt").is_file()
    assert res["checkpoint_bytes"] == out.stat().st_size < 5e6
    assert res["config"]["duplex_format"] == fmt
    assert [h["step"] for h in res["train"]["history"]] == [2, 3]
    assert res["train"]["n_train_clips"] == 2 and res["train"]["n_eval_clips"] == 1
    ev = res["eval"]
    for key in EVAL_KEYS:
        assert key in ev, key
    assert ev["duplex_format"] == fmt and ev["clips"] == 1 and ev["events"] >= 1
    assert ev["dense_tokens_per_s"] == 320.0  # 64 tokens per 5 Hz step
    assert 0.0 < ev["bflow_tokens_per_s"] < ev["dense_tokens_per_s"]
    assert ev["lm_ppl"] > 1.0 and ev["steps_per_s"] > 0
    assert ev["semantic_similarity"] is None or -1.0 <= ev["semantic_similarity"] <= 1.0
    assert json.loads((tmp_path / "m.json").read_text())["eval"]["events"] == ev["events"]
    assert 0.0 < ev["encoder_calls_per_s"] <= 5.0 and ev["distinct_lines_per_min"] <= ev["lines_per_min"]
    rt = CommentatorRuntime.load(out)
    # The model takes key views of the default encoder (EfficientNet-Lite0: 1280 features + the region).
    assert rt.model.cfg == replace(cfg, view_dim=view_dim(1280))
    assert rt.meta["views"]["config"]["objects"] == 0
    assert rt.meta["views"]["encoder"]["kind"] == "efficientnet-lite0"
    assert rt.meta["eval"]["events"] == ev["events"]
    assert rt.meta["eval_clips"] == [sorted(clip_dir.glob("*.mp4"))[-1].name]
    assert rt.meta["train"]["best_step"] in (2, 3) and "timing_s" in rt.meta
    assert rt.meta["spoken_ids"] == spoken_ids(rt.codec, [t for c in sorted(clip_dir.glob("*.mp4"))[:2]
                                                          for _, t in clip_lines(c)])
    assert rt.model.shortlist is not None


def test_train_resumes_from_its_state(clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.pt"
    kw: dict[str, Any] = dict(data_dir=clip_dir, out=out, n_clips=3, held_out=1, batch_size=2, seed=0, progress=False,
              config=TINY, workers=1, threads=1, checkpoint_every=1)
    first = train(steps=2, **kw)
    assert [h["step"] for h in first["train"]["history"]] == [1, 2]
    assert torch.load(out.with_suffix(".state.pt"), weights_only=False)["step"] == 2
    second = train(steps=4, resume=True, **kw)
    history = second["train"]["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert history[:2] == first["train"]["history"]  # continued, not retrained
    state = torch.load(out.with_suffix(".state.pt"), weights_only=False)
    assert state["step"] == 4 and state["history"] == history
    assert state["best"] == min(h["held_out_loss"] for h in history) == second["train"]["best_held_out_loss"]
    # Resuming a finished run trains nothing more.
    third = train(steps=4, resume=True, **kw)
    assert third["train"]["history"] == history


def test_train_needs_enough_clips(clip_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="held_out"):
        train(data_dir=clip_dir, out=tmp_path / "c.pt", n_clips=3, held_out=3, steps=1,
              batch_size=1, seed=0, progress=False, config=TINY, workers=1)
    with pytest.raises(ValueError, match="held_out"):
        train(data_dir=clip_dir, out=tmp_path / "c.pt", n_clips=3, held_out=0, steps=1,
              batch_size=1, seed=0, progress=False, config=TINY, workers=1)


def test_backbone_config() -> None:
    tiny = backbone_config("tiny")
    assert (tiny.backbone, tiny.d_model, tiny.capacity, tiny.duplex_format) == ("tiny", 128, 128, "interleaved")
    hf = backbone_config("hf", backbone_path="/x", duplex_format="parallel")
    assert (hf.backbone_path, hf.capacity, hf.lora_rank, hf.duplex_format) == ("/x", 256, 8, "parallel")
    hf.validate()


def test_generate_clips_in_parallel_shards(tmp_path: Path) -> None:
    clips = generate_clips(tmp_path, 3, seed=2, duration_s=2.0, workers=2)
    assert len(clips) == 3
    assert {p.parent.name for p in clips} == {"shard0", "shard1"}
    assert all(p.with_suffix(".json").is_file() for p in clips)


def test_train_with_object_rows(clip_dir: Path, tmp_path: Path) -> None:
    """``bflow-objects``: the detector's object rows widen every view row; the checkpoint says so."""
    out = tmp_path / "o.pt"
    res = train(data_dir=clip_dir, out=out, n_clips=3, held_out=1, steps=1, batch_size=2, seed=0, progress=False,
                config=replace(TINY, video_tokenizer="bflow-objects"), workers=1, threads=1, checkpoint_every=1)
    assert res["train"]["feature_dropout"] == 0.5
    rt = CommentatorRuntime.load(out)
    assert rt.model.cfg.view_dim == view_dim(1280, objects=True)
    assert rt.meta["views"]["config"]["objects"] == 8

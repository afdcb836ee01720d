"""Unit tests of the commentator's data, training and evaluation pipeline (small, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.commentator import CommentatorConfig, CommentatorRuntime
from models.dataset import ClipExample, ClipFeatures, feature_key, load_features, make_targets
from models.evaluate import ProducedLine, evaluate, mentions, score_clip
from models.train import generate_clips, make_batch, train
from models.vocab import Vocab

TINY = CommentatorConfig(
    d_model=32, n_layers=1, n_heads=2, pool_heads=2, sink_positions=2, window_positions=30
)


def test_make_targets_places_words_eol_and_shifts_overlaps() -> None:
    v = Vocab.build(["red passes", "nice shot", "goal"])
    y = make_targets([(0.4, "red passes"), (0.5, "nice shot"), (3.0, "goal")], 20, v)
    w = v.stoi
    expect = [v.sil_id] * 20
    # line 1 at step 2; line 2 wants step 2 too and is shifted after line 1's <eol>.
    expect[2:5] = [w["red"], w["passes"], v.eol_id]
    expect[5:8] = [w["nice"], w["shot"], v.eol_id]
    expect[15:17] = [w["goal"], v.eol_id]
    assert y.tolist() == expect
    # Delay and truncation at the end of the clip.
    y = make_targets([(0.0, "red passes")], 3, v, delay_steps=2)
    assert y.tolist() == [v.sil_id, v.sil_id, w["red"]]


def _fake_example(t: int, rng: np.random.Generator) -> ClipExample:
    counts = rng.integers(0, 4, size=t)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    feats = ClipFeatures(
        pts_s=np.arange(t) / 5.0,
        tokens=rng.normal(size=(int(offsets[-1]), 64)).astype(np.float32),
        offsets=offsets,
        is_key=np.zeros(t, bool),
    )
    return ClipExample(Path("x.mp4"), feats, rng.integers(1, 10, size=t))


def test_make_batch_concatenates_clips_to_seq_len() -> None:
    rng = np.random.default_rng(0)
    exs = [_fake_example(7, rng), _fake_example(5, rng)]
    vt, vm, prev, y = make_batch(exs, 3, 16, rng, sil_id=1, pad_id=0, random_start_p=0.0)
    assert vt.shape[:2] == (3, 16) and vt.shape[3] == 64 and vm.shape == vt.shape[:3]
    assert prev.shape == y.shape == (3, 16)
    assert (prev[:, 0] == 1).all()  # a session starts with <sil> as text input
    assert torch.equal(prev[:, 1:], y[:, :-1])  # teacher forcing: previous target
    assert (y > 0).all()  # no padding needed: clips were concatenated
    # The mask matches the per-step token counts of the first clip.
    assert vm.sum(-1)[0, :5].tolist() in (
        exs[0].features.counts()[:5].tolist(),
        exs[1].features.counts()[:5].tolist(),
    )


def test_mentions_and_score_clip() -> None:
    assert mentions("Red passes it on", "pass")
    assert not mentions("red shoots", "pass")
    assert mentions("it pans right", "pan_left")  # keyword only
    assert not mentions("it pans right", "pan_left", strict=True)
    events = [(2.0, "pass"), (10.0, "goal"), (15.0, "shot")]
    lines = [
        ProducedLine(3.5, "blue passes"),  # within 2 s of the pass
        ProducedLine(12.5, "goal for red"),  # too late for the goal
        ProducedLine(14.0, "nice pass"),  # near the shot but wrong kind
    ]
    diffs, hits = score_clip(events, lines, 2.0)
    assert diffs == [1.5, None, None]
    assert hits == [True, False, False]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.procedural import make_dataset

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


def test_train_and_evaluate_end_to_end(clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.pt"
    res = train(
        data_dir=clip_dir,
        out=out,
        n_clips=3,
        held_out=1,
        steps=3,
        batch_size=2,
        seed=0,
        progress=False,
        config=TINY,
        workers=1,
        eval_json=tmp_path / "m.json",
    )
    assert out.is_file() and out.stat().st_size < 25e6
    ev = res["eval"]
    for key in ("event_mention_rate", "false_alarm_rate", "lines_per_min", "per_kind", "lm_ppl"):
        assert key in ev
    assert ev["events"] >= 1 and 0.0 <= ev["event_mention_rate"] <= 1.0
    assert json.loads((tmp_path / "m.json").read_text())["eval"]["events"] == ev["events"]
    rt = CommentatorRuntime.load(out)
    assert rt.meta["eval"]["events"] == ev["events"] and rt.model.cfg.d_model == 32
    ev2 = evaluate(out, sorted(clip_dir.glob("*.mp4"))[-1:], workers=1)
    assert ev2["event_mention_rate"] == ev["event_mention_rate"]
    assert ev2["dense_tokens_per_s"] == 64 * 5.0  # 64 tokens per 5 Hz step
    assert 0.0 < ev2["bflow_tokens_per_s"] < ev2["dense_tokens_per_s"]


def test_train_needs_enough_clips(clip_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="held_out"):
        train(data_dir=clip_dir, out=tmp_path / "c.pt", n_clips=3, held_out=3, steps=1,
              batch_size=1, seed=0, progress=False, config=TINY, workers=1)


def test_generate_clips_in_parallel_shards(tmp_path: Path) -> None:
    clips = generate_clips(tmp_path, 3, seed=2, duration_s=2.0, workers=2)
    assert len(clips) == 3
    assert {p.parent.name for p in clips} == {"shard0", "shard1"}
    assert all(p.with_suffix(".json").is_file() for p in clips)

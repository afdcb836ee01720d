"""Unit tests of the duplex commentator (tiny configs, random tokens, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.commentator import (
    EOL_ID,
    SIL_ID,
    CheckpointError,
    Commentator,
    CommentatorConfig,
    CommentatorRuntime,
    StepOutput,
    load_checkpoint,
    save_checkpoint,
)
from models.vocab import Vocab

TINY = CommentatorConfig(
    vocab_size=16,
    d_model=32,
    n_layers=2,
    n_heads=4,
    pool_heads=2,
    dropout=0.0,
    sink_positions=2,
    window_positions=10,
)


def _model(cfg: CommentatorConfig = TINY, seed: int = 0) -> Commentator:
    torch.manual_seed(seed)
    return Commentator(cfg).eval()


def _random_steps(t: int, seed: int, nmax: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(t):
        n = 0 if i % 4 == 1 else int(rng.integers(0, nmax + 1))
        out.append(rng.normal(size=(n, TINY.token_dim)).astype(np.float32))
    return out


def _pad(steps: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    nmax = max(1, max(a.shape[0] for a in steps))
    vt = torch.zeros(1, len(steps), nmax, TINY.token_dim)
    vm = torch.zeros(1, len(steps), nmax, dtype=torch.bool)
    for i, a in enumerate(steps):
        vt[0, i, : a.shape[0]] = torch.from_numpy(a)
        vm[0, i, : a.shape[0]] = True
    return vt, vm


def test_forward_shapes() -> None:
    m = _model()
    b, t, n = 3, 7, 5
    vt = torch.randn(b, t, n, 64)
    vm = torch.rand(b, t, n) > 0.5
    vm[0, 0] = False  # a step without tokens
    prev = torch.randint(0, TINY.vocab_size, (b, t))
    logits = m(vt, vm, prev)
    assert logits.shape == (b, t, TINY.vocab_size)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_forward_rejects_too_long_sequences() -> None:
    m = _model()
    t = TINY.capacity + 1
    with pytest.raises(ValueError, match="capacity"):
        m(torch.zeros(1, t, 1, 64), torch.zeros(1, t, 1, dtype=torch.bool),
          torch.zeros(1, t, dtype=torch.long))


def test_padding_does_not_change_logits() -> None:
    m = _model()
    steps = _random_steps(6, seed=1)
    vt, vm = _pad(steps)
    prev = torch.randint(0, TINY.vocab_size, (1, 6))
    a = m(vt, vm, prev)
    vt2 = torch.cat([vt, torch.randn(1, 6, 3, 64)], dim=2)  # garbage in padded rows
    vm2 = torch.cat([vm, torch.zeros(1, 6, 3, dtype=torch.bool)], dim=2)
    torch.testing.assert_close(m(vt2, vm2, prev), a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t", [1, 5, TINY.capacity])
def test_streaming_matches_full_forward(t: int) -> None:
    m = _model()
    steps = _random_steps(t, seed=t)
    prev = torch.randint(0, TINY.vocab_size, (1, t))
    full = m(*_pad(steps), prev)[0]  # (T, V)
    state = m.new_state()
    got = torch.stack(
        [m.advance([state], [steps[i]], prev[:, i])[0] for i in range(t)]
    )
    torch.testing.assert_close(got, full, atol=1e-4, rtol=1e-4)
    assert state.fill == t and state.step == t


def test_greedy_streaming_is_consistent_with_forward() -> None:
    """Feeding the model's own greedy tokens back into forward() gives its logits."""
    m = _model(CommentatorConfig(**{**TINY.__dict__, "max_line_words": 1000}))
    t = TINY.capacity
    steps = _random_steps(t, seed=3)
    state = m.new_state()
    emitted, logits = [], []
    for a in steps:
        prev = state.last_token
        lg = m.advance([state], [a])
        logits.append(lg[0])
        emitted.append((prev, m.choose([state], lg)[0]))
    prev_text = torch.tensor([[p for p, _ in emitted]])
    assert prev_text[0, 0] == SIL_ID
    full = m(*_pad(steps), prev_text)[0]
    torch.testing.assert_close(torch.stack(logits), full, atol=1e-4, rtol=1e-4)


def test_kv_cache_is_bounded_over_1000_steps() -> None:
    m = _model()
    state = m.new_state()
    shape = (TINY.n_layers, 2, TINY.n_heads, TINY.capacity, TINY.head_dim)
    assert tuple(state.kv.shape) == shape
    nbytes, ptr = state.nbytes(), state.kv.data_ptr()
    rng = np.random.default_rng(0)
    for i in range(1000):
        n = int(rng.integers(0, 5))
        tok = m.step(state, rng.normal(size=(n, 64)).astype(np.float32))
        assert 0 <= tok < TINY.vocab_size
        assert state.fill == min(i + 1, TINY.capacity)
        assert tuple(state.kv.shape) == shape
    assert state.step == 1000
    assert state.nbytes() == nbytes and state.kv.data_ptr() == ptr  # no reallocation
    # Sinks are never overwritten; positions within the full cache are 0..C-1.
    pos, q = state.slot_positions()
    assert sorted(pos.tolist()) == list(range(TINY.capacity)) and q == TINY.capacity - 1
    assert pos[: TINY.sink_positions].tolist() == list(range(TINY.sink_positions))


def test_full_cache_equals_forward_on_sinks_plus_window_for_one_layer() -> None:
    """With one layer the cache entries depend only on their own step, so a full ring
    must behave exactly like a forward over [sinks, last window] (StreamingLLM)."""
    cfg = CommentatorConfig(**{**TINY.__dict__, "n_layers": 1})
    m = _model(cfg)
    t = 37
    steps = _random_steps(t, seed=5)
    prev = torch.randint(0, cfg.vocab_size, (1, t))
    state = m.new_state()
    for i in range(t):
        last = m.advance([state], [steps[i]], prev[:, i])[0]
    keep = list(range(cfg.sink_positions)) + list(range(t - cfg.window_positions, t))
    ref = m(*_pad([steps[i] for i in keep]), prev[:, keep])[0, -1]
    torch.testing.assert_close(last, ref, atol=1e-4, rtol=1e-4)


def test_step_batch_equals_per_session_step() -> None:
    m = _model()
    n_sessions, t = 3, 30  # beyond capacity, sessions at different offsets
    streams = [_random_steps(t, seed=10 + s) for s in range(n_sessions)]
    singles = [m.new_state() for _ in range(n_sessions)]
    batched = [m.new_state() for _ in range(n_sessions)]
    # Session 2 starts later, so the batch mixes fill levels.
    for i in range(t):
        active = [s for s in range(n_sessions) if not (s == 2 and i < 7)]
        ref = [m.step(singles[s], streams[s][i]) for s in active]
        got = m.step_batch([batched[s] for s in active], [streams[s][i] for s in active])
        assert got == ref
    for a, b in zip(singles, batched, strict=True):
        torch.testing.assert_close(a.kv, b.kv, atol=1e-5, rtol=1e-5)
        assert (a.step, a.fill, a.last_token) == (b.step, b.fill, b.last_token)


def test_zero_token_steps_and_reset() -> None:
    m = _model()
    state = m.new_state()
    empty = np.zeros((0, 64), dtype=np.float32)
    first = [m.step(state, empty) for _ in range(5)]
    state.reset()
    assert state.step == 0 and state.fill == 0 and state.last_token == SIL_ID
    assert [m.step(state, empty) for _ in range(5)] == first


def test_step_rejects_bad_tokens_and_foreign_states() -> None:
    m = _model()
    with pytest.raises(ValueError, match=r"float32 \[N, 64\]"):
        m.step(m.new_state(), np.zeros((3, 32), dtype=np.float32))
    other = _model(CommentatorConfig(**{**TINY.__dict__, "window_positions": 20}))
    with pytest.raises(ValueError, match="new_state"):
        m.step(other.new_state(), np.zeros((0, 64), dtype=np.float32))
    s = m.new_state()
    with pytest.raises(ValueError, match="twice"):
        m.step_batch([s, s], [np.zeros((0, 64), np.float32)] * 2)


def test_choose_rules() -> None:
    m = _model()
    state = m.new_state()
    logits = torch.full((1, TINY.vocab_size), -10.0)
    logits[0, EOL_ID] = 5.0
    logits[0, 7] = 1.0
    assert m.choose([state], logits) == [7]  # no <eol> before any word
    assert m.choose([state], logits) == [EOL_ID]
    logits[0, SIL_ID] = 4.0
    m.cfg = CommentatorConfig(**{**TINY.__dict__, "silence_bias": 10.0})
    assert m.choose([state], logits) == [SIL_ID]


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    vocab = Vocab.build(["goal by red", "the blue team shoots", "a foul"])
    cfg = CommentatorConfig(**{**TINY.__dict__, "vocab_size": len(vocab)})
    m = _model(cfg)
    path = tmp_path / "c.pt"
    save_checkpoint(path, m, vocab, {"steps": 3})
    m2, v2, meta = load_checkpoint(path)
    assert v2 == vocab and meta == {"steps": 3} and m2.cfg == cfg
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    rt = CommentatorRuntime.load(path, silence_bias=-1.0)
    assert rt.model.cfg.silence_bias == -1.0
    s = rt.new_state()
    steps = _random_steps(20, seed=2)
    outs = [rt.step(s, a) for a in steps]
    assert all(isinstance(o, StepOutput) for o in outs)
    for o in outs:
        assert o.word is None or o.word in vocab.stoi
        assert not (o.word is not None and o.end_of_line)


def test_bad_checkpoints_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        CommentatorRuntime.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        CommentatorRuntime.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"hello": 1}, other)
    with pytest.raises(CheckpointError, match="not an MM-Duplex"):
        CommentatorRuntime.load(other)
    vocab = Vocab.build(["a b c d e f g h i j k l"])
    m = _model(CommentatorConfig(**{**TINY.__dict__, "vocab_size": len(vocab)}))
    good = tmp_path / "good.pt"
    save_checkpoint(good, m, vocab)
    ck = torch.load(good, weights_only=True)
    ck["state_dict"].pop("ln_f.weight")
    torch.save(ck, other)
    with pytest.raises(CheckpointError, match="invalid"):
        CommentatorRuntime.load(other)


def test_vocab_round_trip_and_encoding() -> None:
    v = Vocab.build(["Goal! Red scores.", "red team"])
    assert v.itos[:4] == ["<pad>", "<sil>", "<eol>", "<unk>"]
    ids = v.encode("GOAL, red... purple")
    assert v.decode(ids) == "goal red <unk>"
    assert Vocab.from_dict(v.to_dict()) == v
    with pytest.raises(ValueError):
        Vocab.from_dict({"tokens": ["a"]})

"""Unit tests of the duplex commentator (tiny Llama backbone, word codec, random tokens, CPU)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.lm.commentator import (
    CheckpointError,
    Commentator,
    CommentatorConfig,
    CommentatorRuntime,
    CommentatorState,
    LinePiece,
    StepBatch,
    build_commentator,
    load_checkpoint,
    save_checkpoint,
)
from models.lm.duplex import NO_TEXT, PositionSequence, build_sequence
from models.lm.text import WordCodec, spoken_ids
from models.lm.vocab import Vocab

TEXTS = ["Red passes it on", "blue shoots", "goal for red", "the camera pans left", "what a save"]
CODEC = WordCodec.build(TEXTS)
TINY = CommentatorConfig(
    d_model=32, n_layers=2, n_heads=2, pool_heads=2, dropout=0.0, sink_positions=2, window_positions=10
)
DIM = TINY.token_dim






def _model(cfg: CommentatorConfig = TINY, seed: int = 0, **changes: Any) -> Commentator:
    torch.manual_seed(seed)
    return build_commentator(replace(cfg, **changes), CODEC).eval()


def _random_steps(t: int, seed: int, nmax: int = 6) -> list[np.ndarray]:
    """``t`` steps of float32 [N, 64] tokens; every 4th step has none."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(t):
        n = 0 if i % 4 == 1 else int(rng.integers(0, nmax + 1))
        out.append(rng.normal(size=(n, DIM)).astype(np.float32))
    return out


def _pad(steps: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``(video_tokens [1, P, N, 64], token_mask [1, P, N])`` of one step per position."""
    nmax = max(1, max(a.shape[0] for a in steps))
    vt = torch.zeros(1, len(steps), nmax, DIM)
    vm = torch.zeros(1, len(steps), nmax, dtype=torch.bool)
    for i, a in enumerate(steps):
        vt[0, i, : a.shape[0]] = torch.from_numpy(a)
        vm[0, i, : a.shape[0]] = True
    return vt, vm


def _inputs(
    seq: PositionSequence, steps: list[np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward inputs of a position sequence (video rows only at frame positions)."""
    empty = np.zeros((0, DIM), np.float32)
    vt, vm = _pad([steps[t] if f else empty for t, f in zip(seq.step, seq.is_frame, strict=True)])
    return vt, vm, torch.from_numpy(seq.is_frame)[None], torch.from_numpy(seq.text_in)[None]


def _crop(seq: PositionSequence, n: int) -> PositionSequence:
    return PositionSequence(seq.step[:n], seq.is_frame[:n], seq.text_in[:n], seq.target[:n])


def _random_sequence(fmt: str, n_steps: int, seed: int) -> PositionSequence:
    """The first ``capacity`` positions of random per-step word ids (some silent steps)."""
    rng = np.random.default_rng(seed)
    k = 1 if fmt == "parallel" else 3
    words = list(range(4, CODEC.n_ids))
    per_step = [[int(rng.choice(words)) for _ in range(int(rng.integers(0, k + 1)))] for _ in range(n_steps)]
    return _crop(build_sequence(per_step, fmt, k=k, sil_id=CODEC.sil_id), TINY.capacity)


# ---------------------------------------------------------------------------
# Config, codec, construction
# ---------------------------------------------------------------------------


def test_word_codec_and_vocab_round_trip() -> None:
    v = Vocab.build(["Goal! Red scores.", "red team"])
    assert v.itos[:4] == ["<pad>", "<sil>", "<eol>", "<unk>"]
    ids = v.encode("GOAL, red... purple")
    assert v.decode(ids) == "goal red <unk>"
    assert Vocab.from_dict(v.to_dict()) == v
    with pytest.raises(ValueError, match="not a saved vocabulary"):
        Vocab.from_dict({"tokens": ["a"]})
    with pytest.raises(ValueError, match="must start with"):
        Vocab(["a", "b"])

    c = WordCodec(v)
    assert (c.base_vocab, c.n_ids, c.sil_id, c.eol_id) == (len(v), len(v), v.sil_id, v.eol_id)
    assert c.banned_ids() == [v.pad_id]
    assert c.encode("Red scores!") == [v.stoi["red"], v.stoi["scores"]]
    assert c.decode([*c.encode("red scores"), c.eol_id, c.sil_id]) == "red scores"
    c2 = WordCodec.from_dict(c.to_dict())
    assert c2.vocab == v and c.to_dict()["kind"] == "word"


def test_config_validation_and_construction() -> None:
    assert TINY.capacity == 12 and TINY.step_tokens == 4
    assert replace(TINY, duplex_format="parallel").step_tokens == 1
    cases: list[tuple[dict[str, Any], str]] = [
        ({"backbone": "gpt9"}, "unknown backbone"),
        ({"backbone": "hf"}, "backbone_path"),
        ({"duplex_format": "stacked"}, "unknown duplex_format"),
        ({"max_step_tokens": 0}, "max_step_tokens"),
        ({"window_positions": 4}, "window_positions"),
        ({"key_flag_index": 64}, "key_flag_index"),
        ({"dropout": 1.0}, "dropout"),
    ]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            replace(TINY, **bad).validate()
    with pytest.raises(ValueError, match="WordCodec"):
        build_commentator(TINY)
    m = _model()
    assert isinstance(m.codec, WordCodec) and m.extra_in.shape == (0, 32)  # silence is a vocabulary row
    assert m.trainable_names() == [n for n, _ in m.named_parameters()]  # the tiny backbone trains whole
    trainable, total = m.num_params()
    assert trainable == total > 0
    assert m.banned.tolist() == [i == CODEC.vocab.pad_id for i in range(CODEC.n_ids)]


# ---------------------------------------------------------------------------
# Full forward
# ---------------------------------------------------------------------------


def test_forward_shapes() -> None:
    m = _model()
    b, p, n = 3, 7, 5
    vt = torch.randn(b, p, n, DIM)
    vm = torch.rand(b, p, n) > 0.5
    vm[0, 0] = False  # a step without tokens
    is_frame = torch.rand(b, p) > 0.3
    text_in = torch.randint(0, CODEC.n_ids, (b, p))
    text_in[is_frame] = NO_TEXT
    logits = m(vt, vm, is_frame, text_in)
    assert logits.shape == (b, p, CODEC.n_ids) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_forward_rejects_bad_shapes_and_too_long_sequences() -> None:
    m = _model()
    p = TINY.capacity + 1
    with pytest.raises(ValueError, match="exceeds the KV cache capacity 12"):
        m(torch.zeros(1, p, 1, DIM), torch.zeros(1, p, 1, dtype=torch.bool), torch.ones(1, p, dtype=torch.bool),
          torch.full((1, p), NO_TEXT))
    with pytest.raises(ValueError, match="width 32"):
        m(torch.zeros(1, 2, 1, 32), torch.zeros(1, 2, 1, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool),
          torch.full((1, 2), NO_TEXT))
    with pytest.raises(ValueError, match=r"expected video_tokens \[B, P, N, 64\]"):
        m(torch.zeros(1, 2, 1, DIM), torch.zeros(1, 2, 2, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool),
          torch.full((1, 2), NO_TEXT))


@torch.no_grad()
def test_padding_and_non_frame_rows_do_not_change_logits() -> None:
    m = _model()
    seq = _random_sequence("interleaved", 6, seed=1)
    steps = _random_steps(6, seed=1)
    vt, vm, frame, text = _inputs(seq, steps)
    ref = m(vt, vm, frame, text)
    # Garbage in padded rows, and in the (unmasked!) rows of text positions.
    vt2 = torch.cat([vt, torch.randn(1, vt.shape[1], 3, DIM)], dim=2)
    vm2 = torch.cat([vm, torch.zeros(1, vt.shape[1], 3, dtype=torch.bool)], dim=2)
    vt2[0, ~frame[0]] = torch.randn_like(vt2[0, ~frame[0]])
    vm2[0, ~frame[0], 0] = True
    torch.testing.assert_close(m(vt2, vm2, frame, text), ref, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_pooler_is_a_set_function() -> None:
    m = _model()
    a = torch.randn(1, 1, 5, DIM)
    mask = torch.ones(1, 1, 5, dtype=torch.bool)
    perm = a[:, :, torch.tensor([3, 0, 4, 1, 2])]
    torch.testing.assert_close(m.pooler(perm, mask), m.pooler(a, mask), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["interleaved", "parallel"])
@torch.no_grad()
def test_streaming_feed_equals_full_forward(fmt: str) -> None:
    """Positions fed one by one through the bounded cache, with the inputs step() builds
    (one step's pooled video, or one text id), give forward()'s logits at every position."""
    m = _model(duplex_format=fmt)
    steps = _random_steps(12, seed=4)
    seq = _random_sequence(fmt, 12, seed=4)
    full = m(*_inputs(seq, steps))[0]  # (P, n_ids)
    state = m.new_state()
    got = []
    for i in range(len(seq)):
        text = torch.tensor([[int(seq.text_in[i])]])
        if seq.is_frame[i]:
            vt, vm = _pad([steps[int(seq.step[i])]])
            x = m.embed(vt, vm, torch.ones(1, 1, dtype=torch.bool), text)
        else:
            x = m.embed_text(text)
        got.append(m._feed([state], x)[0])
    torch.testing.assert_close(torch.stack(got), full, atol=1e-5, rtol=1e-5)
    assert state.positions == state.length == len(seq) == TINY.capacity


def _expected_choice(m: Commentator, logits: torch.Tensor, line: list[int]) -> int:
    """The decoding rules, restated: greedy, no banned id, silence bias, no empty line, long lines end."""
    c = m.codec
    if len(line) >= m.cfg.max_line_tokens:
        return c.eol_id
    logits = logits.masked_fill(m.banned, float("-inf"))
    logits[c.sil_id] += m.cfg.silence_bias
    if not line:
        logits[c.eol_id] = float("-inf")
    return int(logits.argmax())


def _half_silent_bias(m: Commentator, steps: list[np.ndarray]) -> float:
    """A silence bias at which this untrained model keeps silent at about half the positions."""
    seq = _random_sequence(m.cfg.duplex_format, len(steps), seed=0)
    logits = m(*_inputs(seq, steps))[0].masked_fill(m.banned, float("-inf"))
    sil = logits[:, m.codec.sil_id].clone()
    logits[:, m.codec.sil_id] = float("-inf")
    return float((logits.max(-1).values - sil).median())


@pytest.mark.parametrize("fmt", ["interleaved", "parallel"])
@torch.no_grad()
def test_step_decodes_greedily_what_forward_predicts(fmt: str) -> None:
    """step()'s ids, laid out as a duplex sequence, are forward()'s greedy choices."""
    m = _model(duplex_format=fmt, window_positions=70, max_line_tokens=3)
    steps = _random_steps(14, seed=6)
    m.cfg = replace(m.cfg, silence_bias=_half_silent_bias(m, steps))
    state = m.new_state()
    said = [m.step(state, a) for a in steps]
    assert state.steps == len(steps)
    sil, eol = m.codec.sil_id, m.codec.eol_id
    assert isinstance(m.codec, WordCodec)
    assert any(said) and not all(said)  # an untrained model both talks and keeps silent here
    for s in said:
        assert len(s) <= m.cfg.step_tokens
        assert all(0 <= i < m.codec.n_ids and i not in (sil, m.codec.vocab.pad_id) for i in s)

    # Rebuild the positions step() fed: per step the frame, then (interleaved) its ids.
    k = m.cfg.step_tokens
    seq = build_sequence(said, fmt, k=k, sil_id=sil)
    assert len(seq) == state.positions <= m.cfg.capacity
    logits = m(*_inputs(seq, steps))[0]
    line: list[int] = []
    pos = 0
    for s in said:
        chosen = [*s, sil] if len(s) < k else list(s)  # after k ids the step ends unasked
        for j, tok in enumerate(chosen):
            assert _expected_choice(m, logits[pos + j], line) == tok
            if tok != sil:
                line = [] if tok == eol else [*line, tok]
        pos += 1 if fmt == "parallel" else 1 + len(s)


@torch.no_grad()
def test_kv_cache_is_bounded_over_1000_steps() -> None:
    # Parallel format: one position per step (the cache works the same in both formats).
    m = _model(duplex_format="parallel")
    state = m.new_state()
    head_dim = TINY.d_model // TINY.n_heads
    per_position = 2 * TINY.n_layers * TINY.n_heads * head_dim * 4  # K and V, float32
    cap, evict = TINY.capacity, TINY.evict_positions
    rng = np.random.default_rng(0)
    talked = 0
    for i in range(1000):
        n = int(rng.integers(0, 5))
        said = m.step(state, rng.normal(size=(n, DIM)).astype(np.float32))
        assert len(said) <= 1 and all(0 <= t < CODEC.n_ids for t in said)
        talked += len(said)
        if i < cap:
            assert state.length == i + 1
        else:  # full: blocks of ``evict`` positions leave at once
            assert cap - evict < state.length <= cap
            assert state.length == cap - evict + 1 + (i - cap) % evict
        assert state.nbytes() == state.length * per_position <= cap * per_position
    assert talked > 0
    assert state.steps == state.positions == 1000
    assert int(state.cache.evictions[state.slot]) + state.length == 1000


def _streams_said_alone(
    fmt: str, n: int, seeds: list[int]
) -> tuple[Commentator, list[list[np.ndarray]], list[list[list[int]]]]:
    """A half-silent model, ``n`` steps of tokens per seed, and what each stream says
    stepped alone in its own cache."""
    m = _model(duplex_format=fmt, max_line_tokens=5)
    streams = [_random_steps(n, seed=seed) for seed in seeds]
    m.cfg = replace(m.cfg, silence_bias=_half_silent_bias(m, streams[0][:20]))
    alone = []
    for steps in streams:
        st = m.new_state()
        alone.append([m.step(st, a) for a in steps])
    return m, streams, alone


@pytest.mark.parametrize("fmt", ["interleaved", "parallel"])
@torch.no_grad()
def test_step_batch_equals_sessions_stepped_alone(fmt: str) -> None:
    """Sessions stepped together in one cache (joining late, skipping ticks, past the
    capacity, some talking and some silent) say exactly what each says stepped alone."""
    n = 2 * TINY.capacity
    m, streams, alone = _streams_said_alone(fmt, n, [20 + k for k in range(5)])
    assert any(any(s) for s in alone[0]) and not all(alone[0])
    cache = m.new_cache(slots=2)
    states: dict[int, CommentatorState] = {}
    got: list[list[list[int]]] = [[] for _ in streams]
    for t in range(3 * n):
        live = [k for k in range(5) if len(got[k]) < n and t >= 7 * k and (t + k) % 4]
        for k in live:
            if k not in states:
                states[k] = m.new_state(cache)
        said = m.step_batch([states[k] for k in live], [streams[k][len(got[k])] for k in live])
        for k, s in zip(live, said, strict=True):
            got[k].append(s)
    assert got == alone
    assert cache.slots == 8 and all(states[k].steps == n for k in states)
    with pytest.raises(ValueError, match="distinct sessions of one cache"):
        m.step_batch([states[0], m.new_state()], [streams[0][0]] * 2)
    with pytest.raises(ValueError, match="distinct sessions of one cache"):
        m.step_batch([states[0], states[0]], [streams[0][0]] * 2)
    with pytest.raises(ValueError, match="2 states but 1 token arrays"):
        m.step_batch([states[0], states[1]], [streams[0][0]])
    assert m.step_batch([], []) == []


@pytest.mark.parametrize("fmt", ["interleaved", "parallel"])
@torch.no_grad()
def test_steps_joining_a_running_batch_say_what_they_say_alone(fmt: str) -> None:
    """A StepBatch that other sessions' steps join between its rounds (while the first
    ones are still speaking) gives every session the text it says stepped alone."""
    n = TINY.capacity + 8
    m, streams, alone = _streams_said_alone(fmt, n, [40 + k for k in range(4)])
    cache = m.new_cache(slots=4)
    states = [m.new_state(cache) for _ in streams]
    got: list[list[list[int]]] = [[] for _ in streams]
    joined_mid_speech = 0
    for t in range(n):
        batch = StepBatch(m)
        handles = {batch.add(states[k], streams[k][t]): k for k in (0, 1)}
        said: dict[int, list[int]] = defaultdict(list)
        rounds = 0
        while not batch.done:
            for h, tok in batch.run_round():
                said[h].append(tok)
            rounds += 1
            if rounds == 1:  # session 2 joins after the first round, session 3 after the second
                joined_mid_speech += not batch.done
                handles[batch.add(states[2], streams[2][t])] = 2
            elif rounds == 2:
                handles[batch.add(states[3], streams[3][t])] = 3
        for h, k in handles.items():
            got[k].append(said[h])
    assert got == alone
    assert joined_mid_speech > 0 or fmt == "parallel"  # a parallel step is one round
    batch = StepBatch(m)
    batch.add(states[0], streams[0][0])
    with pytest.raises(ValueError, match="distinct sessions of one cache"):
        batch.add(states[0], streams[0][0])
    with pytest.raises(ValueError, match="distinct sessions of one cache"):
        batch.add(m.new_state(), streams[0][0])
    assert StepBatch(m).run_round() == []


@torch.no_grad()
def test_output_shortlist_keeps_the_choices_it_covers() -> None:
    """With a shortlist of every id the model says anyway, its text is unchanged; with a
    smaller one it only says shortlisted ids, and the logits of those are unchanged."""
    steps = _random_steps(60, seed=31)
    m = _model(max_line_tokens=5)
    m.cfg = replace(m.cfg, silence_bias=_half_silent_bias(m, steps[:20]))
    st = m.new_state()
    full = [m.step(st, a) for a in steps]
    said = sorted({i for ids in full for i in ids})
    assert len(said) >= 3
    hidden = torch.randn(3, TINY.d_model)
    before = m.logits(hidden, shortlisted=True)
    assert m.restrict_output([*said, CODEC.sil_id]) == len(set(said) | {CODEC.eol_id, CODEC.sil_id})
    st = m.new_state()
    assert [m.step(st, a) for a in steps] == full
    keep = [said[0], CODEC.sil_id]
    m.restrict_output(keep)
    assert torch.equal(m.logits(hidden), before)  # training and teacher forcing score every id
    after = m.logits(hidden, shortlisted=True)
    allowed = torch.zeros(CODEC.n_ids, dtype=torch.bool)
    allowed[[*keep, CODEC.eol_id]] = True
    assert torch.allclose(after[:, allowed], before[:, allowed], atol=1e-6)
    assert torch.isneginf(after[:, ~allowed]).all()
    st = m.new_state()
    assert {i for a in steps for i in m.step(st, a)} <= {said[0], CODEC.eol_id}
    with pytest.raises(ValueError, match="output ids must lie in"):
        m.restrict_output([CODEC.n_ids])


def test_spoken_ids_are_the_ids_of_the_lines_plus_silence_and_end_of_line() -> None:
    ids = spoken_ids(CODEC, ["blue shoots", "what a save"])
    words = [CODEC.vocab.stoi[w] for w in ("blue", "shoots", "what", "a", "save")]
    assert ids == sorted({*words, CODEC.sil_id, CODEC.eol_id})


@pytest.mark.parametrize("fmt", ["interleaved", "parallel"])
def test_decoding_rules(fmt: str) -> None:
    steps = _random_steps(20, seed=8)
    # A huge silence bias: always silent.
    m = _model(duplex_format=fmt, silence_bias=1e9)
    state = m.new_state()
    assert [m.step(state, a) for a in steps] == [[]] * len(steps)
    assert state.line == [] and state.last_token == m.codec.sil_id and state.positions == len(steps)

    # Never silent: every step says step_tokens ids; lines are never empty and end after 3 ids.
    m = _model(duplex_format=fmt, silence_bias=-1e9, max_line_tokens=3)
    state = m.new_state()
    said = [m.step(state, a) for a in steps]
    assert all(len(s) == m.cfg.step_tokens for s in said)
    ids = [i for s in said for i in s]
    eol = m.codec.eol_id
    lines: list[list[int]] = [[]]
    for i in ids:
        if i == eol:
            assert lines[-1], "end of line on an empty line"
            lines.append([])
        else:
            lines[-1].append(i)
            assert len(lines[-1]) <= 3
    assert all(len(ln) == 3 for ln in lines[:-1])  # with silence banned, only the length limit ends lines
    assert state.line == lines[-1]


def test_choose_rules_on_given_logits() -> None:
    m = _model()
    c = m.codec
    assert isinstance(c, WordCodec)
    state = m.new_state()
    logits = torch.full((c.n_ids,), -10.0)
    logits[c.eol_id], logits[c.vocab.pad_id], logits[5] = 5.0, 9.0, 1.0
    assert m._choose(state, logits) == 5  # pad is banned, no end of line before a word
    state.line = [5]
    assert m._choose(state, logits) == c.eol_id
    logits[c.sil_id] = 4.0
    m.cfg = replace(m.cfg, silence_bias=2.0)
    assert m._choose(state, logits) == c.sil_id
    state.line = [5] * m.cfg.max_line_tokens
    assert m._choose(state, logits) == c.eol_id  # a long line is ended whatever the logits


@torch.no_grad()
def test_zero_token_steps() -> None:
    m = _model()
    empty = np.zeros((0, DIM), dtype=np.float32)
    a, b = m.new_state(), m.new_state()
    first = [m.step(a, empty) for _ in range(8)]
    assert [m.step(b, empty) for _ in range(8)] == first  # deterministic, sessions independent
    assert a.steps == 8 and a.positions == 8 + sum(map(len, first))
    # An empty step feeds the learned "no tokens" vector: same as a masked-out padding row.
    vt = torch.randn(1, 1, 3, DIM)
    x0 = m.embed(*_pad([empty]), torch.ones(1, 1, dtype=torch.bool), torch.tensor([[NO_TEXT]]))
    x1 = m.embed(vt, torch.zeros(1, 1, 3, dtype=torch.bool), torch.ones(1, 1, dtype=torch.bool),
                 torch.tensor([[NO_TEXT]]))
    torch.testing.assert_close(x0, x1)
    # float64 input is accepted (converted).
    assert m.step(m.new_state(), np.zeros((2, DIM))) == m.step(m.new_state(), np.zeros((2, DIM), np.float32))


def test_step_rejects_malformed_tokens() -> None:
    m = _model()
    state = m.new_state()
    with pytest.raises(ValueError, match=r"expected float32 \[N, 64\] tokens, got float32 \[3, 32\]"):
        m.step(state, np.zeros((3, 32), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[N, 64\]"):
        m.step(state, np.zeros(64, dtype=np.float32))
    with pytest.raises(ValueError, match="got list"):
        m.step(state, [[0.0] * 64])  # type: ignore[arg-type]
    bad = np.zeros((2, DIM), np.float32)
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.step(state, bad)
    bad[1, 5] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        m.step(state, bad)
    assert state.steps == state.positions == state.length == 0  # nothing was fed


# ---------------------------------------------------------------------------
# Checkpoints and the runtime
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["interleaved", "parallel"])
def test_checkpoint_round_trip_and_runtime_pieces(tmp_path: Path, fmt: str) -> None:
    m = _model(duplex_format=fmt, max_line_tokens=3)
    path = tmp_path / "c.pt"
    save_checkpoint(path, m, {"steps": 3, "note": fmt})
    assert not path.with_name("c.pt.tmp").exists()
    m2, meta = load_checkpoint(path)
    assert meta == {"steps": 3, "note": fmt} and m2.cfg == m.cfg and not m2.training
    assert isinstance(m2.codec, WordCodec) and m2.codec.vocab == CODEC.vocab
    saved, loaded = m.state_dict(), m2.state_dict()
    assert saved.keys() == loaded.keys()
    for k in saved:
        assert torch.equal(saved[k], loaded[k]), k

    rt = CommentatorRuntime.load(path, silence_bias=-1e9)  # talks at every step
    assert rt.model.cfg.silence_bias == -1e9 and rt.meta == meta and rt.codec is rt.model.codec
    steps = _random_steps(25, seed=2)
    s_rt, s_ids = rt.new_state(), rt.new_state()
    assert isinstance(s_rt, CommentatorState)
    texts: list[str] = [""]
    ids: list[list[int]] = [[]]
    for x in steps:
        pieces = rt.step(s_rt, x)
        said = rt.model.step(s_ids, x)  # the same model on the same input: the same ids
        assert len(pieces) == len(said) >= 1 and all(isinstance(p, LinePiece) for p in pieces)
        for piece, tok in zip(pieces, said, strict=True):
            assert piece.end_of_line == (tok == rt.codec.eol_id)
            if piece.end_of_line:
                assert piece.text == ""
                texts.append("")
                ids.append([])
            else:
                assert piece.text and (piece.text.startswith(" ") == bool(ids[-1]))
                texts[-1] += piece.text
                ids[-1].append(tok)
    assert len(ids) > 2  # several lines
    assert texts == [rt.codec.decode(line) for line in ids]
    # step_batch: the same pieces for each session as stepping it alone; released slots are reused.
    a, b, a1, b1 = (rt.new_state() for _ in range(4))
    for x, y in zip(steps, steps[::-1], strict=True):
        assert rt.step_batch([a, b], [x, y]) == [rt.step(a1, x), rt.step(b1, y)]
    slot = a.slot
    a.release()
    assert rt.new_state().slot == slot


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

    good = tmp_path / "good.pt"
    save_checkpoint(good, _model())

    def broken(change: dict[str, object] | None = None, drop: str | None = None) -> Path:
        ck = torch.load(good, weights_only=True)
        ck.update(change or {})
        if drop is not None:
            ck["state_dict"].pop(drop)
        torch.save(ck, other)
        return other

    with pytest.raises(CheckpointError, match="version 1, expected 2"):
        load_checkpoint(broken({"version": 1}))
    with pytest.raises(CheckpointError, match="invalid.*missing.*pooler.query"):
        load_checkpoint(broken(drop="pooler.query"))
    with pytest.raises(CheckpointError, match="invalid.*unknown config fields"):
        load_checkpoint(broken({"config": {**torch.load(good, weights_only=True)["config"], "wings": 2}}))
    with pytest.raises(CheckpointError, match="invalid"):
        load_checkpoint(broken({"codec": {"kind": "hf"}}))  # tiny backbone without its vocabulary


def test_checkpoint_missing_a_trainable_backbone_key_is_invalid(tmp_path: Path) -> None:
    m = _model()
    key = "lm.model.layers.0.self_attn.q_proj.weight"
    assert key in m.trainable_names()
    path = tmp_path / "c.pt"
    save_checkpoint(path, m)
    ck = torch.load(path, weights_only=True)
    ck["state_dict"].pop(key)
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match="invalid"):
        load_checkpoint(path)  # loads instead, with that weight left at random initialisation


# ---------------------------------------------------------------------------
# Key views (pretrained encoder features next to the B-Flow tokens)
# ---------------------------------------------------------------------------

VIEW_DIM = 12


def _random_views(t: int, seed: int) -> list[np.ndarray | None]:
    """Key-view rows of ``t`` steps: every 3rd step has a view of 1 or 5 rows."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.choice([1, 5])), VIEW_DIM)).astype(np.float32) if i % 3 == 0 else None
            for i in range(t)]


@torch.no_grad()
def test_views_change_the_input_and_stream_as_forward_sees_them() -> None:
    """With a view projection, a step's view rows change its pooled input; streamed
    positions equal forward()'s logits with the same views; batched equals alone."""
    m = _model(view_dim=VIEW_DIM)
    steps, views = _random_steps(12, seed=5), _random_views(12, seed=5)
    seq = _random_sequence("interleaved", 12, seed=5)
    vt, vm, frame, text = _inputs(seq, steps)
    rows = []
    for t, f in zip(seq.step, seq.is_frame, strict=True):
        view = views[int(t)]
        rows.append(view if f and view is not None else np.zeros((0, VIEW_DIM), np.float32))
    kmax = max(r.shape[0] for r in rows)
    vv, vvm = torch.zeros(1, len(rows), kmax, VIEW_DIM), torch.zeros(1, len(rows), kmax, dtype=torch.bool)
    for i, r in enumerate(rows):
        vv[0, i, : len(r)], vvm[0, i, : len(r)] = torch.from_numpy(r), True
    full = m(vt, vm, frame, text, vv, vvm)[0]
    assert not torch.allclose(full, m(vt, vm, frame, text)[0])  # the views are seen
    state = m.new_state()
    got = []
    for i in range(len(seq)):
        tid = torch.tensor([[int(seq.text_in[i])]])
        if seq.is_frame[i]:
            x = m._video_inputs([(steps[int(seq.step[i])], views[int(seq.step[i])])], [int(seq.text_in[i])])
        else:
            x = m.embed_text(tid)
        got.append(m._feed([state], x)[0])
    torch.testing.assert_close(torch.stack(got), full, atol=1e-5, rtol=1e-5)

    cache = m.new_cache(slots=2)
    a, b = m.new_state(cache), m.new_state(cache)
    alone_a, alone_b = m.new_state(), m.new_state()
    for t in range(12):
        together = m.step_batch([a, b], [steps[t], steps[-1 - t]], [views[t], None])
        assert together == [m.step(alone_a, steps[t], views[t]), m.step(alone_b, steps[-1 - t])]


def test_views_of_the_wrong_width_are_refused_and_ignored_without_a_projection() -> None:
    m = _model(view_dim=VIEW_DIM)
    with pytest.raises(ValueError, match=f"expected float32 \\[K, {VIEW_DIM}\\] key-view rows"):
        m.step(m.new_state(), np.zeros((0, DIM), np.float32), np.zeros((2, VIEW_DIM + 1), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        m.step(m.new_state(), np.zeros((0, DIM), np.float32), np.full((1, VIEW_DIM), np.nan, np.float32))
    plain = _model()
    assert plain.check_views(np.zeros((2, 99), np.float32)) is None  # a model without views ignores them

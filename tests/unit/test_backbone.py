"""Backbones: the bounded KV cache on any RoPE causal LM, local loading, LoRA, and the
``hf`` commentator end to end (tiny random-config Llama and Qwen2 models, CPU)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from models.lm.backbone import BackboneError, add_lora, build_tiny_lm, load_pretrained_lm, quantize_int8, smollm2_dir
from models.lm.commentator import CommentatorConfig, build_commentator, load_checkpoint, save_checkpoint
from models.lm.kvcache import BoundedKVCache
from models.lm.text import HFCodec

WORDS = ["red", "blue", "passes", "shoots", "goal", "the", "camera", "pans", "left", "right", "a", "for"]
SPECIALS = ["<unk>", "<pad>", "</s>"]
SINK, WINDOW = 2, 10


def _word_tokenizer() -> PreTrainedTokenizerBase:
    """A word-level Hugging Face tokenizer: ids 0-2 are :data:`SPECIALS`, then :data:`WORDS`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(SPECIALS + WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def _qwen2_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer in the Qwen2 layout whose words " red", " blue"... are
    single tokens with the same ids as in :func:`_word_tokenizer`.

    transformers forces ``Qwen2Tokenizer`` on any folder whose config says ``qwen2``
    (whatever ``tokenizer_config.json`` declares), so a word-level tokenizer would not
    survive ``save_pretrained`` -> ``AutoTokenizer.from_pretrained`` there.
    """
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab = {t: i for i, t in enumerate(SPECIALS + ["\u0120" + w for w in WORDS])}  # \u0120 = "Ġ", a byte-level space
    merges: list[tuple[str, str]] = []
    for w in WORDS:
        prefix = "\u0120"
        vocab.setdefault(prefix, len(vocab))
        for c in w:
            vocab.setdefault(c, len(vocab))
            if (prefix, c) not in merges:
                merges.append((prefix, c))
            prefix += c
            vocab.setdefault(prefix, len(vocab))
    return Qwen2Tokenizer(vocab=vocab, merges=merges,  # type: ignore[arg-type]  # typed list[str]; BPE takes pairs
                          unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def _llama(vocab_size: int, n_layers: int, intermediate: int = 64) -> PreTrainedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=intermediate,
                      num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, tie_word_embeddings=False, eos_token_id=2, pad_token_id=1)
    return LlamaForCausalLM(cfg).eval()


def _qwen2(vocab_size: int, n_layers: int, intermediate: int = 64) -> PreTrainedModel:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=intermediate,
                      num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, tie_word_embeddings=True, eos_token_id=2, pad_token_id=1)
    return Qwen2ForCausalLM(cfg).eval()


def _tiny(vocab_size: int, n_layers: int) -> PreTrainedModel:
    return build_tiny_lm(vocab_size, d_model=32, n_layers=n_layers, n_heads=2, max_positions=SINK + WINDOW).eval()


LMS: dict[str, Callable[[int, int], PreTrainedModel]] = {"tiny-llama": _tiny, "qwen2": _qwen2}


# ---------------------------------------------------------------------------
# BoundedKVCache
# ---------------------------------------------------------------------------


def _feed(lm: PreTrainedModel, cache: BoundedKVCache, rows: list[int], x: torch.Tensor) -> torch.Tensor:
    """Feeds ``x`` [b, 1, d] as the next position of each slot in ``rows`` in one batch;
    returns their hidden states [b, d]."""
    position_ids, mask = cache.begin(rows)
    h = lm.base_model(inputs_embeds=x, position_ids=position_ids, attention_mask=mask,
                      cache=cache.cache, use_cache=True).last_hidden_state
    cache.end()
    return h[:, 0]


def _stream(lm: PreTrainedModel, cache: BoundedKVCache, x: torch.Tensor, slot: int = 0) -> torch.Tensor:
    """Feeds ``x`` [1, 1, d] as the next position of one slot; returns its hidden state [d]."""
    return _feed(lm, cache, [slot], x)[0]


def _full(lm: PreTrainedModel, x: torch.Tensor) -> torch.Tensor:
    """Hidden state [d] of the last of ``x`` [1, P, d] in a causal forward at positions 0..P-1."""
    return lm.base_model(inputs_embeds=x, use_cache=False).last_hidden_state[0, -1]


def _new_cache(lm: PreTrainedModel, slots: int = 1) -> tuple[BoundedKVCache, list[int]]:
    cache = BoundedKVCache(lm, sink=SINK, window=WINDOW, slots=slots)
    return cache, [cache.alloc() for _ in range(slots)]


@pytest.mark.parametrize("arch", list(LMS))
@torch.no_grad()
def test_bounded_cache_equals_full_forward_before_it_is_full(arch: str) -> None:
    torch.manual_seed(0)
    lm = LMS[arch](20, 2)
    cache, _ = _new_cache(lm)
    x = torch.randn(1, cache.capacity, lm.config.hidden_size)
    for i in range(cache.capacity):
        assert int(cache.lengths[0]) == i
        got = _stream(lm, cache, x[:, i : i + 1])
        torch.testing.assert_close(got, _full(lm, x[:, : i + 1]), atol=1e-5, rtol=0)
    assert int(cache.lengths[0]) == cache.capacity and int(cache.evictions[0]) == 0


@pytest.mark.parametrize("evict", [1, 4])
@pytest.mark.parametrize("arch", list(LMS))
@torch.no_grad()
def test_full_bounded_cache_equals_forward_over_sinks_plus_window(arch: str, evict: int) -> None:
    """Once full, the cache holds the sinks and the window re-rotated to contiguous
    positions, exactly what a fresh forward over those inputs computes (``evict`` window
    entries leave at once). With one layer each cached key/value depends only on its own
    input, so the equality is exact (up to the float rounding of the repeated
    re-rotation); deeper layers' entries also remember evicted context (StreamingLLM's
    approximation)."""
    torch.manual_seed(1)
    lm = LMS[arch](20, 1)
    cache = BoundedKVCache(lm, sink=SINK, window=WINDOW, evict=evict)
    cache.alloc()
    n = 5 * cache.capacity
    x = torch.randn(1, n, lm.config.hidden_size)
    for i in range(n):
        got = _stream(lm, cache, x[:, i : i + 1])
        window = int(cache.lengths[0]) - SINK
        assert i < cache.capacity or WINDOW - evict < window <= WINDOW
        keep = [*range(SINK), *range(i + 1 - window, i + 1)] if i >= cache.capacity else list(range(i + 1))
        torch.testing.assert_close(got, _full(lm, x[:, keep]), atol=2e-3, rtol=0, msg=f"position {i}")
    assert int(cache.evictions[0]) + int(cache.lengths[0]) == n


def _yarn_llama(vocab_size: int, n_layers: int) -> PreTrainedModel:
    """A Llama with YaRN RoPE scaling, whose cos/sin carry an attention factor != 1."""
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16}
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rope_parameters=rope)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(_tiny, id="tiny-llama"),
        pytest.param(_qwen2, id="qwen2"),
        pytest.param(_yarn_llama, id="llama-yarn"),
    ],
)
@torch.no_grad()
def test_full_bounded_cache_holds_the_keys_of_sinks_plus_window(build: Callable[[int, int], PreTrainedModel]) -> None:
    """After sliding, layer 0 holds exactly the keys and values that a fresh forward over
    the sink and window inputs caches at positions 0..C-1."""
    from transformers import DynamicCache

    torch.manual_seed(2)
    lm = build(20, 1)
    cache, _ = _new_cache(lm)
    n = 4 * cache.capacity
    x = torch.randn(1, n, lm.config.hidden_size)
    for i in range(n):
        _stream(lm, cache, x[:, i : i + 1])
    ref = DynamicCache()
    lm.base_model(inputs_embeds=x[:, [*range(SINK), *range(n - WINDOW, n)]], cache=ref, use_cache=True)
    layer = ref.layers[0]
    assert isinstance(layer, DynamicLayer) and layer.keys is not None and layer.values is not None
    torch.testing.assert_close(cache.keys(0), layer.keys[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cache.values(0), layer.values[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", list(LMS))
@torch.no_grad()
def test_batched_slots_equal_sessions_streamed_alone(arch: str) -> None:
    """Sessions of different lengths stepped together (all slots, a subset, slots added
    on the way, a freed slot reused) give the hidden states each gets streamed alone."""
    torch.manual_seed(3)
    lm = LMS[arch](20, 2)
    d = lm.config.hidden_size
    n = 3 * (SINK + WINDOW)
    xs = torch.randn(4, n, 1, d)
    alone = []
    for k in range(4):
        c, _ = _new_cache(lm)
        alone.append(torch.stack([_stream(lm, c, xs[k, i : i + 1]) for i in range(n)]))
    cache, slots = _new_cache(lm, slots=2)  # sessions 0 and 1; 2 and 3 join later (slots double)
    fed = [0, 0, 0, 0]
    for t in range(2 * n):
        live = [k for k in range(4) if fed[k] < n and (k < 2 or t >= 5 * k)]
        live = [k for k in live if (t + k) % 3 or k == 0]  # some sessions skip some ticks
        for k in live:
            if len(slots) <= k:
                slots.append(cache.alloc())
        if not live:
            continue
        h = _feed(lm, cache, [slots[k] for k in live], torch.cat([xs[k, fed[k] : fed[k] + 1] for k in live]))
        for row, k in enumerate(live):
            torch.testing.assert_close(h[row], alone[k][fed[k]], atol=2e-3, rtol=0, msg=f"session {k} pos {fed[k]}")
            fed[k] += 1
    assert fed == [n] * 4 and cache.slots == 4
    cache.free(slots[1])
    again = cache.alloc()
    assert again == slots[1] and int(cache.lengths[again]) == 0
    torch.testing.assert_close(_stream(lm, cache, xs[1, :1], again), alone[1][0], atol=1e-5, rtol=0)


@torch.no_grad()
def test_bounded_cache_memory_is_constant_after_filling() -> None:
    torch.manual_seed(0)
    lm = _qwen2(20, 2)
    cache, _ = _new_cache(lm)
    assert cache.nbytes(0) == 0
    d = lm.config.hidden_size
    for _ in range(cache.capacity):
        _stream(lm, cache, torch.randn(1, 1, d))
    # 2 (K, V) x layers x kv_heads x capacity x head_dim float32.
    full = 2 * 2 * 2 * cache.capacity * (32 // 4) * 4
    assert cache.nbytes(0) == full
    for _ in range(300):
        _stream(lm, cache, torch.randn(1, 1, d))
        assert int(cache.lengths[0]) == cache.capacity and cache.nbytes(0) == full
        assert all(layer.keys.shape[2] == cache.capacity for layer in cache._layers)
    assert int(cache.evictions[0]) == 300


def test_bounded_cache_argument_checks() -> None:
    lm = _tiny(20, 1)
    with pytest.raises(ValueError, match="sink >= 0"):
        BoundedKVCache(lm, sink=-1, window=WINDOW)
    with pytest.raises(ValueError, match="window >= 1"):
        BoundedKVCache(lm, sink=0, window=0)
    with pytest.raises(ValueError, match="slots >= 1"):
        BoundedKVCache(lm, sink=0, window=1, slots=0)
    with pytest.raises(ValueError, match="evict <= window"):
        BoundedKVCache(lm, sink=0, window=4, evict=5)


# ---------------------------------------------------------------------------
# Local pretrained backbones and LoRA
# ---------------------------------------------------------------------------

BUILDERS: dict[str, tuple[Callable[..., PreTrainedModel], Callable[[], PreTrainedTokenizerBase]]] = {
    "llama": (_llama, _word_tokenizer),
    "qwen2": (_qwen2, _qwen2_tokenizer),
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def hf_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny random Llama or Qwen2 (save_pretrained) and a word-level tokenizer.

    The MLP is wide so that the base weights clearly outweigh the commentator's own.
    """
    build_lm, build_tokenizer = BUILDERS[request.param]
    tok = build_tokenizer()
    torch.manual_seed(3)
    lm = build_lm(len(tok), 2, intermediate=512)
    d = tmp_path_factory.mktemp(f"hf-{request.param}")
    lm.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_load_pretrained_lm_errors(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="no backbone at"):
        load_pretrained_lm(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(BackboneError, match="cannot load the backbone"):
        load_pretrained_lm(bad)


def test_load_pretrained_lm_needs_rotary_embeddings(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _word_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(BackboneError, match="no rotary embedding"):
        load_pretrained_lm(tmp_path)


def test_load_pretrained_lm(hf_folder: Path) -> None:
    lm, tok = load_pretrained_lm(hf_folder)
    assert not lm.training
    assert len(tok) == lm.config.vocab_size and tok.eos_token_id == 2
    assert lm.config.hidden_size == 32 and lm.get_input_embeddings().weight.dtype == torch.float32
    assert lm.base_model.rotary_emb is not None
    assert tok.encode(" red passes", add_special_tokens=False) == [3, 5]


@torch.no_grad()
def test_add_lora_leaves_only_adapters_trainable(hf_folder: Path) -> None:
    lm, _ = load_pretrained_lm(hf_folder)
    ids = torch.tensor([[3, 4, 5, 6]])
    before = lm(ids).logits
    names = add_lora(lm, 4)
    trainable = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert names == trainable
    # A and B on q_proj and v_proj of each of the 2 layers.
    assert len(names) == 2 * 2 * 2 and all("lora_" in n for n in names)
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"}
    torch.testing.assert_close(lm(ids).logits, before)  # B starts at zero: same function

    lm0, _ = load_pretrained_lm(hf_folder)
    assert add_lora(lm0, 0) == []
    assert not any(p.requires_grad for p in lm0.parameters())


@torch.no_grad()
def test_quantize_int8_merges_lora_and_keeps_the_function(hf_folder: Path) -> None:
    """LoRA merged into the base weights, the blocks' linear layers int8: the same model
    up to quantization error, streaming through the bounded cache as before."""
    torch.manual_seed(0)
    lm, _ = load_pretrained_lm(hf_folder)
    add_lora(lm, 4)
    for name, p in lm.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.05)  # a trained adapter (B starts at zero)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    before = lm(ids).logits
    n = quantize_int8(lm)
    assert n == 2 * 7  # q, k, v, o, gate, up, down per layer, 2 layers
    assert not any("lora_" in name for name, _ in lm.named_modules())
    assert not any(isinstance(m, nn.Linear) for m in lm.base_model.get_submodule("layers").modules())
    after = lm(ids).logits
    assert F.cosine_similarity(after.flatten(), before.flatten(), dim=0) > 0.99
    cache = BoundedKVCache(lm, sink=SINK, window=WINDOW)
    cache.alloc()
    x = lm.get_input_embeddings()(ids)
    streamed = torch.stack([_stream(lm, cache, x[:, i : i + 1]) for i in range(ids.shape[1])])
    full = lm.base_model(inputs_embeds=x, use_cache=False).last_hidden_state[0]
    assert F.cosine_similarity(streamed.flatten(), full.flatten(), dim=0) > 0.99


# ---------------------------------------------------------------------------
# The "hf" commentator end to end
# ---------------------------------------------------------------------------


def _hf_config(folder: Path, **kw: Any) -> CommentatorConfig:
    return CommentatorConfig(backbone="hf", backbone_path=str(folder), lora_rank=4, pool_heads=2, dropout=0.0,
                             sink_positions=SINK, window_positions=WINDOW, **kw)


def _random_steps(t: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(0, 5)), 64)).astype(np.float32) for _ in range(t)]


def test_hf_codec(hf_folder: Path) -> None:
    _, tok = load_pretrained_lm(hf_folder)
    codec = HFCodec(tok)
    assert codec.base_vocab == len(tok) and codec.n_ids == len(tok) + 1
    assert codec.sil_id == len(tok) and codec.eol_id == tok.eos_token_id
    assert codec.banned_ids() == sorted([tok.unk_token_id, tok.pad_token_id])
    ids = codec.encode("Red PASSES, the camera!")
    assert ids == [3, 5, 8, 9]
    assert codec.decode([*ids, codec.eol_id, codec.sil_id]) == "red passes the camera"
    assert codec.encode("  ,. ") == []
    assert codec.to_dict() == {"kind": "hf"}


@pytest.mark.parametrize("fmt", ["interleaved", "parallel"])
def test_hf_commentator_streams_and_checkpoints(hf_folder: Path, tmp_path: Path, fmt: str) -> None:
    torch.manual_seed(0)
    model = build_commentator(_hf_config(hf_folder, duplex_format=fmt, silence_bias=-1e3)).eval()
    codec = model.codec
    assert isinstance(codec, HFCodec)
    assert codec.sil_id == codec.base_vocab == len(codec.tokenizer) == model.lm.config.vocab_size
    assert codec.eol_id == codec.tokenizer.eos_token_id == 2
    names = model.trainable_names()
    assert {n.split(".")[0] for n in names} == {"lm", "pooler", "extra_in", "extra_out"}
    assert all("lora_" in n for n in names if n.startswith("lm."))
    assert model.extra_in.shape == model.extra_out.shape == (1, 32)

    # Make every trainable tensor non-trivial (LoRA B and extra_out start at zero).
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)

    # Streaming past the cache capacity; the negative silence bias makes it talk.
    steps = _random_steps(3 * model.cfg.capacity, seed=1)
    state = model.new_state()
    said = [model.step(state, a) for a in steps]
    banned = set(codec.banned_ids()) | {codec.sil_id}
    assert all(0 <= i < codec.n_ids and i not in banned for s in said for i in s)
    assert all(1 <= len(s) <= model.cfg.step_tokens for s in said)
    assert state.length == model.cfg.capacity and state.steps == len(steps)

    # The checkpoint holds no base weight: much smaller than the base safetensors.
    path = tmp_path / "hf.pt"
    save_checkpoint(path, model, {"note": fmt})
    ck = torch.load(path, weights_only=True)
    assert all("lora_" in k for k in ck["state_dict"] if k.startswith("lm."))
    assert path.stat().st_size < (hf_folder / "model.safetensors").stat().st_size / 4

    loaded, meta = load_checkpoint(path)
    assert meta == {"note": fmt} and loaded.cfg == model.cfg and isinstance(loaded.codec, HFCodec)
    assert loaded.trainable_names() == names
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:  # trainable tensors restored, frozen ones reloaded from the folder
        assert torch.equal(a[k], b[k]), k
    state2 = loaded.new_state()
    assert [loaded.step(state2, x) for x in steps] == said


def test_smollm2_two_streaming_steps() -> None:
    if not (smollm2_dir() / "model.safetensors").is_file():
        pytest.skip(f"SmolLM2-135M not converted at {smollm2_dir()} (run `mmduplex fetch-models`)")
    from models.training.train import backbone_config

    torch.manual_seed(0)
    model = build_commentator(backbone_config("smollm2-135m")).eval()
    assert isinstance(model.codec, HFCodec) and model.codec.sil_id == model.codec.base_vocab
    trainable, total = model.num_params()
    assert 0 < trainable < total / 10
    state = model.new_state()
    for a in _random_steps(2, seed=0):
        said = model.step(state, a)
        assert len(said) <= model.cfg.step_tokens
        assert all(0 <= i < model.codec.n_ids for i in said)
    assert state.steps == 2 and state.positions >= 2

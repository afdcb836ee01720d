"""The duplex commentator: a small causal transformer that watches and talks at once.

One position per model step (5 Hz). Two parallel streams are summed into the input of
each position (Moshi-style, Défossez et al. 2024, "Moshi: a speech-text foundation
model for real-time dialogue"):

* video: the B-Flow tokens of step ``t`` (``float32 [N_t, 64]``, ``N_t`` varies and may
  be 0), fused by :class:`VideoPooler` (attention pooling with a learned query);
* text: the embedding of the token the model itself emitted at step ``t - 1``
  (``<sil>`` before the first step).

The output of step ``t`` is a distribution over the vocabulary: the next word of the
current line, ``<sil>`` (say nothing now) or ``<eol>`` (the line ends). The model
decides by itself when to speak (the streaming-EOS idea of VideoLLM-online, Chen et
al. 2024).

Endless streams with constant memory: the per-session KV cache holds
``sink_positions + window_positions`` entries. Once full, the first
``sink_positions`` entries stay forever (attention sinks) and the others form a ring
of the most recent ``window_positions`` steps (StreamingLLM, Xiao et al. 2023,
"Efficient Streaming Language Models with Attention Sinks", §3.2; StreamingVLM, Xu et
al. 2025). As in StreamingLLM, RoPE positions are the positions *within the cache*
(sinks ``0..S-1``, then the window in time order ``S..C-1``), not the positions in
the original stream: keys are cached *before* rotation and rotated at attention time
(StreamingLLM §3.2, "Positional encoding": "we cache the Keys prior to introducing the
rotary transformation. Then, we apply position transformation to the keys in the
rolling cache at each decoding phase"). Training sequences are at most ``capacity``
steps long, so a full cache looks exactly like a training sequence to the model.

Layout follows nanoGPT (config dataclass on top, shapes in comments) and Moshi's
explicit per-session streaming state with ``reset()``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.vocab import SPECIALS, Vocab
from streams.errors import ModelError

__all__ = [
    "CheckpointError",
    "Commentator",
    "CommentatorConfig",
    "CommentatorRuntime",
    "CommentatorState",
    "StepOutput",
    "VideoPooler",
    "load_checkpoint",
    "save_checkpoint",
]

PAD_ID = SPECIALS.index("<pad>")
SIL_ID = SPECIALS.index("<sil>")
EOL_ID = SPECIALS.index("<eol>")
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class CommentatorConfig:
    """Hyperparameters of the commentator (saved in the checkpoint)."""

    vocab_size: int = 128  # V: specials + words (taken from the Vocab)
    token_dim: int = 64  # width of one B-Flow token (bflow.TOKEN_DIM)
    key_flag_index: int = 0  # token feature that is 1 on key-view tokens (bflow token layout)
    n_count_features: int = 5  # per-step count features (see count_features())
    d_model: int = 128  # residual stream width
    n_layers: int = 4  # transformer blocks
    n_heads: int = 4  # attention heads per block (head_dim = d_model // n_heads)
    mlp_ratio: int = 4  # hidden width of the MLP = mlp_ratio * d_model
    pool_heads: int = 4  # heads of the attention pooling over one step's tokens
    dropout: float = 0.1  # dropout on embeddings, attention output and MLP (train)
    rope_base: float = 10000.0  # RoPE base frequency
    sink_positions: int = 4  # attention-sink entries kept forever in the KV cache
    window_positions: int = 124  # most recent steps kept in the KV cache (ring)
    silence_bias: float = 0.0  # added to the <sil> logit when decoding; > 0 talks less
    max_line_words: int = 24  # decoding forces <eol> after this many words in a line

    @property
    def capacity(self) -> int:
        """KV cache entries per session (= longest training sequence)."""
        return self.sink_positions + self.window_positions

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def validate(self) -> None:
        """Checks internal consistency.

        Raises:
            ValueError: If a field is out of range or widths do not divide.
        """
        if self.d_model % self.n_heads or self.head_dim % 2:
            raise ValueError(
                f"d_model={self.d_model} must split into n_heads={self.n_heads} "
                "heads of even width"
            )
        if self.d_model % self.pool_heads:
            raise ValueError(f"d_model={self.d_model} not divisible by pool_heads")
        if self.vocab_size <= len(SPECIALS):
            raise ValueError(f"vocab_size must exceed {len(SPECIALS)} specials")
        if not 0 <= self.key_flag_index < self.token_dim:
            raise ValueError(f"key_flag_index {self.key_flag_index} outside token_dim {self.token_dim}")
        if self.sink_positions < 0 or self.window_positions < 1:
            raise ValueError("need sink_positions >= 0 and window_positions >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def count_features(counts: torch.Tensor, key_counts: torch.Tensor) -> torch.Tensor:
    """Simple per-step features of the token set: how much happened, and how.

    Args:
        counts: float32 ``[S]`` tokens per step.
        key_counts: float32 ``[S]`` key-view tokens per step.

    Returns:
        float32 ``[S, 5]``: ``log1p(N)``, ``1[N > 0]``, ``log1p(N_key)``,
        ``1[N_key > 0]`` (a key view is present: cut, flash, first frame) and
        ``log1p(N - N_key)`` (flow tokens: how much moves).
    """
    return torch.stack(
        [
            torch.log1p(counts),
            (counts > 0).to(counts.dtype),
            torch.log1p(key_counts),
            (key_counts > 0).to(counts.dtype),
            torch.log1p(counts - key_counts),
        ],
        -1,
    )


class VideoPooler(nn.Module):
    """Fuses one step's variable-size set of B-Flow tokens into one vector.

    Each token goes through ``Linear(token_dim -> d)``; a learned query per pooling
    head attends over the step's tokens (softmax over that step's tokens only);
    steps with no token get a learned "no tokens" vector instead. Count features
    (:func:`count_features`) are projected and added.

    The tokens are packed (padding rows dropped) before any work, so the cost is
    proportional to the real number of tokens, not to ``B * T * Nmax``.
    """

    def __init__(self, cfg: CommentatorConfig) -> None:
        super().__init__()
        d, h = cfg.d_model, cfg.pool_heads
        self.h, self.hd = h, d // h
        self.inp = nn.Linear(cfg.token_dim, d)
        self.ln = nn.LayerNorm(d)
        self.kv = nn.Linear(d, 2 * d)
        self.query = nn.Parameter(torch.randn(h, self.hd) * 0.02)
        self.out = nn.Linear(d, d)
        self.empty = nn.Parameter(torch.zeros(d))
        self.count = nn.Linear(cfg.n_count_features, d)
        self.key_flag_index = cfg.key_flag_index

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """Pools each step's tokens.

        Args:
            tokens: float32 ``[B, T, N, token_dim]`` (``N >= 1``; padded rows masked).
            token_mask: bool ``[B, T, N]``, True for real tokens.

        Returns:
            float32 ``[B, T, d_model]``.
        """
        b, t, n, dim = tokens.shape
        s = b * t
        flat_mask = token_mask.reshape(s, n)
        seg = flat_mask.nonzero(as_tuple=True)[0]  # (M,) step index of each real token
        packed = tokens.reshape(s, n, dim)[flat_mask]  # (M, token_dim)
        counts = flat_mask.sum(-1).to(tokens.dtype)  # (S,)
        is_key = (packed[:, self.key_flag_index] > 0.5).to(tokens.dtype)  # (M,)
        key_counts = torch.zeros(s, dtype=tokens.dtype, device=tokens.device).index_add(0, seg, is_key)
        feats = count_features(counts, key_counts)  # (S, 5)

        x = self.ln(F.gelu(self.inp(packed)))  # (M, d)
        k, v = self.kv(x).split(self.h * self.hd, dim=-1)
        k = k.view(-1, self.h, self.hd)  # (M, ph, hd)
        v = v.view(-1, self.h, self.hd)
        scores = (k * self.query).sum(-1) / math.sqrt(self.hd)  # (M, ph)
        # Segment softmax over each step's tokens (max subtracted for stability).
        idx = seg[:, None].expand(-1, self.h)
        smax = torch.full((s, self.h), float("-inf"), dtype=scores.dtype, device=scores.device)
        smax = smax.scatter_reduce(0, idx, scores.detach(), reduce="amax", include_self=True)
        e = torch.exp(scores - smax[seg])  # (M, ph)
        denom = torch.zeros(s, self.h, dtype=e.dtype, device=e.device).index_add(0, seg, e)
        w = e / denom[seg]  # (M, ph)
        pooled = torch.zeros(s, self.h, self.hd, dtype=v.dtype, device=v.device)
        pooled = pooled.index_add(0, seg, w[..., None] * v).reshape(s, -1)  # (S, d)
        pooled = self.out(pooled)
        has = counts > 0
        pooled = torch.where(has[:, None], pooled, self.empty.expand_as(pooled))
        return (pooled + self.count(feats)).view(b, t, -1)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, base: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE angles for integer positions (Su et al. 2021, "RoFormer").

    Args:
        positions: int64 ``[...]`` positions.
        head_dim: Even head width.
        base: Base frequency.

    Returns:
        ``(cos, sin)``, each float32 ``[..., head_dim]`` (the two halves repeated).
    """
    inv_freq = 1.0 / (
        base
        ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    ang = positions.to(torch.float32)[..., None] * inv_freq  # (..., hd/2)
    ang = torch.cat([ang, ang], dim=-1)  # (..., hd)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates ``x`` (rotate-half convention).

    Args:
        x: float32 ``[..., head_dim]``.
        cos: float32, broadcastable to ``x``.
        sin: float32, broadcastable to ``x``.

    Returns:
        float32, same shape as ``x``.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: CommentatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        h, hd = self.cfg.n_heads, self.cfg.head_dim
        q, k, v = self.qkv(x).split(self.cfg.d_model, dim=-1)
        # each (B, H, T, hd)
        return (
            q.view(b, t, h, hd).transpose(1, 2),
            k.view(b, t, h, hd).transpose(1, 2),
            v.view(b, t, h, hd).transpose(1, 2),
        )

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Full causal attention (training).

        Args:
            x: float32 ``[B, T, d]``.
            cos: float32 ``[T, hd]`` RoPE for positions ``0..T-1``.
            sin: float32 ``[T, hd]``.

        Returns:
            float32 ``[B, T, d]``.
        """
        b, t, d = x.shape
        q, k, v = self._split(x)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.cfg.dropout if self.training else 0.0
        )  # (B, H, T, hd)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))

    def step(
        self,
        x: torch.Tensor,
        kv: torch.Tensor,
        slot: torch.Tensor,
        q_cos: torch.Tensor,
        q_sin: torch.Tensor,
        k_cos: torch.Tensor,
        k_sin: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One streaming step over a batch of per-session caches.

        Args:
            x: float32 ``[B, 1, d]`` input of the new position.
            kv: float32 ``[B, 2, H, C, hd]`` this layer's cache (keys *unrotated*);
                the new entry is written at ``slot`` in place.
            slot: int64 ``[B]`` cache slot of the new entry.
            q_cos: float32 ``[B, 1, 1, hd]`` RoPE of the query position.
            q_sin: float32 ``[B, 1, 1, hd]``.
            k_cos: float32 ``[B, 1, C, hd]`` RoPE of each slot's position in the cache.
            k_sin: float32 ``[B, 1, C, hd]``.
            valid: bool ``[B, 1, 1, C]``, True for filled slots (incl. the new one).

        Returns:
            ``(y, new_kv)``: float32 ``[B, 1, d]`` output and float32
            ``[B, 2, H, hd]`` the new (unrotated) key and value.
        """
        b = x.shape[0]
        q, k, v = self._split(x)  # (B, H, 1, hd)
        new_kv = torch.stack([k[:, :, 0], v[:, :, 0]], dim=1)  # (B, 2, H, hd)
        bi = torch.arange(b, device=x.device)
        kv[bi, :, :, slot] = new_kv  # advanced indexing -> (B, 2, H, hd) at each slot
        keys = apply_rope(kv[:, 0], k_cos, k_sin)  # (B, H, C, hd)
        q = apply_rope(q, q_cos, q_sin)
        y = F.scaled_dot_product_attention(q, keys, kv[:, 1], attn_mask=valid)
        return self.proj(y.transpose(1, 2).reshape(b, 1, -1)), new_kv


class MLP(nn.Module):
    def __init__(self, cfg: CommentatorConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, cfg: CommentatorConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cos, sin)
        return x + self.mlp(self.ln2(x))


# ---------------------------------------------------------------------------
# Streaming state
# ---------------------------------------------------------------------------


@dataclass
class CommentatorState:
    """Streaming state of one session (one live stream); constant size forever.

    Attributes:
        kv: float32 ``[layers, 2, heads, capacity, head_dim]`` preallocated KV cache;
            keys are stored *before* RoPE. Slots ``0..sink-1`` hold the first steps
            of the session (attention sinks); slots ``sink..capacity-1`` are a ring
            of the most recent ``window`` steps.
        sink_positions: Number of sink slots (from the config).
        fill: Filled slots, ``min(step, capacity)``.
        step: Model steps taken since the last reset (also: entries ever written).
        last_token: Token emitted at the previous step (``<sil>`` after a reset);
            it is the text-stream input of the next step.
        line_words: Words emitted since the last ``<eol>`` (for ``max_line_words``).
    """

    kv: torch.Tensor
    sink_positions: int
    fill: int = 0
    step: int = 0
    last_token: int = SIL_ID
    line_words: int = 0

    @property
    def capacity(self) -> int:
        return int(self.kv.shape[3])

    @property
    def window_positions(self) -> int:
        return self.capacity - self.sink_positions

    def reset(self) -> None:
        """Forgets the session's history (the cache memory is kept and reused)."""
        self.kv.zero_()
        self.fill = 0
        self.step = 0
        self.last_token = SIL_ID
        self.line_words = 0

    def next_slot(self) -> int:
        """Cache slot the next entry (entry number ``step``) is written to."""
        n, s, c = self.step, self.sink_positions, self.capacity
        return n if n < c else s + (n - s) % (c - s)

    def slot_positions(self) -> tuple[torch.Tensor, int]:
        """RoPE positions of every slot *after* the next entry is written.

        Returns:
            ``(positions, query_pos)``: int64 ``[capacity]`` position of each slot
            within the cache (sinks ``0..S-1``, window in time order ``S..C-1``;
            unfilled slots get their own index and are masked anyway) and the
            position of the new entry.
        """
        n1, s, c = self.step + 1, self.sink_positions, self.capacity  # entries after write
        pos = torch.arange(c)
        if n1 <= c:
            return pos, n1 - 1
        w = c - s
        oldest_slot = s + (n1 - w - s) % w  # slot of the oldest window entry
        pos[s:] = s + (torch.arange(s, c) - oldest_slot) % w
        return pos, c - 1

    def nbytes(self) -> int:
        """Bytes held by the cache (constant for the life of the session)."""
        return self.kv.numel() * self.kv.element_size()


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


class Commentator(nn.Module):
    """The duplex commentator (see module docstring)."""

    def __init__(self, cfg: CommentatorConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.pooler = VideoPooler(cfg)
        self.text_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.text_emb.weight  # weight tying (as nanoGPT)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith("proj.weight") and "pooler" not in name:
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Number of parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    # -- training ---------------------------------------------------------

    def forward(
        self, video_tokens: torch.Tensor, token_mask: torch.Tensor, prev_text: torch.Tensor
    ) -> torch.Tensor:
        """Full-sequence forward pass with a causal mask (training, evaluation).

        Args:
            video_tokens: float32 ``[B, T, Nmax, token_dim]`` B-Flow tokens per step,
                padded to ``Nmax >= 1``.
            token_mask: bool ``[B, T, Nmax]``, True for real tokens.
            prev_text: int64 ``[B, T]``, the text token emitted at step ``t - 1``
                (``<sil>`` at ``t = 0``).

        Returns:
            float32 ``[B, T, V]`` logits of the token emitted at each step.

        Raises:
            ValueError: If shapes disagree or ``T`` exceeds the cache capacity.
        """
        b, t, n, dim = video_tokens.shape
        if token_mask.shape != (b, t, n) or prev_text.shape != (b, t) or dim != self.cfg.token_dim:
            raise ValueError(
                f"expected video_tokens [B, T, N, {self.cfg.token_dim}], token_mask [B, T, N],"
                f" prev_text [B, T]; got {list(video_tokens.shape)}, "
                f"{list(token_mask.shape)}, {list(prev_text.shape)}"
            )
        if t > self.cfg.capacity:
            raise ValueError(
                f"sequence of {t} steps exceeds the KV cache capacity {self.cfg.capacity}"
                " (train on sequences no longer than sink_positions + window_positions)"
            )
        x = self.pooler(video_tokens, token_mask) + self.text_emb(prev_text)  # (B, T, d)
        x = self.drop(x)
        cos, sin = rope_cos_sin(
            torch.arange(t, device=x.device), self.cfg.head_dim, self.cfg.rope_base
        )  # (T, hd)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.ln_f(x))  # (B, T, V)

    # -- streaming --------------------------------------------------------

    def new_state(self) -> CommentatorState:
        """A fresh per-session state with a preallocated KV cache."""
        c = self.cfg
        p = next(self.parameters())
        kv = torch.zeros(
            c.n_layers, 2, c.n_heads, c.capacity, c.head_dim, dtype=p.dtype, device=p.device
        )
        return CommentatorState(kv=kv, sink_positions=c.sink_positions)

    def _check_tokens(self, tokens: np.ndarray) -> np.ndarray:
        if not isinstance(tokens, np.ndarray) or tokens.ndim != 2 or (
            tokens.shape[1] != self.cfg.token_dim
        ):
            desc = (
                f"{tokens.dtype} {list(tokens.shape)}"
                if isinstance(tokens, np.ndarray)
                else type(tokens).__name__
            )
            raise ValueError(f"expected float32 [N, {self.cfg.token_dim}] tokens, got {desc}")
        return tokens.astype(np.float32, copy=False)

    @torch.no_grad()
    def advance(
        self,
        states: list[CommentatorState],
        tokens: list[np.ndarray],
        prev_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Runs one model step for a batch of sessions and returns raw logits.

        Writes the new KV entries into each state and advances ``step``/``fill``;
        does not choose a token (see :meth:`step_batch`).

        Args:
            states: One state per session (distinct objects).
            tokens: One float32 ``[N_b, token_dim]`` array per session (``N_b`` may
                be 0).
            prev_text: int64 ``[B]`` text input of this step; defaults to each
                state's ``last_token`` (teacher forcing passes it explicitly).

        Returns:
            float32 ``[B, V]`` logits (before ``silence_bias``).

        Raises:
            ValueError: On mismatched lengths, malformed token arrays, or a state made
                for another model configuration.
        """
        if len(states) != len(tokens) or not states:
            raise ValueError(f"need one token array per state, got {len(tokens)} for {len(states)}")
        if len({id(s) for s in states}) != len(states):
            raise ValueError("the same state appears twice in one batch")
        cfg = self.cfg
        dev = next(self.parameters()).device
        shape = (cfg.n_layers, 2, cfg.n_heads, cfg.capacity, cfg.head_dim)
        for st in states:
            if tuple(st.kv.shape) != shape or st.sink_positions != cfg.sink_positions:
                raise ValueError(
                    f"state has a KV cache {list(st.kv.shape)} with {st.sink_positions} sinks, this "
                    f"model needs {list(shape)} with {cfg.sink_positions} (use model.new_state())"
                )
        arrs = [self._check_tokens(t) for t in tokens]
        b = len(states)
        nmax = max(1, max(a.shape[0] for a in arrs))
        vt = np.zeros((b, 1, nmax, cfg.token_dim), dtype=np.float32)
        vm = np.zeros((b, 1, nmax), dtype=bool)
        for i, a in enumerate(arrs):
            vt[i, 0, : a.shape[0]] = a
            vm[i, 0, : a.shape[0]] = True
        if prev_text is None:
            prev_text = torch.tensor([s.last_token for s in states], dtype=torch.long)
        prev_text = prev_text.to(device=dev, dtype=torch.long).view(b, 1)

        x = self.pooler(torch.from_numpy(vt).to(dev), torch.from_numpy(vm).to(dev))
        x = x + self.text_emb(prev_text)  # (B, 1, d)

        slots = torch.tensor([s.next_slot() for s in states], dtype=torch.long, device=dev)
        pos_q = []
        pos_k = []
        for s in states:
            pk, pq = s.slot_positions()
            pos_k.append(pk)
            pos_q.append(pq)
        pos_k_t = torch.stack(pos_k).to(dev)  # (B, C)
        pos_q_t = torch.tensor(pos_q, dtype=torch.long, device=dev)  # (B,)
        k_cos, k_sin = rope_cos_sin(pos_k_t, cfg.head_dim, cfg.rope_base)  # (B, C, hd)
        q_cos, q_sin = rope_cos_sin(pos_q_t, cfg.head_dim, cfg.rope_base)  # (B, hd)
        k_cos, k_sin = k_cos[:, None], k_sin[:, None]  # (B, 1, C, hd)
        q_cos, q_sin = q_cos[:, None, None], q_sin[:, None, None]  # (B, 1, 1, hd)
        fills = torch.tensor([min(s.step + 1, s.capacity) for s in states], device=dev)
        valid = torch.arange(cfg.capacity, device=dev)[None, :] < fills[:, None]  # (B, C)
        valid = valid[:, None, None, :]  # (B, 1, 1, C)

        # (B, L, 2, H, C, hd): a view for one session, a copy for a batch.
        kv = states[0].kv.unsqueeze(0) if b == 1 else torch.stack([s.kv for s in states])
        for li, block in enumerate(self.blocks):
            y, new_kv = block.attn.step(
                block.ln1(x), kv[:, li], slots, q_cos, q_sin, k_cos, k_sin, valid
            )
            x = x + y
            x = x + block.mlp(block.ln2(x))
            if b > 1:
                for i, s in enumerate(states):
                    s.kv[li, :, :, int(slots[i])] = new_kv[i]
        logits = self.head(self.ln_f(x))[:, 0]  # (B, V)
        for s in states:
            s.step += 1
            s.fill = min(s.step, s.capacity)
        return logits

    def choose(self, states: list[CommentatorState], logits: torch.Tensor) -> list[int]:
        """Greedy decision per session; updates ``last_token``/``line_words``.

        ``<pad>`` is never emitted, ``<eol>`` only ends a non-empty line, and a line
        of ``max_line_words`` words is ended with ``<eol>``.

        Args:
            states: The sessions (same order as ``logits``).
            logits: float32 ``[B, V]`` from :meth:`advance`.

        Returns:
            The emitted token id per session.
        """
        logits = logits.clone()
        logits[:, SIL_ID] += self.cfg.silence_bias
        logits[:, PAD_ID] = float("-inf")
        out = []
        for i, s in enumerate(states):
            row = logits[i]
            if s.line_words == 0:
                row[EOL_ID] = float("-inf")
            tok = EOL_ID if s.line_words >= self.cfg.max_line_words else int(row.argmax())
            if tok in (SIL_ID, EOL_ID):
                s.line_words = 0 if tok == EOL_ID else s.line_words
            else:
                s.line_words += 1
            s.last_token = tok
            out.append(tok)
        return out

    @torch.no_grad()
    def step_batch(self, states: list[CommentatorState], tokens: list[np.ndarray]) -> list[int]:
        """One model step for many sessions at once (one batched forward pass).

        Args:
            states: One state per session (distinct objects).
            tokens: One float32 ``[N_b, token_dim]`` B-Flow token array per session.

        Returns:
            The emitted token id per session (a word, ``<sil>`` or ``<eol>``).

        Raises:
            ValueError: On mismatched lengths or malformed token arrays.
        """
        return self.choose(states, self.advance(states, tokens))

    @torch.no_grad()
    def step(self, state: CommentatorState, tokens: np.ndarray) -> int:
        """One model step for one session.

        Args:
            state: The session's state (updated in place).
            tokens: float32 ``[N, token_dim]`` B-Flow tokens of this step (N may be 0).

        Returns:
            The emitted token id (a word, ``<sil>`` or ``<eol>``).

        Raises:
            ValueError: If ``tokens`` is not a ``[N, token_dim]`` array.
        """
        return self.step_batch([state], [tokens])[0]


# ---------------------------------------------------------------------------
# Checkpoints and the runtime wrapper used by the actors
# ---------------------------------------------------------------------------


class CheckpointError(ModelError):
    """A commentator checkpoint is missing, unreadable or inconsistent."""


def save_checkpoint(
    path: Path, model: Commentator, vocab: Vocab, meta: dict[str, Any] | None = None
) -> None:
    """Saves model + vocabulary as one ``.pt`` file (written atomically).

    Args:
        path: Destination file.
        model: The model.
        vocab: Its vocabulary (``len(vocab) == model.cfg.vocab_size``).
        meta: JSON-like metadata (metrics, training time, data description).

    Raises:
        ValueError: If the vocabulary does not match the model.
    """
    if len(vocab) != model.cfg.vocab_size:
        raise ValueError(f"vocab has {len(vocab)} tokens, model {model.cfg.vocab_size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    ckpt = {
        "format": "mmduplex-commentator",
        "version": CHECKPOINT_VERSION,
        "config": asdict(model.cfg),
        "vocab": vocab.to_dict(),
        "state_dict": sd,
        "meta": dict(meta or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def load_checkpoint(
    path: Path, *, map_location: str = "cpu"
) -> tuple[Commentator, Vocab, dict[str, Any]]:
    """Loads a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: The ``.pt`` file.
        map_location: Torch device to load to.

    Returns:
        ``(model, vocab, meta)``; the model is in eval mode.

    Raises:
        CheckpointError: If the file is missing, not a commentator checkpoint, or its
            parts do not fit together.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"commentator checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read commentator checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != "mmduplex-commentator":
        raise CheckpointError(f"{path} is not an MM-Duplex commentator checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt.get('version')}, expected {CHECKPOINT_VERSION}"
        )
    try:
        known = {f.name for f in fields(CommentatorConfig)}
        extra = set(ckpt["config"]) - known
        if extra:
            raise ValueError(f"unknown config fields {sorted(extra)}")
        cfg = CommentatorConfig(**ckpt["config"])
        vocab = Vocab.from_dict(ckpt["vocab"])
        if len(vocab) != cfg.vocab_size:
            raise ValueError(f"vocab has {len(vocab)} tokens, config {cfg.vocab_size}")
        model = Commentator(cfg)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"invalid commentator checkpoint {path}: {e}") from e
    model.to(map_location).eval()
    return model, vocab, dict(ckpt.get("meta", {}))


@dataclass(frozen=True, slots=True)
class StepOutput:
    """What the commentator said in one model step.

    Attributes:
        word: The word emitted this step, or None (silence or end of line).
        end_of_line: True if this step ended the current line (``<eol>``).
    """

    word: str | None
    end_of_line: bool


@dataclass
class CommentatorRuntime:
    """A loaded commentator for the actors: model + vocabulary, CPU or GPU.

    Torch's thread count is left to the caller (``torch.set_num_threads``).

    Attributes:
        model: The model (eval mode).
        vocab: Its vocabulary.
        meta: Checkpoint metadata.
    """

    model: Commentator
    vocab: Vocab
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls, path: Path, *, device: str = "cpu", silence_bias: float | None = None
    ) -> CommentatorRuntime:
        """Loads a checkpoint.

        Args:
            path: The ``.pt`` checkpoint.
            device: Torch device.
            silence_bias: Overrides the config's ``silence_bias`` (talkativeness).

        Returns:
            The runtime.

        Raises:
            CheckpointError: If the checkpoint is missing or invalid.
        """
        model, vocab, meta = load_checkpoint(path, map_location=device)
        if silence_bias is not None:
            model.cfg = _replace_cfg(model.cfg, silence_bias=float(silence_bias))
        return cls(model=model, vocab=vocab, meta=meta)

    def new_state(self) -> CommentatorState:
        """A fresh per-session state (constant memory, see :class:`CommentatorState`)."""
        return self.model.new_state()

    def _output(self, tok: int) -> StepOutput:
        if tok == EOL_ID:
            return StepOutput(word=None, end_of_line=True)
        if tok == SIL_ID:
            return StepOutput(word=None, end_of_line=False)
        return StepOutput(word=self.vocab.itos[tok], end_of_line=False)

    def step(self, state: CommentatorState, tokens: np.ndarray) -> StepOutput:
        """One model step of one session.

        Args:
            state: The session's state (updated in place).
            tokens: float32 ``[N, 64]`` B-Flow tokens of this step (N may be 0).

        Returns:
            The word said (if any) and whether the line ended.

        Raises:
            ValueError: If ``tokens`` is malformed.
        """
        return self._output(self.model.step(state, tokens))

    def step_batch(
        self, states: list[CommentatorState], tokens: list[np.ndarray]
    ) -> list[StepOutput]:
        """One batched model step over many sessions (see :meth:`Commentator.step_batch`).

        Raises:
            ValueError: On mismatched lengths or malformed token arrays.
        """
        return [self._output(t) for t in self.model.step_batch(states, tokens)]


def _replace_cfg(cfg: CommentatorConfig, **changes: Any) -> CommentatorConfig:
    d = asdict(cfg)
    d.update(changes)
    return CommentatorConfig(**d)

"""The duplex commentator: a language model that watches and talks at the same time.

Video comes in as B-Flow tokens (``float32 [N_t, 64]`` per 5 Hz model step, ``N_t``
varies and may be 0); :class:`VideoPooler` fuses one step's tokens into one input
vector (attention pooling with learned queries, the projector into the backbone's
embedding space). A causal LM backbone (:mod:`models.lm.backbone`: a small Llama trained
from scratch, SmolLM2-135M-Instruct with LoRA adapters, or any local Hugging Face
causal LM with RoPE) reads video and text positions laid out by a duplex format
(:mod:`models.lm.duplex`: LiveCC-style time interleaving by default, Moshi-style
parallel streams as the alternative) and at each position emits the next text token
or the learned silence token: the model decides itself when to speak (the
streaming-EOS idea of VideoLLM-online, Chen et al. 2024).

Endless streams with constant memory: each session keeps a slot of a
:class:`~models.lm.kvcache.BoundedKVCache` of ``sink_positions`` attention sinks plus a
window of ``window_positions`` recent positions with contiguous positions
(StreamingLLM, StreamingVLM). Training sequences are at most that long, so a full
cache looks to the model exactly like a training sequence. Sessions whose states share
one cache advance together: :meth:`Commentator.step_batch` runs one batched forward
pass per position for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.lm.backbone import SMOLLM2, add_lora, build_tiny_lm, load_pretrained_lm, quantize_int8, smollm2_dir
from models.lm.duplex import FORMATS, NO_TEXT
from models.lm.kvcache import BoundedKVCache
from models.lm.text import HFCodec, TextCodec, WordCodec
from streams.errors import ModelError

if TYPE_CHECKING:  # transformers is imported where a backbone is built: it takes seconds
    from transformers import PreTrainedModel

__all__ = [
    "CheckpointError",
    "Commentator",
    "CommentatorConfig",
    "CommentatorRuntime",
    "CommentatorState",
    "LinePiece",
    "StepBatch",
    "TextStepBatch",
    "VideoPooler",
    "build_commentator",
    "load_checkpoint",
    "read_checkpoint_meta",
    "save_checkpoint",
]

CHECKPOINT_VERSION = 2


@dataclass(frozen=True)
class CommentatorConfig:
    """Hyperparameters of the commentator (saved in the checkpoint)."""

    backbone: str = "tiny"  # tiny | smollm2-135m | hf (see models.lm.backbone)
    backbone_path: str = ""  # hf: local folder of the causal LM
    lora_rank: int = 8  # LoRA rank on pretrained backbones (0: frozen, projector only)
    d_model: int = 128  # tiny backbone: hidden size
    n_layers: int = 4  # tiny backbone: blocks
    n_heads: int = 4  # tiny backbone: attention heads
    duplex_format: str = "interleaved"  # interleaved | parallel (models.lm.duplex)
    video_tokenizer: str = "bflow"  # bflow (live) | every-frame | dense (ablation baselines, models.data.dataset)
    max_step_tokens: int = 4  # k: most text tokens per step (interleaved)
    token_dim: int = 64  # width of one B-Flow token (bflow.TOKEN_DIM)
    view_dim: int = 0  # width of one key-view row (models.vision.views.view_dim); 0: the model takes no views
    key_flag_index: int = 0  # token feature that is 1 on key-view tokens (bflow token layout)
    n_count_features: int = 5  # per-step count features (see count_features())
    pool_heads: int = 4  # heads of the attention pooling over one step's tokens
    dropout: float = 0.1  # dropout on the input embeddings (and tiny: attention weights) in training
    sink_positions: int = 4  # attention-sink positions kept forever in the KV cache
    window_positions: int = 124  # most recent positions kept in the KV cache
    evict_positions: int = 8  # window positions dropped at once when the cache is full (kvcache)
    silence_bias: float = 0.0  # added to the silence logit when decoding; > 0 talks less
    max_line_tokens: int = 32  # decoding ends a line after this many tokens

    @property
    def capacity(self) -> int:
        """KV cache positions per session (= longest training sequence)."""
        return self.sink_positions + self.window_positions

    @property
    def step_tokens(self) -> int:
        """Most text tokens per step in this format."""
        return 1 if self.duplex_format == "parallel" else self.max_step_tokens

    def validate(self) -> None:
        """Checks internal consistency.

        Raises:
            ValueError: If a field is out of range.
        """
        if self.backbone not in ("tiny", SMOLLM2, "hf"):
            raise ValueError(f"unknown backbone {self.backbone!r}, expected tiny, {SMOLLM2} or hf")
        if self.backbone == "hf" and not self.backbone_path:
            raise ValueError("backbone 'hf' needs backbone_path (a local model folder)")
        if self.duplex_format not in FORMATS:
            raise ValueError(f"unknown duplex_format {self.duplex_format!r}, expected one of {FORMATS}")
        from models.data.dataset import VIDEO_TOKENIZERS  # the features' module says which exist

        if self.video_tokenizer not in VIDEO_TOKENIZERS:
            raise ValueError(f"unknown video_tokenizer {self.video_tokenizer!r}, expected one of {VIDEO_TOKENIZERS}")
        if self.max_step_tokens < 1:
            raise ValueError("max_step_tokens must be >= 1")
        if self.sink_positions < 0 or self.window_positions <= self.step_tokens:
            raise ValueError("need sink_positions >= 0 and window_positions > tokens per step")
        if not 1 <= self.evict_positions <= self.window_positions:
            raise ValueError("need 1 <= evict_positions <= window_positions")
        if not 0 <= self.key_flag_index < self.token_dim:
            raise ValueError(f"key_flag_index {self.key_flag_index} outside token_dim {self.token_dim}")
        if self.view_dim < 0:
            raise ValueError(f"view_dim must be >= 0, got {self.view_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


# ---------------------------------------------------------------------------
# Video projector
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
    """Fuses one step's variable-size set of B-Flow tokens and key-view rows into one vector.

    Each token goes through ``Linear(token_dim -> d)``, each key-view row (pretrained
    encoder features, :mod:`models.vision.views`) through ``Linear(view_dim -> d)``:
    this is the projection of the encoder into the backbone's embedding space. A
    learned query per pooling head attends over the step's tokens and view rows
    (softmax over that step's only); steps with neither get a learned "no tokens"
    vector instead. Count features (:func:`count_features`, of the B-Flow tokens) are
    projected and added.

    The tokens are packed (padding rows dropped) before any work, so the cost is
    proportional to the real number of tokens, not to ``B * T * Nmax``.
    """

    def __init__(self, cfg: CommentatorConfig, d: int) -> None:
        """
        Args:
            cfg: Commentator config (token width, pooling heads, key-flag index).
            d: Output width (the backbone's hidden size).
        """
        super().__init__()
        h = cfg.pool_heads
        self.h, self.hd = h, d // h
        self.inp = nn.Linear(cfg.token_dim, d)
        self.view_inp = nn.Linear(cfg.view_dim, d) if cfg.view_dim else None
        self.ln = nn.LayerNorm(d)
        self.kv = nn.Linear(d, 2 * d)
        self.query = nn.Parameter(torch.randn(h, self.hd) * 0.02)
        self.out = nn.Linear(d, d)
        self.empty = nn.Parameter(torch.zeros(d))
        self.count = nn.Linear(cfg.n_count_features, d)
        self.key_flag_index = cfg.key_flag_index

    def forward(
        self, tokens: torch.Tensor, token_mask: torch.Tensor,
        views: torch.Tensor | None = None, view_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pools each step's tokens and view rows.

        Args:
            tokens: float32 ``[B, T, N, token_dim]`` (``N >= 1``; padded rows masked).
            token_mask: bool ``[B, T, N]``, True for real tokens.
            views: float32 ``[B, T, K, view_dim]`` key-view rows, or None (no views).
                Ignored by a model without a view projection (``view_dim = 0``).
            view_mask: bool ``[B, T, K]``, True for real rows (required with ``views``).

        Returns:
            float32 ``[B, T, d]``.
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

        x = self.inp(packed)  # (M, d)
        present = counts > 0
        if self.view_inp is not None and views is not None and view_mask is not None:
            nv = views.shape[2]
            flat_views = view_mask.reshape(s, nv)
            seg = torch.cat([seg, flat_views.nonzero(as_tuple=True)[0]])
            x = torch.cat([x, self.view_inp(views.reshape(s, nv, -1)[flat_views])])  # (M + Mv, d)
            present = present | flat_views.any(-1)
        x = self.ln(F.gelu(x))
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
        pooled = torch.where(present[:, None], pooled, self.empty.expand_as(pooled))
        return (pooled + self.count(feats)).view(b, t, -1)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


@dataclass
class CommentatorState:
    """Streaming state of one session (one live stream); bounded forever.

    Attributes:
        cache: The KV cache whose slot ``slot`` is this session's (sinks + sliding
            window); sessions sharing a cache can be stepped in one batch.
        slot: The session's slot in ``cache``.
        last_token: Id emitted at the previous step (silence after a reset); the
            text input of the next step in the parallel format.
        line: Ids of the current, unfinished line.
        steps: Model steps taken.
        positions: Positions fed to the backbone so far (video and text).
    """

    cache: BoundedKVCache
    slot: int
    last_token: int
    line: list[int] = field(default_factory=list)
    steps: int = 0
    positions: int = 0

    @property
    def length(self) -> int:
        """Positions the session's cache slot holds now (at most its capacity)."""
        return int(self.cache.lengths[self.slot])

    def nbytes(self) -> int:
        """Bytes held by the session's KV cache now (at most the capacity's worth)."""
        return self.cache.nbytes(self.slot)

    def release(self) -> None:
        """Frees the session's cache slot for another session; the state is unusable after."""
        self.cache.free(self.slot)


class Commentator(nn.Module):
    """The duplex commentator (see module docstring)."""

    banned: torch.Tensor  # bool [n_ids] ids never emitted (a buffer)

    def __init__(self, cfg: CommentatorConfig, codec: TextCodec, lm: PreTrainedModel) -> None:
        """
        Args:
            cfg: Hyperparameters.
            codec: Text ids (its ``base_vocab`` must match the backbone's embedding rows).
            lm: A Hugging Face causal LM (see :func:`build_commentator`).

        Raises:
            ValueError: If the config is inconsistent or the codec does not fit the backbone.
        """
        super().__init__()
        cfg.validate()
        rows = lm.get_input_embeddings().get_parameter("weight").shape[0]
        if rows < codec.base_vocab:
            raise ValueError(f"backbone has {rows} embedding rows, the text codec needs {codec.base_vocab}")
        self.cfg = cfg
        self.codec = codec
        self.lm = lm
        d = lm.config.hidden_size
        self.pooler = VideoPooler(cfg, d)
        n_extra = codec.n_ids - codec.base_vocab
        self.extra_in = nn.Parameter(torch.randn(n_extra, d) * 0.02)
        self.extra_out = nn.Parameter(torch.zeros(n_extra, d))
        self.drop = nn.Dropout(cfg.dropout)
        banned = torch.zeros(codec.n_ids, dtype=torch.bool)
        banned[codec.banned_ids()] = True
        self.register_buffer("banned", banned, persistent=False)
        self.shortlist: torch.Tensor | None = None  # rows of the head kept by restrict_output
        self.shortlist_head: tuple[torch.Tensor, torch.Tensor | None] = (torch.empty(0), None)

    def trainable_names(self) -> list[str]:
        """Names of the parameters that training updates (and checkpoints store)."""
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: trained parameters and everything outside the
        backbone (a frozen backbone's weights come from its folder). Detached CPU copies."""
        keep = set(self.trainable_names())
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items()
                if k in keep or not k.startswith("lm.")}

    def num_params(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts (tied weights counted once)."""
        ps = list(self.parameters())
        return sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps)

    # -- shared by training and streaming ---------------------------------

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Input vectors of text ids (backbone rows, or the extra silence row).

        Args:
            ids: int64 ``[...]`` ids in ``0 .. n_ids-1``.

        Returns:
            float32 ``[..., d]``.
        """
        base = self.codec.base_vocab
        emb = self.lm.get_input_embeddings()(ids.clamp(max=base - 1))
        if self.extra_in.shape[0]:
            extra = self.extra_in[(ids - base).clamp(min=0, max=self.extra_in.shape[0] - 1)]
            emb = torch.where((ids >= base)[..., None], extra, emb)
        return emb

    def embed(
        self, video_tokens: torch.Tensor, token_mask: torch.Tensor, is_frame: torch.Tensor, text_in: torch.Tensor,
        views: torch.Tensor | None = None, view_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Input embeddings of positions: pooled video where ``is_frame`` plus text where given.

        Args:
            video_tokens: float32 ``[B, P, N, token_dim]`` B-Flow tokens per position
                (``N >= 1``; rows of non-frame positions are ignored).
            token_mask: bool ``[B, P, N]``, True for real tokens.
            is_frame: bool ``[B, P]``.
            text_in: int64 ``[B, P]`` text ids or ``NO_TEXT`` (-1).
            views: float32 ``[B, P, K, view_dim]`` key-view rows per position, or None.
            view_mask: bool ``[B, P, K]``, True for real rows.

        Returns:
            float32 ``[B, P, d]``.
        """
        x = self.pooler(video_tokens, token_mask, views, view_mask) * is_frame[..., None]
        has_text = text_in != NO_TEXT
        return x + self.embed_text(text_in.clamp(min=0)) * has_text[..., None]

    def logits(self, hidden: torch.Tensor, *, shortlisted: bool = False) -> torch.Tensor:
        """float32 ``[..., n_ids]`` output logits of backbone hidden states ``[..., d]``.

        With ``shortlisted`` (streaming decisions) and a shortlist set by
        :meth:`restrict_output`, only its ids are scored and the others are ``-inf``;
        training and teacher-forced metrics (LM-PPL) always score the whole vocabulary.
        """
        if not shortlisted or self.shortlist is None:
            out = self.lm.get_output_embeddings()(hidden)[..., : self.codec.base_vocab]
        else:
            out = hidden.new_full((*hidden.shape[:-1], self.codec.base_vocab), float("-inf"))
            out[..., self.shortlist] = F.linear(hidden, *self.shortlist_head)
        if self.extra_out.shape[0]:
            out = torch.cat([out, hidden @ self.extra_out.T], dim=-1)
        return out

    def restrict_output(self, ids: Sequence[int]) -> int:
        """Restricts the output head to ``ids`` (a vocabulary shortlist) for inference.

        A pretrained backbone's head scores its whole vocabulary (49 152 rows, 113 MB of
        float32 weights for SmolLM2, as many bytes as its int8 blocks), while the
        commentator only ever learned to say the ids of its training lines. Scoring those
        alone (vocabulary selection, as in Jean et al. 2015, "On Using Very Large Target
        Vocabulary for Neural Machine Translation") gives the same greedy choice whenever
        the full head's best id is one of them, at a fraction of the memory traffic. The
        extra ids (silence) and end of line are always kept. It applies to the streaming
        steps only (see :meth:`logits`).

        Args:
            ids: Output ids the model may emit (``0 .. n_ids-1``), e.g. the checkpoint's
                ``spoken_ids``.

        Returns:
            Rows of the backbone's head that are still scored.

        Raises:
            ValueError: If an id is out of range.
        """
        c = self.codec
        keep = set(map(int, ids)) | {c.eol_id}
        if not all(0 <= i < c.n_ids for i in keep):
            raise ValueError(f"output ids must lie in 0..{c.n_ids - 1}")
        rows = torch.tensor(sorted(i for i in keep if i < c.base_vocab), dtype=torch.long,
                            device=self.extra_out.device)
        head = self.lm.get_output_embeddings()
        bias = getattr(head, "bias", None)
        self.shortlist = rows
        self.shortlist_head = (head.weight.detach()[rows].clone(),
                               None if bias is None else bias.detach()[rows].clone())
        return int(rows.numel())

    # -- training ---------------------------------------------------------

    def forward(
        self, video_tokens: torch.Tensor, token_mask: torch.Tensor, is_frame: torch.Tensor, text_in: torch.Tensor,
        views: torch.Tensor | None = None, view_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full-sequence forward pass with a causal mask (training, teacher-forced evaluation).

        Args: as :meth:`embed`; ``P`` must not exceed the KV cache capacity.

        Returns:
            float32 ``[B, P, n_ids]`` logits of the id emitted at each position.

        Raises:
            ValueError: If shapes disagree or ``P`` exceeds the capacity.
        """
        b, p, n, dim = video_tokens.shape
        if token_mask.shape != (b, p, n) or is_frame.shape != (b, p) or text_in.shape != (b, p):
            raise ValueError(
                f"expected video_tokens [B, P, N, {self.cfg.token_dim}], token_mask [B, P, N], is_frame and "
                f"text_in [B, P]; got {list(video_tokens.shape)}, {list(token_mask.shape)}, "
                f"{list(is_frame.shape)}, {list(text_in.shape)}"
            )
        if dim != self.cfg.token_dim:
            raise ValueError(f"B-Flow tokens have width {dim}, the model takes {self.cfg.token_dim}")
        if p > self.cfg.capacity:
            raise ValueError(f"sequence of {p} positions exceeds the KV cache capacity {self.cfg.capacity}")
        x = self.drop(self.embed(video_tokens, token_mask, is_frame, text_in, views, view_mask))
        h = self.lm.base_model(inputs_embeds=x, use_cache=False).last_hidden_state
        return self.logits(h)

    # -- streaming --------------------------------------------------------

    def new_cache(self, slots: int = 1) -> BoundedKVCache:
        """An empty KV cache for up to ``slots`` sessions (more are added on demand)."""
        return BoundedKVCache(self.lm, sink=self.cfg.sink_positions, window=self.cfg.window_positions, slots=slots,
                              evict=self.cfg.evict_positions)

    def new_state(self, cache: BoundedKVCache | None = None) -> CommentatorState:
        """A fresh per-session state in a free slot of ``cache`` (default: a cache of its own)."""
        cache = cache if cache is not None else self.new_cache()
        return CommentatorState(cache=cache, slot=cache.alloc(), last_token=self.codec.sil_id)

    def check_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """``tokens`` as float32 ``[N, token_dim]``.

        Raises:
            ValueError: If it is not a finite ``[N, token_dim]`` array.
        """
        if not isinstance(tokens, np.ndarray) or tokens.ndim != 2 or tokens.shape[1] != self.cfg.token_dim:
            desc = f"{tokens.dtype} {list(tokens.shape)}" if isinstance(tokens, np.ndarray) else type(tokens).__name__
            raise ValueError(f"expected float32 [N, {self.cfg.token_dim}] tokens, got {desc}")
        if not np.isfinite(tokens).all():
            raise ValueError("B-Flow tokens contain NaN or infinity")
        return tokens.astype(np.float32, copy=False)

    def check_views(self, views: np.ndarray | None) -> np.ndarray | None:
        """``views`` as float32 ``[K, view_dim]``, or None when there are none.

        A model without a view projection (``view_dim = 0``) ignores views.

        Raises:
            ValueError: If it is not a finite ``[K, view_dim]`` array.
        """
        if views is None or len(views) == 0 or not self.cfg.view_dim:
            return None
        if not isinstance(views, np.ndarray) or views.ndim != 2 or views.shape[1] != self.cfg.view_dim:
            desc = f"{views.dtype} {list(views.shape)}" if isinstance(views, np.ndarray) else type(views).__name__
            raise ValueError(f"expected float32 [K, {self.cfg.view_dim}] key-view rows, got {desc}")
        if not np.isfinite(views).all():
            raise ValueError("key-view rows contain NaN or infinity")
        return views.astype(np.float32, copy=False)

    def _feed(self, states: list[CommentatorState], x: torch.Tensor) -> torch.Tensor:
        """Appends one position per state with inputs ``x`` ``[b, 1, d]`` in one batched
        forward pass; returns their logits ``[b, n_ids]``."""
        cache = states[0].cache
        position_ids, mask = cache.begin([s.slot for s in states])
        h = self.lm.base_model(
            inputs_embeds=x, position_ids=position_ids, attention_mask=mask, cache=cache.cache,
            use_cache=True,
        ).last_hidden_state
        cache.end()
        for s in states:
            s.positions += 1
        return self.logits(h[:, 0], shortlisted=True)

    def _choose(self, state: CommentatorState, logits: torch.Tensor) -> int:
        """Greedy choice of one session (see :meth:`_choose_batch`)."""
        return self._choose_batch([state], logits[None])[0]

    def _choose_batch(self, states: list[CommentatorState], logits: torch.Tensor) -> list[int]:
        """Greedy choice per session from logits ``[b, n_ids]``: never a banned id; no
        empty line; long lines are ended."""
        c = self.codec
        logits = logits.masked_fill(self.banned, float("-inf"))
        logits[:, c.sil_id] += self.cfg.silence_bias
        empty = torch.tensor([not s.line for s in states], device=logits.device)
        logits[:, c.eol_id] = logits[:, c.eol_id].masked_fill(empty, float("-inf"))
        ids = logits.argmax(-1).tolist()
        return [c.eol_id if len(s.line) >= self.cfg.max_line_tokens else i for s, i in zip(states, ids, strict=True)]

    def _video_inputs(self, videos: list[tuple[np.ndarray, np.ndarray | None]], last: list[int]) -> torch.Tensor:
        """Input vectors ``[b, 1, d]`` of one video position per session (B-Flow tokens and
        key-view rows padded to the longest; the previous token too in the parallel format)."""
        dev = self.extra_out.device
        vt, vm = _pad([t for t, _ in videos], self.cfg.token_dim)
        vv = vvm = None
        if any(v is not None for _, v in videos):
            vv, vvm = _pad([v if v is not None else np.zeros((0, self.cfg.view_dim), np.float32)
                            for _, v in videos], self.cfg.view_dim)
            vv, vvm = vv.to(dev), vvm.to(dev)
        frame = torch.ones(len(videos), 1, dtype=torch.bool, device=dev)
        text = torch.tensor(last, dtype=torch.long, device=dev)[:, None]
        return self.embed(vt.to(dev), vm.to(dev), frame, text, vv, vvm)

    def step(self, state: CommentatorState, tokens: np.ndarray, views: np.ndarray | None = None) -> list[int]:
        """One model step (one video frame) of one session: :meth:`step_batch` of one.

        Raises:
            ValueError: If ``tokens`` is not a finite ``[N, token_dim]`` array (or ``views``
                not a finite ``[K, view_dim]`` one).
        """
        return self.step_batch([state], [tokens], [views])[0]

    def step_batch(
        self, states: list[CommentatorState], tokens: list[np.ndarray],
        views: Sequence[np.ndarray | None] | None = None,
    ) -> list[list[int]]:
        """One model step (one video frame) of each of several sessions, batched: a
        :class:`StepBatch` of them run to the end. Results equal those of stepping the
        sessions one at a time.

        Args:
            states: The sessions' states (updated in place); distinct sessions of one cache.
            tokens: float32 ``[N_i, token_dim]`` B-Flow tokens of this step per session.
            views: float32 ``[K_i, view_dim]`` key-view rows per session (None or ``K_i = 0``
                where the step has no view); None for no views at all.

        Returns:
            Per session, the ids said in this step, in order (text and end-of-line ids;
            empty when silent).

        Raises:
            ValueError: If the lists differ in length, or as :meth:`StepBatch.add`.
        """
        return _run_to_end(StepBatch(self), states, tokens, views)


class StepBatch:
    """Model steps of several sessions, advanced together one forward pass (a *round*)
    at a time, which further steps may join between rounds.

    A step feeds its session's video position, then, in the interleaved format, each
    id it says (until the silence token or ``max_step_tokens``); in the parallel format
    one position (video + previous id) and one id. Every round feeds the next position
    of every unfinished step in one batched forward pass, so a step that joins while
    others are still speaking shares their passes instead of waiting for them
    (iteration-level scheduling, "continuous batching": Yu et al. 2022, Orca). Each
    session's positions are the same as stepping it alone, and so is what it says.
    """

    def __init__(self, model: Commentator) -> None:
        """
        Args:
            model: The commentator (in eval mode).
        """
        self.model = model
        self._steps: dict[int, _Step] = {}
        self._next_handle = 0

    @property
    def done(self) -> bool:
        """True when no step is unfinished."""
        return not self._steps

    @property
    def unfinished(self) -> list[int]:
        """Handles of the unfinished steps."""
        return list(self._steps)

    def add(self, state: CommentatorState, tokens: np.ndarray, views: np.ndarray | None = None) -> int:
        """Adds one model step of a session; it feeds its video position in the next round.

        Args:
            state: The session's state (updated in place as the rounds go); no other
                unfinished step of this batch may be the same session, and every
                session of a batch shares one cache.
            tokens: float32 ``[N, token_dim]`` B-Flow tokens of the step (``N`` may be 0).
            views: float32 ``[K, view_dim]`` key-view rows of the step, or None.

        Returns:
            The step's handle (what :meth:`run_round` reports its ids by).

        Raises:
            ValueError: If ``tokens`` is not a finite ``[N, token_dim]`` array (``views``
                not a finite ``[K, view_dim]`` one), or the session is already stepping
                here or has another cache.
        """
        arr = self.model.check_tokens(tokens), self.model.check_views(views)
        others = [st.state for st in self._steps.values()]
        if any(o.cache is not state.cache or o.slot == state.slot for o in others):
            raise ValueError("states stepped together must be distinct sessions of one cache")
        handle = self._next_handle
        self._next_handle += 1
        self._steps[handle] = _Step(state, arr)
        return handle

    @torch.no_grad()
    def run_round(self) -> list[tuple[int, int]]:
        """One forward pass: every unfinished step feeds its next position.

        Returns:
            The ids chosen from this pass (text and end-of-line ids, not silence) as
            ``(handle, id)`` pairs, so that a caller can send the first word of a line
            right away. Steps that end here leave the batch.
        """
        m = self.model
        if not self._steps:
            return []
        parallel = m.cfg.duplex_format == "parallel"
        video = [h for h, st in self._steps.items() if st.video is not None]
        text = [h for h, st in self._steps.items() if st.video is None]
        parts = []
        if video:
            steps = [self._steps[h] for h in video]
            last = [st.state.last_token if parallel else NO_TEXT for st in steps]
            parts.append(m._video_inputs([st.video for st in steps if st.video is not None], last))
            for st in steps:
                st.video = None
                st.state.steps += 1
        if text:
            ids = torch.tensor([[self._steps[h].state.last_token] for h in text], device=m.extra_out.device)
            parts.append(m.embed_text(ids))
        order = video + text
        logits = m._feed([self._steps[h].state for h in order], torch.cat(parts))
        # A step that has said max_step_tokens ends once its last id is fed.
        rows = [k for k, h in enumerate(order) if self._steps[h].n_said < m.cfg.max_step_tokens]
        for h in order:
            if self._steps[h].n_said >= m.cfg.max_step_tokens:
                del self._steps[h]
        if not rows:
            return []
        chosen = m._choose_batch([self._steps[order[k]].state for k in rows], logits[rows])
        said = []
        for k, tok in zip(rows, chosen, strict=True):
            h = order[k]
            st = self._steps[h]
            st.state.last_token = tok
            if tok == m.codec.sil_id:
                del self._steps[h]
                continue
            st.n_said += 1
            st.state.line = [] if tok == m.codec.eol_id else [*st.state.line, tok]
            said.append((h, tok))
            if parallel:
                del self._steps[h]
        return said


def _run_to_end(
    batch: Any, states: list[CommentatorState], tokens: list[np.ndarray],
    views: Sequence[np.ndarray | None] | None = None,
) -> list[list[Any]]:
    """Adds one step per session to an empty :class:`StepBatch` (or
    :class:`TextStepBatch`) and runs it to the end; returns what each session said, in order.

    Raises:
        ValueError: If the lists differ in length, or as :meth:`StepBatch.add`.
    """
    views = [None] * len(tokens) if views is None else views
    if not len(states) == len(tokens) == len(views):
        raise ValueError(f"{len(states)} states but {len(tokens)} token arrays and {len(views)} views")
    handles = [batch.add(s, t, v) for s, t, v in zip(states, tokens, views, strict=True)]
    said: dict[int, list[Any]] = {h: [] for h in handles}
    while not batch.done:
        for h, item in batch.run_round():
            said[h].append(item)
    return [said[h] for h in handles]


@dataclass
class _Step:
    """An unfinished step of a :class:`StepBatch`: its B-Flow tokens and key-view rows
    until they are fed."""

    state: CommentatorState
    video: tuple[np.ndarray, np.ndarray | None] | None
    n_said: int = 0


def _pad(arrays: list[np.ndarray], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of one position per session padded to the longest: ``(float32 [b, 1, n, width],
    bool [b, 1, n])`` with ``n >= 1``."""
    b, n = len(arrays), max(1, *(a.shape[0] for a in arrays))
    padded = np.zeros((b, 1, n, width), dtype=np.float32)
    valid = np.zeros((b, 1, n), dtype=bool)
    for i, a in enumerate(arrays):
        padded[i, 0, : a.shape[0]] = a
        valid[i, 0, : a.shape[0]] = True
    return torch.from_numpy(padded), torch.from_numpy(valid)


# ---------------------------------------------------------------------------
# Construction and checkpoints
# ---------------------------------------------------------------------------


class CheckpointError(ModelError):
    """A commentator checkpoint is missing, unreadable or inconsistent."""


def build_commentator(cfg: CommentatorConfig, codec: TextCodec | None = None) -> Commentator:
    """Builds a commentator with a freshly initialised projector.

    ``tiny`` gets a random Llama sized for the codec's vocabulary (trained whole);
    pretrained backbones are loaded from their local folder (``smollm2-135m``:
    :func:`~models.lm.backbone.smollm2_dir`), frozen, and given LoRA adapters.

    Args:
        cfg: Hyperparameters.
        codec: Text codec; required for ``tiny`` (the word vocabulary), built from the
            backbone's tokenizer otherwise.

    Returns:
        The model (train mode).

    Raises:
        BackboneError: If a pretrained backbone cannot be loaded.
        ValueError: If ``tiny`` is given no word codec, or the config is invalid.
    """
    cfg.validate()
    if cfg.backbone == "tiny":
        if not isinstance(codec, WordCodec):
            raise ValueError("the tiny backbone needs a WordCodec (its own word vocabulary)")
        lm = build_tiny_lm(
            codec.base_vocab, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
            max_positions=cfg.capacity, dropout=cfg.dropout,
        )
    else:
        path = smollm2_dir() if cfg.backbone == SMOLLM2 else Path(cfg.backbone_path)
        lm, tokenizer = load_pretrained_lm(path)
        codec = codec if isinstance(codec, HFCodec) else HFCodec(tokenizer)
        add_lora(lm, cfg.lora_rank)
    return Commentator(cfg, codec, lm)


def save_checkpoint(path: Path, model: Commentator, meta: dict[str, Any] | None = None) -> None:
    """Saves config, text codec and the trained parameters as one ``.pt`` file (atomically).

    Frozen backbone weights are not stored: they come from the backbone's folder.

    Args:
        path: Destination file.
        model: The model.
        meta: JSON-like metadata (metrics, training state, data description).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = model.trainable_state_dict()
    ckpt = {
        "format": "mmduplex-commentator",
        "version": CHECKPOINT_VERSION,
        "config": asdict(model.cfg),
        "codec": model.codec.to_dict(),
        "state_dict": sd,
        "meta": dict(meta or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, *, map_location: str = "cpu") -> tuple[Commentator, dict[str, Any]]:
    """Loads a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: The ``.pt`` file.
        map_location: Torch device to load to.

    Returns:
        ``(model, meta)``; the model is in eval mode.

    Raises:
        CheckpointError: If the file is missing, not a commentator checkpoint, or its
            parts do not fit together.
        BackboneError: If its pretrained backbone is not available locally.
    """
    path = Path(path)
    ckpt = _read_checkpoint(path, map_location)
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')}, expected {CHECKPOINT_VERSION}")
    try:
        extra = set(ckpt["config"]) - {f.name for f in fields(CommentatorConfig)}
        if extra:
            raise ValueError(f"unknown config fields {sorted(extra)}")
        cfg = CommentatorConfig(**ckpt["config"])
        codec_d = ckpt["codec"]
        codec = WordCodec.from_dict(codec_d) if codec_d.get("kind") == "word" else None
        model = build_commentator(cfg, codec)
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        trainable = set(model.trainable_names())
        missing = [k for k in missing if k in trainable or not k.startswith("lm.")]
        if missing or unexpected:
            raise ValueError(f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"invalid commentator checkpoint {path}: {e}") from e
    model.to(map_location).eval()
    return model, dict(ckpt.get("meta", {}))


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The metadata of a checkpoint (training data, metrics, view schedule), without building the model.

    Raises:
        CheckpointError: If the file is missing or not a commentator checkpoint.
    """
    return dict(_read_checkpoint(Path(path), "cpu").get("meta", {}))


def _read_checkpoint(path: Path, map_location: str) -> dict[str, Any]:
    """The raw checkpoint dict of a commentator checkpoint file (see :func:`save_checkpoint`)."""
    if not path.is_file():
        raise CheckpointError(f"commentator checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read commentator checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != "mmduplex-commentator":
        raise CheckpointError(f"{path} is not an MM-Duplex commentator checkpoint")
    return ckpt


# ---------------------------------------------------------------------------
# The runtime wrapper used by the actors
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinePiece:
    """A piece of the current line said in one model step.

    Attributes:
        text: Text to append to the line (a leading space separates it from earlier
            text of the same line); may be empty when only the line ends.
        end_of_line: True if the line ends after this piece.
    """

    text: str
    end_of_line: bool


@dataclass
class CommentatorRuntime:
    """A loaded commentator for the actors and the evaluation: model + its metadata.

    Its sessions share one :class:`~models.lm.kvcache.BoundedKVCache`, so any of them can
    be stepped together (:meth:`step_batch`). Torch's thread count is left to the
    caller (``torch.set_num_threads``).
    """

    model: Commentator
    meta: dict[str, Any] = field(default_factory=dict)
    cache: BoundedKVCache | None = None

    @classmethod
    def load(cls, path: Path, *, device: str = "cpu", silence_bias: float | None = None,
             int8: bool = False, shortlist: bool = True) -> CommentatorRuntime:
        """Loads a checkpoint.

        Args:
            path: The ``.pt`` checkpoint.
            device: Torch device.
            silence_bias: Overrides the config's ``silence_bias`` (talkativeness).
            int8: Quantize the backbone's blocks to int8 for CPU inference
                (:func:`models.lm.backbone.quantize_int8`; docs/PERFORMANCE.md measures it).
            shortlist: Score only the ids of the training lines (the checkpoint's
                ``spoken_ids``, if it has them; :meth:`Commentator.restrict_output`).

        Raises:
            CheckpointError: If the checkpoint is missing or invalid.
            BackboneError: If its backbone is not available locally.
        """
        model, meta = load_checkpoint(path, map_location=device)
        if silence_bias is not None:
            model.cfg = replace(model.cfg, silence_bias=float(silence_bias))
        if int8:
            quantize_int8(model.lm)
        if shortlist and meta.get("spoken_ids"):
            model.restrict_output(meta["spoken_ids"])
        return cls(model=model, meta=meta)

    @property
    def codec(self) -> TextCodec:
        return self.model.codec

    def new_state(self) -> CommentatorState:
        """A fresh session in a free slot of the shared cache (bounded memory, see
        :class:`CommentatorState`); :meth:`CommentatorState.release` frees the slot."""
        cfg = self.model.cfg
        if self.cache is None or (self.cache.capacity, self.cache.evict) != (cfg.capacity, cfg.evict_positions):
            self.cache = self.model.new_cache()
        return self.model.new_state(self.cache)

    def step(self, state: CommentatorState, tokens: np.ndarray, views: np.ndarray | None = None) -> list[LinePiece]:
        """One model step of one session, as text (:meth:`step_batch` of one)."""
        return self.step_batch([state], [tokens], [views])[0]

    def step_batch(
        self, states: list[CommentatorState], tokens: list[np.ndarray],
        views: Sequence[np.ndarray | None] | None = None,
    ) -> list[list[LinePiece]]:
        """One model step of several sessions in one batch, as text (a
        :meth:`new_batch` run to the end).

        Args:
            states: Distinct sessions of this runtime (updated in place).
            tokens: float32 ``[N_i, 64]`` B-Flow tokens of this step per session (N_i may be 0).
            views: float32 ``[K_i, view_dim]`` key-view rows per session (None where none).

        Returns:
            Per session, what was said in this step, in order (empty when silent); a step
            can end one line and start the next.

        Raises:
            ValueError: If a token array is malformed or the lists differ in length.
        """
        return _run_to_end(self.new_batch(), states, tokens, views)

    def new_batch(self) -> TextStepBatch:
        """An empty :class:`TextStepBatch` of this runtime's sessions."""
        return TextStepBatch(StepBatch(self.model))


class TextStepBatch:
    """A :class:`StepBatch` whose rounds report text pieces instead of ids."""

    def __init__(self, batch: StepBatch) -> None:
        self.batch = batch
        self._states: dict[int, CommentatorState] = {}  # each step's session
        self._texts: dict[int, str] = {}  # its decoded line, once it speaks

    @property
    def done(self) -> bool:
        """True when no step is unfinished."""
        return self.batch.done

    @property
    def unfinished(self) -> list[int]:
        """Handles of the unfinished steps."""
        return self.batch.unfinished

    def add(self, state: CommentatorState, tokens: np.ndarray, views: np.ndarray | None = None) -> int:
        """Adds one model step of a session (:meth:`StepBatch.add`); returns its handle.

        Raises:
            ValueError: As :meth:`StepBatch.add`.
        """
        handle = self.batch.add(state, tokens, views)
        self._states[handle] = state
        return handle

    def run_round(self) -> list[tuple[int, LinePiece]]:
        """One forward pass (:meth:`StepBatch.run_round`); returns ``(handle, piece)`` of
        what it said (each line decoded once per token)."""
        codec = self.batch.model.codec
        pieces = []
        for h, tok in self.batch.run_round():
            if tok == codec.eol_id:
                pieces.append((h, LinePiece("", True)))
                self._texts[h] = ""
                continue
            line = self._states[h].line  # the round appended tok to it
            before = self._texts[h] if h in self._texts else codec.decode(line[:-1])
            self._texts[h] = after = codec.decode(line)
            pieces.append((h, LinePiece(after[len(before):] if after.startswith(before) else "", False)))
        return pieces

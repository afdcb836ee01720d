"""Bounded KV caches of many sessions in fixed slots, advanced together in one batch.

Each live session owns one *slot* of a :class:`BoundedKVCache`. A slot keeps the first
``sink`` positions forever (attention sinks, StreamingLLM, Xiao et al. 2023) and a
sliding window of the most recent ``window`` positions, so memory per session is
constant over an endless stream. Positions stay contiguous (StreamingVLM, Xu et al.
2025): when a slot is full and one more position comes, the ``evict`` oldest window
entries are dropped and the keys kept are rotated back by as many positions (RoPE
rotations compose; the re-rotation transformers' former ``SinkCache`` did), so a slot
always holds positions ``0 .. len-1`` exactly as a training sequence of that length
would. Evicting a block at a time (StreamingLLM's implementations do the same) moves
the window's keys once per ``evict`` positions instead of at every position.

Batching follows the fixed-slot design of Kyutai's Moshi servers: the keys and values
of all slots live in one tensor per layer, ``[slots, kv_heads, allocated, head_dim]``,
and a forward pass feeds one new position to any subset of the slots (the *rows* of
the batch), each at its own position, with a 4-D attention mask that hides every
slot's unused entries. So sessions of different lengths step together with no padding
copies; when the rows are all the slots, nothing is gathered at all.

Use: ``rows`` → :meth:`BoundedKVCache.begin` (evicts from full rows, returns the
``position_ids`` and the mask) → ``lm.base_model(inputs_embeds=x, position_ids=...,
attention_mask=mask, cache=cache.cache, use_cache=True)`` with ``x`` of
shape ``[len(rows), 1, d]`` → :meth:`BoundedKVCache.end`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

if TYPE_CHECKING:  # transformers' modeling code takes seconds to import
    from transformers import PreTrainedModel

__all__ = ["BoundedKVCache"]

#: Positions allocated per slot at first; storage doubles up to the capacity as slots fill.
_INITIAL_POSITIONS = 64


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _SlotLayer(CacheLayerMixin):
    """One layer's keys and values of every slot; writes the batch rows' new entries."""

    is_sliding = False
    is_compileable = False
    keys: torch.Tensor  # [slots, kv_heads, allocated, head_dim], allocated up front (never None)
    values: torch.Tensor

    def __init__(self, owner: BoundedKVCache, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.owner = owner
        self.keys, self.values = keys, values
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Storage is allocated up front by :class:`BoundedKVCache`."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes ``[b, kv_heads, 1, head_dim]`` new entries at each row's position and
        returns the keys and values the rows attend to, ``[b, kv_heads, allocated, head_dim]``."""
        rows, pos = self.owner._rows, self.owner._write_pos
        if key_states.shape[0] != rows.shape[0] or key_states.shape[2] != 1:
            raise ValueError(f"expected one new position for each of {rows.shape[0]} rows, "
                             f"got keys {list(key_states.shape)}")
        self.keys[rows, :, pos] = key_states[:, :, 0]
        self.values[rows, :, pos] = value_states[:, :, 0]
        if self.owner._all_rows:
            return self.keys, self.values
        return self.keys[rows], self.values[rows]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys.shape[2], 0

    def get_seq_length(self) -> int:
        return int(self.owner.lengths.max()) if self.owner.lengths.numel() else 0

    def get_max_length(self) -> int:
        return self.owner.capacity


class BoundedKVCache:
    """Bounded KV caches of up to ``slots`` sessions (see the module docstring).

    Attributes:
        sink: Attention-sink positions kept forever per slot.
        window: Most recent positions kept per slot.
        lengths: int64 ``[slots]`` positions held per slot (``0 .. capacity``).
        evictions: int64 ``[slots]`` positions dropped from each slot's window so far.
        cache: The transformers ``Cache`` to pass as ``cache``.
    """

    def __init__(self, model: PreTrainedModel, *, sink: int, window: int, slots: int = 1, evict: int = 1) -> None:
        """
        Args:
            model: The causal LM (its config gives layers, KV heads and head size; its
                ``base_model.rotary_emb`` the RoPE angles).
            sink: Attention-sink positions kept forever (>= 0).
            window: Most recent positions kept (>= 1).
            slots: Slots allocated at first (>= 1); :meth:`alloc` adds more when all are taken.
            evict: Window entries dropped at once when a slot is full (1 .. window); a
                full slot then holds between ``capacity - evict + 1`` and ``capacity``.

        Raises:
            ValueError: If ``sink < 0``, ``window < 1``, ``slots < 1`` or ``evict`` is
                outside ``1 .. window``, or the model
                uses dynamic RoPE (its angles change with the length: keys cannot be re-rotated).
        """
        if sink < 0 or window < 1 or slots < 1:
            raise ValueError(f"need sink >= 0, window >= 1 and slots >= 1, got {sink}, {window}, {slots}")
        if not 1 <= evict <= window:
            raise ValueError(f"need 1 <= evict <= window, got evict={evict} for window {window}")
        self.sink, self.window, self.evict = sink, window, evict
        rotary = model.base_model.get_submodule("rotary_emb")
        if "dynamic" in str(getattr(rotary, "rope_type", "default")):
            raise ValueError("dynamic RoPE changes its frequencies with the length: keys cannot be re-rotated")
        cfg = model.config
        kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        param = next(model.parameters())
        self._shape = (kv_heads, head_dim)
        self._dtype, self._device = param.dtype, param.device
        # cos/sin of a rotation by ``evict`` positions, without YaRN/LongRoPE's attention factor.
        probe = torch.zeros(1, 1, head_dim, dtype=self._dtype, device=self._device)
        cos, sin = rotary(probe, torch.full((1, 1), evict, dtype=torch.long, device=self._device))
        scale = getattr(rotary, "attention_scaling", 1.0)
        self._cos, self._sin = cos[:, None] / scale, sin[:, None] / scale  # [1, 1, 1, head_dim]
        allocated = min(self.capacity, _INITIAL_POSITIONS)
        self._layers = [
            _SlotLayer(self, self._zeros(slots, allocated), self._zeros(slots, allocated))
            for _ in range(cfg.num_hidden_layers)
        ]
        self.cache = Cache(layers=list(self._layers))
        self.lengths = torch.zeros(slots, dtype=torch.long)
        self.evictions = torch.zeros(slots, dtype=torch.long)
        self._free = list(range(slots))
        self._rows = torch.zeros(0, dtype=torch.long)
        self._write_pos = self._rows
        self._all_rows = False

    def _zeros(self, slots: int, positions: int) -> torch.Tensor:
        return torch.zeros(slots, *self._shape[:1], positions, self._shape[1], dtype=self._dtype, device=self._device)

    @property
    def capacity(self) -> int:
        """Positions one slot holds at most (``sink + window``)."""
        return self.sink + self.window

    @property
    def slots(self) -> int:
        """Slots allocated (taken or free)."""
        return int(self.lengths.shape[0])

    @property
    def allocated(self) -> int:
        """Positions allocated per slot now (grows to :attr:`capacity`)."""
        return int(self._layers[0].keys.shape[2])

    def alloc(self) -> int:
        """Takes a free slot (empty), doubling the slots when none is free. Returns its index."""
        if not self._free:
            extra = self.slots
            for layer in self._layers:
                layer.keys = torch.cat([layer.keys, self._zeros(extra, self.allocated)])
                layer.values = torch.cat([layer.values, self._zeros(extra, self.allocated)])
            self._free = list(range(self.slots, self.slots + extra))
            self.lengths = torch.cat([self.lengths, torch.zeros(extra, dtype=torch.long)])
            self.evictions = torch.cat([self.evictions, torch.zeros(extra, dtype=torch.long)])
        slot = self._free.pop(0)
        self.lengths[slot] = 0
        self.evictions[slot] = 0
        return slot

    def free(self, slot: int) -> None:
        """Returns a slot for reuse (its entries are ignored from now on)."""
        if slot not in self._free:
            self._free.append(slot)
            self._free.sort()

    def begin(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepares one new position for each row (a slot index; no repeats).

        Full rows drop their ``evict`` oldest window entries and re-rotate the rest; storage grows
        if a row needs more positions than are allocated.

        Returns:
            ``position_ids`` int64 ``[b, 1]`` and the additive attention mask
            float ``[b, 1, 1, allocated]`` (0 where a row attends, the dtype's minimum elsewhere).
        """
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        full = idx[self.lengths[idx] >= self.capacity]
        if full.numel():
            self._evict(full)
        need = int(self.lengths[idx].max()) + 1 if idx.numel() else 0
        if need > self.allocated:
            self._grow(min(self.capacity, max(need, 2 * self.allocated)))
        self._rows, self._write_pos = idx, self.lengths[idx]
        self._all_rows = idx.numel() == self.slots and bool((idx == torch.arange(self.slots)).all())
        visible = torch.arange(self.allocated)[None, :] <= self._write_pos[:, None]  # [b, allocated]
        mask = torch.zeros(visible.shape, dtype=self._dtype, device=self._device)
        mask.masked_fill_(~visible.to(self._device), torch.finfo(self._dtype).min)
        return self._write_pos[:, None].to(self._device), mask[:, None, None, :]

    def end(self) -> None:
        """Records that the forward pass after :meth:`begin` appended one position per row."""
        self.lengths[self._rows] += 1

    def _evict(self, rows: torch.Tensor) -> None:
        s, c, n = self.sink, self.capacity, self.evict
        for layer in self._layers:
            kept = layer.keys[rows, :, s + n : c]
            layer.keys[rows, :, s : c - n] = kept * self._cos - _rotate_half(kept) * self._sin  # back by n
            layer.values[rows, :, s : c - n] = layer.values[rows, :, s + n : c]
        self.lengths[rows] -= n
        self.evictions[rows] += n

    def _grow(self, positions: int) -> None:
        for layer in self._layers:
            extra = positions - layer.keys.shape[2]
            layer.keys = torch.cat([layer.keys, self._zeros(self.slots, extra)], dim=2)
            layer.values = torch.cat([layer.values, self._zeros(self.slots, extra)], dim=2)

    def keys(self, slot: int, layer: int = 0) -> torch.Tensor:
        """float ``[kv_heads, length, head_dim]`` keys a slot holds in one layer (a view)."""
        return self._layers[layer].keys[slot, :, : int(self.lengths[slot])]

    def values(self, slot: int, layer: int = 0) -> torch.Tensor:
        """float ``[kv_heads, length, head_dim]`` values a slot holds in one layer (a view)."""
        return self._layers[layer].values[slot, :, : int(self.lengths[slot])]

    def nbytes(self, slot: int) -> int:
        """Bytes of keys and values a slot holds now (at most ``capacity`` positions' worth)."""
        per_position = 2 * len(self._layers) * self._shape[0] * self._shape[1] * self._dtype.itemsize
        return int(self.lengths[slot]) * per_position

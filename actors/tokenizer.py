"""Tokenizer stage: frame + flow (``.motion``) → B-Flow tokens of one model step (``.tokens``).

B-Flow v0 (:mod:`models.vision.bflow`): a full key view when the scene changes a lot, flow
tokens in proportion to motion, nothing on a static scene. Tokens per step are counted
in the stream's counters (``tokens``, ``key_views``) and so reported on ``status``. The
steps of all streams in a batch with the same frame size are tokenized in one call
(:meth:`models.vision.bflow.BFlowTokenizer.step_batch`).
"""

from __future__ import annotations

import numpy as np

from actors.stage import Session, Stage
from models.vision.bflow import BFlowState, BFlowTokenizer
from streams import messages as m
from streams.errors import SchemaError


class TokenizerStage(Stage):
    """Turns each stream's frames and flow into B-Flow tokens, one model step each."""

    name = "tokenizer"
    input_kind = "motion"
    output_kind = "tokens"
    accepts = (m.Motion, m.EndOfStream)
    tokenizer = BFlowTokenizer()

    def new_state(self, stream: str) -> BFlowState:
        return BFlowState()

    def process_batch(self, items: list[tuple[Session, m.Message]]) -> list[list[m.Message] | Exception]:
        """Tokens of every step in one call per frame size; end-of-stream one by one."""
        return self.batch_by_key(items, self._prepare, self._run)

    def _prepare(self, session: Session, message: m.Message) -> tuple[tuple[int, ...], tuple[np.ndarray, np.ndarray]]:
        assert isinstance(message, m.Motion)
        rgb = message.image.to_numpy(dtype="uint8", ndim=3)
        flow = message.flow.to_numpy(dtype="float16", ndim=3)
        if flow.shape != (*rgb.shape[:2], 2) or rgb.shape[2] != 3:
            raise SchemaError(
                f"expected uint8 [H, W, 3] and float16 [H, W, 2], got {list(rgb.shape)} and {list(flow.shape)}"
            )
        return rgb.shape, (rgb, flow.astype(np.float32))

    def _run(self, group: list[tuple[Session, m.Message, tuple[np.ndarray, np.ndarray]]]) -> list[list[m.Message]]:
        steps = self.tokenizer.step_batch([session.state for session, _, _ in group],
                                          np.stack([rgb for _, _, (rgb, _) in group]),
                                          np.stack([flow for _, _, (_, flow) in group]))
        out = []
        for (session, message, _), step in zip(group, steps, strict=True):
            session.counters["steps"] += 1
            session.counters["tokens"] += len(step.tokens)
            session.counters["key_views"] += int(step.is_key)
            out.append([m.Tokens(
                stream=session.stream, seq=self.next_seq(session), pts_s=message.pts_s,
                capture_ts=message.capture_ts, step=session.counters["steps"] - 1,
                tokens=m.Array.from_numpy(np.ascontiguousarray(step.tokens, np.float32)),
                is_key=step.is_key, motion_px=float(step.motion_px),
            )])
        return out

"""Tokenizer stage: frame + flow (``.motion``) → B-Flow tokens of one model step (``.tokens``).

B-Flow v0 (:mod:`models.bflow`): a full key view when the scene changes a lot, flow
tokens in proportion to motion, nothing on a static scene. Tokens per step are counted
in the stream's counters (``tokens``, ``key_views``) and so reported on ``status``.
"""

from __future__ import annotations

import numpy as np

from actors.stage import Session, Stage
from models.bflow import BFlowState, BFlowTokenizer
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

    def process(self, session: Session, message: m.Message) -> list[m.Message]:
        assert isinstance(message, m.Motion)
        rgb = message.image.to_numpy(dtype="uint8", ndim=3)
        flow = message.flow.to_numpy(dtype="float16", ndim=3)
        if flow.shape != (*rgb.shape[:2], 2) or rgb.shape[2] != 3:
            raise SchemaError(
                f"expected uint8 [H, W, 3] and float16 [H, W, 2], got {list(rgb.shape)} and {list(flow.shape)}"
            )
        step = self.tokenizer.step(session.state, rgb, flow.astype(np.float32))
        session.counters["steps"] += 1
        session.counters["tokens"] += len(step.tokens)
        session.counters["key_views"] += int(step.is_key)
        return [m.Tokens(
            stream=session.stream, seq=self.next_seq(session), pts_s=message.pts_s,
            capture_ts=message.capture_ts, step=session.counters["steps"] - 1,
            tokens=m.Array.from_numpy(np.ascontiguousarray(step.tokens, np.float32)),
            is_key=step.is_key, motion_px=float(step.motion_px),
        )]

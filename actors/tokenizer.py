"""Tokenizer stage: frame + flow (``.motion``) → B-Flow tokens and key views of one model step (``.tokens``).

B-Flow (:mod:`models.vision.bflow`): a full key view when the scene changes a lot, flow
tokens in proportion to motion, nothing on a static scene. On the steps that
:class:`models.vision.views.KeyViewEncoder` selects (key views, motion starting, a
refresh every few seconds) the pretrained image encoder also looks at the frame and its
features travel as the message's ``views``, followed by the COCO detector's boxes on that
frame (as object rows, or as tracks tagging the object tokens) when the checkpoint was
trained with them; the schedule, encoder and detector are the ones the commentator
checkpoint was trained with (its ``meta["views"]``). Tokens, key views and encoder calls
per step are counted in the stream's counters (``tokens``, ``key_views``,
``encoder_calls``) and so reported on ``status``. The steps of all streams in a batch
with the same frame size are tokenized in one call
(:meth:`models.vision.bflow.BFlowTokenizer.step_batch`) and encoded in one encoder call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from actors.stage import Session, Stage, StageOptions
from models.lm.commentator import read_checkpoint_meta
from models.vision.bflow import BFlowState, BFlowTokenizer
from models.vision.views import KeyViewEncoder, ViewState, viewer_from_meta
from streams import messages as m
from streams.errors import SchemaError


@dataclass
class TokenizerState:
    """Per-stream tokenizer state: B-Flow's and the view schedule's."""

    bflow: BFlowState = field(default_factory=BFlowState)
    views: ViewState = field(default_factory=ViewState)


class TokenizerStage(Stage):
    """Turns each stream's frames and flow into B-Flow tokens and key views, one model step each."""

    name = "tokenizer"
    input_kind = "motion"
    output_kind = "tokens"
    accepts = (m.Motion, m.EndOfStream)
    tokenizer = BFlowTokenizer()

    def __init__(self, options: StageOptions, *, checkpoint: Path | None = None) -> None:
        """
        Args:
            options: Stage options.
            checkpoint: The commentator checkpoint whose view schedule and image encoder
                to use (None, or a checkpoint trained without views: no views).

        Raises:
            CheckpointError: If the checkpoint cannot be read.
            ModelError: If its image encoder is not available (``mmduplex fetch-models``).
        """
        super().__init__(options)
        meta = read_checkpoint_meta(checkpoint) if checkpoint is not None else {}
        self.viewer: KeyViewEncoder | None = viewer_from_meta(meta.get("views"))

    def new_state(self, stream: str) -> TokenizerState:
        return TokenizerState()

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
        states: list[TokenizerState] = [session.state for session, _, _ in group]
        rgbs = np.stack([rgb for _, _, (rgb, _) in group])
        flows = np.stack([flow for _, _, (_, flow) in group])
        steps = self.tokenizer.step_batch([s.bflow for s in states], rgbs, flows)
        views = (self.viewer.step_batch([s.views for s in states], steps, rgbs, flows) if self.viewer is not None
                 else [None] * len(group))
        out: list[list[m.Message]] = []
        for (session, message, _), step, rows in zip(group, steps, views, strict=True):
            session.counters["steps"] += 1
            session.counters["tokens"] += len(step.tokens)
            session.counters["key_views"] += int(step.is_key)
            if rows is not None and len(rows) == 0:
                rows = None  # the viewer took no view at this step
            session.counters["encoder_calls"] += int(rows is not None)
            out.append([m.Tokens(
                stream=session.stream, seq=self.next_seq(session), pts_s=message.pts_s,
                capture_ts=message.capture_ts, step=session.counters["steps"] - 1,
                tokens=m.Array.from_numpy(np.ascontiguousarray(step.tokens, np.float32)),
                is_key=step.is_key, motion_px=float(step.motion_px),
                views=m.Array.from_numpy(rows) if rows is not None else None,
            )])
        return out

"""Flow stage: model-grid frames (``.frames``) → frame + dense optical flow (``.motion``).

The optical flow is :func:`models.vision.flow.optical_flow`, written once against the array
module (CuPy on a GPU, NumPy here). The first frame of a stream gets zero flow. The
frames of all streams in a batch that have the same size are solved in one batched
call (:meth:`FlowStage.process_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actors.stage import Session, Stage
from models.vision.flow import optical_flow, to_luma, to_numpy
from streams import messages as m
from streams.errors import SchemaError


@dataclass
class FlowState:
    """Per-stream flow state.

    Attributes:
        prev_luma: float32 [H, W] luma of the previous frame in [0, 1], or None.
    """

    prev_luma: np.ndarray | None = None


class FlowStage(Stage):
    """Estimates dense optical flow between consecutive model-grid frames of each stream."""

    name = "flow"
    input_kind = "frames"
    output_kind = "motion"
    accepts = (m.Frame, m.EndOfStream)

    def new_state(self, stream: str) -> FlowState:
        return FlowState()

    def process_batch(self, items: list[tuple[Session, m.Message]]) -> list[list[m.Message] | Exception]:
        """Flow of every frame in one call per frame size; end-of-stream one by one."""
        return self.batch_by_key(items, self._prepare, self._run)

    def _prepare(self, session: Session, message: m.Message) -> tuple[tuple[int, ...], np.ndarray]:
        assert isinstance(message, m.Frame)
        rgb = message.image.to_numpy(dtype="uint8", ndim=3)
        if rgb.shape[2] != 3:
            raise SchemaError(f"expected uint8 [H, W, 3] RGB, got uint8 {list(rgb.shape)}")
        luma = to_luma(rgb)
        return luma.shape, luma

    def _run(self, group: list[tuple[Session, m.Message, np.ndarray]]) -> list[list[m.Message]]:
        lumas = [luma for _, _, luma in group]
        flows = [np.zeros((*luma.shape, 2), np.float32) for luma in lumas]
        paired = [i for i, (session, _, luma) in enumerate(group)
                  if session.state.prev_luma is not None and session.state.prev_luma.shape == luma.shape]
        if paired:
            prev = np.stack([group[i][0].state.prev_luma for i in paired])
            solved = to_numpy(optical_flow(prev, np.stack([lumas[i] for i in paired])))
            for k, i in enumerate(paired):
                flows[i] = solved[k]
        out: list[list[m.Message]] = []
        for (session, message, luma), flow in zip(group, flows, strict=True):
            assert isinstance(message, m.Frame)  # _prepare let only frames through
            session.state.prev_luma = luma
            out.append([m.Motion(
                stream=session.stream, seq=self.next_seq(session), pts_s=message.pts_s,
                capture_ts=message.capture_ts, image=message.image,
                flow=m.Array.from_numpy(np.asarray(flow, np.float16)),
            )])
        return out

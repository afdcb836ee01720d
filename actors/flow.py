"""Flow stage: model-grid frames (``.frames``) → frame + dense optical flow (``.motion``).

The optical flow is :func:`models.flow.optical_flow`, written once against the array
module (CuPy on a GPU, NumPy here). The first frame of a stream gets zero flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actors.stage import Session, Stage
from models.flow import optical_flow, to_luma, to_numpy
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

    def process(self, session: Session, message: m.Message) -> list[m.Message]:
        assert isinstance(message, m.Frame)
        rgb = message.image.to_numpy(dtype="uint8", ndim=3)
        if rgb.shape[2] != 3:
            raise SchemaError(f"expected uint8 [H, W, 3] RGB, got uint8 {list(rgb.shape)}")
        luma = to_luma(rgb)
        state: FlowState = session.state
        if state.prev_luma is None or state.prev_luma.shape != luma.shape:
            flow = np.zeros((*luma.shape, 2), np.float32)
        else:
            flow = to_numpy(optical_flow(state.prev_luma, luma))
        state.prev_luma = luma
        return [m.Motion(
            stream=session.stream, seq=self.next_seq(session), pts_s=message.pts_s,
            capture_ts=message.capture_ts, image=message.image,
            flow=m.Array.from_numpy(np.asarray(flow, np.float16)),
        )]

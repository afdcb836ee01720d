"""Decoder stage: compressed packets (``.video``) → model-grid frames (``.frames``).

Uses :class:`models.vision.video.VideoDecoder` (PyAV/FFmpeg: any codec FFmpeg decodes). It
waits for the stream header, then for a keyframe; corrupt packets are counted and
skipped; frames are resampled to the model's rate and size. Each stream's header is
kept in the ``mmd-headers`` key–value bucket, so a replica that takes the stream over
from one that died opens the codec from it and resumes at the next keyframe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

from actors.stage import Session, Stage
from models.vision.video import CodecParams, ModelFrame, ModelGrid, VideoDecoder
from streams import messages as m
from streams.errors import CorruptPacketError, MediaError, OversizedFrameError, SessionError

log = logging.getLogger(__name__)

#: Largest compressed packet accepted, in bytes (NATS' default max payload).
MAX_PACKET_BYTES = 1 << 20


def codec_params_from_header(header: m.StreamHeader) -> CodecParams:
    """Every codec parameter a stream header carries (see :func:`models.vision.video.codec_params`)."""
    return CodecParams(**{f.name: getattr(header, f.name) for f in fields(CodecParams)})


@dataclass
class DecoderState:
    """Per-stream decoder state.

    Attributes:
        decoder: The open decoder, None until the stream header arrives.
        failed: Why the stream cannot be decoded (unknown codec, oversized, invalid
            codec parameters), or "".
        capture_ts: Capture time of the last packet fed to the decoder (Unix seconds).
    """

    decoder: VideoDecoder | None = None
    failed: str = ""
    capture_ts: float = 0.0


class DecoderStage(Stage):
    """Decodes each stream's packets with PyAV and resamples to the model grid."""

    name = "decoder"
    opens_sessions = True
    input_kind = "video"
    output_kind = "frames"
    accepts = (m.StreamHeader, m.VideoPacket, m.EndOfStream)
    grid = ModelGrid()

    def new_state(self, stream: str) -> DecoderState:
        return DecoderState()

    async def on_accept(self, session: Session, message: m.Message, raw: bytes) -> None:
        if isinstance(message, m.StreamHeader) and self.membership is not None:
            try:
                await self.membership.headers.put(session.stream, raw)
            except Exception as exc:  # the stream goes on; only a takeover would miss it
                log.warning("decoder: stream %s: header not stored: %s", session.stream, exc)

    async def on_takeover(self, session: Session) -> None:
        assert self.membership is not None
        try:
            entry = await self.membership.headers.get(session.stream)
            header = m.decode(entry.value, m.StreamHeader)
        except Exception as exc:
            await self.report(session.stream, "error", "session",
                              f"decoder: took the stream over but its header is unavailable: {exc}", session)
            return
        session.queue.appendleft(header)

    def on_drop(self, session: Session) -> None:
        # Later packets reference the dropped ones: restart at the next keyframe.
        decoder = session.state.decoder
        if decoder is not None:
            session.state.decoder = VideoDecoder(decoder.params, grid=self.grid)

    def process(self, session: Session, message: m.Message) -> list[m.Message]:
        state: DecoderState = session.state
        if isinstance(message, m.StreamHeader):
            try:
                state.decoder = VideoDecoder(codec_params_from_header(message), grid=self.grid)
                state.failed = ""
            except MediaError as exc:  # unknown codec, oversized, invalid parameters
                state.failed = str(exc)
                raise
            return []
        assert isinstance(message, m.VideoPacket)
        if state.decoder is None:
            session.counters["dropped.no_header"] += 1
            raise SessionError(state.failed or "video packet before the stream header: dropped")
        if len(message.data) > MAX_PACKET_BYTES:
            raise OversizedFrameError(f"packet of {len(message.data)} bytes exceeds {MAX_PACKET_BYTES}")
        state.capture_ts = message.capture_ts
        decoder = state.decoder
        skipped, decoded = decoder.skipped_before_keyframe, decoder.decoded
        try:
            frames = decoder.decode(message.data, pts_s=message.pts_s, keyframe=message.keyframe)
        finally:
            session.counters["skipped_before_keyframe"] += decoder.skipped_before_keyframe - skipped
            session.counters["decoded"] += decoder.decoded - decoded
        return self._frames(session, frames)

    def finish(self, session: Session, message: m.EndOfStream) -> list[m.Message]:
        state: DecoderState = session.state
        frames: list[ModelFrame] = []
        if state.decoder is not None:
            try:
                frames = state.decoder.flush()
            except CorruptPacketError as exc:  # counted; the end of stream must still go downstream
                session.counters[f"errors.{exc.code}"] += 1
                log.warning("decoder: stream %s: %s", session.stream, exc)
        return [*self._frames(session, frames), self.forward_eos(session, message)]

    def _frames(self, session: Session, frames: list) -> list[m.Message]:
        out: list[m.Message] = []
        for frame in frames:
            session.counters["frames"] += 1
            out.append(m.Frame(
                stream=session.stream, seq=self.next_seq(session), pts_s=frame.pts_s,
                capture_ts=session.state.capture_ts, image=m.Array.from_numpy(frame.rgb),
            ))
        return out

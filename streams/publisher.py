"""Broadcaster side: demux a video with PyAV and publish its compressed packets to NATS.

No re-encode: the stream header (codec parameters) goes first, then every packet as
demuxed, then an end-of-stream message. With ``realtime`` the packets are paced on the
stream's own clock (its pts), as a live source would send them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import nats.errors
from nats.aio.client import Client as NATS

from models.vision.video import codec_params, open_container, packet_time_s
from streams import messages as m
from streams.bus import connect
from streams.errors import MediaError, SessionError, TransportError, error_from_code
from streams.subjects import session_subject, stream_subject, validate_stream_id

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    """What a publish run sent.

    Attributes:
        packets: Video packets published.
        bytes: Compressed bytes published.
        duration_s: Media time covered, seconds.
        loops: Times the source was played.
    """

    packets: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    loops: int = 0


async def open_session(nc: NATS, stream: str, *, prefix: str, timeout_s: float = 5.0) -> m.SessionReply:
    """Ask the session controller to open ``stream``.

    Raises:
        SessionError: If no controller answers or it refuses (e.g. ``CapacityError``).
    """
    request = m.encode(m.OpenSession(stream=stream))
    try:
        msg = await nc.request(session_subject("open", prefix=prefix), request, timeout=timeout_s)
    except Exception as exc:
        raise SessionError(f"no MM-Duplex session controller answered on NATS ({type(exc).__name__}): "
                           "is the app running?") from None
    reply = m.decode(msg.data, m.SessionReply)
    if not reply.ok:
        raise error_from_code(reply.error_code, f"session {stream!r} refused: {reply.error_code}: {reply.error}")
    return reply


async def close_session(nc: NATS, stream: str, *, prefix: str, timeout_s: float = 5.0) -> None:
    """Tell the session controller that ``stream`` ended (best effort)."""
    try:
        await nc.request(session_subject("close", prefix=prefix), m.encode(m.CloseSession(stream=stream)),
                         timeout=timeout_s)
    except Exception as exc:
        log.warning("closing session %s: %s", stream, exc)


async def publish(
    source: str,
    *,
    stream: str,
    nats_url: str,
    prefix: str = "mmd",
    realtime: bool = True,
    loop: int = 1,
    max_seconds: float | None = None,
    open_with_controller: bool = True,
    on_packet: Callable[[float], None] | None = None,
    start_s: float = 0.0,
) -> PublishResult:
    """Publish a video source to ``<prefix>.live.<stream>.video``.

    Args:
        source: File path, URL PyAV can open (rtsp, srt, http), or ``-`` for MPEG-TS on stdin.
        stream: Stream id.
        nats_url: NATS server URL.
        prefix: Subject prefix.
        realtime: Pace packets on the stream's clock (else as fast as possible).
        loop: Times to play the source (media time keeps increasing across loops).
        max_seconds: Stop after this much media time, seconds.
        open_with_controller: Open/close the session with the session controller.
        on_packet: Called with each packet's media time (for progress bars).
        start_s: Begin the first play of a file at its last keyframe at or before this
            source time, seconds (later loops start at the beginning); media time still
            starts at 0. Load tests use it so that streams of one file are not in lockstep.

    Returns:
        Counts of what was sent.

    Raises:
        StreamIdError: If ``stream`` is invalid.
        MediaError: If the source cannot be opened or read.
        SessionError: If the controller refuses or does not answer.
        TransportError: If NATS cannot be reached or goes away.
    """
    validate_stream_id(stream)
    # Demuxing a network source or stdin blocks until data comes: read its packets in a
    # thread. A local file reads at once: no thread hop per packet.
    from_file = Path(source).is_file()
    container = await asyncio.to_thread(open_container, source)
    closed = asyncio.Event()
    nc = await connect(nats_url, name=f"mmd-publish-{stream}", max_reconnect_attempts=3, on_closed=closed)
    subject = stream_subject(stream, "video", prefix=prefix)
    result = PublishResult()
    seq = 0
    try:
        if open_with_controller:
            await open_session(nc, stream, prefix=prefix)
        video = container.streams.video[0]
        params = codec_params(video)
        header = m.StreamHeader(
            stream=stream, seq=seq, pts_s=0.0, capture_ts=m.now(), source=source, **asdict(params))
        await nc.publish(subject, m.encode(header))
        seq += 1
        offset_s = 0.0
        start_wall = time.monotonic()
        last_pts_s = 0.0
        for index in range(max(1, loop)):
            if index > 0:
                container.close()
                container = await asyncio.to_thread(open_container, source)
                video = container.streams.video[0]
            if index == 0 and start_s > 0 and from_file and video.time_base:
                container.seek(int(start_s / video.time_base), stream=video, backward=True, any_frame=False)
            first_pts_s: float | None = None
            loop_end_s = offset_s
            packets = container.demux(video)
            while (packet := next(packets, None) if from_file else await asyncio.to_thread(next, packets, None)) \
                    is not None:
                if packet.size == 0:
                    continue
                raw_pts = packet_time_s(packet)
                if raw_pts is not None and first_pts_s is None:
                    first_pts_s = raw_pts
                pts_s = offset_s + (raw_pts - (first_pts_s or 0.0) if raw_pts is not None else last_pts_s - offset_s)
                if max_seconds is not None and pts_s > max_seconds:
                    break
                if realtime:
                    delay = start_wall + pts_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if closed.is_set() or nc.is_closed:
                    raise TransportError(f"NATS connection to {nats_url} was lost")
                data = bytes(packet)
                await nc.publish(subject, m.encode(m.VideoPacket(
                    stream=stream, seq=seq, pts_s=pts_s, capture_ts=m.now(), data=data,
                    duration_s=float(packet.duration * packet.time_base) if packet.duration else 0.0,
                    keyframe=packet.is_keyframe,
                )))
                seq += 1
                result.packets += 1
                result.bytes += len(data)
                last_pts_s = pts_s
                loop_end_s = max(loop_end_s, pts_s + (1.0 / params.fps_hz if params.fps_hz else 0.04))
                if on_packet is not None:
                    on_packet(pts_s)
            result.loops += 1
            offset_s = loop_end_s
            if max_seconds is not None and last_pts_s >= max_seconds - 0.05:
                break
        result.duration_s = last_pts_s
        await nc.publish(subject, m.encode(m.EndOfStream(stream=stream, seq=seq, pts_s=last_pts_s, capture_ts=m.now())))
        await nc.flush(timeout=5)
        if open_with_controller:
            await close_session(nc, stream, prefix=prefix)
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot read {source!r}: {exc}") from None
    except (nats.errors.Error, ConnectionError) as exc:
        raise TransportError(f"NATS connection to {nats_url} was lost: {type(exc).__name__}") from None
    finally:
        container.close()
        if not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), timeout=5)
            except Exception:
                pass
    return result

"""Session controller: answers ``<prefix>.sessions.open`` / ``.close`` (request–reply).

Sessions are kept in a NATS JetStream key–value bucket, so the controller can restart
without losing them. v0 runs one replica per stage, each subscribed to every stream, so
opening a session validates the stream id, checks the capacity and records the session;
per-replica assignment comes with the control plane (issue 4).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from streams import messages as m
from streams.bus import connect
from streams.errors import CapacityError, MMDError, SchemaError, SessionError
from streams.subjects import STREAM_SUBJECTS, session_subject, stream_subject, validate_stream_id

log = logging.getLogger(__name__)

SESSIONS_BUCKET = "mmd-sessions"


class SessionRecord(msgspec.Struct, frozen=True):
    """What the controller stores per open session in the key–value bucket.

    Attributes:
        stream: Stream id.
        opened_ts: Wall-clock time the session was opened (Unix seconds).
    """

    stream: str
    opened_ts: float


@dataclass
class ControllerOptions:
    """Options of the session controller.

    Attributes:
        nats_url: NATS server URL.
        prefix: Subject prefix.
        max_sessions: Sessions the system holds; further ``open`` requests get a
            capacity error.
        model_fps_hz: Model step rate announced to broadcasters, in Hz.
    """

    nats_url: str
    prefix: str = "mmd"
    max_sessions: int = 16
    model_fps_hz: float = 5.0


class SessionController:
    """Opens and closes sessions; its state lives in JetStream KV (:data:`SESSIONS_BUCKET`)."""

    def __init__(self, options: ControllerOptions) -> None:
        self.options = options
        self._nc: Any = None
        self._kv: Any = None

    async def start(self) -> None:
        """Connect, open the sessions bucket and answer open/close requests.

        Raises:
            TransportError: If NATS cannot be reached.
        """
        self._nc = await connect(self.options.nats_url, name="mmd-controller", max_reconnect_attempts=-1)
        self._kv = await self._nc.jetstream().create_key_value(bucket=SESSIONS_BUCKET)
        await self._nc.subscribe(session_subject("open", prefix=self.options.prefix), cb=self._on_open)
        await self._nc.subscribe(session_subject("close", prefix=self.options.prefix), cb=self._on_close)
        log.info("session controller on %s (%d sessions open)", self.options.nats_url, len(await self.sessions()))

    async def sessions(self) -> list[str]:
        """Stream ids of the open sessions."""
        try:
            return sorted(await self._kv.keys())
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return []

    def check_health(self) -> None:
        """Raise if the controller's NATS connection is gone."""
        if self._nc is None or self._nc.is_closed:
            raise RuntimeError(f"controller: NATS connection to {self.options.nats_url} is closed")

    async def stop(self) -> None:
        """Drain the NATS connection."""
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=5.0)
            except Exception as exc:
                log.warning("controller: NATS drain failed: %s", exc)

    async def _on_open(self, msg: Any) -> None:
        stream = ""
        try:
            request = m.decode(msg.data, m.OpenSession)
            stream = validate_stream_id(request.stream)
            open_now = await self.sessions()
            if stream not in open_now and len(open_now) >= self.options.max_sessions:
                raise CapacityError(f"system is full: {len(open_now)} of {self.options.max_sessions} sessions open")
            await self._kv.put(stream, msgspec.msgpack.encode(SessionRecord(stream, time.time())))
            reply = m.SessionReply(
                ok=True, stream=stream,
                subjects={kind: stream_subject(stream, kind, prefix=self.options.prefix) for kind in STREAM_SUBJECTS},
                max_payload_bytes=self._nc.max_payload, model_fps_hz=self.options.model_fps_hz,
            )
            log.info("session %s opened", stream)
        except MMDError as exc:
            reply = m.SessionReply(ok=False, stream=stream, error_code=exc.code, error=str(exc))
        await msg.respond(m.encode(reply))

    async def _on_close(self, msg: Any) -> None:
        stream = ""
        try:
            request = m.decode(msg.data, m.CloseSession)
            stream = validate_stream_id(request.stream)
            if stream not in await self.sessions():
                raise SessionError(f"no open session {stream!r}")
            await self._kv.delete(stream)
            reply = m.SessionReply(ok=True, stream=stream)
            log.info("session %s closed", stream)
        except (MMDError, SchemaError) as exc:
            reply = m.SessionReply(ok=False, stream=stream, error_code=exc.code, error=str(exc))
        await msg.respond(m.encode(reply))

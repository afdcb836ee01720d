"""Session controller: opens and closes sessions and keeps every stream on a live replica.

Answers ``<prefix>.sessions.open`` / ``.close`` (request–reply). Opening a session
assigns the stream one replica per stage, least-loaded first among the live replicas
with room (load = streams assigned; capacity and liveness from the replicas'
heartbeats); when every replica of a stage is full the request gets a
:class:`~streams.errors.CapacityError` and running sessions are untouched. Opening an
open session returns its assignment (replicas ask on behalf of streams that publish
without opening one).

A supervisor loop runs every :data:`SUPERVISE_PERIOD_S`: a stream assigned to a replica
whose heartbeat stopped is moved to another live replica of that stage (the session
record keeps the last input ``seq`` the dead replica handled, so the new one counts
what was lost), and a session none of whose replicas has seen a message for
``idle_timeout_s`` is closed. Every such event is reported on the stream's ``status``.
All state lives in the key–value buckets of :mod:`actors.placement`, so the controller
can restart (Serve restarts it) without losing a session or an assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from actors.placement import (
    STAGES,
    KVMirror,
    ReplicaRecord,
    SessionRecord,
    decode_replica,
    decode_session,
    open_buckets,
)
from streams import messages as m
from streams.bus import connect
from streams.errors import CapacityError, MMDError, SchemaError, SessionError
from streams.subjects import STREAM_SUBJECTS, session_subject, stream_subject, validate_stream_id

log = logging.getLogger(__name__)

#: Seconds between two passes of the supervisor (failover and idle sessions).
SUPERVISE_PERIOD_S = 0.25


@dataclass
class ControllerOptions:
    """Options of the session controller.

    Attributes:
        nats_url: NATS server URL.
        prefix: Subject prefix.
        max_sessions: Sessions the system holds at most, whatever the replicas' room.
        model_fps_hz: Model step rate announced to broadcasters, in Hz.
        idle_timeout_s: A session no replica has seen a message of for this long is
            closed, in seconds.
        stages: Stages a session needs a replica of.
    """

    nats_url: str
    prefix: str = "mmd"
    max_sessions: int = 16
    model_fps_hz: float = 5.0
    idle_timeout_s: float = 60.0
    stages: tuple[str, ...] = STAGES


class SessionController:
    """Opens, closes, assigns and reassigns sessions (see the module docstring)."""

    def __init__(self, options: ControllerOptions) -> None:
        self.options = options
        self._nc: Any = None
        self._kv: Any = None
        self._headers: Any = None
        self._sessions: KVMirror[SessionRecord] | None = None
        self._replicas: KVMirror[ReplicaRecord] | None = None
        self._last_beat: dict[str, ReplicaRecord] = {}  # replica id -> its last heartbeat seen
        self._status_seq = 0
        self._pending: set[tuple[str, str]] = set()  # (stream, stage) waiting for a live replica
        self._lock = asyncio.Lock()  # open, close and the supervisor change records one at a time
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, load the buckets and answer open/close requests.

        Raises:
            TransportError: If NATS or JetStream cannot be reached.
        """
        self._nc = await connect(self.options.nats_url, name="mmd-controller", max_reconnect_attempts=-1)
        self._kv, replicas, self._headers = await open_buckets(self._nc.jetstream())
        self._sessions = KVMirror(self._kv, decode_session)
        self._replicas = KVMirror(replicas, decode_replica)
        await self._sessions.start()
        await self._replicas.start()
        await self._nc.subscribe(session_subject("open", prefix=self.options.prefix), cb=self._on_open)
        await self._nc.subscribe(session_subject("close", prefix=self.options.prefix), cb=self._on_close)
        self._task = asyncio.create_task(self._supervise_loop())
        log.info("session controller on %s (%d sessions open, %d replicas live)", self.options.nats_url,
                 len(self._records), len(self.live_replicas()))

    @property
    def _records(self) -> dict[str, SessionRecord]:
        """Stream id → record of every open session, as the KV watcher last saw it."""
        assert self._sessions is not None, "the controller is not started"
        return self._sessions.items

    def live_replicas(self, now: float | None = None) -> dict[str, ReplicaRecord]:
        """Replica id → last heartbeat, for the replicas heard from within the TTL."""
        if self._replicas is None:
            return {}
        now = time.time() if now is None else now
        return {r.replica: r for r in self._replicas.items.values() if r.alive(now)}

    def check_health(self) -> None:
        """Raise if the controller's NATS connection is gone."""
        if self._nc is None or self._nc.is_closed:
            raise RuntimeError(f"controller: NATS connection to {self.options.nats_url} is closed")

    async def stop(self) -> None:
        """Stop supervising and drain the NATS connection."""
        if self._task is not None:
            self._task.cancel()
        for mirror in (self._sessions, self._replicas):
            if mirror is not None:
                await mirror.stop()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=5.0)
            except Exception as exc:
                log.warning("controller: NATS drain failed: %s", exc)

    # -- assignment -------------------------------------------------------------
    def _choose(self, stage: str, live: dict[str, ReplicaRecord]) -> str:
        """The least-loaded live replica of ``stage`` with room.

        Raises:
            CapacityError: If the stage has no live replica, or every one is full.
        """
        load: dict[str, int] = {r.replica: 0 for r in live.values() if r.stage == stage}
        if not load:
            raise CapacityError(f"no live {stage} replica")
        for record in self._records.values():
            replica = record.replicas.get(stage)
            if replica in load:
                load[replica] += 1
        room = [(n, replica) for replica, n in load.items() if n < live[replica].capacity]
        if not room:
            raise CapacityError(f"every {stage} replica is full ({sum(load.values())} streams on {len(load)} "
                                f"replicas)")
        return min(room)[1]

    async def _put(self, record: SessionRecord) -> None:
        await self._kv.put(record.stream, msgspec.msgpack.encode(record))
        self._records[record.stream] = record  # the watcher confirms it

    async def _delete(self, stream: str) -> None:
        await self._kv.delete(stream)
        self._records.pop(stream, None)
        try:
            await self._headers.delete(stream)
        except Exception:  # no header stored: nothing to remove
            pass

    async def _report(
        self, stream: str, level: m.StatusLevel, code: str, message: str, counters: dict[str, int]
    ) -> None:
        if level != "info":
            log.warning("controller: stream %s: %s: %s", stream, code, message)
        self._status_seq += 1
        status = m.Status(stream=stream, seq=self._status_seq, pts_s=0.0, capture_ts=m.now(), stage="controller",
                          level=level, code=code, message=message, counters=counters)
        try:
            await self._nc.publish(stream_subject(stream, "status", prefix=self.options.prefix), m.encode(status))
        except Exception as exc:
            log.warning("controller: status for stream %s not sent: %s", stream, exc)

    # -- request handlers ---------------------------------------------------------
    async def _on_open(self, msg: Any) -> None:
        stream = ""
        try:
            request = m.decode(msg.data, m.OpenSession)
            stream = validate_stream_id(request.stream)
            async with self._lock:
                record = self._records.get(stream)
                if record is None:
                    if len(self._records) >= self.options.max_sessions:
                        raise CapacityError(f"system is full: {len(self._records)} of "
                                            f"{self.options.max_sessions} sessions open")
                    live = self.live_replicas()
                    replicas = {stage: self._choose(stage, live) for stage in self.options.stages}
                    record = SessionRecord(stream=stream, opened_ts=time.time(), replicas=replicas)
                    await self._put(record)
                    log.info("session %s opened on %s", stream, ", ".join(replicas.values()))
            reply = m.SessionReply(
                ok=True, stream=stream,
                subjects={kind: stream_subject(stream, kind, prefix=self.options.prefix) for kind in STREAM_SUBJECTS},
                max_payload_bytes=self._nc.max_payload, model_fps_hz=self.options.model_fps_hz,
                replicas=dict(record.replicas),
            )
        except MMDError as exc:
            reply = m.SessionReply(ok=False, stream=stream, error_code=exc.code, error=str(exc))
        except Exception as exc:  # KV unavailable: a typed answer rather than a timeout
            log.exception("controller: open %s failed", stream)
            reply = m.SessionReply(ok=False, stream=stream, error_code="transport",
                                   error=f"{type(exc).__name__}: {exc}")
        await msg.respond(m.encode(reply))

    async def _on_close(self, msg: Any) -> None:
        stream = ""
        try:
            request = m.decode(msg.data, m.CloseSession)
            stream = validate_stream_id(request.stream)
            async with self._lock:
                if stream not in self._records:
                    raise SessionError(f"no open session {stream!r}")
                await self._delete(stream)
            reply = m.SessionReply(ok=True, stream=stream)
            log.info("session %s closed", stream)
        except (MMDError, SchemaError) as exc:
            reply = m.SessionReply(ok=False, stream=stream, error_code=exc.code, error=str(exc))
        await msg.respond(m.encode(reply))

    # -- supervision --------------------------------------------------------------
    async def _supervise_loop(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_PERIOD_S)
            try:
                async with self._lock:
                    await self.supervise()
            except Exception:  # NATS reconnecting: the next pass retries
                log.exception("controller: supervision pass failed")

    async def supervise(self, now: float | None = None) -> None:
        """One pass: move streams off dead replicas, close idle sessions."""
        now = time.time() if now is None else now
        live = self.live_replicas(now)
        self._last_beat.update(live)
        active = {stream for r in live.values() for stream in r.streams}
        for stream, record in list(self._records.items()):
            if stream not in active and now - record.opened_ts > self.options.idle_timeout_s:
                await self._delete(stream)
                await self._report(stream, "warning", "idle_timeout",
                                   f"controller: session closed after {self.options.idle_timeout_s:.0f} s "
                                   f"without a message", {})
                continue
            dead = {stage: rid for stage, rid in record.replicas.items() if rid not in live}
            if dead:
                await self._reassign(record, dead, live)

    async def _reassign(self, record: SessionRecord, dead: dict[str, str], live: dict[str, ReplicaRecord]) -> None:
        replicas, resume = dict(record.replicas), dict(record.resume)
        moved = []
        for stage, rid in dead.items():
            try:
                new = self._choose(stage, live)
            except CapacityError as exc:
                if (record.stream, stage) not in self._pending:
                    self._pending.add((record.stream, stage))
                    await self._report(record.stream, "error", "failover_pending",
                                       f"controller: {stage} replica {rid} stopped; waiting for room: {exc}", {})
                continue
            self._pending.discard((record.stream, stage))
            last = self._last_beat.get(rid)
            resume[stage] = last.streams.get(record.stream, -1) if last else -1
            replicas[stage] = new
            moved.append(f"{stage} {rid} -> {new}")
        if not moved:
            return
        await self._put(msgspec.structs.replace(record, replicas=replicas, resume=resume, epoch=record.epoch + 1))
        await self._report(record.stream, "warning", "failover",
                           "controller: replica stopped heartbeating; moved " + "; ".join(moved),
                           {"failovers": record.epoch + 1})

"""The control plane's shared state: which replica of each stage serves which stream.

Three NATS JetStream key–value buckets hold it, so that the session controller and the
replicas can restart without losing it:

* ``mmd-sessions`` — one :class:`SessionRecord` per open session (key: stream id): the
  replica of each stage it is assigned to, written by the controller;
* ``mmd-replicas`` — one :class:`ReplicaRecord` per live stage replica (key:
  ``<stage>.<replica>``), its heartbeat: capacity and the streams it holds, rewritten
  every :data:`HEARTBEAT_PERIOD_S`; the bucket's TTL removes replicas that stop;
* ``mmd-headers`` — each stream's :class:`~streams.messages.StreamHeader`, so that a
  decoder replica that takes a stream over can open its codec.

Every stage replica subscribes to its input subject of every stream but handles only
the streams assigned to it (:class:`Membership`); a message of a stream it has no
assignment for is held back (bounded) while it asks the controller to open the session
(idempotent), so a broadcaster that just publishes gets a session too. When the
controller moves a stream after a replica died, the new replica starts it afresh (at
the next keyframe / model step) and counts the input messages lost in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import msgspec

from streams.errors import TransportError
from streams.publisher import open_session

log = logging.getLogger(__name__)

SESSIONS_BUCKET = "mmd-sessions"
REPLICAS_BUCKET = "mmd-replicas"
HEADERS_BUCKET = "mmd-headers"
#: Seconds between a replica's heartbeats.
HEARTBEAT_PERIOD_S = 0.5
#: A replica whose last heartbeat is older than this is dead, in seconds.
REPLICA_TTL_S = 2.5
#: The pipeline stages a session needs, in data-flow order.
STAGES = ("decoder", "flow", "tokenizer", "commentator", "tts")


class SessionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the controller stores per open session.

    Attributes:
        stream: Stream id.
        opened_ts: Wall-clock time the session was opened (Unix seconds).
        replicas: Replica id per stage name.
        epoch: Number of reassignments so far (0 when opened).
        resume: Per stage that was reassigned, the last input ``seq`` its dead replica
            had handled (-1 if none): the new replica counts what came after as lost.
    """

    stream: str
    opened_ts: float
    replicas: dict[str, str] = msgspec.field(default_factory=dict)
    epoch: int = 0
    resume: dict[str, int] = msgspec.field(default_factory=dict)


class ReplicaRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stage replica's heartbeat.

    Attributes:
        stage: Stage name.
        replica: Replica id (``<stage>-<tag>``, the tag being Serve's replica id).
        capacity: Streams the replica holds at most.
        streams: Per stream it holds, the last input ``seq`` it has handled (-1 if none).
        ts: Wall-clock time of the heartbeat (Unix seconds).
    """

    stage: str
    replica: str
    capacity: int
    streams: dict[str, int]
    ts: float

    def alive(self, now: float | None = None) -> bool:
        """Whether the heartbeat is fresher than :data:`REPLICA_TTL_S`."""
        return (now if now is not None else time.time()) - self.ts < REPLICA_TTL_S


T = TypeVar("T")


class KVMirror(Generic[T]):
    """An in-memory copy of a key–value bucket, kept current by a watcher.

    Attributes:
        items: Key → decoded value of the keys present now.
    """

    def __init__(self, kv: Any, decode: Callable[[bytes], T], *,
                 on_change: Callable[[str, T | None], Awaitable[None]] | None = None) -> None:
        """
        Args:
            kv: A nats-py ``KeyValue``.
            decode: Bytes → value (undecodable values are logged and skipped).
            on_change: Awaited after each change with the key and its new value (None:
                deleted or expired), once the initial values are loaded.
        """
        self.kv, self.decode, self.on_change = kv, decode, on_change
        self.items: dict[str, T] = {}
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts watching and waits until the current values are loaded."""
        watcher = await self.kv.watchall()
        self._task = asyncio.create_task(self._run(watcher))
        await asyncio.wait_for(self.ready.wait(), timeout=10.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self, watcher: Any) -> None:
        async for entry in watcher:
            if entry is None:  # end of the initial values
                self.ready.set()
                continue
            key = entry.key
            value: T | None = None
            if entry.operation is None and entry.value:
                try:
                    value = self.decode(entry.value)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("bucket %s: key %s: undecodable value skipped: %s", entry.bucket, key, exc)
                    continue
            if value is None:
                self.items.pop(key, None)
            else:
                self.items[key] = value
            if self.on_change is not None and self.ready.is_set():
                try:
                    await self.on_change(key, value)
                except Exception:  # a handler bug must not stop the mirror
                    log.exception("bucket %s: change handler failed for %s", entry.bucket, key)


async def open_buckets(js: Any) -> tuple[Any, Any, Any]:
    """The sessions, replicas and headers buckets (created if missing).

    Raises:
        TransportError: If JetStream is not available on the server.
    """
    try:
        sessions = await js.create_key_value(bucket=SESSIONS_BUCKET)
        replicas = await js.create_key_value(bucket=REPLICAS_BUCKET, ttl=REPLICA_TTL_S * 4)
        headers = await js.create_key_value(bucket=HEADERS_BUCKET)
    except Exception as exc:
        raise TransportError(f"JetStream key-value buckets unavailable (is JetStream enabled?): {exc}") from exc
    return sessions, replicas, headers


def decode_session(data: bytes) -> SessionRecord:
    return msgspec.msgpack.decode(data, type=SessionRecord)


def decode_replica(data: bytes) -> ReplicaRecord:
    return msgspec.msgpack.decode(data, type=ReplicaRecord)


class Membership:
    """A stage replica's side of the control plane: heartbeats and assignments.

    Keeps a mirror of the sessions bucket and answers :meth:`owner`; asks the controller
    to open the sessions of streams it does not know (:meth:`claim`); publishes a
    heartbeat with the streams it holds every :data:`HEARTBEAT_PERIOD_S`.
    """

    def __init__(self, nc: Any, *, stage: str, capacity: int, prefix: str,
                 progress: Callable[[], dict[str, int]],
                 on_assignment: Callable[[str, SessionRecord | None], Awaitable[None]],
                 tag: str | None = None) -> None:
        """
        Args:
            nc: Connected NATS client.
            stage: Stage name.
            capacity: Streams this replica holds at most.
            prefix: Subject prefix (for ``sessions.open``).
            progress: Stream → last input seq handled, for the heartbeat.
            on_assignment: Awaited when a session record changes (None: session closed).
            tag: Unique tag of the replica (Serve's replica id, so that an operator can
                find its actor); default: random. The replica id is ``<stage>-<tag>``.
        """
        self.nc, self.stage, self.capacity, self.prefix = nc, stage, capacity, prefix
        self.replica_id = f"{stage}-{tag or uuid.uuid4().hex[:8]}"
        self.progress = progress
        self.on_assignment = on_assignment
        self.sessions: KVMirror[SessionRecord] | None = None
        self.headers: Any = None
        self._replicas: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Opens the buckets, loads the assignments and starts heartbeating.

        Raises:
            TransportError: If JetStream is unavailable.
        """
        sessions, self._replicas, self.headers = await open_buckets(self.nc.jetstream())
        self.sessions = KVMirror(sessions, decode_session, on_change=self.on_assignment)
        await self.sessions.start()
        await self._beat()
        self._task = asyncio.create_task(self._heartbeat_loop())

    async def stop(self) -> None:
        """Stops heartbeating and removes this replica's heartbeat (the controller moves its streams)."""
        if self._task is not None:
            self._task.cancel()
        if self.sessions is not None:
            await self.sessions.stop()
        try:
            await self._replicas.delete(f"{self.stage}.{self.replica_id}")
        except Exception as exc:  # best effort on shutdown
            log.debug("%s: heartbeat not removed: %s", self.replica_id, exc)

    def record(self, stream: str) -> SessionRecord | None:
        """The stream's session record, if it is open."""
        return self.sessions.items.get(stream) if self.sessions else None

    def owner(self, stream: str) -> str | None:
        """Replica of this stage the stream is assigned to, or None if no session is open."""
        record = self.record(stream)
        return record.replicas.get(self.stage) if record else None

    async def claim(self, stream: str) -> str | None:
        """Asks the controller to open the stream's session (opening an open one is fine).

        Returns:
            The replica of this stage it is assigned to.

        Raises:
            SessionError: The controller's typed refusal (e.g. ``CapacityError``) or no answer.
        """
        reply = await open_session(self.nc, stream, prefix=self.prefix)
        if self.sessions is not None and stream not in self.sessions.items:
            # Until the watcher delivers the controller's record.
            self.sessions.items[stream] = SessionRecord(stream=stream, opened_ts=time.time(), replicas=reply.replicas)
        return reply.replicas.get(self.stage)

    async def _beat(self) -> None:
        beat = ReplicaRecord(stage=self.stage, replica=self.replica_id, capacity=self.capacity,
                             streams=self.progress(), ts=time.time())
        await self._replicas.put(f"{self.stage}.{self.replica_id}", msgspec.msgpack.encode(beat))

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_PERIOD_S)
            try:
                await self._beat()
            except Exception as exc:  # NATS reconnecting: the next beat retries
                log.warning("%s: heartbeat failed: %s", self.replica_id, exc)

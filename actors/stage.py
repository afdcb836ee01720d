"""The NATS loop every pipeline stage shares: per-stream state, ordering, drops, status.

A :class:`Stage` subscribes to one message kind on every stream
(``<prefix>.live.*.<input_kind>``), keeps one :class:`Session` per stream with a
bounded queue, and publishes what it makes of each message on the stream's
``<output_kind>`` subject. One worker loop serves all streams in batches (continuous
batching): each batch takes the oldest queued message of every stream that has one
and hands them to :meth:`Stage.process_batch` in one worker-thread call — the
commentator advances all those sessions in one batched forward pass. So:

- each stream's messages are handled in order, one at a time;
- a slow or late stream never delays another by more than one batch: a batch takes
  what is queued when it starts, and a stream's backlog is served one message per
  batch like everyone else's;
- a stream that falls behind drops its *oldest* queued work, counts it, and says so on
  its ``status`` subject; no queue grows without bound;
- a malformed message, a media error or a bug in one stream is counted, reported on
  that stream's ``status`` and never reaches the replica or another stream;
- a replica handles only the streams the session controller assigned to it
  (:class:`~actors.placement.Membership`); the entry stage (the decoder) asks the
  controller to open the session of a stream that publishes without opening one; a
  replica that takes a stream over from one that died starts the stream afresh and
  reports on ``status`` how many input messages were lost in between.

Stages are plain classes (no Ray import): ``actors/deployments.py`` wraps them as Ray
Serve deployments, and tests can run them in-process against a real NATS server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from actors.placement import Membership, SessionRecord
from streams import messages as m
from streams.bus import connect
from streams.errors import MMDError, SchemaError, StreamIdError, TransportError
from streams.subjects import StreamSubject, parse_stream_subject, stream_subject, wildcard_subject

log = logging.getLogger(__name__)

#: Seconds after a session closed during which late messages of its stream do not reopen it.
CLOSED_MEMORY_S = 10.0
#: Longest wait of a worker thread for the event loop (:meth:`Stage.publish_now` and co.).
IN_LOOP_TIMEOUT_S = 10.0

_T = TypeVar("_T")


@dataclass
class StageOptions:
    """Run-time options of a stage replica.

    Attributes:
        nats_url: NATS server URL.
        prefix: Subject prefix.
        queue_limit: Messages queued per stream before the oldest is dropped.
        idle_timeout_s: A stream with no message for this long is closed, in seconds.
        status_period_s: Period of the counters report on ``status``, in seconds.
        max_streams: Streams one replica holds; messages of further streams are refused.
    """

    nats_url: str
    prefix: str = "mmd"
    queue_limit: int = 64
    idle_timeout_s: float = 60.0
    status_period_s: float = 5.0
    max_streams: int = 64


@dataclass
class Session:
    """One stream at one stage: its state, queue, counters and latencies.

    Attributes:
        stream: Stream id.
        state: The stage's own per-stream state (see :meth:`Stage.new_state`).
        queue: Pending input messages, oldest first.
        counters: Cumulative counts (``received``, ``emitted``, ``dropped``, ``errors.<code>``).
        latencies_s: Recent processing times in seconds.
        out_seq: Sequence number of the next output message.
        last_seen: Monotonic time of the last input message.
        last_seq: ``seq`` of the last input message handled (-1 before the first).
        queued_since: Monotonic time the oldest queued message has waited since.
        resume_after: Set when the stream was taken over from a replica that died: the
            last input ``seq`` that replica handled; cleared by the first message.
    """

    stream: str
    state: Any
    queue: deque[m.Message] = field(default_factory=deque)
    counters: Counter[str] = field(default_factory=Counter)
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    out_seq: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    last_seq: int = -1
    queued_since: float = 0.0
    resume_after: int | None = None
    closed: bool = False

    def latency_ms(self) -> dict[str, float]:
        """p50/p99 of recent processing times in milliseconds (empty if none)."""
        if not self.latencies_s:
            return {}
        p50, p99 = np.percentile(np.fromiter(self.latencies_s, float), [50, 99]) * 1000.0
        return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}


class Stage:
    """Base class of the pipeline stages (decoder, flow, tokenizer, commentator, tts).

    Subclasses set :attr:`name`, :attr:`input_kind`, :attr:`output_kind` and
    :attr:`accepts`, and implement :meth:`new_state` and :meth:`process` or
    :meth:`process_batch`.
    """

    name: ClassVar[str]
    #: Whether a message of a stream with no session opens one (the entry stage only:
    #: downstream messages of an unknown stream are the tail of a closed session).
    opens_sessions: ClassVar[bool] = False
    #: Longest a queued message waits for the other active streams' messages so that
    #: they are stepped in one batch (0: a batch takes whatever is queued), seconds.
    batch_wait_s: ClassVar[float] = 0.0
    input_kind: ClassVar[StreamSubject]
    output_kind: ClassVar[StreamSubject]
    accepts: ClassVar[tuple[type[m.Message], ...]]

    def __init__(self, options: StageOptions) -> None:
        self.options = options
        self.sessions: dict[str, Session] = {}
        self.unroutable = 0  # messages on subjects with no valid stream id
        self._nc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the event loop of start()
        self._closed = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0  # batches processed
        self._last_batch_s = 0.0  # how long the last batch took
        self.membership: Membership | None = None
        self.replica_tag: str | None = None  # Serve's replica id, set by the deployment before start()
        self._held: dict[str, deque[Any]] = {}  # raw messages of streams being claimed
        self._refused_until: dict[str, float] = {}  # streams the controller refused, until (monotonic)
        self._takeovers: dict[str, int] = {}  # stream -> resume_after, for streams moved here
        self._closed_streams: dict[str, float] = {}  # closed sessions -> when (monotonic), bounded

    # -- to implement -------------------------------------------------------------
    def new_state(self, stream: str) -> Any:
        """Create the per-stream state of this stage."""
        raise NotImplementedError

    def process(self, session: Session, message: m.Message) -> list[m.Message]:
        """Handle one input message of a stream (runs in a worker thread).

        Subclasses override this or :meth:`process_batch` (each defaults to the other).

        Returns:
            Output messages to publish on the stream's ``output_kind`` subject, in order.

        Raises:
            MMDError: A typed, reportable failure of this message; the stream goes on.
        """
        result = self.process_batch([(session, message)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def finish(self, session: Session, message: m.EndOfStream) -> list[m.Message]:
        """Handle end of stream; by default just forwards it. Runs in a worker thread."""
        return [self.forward_eos(session, message)]

    def process_batch(self, items: list[tuple[Session, m.Message]]) -> list[list[m.Message] | Exception]:
        """Handle the oldest queued message of several streams (runs in a worker thread).

        The default handles them one by one (:meth:`process`, :meth:`finish`); stages
        whose work batches across streams override it (see :meth:`batch_by_key`).

        Args:
            items: ``(session, message)`` pairs, one per stream, in no particular order.

        Returns:
            Per item, in order: its output messages, or the exception it raised (an
            :class:`~streams.errors.MMDError` is reported as a typed error of that
            stream, anything else as ``internal``); one item's failure never affects another.
        """
        # Each message its own group, so that each failure stays with its item.
        return self.batch_by_key(items, lambda session, message: (id(message), None),
                                 lambda group: [self.process(session, message) for session, message, _ in group])

    def batch_by_key(
        self,
        items: list[tuple[Session, m.Message]],
        prepare: Callable[[Session, m.Message], tuple[Hashable, Any]],
        run: Callable[[list[tuple[Session, m.Message, Any]]], list[list[m.Message]]],
    ) -> list[list[m.Message] | Exception]:
        """A :meth:`process_batch` for stages whose work batches across streams.

        Each item is prepared on its own (``prepare`` returns a group key, e.g. an array
        shape, and a payload, or raises for that item only); the items of one group are
        handled by one ``run`` call, which returns the output messages of each, in
        order. End-of-stream messages go to :meth:`finish`.

        Returns:
            As :meth:`process_batch`; if a ``run`` call raises, every item of its group
            gets that exception.
        """
        results: list[list[m.Message] | Exception] = [[] for _ in items]
        groups: dict[Hashable, list[tuple[int, Session, m.Message, Any]]] = defaultdict(list)
        for i, (session, message) in enumerate(items):
            try:
                if isinstance(message, m.EndOfStream):
                    results[i] = self.finish(session, message)
                else:
                    key, payload = prepare(session, message)
                    groups[key].append((i, session, message, payload))
            except Exception as exc:
                results[i] = exc
        for members in groups.values():
            try:
                outputs = run([(session, message, payload) for _, session, message, payload in members])
                for (i, *_), out in zip(members, outputs, strict=True):
                    results[i] = out
            except Exception as exc:
                for i, *_ in members:
                    results[i] = exc
        return results

    def on_drop(self, session: Session) -> None:
        """Called after queued work of a stream was dropped (e.g. to resync a decoder)."""

    async def on_accept(self, session: Session, message: m.Message, raw: bytes) -> None:
        """Called in the event loop for each valid input message before it is queued."""

    async def on_takeover(self, session: Session) -> None:
        """Called in the event loop when a stream taken over from a dead replica starts here."""

    def close_state(self, state: Any) -> None:
        """Release a stream's state when its session closes."""

    # -- helpers for subclasses ---------------------------------------------------
    def publish_now(self, outputs: list[tuple[Session, list[m.Message]]]) -> None:
        """Publishes output messages from inside :meth:`process_batch`, before it returns
        (e.g. a commentator's first word, before the rest of its step is computed).

        Call it from the worker thread only; it blocks until the messages are sent, so
        they go out in order before anything the batch returns.

        Args:
            outputs: ``(session, messages)`` pairs, published in order.

        Raises:
            RuntimeError: If the stage is not started or it is called from the event loop.
            TransportError: If the event loop does not send them within ``IN_LOOP_TIMEOUT_S``
                (it is shutting down).
        """
        self._call_in_loop(self._publish_outputs(outputs))

    def take_more(self, exclude: set[str]) -> list[tuple[Session, m.Message]] | None:
        """Takes, from inside :meth:`process_batch`, the oldest queued message of every
        stream not in ``exclude`` that has one, so that a batch still running can take
        them in (continuous batching).

        Call it from the worker thread only. The caller owns the items taken: it must
        hand each one's outputs or error to :meth:`deliver_now`.

        Args:
            exclude: Stream ids to leave alone (those already in the batch).

        Returns:
            ``(session, message)`` pairs, possibly none; None (taking nothing) when a
            stream's next message is an end of stream: the batch should end, so that
            the batch loop finishes that stream.

        Raises:
            RuntimeError, TransportError: As :meth:`publish_now`.
        """
        return self._call_in_loop(self._take(exclude))

    def deliver_now(self, session: Session, message: m.Message, result: list[m.Message] | Exception,
                    elapsed_s: float) -> None:
        """Publishes the outputs of an item taken by :meth:`take_more` (or counts and
        reports its error), as the batch loop does for the items it hands out.

        Raises:
            RuntimeError, TransportError: As :meth:`publish_now`.
        """
        self._call_in_loop(self._deliver(session, message, result, elapsed_s))

    def _call_in_loop(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Runs ``coro`` in the stage's event loop from the worker thread; waits for it."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or loop.is_closed() or running is loop:
            coro.close()
            why = "before start()" if running is not loop or loop is None else "from the event loop (deadlock)"
            raise RuntimeError(f"{self.name}: called {why}")
        done = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return done.result(timeout=IN_LOOP_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            done.cancel()
            raise TransportError(f"{self.name}: no answer from the event loop in {IN_LOOP_TIMEOUT_S:.0f} s") from None

    async def _take(self, exclude: set[str]) -> list[tuple[Session, m.Message]] | None:
        ready = [s for s in self.sessions.values() if s.queue and s.stream not in exclude]
        if any(isinstance(s.queue[0], m.EndOfStream) for s in ready):
            return None
        now = time.monotonic()
        for session in ready:
            session.queued_since = now
        return [(session, session.queue.popleft()) for session in ready]

    async def _publish_outputs(self, outputs: list[tuple[Session, list[m.Message]]]) -> None:
        for session, messages in outputs:
            for message in messages:
                await self._publish(session, message)

    def next_seq(self, session: Session) -> int:
        """Return and advance the stream's output sequence number."""
        seq = session.out_seq
        session.out_seq += 1
        return seq

    def forward_eos(self, session: Session, message: m.EndOfStream) -> m.EndOfStream:
        """The end-of-stream message to send downstream."""
        return m.EndOfStream(
            stream=session.stream, seq=self.next_seq(session), pts_s=message.pts_s,
            capture_ts=message.capture_ts, reason=message.reason,
        )

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Connect to NATS and subscribe to the input subject of every stream.

        Raises:
            TransportError: If NATS cannot be reached.
        """
        self._loop = asyncio.get_running_loop()
        self._nc = await connect(
            self.options.nats_url, name=f"mmd-{self.name}", max_reconnect_attempts=-1, on_closed=self._closed
        )
        self.membership = Membership(
            self._nc, stage=self.name, capacity=self.options.max_streams, prefix=self.options.prefix,
            progress=lambda: {stream: s.last_seq for stream, s in self.sessions.items()},
            on_assignment=self._assignment_changed, tag=self.replica_tag,
        )
        await self.membership.start()
        await self._nc.subscribe(
            wildcard_subject(self.input_kind, prefix=self.options.prefix),
            cb=self._on_message,
            pending_msgs_limit=100_000,
            pending_bytes_limit=256 * 1024 * 1024,
        )
        self._tasks = [asyncio.create_task(self._batch_loop()), asyncio.create_task(self._housekeeping_loop())]
        log.info("%s replica %s listening on %s", self.name, self.membership.replica_id, self.options.nats_url)

    def check_health(self) -> None:
        """Raise if the stage cannot work (its NATS connection is gone).

        Raises:
            RuntimeError: If the NATS connection is closed.
        """
        if self._nc is None or self._nc.is_closed:
            raise RuntimeError(f"{self.name}: NATS connection to {self.options.nats_url} is closed")

    async def stop(self) -> None:
        """Drain the NATS connection and stop every stream worker."""
        for task in self._tasks:
            task.cancel()
        for session in list(self.sessions.values()):
            await self._close_session(session, report=False)
        if self.membership is not None:
            await self.membership.stop()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=5.0)
            except Exception as exc:  # draining is best effort on shutdown
                log.warning("%s: NATS drain failed: %s", self.name, exc)
        log.info("%s stage stopped", self.name)

    # -- the loop -------------------------------------------------------------------
    async def _on_message(self, msg: Any) -> None:
        try:
            stream, _ = parse_stream_subject(msg.subject, prefix=self.options.prefix)
        except StreamIdError as exc:
            self.unroutable += 1
            log.warning("%s: %s", self.name, exc)
            return
        assert self.membership is not None
        owner = self.membership.owner(stream)
        if owner is None and stream not in self.sessions:
            if self.opens_sessions and time.monotonic() - self._closed_streams.get(stream, -1e9) > CLOSED_MEMORY_S:
                await self._hold(stream, msg)  # no session yet: hold the message and ask the controller
            else:
                self.unroutable += 1  # the tail of a closed session, or a stream nobody opened
        elif owner is None or owner == self.membership.replica_id:
            await self._accept(stream, msg)  # ours (a closed session still finishes its tail)
        # else: another replica's stream

    async def _accept(self, stream: str, msg: Any) -> None:
        session = self.sessions.get(stream)
        if session is None:
            if len(self.sessions) >= self.options.max_streams:
                self.unroutable += 1
                await self.report(stream, "error", "capacity",
                                  f"{self.name} replica is full ({self.options.max_streams} streams)")
                return
            session = self._open_session(stream)
            if stream in self._takeovers:
                session.resume_after = self._takeovers.pop(stream)
                await self.on_takeover(session)
        session.last_seen = time.monotonic()
        session.counters["received"] += 1
        try:
            message = m.decode(msg.data, *self.accepts)
            if message.stream != stream:
                raise SchemaError(f"message for stream {message.stream!r} arrived on {msg.subject!r}")
        except SchemaError as exc:
            session.counters[f"errors.{exc.code}"] += 1
            await self.report(stream, "error", exc.code, str(exc), session)
            return
        if session.resume_after is not None:
            assert self.membership is not None  # a takeover happens only on a started replica
            lost = max(0, message.seq - session.resume_after - 1)
            session.counters["failovers"] += 1
            session.counters["lost_in_failover"] += lost
            session.resume_after = None
            await self.report(stream, "warning", "failover",
                              f"{self.name} replica {self.membership.replica_id} took the stream over: "
                              f"{lost} input messages lost", session)
        await self.on_accept(session, message, msg.data)
        if len(session.queue) >= self.options.queue_limit:
            session.queue.popleft()
            session.counters["dropped"] += 1
            self.on_drop(session)
            if session.counters["dropped"] in (1, 10, 100) or session.counters["dropped"] % 1000 == 0:
                await self.report(stream, "warning", "dropped",
                                  f"{self.name} is behind: dropped the oldest queued message", session)
        if not session.queue:
            session.queued_since = time.monotonic()
        session.queue.append(message)
        self._wakeup.set()

    async def _hold(self, stream: str, msg: Any) -> None:
        """Keeps a message of a stream with no session while the controller is asked to open one."""
        if self._refused_until.get(stream, 0.0) > time.monotonic():
            self.unroutable += 1  # refused a moment ago (reported then); retried after a pause
            return
        held = self._held.get(stream)
        if held is None:
            held = self._held[stream] = deque(maxlen=self.options.queue_limit)
            asyncio.create_task(self._claim(stream))
        held.append(msg)

    async def _claim(self, stream: str) -> None:
        assert self.membership is not None
        try:
            owner = await self.membership.claim(stream)
        except MMDError as exc:
            held = self._held.pop(stream, deque())
            self._refused_until[stream] = time.monotonic() + 5.0
            await self.report(stream, "error", exc.code,
                              f"{self.name}: no session for the stream ({exc}); {len(held)} messages dropped")
            return
        held = self._held.pop(stream, deque())
        if owner == self.membership.replica_id:
            for msg in held:
                await self._accept(stream, msg)

    async def _assignment_changed(self, stream: str, record: SessionRecord | None) -> None:
        """A session record changed: take a stream over, or let one go."""
        assert self.membership is not None
        me = self.membership.replica_id
        if record is None:  # session closed: the stream ends with its end-of-stream or idle timeout
            self._takeovers.pop(stream, None)
            self._closed_streams[stream] = time.monotonic()
            while len(self._closed_streams) > 1024:
                self._closed_streams.pop(next(iter(self._closed_streams)))
            return
        self._closed_streams.pop(stream, None)
        owner = record.replicas.get(self.name)
        session = self.sessions.get(stream)
        if owner != me:
            self._takeovers.pop(stream, None)
            if session is not None:
                log.info("%s: stream %s moved to %s", self.name, stream, owner)
                await self._close_session(session, report=False)
        elif session is None and self.name in record.resume:
            self._takeovers[stream] = record.resume[self.name]

    def _open_session(self, stream: str) -> Session:
        session = Session(stream=stream, state=self.new_state(stream))
        self.sessions[stream] = session
        log.info("%s: stream %s opened", self.name, stream)
        return session

    async def _batch_loop(self) -> None:
        while True:
            ready = [session for session in self.sessions.values() if session.queue]
            if not ready:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            wait_s = self._batch_wait(ready)
            if wait_s > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), wait_s)
                except TimeoutError:
                    pass
                continue
            now = time.monotonic()
            items = [(session, session.queue.popleft()) for session in ready]
            for session in ready:
                session.queued_since = now
            started = time.perf_counter()
            try:
                results = await asyncio.to_thread(self.process_batch, items)
            except Exception as exc:  # a bug in a batched override: every item of the batch fails
                log.exception("%s: batch of %d streams failed", self.name, len(items))
                results = [exc] * len(items)
            elapsed = time.perf_counter() - started
            self._last_batch_s = elapsed
            self.batches += 1
            for (session, message), result in zip(items, results, strict=True):
                await self._deliver(session, message, result, elapsed)

    def _batch_wait(self, ready: list[Session]) -> float:
        """Seconds to wait for more streams' messages before running a batch of ``ready``.

        Every active stream (a message within the last second) sends one message per
        model step, so waiting until each has one queued — after the oldest arrived, at
        most ``batch_wait_s`` and at most as long as the last batch took — steps them
        together instead of one by one.
        """
        if self.batch_wait_s <= 0:
            return 0.0
        now = time.monotonic()
        active = sum(1 for s in self.sessions.values() if now - s.last_seen < 1.0)
        if len(ready) >= active:
            return 0.0
        # Waiting longer than a batch takes would delay more than it saves.
        limit = min(self.batch_wait_s, self._last_batch_s)
        return max(0.0, limit - (now - min(s.queued_since for s in ready)))

    async def _deliver(
        self, session: Session, message: m.Message, result: list[m.Message] | Exception, elapsed_s: float
    ) -> None:
        """Publishes one item's outputs, or counts and reports its failure."""
        session.last_seq = max(session.last_seq, message.seq)  # items taken into a running batch end first
        if isinstance(result, MMDError):
            session.counters[f"errors.{result.code}"] += 1
            await self.report(session.stream, "error", result.code, str(result), session)
            return
        if isinstance(result, Exception):  # a bug must not kill the replica or other streams
            log.error("%s: stream %s: unexpected error", self.name, session.stream, exc_info=result)
            session.counters["errors.internal"] += 1
            await self.report(session.stream, "error", "internal", f"{type(result).__name__}: {result}", session)
            return
        session.latencies_s.append(elapsed_s)
        await self._publish_outputs([(session, result)])
        if isinstance(message, m.EndOfStream):
            await self._close_session(session, report=True)

    async def _publish(self, session: Session, message: m.Message) -> None:
        subject = stream_subject(session.stream, self.output_kind, prefix=self.options.prefix)
        data = m.encode(message)
        try:
            await self._nc.publish(subject, data)
        except Exception as exc:  # MaxPayloadError, connection closed: count, never crash
            session.counters["errors.publish"] += 1
            log.warning("%s: stream %s: publish failed: %s", self.name, session.stream, exc)
            return
        session.counters["emitted"] += 1

    async def report(
        self, stream: str, level: m.StatusLevel, code: str, message: str, session: Session | None = None
    ) -> None:
        """Publish a :class:`~streams.messages.Status` about a stream (best effort)."""
        if level != "info":
            log.warning("%s: stream %s: %s: %s", self.name, stream, code, message)
        status = m.Status(
            stream=stream, seq=self.next_seq(session) if session else 0, pts_s=0.0, capture_ts=m.now(),
            stage=self.name, level=level, code=code, message=message,
            counters=dict(session.counters) if session else {},
            latency_ms=session.latency_ms() if session else {},
        )
        try:
            await self._nc.publish(stream_subject(stream, "status", prefix=self.options.prefix), m.encode(status))
        except Exception as exc:
            log.warning("%s: status for stream %s not sent: %s", self.name, stream, exc)

    async def _close_session(self, session: Session, *, report: bool) -> None:
        if session.closed:
            return
        session.closed = True
        session.queue.clear()
        self.sessions.pop(session.stream, None)
        if report:
            await self.report(session.stream, "info", "counters", f"{self.name}: stream ended", session)
        try:
            self.close_state(session.state)
        except Exception:
            log.exception("%s: closing state of stream %s failed", self.name, session.stream)
        log.info("%s: stream %s closed (%s)", self.name, session.stream, dict(session.counters))

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.status_period_s)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if now - session.last_seen > self.options.idle_timeout_s:
                    await self.report(session.stream, "warning", "idle_timeout",
                                      f"{self.name}: no message for {self.options.idle_timeout_s:.0f} s", session)
                    await self._close_session(session, report=False)
                else:
                    await self.report(session.stream, "info", "counters", "", session)

"""Commentator stage: B-Flow tokens and key views (``.tokens``) → commentary text deltas (``.text``).

Runs the duplex model (:mod:`models.lm.commentator`): one model step per incoming token
message (one per model tick, 5 Hz), whether or not it is speaking; the model decides
itself when to speak, stay silent (the silence token) or end its line. Each stream
has its own slot of one bounded KV cache, and the sessions whose token messages are
queued advance together in one batched forward pass per position
(:meth:`CommentatorStage.process_batch`). Text goes out as soon as it is decided,
stamped with the video time of the step that produced it: the first word of a line
leaves after the step's first forward pass, not after the whole step
(:meth:`~actors.stage.Stage.publish_now`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actors.stage import Session, Stage, StageOptions
from models.lm.commentator import CommentatorRuntime, CommentatorState, LinePiece, TextStepBatch
from streams import messages as m
from streams.errors import SchemaError


@dataclass
class CommentatorSession:
    """Per-stream commentator state.

    Attributes:
        model_state: The model's streaming state (its KV cache slot, last token);
            created by the first batch that steps the stream.
        utterance: Number of the current (or next) line.
        text: Text of the current line so far.
    """

    model_state: CommentatorState | None = None
    utterance: int = 0
    text: str = ""


class CommentatorStage(Stage):
    """Advances each stream's duplex model by one step per token message."""

    name = "commentator"
    input_kind = "tokens"
    output_kind = "text"
    accepts = (m.Tokens, m.EndOfStream)
    #: Streams step at the same 5 Hz with arbitrary phases: waiting up to half a tick
    #: for the others makes one forward pass per tick instead of one per stream.
    batch_wait_s = 0.1
    #: Token messages join a running batch during its first this many seconds only, so
    #: that every batch ends; it also stops taking them once an end-of-stream message waits.
    join_window_s = 5.0

    def __init__(self, options: StageOptions, *, checkpoint: Path, int8: bool = False) -> None:
        super().__init__(options)
        self.runtime = CommentatorRuntime.load(checkpoint, int8=int8)
        # Slots are taken and freed only in the batch thread (between forward passes):
        # the event loop queues the states of closed sessions here.
        self._to_release: list[CommentatorState] = []

    def new_state(self, stream: str) -> CommentatorSession:
        return CommentatorSession()

    def close_state(self, state: CommentatorSession) -> None:
        if state.model_state is not None:
            self._to_release.append(state.model_state)

    def process_batch(self, items: list[tuple[Session, m.Message]]) -> list[list[m.Message] | Exception]:
        """One batched model step for every token message; end-of-stream one by one."""
        self._release_closed()
        return self.batch_by_key(items, self._prepare, self._run)

    def _release_closed(self) -> None:
        """Frees the cache slots of sessions closed since (worker thread only)."""
        while self._to_release:
            self._to_release.pop().release()

    def _prepare(self, session: Session, message: m.Message) -> tuple[None, tuple[np.ndarray, np.ndarray | None]]:
        assert isinstance(message, m.Tokens)
        model = self.runtime.model
        try:
            tokens = model.check_tokens(message.tokens.to_numpy(dtype="float32", ndim=2))
            views = (model.check_views(message.views.to_numpy(dtype="float32", ndim=2))
                     if message.views is not None else None)
        except ValueError as exc:  # token or view width, or values the model cannot take
            raise SchemaError(f"tokens rejected by the commentator: {exc}") from None
        if session.state.model_state is None:
            session.state.model_state = self.runtime.new_state()
        return None, (tokens, views)

    def _run(self, group: list[tuple[Session, m.Message, tuple[np.ndarray, np.ndarray | None]]]
             ) -> list[list[m.Message]]:
        """Steps the group one forward pass at a time. What each pass says is published
        right away, and between passes (for up to ``join_window_s``, and until an
        end-of-stream message waits) the token messages that arrived meanwhile join the
        batch (:meth:`~actors.stage.Stage.take_more`), so a stream never waits for the
        others' speech to finish before its step starts."""
        batch = self.runtime.new_batch()
        members = {batch.add(s.state.model_state, *video): (s, msg) for s, msg, video in group}
        joined: dict[int, float] = {}  # handle of a taken item -> when it was taken
        join_until = time.perf_counter() + self.join_window_s
        try:
            while not batch.done:
                said: dict[int, list[LinePiece]] = defaultdict(list)
                for h, piece in batch.run_round():
                    said[h].append(piece)
                self.publish_now([(members[h][0], self._deltas(*members[h], pieces)) for h, pieces in said.items()])
                if not batch.done and time.perf_counter() < join_until and not self._join(batch, members, joined):
                    join_until = 0.0  # an end of stream waits: let the batch end
        except Exception as exc:
            for h in joined:
                self.deliver_now(*members[h], exc, 0.0)
            raise
        for session, _ in members.values():
            session.counters["model_steps"] += 1
        now = time.perf_counter()
        for h, taken_at in joined.items():
            self.deliver_now(*members[h], [], now - taken_at)
        return [[] for _ in group]

    def _join(self, batch: TextStepBatch, members: dict[int, tuple[Session, m.Message]],
              joined: dict[int, float]) -> bool:
        """Adds the token messages queued now to the running ``batch``: the next step of
        every stream that has none unfinished in it. Returns False (taking nothing) when
        an end-of-stream message waits."""
        self._release_closed()
        busy = {members[h][0].stream for h in batch.unfinished}
        taken = self.take_more(busy)
        if taken is None:
            return False
        for session, message in taken:
            try:
                _, video = self._prepare(session, message)
                handle = batch.add(session.state.model_state, *video)
            except Exception as exc:  # this item fails alone, as in batch_by_key
                self.deliver_now(session, message, exc, 0.0)
                continue
            members[handle] = (session, message)
            joined[handle] = time.perf_counter()
            session.counters["joined_running_batch"] += 1
        return True

    def _deltas(self, session: Session, message: m.Message, pieces: list[LinePiece]) -> list[m.Message]:
        state: CommentatorSession = session.state
        deltas: list[m.Message] = []
        for piece in pieces:
            if piece.text:
                text = piece.text if state.text else piece.text.lstrip()
                state.text += text
                session.counters["text_tokens"] += 1
                deltas.append(self._delta(session, message, text, final=False))
            if piece.end_of_line and state.text:
                deltas.append(self._end_line(session, message))
        return deltas

    def finish(self, session: Session, message: m.EndOfStream) -> list[m.Message]:
        tail = [self._end_line(session, message)] if session.state.text else []
        return [*tail, self.forward_eos(session, message)]

    def _end_line(self, session: Session, message: m.Message) -> m.Message:
        state: CommentatorSession = session.state
        delta = self._delta(session, message, "", final=True)
        state.text = ""
        state.utterance += 1
        session.counters["lines"] += 1
        return delta

    def _delta(self, session: Session, message: m.Message, text: str, *, final: bool) -> m.TextDelta:
        return m.TextDelta(
            stream=session.stream, seq=self.next_seq(session), pts_s=message.pts_s,
            capture_ts=message.capture_ts, utterance=session.state.utterance, text=text, final=final,
        )

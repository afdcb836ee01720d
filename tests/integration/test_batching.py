"""The commentator stage batches across streams: in-process on a real nats-server,
with the session controller.

Several streams publish their B-Flow token messages at once; the stage steps the
queued sessions together (fewer batches than messages) and each stream's text is
exactly what its session says stepped alone. A malformed message in a batch fails only
its own stream.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
import torch

from actors.commentator import CommentatorStage
from actors.controller import ControllerOptions, SessionController
from actors.stage import StageOptions
from models.lm.commentator import CommentatorRuntime
from streams import messages as m
from streams.bus import LocalNatsServer, connect
from streams.publisher import open_session
from streams.settings import checkpoint_path
from streams.subjects import stream_subject

STREAMS = ["batch-a", "batch-b", "batch-c", "batch-d"]
STEPS = 40


def _tokens(k: int, t: int) -> np.ndarray:
    """Deterministic, varied B-Flow-like tokens of stream ``k`` at step ``t``."""
    rng = np.random.default_rng(1000 * k + t)
    return rng.normal(size=(int(rng.integers(0, 6)), 64)).astype(np.float32)


async def test_commentator_stage_batches_streams_and_matches_stepping_alone(
    nats_server: LocalNatsServer,
) -> None:
    controller = SessionController(ControllerOptions(nats_url=nats_server.url, stages=("commentator",)))
    await controller.start()
    stage = CommentatorStage(StageOptions(nats_url=nats_server.url, status_period_s=60.0), checkpoint=checkpoint_path())
    model = stage.runtime.model
    model.cfg = replace(model.cfg, silence_bias=-4.0)  # talkative: several lines in 40 steps
    await stage.start()
    nc = await connect(nats_server.url, name="test-batching")
    texts: dict[str, str] = defaultdict(str)
    statuses: list[m.Status] = []
    done = asyncio.Event()

    async def on_text(msg) -> None:
        message = m.decode(msg.data, m.TextDelta, m.EndOfStream)
        if isinstance(message, m.TextDelta):
            texts[message.stream] += message.text + ("|" if message.final else "")
        else:
            ended.add(message.stream)
            if ended == set(STREAMS):
                done.set()

    async def on_status(msg) -> None:
        statuses.append(m.decode(msg.data, m.Status))

    ended: set[str] = set()
    for stream in STREAMS:
        await open_session(nc, stream, prefix="mmd")
    await nc.subscribe("mmd.live.*.text", cb=on_text)
    await nc.subscribe("mmd.live.*.status", cb=on_status)
    try:
        for t in range(STEPS):
            for k, stream in enumerate(STREAMS):
                tok = m.Tokens(stream=stream, seq=t, pts_s=t / 5, capture_ts=m.now(), step=t,
                               tokens=m.Array.from_numpy(_tokens(k, t)))
                await nc.publish(stream_subject(stream, "tokens"), m.encode(tok))
            # One malformed message (wrong token width) on one stream, mid-way.
            if t == STEPS // 2:
                bad = m.Tokens(stream="batch-b", seq=999, pts_s=0.0, capture_ts=m.now(), step=999,
                               tokens=m.Array.from_numpy(np.zeros((2, 7), np.float32)))
                await nc.publish(stream_subject("batch-b", "tokens"), m.encode(bad))
        for stream in STREAMS:
            eos = m.EndOfStream(stream=stream, seq=STEPS, pts_s=STEPS / 5, capture_ts=m.now(), reason="end")
            await nc.publish(stream_subject(stream, "tokens"), m.encode(eos))
        await asyncio.wait_for(done.wait(), timeout=120)
        await asyncio.sleep(0.2)
    finally:
        await nc.drain()
        await stage.stop()
        await controller.stop()

    messages = len(STREAMS) * (STEPS + 1) + 1
    assert stage.batches < messages  # streams were stepped together
    rt = CommentatorRuntime(model=stage.runtime.model)
    for k, stream in enumerate(STREAMS):
        state, expected, line = rt.new_state(), "", ""
        for t in range(STEPS):
            for piece in rt.step(state, _tokens(k, t)):
                text = piece.text if line else piece.text.lstrip()
                line += text
                expected += text
                if piece.end_of_line and line:
                    expected, line = expected + "|", ""
        expected += "|" if line else ""
        assert texts[stream] == expected, stream
    assert any(texts[s].count("|") >= 1 for s in STREAMS)
    errors = [s for s in statuses if s.level == "error"]
    assert [(s.stream, s.code) for s in errors] == [("batch-b", "schema")]
    assert "token" in errors[0].message


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_publish_now_needs_a_started_stage() -> None:
    stage = CommentatorStage(StageOptions(nats_url="nats://127.0.0.1:1"), checkpoint=checkpoint_path())
    with pytest.raises(RuntimeError, match="before start"):
        stage.publish_now([])

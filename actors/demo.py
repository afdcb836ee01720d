"""``mmduplex demo``: the main job on the embedded system.

Starts NATS, Ray and the Serve app (:class:`~actors.embedded.EmbeddedSystem`), publishes
the source in real time, shows the commentary as it comes, then writes
``commentary.vtt``, ``commentary.wav`` and ``report.json`` and shuts everything down —
also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from actors.decoder import DecoderStage
from actors.embedded import EmbeddedSystem
from actors.tts import speech_figures
from streams import messages as m
from streams import settings
from streams.errors import MediaError
from streams.listener import Line, Listener
from streams.publisher import publish

log = logging.getLogger(__name__)

#: Seconds to wait after the last packet for the pipeline to finish speaking.
DRAIN_TIMEOUT_S = 60.0


def _synthetic_source(out_dir: Path) -> Path:
    from models.data.procedural import ClipSpec, write_clip

    return write_clip(ClipSpec(kind="match", seed=2026, duration_s=20.0), out_dir / "synthetic_match.mp4")


def decode_failure(statuses: Sequence[m.Status], *, frames_received: int) -> str:
    """Why nothing of a stream decoded, from what the decoder reported on its ``status`` subject.

    Args:
        statuses: The stream's status reports (every stage's), in arrival order.
        frames_received: Model-grid frames (``.frames`` messages) seen on the stream.

    Returns:
        "" if the decoder decoded something; otherwise its first error as
        ``"<code>: <reason>"``, or its counters if it reported no error.
    """
    decoder = [s for s in statuses if s.stage == DecoderStage.name]
    if frames_received or any(s.counters.get("decoded", 0) for s in decoder):
        return ""
    errors = [s for s in decoder if s.level == "error"]
    if errors:
        return f"{errors[0].code}: {errors[0].message}"
    if decoder:
        counters = ", ".join(f"{name} {count}" for name, count in sorted(decoder[-1].counters.items()))
        return f"the decoder reported no error but decoded no frame ({counters})"
    return "the decoder reported nothing about the stream"


def run_demo(
    *,
    source: str | None,
    out_dir: Path,
    max_seconds: float | None = None,
    synthetic: bool = False,
    stream: str = "demo",
    on_line: Callable[[Line], None] | None = None,
    status: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the embedded demo on one source and write its outputs.

    Args:
        source: Video file or URL; None for the sample clip.
        out_dir: Where to write ``commentary.vtt``, ``commentary.wav``, ``report.json``.
        max_seconds: Stop publishing after this much video, seconds.
        synthetic: Render a procedural match and use it as the source.
        stream: Stream id.
        on_line: Called with each finished commentary line.
        status: Where progress messages go.

    Returns:
        The report (also written as ``report.json``).

    Raises:
        MediaError: If the source is missing or unreadable, or nothing of it decoded
            (the message ends with the decoder's reason; ``report.json`` is written
            first).
        TransportError: If NATS fails.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if synthetic:
        status("rendering a procedural match clip ...")
        source = str(_synthetic_source(out_dir))
    elif source is None:
        sample = settings.demo_clip()
        if not sample.exists():
            raise MediaError(f"demo clip {sample} is missing: run `mmduplex fetch-sample` (the set-up does)")
        source = str(sample)
    elif "://" not in source and not Path(source).exists():
        raise MediaError(f"no such file: {source}")

    status("starting NATS, Ray and the Serve app (about 20 s) ...")
    started = time.monotonic()
    with EmbeddedSystem() as system:
        status(f"system up in {time.monotonic() - started:.1f} s; publishing {source} in real time")
        report = asyncio.run(_run(system.nats_url, source, stream, max_seconds, on_line, status))
        listener: Listener = report.pop("_listener")
        listener.write_vtt(out_dir / "commentary.vtt")
        listener.write_wav(out_dir / "commentary.wav", duration_s=report["published"]["media_seconds"])
    report["source"] = source
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    if report["decode_failure"]:
        raise MediaError(f"nothing of {source} decoded: {report['decode_failure']}")
    return report


async def _run(
    nats_url: str, source: str, stream: str, max_seconds: float | None,
    on_line: Callable[[Line], None] | None, status: Callable[[str], None],
) -> dict[str, Any]:
    # Later stages that never saw a frame of the stream drop its end of stream once the
    # publisher has closed the session: then the decoder's end of ``.frames`` is the end.
    decoded_nothing = asyncio.Event()

    def on_end(kind: str) -> None:
        frames = listener.message_counts.get("frames", 0)
        if kind == "frames" and decode_failure(listener.statuses, frames_received=frames):
            decoded_nothing.set()

    listener = Listener(stream, nats_url, on_line=on_line, on_end=on_end)
    await listener.start()
    try:
        result = await publish(source, stream=stream, nats_url=nats_url, realtime=True, max_seconds=max_seconds)
        status(f"published {result.packets} packets ({result.duration_s:.1f} s); waiting for the last words ...")
        waiters = [asyncio.create_task(listener.ended.wait()), asyncio.create_task(decoded_nothing.wait())]
        done, _ = await asyncio.wait(waiters, timeout=DRAIN_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if not done:
            status(f"pipeline did not finish within {DRAIN_TIMEOUT_S:.0f} s; writing what arrived")
        await asyncio.sleep(0.2)  # final status reports trail the end-of-stream marker
    finally:
        await listener.stop()
    report = listener.report()
    report["speech"] = speech_figures([report["stages"].get("tts", {}).get("counters", {})])
    report["decode_failure"] = decode_failure(
        listener.statuses, frames_received=listener.message_counts.get("frames", 0))
    report["published"] = {
        "packets": result.packets, "bytes": result.bytes, "media_seconds": round(result.duration_s, 3)}
    report["_listener"] = listener
    return report

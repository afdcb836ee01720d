"""The load test: N broadcasters and N listeners against a running MM-Duplex on real NATS.

Each broadcaster is :func:`streams.publisher.publish` (the same code as ``mmduplex
publish``: opens a session, sends the source's packets paced on its clock, loops it);
each listener is a :class:`streams.listener.Listener` following the stream's
``tokens``, ``text``, ``audio`` and ``status`` subjects. A run is bounded: N streams for
S seconds of media, then a bounded wait for the streams to end.

Figures (:func:`run_load` returns them as a dict, written to ``loadtest.json``):

* ``latency_ms``: capture → first text of each line and capture → first audio of
  each line, p50/p95/p99 over the lines of all streams that begin after the warm-up
  (``latency_ms_with_warmup``: every line); the capture time is the wall clock at which
  the broadcaster sent the frame the line talks about;
  ``first_word_to_first_audio``: from a line's first word to its first speech, both as
  the listener received them;
* ``speech``: lines, late lines (spoken by espeak-ng because the TTS was behind), phrases
  per line and, per voice, the real-time factor (synthesis time over speech made), from
  the TTS stage's final counters (:func:`actors.tts.speech_figures`);
* ``lag``: per second of the run, the capture → arrival latency of the newest tokens
  and text messages (median and max over streams); a session is *held at real time*
  when its p95 lag after the warm-up is at most ``lag_limit_s``, it received at least
  90 % of its model steps and no stage dropped any of its work;
* ``drops_per_stage``, ``throughput``: messages dropped and emitted per second per
  stage, from the stages' periodic ``status`` counters;
* ``processes``: CPU and memory per process kind (:mod:`loadtest.procstats`);
* ``chaos``: with ``kill:STAGE@T``, the replica of STAGE holding the most streams is
  killed T seconds in; recovery time is, per stream it held, the time until the new
  replica took the stream (its ``failover`` status), and the loss is what the new
  replicas counted as lost.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.placement import STAGES
from actors.tts import speech_figures
from loadtest.procstats import ProcessSampler
from models.vision.video import MODEL_FPS_HZ
from streams.errors import MMDError
from streams.listener import Listener
from streams.publisher import publish
from streams.subjects import validate_stream_id


@dataclass(frozen=True)
class Chaos:
    """A replica kill during the run: the replica of ``stage`` holding the most streams, at ``at_s``."""

    stage: str
    at_s: float

    @classmethod
    def parse(cls, text: str) -> Chaos:
        """Parses ``kill:STAGE@T`` (T in seconds from the start of the run).

        Raises:
            ValueError: If the text is not of that form or names an unknown stage.
        """
        match = re.fullmatch(r"kill:([a-z]+)@([0-9.]+)s?", text.strip())
        if not match or match.group(1) not in STAGES:
            raise ValueError(f"expected kill:STAGE@SECONDS with STAGE one of {', '.join(STAGES)}; got {text!r}")
        return cls(match.group(1), float(match.group(2)))


@dataclass
class LoadConfig:
    """One load-test run.

    Attributes:
        sessions: Broadcasters (and listeners) at once.
        seconds: Media seconds each broadcaster sends.
        source: Video file every broadcaster sends (looped as needed).
        source_seconds: Length of ``source`` in seconds.
        nats_url: NATS server URL of the system under test.
        prefix: Subject prefix.
        chaos: Replica kill during the run, if any.
        warmup_s: Seconds at the start excluded from the lag and latency statistics.
        lag_limit_s: p95 lag up to which a session counts as held at real time, seconds.
        drain_s: Seconds to wait for the streams to end after the broadcasters stop.
        lockstep: Every broadcaster plays the source from its start (the same events in
            every stream within a second: the worst case); otherwise broadcaster ``i`` of
            ``N`` starts at the keyframe before ``i / N`` of the source.
    """

    sessions: int
    seconds: float
    source: Path
    source_seconds: float
    nats_url: str
    prefix: str = "mmd"
    chaos: Chaos | None = None
    warmup_s: float = 5.0
    lag_limit_s: float = 1.0
    drain_s: float = 20.0
    lockstep: bool = False


@dataclass
class _Stream:
    stream: str
    listener: Listener
    error: str = ""


@dataclass
class Progress:
    """What a progress display shows, updated every second of a run."""

    elapsed_s: float = 0.0
    lines: int = 0
    steps: int = 0
    median_lag_s: float = 0.0
    refused: int = 0
    events: list[str] = field(default_factory=list)


def _pct_ms(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    p = np.percentile(np.asarray(values) * 1000.0, [50, 95, 99])
    return {"n": len(values), "p50": round(float(p[0]), 1), "p95": round(float(p[1]), 1), "p99": round(float(p[2]), 1)}


async def run_load(
    cfg: LoadConfig,
    *,
    kill: Callable[[str], Awaitable[tuple[str, int]]] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Runs one load test (see the module docstring).

    Args:
        cfg: The run.
        kill: Kills a replica of a stage for the chaos event (e.g. :func:`kill_busiest`);
            returns the killed replica's id and the streams it held. Needed when
            ``cfg.chaos`` is set.
        on_progress: Called about once a second.

    Returns:
        The figures of the run (JSON-serialisable).

    Raises:
        ValueError: If ``cfg.chaos`` is set without ``kill``.
    """
    if cfg.chaos is not None and kill is None:
        raise ValueError("a chaos event needs a way to kill replicas (the embedded system)")
    run_id = uuid.uuid4().hex[:6]
    streams = [_Stream(s, Listener(s, cfg.nats_url, prefix=cfg.prefix, kinds=("tokens", "text", "audio", "status")))
               for s in (validate_stream_id(f"lt{run_id}-{i:03d}") for i in range(cfg.sessions))]
    for st in streams:
        await st.listener.start()
    sampler = ProcessSampler()
    sampler.sample()
    loops = math.ceil(cfg.seconds / max(cfg.source_seconds, 0.1)) + 1
    t0 = time.time()

    async def broadcast(st: _Stream, delay_s: float, start_s: float) -> None:
        await asyncio.sleep(delay_s)
        try:
            await publish(str(cfg.source), stream=st.stream, nats_url=cfg.nats_url, prefix=cfg.prefix,
                          realtime=True, loop=loops, max_seconds=cfg.seconds, start_s=start_s)
        except MMDError as exc:
            st.error = f"{exc.code}: {exc}"

    # Start staggered over one second so that keyframes and steps do not all coincide, and
    # (unless in lockstep) each at its own point of the source, as independent streams are.
    broadcasts = []
    for i, st in enumerate(streams):
        start_s = 0.0 if cfg.lockstep else cfg.source_seconds * i / max(1, cfg.sessions)
        broadcasts.append(asyncio.create_task(broadcast(st, i / max(1, cfg.sessions), start_s)))
    progress = Progress()
    chaos: dict[str, Any] = {}
    while not all(task.done() for task in broadcasts):
        await asyncio.sleep(1.0)
        sampler.sample()
        now = time.time()
        if cfg.chaos is not None and kill is not None and not chaos and now - t0 >= cfg.chaos.at_s:
            victim, n_held = await kill(cfg.chaos.stage)
            killed_at = time.time()  # the replica's process is gone now
            chaos = {"stage": cfg.chaos.stage, "replica": victim, "at_s": round(killed_at - t0, 3),
                     "killed_ts": killed_at, "streams_on_replica": n_held}
            progress.events.append(f"killed {victim} at {killed_at - t0:.1f} s ({n_held} streams)")
        if on_progress is not None:
            progress.elapsed_s = now - t0
            progress.lines = sum(len(st.listener.lines) for st in streams)
            progress.steps = sum(st.listener.message_counts.get("tokens", 0) for st in streams)
            recent = [lat for st in streams for (arr, _, lat) in st.listener.timeline[-20:] if now - arr < 2.0]
            progress.median_lag_s = float(np.median(recent)) if recent else 0.0
            progress.refused = sum(bool(st.error) for st in streams)
            on_progress(progress)
    deadline = time.monotonic() + cfg.drain_s
    for st in streams:
        if not st.error:
            try:
                await asyncio.wait_for(st.listener.ended.wait(), timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                st.error = st.error or "did not end within the drain time"
    await asyncio.sleep(0.5)
    for st in streams:
        await st.listener.stop()
    return _figures(cfg, streams, t0, sampler, chaos)


async def kill_busiest(system: Any, nats_url: str, stage: str) -> tuple[str, int]:
    """Kills the replica of ``stage`` that holds the most streams (from the session records).

    Args:
        system: The :class:`~actors.embedded.EmbeddedSystem` under test.
        nats_url: Its NATS URL.
        stage: Stage name.

    Returns:
        The killed replica's id and the number of streams it held.
    """
    from actors.placement import SESSIONS_BUCKET, decode_session
    from streams.bus import connect

    nc = await connect(nats_url, name="mmd-loadtest-chaos")
    try:
        kv = await nc.jetstream().key_value(SESSIONS_BUCKET)
        held: dict[str, int] = defaultdict(int)
        for key in await kv.keys():
            entry = await kv.get(key)
            assert entry.value is not None  # a record is never stored empty
            record = decode_session(entry.value)
            if stage in record.replicas:
                held[record.replicas[stage]] += 1
    finally:
        await nc.close()
    if held:
        victim = max(held, key=lambda r: held[r])
        await asyncio.to_thread(system.kill_replica, stage, victim.removeprefix(f"{stage}-"))
        return victim, held[victim]
    tag = await asyncio.to_thread(system.kill_replica, stage)
    return f"{stage}-{tag}", 0


def _figures(cfg: LoadConfig, streams: list[_Stream], t0: float, sampler: ProcessSampler,
             chaos: dict[str, Any]) -> dict[str, Any]:
    first_text, first_audio, word_audio = [], [], []  # lines that began after the warm-up
    all_text, all_audio, all_word_audio = [], [], []  # every line
    per_stream: list[dict[str, Any]] = []
    lag_by_second: dict[int, list[float]] = defaultdict(list)
    drops: dict[str, int] = defaultdict(int)
    expected_steps = MODEL_FPS_HZ * cfg.seconds
    for st in streams:
        lst = st.listener
        for line in lst.lines.values():
            steady = line.capture_ts - t0 >= cfg.warmup_s
            if line.first_text_wall:
                all_text.append(line.first_text_wall - line.capture_ts)
                if steady:
                    first_text.append(all_text[-1])
            if line.first_audio_wall:
                all_audio.append(line.first_audio_wall - line.capture_ts)
                if steady:
                    first_audio.append(all_audio[-1])
                if line.first_text_wall:
                    all_word_audio.append(line.first_audio_wall - line.first_text_wall)
                    if steady:
                        word_audio.append(all_word_audio[-1])
        worst: dict[int, float] = {}
        steady_lags = []
        for arrived, kind, lat in lst.timeline:
            if kind not in ("tokens", "text"):
                continue
            sec = int(arrived - t0)
            worst[sec] = max(worst.get(sec, 0.0), lat)
            if arrived - t0 >= cfg.warmup_s:
                steady_lags.append(lat)
        for sec, lat in worst.items():
            lag_by_second[sec].append(lat)
        dropped = {stage: int(c["counters"].get("dropped", 0)) for stage, c in lst.final_counters.items()}
        for stage, n in dropped.items():
            drops[stage] += n
        steps = lst.message_counts.get("tokens", 0)
        p95 = float(np.percentile(steady_lags, 95)) if steady_lags else float("inf")
        held = (not st.error and p95 <= cfg.lag_limit_s and steps >= 0.9 * expected_steps
                and sum(dropped.values()) == 0)
        per_stream.append({"stream": st.stream, "held": held, "error": st.error, "steps": steps,
                           "lines": len(lst.lines), "lag_p95_s": round(p95, 3) if steady_lags else None,
                           "dropped": dropped})
    lag = [{"t_s": sec, "median_s": round(float(np.median(v)), 3), "max_s": round(float(max(v)), 3)}
           for sec, v in sorted(lag_by_second.items())]
    result = {
        "sessions": cfg.sessions,
        "seconds": cfg.seconds,
        "source": str(cfg.source),
        "held_at_real_time": sum(s["held"] for s in per_stream),
        "all_held": all(s["held"] for s in per_stream),
        "lag_limit_s": cfg.lag_limit_s,
        "latency_ms": {"capture_to_first_text": _pct_ms(first_text), "capture_to_first_audio": _pct_ms(first_audio),
                       "first_word_to_first_audio": _pct_ms(word_audio)},
        "latency_ms_with_warmup": {"capture_to_first_text": _pct_ms(all_text),
                                   "capture_to_first_audio": _pct_ms(all_audio),
                                   "first_word_to_first_audio": _pct_ms(all_word_audio)},
        "speech": speech_figures(st.listener.final_counters.get("tts", {}).get("counters", {}) for st in streams),
        "lag": lag,
        "drops_per_stage": dict(drops),
        "throughput": _throughput(streams, t0),
        "processes": sampler.summary(),
        "streams": per_stream,
        "chaos": _chaos_figures(streams, chaos) if chaos else None,
        "_samples": {"first_text_s": first_text, "first_audio_s": first_audio},
    }
    return result


def _throughput(streams: list[_Stream], t0: float) -> dict[str, list[dict[str, float]]]:
    """Per stage, messages emitted per second over time, from the periodic counters."""
    series: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for st in streams:
        last: dict[str, tuple[float, int]] = {}
        for s in st.listener.statuses:
            if s.code != "counters" or "emitted" not in s.counters:
                continue
            t, n = s.capture_ts, int(s.counters["emitted"])
            if s.stage in last and t > last[s.stage][0] and n >= last[s.stage][1]:
                t_prev, n_prev = last[s.stage]
                series[s.stage][int((t - t0) // 5) * 5] += (n - n_prev) / (t - t_prev)
            last[s.stage] = (t, n)
    return {stage: [{"t_s": t, "msgs_per_s": round(v, 2)} for t, v in sorted(points.items())]
            for stage, points in series.items()}


def _chaos_figures(streams: list[_Stream], chaos: dict[str, Any]) -> dict[str, Any]:
    killed = chaos["killed_ts"]
    recovery, lost, moved = [], 0, 0
    for st in streams:
        controller = [s for s in st.listener.statuses
                      if s.stage == "controller" and s.code == "failover" and s.capture_ts >= killed]
        if not controller:
            continue
        moved += 1
        taken = [s for s in st.listener.statuses
                 if s.stage == chaos["stage"] and s.code == "failover" and s.capture_ts >= killed]
        if taken:
            recovery.append(taken[0].capture_ts - killed)
            lost += int(taken[0].counters.get("lost_in_failover", 0))
    return {**{k: v for k, v in chaos.items() if k != "killed_ts"},
            "streams_moved": moved, "streams_recovered": len(recovery),
            "recovery_s_max": round(max(recovery), 3) if recovery else None,
            "recovery_s_mean": round(float(np.mean(recovery)), 3) if recovery else None,
            "lost_messages": lost}


async def sweep(
    make_config: Callable[[int], LoadConfig],
    max_sessions: int,
    *,
    run: Callable[[LoadConfig], Awaitable[dict[str, Any]]],
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    pause_s: float = 3.0,
) -> dict[str, Any]:
    """Finds the largest number of sessions held entirely at real time.

    Doubles the load from 1 while every session is held, then bisects between the last
    load held and the first one not held; at most ``max_sessions``.

    Args:
        make_config: Sessions → the run's config.
        max_sessions: Largest load tried.
        run: Runs one trial (e.g. ``run_load`` with its keyword arguments bound).
        on_trial: Called with each trial's figures.
        pause_s: Seconds between trials (sessions close, queues drain).

    Returns:
        ``max_sessions_held``, ``trials`` (every run's figures) and ``best_run`` (the
        run at the largest load held, or None).
    """
    trials: dict[int, dict[str, Any]] = {}

    async def trial(n: int) -> bool:
        if n not in trials:
            trials[n] = await run(make_config(n))
            if on_trial is not None:
                on_trial(trials[n])
            await asyncio.sleep(pause_s)
        return bool(trials[n]["all_held"])

    good, n = 0, 1
    while n <= max_sessions and await trial(n):
        good, n = n, n * 2
    bad = min(n, max_sessions + 1)
    if bad == max_sessions + 1 and good < max_sessions and await trial(max_sessions):
        good = max_sessions
    while bad - good > 1 and good < max_sessions:
        mid = (good + bad) // 2
        if await trial(mid):
            good = mid
        else:
            bad = mid
    return {"max_sessions_held": good, "trials": [trials[k] for k in sorted(trials)],
            "best_run": trials.get(good)}

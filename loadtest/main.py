"""``mmduplex loadtest``: set up the source and the system under test, run, report.

Without ``--nats`` the load test starts the embedded system (local NATS + local Ray +
the Serve app, loopback only) sized for the load: every replica holds
``--sessions`` streams, ``--replicas`` sets how many replicas each stage has, and
``--checkpoint`` picks the commentator. With ``--nats URL`` it targets a running
system (chaos events need the embedded one: they kill a replica through Ray).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.report import summary_table, write_outputs
from loadtest.run import Chaos, LoadConfig, Progress, kill_busiest, run_load, sweep
from streams import settings
from streams.errors import MediaError

log = logging.getLogger(__name__)


@dataclass
class LoadOptions:
    """Command-line options of ``mmduplex loadtest`` (see its ``--help``)."""

    sessions: int
    seconds: float
    source: str
    fps: int
    nats: str | None
    prefix: str
    chaos: Chaos | None
    sweep: bool
    out: Path
    replicas: dict[str, int]
    checkpoint: Path | None
    int8: bool
    lag_limit_s: float
    lockstep: bool = False


def parse_replicas(text: str) -> dict[str, int]:
    """Parses ``stage=N,stage=N`` (e.g. ``commentator=2,decoder=2``).

    Raises:
        ValueError: If malformed.
    """
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        stage, _, n = part.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"expected STAGE=N with N >= 1, got {part!r}")
        out[stage] = int(n)
    return out


def prepare_source(source: str, fps: int) -> tuple[Path, float]:
    """The video every broadcaster sends and its length in seconds.

    ``synthetic`` renders a 20 s procedural match (320x240, H.264, ``fps`` frames per
    second) once into the cache.

    Raises:
        MediaError: If the file is missing or unreadable.
    """
    import av

    if source == "synthetic":
        from models.data.procedural import ClipSpec, write_clip

        path = settings.cache_dir() / "loadtest" / f"synthetic-match-{fps}fps.mp4"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_clip(ClipSpec(kind="match", seed=2027, duration_s=20.0, fps=fps), path)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise MediaError(f"no such file: {source}")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            duration, time_base = stream.duration, stream.time_base
            if duration and time_base is not None:
                seconds = float(duration * time_base)
            elif container.duration is not None:
                seconds = container.duration / 1e6
            else:
                raise MediaError(f"cannot read {path}: it declares no duration")
    except (av.error.FFmpegError, IndexError) as exc:
        raise MediaError(f"cannot read {path}: {exc}") from None
    return path, seconds


def run(opts: LoadOptions) -> dict[str, Any]:
    """Runs the load test (or sweep) and writes its outputs; returns the figures."""
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    console = Console()
    source, source_s = prepare_source(opts.source, opts.fps)
    with contextlib.ExitStack() as stack:
        system = None
        nats_url = opts.nats
        if nats_url is None:
            from actors.embedded import EmbeddedSystem

            overrides: dict[str, Any] = {"max_sessions": opts.sessions, "streams_per_replica": opts.sessions,
                                         "replicas": opts.replicas, "num_cpus_per_replica": 0.05,
                                         "idle_timeout_s": 30.0}
            if opts.checkpoint is not None:
                overrides["checkpoint"] = opts.checkpoint
            if opts.int8:
                overrides["int8_backbone"] = True
            console.print(f"[bold]starting the embedded system[/] (replicas {opts.replicas or 'one per stage'}) ...")
            system = stack.enter_context(EmbeddedSystem(app_overrides=overrides))  # stopped on any exit
            nats_url = system.nats_url
        if opts.chaos is not None and system is None:
            raise SystemExit("mmduplex loadtest: error: --chaos needs the embedded system (no --nats)")

        def config(n: int) -> LoadConfig:
            return LoadConfig(sessions=n, seconds=opts.seconds, source=source, source_seconds=source_s,
                              nats_url=nats_url, prefix=opts.prefix, chaos=opts.chaos, lag_limit_s=opts.lag_limit_s,
                              lockstep=opts.lockstep)

        async def kill(stage: str) -> tuple[str, int]:
            return await kill_busiest(system, nats_url, stage)

        with Bar(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                 TimeElapsedColumn(), console=console) as bar:
            async def one(cfg: LoadConfig) -> dict[str, Any]:
                task = bar.add_task(f"{cfg.sessions} sessions", total=cfg.seconds, info="")

                def show(p: Progress) -> None:
                    bar.update(task, completed=min(p.elapsed_s, cfg.seconds),
                               info=f"{p.steps} steps, {p.lines} lines, lag {p.median_lag_s:.2f} s"
                                    + (f", {p.refused} refused" if p.refused else "")
                                    + (f" | {p.events[-1]}" if p.events else ""))

                result = await run_load(cfg, kill=kill if system is not None else None, on_progress=show)
                bar.update(task, completed=cfg.seconds,
                           info=f"{result['held_at_real_time']}/{cfg.sessions} held at real time")
                return result

            if opts.sweep:
                result = asyncio.run(sweep(config, opts.sessions, run=one))
            else:
                result = asyncio.run(one(config(opts.sessions)))
    result["config"] = {"source": str(source), "fps": opts.fps, "lockstep": opts.lockstep, "replicas": opts.replicas,
                        "checkpoint": str(opts.checkpoint or settings.checkpoint_path()), "int8": opts.int8,
                        "nats": opts.nats or "embedded"}
    paths = write_outputs(result, opts.out)
    console.print(summary_table(result))
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return result

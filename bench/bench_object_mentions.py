"""Where object mentions are lost: what the detector can find, and what a model says, per noun.

1. Detector ceiling: for each held-out clip, the COCO detector (:mod:`models.vision.detector`)
   looks at one frame a second, scaled to each frame size asked for (default 160x120, the
   model grid; 320x240; 480x360). A reference line's object noun that names a COCO class
   (:data:`models.data.label.COCO_NOUNS`) is *found* when a box of that class was seen
   within ±2 s of the line's start. This bounds what any model fed the detector's classes
   could name.
2. Per noun (with ``--metrics``): the object mention recall of an ``mmduplex eval`` run
   (its ``metrics.json``, per-clip produced lines), noun by noun, and the nouns it said.

Prints two tables and writes ``bench/results/object_mentions.json``.

Usage:
    python bench/bench_object_mentions.py [--data ~/.cache/mmduplex/realclips/heldout]
        [--sizes 160x120 320x240 480x360] [--metrics out/eval-real/metrics.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import av
import numpy as np
from rich.console import Console
from rich.table import Table

from models.data.dataset import clip_lines, find_clips
from models.data.label import COCO_NOUNS, OBJECT_NOUNS
from models.lm.vocab import words
from models.training.metrics import noun_lemma, object_mention_scores
from models.vision.detector import ObjectDetector

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE_S = 2.0
_CLASS_OF_NOUN = {noun: name for name, noun in COCO_NOUNS.items() if " " not in noun}


def reference_nouns(lines: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """``(start_s, noun)`` of each object noun of the lines (singular, once per line)."""
    return [(t, n) for t, text in lines for n in dict.fromkeys(noun_lemma(w) for w in words(text))
            if n in OBJECT_NOUNS]


def seen_classes(clip: Path, detector: ObjectDetector, size: tuple[int, int]) -> list[tuple[float, set[str]]]:
    """``(t_s, class names)`` of the detector's boxes on one frame a second, scaled to ``size``."""
    out: list[tuple[float, set[str]]] = []
    next_t = 0.0
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            t = float(frame.time or 0.0)
            if t + 1e-6 < next_t:
                continue
            rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
            out.append((t, {d.name for d in detector.detect(rgb.astype(np.uint8, copy=False))}))
            next_t = t + 1.0
    return out


def detector_ceiling(clips: list[Path], sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """Per size, the COCO-noun references with a box of their class within ±2 s."""
    detector = ObjectDetector()
    refs = {c: [(t, n) for t, n in reference_nouns(clip_lines(c)) if n in _CLASS_OF_NOUN] for c in clips}
    result: dict[str, Any] = {"references": sum(len(r) for r in refs.values()), "found": {}}
    for w, h in sizes:
        found = 0
        for clip in clips:
            if not refs[clip]:
                continue
            seen = seen_classes(clip, detector, (w, h))
            found += sum(any(abs(ts - t) <= TOLERANCE_S and _CLASS_OF_NOUN[n] in names for ts, names in seen)
                         for t, n in refs[clip])
        result["found"][f"{w}x{h}"] = found
    return result


def per_noun(metrics_path: Path) -> dict[str, Any]:
    """Object mention recall of an eval run noun by noun, and the nouns it said."""
    m = json.loads(metrics_path.read_text())
    total: Counter[str] = Counter()
    hit: Counter[str] = Counter()
    said: Counter[str] = Counter()
    for clip in m["per_clip"]:
        produced = [(p["start_s"], p["text"]) for p in clip["produced"]]
        for t, n in reference_nouns([(r["start_s"], r["text"]) for r in clip["reference"]]):
            total[n] += 1
            hit[n] += object_mention_scores(produced, [(t, n)], OBJECT_NOUNS, TOLERANCE_S, words=words)[0]
        said.update(n for _, n in reference_nouns(produced))
    return {"checkpoint": m.get("checkpoint"), "recall": {n: [hit[n], c] for n, c in total.most_common()},
            "said": dict(said.most_common())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("~/.cache/mmduplex/realclips/heldout").expanduser(),
                    help="labelled clips (default: %(default)s)")
    ap.add_argument("--sizes", nargs="+", default=["160x120", "320x240", "480x360"], help="detector frame sizes")
    ap.add_argument("--metrics", type=Path, default=None, help="an `mmduplex eval` metrics.json for the per-noun table")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "object_mentions.json")
    args = ap.parse_args()
    clips = find_clips(args.data)
    if not clips:
        raise SystemExit(f"bench_object_mentions: no labelled clips in {args.data} (mmduplex footage; mmduplex label)")
    sizes = [(int(s.split("x")[0]), int(s.split("x")[1])) for s in args.sizes]
    console = Console()
    result: dict[str, Any] = {"data": str(args.data), "clips": len(clips),
                              "detector": detector_ceiling(clips, sizes)}
    table = Table(title=f"detector ceiling: COCO-noun references with a box of their class within ±2 s "
                        f"({len(clips)} clips, one frame a second)")
    table.add_column("frame size")
    table.add_column("found / references")
    for size, found in result["detector"]["found"].items():
        table.add_row(size, f"{found} / {result['detector']['references']}")
    console.print(table)
    if args.metrics:
        result["per_noun"] = per_noun(args.metrics)
        table = Table(title=f"object mention recall per noun: {result['per_noun']['checkpoint']}")
        table.add_column("noun")
        table.add_column("recalled / references")
        for noun, (h, n) in result["per_noun"]["recall"].items():
            table.add_row(noun, f"{h} / {n}")
        console.print(table)
        console.print(f"nouns said: {result['per_noun']['said']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Unit tests of models/data/realclips.py on tiny videos and photos made here (no downloads)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from mmduplex.footage import FootageItem, Kind, Package, Split
from models.data.realclips import (
    CAMERA_MOTIONS,
    FPS,
    GEN_SUFFIX,
    MIN_KEEP,
    CameraPlan,
    Cutout,
    composite_track,
    draw_camera_move,
    draw_composite,
    find_cuts,
    make_real_clips,
    render_camera_move,
    render_composite,
    split_segments,
    write_segment,
)
from models.vision.flow import optical_flow, to_luma, translated_texture

W, H = 64, 48  # test video frame size, px


def _texture(seed: int, h: int, w: int) -> np.ndarray:
    """uint8 [h, w, 3] smooth random texture (grey, each channel a little different)."""
    grey = translated_texture(seed=seed, h=h, w=w)
    return (np.stack([grey, grey * 0.9 + 0.05, grey * 0.8 + 0.1], axis=-1) * 255).astype(np.uint8)


def _write_video(path: Path, shots: list[np.ndarray], seconds: list[float], fps: int) -> Path:
    """An H.264 video of shots (each one drifting right by 3 px a frame), cut between them."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        n = 0
        for img, s in zip(shots, seconds, strict=True):
            for i in range(round(s * fps)):
                frame = av.VideoFrame.from_ndarray(np.roll(img, 3 * i, axis=1), format="rgb24")
                frame.pts = n
                n += 1
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _frames(path: Path) -> tuple[list[np.ndarray], av.video.stream.VideoStream]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream


def _two_shots() -> list[np.ndarray]:
    """Shot A: bright left half; shot B: another texture, bright right half."""
    a, b = _texture(1, H, W), _texture(2, H, W)
    a[:, : W // 2] = np.minimum(a[:, : W // 2].astype(int) + 120, 255)
    b[:, W // 2 :] = np.minimum(b[:, W // 2 :].astype(int) + 120, 255)
    return [a, b]


def test_split_segments_cuts_long_videos_at_scene_cuts() -> None:
    assert split_segments(8.0, []) == [(0.0, 8.0)]
    # No cut: even segments of 10-20 s.
    even = split_segments(50.0, [])
    assert len(even) == 3 and all(b - a == pytest.approx(50 / 3) for a, b in even)
    # A cut inside the allowed range is taken; one that would leave a short segment is not.
    assert split_segments(25.0, [12.0]) == [(0.0, 12.0), (12.0, 25.0)]
    assert split_segments(25.0, [3.0, 22.0]) == [(0.0, 12.5), (12.5, 25.0)]
    rng = np.random.default_rng(0)
    for _ in range(200):
        duration = float(rng.uniform(20.5, 300))
        segs = split_segments(duration, sorted(rng.uniform(0, duration, int(rng.integers(0, 20)))))
        assert segs[0][0] == 0.0 and segs[-1][1] == duration
        assert all(a1 == b0 for (_, a1), (b0, _) in zip(segs, segs[1:], strict=False))
        assert all(10.0 - 1e-9 <= b - a <= 20.0 + 1e-9 for a, b in segs)


def test_find_cuts_and_write_segment(tmp_path: Path) -> None:
    shots = _two_shots()
    src = _write_video(tmp_path / "src.mp4", shots, [3.0, 3.0], fps=10)
    cuts = find_cuts(src)
    assert len(cuts) == 1 and cuts[0] == pytest.approx(3.0, abs=0.11)

    # From the cut on, resampled from 10 to 25 fps: shot B's first frame, each source frame 2-3 times.
    out = tmp_path / "seg.mp4"
    width, height, fps, n = write_segment(src, out, offset_s=3.0, duration_s=2.0, fps=FPS)
    frames, stream = _frames(out)
    assert (width, height, float(fps), n, len(frames)) == (W, H, FPS, 50, 50)
    assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    assert stream.average_rate is not None and float(stream.average_rate) == pytest.approx(FPS)
    err_b = np.abs(frames[0].astype(int) - shots[1]).mean()
    assert err_b < 6 < np.abs(frames[0].astype(int) - shots[0]).mean()
    distinct = sum(1 for f0, f1 in zip(frames, frames[1:], strict=False) if np.abs(f1.astype(int) - f0).mean() > 1)
    assert distinct == pytest.approx(19, abs=1)  # 20 source frames in 2 s

    # A mirrored crop: the bright half of shot B moves to the left.
    flipped = tmp_path / "flip.mp4"
    write_segment(src, flipped, offset_s=3.0, duration_s=1.0, crop_xywh=(8, 0, 48, 48), flip=True, fps=FPS)
    f0 = _frames(flipped)[0][0].astype(int)
    assert f0.shape == (48, 48, 3)
    assert np.abs(f0 - shots[1][:, 8:56][:, ::-1]).mean() < 6
    assert f0[:, :24].mean() > f0[:, 24:].mean() + 60


def _camera_flow(plan: CameraPlan, photo: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """Per frame pair, in the middle of the frame: median content motion dx, dy (px) and scale rate."""
    lumas = [np.asarray(to_luma(f, np)) for f in render_camera_move(photo, plan)]
    h, w = lumas[0].shape
    ys, xs = np.mgrid[h // 6 : h - h // 6, w // 6 : w - w // 6]
    rx, ry = xs - xs.mean(), ys - ys.mean()
    dxs, dys, scales = [], [], []
    for a, b in zip(lumas, lumas[1:], strict=False):
        f = np.asarray(optical_flow(a, b, xp=np))[h // 6 : h - h // 6, w // 6 : w - w // 6]
        dxs.append(float(np.median(f[..., 0])))
        dys.append(float(np.median(f[..., 1])))
        scales.append(float((rx * f[..., 0] + ry * f[..., 1]).sum() / (rx * rx + ry * ry).sum()))
    return dxs, dys, scales


@pytest.mark.parametrize("motion", ["pan_left", "pan_right", "tilt_up", "tilt_down"])
def test_pans_and_tilts_move_the_content_the_other_way(motion: str) -> None:
    photo = _texture(3, 300, 400)
    plan = draw_camera_move(np.random.default_rng(7), motion, Path("photo.png"), (400, 300), size=(160, 120))
    assert plan.start.width == plan.end.width and plan.start_s < plan.end_s
    dxs, dys, _ = _camera_flow(plan, photo)
    step = plan.start.width / 160  # photo px per frame px
    # The window moves with the camera; the content moves the other way on screen.
    want_dx, want_dy = -(plan.end.cx - plan.start.cx) / step, -(plan.end.cy - plan.start.cy) / step
    sign = {"pan_left": (1, 0), "pan_right": (-1, 0), "tilt_up": (0, 1), "tilt_down": (0, -1)}[motion]
    assert (np.sign(round(want_dx)), np.sign(round(want_dy))) == sign
    assert sum(dxs) == pytest.approx(want_dx, abs=0.05 * abs(want_dx) + 1.0)
    assert sum(dys) == pytest.approx(want_dy, abs=0.05 * abs(want_dy) + 1.0)
    # Still before and after the move.
    before, after = int(plan.start_s * FPS) - 1, int(plan.end_s * FPS) + 1
    assert max(map(abs, dxs[:before] + dys[:before] + dxs[after:] + dys[after:])) < 0.05


@pytest.mark.parametrize("motion", ["zoom_in", "zoom_out"])
def test_zooms_scale_the_content(motion: str) -> None:
    photo = _texture(4, 300, 400)
    focus = Cutout("thing", None, (0.6, 0.5, 0.8, 0.9))
    plan = draw_camera_move(np.random.default_rng(3), motion, Path("photo.png"), (400, 300), size=(160, 120),
                            focus=focus)
    assert plan.focus == "thing"
    _, _, scales = _camera_flow(plan, photo)
    # Content grows (zoom in) by the ratio of the window widths: the summed scale rates are its log.
    want = np.log(plan.start.width / plan.end.width)
    assert (want > 0) == (motion == "zoom_in")
    assert sum(scales) == pytest.approx(want, rel=0.1)
    end = plan.end if motion == "zoom_in" else plan.start  # the narrow window closes in on the object
    assert end.cx == pytest.approx(0.7 * 400, abs=1e-6) or end.cx + end.width / 2 == pytest.approx(400)


@pytest.mark.parametrize("direction", ["left", "right"])
def test_composite_enters_from_its_side(direction: str) -> None:
    background = np.full((240, 320, 3), (40, 90, 40), np.uint8)
    obj_photo = np.full((100, 100, 3), (255, 255, 255), np.uint8)
    obj_photo[20:80, 30:70] = (230, 20, 20)
    cutout = Cutout("box", None, (0.3, 0.2, 0.7, 0.8), facing="right" if direction == "left" else "left")
    plan = draw_composite(np.random.default_rng(5), background=Path("b.png"), background_wh=(320, 240),
                          object_photo=Path("o.png"), object_wh=(100, 100), cutout=cutout, augment=False,
                          size=(160, 120))
    assert plan.direction == direction and not plan.object_flip  # held-out style: enters the way it faces
    plan = dataclasses.replace(plan, leave=True, duration_s=10.0)
    cxs, times = composite_track(plan)
    red = [(f[..., 0].astype(int) - f[..., 1] > 0) for f in render_composite(background, obj_photo, plan)]
    cols = [np.nonzero(m.any(axis=0))[0] for m in red]
    first = next(i for i, c in enumerate(cols) if len(c))
    feather_s = 0.12 * min(plan.object_size) / plan.speed_px_s  # the soft edge shows late
    assert times["enter_start_s"] <= first / FPS <= times["enter_start_s"] + feather_s + 1 / FPS
    edge = 0 if direction == "left" else 159
    assert edge in cols[first]  # it comes in at the stated side...
    stop = int(times["stop_s"] * FPS) + 1
    centres = [c.mean() for c in cols[first:stop] if len(c)]
    assert (np.diff(centres) > 0).mean() > 0.9 if direction == "left" else (np.diff(centres) < 0).mean() > 0.9
    assert centres[-1] == pytest.approx(plan.stop_cx, abs=2)  # ...stops inside...
    assert 0 not in cols[stop] and 159 not in cols[stop]
    gone = int(np.ceil(times["outside_s"] * FPS)) + 1
    assert times["outside_s"] < plan.duration_s and not any(len(c) for c in cols[gone:])  # ...and leaves
    last = max(i for i, c in enumerate(cols) if len(c))
    assert last > stop and (159 if direction == "left" else 0) in cols[last]  # at the other side


def _photo(path: Path, seed: int) -> Path:
    Image.fromarray(_texture(seed, 150, 200)).save(path)
    return path


def _footage(root: Path) -> list[FootageItem]:
    """Train: a 25 s video cut at 12 s and two photos; held out: a 6 s video and two photos."""
    pkg = Package("pypi", "made-here==0")
    root.mkdir()
    train_video = _write_video(root / "train.mp4", _two_shots(), [12.0, 13.0], fps=5)
    held_video = _write_video(root / "held.mp4", _two_shots()[::-1], [3.0, 3.0], fps=5)

    def item(path: Path, source: str, kind: Kind, split: Split) -> FootageItem:
        return FootageItem(path, pkg, path.name, source, "CC0", kind, split, f"{source} made in the test")

    return [
        item(train_video, "tv", "video", "train"),
        item(_photo(root / "p1.png", 11), "tp1", "photo", "train"),
        item(_photo(root / "p2.png", 12), "tp2", "photo", "train"),
        item(held_video, "hv", "video", "heldout"),
        item(_photo(root / "h1.png", 21), "hp1", "photo", "heldout"),
        item(_photo(root / "h2.png", 22), "hp2", "photo", "heldout"),
    ]


def test_make_real_clips_splits_by_source_and_is_deterministic(tmp_path: Path) -> None:
    items = _footage(tmp_path / "footage")
    cutouts = {"tp1": (Cutout("person", "person", (0.2, 0.1, 0.5, 0.9)),),
               "hp1": (Cutout("cat", "cat", (0.4, 0.3, 0.8, 0.9), facing="left"),)}
    kw: dict[str, Any] = {"seed": 3, "n_per_source": 4, "heldout_per_photo": 2, "items": items, "cutouts": cutouts,
          "photo_size": (96, 72), "max_width": 48, "progress": False}
    first = make_real_clips(tmp_path / "a", workers=1, **kw)
    assert len(first["train"]) == 3 * 4 and len(first["heldout"]) == 1 + 2 * 2

    split_of = {item.source: item.split for item in items}
    kinds: dict[str, set[str]] = {"train": set(), "heldout": set()}
    for split, paths in first.items():
        for path in paths:
            assert path.parent == tmp_path / "a" / split
            side = json.loads(path.with_suffix(GEN_SUFFIX).read_text())
            assert {split_of[s] for s in side["sources"]} == {split}, side["sources"]
            kinds[split].add(side["kind"])
            frames, stream = _frames(path)
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            assert stream.average_rate == FPS and len(frames) == side["frames"]
            assert stream.codec_context.width <= 96
            plan = side["plan"]
            if side["kind"] == "segment":
                assert side["segment_s"] in ([0.0, 12.0], [12.0, 25.0], [0.0, 6.0])
                assert (plan["crop_xywh"] is None and not plan["flip"]) == (split == "heldout")
                if split == "train":
                    x, y, w, h = plan["crop_xywh"]
                    assert w >= MIN_KEEP * W - 1 and h >= MIN_KEEP * H - 1
                    assert side["segment_s"][0] <= plan["offset_s"] <= side["segment_s"][0] + 0.3 * 13
            elif side["kind"] == "camera":
                assert plan["motion"] in CAMERA_MOTIONS and side["events"][0]["kind"] == plan["motion"]
                assert 6.0 <= side["duration_s"] <= 10.0
                assert not plan["flip"] or split == "train"
            else:
                assert side["object"] == plan["cutout"]["name"]
                assert side["events"][0]["kind"] == f"enter:{side['direction']}"
                if split == "heldout":  # not augmented: the cat faces left, so it comes in from the right
                    assert not plan["object_flip"] and not plan["background_flip"] and side["direction"] == "right"
    assert kinds == {"train": {"segment", "camera", "composite"}, "heldout": {"segment", "camera", "composite"}}
    train_segments = {json.loads(p.with_suffix(GEN_SUFFIX).read_text())["segment_s"][0] for p in first["train"]
                      if p.name.startswith("tv-")}
    assert train_segments == {0.0, 12.0}  # both sides of the scene cut

    # Same seed, spawned workers, another folder: the same plans byte for byte, the same
    # pictures. (libx264 here is not bit-exact from run to run, even on one thread: now and
    # then a GOP comes out at another quality, ~0.3 levels mean difference; cause not found.)
    second = make_real_clips(tmp_path / "b", workers=2, **kw)
    assert [p.name for p in second["train"]] == [p.name for p in first["train"]]
    for a, b in zip(first["train"] + first["heldout"], second["train"] + second["heldout"], strict=True):
        assert a.with_suffix(GEN_SUFFIX).read_text() == b.with_suffix(GEN_SUFFIX).read_text()
        fa, fb = np.stack(_frames(a)[0]).astype(np.int16), np.stack(_frames(b)[0]).astype(np.int16)
        assert fa.shape == fb.shape and np.abs(fa - fb).mean() < 1.0, a.name

    # Again into the first folder: nothing is rewritten; another seed plans other clips.
    stamps = {p: p.stat().st_mtime_ns for p in first["train"]}
    make_real_clips(tmp_path / "a", workers=1, **kw)
    assert {p: p.stat().st_mtime_ns for p in first["train"]} == stamps
    other = make_real_clips(tmp_path / "c", workers=1, **{**kw, "seed": 4, "n_per_source": 1, "heldout_per_photo": 0})
    assert len(other["train"]) == 3 and len(other["heldout"]) == 1
    assert other["train"][0].read_bytes() != first["train"][0].read_bytes()


def test_training_composites_also_show_far_objects() -> None:
    """Half the training composites place a small, far object higher in the frame; held-out ones never."""
    cutout = Cutout("person", None, (0.3, 0.2, 0.7, 0.8), facing=None)

    def heights(augment: bool) -> list[float]:
        out = []
        for seed in range(40):
            plan = draw_composite(np.random.default_rng(seed), background=Path("b.png"), background_wh=(640, 480),
                                  object_photo=Path("o.png"), object_wh=(100, 200), cutout=cutout, augment=augment,
                                  size=(320, 240))
            assert plan.bottom_y <= 240
            out.append(plan.object_size[1] / 240)
        return out

    held_out, train = heights(False), heights(True)
    assert min(held_out) >= 0.45 - 0.01
    far = [h for h in train if h < 0.45]
    assert 8 <= len(far) <= 32 and min(far) >= 0.15 - 0.01  # about half, 15-40 % of the frame high

"""On-screen text for offline labelling: RapidOCR (PP-OCR text detection and recognition, ONNX).

The teacher that reads signs and captions, so that a labelled clip can say "the sign says
open". It wraps ``rapidocr`` (RapidAI, Apache-2.0), whose wheel ships PaddleOCR's PP-OCRv6
small detector and recogniser as ONNX files (``rapidocr/models/``; nothing is downloaded),
run with ONNX Runtime on the CPU. ``rapidocr`` rather than the older
``rapidocr-onnxruntime`` (PP-OCRv4 inside): the older one requires the GUI build of OpenCV
(``opencv-python``, which needs the system's libGL), the newer one the headless build.

Reading a whole 960x540 frame took seconds on this machine, mostly because the detector
upscales its input until the *shorter* side is 736 px. :class:`TextReader` therefore
(1) runs only the detector (a DB text-region segmenter) on the frame scaled so that its
*longer* side is ``det_max_side`` (about 0.1-0.3 s at 320-480 px on the shared 2-core
machine), which is also the "does this frame hold text at all" check, and (2) runs the
recogniser only on the crops of the regions found, cut from the full-resolution frame.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter

from streams.errors import ModelError

__all__ = ["OcrConfig", "TextBox", "TextReader"]

log = logging.getLogger(__name__)

_WORD_RE = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class OcrConfig:
    """How text is found and which readings are kept."""

    det_max_side: int = 480  # the detector sees the frame scaled to this longer side, px
    min_box_height_px: int = 8  # smaller text regions (in full-resolution pixels) are not read
    max_boxes: int = 6  # read at most this many regions per frame, largest first
    min_score: float = 0.9  # keep readings the recogniser is at least this sure of (mean character prob)
    threads: int = 1  # ONNX Runtime intra-op threads

    def __post_init__(self) -> None:
        if self.det_max_side < 32:
            raise ValueError(f"det_max_side must be >= 32, got {self.det_max_side}")
        if self.max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1, got {self.max_boxes}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


@dataclass(frozen=True, slots=True)
class TextBox:
    """One line of text read in a frame.

    Attributes:
        text: The words read, lowercase letters only, separated by single spaces.
        score: Recogniser confidence in (0, 1].
        x1: Left edge in pixels of the frame read.
        y1: Top edge, px.
        x2: Right edge, px.
        y2: Bottom edge, px.
    """

    text: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


class TextReader:
    """Finds and reads text in RGB frames with RapidOCR (CPU). Not thread-safe.

    Attributes:
        config: The reader's settings.
    """

    def __init__(self, config: OcrConfig = OcrConfig()) -> None:
        """Loads the detector and the recogniser (~0.2 s after the import, which takes seconds).

        Raises:
            ModelError: ``rapidocr`` is not installed or its models cannot be loaded.
        """
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise ModelError(f"on-screen text needs the rapidocr package: {exc}") from exc
        start = time.perf_counter()
        params = {
            "Global.log_level": "error",  # it warns on every frame without text
            "Global.use_cls": False,  # signs and captions are upright
            "Det.limit_type": "max",
            "Det.limit_side_len": config.det_max_side,
            "EngineConfig.onnxruntime.intra_op_num_threads": config.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        try:
            self._engine = RapidOCR(params=params)
        except Exception as exc:  # rapidocr raises its own kinds for missing or bad model files
            raise ModelError(f"cannot load RapidOCR: {exc}") from exc
        self.config = config
        self._scaler = VideoReformatter()
        log.info("RapidOCR loaded in %.2f s", time.perf_counter() - start)

    def read(self, rgb: npt.NDArray[np.uint8]) -> list[TextBox]:
        """Text lines in one frame, most confident first.

        Args:
            rgb: uint8 [H, W, 3] RGB frame, any size.

        Returns:
            Readings scoring at least ``config.min_score`` that hold at least one word
            of letters; boxes in pixels of ``rgb``.

        Raises:
            ValueError: ``rgb`` is not a uint8 [H, W, 3] array.
        """
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
            got = f"{rgb.dtype} {list(rgb.shape)}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f"rgb: expected uint8 [H, W, 3], got {got}")
        h, w = rgb.shape[:2]
        scale = min(1.0, self.config.det_max_side / max(h, w))
        small: np.ndarray = rgb
        if scale < 1.0:
            frame = VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            small = self._scaler.reformat(frame, width=max(1, round(w * scale)), height=max(1, round(h * scale)),
                                          format="rgb24", interpolation="BILINEAR").to_ndarray()
        found = self._engine(np.ascontiguousarray(small[..., ::-1]), use_det=True, use_cls=False, use_rec=False)
        quads = getattr(found, "boxes", None)  # RapidOCR returns one of four output types: detection-only here
        if quads is None or not len(quads):
            return []
        boxes = []
        for quad in np.asarray(quads, np.float32) / scale:  # (4, 2) corners, full-resolution px
            x1, y1 = np.clip(quad.min(axis=0), 0, [w, h])
            x2, y2 = np.clip(quad.max(axis=0), 0, [w, h])
            if y2 - y1 >= self.config.min_box_height_px and x2 > x1:
                boxes.append((float(x1), float(y1), float(x2), float(y2)))
        boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
        out = []
        for x1, y1, x2, y2 in boxes[: self.config.max_boxes]:
            pad = 0.15 * (y2 - y1)  # the detector's boxes hug the glyphs; the recogniser wants a margin
            r0, r1 = int(max(0, y1 - pad)), int(min(h, y2 + pad + 1))
            c0, c1 = int(max(0, x1 - pad)), int(min(w, x2 + pad + 1))
            crop = rgb[r0:r1, c0:c1]
            rec = self._engine(np.ascontiguousarray(crop[..., ::-1]), use_det=False, use_cls=False, use_rec=True)
            txts, scores = getattr(rec, "txts", None), getattr(rec, "scores", None)  # recognition-only output
            if not txts or not scores:
                continue
            text = " ".join(_WORD_RE.findall(str(txts[0]).lower()))
            score = float(scores[0])
            if text and score >= self.config.min_score:
                out.append(TextBox(text=text, score=score, x1=x1, y1=y1, x2=x2, y2=y2))
        return sorted(out, key=lambda b: -b.score)

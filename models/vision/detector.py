"""COCO object detector for offline labelling: CenterNet with a MobileNetV3 backbone, in ONNX.

The network is CenterNet ("Objects as Points", X. Zhou, D. Wang and P. Krähenbühl, 2019):
every object is the peak of a per-class heat map at stride 4, and the box is regressed at
that peak. This one is 610265158/mobilenetv3_centernet's MobileNetV3-large-0.75 model
trained on MS COCO (mAP 0.251 at 512x512 by its README), as ``@vladmandic/human`` ships it;
``scripts/convert_detector.py`` converts it to ``models/weights/centernet_mobilenetv3.onnx``
and ``models/weights/SOURCE.md`` says where it comes from and under which licence.

The graph does CenterNet's own decoding (a 3x3 max-pool keeps the heat-map peaks, then the
top 100): its output ``tower_0/detections`` is float32 [1, 100, 6] of ``[x1, y1, x2, y2,
score, class]``, boxes in pixels of the 512x512 input, class an index into
:data:`COCO_CLASSES`. Around it this module does what human's ``src/object/centernet.ts``
and the upstream ``FaceDetector`` API do:

* **input**: RGB, float32 in 0..255 (the graph's ``/255`` is folded into its first
  convolution: inputs in 0..1 give no score above 0.01). The image is resized to fit
  512x512 keeping its aspect ratio and centred on black (upstream's ``preprocess``, with which
  its COCO mAP was measured). human stretches to 512x512 instead; on scikit-image's full-size
  photos the letterbox's best box was right and scored higher (chelsea: cat 0.52, stretched
  "dog" 0.48; coffee: cup 0.60 vs 0.47; motorcycle_left: motorcycle 0.69 vs 0.50).
  Resizing is bilinear with FFmpeg's scaler (PyAV), as the video decoder resizes.
* **output**: a score threshold, then class-wise non-maximum suppression (human runs a
  class-agnostic ``tf.image.nonMaxSuppression`` at IoU 0.4; class-wise keeps a person on
  a horse), then boxes are mapped back to the input image's pixels.

Non-maximum suppression is :func:`class_wise_nms`, ~15 lines of NumPy: the libraries that have
it are torchvision (built against one torch release; the project pins its own torch),
OpenCV (``cv2.dnn.NMSBoxesBatched``, 50 MB for one function) or an ONNX ``NonMaxSuppression``
node (an edit of the converted graph); for at most 100 boxes NumPy takes microseconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import onnxruntime
from av.video.reformatter import VideoReformatter

from streams.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "weights" / "centernet_mobilenetv3.onnx"
"""The converted detector (``scripts/convert_detector.py`` writes it)."""

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
"""The 80 COCO detection classes in the model's order (human's ``src/object/labels.ts``)."""

_OUTPUT = "tower_0/detections"


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object.

    Attributes:
        x1: Left edge in pixels of the input image (0 = its left border).
        y1: Top edge in pixels.
        x2: Right edge in pixels (``x1 <= x2 <= width``).
        y2: Bottom edge in pixels (``y1 <= y2 <= height``).
        score: Heat-map peak in (0, 1].
        class_id: Index into :data:`COCO_CLASSES` (0 = person; the contiguous 80-class
            index, not COCO's sparse category id 1..90).
        name: ``COCO_CLASSES[class_id]``.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int
    name: str


@dataclass(frozen=True)
class DetectorConfig:
    """How the detector is run and which of its boxes are kept."""

    model_path: Path | None = None  # ONNX file; None = DEFAULT_MODEL
    threads: int = 1  # ONNX Runtime intra-op threads
    score_threshold: float = 0.3  # keep boxes scoring at least this (human: 0.2, upstream's demo: 0.3)
    iou_threshold: float = 0.4  # suppress a box overlapping a better one of its class by more (human: 0.4)
    max_detections: int = 20  # at most this many boxes per image, best first

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")


def class_wise_nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
                   classes: npt.NDArray[np.int64], iou_threshold: float) -> npt.NDArray[np.int64]:
    """Greedy non-maximum suppression within each class.

    Boxes of different classes never suppress each other: each class's boxes are shifted
    by ``class * (largest coordinate + 1)`` so that they cannot overlap another class's
    (torchvision's ``batched_nms`` trick), then one greedy pass keeps the best-scoring box
    and drops the boxes overlapping it by more than ``iou_threshold``.

    Args:
        boxes: float32 [N, 4] ``x1, y1, x2, y2`` in any one unit.
        scores: float32 [N].
        classes: int [N] class of each box.
        iou_threshold: Intersection over union above which the lower-scoring box goes.

    Returns:
        int64 [K] indices of the kept boxes, best score first.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    shifted = boxes + (classes[:, None] * (float(boxes.max()) + 1.0)).astype(boxes.dtype)
    area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        wh = np.clip(np.minimum(shifted[best, 2:], shifted[rest, 2:]) - np.maximum(shifted[best, :2],
                                                                                  shifted[rest, :2]), 0, None)
        inter = wh[:, 0] * wh[:, 1]
        iou = inter / np.maximum(area[best] + area[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


class ObjectDetector:
    """Finds COCO objects in RGB images with the converted CenterNet-MobileNetV3 (CPU).

    Not thread-safe (it keeps one FFmpeg scaler); use one detector per thread.

    Attributes:
        config: The detector's settings.
        input_size: Side of the square network input in pixels (512).
    """

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        """Loads the ONNX model (~0.1 s).

        Raises:
            ModelError: The ONNX file is missing (run ``scripts/convert_detector.py``) or
                cannot be loaded, or its input or output is not the detector's.
        """
        path = config.model_path or DEFAULT_MODEL
        if not path.is_file():
            raise ModelError(f"detector model {path} not found: run `python3.11 scripts/convert_detector.py`")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        start = time.perf_counter()
        try:
            self._session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                                         providers=["CPUExecutionProvider"])
        except Exception as exc:  # a truncated or foreign file: onnxruntime raises its own kinds
            raise ModelError(f"cannot load detector model {path}: {exc}") from exc
        (inp,) = self._session.get_inputs()
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        if len(inp.shape) != 4 or inp.shape[0] != 1 or inp.shape[1] != inp.shape[2] or inp.shape[3] != 3 \
                or outputs.get(_OUTPUT) != [1, 100, 6]:
            raise ModelError(f"{path} is not the CenterNet detector: input {inp.shape}, outputs {outputs}")
        self._input_name = inp.name
        self.input_size: int = int(inp.shape[1])
        self.config = config
        self._scaler = VideoReformatter()
        log.info("detector %s loaded in %.2f s (%d threads)", path.name, time.perf_counter() - start,
                 config.threads)

    def detect(self, rgb: npt.NDArray[np.uint8]) -> list[Detection]:
        """Objects in one image, best score first.

        Args:
            rgb: uint8 [H, W, 3] RGB image, any size.

        Returns:
            At most ``config.max_detections`` detections scoring at least
            ``config.score_threshold``, boxes in pixels of ``rgb``.

        Raises:
            ValueError: ``rgb`` is not a uint8 [H, W, 3] array with H, W >= 1.
        """
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
                and rgb.shape[0] >= 1 and rgb.shape[1] >= 1):
            got = f"{rgb.dtype} {list(rgb.shape)}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f"rgb: expected uint8 [H, W, 3], got {got}")
        h, w = rgb.shape[:2]
        size = self.input_size
        scale = size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        dx, dy = (size - nw) // 2, (size - nh) // 2
        canvas = np.zeros((1, size, size, 3), np.float32)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        canvas[0, dy:dy + nh, dx:dx + nw] = self._scaler.reformat(
            frame, width=nw, height=nh, format="rgb24", interpolation="BILINEAR").to_ndarray()
        (out,) = self._session.run([_OUTPUT], {self._input_name: canvas})
        det = out[0]  # float32 [100, 6]: x1, y1, x2, y2 in input pixels, score, class
        det = det[np.isfinite(det).all(axis=1) & (det[:, 4] >= self.config.score_threshold)]
        classes = det[:, 5].astype(np.int64)
        keep = class_wise_nms(det[:, :4], det[:, 4], classes, self.config.iou_threshold)
        keep = keep[: self.config.max_detections]
        boxes = (det[keep, :4] - np.array([dx, dy, dx, dy], np.float32)) / np.array(
            [nw / w, nh / h, nw / w, nh / h], np.float32)
        boxes = np.clip(boxes, 0.0, np.array([w, h, w, h], np.float32))
        return [Detection(x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3]),
                          score=float(det[i, 4]), class_id=int(classes[i]), name=COCO_CLASSES[int(classes[i])])
                for b, i in zip(boxes, keep, strict=True)]

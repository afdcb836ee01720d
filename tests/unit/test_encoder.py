"""The key-view image encoder: tiny random HF vision towers, and EfficientNet-Lite0 when it is fetched.

The EfficientNet tests read the model that ``mmduplex fetch-models`` puts in the cache and
skip when it is absent (tests never download).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from models.vision.encoder import (
    LITE0_FEATURE_DIM,
    EfficientNetEncoder,
    EncoderConfig,
    HFVisionEncoder,
    encoder_dir,
    load_encoder,
)
from streams.errors import ModelError

DATA = Path(__file__).resolve().parents[1] / "data"
TOWER: dict[str, Any] = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=32, patch_size=8)  # a 4x4 patch grid
CAT_CLASSES = {"tabby, tabby cat", "tiger cat", "Egyptian cat"}


def views(n: int, seed: int = 0, h: int = 120, w: int = 160) -> np.ndarray:
    """n smooth random RGB views, uint8 [n, h, w, 3] (blocks, so resizing keeps them apart)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, h // 20, w // 20, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 20, axis=1), 20, axis=2)


def chelsea() -> np.ndarray:
    """The committed photo of a tabby cat, uint8 [1, 160, 240, 3]."""
    return np.asarray(Image.open(DATA / "encoder_chelsea.jpg").convert("RGB"))[None]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIPVisionModel with its own image processor config."""
    path = tmp_path_factory.mktemp("clip-vision")
    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(**TOWER)).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SiglipVisionModel without a processor config (the encoder's defaults apply)."""
    path = tmp_path_factory.mktemp("siglip-vision")
    torch.manual_seed(1)
    SiglipVisionModel(SiglipVisionConfig(**TOWER)).save_pretrained(path)
    return path


@pytest.mark.parametrize("tower", ["clip", "siglip"])
def test_hf_tower_shapes_determinism_and_distinct_views(tower: str, clip_dir: Path, siglip_dir: Path) -> None:
    path = clip_dir if tower == "clip" else siglip_dir
    enc = load_encoder(EncoderConfig(kind="hf", path=str(path), cells=2))
    assert isinstance(enc, HFVisionEncoder) and enc.feature_dim == 32
    rgb = views(3)
    out = enc.encode(rgb)
    assert out.shape == (3, 1 + 4, 32) and out.dtype == np.float32
    np.testing.assert_array_equal(enc.encode(rgb), out)  # deterministic
    np.testing.assert_allclose(enc.encode(rgb[1:2])[0], out[1], atol=1e-5)  # batching changes nothing
    assert np.abs(out[0, 0] - out[1, 0]).max() > 1e-3  # two different views, two different features
    assert enc.encode(rgb[:0]).shape == (0, 5, 32)
    with pytest.raises(ModelError):
        enc.classify(rgb)


def test_hf_tokens_are_the_pooled_output_then_pooled_patches(clip_dir: Path, siglip_dir: Path) -> None:
    rgb = views(2, seed=3)
    # CLIP: token 0 is pooler_output (post-layernorm CLS) with the folder's own processor
    enc = load_encoder(EncoderConfig(kind="hf", path=str(clip_dir), cells=2))
    model = CLIPVisionModel.from_pretrained(clip_dir).eval()
    pixels = CLIPImageProcessor.from_pretrained(clip_dir)(images=list(rgb), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        ref = model(pixel_values=pixels)
    out = enc.encode(rgb)
    np.testing.assert_allclose(out[:, 0], ref.pooler_output.numpy(), atol=1e-5)
    patches = ref.last_hidden_state[:, 1:].numpy().reshape(2, 4, 4, 32)  # CLS first, then the 4x4 grid
    np.testing.assert_allclose(out[:, 1], patches[:, :2, :2].mean((1, 2)), atol=1e-5)  # top-left cell
    np.testing.assert_allclose(out[:, 4], patches[:, 2:, 2:].mean((1, 2)), atol=1e-5)  # bottom-right cell
    # SigLIP has no CLS token: the 16 tokens are the grid
    enc = load_encoder(EncoderConfig(kind="hf", path=str(siglip_dir), cells=2))
    assert isinstance(enc, HFVisionEncoder)
    model = SiglipVisionModel.from_pretrained(siglip_dir).eval()
    pixels = enc.processor(images=list(rgb), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (2, 3, 32, 32)
    with torch.inference_mode():
        ref = model(pixel_values=pixels)
    out = enc.encode(rgb)
    np.testing.assert_allclose(out[:, 0], ref.pooler_output.numpy(), atol=1e-5)
    patches = ref.last_hidden_state.numpy().reshape(2, 4, 4, 32)
    np.testing.assert_allclose(out[:, 2], patches[:, :2, 2:].mean((1, 2)), atol=1e-5)  # top-right cell


def test_hf_dual_encoder_folder_loads_its_vision_tower(tmp_path: Path) -> None:
    torch.manual_seed(2)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=99)
    full = CLIPModel(CLIPConfig(vision_config=TOWER, text_config=text))
    full.save_pretrained(tmp_path)
    enc = load_encoder(EncoderConfig(kind="hf", path=str(tmp_path)))
    assert isinstance(enc, HFVisionEncoder)
    rgb = views(1)
    pixels = enc.processor(images=list(rgb), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        ref = full.eval().vision_model(pixel_values=pixels).pooler_output
    out = enc.encode(rgb)
    assert out.shape == (1, 1, 32)
    np.testing.assert_allclose(out[:, 0], ref.numpy(), atol=1e-5)


def test_config_and_missing_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="path"):
        EncoderConfig(kind="hf")
    with pytest.raises(ValueError, match="cells"):
        EncoderConfig(cells=-1)
    with pytest.raises(ValueError, match="backend"):
        EncoderConfig(backend="tflite")  # type: ignore[arg-type]
    with pytest.raises(ModelError):
        load_encoder(EncoderConfig(kind="hf", path=str(tmp_path / "nothing")))
    monkeypatch.setenv("MMD_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="mmduplex fetch-models"):
        load_encoder()


def _fetched() -> bool:
    folder = encoder_dir()
    return all((folder / n).is_file() for n in ("efficientnet-lite0-57934424.pth", "imagenet_classes.txt",
                                                 "efficientnet-lite0-224x224.onnx"))


needs_lite0 = pytest.mark.skipif(not _fetched(), reason="EfficientNet-Lite0 not fetched (run `mmduplex fetch-models`)")


@pytest.fixture(scope="module")
def lite0() -> dict[str, EfficientNetEncoder]:
    encoders: dict[str, EfficientNetEncoder] = {}
    backend: Literal["onnx", "torch"]
    for backend in ("onnx", "torch"):
        encoder = load_encoder(EncoderConfig(backend=backend, cells=2))
        assert isinstance(encoder, EfficientNetEncoder)
        encoders[backend] = encoder
    return encoders


@needs_lite0
def test_lite0_backends_agree(lite0: dict[str, EfficientNetEncoder]) -> None:
    rgb = np.concatenate([chelsea()[:, :120, :160], views(1)])
    onnx, eager = lite0["onnx"].encode(rgb), lite0["torch"].encode(rgb)
    assert onnx.shape == (2, 5, LITE0_FEATURE_DIM) and onnx.dtype == np.float32
    # measured: max |difference| 8e-6 on features up to ~5 (float32 kernels differ)
    np.testing.assert_allclose(onnx, eager, atol=1e-4)
    for a, b in zip(lite0["onnx"].classify(rgb), lite0["torch"].classify(rgb), strict=True):
        assert [n for n, _ in a] == [n for n, _ in b]
        np.testing.assert_allclose([p for _, p in a], [p for _, p in b], atol=1e-5)


@needs_lite0
def test_lite0_classifies_the_cat_photo(lite0: dict[str, EfficientNetEncoder]) -> None:
    (top,) = lite0["onnx"].classify(chelsea(), top_k=3)
    assert {name for name, _ in top} == CAT_CLASSES
    assert top[0][1] > 0.5 and top[0][1] >= top[1][1] >= top[2][1]
    # the same photo on the 160x120 model grid still reads as a cat
    grid = np.asarray(Image.fromarray(chelsea()[0]).resize((160, 120), Image.Resampling.BILINEAR))[None]
    assert lite0["onnx"].classify(grid, top_k=1)[0][0][0] in CAT_CLASSES


@needs_lite0
def test_lite0_tokens(lite0: dict[str, EfficientNetEncoder]) -> None:
    enc = lite0["onnx"]
    rgb = views(3, seed=5)
    out = enc.encode(rgb)
    assert out.shape == (3, 5, LITE0_FEATURE_DIM) and (out >= 0).all()  # ReLU6 activations
    np.testing.assert_allclose(enc.encode(rgb[2:]), out[2:], atol=1e-5)  # batching changes nothing
    assert np.abs(out[0, 0] - out[1, 0]).max() > 0.1
    pooled_only = load_encoder(EncoderConfig()).encode(rgb)
    assert pooled_only.shape == (3, 1, LITE0_FEATURE_DIM)
    np.testing.assert_allclose(pooled_only[:, 0], out[:, 0], atol=1e-6)
    assert enc.encode(rgb[:0]).shape == (0, 5, LITE0_FEATURE_DIM) and enc.classify(rgb[:0]) == []
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        enc.encode(rgb[0])
    with pytest.raises(ValueError, match="top_k"):
        enc.classify(rgb, top_k=0)


@needs_lite0
def test_lite0_other_input_size_is_exported_once_and_matches_torch(tmp_path: Path) -> None:
    for name in ("efficientnet-lite0-57934424.pth", "imagenet_classes.txt"):
        shutil.copy(encoder_dir() / name, tmp_path / name)
    onnx = EfficientNetEncoder.load(tmp_path, backend="onnx", input_hw=(96, 128))
    assert (tmp_path / "efficientnet-lite0-96x128.onnx").is_file()
    eager = EfficientNetEncoder.load(tmp_path, backend="torch", input_hw=(96, 128))
    rgb = views(2, seed=7)
    np.testing.assert_allclose(onnx.encode(rgb), eager.encode(rgb), atol=1e-4)

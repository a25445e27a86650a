"""A GGUF of a supported family (`llama`, `qwen2`, `qwen3`, `qwen3moe`, `llama` with experts = Mixtral; families/) in
any quantization gguf-py can dequantize → our config + megatron checkpoint. Stacked expert tensors (`ffn_*_exps`)
are split per expert (myllm_mc.model.moe_layout).

Weights are dequantized to fp32 (a Q4 file imports as the fp32 model that llama.cpp effectively runs), q and k
are un-permuted from llama.cpp's rotary layout where the architecture permutes them (`llama`), Llama 3.x's
`rope_freqs.weight` becomes model.rope_scaling llama3 (refused unless it is exactly that), and the tokenizer is rebuilt from the GGUF vocabulary, merges and
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
from myllm_mc.model.moe_layout import expert_style, unstack_from_gguf

from .families import Family, family_for_gguf
from .families.common import rope_base
from .families.llama import rope_freq_factors
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
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file — fix: pass a .gguf file")
    try:
        reader = _checked_reader()(str(path))
    except _ShortTensor as short:
        name, shape, end = short.args
        raise ConversionError(f"{path}: truncated or damaged — tensor {name} {shape} ends at byte {end:,} but the"
                              f" file has {path.stat().st_size:,} — fix: copy the file again") from None
    except Exception as err:   # bad magic, truncated header
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ConversionError(f"{path}: not a readable GGUF file ({reason}) — fix: copy it again (truncated?)") from None
    size = path.stat().st_size
    for tensor in reader.tensors:
        if tensor.data_offset + tensor.n_bytes > size:
            raise ConversionError(f"{path}: truncated — tensor {tensor.name} ends at byte"
                                  f" {tensor.data_offset + tensor.n_bytes:,} of {size:,} — fix: copy the file again")
    return reader


class _ShortTensor(Exception):
    """(name, shape, end byte) of a tensor whose data runs past the end of the file."""


def _checked_reader():
    """gguf.GGUFReader that checks each tensor's extent before gguf-py reshapes its data, which fails in numpy's
    words ("cannot reshape array of size 96300 into shape (768,256)") when the file is cut short."""
    import gguf

    class CheckedReader(gguf.GGUFReader):
        def _build_tensors(self, start_offs, fields):
            for field in fields:
                try:
                    _, name, _, dims, raw_type, offset = field.parts
                    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(int(raw_type[0]))]
                    end = int(start_offs) + int(offset[0]) + int(np.prod(dims, dtype=np.uint64)) * type_size // block
                    name = bytes(name).decode("utf-8", errors="replace")
                except Exception:   # a layout this check does not know (another gguf-py): gguf-py's own error stands
                    break
                if end > len(self.data):
                    raise _ShortTensor(name, tuple(int(d) for d in reversed(dims.tolist())), end)
            super()._build_tensors(start_offs, fields)

    return CheckedReader


def _float32_value(value) -> float:
    """GGUF stores floats as float32: 1e-5 reads back as 9.99999974e-06; keep the number that was written."""
    return float(str(np.float32(value)))


def model_fields_from_gguf(fields: dict, where: str) -> dict:
    a = fields.get("general.architecture")
    family = family_for_gguf(a, where, int(fields.get(f"{a}.expert_count") or 0))
    try:
        heads = int(fields[f"{a}.attention.head_count"])
        hidden = int(fields[f"{a}.embedding_length"])
        head_dim = int(fields.get(f"{a}.attention.key_length") or hidden // heads)
        rope_dim = int(fields.get(f"{a}.rope.dimension_count") or head_dim)
        vocab = int(fields.get(f"{a}.vocab_size") or len(fields["tokenizer.ggml.tokens"]))
        out = dict(num_layers=int(fields[f"{a}.block_count"]), hidden_size=hidden, num_attention_heads=heads,
                   num_query_groups=int(fields.get(f"{a}.attention.head_count_kv") or heads), kv_channels=head_dim,
                   ffn_hidden_size=int(fields[f"{a}.feed_forward_length"]), vocab_size=vocab,
                   seq_length=int(fields.get(f"{a}.context_length", 2048)),
                   norm_epsilon=_float32_value(fields.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)),
                   rotary_base=rope_base(fields.get(f"{a}.rope.freq_base", 10000.0)),
                   normalization="RMSNorm", activation="swiglu", position_embedding="rope", add_bias=False,
                   family=family.name, **family.fixed)
    except KeyError as err:
        raise ConversionError(f"{where}: metadata key {err.args[0]} missing — fix: the file is not a complete"
                              f" {a} GGUF") from None
    if rope_dim != head_dim or fields.get(f"{a}.rope.scaling.type", "none") not in ("none", "linear") \
            or float(fields.get(f"{a}.rope.scaling.factor", 1.0) or 1.0) != 1.0:
        raise ConversionError(f"{where}: {a}.rope.scaling.type / partial RoPE is not supported — fix: import a model"
                              " with plain RoPE or Llama 3.x's rope_freqs")
    if family.moe_fields is not None:
        out["moe"] = moe_fields_from_gguf(fields, a, out["ffn_hidden_size"], where)
    return out


def moe_fields_from_gguf(fields: dict, a: str, ffn: int, where: str) -> dict:
    """model.moe of a Qwen3-MoE / Mixtral GGUF: experts in every layer, softmax over all then top-k renormalised
    (llama.cpp's qwen3moe and llama builds; megatron's router_pre_softmax false). Shared experts or another
    gating function are refused."""
    for key, want in (("expert_shared_count", 0), ("expert_gating_func", 1)):
        value = fields.get(f"{a}.{key}")
        if value is not None and int(value) != want:
            raise ConversionError(f"{where}: {a}.{key}={value} is not expressible here (want {want}) — fix: import a"
                                  " model with softmax routing and no shared experts")
    try:
        experts, top_k = int(fields[f"{a}.expert_count"]), int(fields[f"{a}.expert_used_count"])
    except KeyError as err:
        raise ConversionError(f"{where}: metadata key {err.args[0]} missing — fix: the file is not a complete"
                              f" {a} GGUF") from None
    return {"num_experts": experts, "top_k": top_k, "router_score": "softmax", "router_pre_softmax": False,
            "ffn_hidden_size": int(fields.get(f"{a}.expert_feed_forward_length") or ffn)}


def rope_scaling_from_freqs(factors: np.ndarray, model: dict, where: str) -> dict:
    """`rope_freqs.weight` (llama.cpp's per-frequency divisors) → model.rope_scaling llama3 and its factor, only
    when the tensor is exactly what llama3 scaling with megatron-core's fixed parameters gives."""
    factor = float(factors.max())
    want = np.array(rope_freq_factors(model["kv_channels"], model["rotary_base"], factor), dtype=np.float32)
    if factors.shape != want.shape or not np.allclose(factors, want, rtol=1e-6, atol=0):
        raise ConversionError(f"{where}: rope_freqs.weight is not Llama 3.x's llama3 scaling (factor {factor:g},"
                              " low/high frequency factors 1/4, original context 8,192) — fix: import a model with"
                              " plain RoPE or llama3 scaling")
    return {"rope_scaling": "llama3", "rope_scaling_factor": factor}


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


def read_gguf_tensors(reader, shape: LlamaShape, where: str, family: Family) -> Dict[str, torch.Tensor]:
    """HF-named fp32 tensors, rotary layout undone; tied models get no lm_head."""
    names = gguf_to_hf_names(LlamaShape(**{**shape.__dict__, "tied": False}))
    out = {}
    for tensor in reader.tensors:
        hf = names.get(tensor.name)
        if hf is None:
            experts = unstack_from_gguf(tensor.name, dequantized(tensor), shape) if shape.experts else {}
            out.update({name: torch.from_numpy(np.array(a, dtype=np.float32, copy=True)) for name, a in experts.items()})
            continue
        array = dequantized(tensor)
        heads = rotary_heads(hf, shape) if family.gguf_rotary_permute else None
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
    freqs = [t for t in reader.tensors if t.name == "rope_freqs.weight"]
    if freqs:
        model.update(rope_scaling_from_freqs(dequantized(freqs[0]), model, str(path)))
    family = family_for_gguf(fields["general.architecture"], str(path), "moe" in model)
    moe = model.get("moe")
    experts = dict(experts=moe["num_experts"], expert_ffn=moe["ffn_hidden_size"], moe_layers=(1,) * model["num_layers"],
                   moe_style=expert_style(family.name)) if moe else {}
    shape = LlamaShape(model["num_layers"], model["hidden_size"], model["num_attention_heads"],
                       model["num_query_groups"], model["kv_channels"], model["ffn_hidden_size"],
                       model["vocab_size"], tied, qkv_bias=model["qkv_bias"], qk_norm=model["qk_norm"], **experts)
    tokenizer_json, tokenizer_config = tokenizer_from_gguf(fields, str(path))
    tensors = read_gguf_tensors(reader, shape, str(path), family)
    name = str(fields.get("general.name") or path.stem).replace(" ", "-")
    with tempfile.TemporaryDirectory(prefix="myllm-gguf-tokenizer-") as tmp:
        (Path(tmp) / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
        return write_imported(tensors, model, name, out, Path(tmp), base, where=str(path))

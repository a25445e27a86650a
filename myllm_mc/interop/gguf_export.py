"""Checkpoint (any layout) → one GGUF file for llama.cpp: F32, F16, BF16, Q8_0 or Q4_0, with the tokenizer inside.

The weights go through the HF layout (myllm_mc.model.llama_layout) and are written under the family's llama.cpp
architecture (families/: llama and mistral as `llama`, `qwen2`, `qwen3`). For `llama`, q and k are permuted into
llama.cpp's rotary layout (adjacent pairs); without that permutation llama.cpp loads the file and produces garbage.
`qwen2`/`qwen3` rotate halves in llama.cpp as in HF: no permutation. Mixture-of-experts models (Qwen3-MoE as
`qwen3moe`, Mixtral as `llama` with experts) get each layer's experts stacked into llama.cpp's 3-D `ffn_*_exps`
tensors and the router as `ffn_gate_inp` (kept F32, as llama.cpp's converter keeps it: routing decisions are
the most sensitive to rounding), plus the expert_count / expert_used_count keys. Llama 3.x's rope scaling travels as
`rope_freqs.weight`, the per-frequency divisors llama.cpp's own converter writes. Norms and biases stay F32; a
matrix whose rows are not whole 32-weight blocks falls back to F16 (the planner's weight_formats does the same
arithmetic, and the summary prints both sizes). The file is written beside its destination (`.OUT.tmp-PID`,
under the lock `OUT.lock`: one writer per output) and renamed at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from myllm_mc.config import Config
from myllm_mc.locking import NewOutput
from myllm_mc.model.llama_layout import LlamaShape, hf_to_gguf_name, megatron_to_hf, rotary_heads, to_gguf_rotary
from myllm_mc.model.moe_layout import GGUF_ROUTER, stack_for_gguf
from myllm_mc.plan.weight_formats import matrix_format, weight_bytes

from .families import Family, family_of
from .families.llama import rope_freq_factors
from .tokenizer_files import read_tokenizer_info
from .weights import ConversionError, load_full_state

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")


@dataclass(frozen=True)
class GGUFExport:
    out: Path
    fmt: str
    file_bytes: int
    planned_weight_bytes: int
    tensors: int
    fallbacks: int            # matrices stored as F16 because their rows are not whole blocks

    def summary(self) -> str:
        fallback = f"; {self.fallbacks} matrices kept in F16 (rows not a multiple of 32)" if self.fallbacks else ""
        return (f"exported {self.fmt.upper()} GGUF: {self.file_bytes / 1e6:.2f} MB file; planner weight bytes for"
                f" {self.fmt}: {self.planned_weight_bytes / 1e6:.2f} MB (+ tokenizer/metadata"
                f" {(self.file_bytes - self.planned_weight_bytes) / 1e6:.2f} MB){fallback} → {self.out}")


def _ggml_types():
    import gguf
    q = gguf.GGMLQuantizationType
    return {"f32": q.F32, "f16": q.F16, "bf16": q.BF16, "q8_0": q.Q8_0, "q4_0": q.Q4_0}


def _file_type(fmt: str):
    import gguf
    f = gguf.LlamaFileType
    return {"f32": f.ALL_F32, "f16": f.MOSTLY_F16, "bf16": f.MOSTLY_BF16, "q8_0": f.MOSTLY_Q8_0,
            "q4_0": f.MOSTLY_Q4_0}[fmt]


def encode_tensor(array: np.ndarray, fmt: str, keep_f32: bool = False):
    """(bytes-or-values array, ggml type) of one tensor in `fmt` (1-D tensors and `keep_f32` ones F32)."""
    from gguf import quants

    types = _ggml_types()
    if array.ndim == 1 or fmt == "f32" or keep_f32:
        return array.astype(np.float32), types["f32"]
    fmt = matrix_format(fmt, array.shape[-1])
    if fmt == "f16":
        return array.astype(np.float16), types["f16"]
    return quants.quantize(array.astype(np.float32), types[fmt]), types[fmt]


def write_gguf_metadata(writer, cfg: Config, shape: LlamaShape, fmt: str, tokenizer: Optional[dict]) -> None:
    m = cfg.model
    writer.add_name(m.name)
    writer.add_context_length(m.seq_length)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.num_layers)
    # llama.cpp's `llama` reads the expert size from feed_forward_length; qwen3moe from expert_feed_forward_length
    writer.add_feed_forward_length(shape.expert_ffn if shape.experts and writer.arch == "llama" else shape.ffn)
    if shape.experts:
        writer.add_expert_count(shape.experts)
        writer.add_expert_used_count(m.moe.top_k)
        if writer.arch != "llama":
            writer.add_expert_feed_forward_length(shape.expert_ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.groups)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(float(m.rotary_base))
    writer.add_layer_norm_rms_eps(m.norm_epsilon)
    writer.add_vocab_size(shape.vocab)
    writer.add_file_type(_file_type(fmt))
    if fmt in ("q8_0", "q4_0"):
        import gguf
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if tokenizer is None:
        return
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(tokenizer["pre"])
    writer.add_token_list(tokenizer["tokens"])
    writer.add_token_types(tokenizer["types"])
    writer.add_token_merges(tokenizer["merges"])
    for key, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                     ("pad", writer.add_pad_token_id), ("eot", writer.add_eot_token_id)):
        if tokenizer[key] is not None:
            add(tokenizer[key])
    writer.add_add_bos_token(False)        # MyLLM never prepends a BOS: ids are exactly the tokenizer's
    writer.add_chat_template(tokenizer["chat_template"])


def write_gguf(tensors: Dict[str, torch.Tensor], cfg: Config, shape: LlamaShape, fmt: str, tokenizer: Optional[dict],
               out: Path, family: Optional[Family] = None) -> tuple[int, int]:
    """Write HF-named fp32 tensors as GGUF to `out` (export_gguf passes its NewOutput's temporary, renamed into
    place once whole). Returns (tensor count, F16 fallbacks)."""
    import gguf

    family = family or family_of(cfg.model)
    fallbacks = 0
    named, hf_of = {}, {}                        # GGUF name → values; GGUF name → HF name (rotary permutation)
    for name, tensor in stack_for_gguf(tensors, shape).items():   # experts and routers come GGUF-named ("blk.")
        gguf_name = name if name.startswith("blk.") else hf_to_gguf_name(name)
        hf_of[gguf_name] = name
        named[gguf_name] = tensor.float().numpy()
    if cfg.model.rope_scaling == "llama3":
        m = cfg.model
        named["rope_freqs.weight"] = np.array(rope_freq_factors(m.kv_channels, m.rotary_base, m.rope_scaling_factor),
                                              dtype=np.float32)
    try:
        writer = gguf.GGUFWriter(str(out), family.gguf_arch)
        write_gguf_metadata(writer, cfg, shape, fmt, tokenizer)
        for name, array in named.items():
            hf_name = hf_of.get(name)
            heads = rotary_heads(hf_name, shape) if hf_name and family.gguf_rotary_permute else None
            if heads is not None:
                array = to_gguf_rotary(array, heads)
            data, qtype = encode_tensor(array, fmt, keep_f32=name.endswith(GGUF_ROUTER))
            fallbacks += int(array.ndim >= 2 and fmt in ("q8_0", "q4_0") and qtype.name == "F16")
            if data.dtype == np.uint8:
                writer.add_tensor(name, data, raw_dtype=qtype)
            else:
                writer.add_tensor(name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return len(named), fallbacks


def export_gguf(cfg: Config, checkpoint: str, out: str | Path, fmt: str = "f16",
                tokenizer: Optional[str] = None) -> GGUFExport:
    """Write `checkpoint` (trained with `cfg`, any layout) as one GGUF file of type `fmt`."""
    if fmt not in GGUF_TYPES:
        raise ConversionError(f"--type {fmt}: not a GGUF type this exporter writes — fix: one of {', '.join(GGUF_TYPES)}")
    family = family_of(cfg.model)
    problems = family.gguf_problems(cfg.model) if cfg.model.moe.num_experts else []
    if problems:
        raise ConversionError(f"{', '.join(problems)}: llama.cpp's {family.gguf_arch} cannot run it — fix: export it"
                              " as HF (`myllm export hf`), which holds it exactly")
    shape = LlamaShape.of(cfg.model)
    new = NewOutput(out, "--out")                 # one writer per --out, refused in one line; see locking
    tokenizer = tokenizer or cfg.data.tokenizer
    if not tokenizer:
        raise ConversionError("no tokenizer: llama.cpp needs the vocabulary inside the GGUF — fix: set data.tokenizer"
                              " in the config or pass --tokenizer")
    from .gguf_tokenizer import gguf_tokenizer_fields
    fields = gguf_tokenizer_fields(read_tokenizer_info(tokenizer), shape.vocab)
    with new:                                     # written to `.OUT.tmp-PID`, renamed into place once whole
        tensors = megatron_to_hf(load_full_state(cfg, checkpoint), shape)
        count, fallbacks = write_gguf(tensors, cfg, shape, fmt, fields, new.tmp, family)
    out = new.out
    return GGUFExport(out=out, fmt=fmt, file_bytes=out.stat().st_size, planned_weight_bytes=weight_bytes(cfg.model, fmt),
                      tensors=count, fallbacks=fallbacks)

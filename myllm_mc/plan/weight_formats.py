"""Bytes of a model's weights in each export format (HF safetensors dtypes and GGUF types).

GGUF's block formats store 32 weights per block with one fp16 scale: Q8_0 = 32 int8 + 2 bytes (8.5 bits per
weight), Q4_0 = 16 bytes of nibbles + 2 bytes (4.5 bits). Exporters keep the norm vectors in F32 (as llama.cpp's
own converter does) and fall back to F16 for a matrix whose rows are not a whole number of blocks.
The file adds metadata (the tokenizer, ~a few hundred KB) to this figure.
"""

from __future__ import annotations

from .moe import expert_ffn, layer_pattern, moe_of
from .params import attention_vector_params_per_layer, parameter_breakdown

BLOCK = 32
BITS_PER_WEIGHT = {"f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q4_0": 4.5}


def matrix_format(fmt: str, row_length: int) -> str:
    """The format a matrix with rows of `row_length` is actually stored in (block formats need whole blocks)."""
    if fmt in ("q8_0", "q4_0") and row_length % BLOCK:
        return "f16"
    return fmt


def weight_bytes(model_cfg, fmt: str) -> int:
    """Bytes of every weight of `model_cfg` stored as `fmt` (norms in f32; the real, unpadded vocabulary)."""
    if fmt not in BITS_PER_WEIGHT:
        raise ValueError(f"unknown weight format {fmt!r} — one of {', '.join(BITS_PER_WEIGHT)}")
    m = model_cfg
    b = parameter_breakdown(m)
    matrices = [(b.embedding + b.output_layer, m.hidden_size)]               # rows of length hidden
    q_width = m.num_attention_heads * m.kv_channels
    matrices.append((m.num_layers * m.hidden_size * (q_width + 2 * m.num_query_groups * m.kv_channels), m.hidden_size))
    matrices.append((m.num_layers * q_width * m.hidden_size, q_width))        # attention output
    fc1 = 2 if m.activation == "swiglu" else 1
    moe_layers = sum(layer_pattern(m))
    mlps = [(m.num_layers - moe_layers, m.ffn_hidden_size)]                 # (count, size) of the SwiGLU MLPs
    routers = 0
    if moe_of(m):   # routed experts; shared experts; the router stays F32 (as llama.cpp's converter keeps it)
        mlps += [(moe_layers * m.moe.num_experts, expert_ffn(m)), (moe_layers, m.moe.shared_expert_ffn_hidden_size)]
        routers = moe_layers * m.moe.num_experts * m.hidden_size
    for count, ffn in mlps:
        matrices.append((count * fc1 * ffn * m.hidden_size, m.hidden_size))
        matrices.append((count * ffn * m.hidden_size, ffn))                # down projection
    total_bits = sum(count * BITS_PER_WEIGHT[matrix_format(fmt, row)] for count, row in matrices if count)
    vectors = b.norms + m.num_layers * attention_vector_params_per_layer(m) + routers   # biases, q/k norms: F32 too
    return int(total_bits // 8) + 4 * vectors

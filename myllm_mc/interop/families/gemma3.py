"""Gemma 3: refused. megatron-core 0.16.1's layers cannot express it exactly, and an approximate conversion would
load, run and quietly produce other numbers.

Read in megatron-core 0.16.1 (site-packages/megatron/core):
- transformer/transformer_layer.py: TransformerLayerSubmodules has input_layernorm, pre_cross_attn_layernorm and
  pre_mlp_layernorm only — no norm *after* attention or after the MLP before the residual add. Gemma 3 has four
  norms per layer (input, post_attention, pre_feedforward, post_feedforward). This is the piece named first.
- models/common/embeddings/language_model_embedding.py: no scaling of the embedding output (Gemma multiplies by
  √hidden, in the embedding's dtype).
- transformer/torch_norm.py: the torch norm asserts `not layernorm_zero_centered_gamma`, so Gemma's (1 + w) RMSNorm
  exists only in Transformer Engine's norm (GPU).
- models/gpt/gpt_model.py: one RotaryEmbedding per model, so local layers (rope base 10,000) and global layers
  (1,000,000) cannot have different bases; `window_size` is honoured by TE's attention only, not by our SDPA path.
What would express it: a TransformerLayer subclass with post-attention / post-MLP norm submodules, an embedding
scale, a (1 + w) RMSNorm in layers.py, a per-layer rotary embedding (or base) chosen by layer type, and a sliding-
window mask in sdpa_attention.py (training and KV-cache decode); GeGLU (gelu-tanh) is already expressible.
"""

from __future__ import annotations

from .common import Refused

REFUSED = Refused(
    name="gemma3", hf_model_types=("gemma3_text", "gemma3"), gguf_arches=("gemma3",),
    piece="megatron-core 0.16.1's TransformerLayer has no post-attention / post-MLP norm (Gemma 3's sandwich"
          " norms), nor the √hidden embedding scale, (1 + w) RMSNorm on the local spec, or per-layer RoPE bases",
    needs="convert a supported family (llama, mistral, qwen2, qwen3); docs/interop.md says what Gemma 3 would take")

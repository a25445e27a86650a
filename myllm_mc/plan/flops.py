"""Training FLOPs: the one formula that predicted MFU (here) and measured MFU (train/, benchmark) both use.

`flops_per_iteration` follows Megatron-LM's `num_floating_point_operations` (megatron/training/training.py,
transformer branch, dense layers, standard attention). Derivation, per token and per layer, counting 2 FLOPs per
multiply-add of a GEMM (m×n by n×k costs 2mnk) and 3 GEMMs per weight in training (forward, backward
data-gradient, backward weight-gradient), hence a factor 3 × 2 = 6 in front of every term:

    q = heads × head_dim, kv = groups × head_dim (GQA), f = ffn_hidden_size, s = sequence, V = padded vocab
    qkv projection        h × (q + 2 kv)
    core attention        q × s / 2 × 2      (QKᵀ and (QKᵀ)V; the causal mask keeps half of the s×s scores)
    output projection     q × h
    MLP                   h × f × 3 for SwiGLU (gate, up, down), × 2 for GeLU
    logits (once)         h × V

    FLOPs/iteration = 6 × B × s × [L × (h(q + 2kv) + q s + q h + ffn_factor h f) + h V]

Norms, softmax, rotary and the embedding lookup are not GEMMs and are left out, as Megatron does. With full
activation recomputation the forward runs twice, so the factor is 4 × 2 = 8: that is *hardware* FLOPs (HFU),
not the model FLOPs that MFU divides by.

Without attention this is 6 × (non-norm parameters) per token, i.e. the familiar 6·N of Kaplan et al. 2020.
Mixture of experts (plan/moe.py): an MoE layer's MLP term is what one token runs through, the router h·E, top_k
routed experts 3·h·f_e each and the shared expert 3·h·f_s, so the rule becomes 6·N_active (Megatron-LM counts
the same, less the router GEMM).
"""

from __future__ import annotations

from typing import Optional

from .moe import layer_pattern, moe_mlp_flops_bracket
from .params import padded_vocab_size


def _bracket(model_cfg, seq_length: int, vocab: int) -> float:
    """The per-token sum inside Megatron's formula, before the 3 × 2 (or 4 × 2) factor."""
    m = model_cfg
    query = m.num_attention_heads * m.kv_channels
    key_value = m.num_query_groups * m.kv_channels
    ffn_factor = 3 if m.activation == "swiglu" else 2
    attention = m.hidden_size * (query + 2 * key_value) + query * seq_length / 2 * 2 + query * m.hidden_size
    mlp = m.hidden_size * m.ffn_hidden_size * ffn_factor
    dense_layers = m.num_layers - sum(layer_pattern(m))
    return m.num_layers * attention + dense_layers * mlp + moe_mlp_flops_bracket(m) + m.hidden_size * vocab


def flops_per_iteration(model_cfg, batch_sequences: int, *, seq_length: Optional[int] = None,
                        padded_vocab: Optional[int] = None, recompute_full: bool = False) -> float:
    """Model FLOPs of one optimizer step over `batch_sequences` sequences (Megatron-LM's accounting).

    `padded_vocab` defaults to the vocabulary padded for tensor size 1; pass the run's padded size to match a
    Megatron log exactly. `recompute_full=True` adds the recomputed forward (hardware FLOPs, for HFU).
    """
    seq = model_cfg.seq_length if seq_length is None else seq_length
    vocab = padded_vocab_size(model_cfg, 1) if padded_vocab is None else padded_vocab
    gemm_passes = 4 if recompute_full else 3
    return gemm_passes * 2 * batch_sequences * seq * _bracket(model_cfg, seq, vocab)


def flops_per_token(model_cfg, *, seq_length: Optional[int] = None, padded_vocab: Optional[int] = None,
                    recompute_full: bool = False) -> float:
    """Training FLOPs per token at the configured (or given) context: `flops_per_iteration` of one sequence / s."""
    seq = model_cfg.seq_length if seq_length is None else seq_length
    return flops_per_iteration(model_cfg, 1, seq_length=seq, padded_vocab=padded_vocab,
                               recompute_full=recompute_full) / seq


def attention_flops_per_token(model_cfg, *, seq_length: Optional[int] = None, causal: bool = True) -> float:
    """Training FLOPs per token of the s×s attention matmuls alone, which 6·N leaves out.

    causal=True is Megatron's count, 6·L·q·s (only the lower triangle of the scores is computed with a causal
    mask). causal=False is the full-matrix count 12·L·H·Q·T of the PaLM paper's MFU appendix (Chowdhery et al.
    2022, App. B) and of Megatron-LM before it halved the term; SPEC.md's "≈ 4.9e9 at 8,192" is this one.
    """
    m = model_cfg
    seq = m.seq_length if seq_length is None else seq_length
    query = m.num_attention_heads * m.kv_channels
    return (6 if causal else 12) * m.num_layers * query * seq


def six_nd(parameters: int, tokens: float) -> float:
    """The Kaplan/Chinchilla estimate C ≈ 6·N·D: 2 FLOPs per parameter per token forward, 4 backward."""
    return 6.0 * parameters * tokens

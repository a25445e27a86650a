"""The SDPA core attention computes what megatron's unfused DotProductAttention computes (fp32, CPU):
module outputs and input gradients, then the whole tiny model's loss and gradients, causal and with a
block-diagonal (packed-sequence) mask. Multi-rank parity (TP2, TP2+SP, CP2) is tests/parallel/test_sdpa_parity.py."""

import dataclasses

import pytest
import torch

from myllm_mc.config import ConfigError, load


def block_diagonal_causal_mask(seq: int, boundaries) -> torch.Tensor:
    """[1, 1, s, s], True = masked (megatron's convention): causal inside each document, nothing across."""
    doc = torch.zeros(seq, dtype=torch.long)
    for start in boundaries:
        doc[start:] += 1
    allowed = (doc[:, None] == doc[None, :]) & torch.ones(seq, seq, dtype=torch.bool).tril()
    return ~allowed[None, None]


def _pair(cfg):
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from myllm_mc.model import transformer_config
    from myllm_mc.model.sdpa_attention import SDPAAttention

    config = transformer_config(cfg)
    return (SDPAAttention(config, 1, AttnMaskType.causal, "self"),
            DotProductAttention(config, 1, AttnMaskType.causal, "self"))


def _run(module, q, k, v, mask=None, **kwargs):
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    out = module(*inputs, mask, **kwargs)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return out.detach(), [t.grad for t in inputs]


@pytest.mark.parametrize("masked", [False, True], ids=["causal", "block_diagonal"])
def test_sdpa_module_equals_megatron_unfused_attention(single_rank, masked):
    ours, megatrons = _pair(single_rank)
    torch.manual_seed(0)
    q, k, v = torch.randn(32, 3, 4, 64) * 2, torch.randn(32, 3, 2, 64) * 2, torch.randn(32, 3, 2, 64)
    mask = block_diagonal_causal_mask(32, [5, 19, 20]) if masked else None
    out, grads = _run(ours, q, k, v, mask)
    ref_out, ref_grads = _run(megatrons, q, k, v, mask)
    assert out.shape == (32, 3, 256)
    assert (out - ref_out).abs().max() < 1e-5
    for grad, ref in zip(grads, ref_grads):
        assert (grad - ref).abs().max() < 1e-5
    if masked:   # the mask really matters: plain causal attention gives different values
        causal_out, _ = _run(ours, q, k, v, None)
        assert (causal_out - out).abs().max() > 1e-2


def test_sdpa_decode_step_and_chunked_prefill(single_rank):
    """KV-cache steps: one query against all cached keys (megatron passes no_mask), and several new queries
    that must see the cache plus their own causal prefix (bottom-right aligned)."""
    from megatron.core.transformer.enums import AttnMaskType

    ours, megatrons = _pair(single_rank)
    torch.manual_seed(1)
    q, k, v = torch.randn(12, 2, 4, 64), torch.randn(12, 2, 2, 64), torch.randn(12, 2, 2, 64)
    full = ours(q, k, v, None)
    last = ours(q[-1:], k, v, None, attn_mask_type=AttnMaskType.no_mask)
    assert (last - full[-1:]).abs().max() < 1e-5
    assert (megatrons(q[-1:], k, v, None) - last).abs().max() < 1e-5
    tail = ours(q[-4:], k, v, None)     # causal with s_q < s_k
    assert (tail - full[-4:]).abs().max() < 1e-5


@pytest.mark.parametrize("masked", [False, True], ids=["causal", "block_diagonal"])
def test_tiny_model_loss_and_grads_match_unfused(single_rank, masked):
    from myllm_mc.model import build_model, random_batch
    from myllm_mc.parallel.state import init_distributed

    batch = random_batch(2, 128, 8192, seed=3)
    mask = block_diagonal_causal_mask(128, [40, 90]) if masked else None
    results = {}
    for backend in ("unfused", "sdpa"):
        cfg = dataclasses.replace(single_rank, model=dataclasses.replace(
            single_rank.model, attention_backend=backend, init_std=0.2))   # large std: peaked attention
        init_distributed(cfg, seed=5)
        (model,) = build_model(cfg)
        core = type(model.decoder.layers[0].self_attention.core_attention).__name__
        assert core == {"unfused": "DotProductAttention", "sdpa": "SDPAAttention"}[backend]
        loss = model(batch["tokens"], batch["position_ids"], mask, labels=batch["labels"]).mean()
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        results[backend] = (loss.item(), grads)
    (loss_u, grads_u), (loss_s, grads_s) = results["unfused"], results["sdpa"]
    print(f"tiny model loss: unfused {loss_u:.7f}  sdpa {loss_s:.7f}  ({'block-diagonal' if masked else 'causal'})")
    assert abs(loss_u - loss_s) < 1e-5
    assert max((grads_u[n] - grads_s[n]).abs().max().item() for n in grads_u) < 1e-5


def test_unfused_attention_refuses_context_parallelism():
    with pytest.raises(ConfigError, match="attention_backend: unfused .* no context parallelism") as err:
        load("configs/tiny.yaml", ["model.spec=local", "model.attention_backend=unfused", "parallel.context=2"],
             world_size=2)
    assert "\n" not in str(err.value) and "fix:" in str(err.value)
    assert load("configs/tiny.yaml").model.attention_backend == "sdpa"

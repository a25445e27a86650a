"""The MyLLM architecture as a megatron-core GPTModel: exact parameter counts, numerics, spec choice."""

import dataclasses
import math
import statistics
import time

import pytest
import torch

from myllm_mc.config import ConfigError, load


def test_1b_preset_has_exactly_the_spec_parameter_count(single_rank):
    from myllm_mc.model import build_model, parameter_counts
    from myllm_mc.parallel.state import init_distributed

    cfg = load("configs/myllm_1b.yaml", ["parallel.world_size=auto", "training.global_batch_size=1"], world_size=1)
    init_distributed(cfg)
    chunks = build_model(cfg, on_meta_device=True)
    assert len(chunks) == 1 and chunks[0].embedding.word_embeddings.weight.is_meta
    counts = parameter_counts(chunks)
    layers = 28
    assert counts == {
        "embedding": 65536 * 1792,                                    # 117,440,512, tied to the output layer
        "attention": layers * (1792 * 1792 + 2 * 1792 * 256 + 1792 * 1792),   # q, k+v, o = 7,340,032 per layer
        "mlp": layers * 3 * 1792 * 4864,                              # 26,148,864 per layer
        "norms": layers * 2 * 1792 + 1792,                            # two per layer + final
        "output_layer": 0,
        "total": 1_055_231_744,
    }
    assert counts["embedding"] == 117_440_512
    per_layer = (counts["attention"] + counts["mlp"] + layers * 2 * 1792) // layers
    assert per_layer == 33_492_480
    qkv = chunks[0].decoder.layers[0].self_attention.linear_qkv.weight
    assert tuple(qkv.shape) == (1792 + 2 * 256, 1792)                # GQA: 14 query heads, 2 key/value heads
    assert chunks[0].output_layer.weight is None and chunks[0].share_embeddings_and_output_weights
    from myllm_mc.plan.params import parameter_breakdown
    planned = parameter_breakdown(cfg.model)            # the planner and the real GPTModel must agree exactly
    assert {key: getattr(planned, key) for key in counts} == counts


def test_tiny_preset_builds_with_the_myllm_architecture(single_rank):
    from myllm_mc.model import build_model, parameter_counts

    (model,) = build_model(single_rank)
    m = single_rank.model
    layer = model.decoder.layers[0]
    assert type(layer.input_layernorm).__name__ == "RMSNorm" and type(model.decoder.final_layernorm).__name__ == "RMSNorm"
    assert layer.mlp.config.gated_linear_unit and layer.mlp.config.activation_func is torch.nn.functional.silu
    assert all("bias" not in name for name, _ in model.named_parameters())
    assert model.position_embedding_type == "rope" and model.rotary_pos_emb.inv_freq.numel() == m.kv_channels // 2
    kv = 2 * m.num_query_groups * m.kv_channels
    per_layer = m.hidden_size * (m.hidden_size + kv) + m.hidden_size ** 2 + 3 * m.hidden_size * m.ffn_hidden_size
    counts = parameter_counts(model)
    assert counts["total"] == m.vocab_size * m.hidden_size + m.num_layers * (per_layer + 2 * m.hidden_size) + m.hidden_size
    assert counts["output_layer"] == 0
    from myllm_mc.plan.params import parameter_breakdown
    planned = parameter_breakdown(m)
    assert {key: getattr(planned, key) for key in counts} == counts


def test_untrained_loss_is_ln_vocab(single_rank):
    from myllm_mc.model import build_model, random_batch

    (model,) = build_model(single_rank)
    batch = random_batch(4, single_rank.model.seq_length, single_rank.model.vocab_size, seed=3)
    with torch.no_grad():
        loss = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"]).mean().item()
    print(f"untrained tiny loss {loss:.4f} vs ln(vocab) {math.log(single_rank.model.vocab_size):.4f}")
    assert abs(loss - math.log(single_rank.model.vocab_size)) < 0.1


def _loss_and_grads(cfg, overrides):
    from myllm_mc.model import build_model, random_batch
    from myllm_mc.parallel.state import init_distributed

    cfg = load("configs/tiny.yaml", ["model.seq_length=128"] + overrides, world_size=1)
    init_distributed(cfg)
    (model,) = build_model(cfg)
    batch = random_batch(2, 128, cfg.model.vocab_size, seed=1)
    loss = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"]).mean()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_activation_recompute_gives_identical_loss_and_grads(single_rank):
    loss, grads = _loss_and_grads(single_rank, [])
    for mode in ("selective", "full"):
        loss_r, grads_r = _loss_and_grads(single_rank, [f"model.recompute={mode}"])
        assert loss_r == loss, mode
        assert max((grads[n] - grads_r[n]).abs().max().item() for n in grads) < 1e-6, mode


def test_step_time_single_process(single_rank):
    """forward+backward of 4 × 128 tokens through megatron's schedule (figure for the closing note)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from myllm_mc.model import build_model, forward_step, random_batch, reduce_loss

    (model,) = build_model(single_rank)
    batch = random_batch(4, 128, single_rank.model.vocab_size, seed=2)
    micro = [{k: v[i:i + 1] for k, v in batch.items()} for i in range(4)]
    times, losses = [], []
    for _ in range(3):
        start = time.perf_counter()
        store = get_forward_backward_func()(forward_step_func=forward_step, data_iterator=iter(micro), model=model,
                                            num_microbatches=4, seq_length=128, micro_batch_size=1)
        times.append(time.perf_counter() - start)
        losses.append(reduce_loss(store))
    print(f"tiny step (4x128 tokens, fwd+bwd, 1 process): {statistics.median(times):.3f} s")
    with torch.no_grad():
        direct = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"]).mean().item()
    assert losses[0] == pytest.approx(direct, abs=1e-5)    # schedule + lm_loss + reduce_loss = plain mean
    assert model.decoder.layers[0].mlp.linear_fc2.weight.grad.abs().sum() > 0


def test_rmsnorm_matches_torch_and_is_marked_for_sequence_parallel(single_rank):
    from myllm_mc.model import transformer_config
    from myllm_mc.model.layers import RMSNorm

    config = transformer_config(single_rank)
    norm = RMSNorm(config, 256, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    reference = torch.nn.RMSNorm(256, eps=1e-5)
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(8, 2, 256)
    assert torch.allclose(norm(x), reference(x), atol=1e-6)
    assert norm.weight.sequence_parallel is False
    sp = dataclasses.replace(config, sequence_parallel=True, tensor_model_parallel_size=2)
    assert RMSNorm(sp, 256).weight.sequence_parallel is True


def test_context_parallel_attention_on_one_rank_equals_megatron_attention(single_rank):
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from myllm_mc.model import transformer_config
    from myllm_mc.model.layers import ContextParallelAttention, chunk_positions

    config = transformer_config(single_rank)
    ours = ContextParallelAttention(config, 1, AttnMaskType.causal, "self")
    megatrons = DotProductAttention(config, 1, AttnMaskType.causal, "self")
    q = torch.randn(16, 2, 4, 64)
    k, v = torch.randn(16, 2, 2, 64), torch.randn(16, 2, 2, 64)
    assert torch.allclose(ours(q, k, v), megatrons(q, k, v, None), atol=1e-5)
    assert chunk_positions(4, 1, 2).tolist() == [2, 3, 4, 5]    # rank 1 of 2 holds chunks 1 and 2 of 4


def test_transformer_config_maps_precision_recompute_and_layout(single_rank):
    from myllm_mc.model import transformer_config

    def tc(*overrides):
        return transformer_config(load("configs/tiny.yaml", list(overrides), world_size=None))

    fp32 = tc()
    assert fp32.params_dtype == torch.float32 and not fp32.bf16 and fp32.fp8 is None
    assert fp32.num_query_groups == 2 and fp32.gated_linear_unit and not fp32.add_bias_linear
    assert fp32.hidden_dropout == 0.0 and fp32.attention_dropout == 0.0 and fp32.recompute_granularity is None
    bf16 = tc("model.precision=bf16")
    assert bf16.params_dtype == torch.bfloat16 and bf16.bf16 and bf16.pipeline_dtype == torch.bfloat16
    full = tc("model.recompute=full")
    assert (full.recompute_granularity, full.recompute_method, full.recompute_num_layers) == ("full", "uniform", 1)
    assert tc("model.recompute=selective").recompute_modules == ["core_attn"]
    layout = tc("parallel.tensor=2", "parallel.pipeline=2", "parallel.virtual_pipeline=2",
                "parallel.sequence_parallel=true", "training.global_batch_size=8")
    assert (layout.tensor_model_parallel_size, layout.pipeline_model_parallel_size,
            layout.virtual_pipeline_model_parallel_size, layout.sequence_parallel) == (2, 2, 2, True)
    assert layout.batch_p2p_comm is False       # gloo: batched p2p is silently wrong at PP=2 with virtual stages


def test_spec_and_backend_choice_on_cpu():
    from myllm_mc.parallel.hardware import resolve_backend, resolve_spec

    cfg = load("configs/tiny.yaml")
    if torch.cuda.is_available():
        pytest.skip("CPU-only expectations")
    assert resolve_spec(cfg.model) == "local" and resolve_backend(cfg.parallel) == "gloo"
    with pytest.raises(ConfigError, match="model.spec: te needs CUDA") as err:
        resolve_spec(dataclasses.replace(cfg.model, spec="te"))
    assert "\n" not in str(err.value) and "fix:" in str(err.value)
    with pytest.raises(ConfigError, match="fp8"):
        resolve_spec(dataclasses.replace(cfg.model, precision="fp8"))
    with pytest.raises(ConfigError, match="parallel.backend: nccl needs CUDA"):
        resolve_backend(dataclasses.replace(cfg.parallel, backend="nccl"))


def test_load_model_names_a_missing_checkpoint(single_rank, tmp_path):
    from myllm_mc.checkpoint import load_model
    from myllm_mc.model import build_model

    with pytest.raises(FileNotFoundError, match="not a megatron distributed checkpoint"):
        load_model(build_model(single_rank), str(tmp_path / "nowhere"))

"""Mixture of experts in one process (fast tier): bad configs refused in one line, the planner's total and active
counts equal the built model's (a tiny MoE and the real preset on the meta device), the router obeys a dominant
row, the load-balancing loss megatron logs equals its formula, and each MoE bridge patch is needed."""

import dataclasses
import math

import pytest
import torch

from myllm_mc.config import ConfigError, load

TINY_MOE = ["model.seq_length=64", "training.micro_batch_size=1", "training.global_batch_size=2",
            "model.hidden_size=64", "model.kv_channels=16", "model.ffn_hidden_size=96", "model.vocab_size=512",
            "model.precision=fp32", "model.moe.num_experts=4", "model.moe.top_k=2", "model.moe.ffn_hidden_size=48"]


def _tiny(extra=(), world_size=1):
    return load("configs/tiny.yaml", TINY_MOE + list(extra), world_size=world_size)


@pytest.mark.parametrize("overrides, world, message", [
    (["parallel.expert=3", "training.global_batch_size=6"], 3, "parallel.expert: 3 does not divide model.moe.num_experts 4"),
    (["model.moe.top_k=5"], 1, "model.moe.top_k: 5 must be between 1 and num_experts 4"),
    (["parallel.expert=2", "parallel.expert_tensor=2"], 2, "expert_tensor 2 × expert 2 × pipeline 1 = 4 does not divide"),
    (["model.moe.num_experts=0", "parallel.expert=2"], 2, "expert parallelism needs experts"),
    (["parallel.tensor=2"], 2, "parallel.sequence_parallel: megatron-core's MoE layer refuses tensor parallelism"),
    (["model.moe.expert_bias=true"], 1, "model.moe.expert_bias: aux-loss-free balancing is defined for sigmoid"),
    (["model.moe.top_k=1"], 1, "model.moe.top_k: 1 with a softmax router needs the softmax before the top-k"),
    (["model.moe.pad_to_capacity=true"], 1, "model.moe.pad_to_capacity: needs model.moe.capacity_factor"),
    (["model.moe.layer_pattern=[1, 0]"], 1, "model.moe.layer_pattern: [1, 0] must list 0 (dense) or 1 (MoE)"),
    (["model.spec=local", "model.moe.grouped_gemm=true"], 1, "model.moe.grouped_gemm: grouped GEMM comes from"),
    (["model.spec=local", "model.moe.dispatcher=flex"], 1, "model.moe.dispatcher: flex (DeepEP/HybridEP)"),
])
def test_bad_moe_configs_are_one_line(overrides, world, message):
    with pytest.raises(ConfigError) as err:
        _tiny(overrides, world)
    assert message in str(err.value) and "\n" not in str(err.value) and " — fix: " in str(err.value)


@pytest.mark.parametrize("key", ["grouped_gemm", "dispatcher"])
def test_gpu_only_moe_kernels_refused_on_this_machine(key):
    from myllm_mc.parallel.hardware import resolve_spec

    cfg = _tiny()
    moe = dataclasses.replace(cfg.model.moe, **({"grouped_gemm": True} if key == "grouped_gemm" else {"dispatcher": "flex"}))
    if torch.cuda.is_available():
        pytest.skip("CUDA machine")
    with pytest.raises(ConfigError, match=f"model.moe.{key}"):
        resolve_spec(dataclasses.replace(cfg.model, moe=moe))


def _built_counts(cfg):
    from myllm_mc.model import build_model, parameter_counts
    from myllm_mc.parallel.state import init_distributed

    init_distributed(cfg)
    chunks = build_model(cfg, on_meta_device=True)
    counts = parameter_counts(chunks)
    experts = sum(p.numel() for n, p in chunks[0].named_parameters() if ".mlp.experts." in n)
    return chunks, counts, experts


@pytest.mark.parametrize("extra", [
    ["model.moe.shared_expert_ffn_hidden_size=32", "model.moe.first_dense_layers=1"],
    ["model.moe.layer_pattern=[1, 0, 1, 0]", "model.tie_embeddings=false", "model.qk_norm=true"],
])
def test_planner_counts_equal_the_built_model(extra, single_rank):
    from myllm_mc.plan.moe import moe_params
    from myllm_mc.plan.params import parameter_breakdown

    cfg = _tiny(extra)
    planned, x = parameter_breakdown(cfg.model), moe_params(cfg.model)
    _, counts, experts = _built_counts(cfg)
    assert {key: getattr(planned, key) for key in counts} == counts
    assert experts == planned.routed_experts == x.moe_layers * 4 * x.per_expert
    per_expert = experts // (x.moe_layers * 4)                       # active = total less the 2 skipped experts
    assert planned.active == counts["total"] - x.moe_layers * (4 - 2) * per_expert


def test_preset_planned_equals_built_on_meta_device(single_rank):
    from myllm_mc.plan.params import parameter_breakdown

    cfg = load("configs/myllm_moe.yaml", ["parallel.world_size=auto", "parallel.expert=1",
                                          "training.global_batch_size=1", "model.moe.grouped_gemm=false"], world_size=1)
    planned = parameter_breakdown(cfg.model)
    assert (planned.total, planned.active) == (5_998_141_184, 1_056_005_888)
    chunks, counts, experts = _built_counts(cfg)
    assert counts["total"] == planned.total and experts == planned.routed_experts
    assert type(chunks[0].decoder.layers[0].mlp).__name__ == "MLP"          # first_dense_layers: 1
    assert type(chunks[0].decoder.layers[1].mlp.experts).__name__ == "SequentialMLP"


def _ep1_model(extra):
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    cfg = _tiny(["model.num_layers=1", "model.moe.first_dense_layers=0"] + extra)
    init_distributed(cfg)
    model = build_model(cfg)[0]
    return cfg, model, model.decoder.layers[0].mlp


def _forward(model, seed=0):
    tokens = torch.randint(0, 512, (2, 64), generator=torch.Generator().manual_seed(seed))
    return model(tokens, torch.arange(64)[None].expand(2, -1), None, labels=tokens)


def test_dominant_router_row_takes_every_token(single_rank):
    from myllm_mc.train.router_stats import RouterCounter

    cfg, model, moe = _ep1_model(["model.moe.top_k=1", "model.moe.router_pre_softmax=true",
                                  "model.moe.aux_loss_coeff=0"])
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[2] = 1.0          # expert 2's row: a positive logit for a positive input, the others 0
    hook = moe.router.register_forward_pre_hook(lambda module, args: (args[0].abs() + 1.0, *args[1:]))
    counter = RouterCounter(1, 4, 1).attach([model])
    model.train()
    _forward(model).sum().backward()
    hook.remove()
    counter.detach()
    assert counter.counts[0].tolist() == [0.0, 0.0, 128.0, 0.0]       # 2 × 64 tokens, all to expert 2
    assert counter.dropped[0] == 0


def test_aux_loss_equals_its_formula(single_rank):
    from megatron.core.transformer.moe.moe_utils import clear_aux_losses_tracker, get_moe_layer_wise_logging_tracker

    cfg, model, moe = _ep1_model(["model.moe.aux_loss_coeff=1e-2"])
    captured = {}
    hook = moe.router.register_forward_hook(lambda m, i, o: captured.update(input=i[0].detach()))
    clear_aux_losses_tracker()
    model.train()
    _forward(model).sum().backward()
    hook.remove()
    logged = float(get_moe_layer_wise_logging_tracker()["load_balancing_loss"]["values"][0])
    # Switch Transformer / GShard: E · Σ_i f_i · P_i, f_i = share of the T·k routed slots expert i got,
    # P_i = mean softmax probability of expert i over the T tokens (softmax over all experts)
    logits = captured["input"].reshape(-1, 64).float() @ moe.router.weight.detach().float().t()
    scores = torch.softmax(logits, dim=-1)
    chosen = torch.zeros_like(scores).scatter(1, scores.topk(2, dim=-1).indices, 1.0)
    tokens, experts = scores.shape
    f = chosen.sum(0) / (tokens * 2)
    P = scores.mean(0)
    expected = experts * float((f * P).sum())
    clear_aux_losses_tracker()
    assert math.isclose(logged, expected, rel_tol=1e-5), (logged, expected)


@pytest.mark.parametrize("patch", ["moe_te_gemm", "moe_dtoh_sync", "moe_dtoh_stream"])
def test_each_moe_bridge_patch_is_needed(patch, single_rank, monkeypatch):
    from megatron.core.transformer.moe import moe_utils
    from megatron.core.transformer.moe.token_dispatcher import MoEAlltoAllTokenDispatcher

    from myllm_mc.parallel import cpu_backend

    _, model, _ = _ep1_model([])
    _forward(model).sum().backward()                                    # with every patch: runs
    if patch == "moe_te_gemm":
        monkeypatch.delattr(moe_utils, "te_general_gemm")
        with pytest.raises(NameError, match="te_general_gemm"):
            _forward(model)
    elif patch == "moe_dtoh_sync":
        monkeypatch.setattr(MoEAlltoAllTokenDispatcher, "_maybe_dtoh_and_synchronize",
                            cpu_backend._saved["dtoh_sync"])
        with pytest.raises(AssertionError, match="Torch not compiled with CUDA"):   # torch.cuda.current_stream()
            _forward(model)
    else:
        monkeypatch.setattr(MoEAlltoAllTokenDispatcher, "cuda_dtoh_stream", None)
        with pytest.raises(RuntimeError, match="torch.cuda.Stream requires CUDA"):
            _ep1_model([])

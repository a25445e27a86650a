"""One test per CPU-bridge patch: the megatron-core call site still needs it, and with it the call works.

If megatron-core changes underneath (a call site no longer calls CUDA, or our replacement no longer fits),
these fail and say which patch to revisit. Each test also shows what happens without the patch.
"""

import contextlib

import pytest
import torch

NO_CUDA = "(?i)cuda|accelerator"   # what torch says when a CUDA call meets a CPU-only build

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU bridge is only active without CUDA")


def _sites_missing(patch_name):
    from myllm_mc.parallel import cpu_backend

    return [m for m in cpu_backend.missing_call_sites() if m.startswith(patch_name + ":")]


@contextlib.contextmanager
def without_bridge(cfg):
    """The bridge switched off for the body, then back on and re-seeded (its RNG tracker is recreated)."""
    from myllm_mc.parallel import cpu_backend
    from myllm_mc.parallel.state import set_seed

    cpu_backend.uninstall()
    try:
        yield
    finally:
        cpu_backend.install()
        set_seed(cfg.training.seed)


def test_every_patch_has_a_documented_live_call_site():
    from myllm_mc.parallel import cpu_backend

    assert cpu_backend.missing_call_sites() == []
    assert len({p.name for p in cpu_backend.PATCHES}) == len(cpu_backend.PATCHES) == 14
    assert all(p.why and p.call_sites for p in cpu_backend.PATCHES)


def test_install_is_idempotent_and_active(single_rank):
    from myllm_mc.parallel import cpu_backend

    assert cpu_backend.install() is True and cpu_backend.install() is True
    assert cpu_backend.is_installed()
    assert torch.cuda.current_device() == "cpu"


def test_current_device(single_rank):
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear

    from myllm_mc.model import transformer_config

    assert _sites_missing("current_device") == []
    config = transformer_config(single_rank)
    layer = ColumnParallelLinear(16, 32, config=config, init_method=config.init_method, bias=False)
    assert layer.weight.device.type == "cpu" and layer.weight.shape == (32, 16)

    # inside autograd.Function.backward a TorchFunctionMode is not active: current_device itself must answer
    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad + torch.zeros(grad.shape, device=torch.cuda.current_device())

    x = torch.ones(3, requires_grad=True)
    Probe.apply(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(3))
    with without_bridge(single_rank), pytest.raises((RuntimeError, AssertionError), match=NO_CUDA):
        ColumnParallelLinear(16, 32, config=config, init_method=config.init_method, bias=False)


def test_synchronize(single_rank):
    assert _sites_missing("synchronize") == []
    assert torch.cuda.synchronize() is None
    with without_bridge(single_rank), pytest.raises((RuntimeError, AssertionError), match=NO_CUDA):
        torch.cuda.synchronize()


def test_manual_seed_reaches_the_cpu_generator(single_rank):
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    assert _sites_missing("manual_seed") == []
    model_parallel_cuda_manual_seed(42)
    drawn = torch.rand(4)
    torch.manual_seed(42)
    assert torch.equal(drawn, torch.rand(4))
    with without_bridge(single_rank):
        torch.manual_seed(0)
        torch.cuda.manual_seed(42)       # queued for a CUDA that never comes: the seed is silently ignored
        ignored = torch.rand(4)
    torch.manual_seed(42)
    assert not torch.equal(ignored, torch.rand(4))


def test_cuda_factories_land_on_cpu(single_rank):
    from megatron.core.transformer.utils import get_default_causal_mask, get_sliding_window_causal_mask

    assert _sites_missing("cuda_factories") == []
    mask = get_sliding_window_causal_mask(4, 4, (4, 0))
    assert mask.device.type == "cpu" and mask.dtype == torch.bool
    causal = get_default_causal_mask(5)
    assert torch.equal(causal, torch.ones(5, 5).triu(1).bool())
    with without_bridge(single_rank), pytest.raises((RuntimeError, AssertionError), match=NO_CUDA):
        get_sliding_window_causal_mask(4, 4, (4, 0))


def test_tensor_cuda_and_pin_memory_for_rope_under_context_parallelism(single_rank):
    from megatron.core import parallel_state
    from megatron.core.models.common.embeddings.rope_utils import get_pos_emb_on_this_cp_rank

    assert _sites_missing("tensor_cuda") == [] and _sites_missing("pin_memory") == []
    t = torch.arange(3.0)
    assert t.cuda() is t
    assert torch.empty(2, pin_memory=True).device.type == "cpu"
    freqs = torch.arange(8.0).view(8, 1, 1, 1)
    sliced = get_pos_emb_on_this_cp_rank(freqs, 0, parallel_state.get_context_parallel_group())
    assert torch.equal(sliced, freqs)   # one CP rank holds both chunks, in order
    with without_bridge(single_rank):
        with pytest.raises((RuntimeError, AssertionError), match=NO_CUDA):
            torch.arange(3.0).cuda()
        with pytest.raises((RuntimeError, AssertionError), match=NO_CUDA):
            get_pos_emb_on_this_cp_rank(freqs, 0, parallel_state.get_context_parallel_group())


def test_tensor_type_names_for_grad_clipping(single_rank):
    from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

    assert _sites_missing("tensor_type") == []
    assert torch.ones(1).type() == "torch.cuda.FloatTensor"
    assert torch.ones(1, dtype=torch.bfloat16).type() == "torch.cuda.BFloat16Tensor"
    assert torch.ones(1).type(torch.float64).dtype == torch.float64    # conversions are untouched
    param = torch.nn.Parameter(torch.zeros(4))
    param.grad = torch.full((4,), 2.0)
    clip_grad_by_total_norm_fp32([param], max_norm=1.0, total_norm=4.0)
    assert torch.allclose(param.grad, torch.full((4,), 2.0 / (4.0 + 1e-6)))
    with without_bridge(single_rank), pytest.raises(AssertionError):   # megatron's bare type assert
        clip_grad_by_total_norm_fp32([param], max_norm=1.0, total_norm=4.0)


def test_rng_tracker_keeps_cpu_states_and_recompute_reproduces_dropout(single_rank):
    from megatron.core import tensor_parallel
    from megatron.core.tensor_parallel import random as mrandom

    from myllm_mc.parallel.state import set_seed

    assert _sites_missing("rng_tracker") == []
    tracker = tensor_parallel.get_cuda_rng_tracker()
    assert type(tracker).__name__ == "CpuRNGStatesTracker"
    set_seed(5)
    before = torch.get_rng_state()
    with tracker.fork():
        first = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)        # fork leaves the default stream alone
    with tracker.fork():
        second = torch.rand(3)
    assert not torch.equal(first, second)                    # the tracked stream advanced
    set_seed(5)
    with tracker.fork():
        assert torch.equal(torch.rand(3), first)             # and is reproducible from the seed

    # activation recompute (CheckpointFunction) must replay the same dropout mask in backward
    def block(x):
        with tracker.fork():
            return torch.nn.functional.dropout(x, 0.5, training=True) * 3

    x = torch.randn(64, requires_grad=True)
    state = torch.get_rng_state(), tracker.get_states()
    block(x).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    torch.set_rng_state(state[0])
    tracker.set_states(state[1])
    tensor_parallel.checkpoint(block, False, x).sum().backward()
    assert torch.equal(x.grad, plain) and (plain == 0).any()
    with without_bridge(single_rank), pytest.raises((RuntimeError, AssertionError), match=NO_CUDA):
        mrandom.initialize_rng_tracker(force_reset=True)
        mrandom.get_cuda_rng_tracker().add("probe", 1)


def test_backward_mode_lets_recompute_build_cuda_factories(single_rank):
    from megatron.core import tensor_parallel
    from megatron.core.transformer.utils import get_default_causal_mask

    assert _sites_missing("backward_mode") == []

    def masked_scores(x):   # what selective recompute replays in backward: the softmax builds a causal mask
        return x.masked_fill(get_default_causal_mask(x.shape[-1]), 0.0) * 2

    x = torch.randn(4, 4, requires_grad=True)
    tensor_parallel.checkpoint(masked_scores, False, x).sum().backward()
    assert torch.equal(x.grad, torch.ones(4, 4).tril() * 2)
    from torch.autograd.function import BackwardCFunction

    from myllm_mc.parallel import cpu_backend

    original = cpu_backend._saved["backward_apply"]
    BackwardCFunction.apply = original       # the bridge without this one patch
    try:
        x.grad = None
        with pytest.raises((RuntimeError, AssertionError), match=NO_CUDA):
            tensor_parallel.checkpoint(masked_scores, False, x).sum().backward()
    finally:
        BackwardCFunction.apply = cpu_backend._backward_with_mode(original)


def test_inference_is_cuda_lets_the_last_stage_broadcast_sampled_tokens(single_rank):
    from megatron.core.inference import communication_utils

    from myllm_mc.parallel import cpu_backend

    assert _sites_missing("inference_is_cuda") == []
    picked = torch.tensor([[17.0, -0.25], [3.0, -1.5]], dtype=torch.float64)
    out = communication_utils.broadcast_from_last_pipeline_stage([2, 2], torch.float64, picked)
    assert torch.equal(out, picked)
    communication_utils._is_cuda = cpu_backend._saved["is_cuda"]     # the bridge without this one patch
    try:
        with pytest.raises(AssertionError):
            communication_utils.broadcast_from_last_pipeline_stage([2, 2], torch.float64, picked)
    finally:
        communication_utils._is_cuda = cpu_backend._cpu_is_cuda

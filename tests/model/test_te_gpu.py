"""Transformer Engine spec on a GPU: builds and runs forward in BF16 and FP8 (hybrid). Skipped on CPU."""

import math

import pytest
import torch

from myllm_mc.config import load
from tests.helpers import missing

pytestmark = pytest.mark.gpu


def _needs(te: bool = True, fp8: bool = False):
    if missing.cuda():
        pytest.skip(missing.cuda())
    from myllm_mc.parallel.hardware import transformer_engine_available

    if te and not transformer_engine_available():
        pytest.skip("transformer_engine not installed — install: pip install -e '.[all,gpu]' (on the GPU machine)")
    if fp8 and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 needs compute capability 8.9+ (Ada/Hopper)")


def _forward_loss(*overrides):
    from myllm_mc.model import build_model, random_batch
    from myllm_mc.parallel.state import init_distributed

    cfg = load("configs/tiny.yaml", ["model.seq_length=128", *overrides], world_size=1)
    runtime = init_distributed(cfg)
    (model,) = build_model(cfg)
    batch = {k: v.cuda() for k, v in random_batch(4, 128, cfg.model.vocab_size, seed=0).items()}
    with torch.no_grad():
        loss = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"]).float().mean().item()
    return runtime, model, loss


def test_te_spec_bf16_forward():
    _needs()
    runtime, model, loss = _forward_loss("model.spec=te", "model.precision=bf16")
    assert runtime.spec == "te" and runtime.backend == "nccl"
    assert "TE" in type(model.decoder.layers[0].self_attention.linear_qkv).__name__
    assert model.embedding.word_embeddings.weight.dtype == torch.bfloat16
    assert abs(loss - math.log(8192)) < 0.15


def test_te_spec_fp8_hybrid_forward():
    _needs(fp8=True)
    runtime, model, loss = _forward_loss("model.spec=te", "model.precision=fp8")
    assert model.config.fp8 == "hybrid"
    assert math.isfinite(loss) and abs(loss - math.log(8192)) < 0.2


def test_local_spec_runs_on_cuda_too():
    _needs(te=False)
    runtime, model, loss = _forward_loss("model.spec=local", "model.precision=bf16")
    assert runtime.spec == "local" and type(model.decoder.layers[0].input_layernorm).__name__ == "RMSNorm"
    assert abs(loss - math.log(8192)) < 0.15

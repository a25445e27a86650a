"""The one place that looks at the hardware: which process-group backend and which layer spec a run uses.

Both choices are `auto` in the config by default and resolved here from what the machine has, so the model
and the training loop never test for CUDA or Transformer Engine themselves.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

from myllm_mc.config import ConfigError
from myllm_mc.config.schema import ModelConfig, ParallelConfig


def cuda_available() -> bool:
    import torch  # on first use: torch-free modules import this one (checkpoint/, bench/cli.py)

    return torch.cuda.is_available()


def comm_device() -> str:
    """Where small tensors for collectives live: nccl needs CUDA tensors, gloo CPU ones."""
    return "cuda" if cuda_available() else "cpu"


@lru_cache(maxsize=1)
def transformer_engine_available() -> bool:
    """True when transformer_engine imports (looked up lazily: it is a GPU-only dependency)."""
    if importlib.util.find_spec("transformer_engine") is None:
        return False
    try:
        import transformer_engine.pytorch  # noqa: F401
    except Exception:  # a broken or CUDA-less TE install counts as absent
        return False
    return True


def resolve_backend(parallel: ParallelConfig) -> str:
    """`parallel.backend` → 'nccl' or 'gloo'. auto: nccl with CUDA, gloo without."""
    if parallel.backend == "auto":
        return "nccl" if cuda_available() else "gloo"
    if parallel.backend == "nccl" and not cuda_available():
        raise ConfigError("parallel.backend: nccl needs CUDA, and this machine has none"
                          " — fix: --set parallel.backend=auto (gloo on CPU)")
    return parallel.backend


def resolve_spec(model: ModelConfig) -> str:
    """`model.spec` → 'te' or 'local'. auto: te where CUDA and Transformer Engine are present, else local."""
    have_te = cuda_available() and transformer_engine_available()
    if model.spec == "te" and not have_te:
        missing = "CUDA" if not cuda_available() else "transformer_engine"
        raise ConfigError(f"model.spec: te needs CUDA and Transformer Engine, but {missing} is missing"
                          " — fix: --set model.spec=auto (local spec), or install transformer-engine on a GPU machine")
    spec = model.spec if model.spec != "auto" else ("te" if have_te else "local")
    if model.precision == "fp8" and spec == "local":
        raise ConfigError("model.precision: fp8 needs Transformer Engine kernels, which this machine lacks"
                          " (spec resolved to local) — fix: --set model.precision=bf16, or run on a GPU with TE")
    moe = model.moe
    if moe.num_experts and spec == "local" and moe.grouped_gemm:
        raise ConfigError("model.moe.grouped_gemm: grouped GEMM needs Transformer Engine on a GPU (megatron-core's"
                          " GroupedMLP asserts 'Grouped GEMM is not available') and this machine resolves to the local"
                          " spec — fix: --set model.moe.grouped_gemm=false (SequentialMLP, one GEMM per expert)")
    if moe.num_experts and spec == "local" and moe.dispatcher == "flex":
        raise ConfigError("model.moe.dispatcher: flex runs DeepEP/HybridEP CUDA kernels, which this machine lacks"
                          " — fix: --set model.moe.dispatcher=alltoall (or allgather); both run over gloo")
    return spec

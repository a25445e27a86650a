"""`align.lora` refused before launch, one line each (torch-free: the launching parent runs it).

Why these and no TP-divisibility rule for the rank: the rank dimension is never split (A of a column-parallel
layer and B of a row-parallel one are replicated, the other factor is split along the layer's own split dimension,
which the base layer already requires to divide), so any rank works at any tensor-parallel size.
"""

from __future__ import annotations

from myllm_mc.config import ConfigError
from myllm_mc.parallel.hardware import resolve_spec
from myllm_mc.plan.lora import ALL_LINEAR, TARGETS, expand_targets, layer_dims


def check_lora(cfg) -> None:
    lora, m = cfg.align.lora, cfg.model
    if not lora.enabled:
        return
    if not lora.targets:
        raise ConfigError(f"align.lora.targets is empty — fix: e.g. [{ALL_LINEAR}] or [linear_qkv, linear_proj]")
    for name in lora.targets:
        if name not in (*TARGETS, ALL_LINEAR):
            raise ConfigError(f"align.lora.targets: unknown module {name!r} — fix: use {', '.join(TARGETS)} or"
                              f" {ALL_LINEAR}")
    if not isinstance(lora.rank, int) or lora.rank <= 0:
        raise ConfigError(f"align.lora.rank={lora.rank}: the adapters' rank must be a positive whole number"
                          " — fix: e.g. 8 or 16")
    dims = layer_dims(m)
    for target in expand_targets(lora.targets):
        smaller = min(dims[target])
        if lora.rank > smaller:
            raise ConfigError(f"align.lora.rank={lora.rank} exceeds {target}'s smaller dimension {smaller} (input"
                              f" {dims[target][0]}, output {dims[target][1]}): the update would not be low-rank"
                              f" — fix: rank ≤ {smaller}")
    if lora.alpha <= 0:
        raise ConfigError(f"align.lora.alpha={lora.alpha}: the update's scale alpha/rank must be positive — fix:"
                          " e.g. alpha = 2 × rank")
    if not 0.0 <= lora.dropout < 1.0:
        raise ConfigError(f"align.lora.dropout={lora.dropout} — fix: a probability in [0, 1), e.g. 0.05")
    if lora.layers is not None:
        bad = [i for i in lora.layers if not isinstance(i, int) or not 0 <= i < m.num_layers]
        if bad or not lora.layers:
            raise ConfigError(f"align.lora.layers={lora.layers}: layer indices are 0 … {m.num_layers - 1}"
                              " — fix: list some of those, or null for every layer")
    if not cfg.checkpoint.init_from and not cfg.checkpoint.resume:
        raise ConfigError("align.lora.enabled with no checkpoint.init_from: adapters on a frozen random base learn"
                          " nothing useful — fix: set checkpoint.init_from to the model to adapt")
    if resolve_spec(m) == "te":
        raise ConfigError("align.lora with the Transformer Engine spec: adapters attach to megatron-core's local"
                          " ColumnParallelLinear/RowParallelLinear, not TE's fused modules — fix: --set"
                          " model.spec=local")

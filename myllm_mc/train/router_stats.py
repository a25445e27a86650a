"""Per-layer router statistics of a mixture-of-experts run: tokens per expert (min/max over experts), dropped
tokens, and the load-balancing and z losses megatron-core's router computed, every step, identical on every rank.

Nothing here routes or computes a loss. Token counts come from a forward hook on each megatron `TopKRouter` (its
output is `(probs, routing_map)`; a routed token is a true entry of the map with a non-zero probability, so
padding to capacity is not counted); the losses are read from megatron's own logging tracker
(`moe_utils.get_moe_layer_wise_logging_tracker`, filled by `save_to_aux_losses_tracker`), which is cleared after
each step. One SUM all-reduce of a fixed-shape tensor per step gathers every stage's layers and every rank's
tokens, so a pipeline stage without MoE layers takes part like any other.
"""

from __future__ import annotations

from typing import Dict, List

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.transformer.moe.moe_utils import clear_aux_losses_tracker, get_moe_layer_wise_logging_tracker
from megatron.core.transformer.moe.router import TopKRouter

from myllm_mc.config import Config
from myllm_mc.config.validate import moe_layer_pattern
from myllm_mc.parallel.hardware import comm_device

from .callbacks import Callback

# megatron's tracker names (router.py) → ours
LOSS_NAMES = {"load_balancing_loss": "aux_loss", "seq_load_balancing_loss": "seq_aux_loss",
              "global_load_balancing_loss": "global_aux_loss", "z_loss": "z_loss"}


class RouterCounter:
    """Forward hooks on every TopKRouter of `chunks`: tokens routed to each expert and tokens dropped, per global
    layer, summed over micro-batches on this rank. Training forwards only: not evaluation (`module.training`),
    not the forward that activation recompute re-runs inside backward."""

    def __init__(self, num_layers: int, num_experts: int, top_k: int):
        self.counts = torch.zeros(num_layers, num_experts, dtype=torch.float64)
        self.dropped = torch.zeros(num_layers, dtype=torch.float64)
        self.top_k = top_k
        self.handles: List = []

    def attach(self, chunks) -> "RouterCounter":
        for chunk in chunks:
            for module in chunk.modules():
                if isinstance(module, TopKRouter):
                    self.handles.append(module.register_forward_hook(self._hook))
        return self

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _hook(self, module, inputs, output) -> None:
        if not module.training or torch._C._current_graph_task_id() != -1 or module.layer_number is None:
            return
        probs, routing_map = output
        with torch.no_grad():
            routed = (routing_map & (probs != 0)).sum(dim=0).to(torch.float64).cpu()
            layer = module.layer_number - 1
            self.counts[layer] += routed
            self.dropped[layer] += routing_map.shape[0] * self.top_k - routed.sum()

    def reset(self) -> None:
        self.counts.zero_()
        self.dropped.zero_()


def collect(counter: RouterCounter, cfg: Config) -> Dict[str, float]:
    """This step's statistics on every rank (collective over the world), then counters and tracker cleared.

    Every rank routes its own tokens except tensor-parallel ranks without sequence parallelism, which route
    the same ones: their sum is divided by TP. Losses are per-micro-batch values summed by megatron; each layer
    lives on world / PP ranks, so the world sum / (world / PP) / micro-batches is their mean, once the balancing
    losses' per-rank shares are scaled to whole values."""
    layers, experts = counter.counts.shape
    tracker = get_moe_layer_wise_logging_tracker()
    losses = torch.zeros(len(LOSS_NAMES), layers, dtype=torch.float64)
    for i, name in enumerate(LOSS_NAMES):
        if name in tracker:
            losses[i] = tracker[name]["values"][:layers].detach().to(torch.float64).cpu()
    flat = torch.cat([counter.counts.flatten(), counter.dropped, losses.flatten()]).to(comm_device())
    dist.all_reduce(flat)
    flat = flat.cpu()
    duplicates = 1 if cfg.parallel.sequence_parallel else ps.get_tensor_model_parallel_world_size()
    counts = flat[:layers * experts].view(layers, experts) / duplicates
    dropped = flat[layers * experts:layers * experts + layers] / duplicates
    holders = dist.get_world_size() / ps.get_pipeline_model_parallel_world_size()
    # megatron logs each rank's share of a balancing loss and sums the shares over the group that computed it
    # (router.py: tensor × context for aux and seq_aux, the whole stage for global_aux); z-loss is a local mean
    tp_cp = ps.get_tensor_model_parallel_world_size() * ps.get_context_parallel_world_size()
    shares = torch.tensor([tp_cp, tp_cp, holders, 1.0], dtype=torch.float64)[:, None]
    losses = flat[layers * experts + layers:].view(len(LOSS_NAMES), layers) * shares / (holders * cfg.num_microbatches)
    counter.reset()
    clear_aux_losses_tracker()
    return summarise(counts, dropped, losses, moe_layer_pattern(cfg.model))


def summarise(counts, dropped, losses, pattern) -> Dict[str, float]:
    """Per MoE layer `moe/layer{i}/...` and over all MoE layers `moe_...` (min/max over experts and layers, losses
    averaged over layers); loss keys only for the losses that are on."""
    out: Dict[str, float] = {}
    moe_layers = [i for i, is_moe in enumerate(pattern) if is_moe]
    active = [j for j, name in enumerate(LOSS_NAMES.values()) if any(losses[j, i] != 0 for i in moe_layers)]
    for i in moe_layers:
        row = counts[i]
        out[f"moe/layer{i}/tokens_min"] = float(row.min())
        out[f"moe/layer{i}/tokens_max"] = float(row.max())
        out[f"moe/layer{i}/dropped"] = float(dropped[i])
        for j in active:
            out[f"moe/layer{i}/{list(LOSS_NAMES.values())[j]}"] = float(losses[j, i])
    total = counts[moe_layers]
    summary = {"moe_tokens_min": float(total.min()), "moe_tokens_max": float(total.max()),
               "moe_imbalance": float((total.max(dim=1).values / total.mean(dim=1).clamp(min=1e-9)).max()),
               "moe_dropped": float(dropped[moe_layers].sum())}
    for j in active:
        summary[f"moe_{list(LOSS_NAMES.values())[j]}"] = float(losses[j, moe_layers].mean())
    return {**summary, **out}


class RouterStatistics(Callback):
    """Adds the statistics to each step's record: the summary keys to `extra['metrics']` (console, metrics.jsonl,
    TensorBoard), the per-layer keys to `extra['log_only']` (metrics.jsonl and TensorBoard only)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.counter = RouterCounter(cfg.model.num_layers, cfg.model.moe.num_experts, cfg.model.moe.top_k)

    def on_train_start(self, trainer) -> None:
        self.counter.attach(trainer.model)
        clear_aux_losses_tracker()

    def on_step_end(self, trainer, record, control) -> None:
        stats = collect(self.counter, self.cfg)
        metrics = record.extra.setdefault("metrics", {})
        log_only = record.extra.setdefault("log_only", {})
        for key, value in stats.items():
            (log_only if key.startswith("moe/") else metrics)[key] = value

    def on_train_end(self, trainer) -> None:
        self.counter.detach()

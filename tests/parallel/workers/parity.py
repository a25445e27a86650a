"""torchrun worker (2 processes): one tiny model, many layouts, one launch.

Builds the tiny preset at tensor=1, saves it with dist_checkpointing, then for each layout re-initialises
megatron's groups, loads that checkpoint and runs the fixed batch through megatron's schedule
(forward_only), capturing the per-token loss. Rank 0 reports, per layout, the max |Δ| against the tensor=1
reference, the step loss from `reduce_loss`, and (for tp2/pp2) forward+backward step times.
"""

import argparse
import os
import statistics
import time

import psutil
import torch
import torch.distributed as dist

from myllm_mc.checkpoint import load_model, save_model
from myllm_mc.config import load
from myllm_mc.model import build_model, forward_step, random_batch, reduce_loss
from myllm_mc.model.layers import chunk_positions
from myllm_mc.parallel.state import destroy, init_distributed
from tests.helpers.torchrun import write_result

# name: (overrides, checkpoint to load, checkpoint to save afterwards)
LAYOUTS = {
    "tp2": (["parallel.tensor=2"], "tp1", None),
    "tp2_sp": (["parallel.tensor=2", "parallel.sequence_parallel=true"], "tp1", "tp2"),
    "pp2": (["parallel.pipeline=2"], "tp1", None),
    "pp2_vpp2": (["parallel.pipeline=2", "parallel.virtual_pipeline=2"], "tp1", "vpp"),
    "cp2": (["parallel.context=2"], "tp1", None),
    "dp2": ([], "tp1", None),
    # and back: checkpoints written by tensor=2 and by interleaved pipeline chunks, read at tensor=1
    "tp1_from_tp2": ([], "tp2", None),
    "tp1_from_pp2_vpp2": ([], "vpp", None),
}
TIMED = ("tp2", "pp2")   # timed over 3 steps; every other layout runs forward+backward once


class Batches:
    """Micro-batches of one sequence each; remembers which sample was drawn last."""

    def __init__(self, batch, indices):
        self.batch, self.indices, self.position, self.last_index = batch, list(indices), 0, None

    def __iter__(self):
        return self

    def __next__(self):
        self.last_index = self.indices[self.position % len(self.indices)]
        self.position += 1
        return {k: v[self.last_index:self.last_index + 1] for k, v in self.batch.items()}


def run_layout(cfg, chunks, batch, seq, forward_only=True):
    """Per-token losses [batch, seq] of this layout (summed over ranks), and the step loss."""
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func

    samples = batch["tokens"].shape[0]
    dp, dp_rank = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
    mine = list(range(samples))[dp_rank::dp]
    iterators = [Batches(batch, mine) for _ in chunks]
    captured = {}

    def capturing_step(data_iterator, model):
        output, loss_func = forward_step(data_iterator, model)
        index = data_iterator.last_index

        def capture(per_token):
            captured[index] = per_token.detach().reshape(-1).clone()
            return loss_func(per_token)
        return output, capture

    store = get_forward_backward_func()(
        forward_step_func=capturing_step, data_iterator=iterators if len(chunks) > 1 else iterators[0],
        model=chunks if len(chunks) > 1 else chunks[0], num_microbatches=len(mine), seq_length=seq,
        micro_batch_size=1, forward_only=forward_only)
    values, counts = torch.zeros(samples, seq), torch.zeros(samples, seq)
    cp, cp_rank = ps.get_context_parallel_world_size(), ps.get_context_parallel_rank()
    for index, per_token in captured.items():
        positions = chunk_positions(per_token.numel(), cp_rank, cp) if cp > 1 else torch.arange(seq)
        values[index, positions] += per_token
        counts[index, positions] += 1
    dist.all_reduce(values)
    dist.all_reduce(counts)
    assert counts.min() > 0, "some tokens were computed by no rank"
    step_loss = reduce_loss(store) if ps.is_pipeline_last_stage(ignore_virtual=True) else None
    return values / counts, step_loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--checkpoint-dir", required=True)
    args = parser.parse_args()
    world = int(os.environ["WORLD_SIZE"])
    base = ["configs/tiny.yaml", [f"model.seq_length={args.seq}", "training.micro_batch_size=1",
                                  "training.global_batch_size=4"]]
    batch = random_batch(4, args.seq, 8192, seed=7)
    result = {"layouts": {}, "step_times": {}}
    cfg = load(base[0], base[1], world_size=world)
    init_distributed(cfg, seed=99)   # a seed no layout below uses: their weights can only come from the checkpoint
    checkpoint = os.path.join(args.checkpoint_dir, "tp1")
    (model,) = build_model(cfg)
    model.eval()
    with torch.no_grad():
        reference = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
    result["reference_loss"] = reference.mean().item()
    t = time.perf_counter()
    save_model([model], checkpoint)
    result["first_save_s"] = time.perf_counter() - t

    for name, (overrides, source, target) in LAYOUTS.items():
        cfg = load(base[0], base[1] + overrides, world_size=world)
        init_distributed(cfg)
        chunks = build_model(cfg)
        if name == "dp2":   # proof that the comparison can fail: the same layout before loading differs
            with torch.no_grad():
                before, _ = run_layout(cfg, chunks, batch, args.seq)
            result["max_abs_diff_before_load"] = (before - reference).abs().max().item()
        load_model(chunks, os.path.join(args.checkpoint_dir, source))
        if target:
            save_model(chunks, os.path.join(args.checkpoint_dir, target))
        for chunk in chunks:
            chunk.eval()
        with torch.no_grad():
            per_token, step_loss = run_layout(cfg, chunks, batch, args.seq)
        result["layouts"][name] = {"max_abs_diff": (per_token - reference).abs().max().item(),
                                   "step_loss": step_loss, "chunks": len(chunks)}
        for chunk in chunks:
            chunk.train()
        times = []
        for _ in range(3 if name in TIMED else 1):
            dist.barrier()
            t = time.perf_counter()
            _, train_loss = run_layout(cfg, chunks, batch, args.seq, forward_only=False)
            times.append(time.perf_counter() - t)
        result["step_times"][name] = statistics.median(times)
        result["layouts"][name]["train_step_loss"] = train_loss

    children = psutil.Process().children(recursive=True)
    result["children"] = {p.pid: " ".join(p.cmdline())[:200] for p in children}
    destroy()
    result["children_after_destroy"] = [p.pid for p in psutil.Process().children(recursive=True)]
    write_result(result)


if __name__ == "__main__":   # dist_checkpointing's writer spawns a manager process: the guard is required
    main()

"""torchrun worker: one tiny MoE model trained at every expert-parallel layout from the same initial weights.

    --mode pairs (2 processes): initial weights saved at EP1; EP1 (DP2, the reference), EP2 alltoall (save at 4,
                 8 steps), EP2 allgather, EP2 resumed from step 4 (bit-exact), EP1 resumed from the EP2 step-4
                 checkpoint (save at 6), EP2 resumed from that EP1 step-6 checkpoint (reshard EP2 → EP1 → EP2),
                 and the EP2 model's logits at the step-4 checkpoint vs the same checkpoint loaded at EP1
    --mode quads (4 processes): EP2×TP2+SP with expert TP 1 and 2, EP2×PP2, each from the same initial weights
Every run reports per-step losses, the router statistics of its last step and a digest of this rank's weights.
"""

import argparse
import json
import time

from myllm_mc.config import load
from tests.helpers.torchrun import write_result
from tests.train.workers.layouts import WeightDigest

MOE = ["model.moe.num_experts=4", "model.moe.top_k=2", "model.moe.ffn_hidden_size=192",
       "model.moe.aux_loss_coeff=1e-2", "model.moe.z_loss_coeff=1e-3", "model.moe.dispatcher=alltoall"]


class Record(WeightDigest):
    """The last step's metrics (router statistics included) and, as the dense worker's, a digest of this rank's
    final weights."""

    def __init__(self):
        super().__init__()
        self.metrics, self.log_only = {}, {}

    def on_step_end(self, trainer, record, control):
        self.metrics = dict(record.extra.get("metrics", {}))
        self.log_only = dict(record.extra.get("log_only", {}))


def train(base, extra, world):
    from myllm_mc.train.run import run_training
    record = Record()
    start = time.perf_counter()
    result = run_training(load("configs/tiny.yaml", base + extra, world_size=world), extra_callbacks=[record])
    return {"losses": result.losses, "exit_code": result.exit_code, "digest": record.digest,
            "metrics": record.metrics, "log_only": record.log_only, "checkpoint": result.last_checkpoint,
            "seconds": time.perf_counter() - start}


def logits_at(base, extra, world, checkpoint):
    """Logits of a fixed batch from `checkpoint` loaded in this layout (gathered over TP; last stage only)."""
    import torch
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    from myllm_mc.checkpoint import load_model
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import destroy, init_distributed
    cfg = load("configs/tiny.yaml", base + extra, world_size=world)
    init_distributed(cfg, seed=cfg.training.seed)
    chunks = build_model(cfg)
    load_model(chunks, checkpoint)
    tokens = torch.randint(0, 8192, (2, 128), generator=torch.Generator().manual_seed(0))
    model = chunks[0].eval()
    with torch.no_grad():
        logits = model(tokens, torch.arange(128)[None].expand(2, -1), None)
        logits = gather_from_tensor_model_parallel_region(logits)
    destroy(process_group=False)
    return logits[:, :, :8192].flatten()[:4096].tolist()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["pairs", "quads"], required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--overrides", required=True, help="JSON list of --set strings")
    args = parser.parse_args()
    # the layout tests' 128-wide tiny variant, constant LR after warmup (runs of 4, 6 and 8 steps share a schedule)
    base = json.loads(args.overrides) + MOE + [
        "model.hidden_size=128", "model.ffn_hidden_size=384", "model.kv_channels=32", "model.precision=fp32",
        "training.steps=8", "checkpoint.save_interval=4", "schedule.decay=constant", "optimizer.lr=1e-3",
        "optimizer.min_lr=1e-4", "parallel.distributed_optimizer=true"]
    init = f"{args.work}/init"
    start = [f"checkpoint.init_from={init}"]
    out = {}
    if args.mode == "pairs":
        from myllm_mc.checkpoint import save_model
        from myllm_mc.model import build_model
        from myllm_mc.parallel.state import destroy, init_distributed
        cfg = load("configs/tiny.yaml", base, world_size=2)
        init_distributed(cfg, seed=cfg.training.seed)
        save_model(build_model(cfg), init)
        destroy(process_group=False)
        out["ep1"] = train(base, start + ["checkpoint.dir=null", f"logging.dir={args.work}/ep1"], 2)
        out["ep2"] = train(base, start + ["parallel.expert=2", f"checkpoint.dir={args.work}/ep2",
                                          f"logging.dir={args.work}/ep2"], 2)
        out["ep2_allgather"] = train(base, start + ["parallel.expert=2", "model.moe.dispatcher=allgather",
                                                    "checkpoint.dir=null", f"logging.dir={args.work}/ep2ag"], 2)
        out["ep2_resumed"] = train(base, ["parallel.expert=2", f"checkpoint.dir={args.work}/ep2_resumed",
                                          f"checkpoint.resume={args.work}/ep2/step_0000004",
                                          f"logging.dir={args.work}/ep2r"], 2)
        out["ep1_from_ep2"] = train(base, ["training.steps=6", "checkpoint.save_interval=6",
                                           f"checkpoint.dir={args.work}/ep1_from_ep2",
                                           f"checkpoint.resume={args.work}/ep2/step_0000004",
                                           f"logging.dir={args.work}/ep1r"], 2)
        out["ep2_from_ep1"] = train(base, ["parallel.expert=2", f"checkpoint.dir={args.work}/ep2_from_ep1",
                                           f"checkpoint.resume={args.work}/ep1_from_ep2/step_0000006",
                                           f"logging.dir={args.work}/ep2rr"], 2)
        weights = f"{args.work}/ep2/step_0000004"
        out["logits_ep2"] = logits_at(base, ["parallel.expert=2"], 2, weights)
        out["logits_ep1"] = logits_at(base, [], 2, weights)
    else:
        out["ep2_tp2_etp1"] = train(base, start + ["parallel.expert=2", "parallel.tensor=2",
                                                   "parallel.sequence_parallel=true", "parallel.expert_tensor=1",
                                                   "checkpoint.dir=null", f"logging.dir={args.work}/etp1"], 4)
        out["ep2_tp2_etp2"] = train(base, start + ["parallel.expert=2", "parallel.tensor=2",
                                                   "parallel.sequence_parallel=true", "parallel.expert_tensor=2",
                                                   "checkpoint.dir=null", f"logging.dir={args.work}/etp2"], 4)
        out["ep2_pp2"] = train(base, start + ["parallel.expert=2", "parallel.pipeline=2", "checkpoint.dir=null",
                                              f"logging.dir={args.work}/pp2"], 4)
    from myllm_mc.parallel.state import destroy
    write_result(out)
    destroy()


if __name__ == "__main__":
    main()

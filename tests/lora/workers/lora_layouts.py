"""torchrun worker: LoRA SFT and DPO at one layout per run, each 3 steps from the same base and adapters.

    --mode reference (1 process): TP1 (2 micro-batches accumulated), SFT and DPO
    --mode layouts   (2 processes): SFT at TP2, TP2 with sequence parallelism, PP2; DPO at TP2
Every run uses rank 3 (odd: the rank is never split), saves its last step, and reports its losses and grad norms.
Adam's eps is 1e-4: at step 1 most adapter gradients are tiny (B = 0), and with eps 1e-8 Adam turns float noise of
1e-10 in them into updates of ~lr·1e-2 whose sign differs by layout (measured: adapters 1.1e-3 apart after 3 steps
while the losses agreed to 2.6e-6); the comparison is of our tensor-parallel arithmetic, not of that amplification.
"""

import argparse
import json

from myllm_mc.config import load
from myllm_mc.train.callbacks import Callback
from tests.helpers.torchrun import write_result

RUN = ["align.epochs=null", "align.max_records=60", "training.micro_batch_size=2", "training.global_batch_size=4",
       "training.eval_interval=0", "training.eval_tasks=[]", "align.valid=[]", "logging.log_interval=1",
       "logging.tensorboard=false", "logging.plot=false", "align.lora.enabled=true", "align.lora.rank=3",
       "optimizer.lr=1e-2", "optimizer.eps=1e-4", "schedule.warmup_steps=0", "training.steps=3",
       "checkpoint.save_interval=3"]
LAYOUTS = {"tp1": [], "tp2": ["parallel.tensor=2"], "tp2sp": ["parallel.tensor=2", "parallel.sequence_parallel=true"],
           "pp2": ["parallel.pipeline=2"]}


class Recorder(Callback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, trainer, record, control):
        self.steps.append({"loss": record.loss, "grad_norm": record.grad_norm})


def run(kind, layout, args, world):
    from myllm_mc.align.dpo import run_dpo
    from myllm_mc.align.sft import run_sft

    name = f"{kind}_{layout}"
    config = "configs/dpo_tiny.yaml" if kind == "dpo" else "configs/sft_tiny.yaml"
    cfg = load(config, json.loads(args.model) + RUN + LAYOUTS[layout] + [
        f"checkpoint.init_from={args.base}", f"checkpoint.dir={args.work}/{name}", f"logging.dir={args.work}/{name}-log"],
        world_size=world)
    recorder = Recorder()
    result = (run_dpo if kind == "dpo" else run_sft)(cfg, extra_callbacks=[recorder])
    return {"steps": recorder.steps, "checkpoint": result.last_checkpoint}


def main():
    import torch.distributed as dist

    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["reference", "layouts"], required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    if args.mode == "reference":
        plan = [("sft", "tp1"), ("dpo", "tp1")]
    else:
        plan = [("sft", "tp2"), ("sft", "tp2sp"), ("sft", "pp2"), ("dpo", "tp2")]
    world = 1 if args.mode == "reference" else 2
    results = {f"{kind}_{layout}": run(kind, layout, args, world) for kind, layout in plan}
    write_result(results)
    from myllm_mc.parallel.state import destroy
    destroy()
    assert not dist.is_initialized()


if __name__ == "__main__":
    main()

"""torchrun worker: GRPO on the shared engine, from a tiny model pretrained and SFT'd on arithmetic here.

    --mode reference (1 process): pretrain 30 steps on the shipped corpus; SFT on the arithmetic task; GRPO from
                     it with two seeds (held-out accuracy at the start and the end of each, the per-step metrics,
                     the plot); GRPO DP=1 with 2× accumulation, one step (the parity reference)
    --mode layouts   (2 processes): the same first GRPO step at DP=2 and at TP=2
Every run reports its per-step losses and metrics and its held-out evaluations.
"""

import argparse
import json

from tests.align.workers.finetune import SMALL, TASKS, Recorder
from tests.helpers.torchrun import write_result

from myllm_mc.config import load

TASK = "format"
PROMPTS = [f"align.train=[{TASKS}/prompts/{TASK}.train.jsonl]", f"align.valid=[{TASKS}/prompts/{TASK}.test.jsonl]"]
GRPO = PROMPTS + ["align.grpo.group_size=8", "align.grpo.max_new_tokens=10", "align.grpo.eval_prompts=100",
                     "align.epochs=null", "training.micro_batch_size=8", "training.global_batch_size=64",
                     "optimizer.lr=2e-4", "optimizer.min_lr=2e-4", "schedule.warmup_steps=1",
                     "schedule.decay=constant", "optimizer.weight_decay=0", "checkpoint.dir=null"]


def run(kind, overrides, world):
    from myllm_mc.align.grpo import run_grpo
    from myllm_mc.align.sft import run_sft
    from myllm_mc.train.run import run_training
    rec = Recorder()
    config = {"pretrain": "configs/tiny.yaml", "sft": "configs/sft_tiny.yaml", "grpo": "configs/grpo_tiny.yaml"}[kind]
    cfg = load(config, SMALL + overrides, world_size=world)
    result = {"pretrain": run_training, "sft": run_sft, "grpo": run_grpo}[kind](cfg, extra_callbacks=[rec])
    return {"losses": result.losses, "metrics": rec.metrics, "valid": rec.valid, "exit_code": result.exit_code,
            "checkpoint": result.last_checkpoint}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["reference", "layouts", "grpo", "sft"], required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--overrides", required=True, help="JSON list of --set strings (tokenizer, corpus)")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--extra", default="[]", help="JSON list of further GRPO overrides")
    args = parser.parse_args()
    data, w = json.loads(args.overrides), args.work
    extra = json.loads(args.extra)
    first_step = data + GRPO + extra + [f"checkpoint.init_from={w}/sft", "training.steps=1",
                                        "training.eval_interval=0", "align.grpo.eval_prompts=0"]
    out = {}
    if args.mode in ("reference", "sft"):
        out["pretrain"] = run("pretrain", data + ["training.steps=30", "training.eval_interval=0",
                                                  "schedule.warmup_steps=5", f"checkpoint.dir={w}/pre",
                                                  "checkpoint.save_interval=30"], 1)
        out["sft"] = run("sft", data + [
            f"align.train=[{TASKS}/sft/{TASK}.train.jsonl]", f"align.valid=[{TASKS}/sft/{TASK}.test.jsonl]",
            "align.epochs=null", "training.steps=100", "training.global_batch_size=16", "schedule.warmup_steps=5",
            "optimizer.lr=3e-3", "optimizer.min_lr=3e-4", "training.eval_interval=0",
            f"checkpoint.init_from={w}/pre", f"checkpoint.dir={w}/sft", "checkpoint.save_interval=100"], 1)
    if args.mode in ("reference", "grpo"):
        for seed in args.seeds.split(","):
            out[f"grpo_seed{seed}"] = run("grpo", data + GRPO + extra + [
                f"checkpoint.init_from={w}/sft", f"training.seed={seed}", f"training.steps={args.steps}",
                f"training.eval_interval={args.steps}", f"logging.dir={w}/grpo-seed{seed}", "logging.plot=true"], 1)
    if args.mode == "reference":
        out["dp1_accum"] = run("grpo", first_step, 1)
    if args.mode == "layouts":
        out["dp2"] = run("grpo", first_step, 2)
        out["tp2"] = run("grpo", first_step + ["parallel.tensor=2"], 2)
    from myllm_mc.parallel.state import destroy
    write_result(out)
    destroy()


if __name__ == "__main__":
    main()

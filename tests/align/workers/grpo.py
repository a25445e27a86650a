"""GRPO runs for the fine-tuning workers (tests/align/workers/finetune.py calls `grpo_runs` after its SFT, whose
checkpoint `{work}/sft` is the policy's start and the reference: a tiny model SFT'd on the tagged counting
task, about half of its held-out greedy answers right).

    world 1: GRPO with two seeds (held-out evaluation at the start and the end, per-step metrics, the plot), and
             two steps on one rollout at DP=1 with 4× accumulation (the parity reference)
    world 2: the same two steps at DP=2 and at TP=2
Standalone (manual experiments): `torchrun --nproc-per-node=1 tests/align/workers/grpo.py --work W --overrides JSON`
with W holding `sft` from a finetune reference run.
"""

import argparse
import json
from pathlib import Path

from tests.helpers.torchrun import write_result

TASKS = "data/tasks"
TASK = "format"
PROMPTS = [f"align.train=[{TASKS}/prompts/{TASK}.train.jsonl]", f"align.valid=[{TASKS}/prompts/{TASK}.test.jsonl]"]
GRPO = PROMPTS + ["align.grpo.group_size=8", "align.grpo.max_new_tokens=10", "align.grpo.eval_prompts=64",
                  "align.grpo.eval_samples=4", "align.grpo.rewards={accuracy: 1.0, format: 0.2}",
                  "align.epochs=null", "training.micro_batch_size=8", "training.global_batch_size=32",
                  "optimizer.lr=3e-4", "optimizer.min_lr=3e-4", "schedule.warmup_steps=1",
                  "schedule.decay=constant", "optimizer.weight_decay=0", "checkpoint.dir=null"]
STEPS = 20


def grpo_runs(data, w, world, seeds=(1, 2), steps=STEPS, extra=()):
    from tests.align.workers.finetune import run
    # two optimizer steps on one rollout: the second step's ratio is not 1, so its loss depends on the first update
    first = data + GRPO + list(extra) + [f"checkpoint.init_from={w}/sft", "training.steps=2", "training.eval_interval=0",
                                         "align.grpo.eval_prompts=0", "align.grpo.iterations=2",
                                         "schedule.warmup_steps=0"]     # step 1 must move the weights
    out = {}
    if world == 1:
        for seed in seeds:
            out[f"seed{seed}"] = run("grpo", data + GRPO + list(extra) + [
                f"checkpoint.init_from={w}/sft", f"training.seed={seed}", f"training.steps={steps}",
                f"training.eval_interval={steps}", f"logging.dir={w}/grpo-seed{seed}", "logging.plot=true"], 1)
            plot = Path(w) / f"grpo-seed{seed}" / "grpo.png"
            out[f"seed{seed}"]["plot_bytes"] = plot.stat().st_size if plot.exists() else 0
        out["dp1_accum"] = run("grpo", first, 1)
    else:
        out["dp2"] = run("grpo", first, 2)
        out["tp2"] = run("grpo", first + ["parallel.tensor=2"], 2)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--overrides", required=True, help="JSON list of --set strings (tokenizer, corpus)")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--extra", default="[]", help="JSON list of further GRPO overrides")
    args = parser.parse_args()
    import os
    world = int(os.environ.get("WORLD_SIZE", "1"))
    out = grpo_runs(json.loads(args.overrides), args.work, world, [int(s) for s in args.seeds.split(",") if s],
                    args.steps, json.loads(args.extra))
    from myllm_mc.parallel.state import destroy
    write_result(out)
    destroy()


if __name__ == "__main__":
    main()

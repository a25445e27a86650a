"""torchrun worker: SFT and DPO on the shared engine, from a tiny model pretrained here.

    --mode reference (1 process): pretrain 30 steps on the shipped corpus → `pre`; greedy accuracy on held-out
                     format problems before and after SFT (100 steps → `sft`, which also scores them itself with
                     `training.eval_tasks`); SFT DP=1 with 2× accumulation (5 steps, task eval at start and end) as
                     the parity reference
                     then GRPO from `sft` (tests/align/workers/grpo.py): two seeds, and one step at DP=1 with
                     accumulation
    --mode layouts   (2 processes): SFT at DP=2 (6 steps, save at 3), TP=2, PP=2 (5 steps); SFT DP=2 resumed at
                     step 3; DPO at DP=2 from `sft` (30 steps, held-out eval every 10) and at TP=2 (5 steps);
                     GRPO's first step at DP=2 and TP=2
Each run reports its per-step losses (and DPO metrics); weights digests prove resumes bit-exact.
"""

import argparse
import json

from myllm_mc.config import load
from myllm_mc.train.callbacks import Callback
from tests.helpers.torchrun import write_result

TASKS = "data/tasks"
SMALL = ["model.num_layers=2", "model.hidden_size=128", "model.ffn_hidden_size=384", "model.kv_channels=32",
         "model.seq_length=128", "model.precision=fp32", "logging.tensorboard=false", "logging.plot=false",
         "logging.log_interval=5", "training.micro_batch_size=2", "training.global_batch_size=8"]


class Recorder(Callback):
    def __init__(self, eval_at_start=False):
        self.digest, self.metrics, self.valid, self.eval_at_start = None, [], [], eval_at_start

    def on_train_start(self, trainer):
        if self.eval_at_start:
            trainer.evaluate()              # held-out metrics of the starting model (collective)

    def on_step_end(self, trainer, record, control):
        self.metrics.append(dict(record.extra.get("metrics", {}), loss=record.loss, grad_norm=record.grad_norm,
                                 tokens_per_s=record.tokens / max(record.step_time, 1e-9)))

    def on_eval_end(self, trainer, step, metrics):
        self.valid.append(dict(metrics, step=step))

    def on_train_end(self, trainer):
        import hashlib
        h = hashlib.sha256()
        for chunk in trainer.model:
            for name, param in sorted(chunk.module.named_parameters()):
                h.update(name.encode())
                h.update(param.detach().cpu().contiguous().numpy().tobytes())
        self.digest = h.hexdigest()


def run(kind, overrides, world):
    from myllm_mc.align.dpo import run_dpo
    from myllm_mc.align.grpo import run_grpo
    from myllm_mc.align.sft import run_sft
    from myllm_mc.train.run import run_training
    rec = Recorder(eval_at_start=kind == "dpo")
    config = {"pretrain": "configs/tiny.yaml", "grpo": "configs/grpo_tiny.yaml"}.get(kind, "configs/sft_tiny.yaml")
    cfg = load(config, SMALL + overrides, world_size=world)
    result = {"pretrain": run_training, "sft": run_sft, "dpo": run_dpo, "grpo": run_grpo}[kind](cfg, extra_callbacks=[rec])
    return {"losses": result.losses, "metrics": rec.metrics, "valid": rec.valid, "digest": rec.digest,
            "checkpoint": result.last_checkpoint, "exit_code": result.exit_code}


def greedy_accuracy(overrides, weights, records, max_new=16):
    """Greedy decoding with a plain no-cache loop (one process, TP=PP=1) → format and exact-answer accuracy."""
    import torch

    from myllm_mc.checkpoint import load_model, resolve_weights
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import destroy, init_distributed
    from myllm_mc.tasks.verify import follows_format, is_correct
    cfg = load("configs/sft_tiny.yaml", SMALL + overrides, world_size=1)
    init_distributed(cfg, seed=1)
    (model,) = build_model(cfg)
    load_model([model], str(resolve_weights(weights)))
    model.eval()
    tok = Tokenizer(cfg.data.tokenizer)
    fmt = correct = 0
    replies = []
    with torch.no_grad():
        for record in records:
            ids, _ = tok.encode_chat(record["messages"][:-1], add_generation_prompt=True)
            start = len(ids)
            for _ in range(max_new):
                x = torch.tensor([ids])
                logits = model(x, torch.arange(len(ids))[None], None)
                ids.append(int(logits[0, -1].argmax()))
                if ids[-1] == tok.im_end:
                    break
            reply = tok.decode(ids[start:], skip_special_tokens=False)
            replies.append(reply)
            fmt += follows_format(record, reply)
            correct += is_correct(record, reply)
    destroy(process_group=False)
    return {"format": fmt / len(records), "correct": correct / len(records), "replies": replies[:5]}


def dpo_runs(data, w):
    dpo = data + [f"align.train=[{TASKS}/dpo/format.train.jsonl]", f"align.valid=[{TASKS}/dpo/format.test.jsonl]",
                  "align.epochs=null", f"checkpoint.init_from={w}/sft", "align.beta=0.5", "optimizer.lr=1e-3",
                  "schedule.warmup_steps=1", "schedule.decay=constant", "optimizer.weight_decay=0",
                  "align.max_records=64", "training.eval_tasks=[]"]
    # 64 training pairs, 30 steps of 8: ~4 epochs, so the last steps' batches are pairs it has trained on
    dp2 = run("dpo", dpo + ["training.steps=30", "training.eval_interval=10", "training.eval_steps=2",
                            "checkpoint.dir=null", f"logging.dir={w}/dpo-log"], 2)
    tp2 = run("dpo", dpo + ["training.steps=5", "training.eval_interval=0", "parallel.tensor=2", "checkpoint.dir=null"], 2)
    return dp2, tp2


def grpo_runs(data, w, world):
    from tests.align.workers.grpo import grpo_runs as runs
    return {f"grpo_{name}": result for name, result in runs(data, w, world).items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["reference", "layouts"], required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--overrides", required=True, help="JSON list of --set strings (tokenizer, corpus)")
    parser.add_argument("--only", choices=["all", "dpo"], default="all")
    args = parser.parse_args()
    data = json.loads(args.overrides)
    w = args.work
    sft_files = [f"align.train=[{TASKS}/sft/format.train.jsonl,{TASKS}/sft/arithmetic.train.jsonl]",
                 f"align.valid=[{TASKS}/sft/format.test.jsonl]", "align.epochs=null"]
    # parity runs: constant LR after a 1-step warmup, as for pretraining parity (tests/train/workers/layouts.py)
    parity = data + sft_files + ["training.steps=5", "schedule.warmup_steps=1", "schedule.decay=constant",
                                 "optimizer.lr=1e-3", "training.eval_interval=0", "align.max_records=200",
                                 f"checkpoint.init_from={w}/pre", "training.eval_tasks=[format,arithmetic]",
                                 "training.eval_task_prompts=3", "training.eval_task_max_new_tokens=12"]
    out = {}
    if args.only == "dpo":                                  # a manual re-check of the DPO runs alone
        out["dpo_dp2"], out["dpo_tp2"] = dpo_runs(data, w)
        write_result(out)
        return
    if args.mode == "reference":
        out["pretrain"] = run("pretrain", data + ["training.steps=30", "training.eval_interval=0",
                                                  "schedule.warmup_steps=5", f"checkpoint.dir={w}/pre",
                                                  "checkpoint.save_interval=30", f"logging.dir={w}/pre-log"], 1)
        held_out = [json.loads(line) for line in open(f"{TASKS}/sft/format.test.jsonl")][:40]
        out["before"] = greedy_accuracy(data, f"{w}/pre", held_out)
        out["sft"] = run("sft", data + [
            f"align.train=[{TASKS}/sft/format.train.jsonl]", f"align.valid=[{TASKS}/sft/format.test.jsonl]",
            "align.epochs=null", "training.steps=100", "training.global_batch_size=16", "schedule.warmup_steps=5",
            "optimizer.lr=3e-3", "optimizer.min_lr=3e-4", "training.eval_interval=30", "training.eval_steps=2",
            f"checkpoint.init_from={w}/pre", f"checkpoint.dir={w}/sft", "checkpoint.save_interval=60",
            f"logging.dir={w}/sft-log", "training.eval_tasks=[format]", "training.eval_task_prompts=40",
            "training.eval_task_max_new_tokens=16"], 1)
        out["after"] = greedy_accuracy(data, f"{w}/sft", held_out)
        out["dp1_accum2"] = run("sft", parity + ["checkpoint.dir=null"], 1)
        out.update(grpo_runs(data, w, 1))
    else:
        out["dp2"] = run("sft", parity + ["training.steps=6", "checkpoint.save_interval=3",
                                          f"checkpoint.dir={w}/sft_dp2", f"logging.dir={w}/sft_dp2-log"], 2)
        out["dp2_resumed"] = run("sft", parity + ["training.steps=6", f"checkpoint.resume={w}/sft_dp2/step_0000003",
                                                  f"checkpoint.dir={w}/sft_dp2_resumed"], 2)
        out["tp2"] = run("sft", parity + ["parallel.tensor=2", "checkpoint.dir=null"], 2)
        out["pp2"] = run("sft", parity + ["parallel.pipeline=2", "checkpoint.dir=null"], 2)
        out["dpo_dp2"], out["dpo_tp2"] = dpo_runs(data, w)
        out.update(grpo_runs(data, w, 2))
    from myllm_mc.parallel.state import destroy
    write_result(out)
    destroy()


if __name__ == "__main__":
    main()

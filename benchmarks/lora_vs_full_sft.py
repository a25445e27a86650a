"""LoRA vs full SFT on the same model, data and steps, one process each, alternated: tokens/s (median step after
the first), peak memory (the run's own peak_memory_gib), checkpoint size. Writes JSON lines to stdout.

    python benchmarks/lora_vs_full_sft.py --work /tmp/lora-bench [--rounds 2] [--steps 20]

The base is an untrained 8-layer, 512-wide model (26.6M parameters with the 1,024-entry tokenizer trained here on
the shipped SFT task texts): what is measured is the cost of a step, not what it learns.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = ["model.num_layers=8", "model.hidden_size=512", "model.num_attention_heads=8", "model.num_query_groups=4",
         "model.kv_channels=64", "model.ffn_hidden_size=1536", "model.vocab_size=1024", "model.seq_length=256",
         "model.precision=fp32", "model.spec=local"]
RUN = ["align.epochs=null", "training.micro_batch_size=4", "training.global_batch_size=8", "training.eval_interval=0",
       "training.eval_tasks=[]", "align.valid=[]", "logging.log_interval=1", "logging.tensorboard=false",
       "logging.plot=false", "schedule.warmup_steps=2"]


def prepare(work: Path) -> list:
    from myllm_mc.checkpoint import save_model
    from myllm_mc.config import load
    from myllm_mc.data.tokenizer_training import train_tokenizer
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    if not (work / "tok" / "tokenizer.json").exists():
        with open(work / "texts.jsonl", "w") as out:
            for path in sorted((REPO / "data" / "tasks" / "sft").glob("*.train.jsonl")):
                for line in open(path):
                    for message in json.loads(line)["messages"]:
                        out.write(json.dumps({"text": message["content"]}) + "\n")
        train_tokenizer([work / "texts.jsonl"], 1024, work / "tok")
    model = MODEL + [f"data.tokenizer={work / 'tok' / 'tokenizer.json'}"]
    if not (work / "base").exists():
        cfg = load(REPO / "configs" / "sft_tiny.yaml", model, world_size=1)
        init_distributed(cfg)
        save_model(build_model(cfg), str(work / "base"))
    return model


def one(work: Path, model: list, kind: str, round_: int, steps: int) -> dict:
    name = f"{kind}-{round_}"
    extra = ["align.lora.enabled=true", "align.lora.rank=16", "align.lora.alpha=32", "optimizer.lr=1e-3"] \
        if kind == "lora" else ["optimizer.lr=1e-4"]
    overrides = model + RUN + extra + [f"training.steps={steps}", f"checkpoint.save_interval={steps}",
                                       f"checkpoint.init_from={work / 'base'}", f"checkpoint.dir={work / name / 'ckpt'}",
                                       f"logging.dir={work / name}"]
    subprocess.run([sys.executable, "-m", "myllm_mc.cli", "finetune", "sft", "configs/sft_tiny.yaml", "--set",
                    *overrides], cwd=REPO, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in open(work / name / "metrics.jsonl") if '"train"' in line]
    speeds = sorted(r["tokens_per_s"] for r in rows[1:])
    step = next((work / name / "ckpt").glob("step_*"))
    return {"kind": kind, "round": round_, "tokens_per_s": speeds[len(speeds) // 2],
            "peak_memory_gib": max(r["peak_memory_gib"] for r in rows),
            "checkpoint_mib": sum(f.stat().st_size for f in step.rglob("*") if f.is_file()) / 2 ** 20,
            "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = prepare(work)
    for round_ in range(args.rounds):
        for kind in (("full", "lora") if round_ % 2 == 0 else ("lora", "full")):
            print(json.dumps(one(work, model, kind, round_, args.steps)), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The chain, tiny, on CPU, on the shipped corpus — as far as it is built. Safe to re-run. About 3–7 minutes on
# 2 cores: each stage runs only as long as the figure it shows needs; the last line gives the time of each.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
myllm() { python -m myllm_mc.cli "$@"; }      # same as the installed `myllm` console script
took="" current="" since=$SECONDS
stage() {                                     # `stage N "title"`: stop the previous stage's clock, print the header
    [ -z "$current" ] || took+="${took:+ · }${current}: $((SECONDS - since)) s"
    current=${1:-} since=$SECONDS
    [ $# -lt 2 ] || echo "== $1. $2"
}
trap 'echo "quickstart: stopped in stage ${current:-?} after ${SECONDS} s (${took:-no stage finished})" >&2' ERR

stage 1 "plan: derive and explain the reference 1B configuration"
myllm plan configs/myllm_1b.yaml
stage 2 "tokens: train the tiny preset's 8,192-entry byte-level BPE on the shipped corpus (8.4 MB, public domain)"
python tools/train_tokenizer.py --input data/corpus.jsonl.zst --config configs/tiny.yaml
stage 3 "data: corpus statistics, with bytes per token under that tokenizer"
myllm data stats data/corpus.jsonl.zst --config configs/tiny.yaml --histogram runs/corpus_lengths.png
stage 4 "sequences: tokenize into megatron-core indexed shards (.bin/.idx) with 2 workers"
python tools/preprocess_data.py --input data/corpus.jsonl.zst --output-prefix runs/data/corpus \
    --config configs/tiny.yaml --workers 2
stage 5 "loss → updates: pretrain the tiny preset on 2 processes (data parallel, distributed optimizer)"
echo "   60 steps × 4,096 tokens, warmup-stable-decay (takes a short run furthest): loss ln(8192) = 9.01 → ≈ 5.9"
myllm train configs/tiny.yaml --nproc-per-node 2 --set training.steps=60 training.eval_interval=30 \
    schedule.warmup_steps=10 schedule.decay=wsd
stage 6 "the checkpoint it left (loads at any other layout)"
myllm checkpoint inspect runs/tiny/checkpoints
stage 7 "inference: generate from the model it trained (KV cache on megatron-core; numbers on the last line)"
myllm generate configs/tiny.yaml --checkpoint runs/tiny/checkpoints --prompt "Once upon a time" \
    --max-new-tokens 48 --temperature 0.8 --seed 1
echo "   talk to it: myllm chat configs/tiny.yaml --checkpoint runs/tiny/checkpoints"
echo "metrics: runs/tiny/metrics.jsonl, plot: runs/tiny/loss.png, TensorBoard: runs/tiny/tensorboard"
stage 8 "aligned responses: SFT on the shipped verifiable tasks (assistant-only loss, packed), from that checkpoint"
echo "   24 steps × 8 packed sequences; tasks scored at steps 0, 12, 24: replies shrink to an answer and end the turn"
myllm finetune sft configs/sft_tiny.yaml --nproc-per-node 2 --set align.epochs=null align.max_records=300 \
    training.steps=24 training.global_batch_size=8 training.eval_interval=12 optimizer.lr=2e-3 schedule.warmup_steps=3
echo "metrics: runs/sft_tiny/metrics.jsonl, plot: runs/sft_tiny/loss.png"
stage 9 "reinforcement: GRPO on the arithmetic prompts from the SFT checkpoint (rollouts with the KV-cache generator,"
echo "      verifiable rewards, group-relative advantages, KL to the frozen SFT model); a few steps, to see it run"
echo "   prompt + reply fit in 64 tokens: it trains on 64-token rows, not 256 (rotary positions: the weights serve 256)"
myllm finetune grpo configs/grpo_tiny.yaml --set training.steps=4 training.eval_interval=0 model.seq_length=64 \
    align.grpo.eval_prompts=16 align.grpo.eval_samples=2 training.global_batch_size=32 training.micro_batch_size=8
echo "metrics: runs/grpo_tiny/metrics.jsonl, plot: runs/grpo_tiny/grpo.png"
stage 10 "evaluation: perplexity, bits per byte and task accuracy of base vs SFT vs GRPO in one table"
myllm eval configs/tiny.yaml --compare runs/tiny/checkpoints runs/sft_tiny/checkpoints runs/grpo_tiny/checkpoints \
    --valid --max-documents 20 --tasks arithmetic,counting --limit 16 --max-new-tokens 12 --out runs/eval.json
stage 11 "ship it: Hugging Face safetensors and GGUF Q8_0, each loaded once by transformers / llama.cpp and compared"
rm -rf runs/export && mkdir -p runs/export
myllm export hf configs/grpo_tiny.yaml --checkpoint runs/grpo_tiny/checkpoints --out runs/export/hf --check
myllm export gguf configs/grpo_tiny.yaml --checkpoint runs/grpo_tiny/checkpoints --out runs/export/model.q8_0.gguf \
    --type q8_0 --check
stage 12 "serve it (OpenAI-compatible API, web chat page at /) and ask one question with the openai client"
python examples/ask_server.py configs/grpo_tiny.yaml runs/grpo_tiny/checkpoints "What is 7 + 5?"
stage 13 "the planner against what the pretraining run measured"
myllm plan configs/tiny.yaml --compare runs/tiny
stage
echo "quickstart: 13 stages in ${SECONDS} s (${took})"

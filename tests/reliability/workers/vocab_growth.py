"""Under torchrun: set up training state with `checkpoint.init_from` into a bigger vocabulary (the code path
`myllm train` takes) and report the embedding next to the checkpoint's own, read independently at its shape."""

import sys

import torch
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.mapping import ShardedTensor

from myllm_mc.config import loader
from myllm_mc.parallel.state import destroy
from myllm_mc.train.setup import setup_state
from tests.helpers.torchrun import write_result

KEY = "embedding.word_embeddings.weight"


def main(overrides, source, old_rows):
    cfg = loader.load("configs/tiny.yaml", overrides, world_size=1)
    messages = []
    state = setup_state(cfg, echo=messages.append)
    grown = state.model[0].module.embedding.word_embeddings.weight.detach().clone()
    old = dist_checkpointing.load({"w": ShardedTensor.from_rank_offsets(KEY, torch.empty(old_rows, grown.shape[1]),
                                                                        replica_id=0)}, source)["w"]
    mean = old.to(torch.float64).mean(0).to(old.dtype)
    write_result({"messages": messages, "shape": list(grown.shape),
                  "old_rows_equal": bool(torch.equal(grown[:old_rows], old)),
                  "new_rows_equal_mean": bool(torch.equal(grown[old_rows:], mean.expand(grown.shape[0] - old_rows, -1))),
                  "mean_norm": float(mean.norm())})
    destroy()


if __name__ == "__main__":
    main(sys.argv[3:], sys.argv[1], int(sys.argv[2]))

"""Export reads checkpoints written with Transformer Engine's layer spec (the GPU default), whose pre-norms are
stored as `linear_qkv.layer_norm_weight` / `linear_fc1.layer_norm_weight`. Simulated here by re-saving the
tiny model's tensors under those names (TE itself needs a GPU)."""

from __future__ import annotations

import dataclasses

import torch


def test_te_named_checkpoint_exports_the_same_weights(interop_model, tmp_path):
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    from myllm_mc.checkpoint import load_model
    from myllm_mc.infer.weights import TE_NORM_NAMES, build_single, load_full_state, single_process

    model = build_single(single_process(interop_model["cfg"]))
    load_model([model], str(interop_model["checkpoint"]))
    renamed, count = {}, 0
    for name, item in model.sharded_state_dict().items():
        if isinstance(item, ShardedTensor):
            for local, te in TE_NORM_NAMES.items():
                if item.key.endswith(local):
                    item = dataclasses.replace(item, key=item.key[:-len(local)] + te)
                    count += 1
            renamed[name] = item
    assert count == 2   # one stacked key per norm kind (the layer index is a sharded axis)
    dist_checkpointing.save({"model": renamed}, str(tmp_path / "te"))
    assert any(k.endswith("linear_qkv.layer_norm_weight")
               for k in dist_checkpointing.load_tensors_metadata(str(tmp_path / "te")))
    ours = load_full_state(interop_model["cfg"], str(interop_model["checkpoint"]))
    te = load_full_state(interop_model["cfg"], str(tmp_path / "te"))
    assert ours.keys() == te.keys() and all(torch.equal(ours[k], te[k]) for k in ours)

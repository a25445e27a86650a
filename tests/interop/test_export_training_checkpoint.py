"""Export from a training checkpoint: its common.pt also holds optimizer/scheduler/step state, which
`dist_checkpointing.load` merges into what it returns; the export must take the weights and ignore the rest."""

import torch


def test_load_full_state_of_a_training_checkpoint_equals_the_model_save(interop_model, tmp_path):
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy

    from myllm_mc.checkpoint import load_model
    from myllm_mc.checkpoint.weights import sharded_model_state
    from myllm_mc.interop.weights import build_single, load_full_state, single_process

    cfg = interop_model["cfg"]
    model = build_single(single_process(cfg))
    load_model([model], str(interop_model["checkpoint"]))
    state = sharded_model_state([model])
    state.update(step=7, scheduler={"num_steps": 7}, optimizer={"param_groups": [{"lr": 1e-4}]})
    (tmp_path / "train").mkdir()
    dist_checkpointing.save(state, str(tmp_path / "train"),
                            sharded_strategy=get_default_save_sharded_strategy("torch_dist"))

    expected = load_full_state(cfg, str(interop_model["checkpoint"]))
    got = load_full_state(cfg, str(tmp_path / "train"))
    assert sorted(got) == sorted(expected) and len(got) > 10
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name

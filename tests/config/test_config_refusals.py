"""Every value the schema accepts works or is refused when the config loads (issue 13)."""

import pytest

from myllm_mc.config import ConfigError, load


@pytest.mark.parametrize("override", ["model.activation=gelu", "model.position_embedding=learned_absolute"])
def test_architecture_variants_no_stage_builds_are_refused_at_load(override):
    with pytest.raises(ConfigError, match="swiglu and rope only — fix"):
        load("configs/tiny.yaml", [override], world_size=1)


def test_finetuning_refuses_context_parallel_and_te_packing_before_any_process(monkeypatch):
    from myllm_mc.align.sft import check_align_layout
    cp = load("configs/sft_tiny.yaml", ["parallel.context=2"], world_size=2)
    with pytest.raises(ConfigError, match="parallel.context > 1"):
        check_align_layout(cp)
    import myllm_mc.align.sft as sft
    monkeypatch.setattr(sft, "resolve_spec", lambda model: "te")     # as on a GPU with Transformer Engine
    te = load("configs/sft_tiny.yaml", [], world_size=1)
    with pytest.raises(ConfigError, match="align.packing=false"):
        check_align_layout(te)


def test_training_time_task_eval_refuses_unknown_tasks_and_layouts_it_cannot_generate_in():
    from myllm_mc.tasks.selection import eval_task_names
    assert eval_task_names(load("configs/tiny.yaml", ["training.eval_tasks=[format,arithmetic]"], world_size=1)) \
        == ["format", "arithmetic"]
    assert "counting" in eval_task_names(load("configs/tiny.yaml", ["training.eval_tasks=[all]"], world_size=1))
    typo = load("configs/tiny.yaml", ["training.eval_tasks=[formt]"], world_size=1)
    with pytest.raises(ConfigError, match=r"training.eval_tasks: no shipped task 'formt' — fix: any of arithmetic, .*format.*, or \[all\]"):
        eval_task_names(typo)
    for layout in (["parallel.pipeline=2", "parallel.virtual_pipeline=2", "model.num_layers=4"],
                   ["parallel.context=2"], ["parallel.tensor=2", "parallel.sequence_parallel=true"]):
        with pytest.raises(ConfigError, match="training.eval_tasks generates with the training model"):
            eval_task_names(load("configs/tiny.yaml", ["training.eval_tasks=[format]", *layout], world_size=2))
    with pytest.raises(ConfigError, match="eval_task_prompts and eval_task_max_new_tokens must be ≥ 1"):
        eval_task_names(load("configs/tiny.yaml", ["training.eval_tasks=[format]", "training.eval_task_prompts=0"],
                             world_size=1))

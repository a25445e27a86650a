"""`myllm finetune` refuses what cannot work with one line and exit 2, before any process starts."""

from myllm_mc.align.cli import main


def test_context_parallel_is_refused_before_launch(capsys):
    code = main(["sft", "configs/sft_tiny.yaml", "--world-size", "2", "--set", "parallel.context=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "parallel.context > 1" in err[0] and "fix:" in err[0]


def test_dpo_without_a_reference_is_refused(capsys):
    code = main(["dpo", "configs/dpo_tiny.yaml", "--set", "checkpoint.init_from=null"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "dpo needs a reference model — fix: set checkpoint.init_from" in err


def _grpo_refusal(capsys, *overrides):
    code = main(["grpo", "configs/grpo_tiny.yaml", "--world-size", "2", "--set", *overrides])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "fix:" in err[0], err
    return err[0]


def test_grpo_refuses_groups_split_across_ranks_unknown_rewards_and_bad_ranges(capsys):
    assert "multiple of align.grpo.group_size 8 × parallel.data 2" in _grpo_refusal(
        capsys, "training.global_batch_size=24", "training.micro_batch_size=4")
    assert "unknown reward 'acuracy'" in _grpo_refusal(capsys, "align.grpo.rewards={acuracy: 1.0}")
    assert "align.grpo.group_size=1" in _grpo_refusal(capsys, "align.grpo.group_size=1")
    assert "align.grpo.epsilon=1.5" in _grpo_refusal(capsys, "align.grpo.epsilon=1.5")
    assert "virtual_pipeline" in _grpo_refusal(capsys, "parallel.pipeline=2", "parallel.virtual_pipeline=2",
                                               "model.num_layers=4")
    assert "save_interval 20 is not a multiple of align.grpo.iterations 3" in _grpo_refusal(
        capsys, "align.grpo.iterations=3")
    assert "mapping of names to numbers" in _grpo_refusal(capsys, "align.grpo.rewards=[accuracy]")
    assert "align.grpo.loss_aggregation" in _grpo_refusal(capsys, "align.grpo.loss_aggregation=tokens")

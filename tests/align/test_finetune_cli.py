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

"""`myllm-lm-eval`: lm-evaluation-harness's own command line with our model registered as `myllm`.

    myllm-lm-eval --model myllm --model_args config=configs/tiny.yaml,checkpoint=runs/tiny/checkpoints \\
        --tasks myllm_local --include_path data/lm_eval --batch_size 8

Why a wrapper and not `lm_eval --model myllm`: lm_eval 0.4.13 finds models only in its own source tree (its model
registry has no entry-point or plugin discovery; upstream issue EleutherAI/lm-evaluation-harness#3282), so the
stock `lm_eval` command cannot see a model another package defines. This command registers `myllm` and hands
every argument to lm_eval's own CLI (`lm_eval.__main__.cli_evaluate`) unchanged: same flags, same output files.
From Python, `myllm_mc.evaluate.lm_eval_tasks.register()` then `lm_eval.simple_evaluate(model="myllm", ...)`.
"""

from __future__ import annotations

import sys

from myllm_mc.errors import MyllmError, fail

from .lm_eval_tasks import LmEvalError, register

PROG = "myllm-lm-eval"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        register()
    except LmEvalError as err:
        return fail(PROG, str(err), 2, err)
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    try:
        cli_evaluate()
    except MyllmError as err:                # our one-line errors: model_args, checkpoint, config, layout
        return fail(PROG, str(err), 2, err)
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else fail(PROG, done.code, 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The part of a benchmark that runs on every rank: each planned run in turn, in one process group.

Why one launch for all runs of a sweep: starting torchrun, importing torch and megatron-core and forming the
process group costs seconds per launch on a CPU; `run_training` leaves the process group up and rebuilds
megatron's groups per call, so the runs only pay for their own steps. Rank 0 rewrites the results file after
every run, so a sweep killed half way still leaves what it measured.

    python -m torch.distributed.run --nproc-per-node N -m myllm_mc.bench.worker PLAN.json
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import torch.distributed as dist

from myllm_mc.config import ConfigError, load
from myllm_mc.parallel.state import destroy

from .measure import run_benchmark
from .report import format_run


def run_plan(plan: dict, echo=print) -> list:
    """plan = {"config", "world_size", "warmup", "results", "runs": [{"overrides", "swept"}]} → one row per run."""
    rows = []
    for index, run in enumerate(plan["runs"], 1):
        swept = run["swept"]
        try:
            cfg = load(plan["config"], run["overrides"], world_size=plan["world_size"])
            row = run_benchmark(cfg, plan["warmup"])
            row["status"] = "ok" if row["exit_code"] == 0 else f"exit code {row['exit_code']}"
        except ConfigError as err:
            row = {"status": "skipped", "reason": str(err)}
        except Exception as err:                   # an OOM or a megatron assertion ends this run, not the sweep
            row = {"status": "failed", "reason": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
            traceback.print_exc()
        row["swept"] = swept
        rows.append(row)
        rank = dist.get_rank() if dist.is_initialized() else 0
        if rank == 0:
            if row["status"] == "ok":
                echo(f"[{index}/{len(plan['runs'])}] " + "\n  ".join(format_run(row)))
            else:
                echo(f"[{index}/{len(plan['runs'])}] {' '.join(swept) or 'run'}: {row['status']} — {row['reason']}")
            Path(plan["results"]).write_text(json.dumps(rows, indent=1))
    return rows


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    plan = json.loads(Path(argv[0]).read_text())
    try:
        run_plan(plan)
    finally:
        destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())

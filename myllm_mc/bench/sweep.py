"""Layout sweeps: `KEY=V1,V2 ...` → every combination, each validated the way `myllm train` validates it.

Why validate in the parent: an invalid combination (tensor 2 × pipeline 2 on 2 processes, fp8 without
Transformer Engine) must be listed as skipped with its one-line ConfigError, before any process starts, so the
sweep never crashes on it and never spends a launch finding out.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

from myllm_mc.config import Config, ConfigError, load
from myllm_mc.parallel.hardware import resolve_backend, resolve_spec


@dataclass
class SweepPlan:
    runs: List[Tuple[List[str], Config]] = field(default_factory=list)    # (swept overrides, resolved config)
    skipped: List[dict] = field(default_factory=list)                     # {"overrides", "reason"}


def parse_sweep(items: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """['parallel.tensor=1,2', 'model.recompute=none,full'] → [('parallel.tensor', ['1', '2']), ...]."""
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise ConfigError(f"--sweep {item!r}: expected KEY=V1,V2,... — fix: e.g. --sweep parallel.tensor=1,2")
        if any(key.strip() == k for k, _ in axes):
            raise ConfigError(f"--sweep: {key.strip()} is given twice — fix: list all its values once, comma-separated")
        axes.append((key.strip(), choices))
    return axes


def combinations(axes: Sequence[Tuple[str, List[str]]]) -> List[List[str]]:
    """The cartesian product as override lists, first axis slowest (the order the user wrote them)."""
    if not axes:
        return [[]]
    keys = [k for k, _ in axes]
    return [[f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*(v for _, v in axes))]


def plan_sweep(config: str, base_overrides: Sequence[str], axes, world_size: int) -> SweepPlan:
    """Resolve every combination for `world_size` processes; the ones the loader or the hardware rejects are skipped."""
    plan = SweepPlan()
    for combo in combinations(axes):
        try:
            cfg = load(config, list(base_overrides) + combo, world_size=world_size)
            resolve_spec(cfg.model)                    # fp8 / te on a machine without them: same error train gives
            resolve_backend(cfg.parallel)
        except ConfigError as err:
            plan.skipped.append({"overrides": combo, "reason": str(err)})
            continue
        plan.runs.append((combo, cfg))
    return plan

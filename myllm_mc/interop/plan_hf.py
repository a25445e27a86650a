"""`myllm plan --from-hf DIR`: the planner's full report for an HF model before anything is converted.

    myllm plan --from-hf DIR [--config BASE] [--set K=V ...] [--json]     parameters, FLOPs, memory, time, KV cache
    myllm plan --from-hf DIR --layouts [--gpus 8] [--gpu h100]            memory per layout, the recommendation

The model group comes from DIR/config.json through the family registry (families/: refused in one line where
the import would be), every other group from BASE or the defaults, then --set. Only config.json is read: no
weights, no torch. Why here and not in plan/: the registry lives in interop, a floor above the planner, so
cli.py routes `plan --from-hf` to this module.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from myllm_mc.config import Config, ConfigError, from_dict
from myllm_mc.config.loader import read_yaml
from myllm_mc.plan.cli import run_layouts
from myllm_mc.plan.hardware import gpu_spec
from myllm_mc.plan.report import as_json_dict, figures, render_text

from .errors import ConversionError
from .families import family_fields, family_for_hf


def config_from_hf(path: str | Path, base: Optional[str] = None, overrides=(), world_size: Optional[int] = None,
                   gpu: Optional[str] = None) -> Config:
    """The Config an import of DIR would derive (model group from config.json), for planning."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise ConversionError(f"{path}: no config.json — fix: pass an HF model directory")
    hf = json.loads(config_file.read_text())
    fields = family_fields(family_for_hf(hf, str(config_file)), hf, str(config_file))
    data = read_yaml(base) if base else {}
    data.setdefault("model", {}).update({"name": Path(path).resolve().name, **fields})
    return from_dict(data, list(overrides) + ([f"plan.gpu={gpu}"] if gpu else []), world_size)


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="myllm plan --from-hf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-hf", dest="path", required=True, metavar="DIR", help="an HF model directory")
    parser.add_argument("--config", default=None, help="base config for the non-model groups (batch, layout, GPU)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--world-size", type=int, default=None, help="number of processes the run will have")
    parser.add_argument("--layouts", action="store_true", help="list every valid layout with predicted memory")
    parser.add_argument("--gpus", type=int, default=None, help="GPU count for --layouts (default: the config's)")
    parser.add_argument("--gpu", default=None, help="GPU model (a100, h100, h200, b200); default plan.gpu")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    cfg = config_from_hf(args.path, args.config, args.overrides, args.world_size, args.gpu)
    gpu_spec(cfg.plan.gpu)
    if args.layouts:
        gpus = args.gpus or cfg.parallel.world_size
        if gpus < 1:
            raise ConfigError(f"--gpus: must be at least 1, got {gpus} — fix: e.g. --gpus 8")
        return run_layouts(cfg, gpus, cfg.plan.gpu, args.json)
    figs = figures(cfg)
    if args.json:
        print(json.dumps(as_json_dict(figs), indent=1, ensure_ascii=False))
    else:
        print(f"{args.path}: {cfg.model.family} family, read from config.json (nothing converted)")
        print(render_text(cfg, figs))
    return 0

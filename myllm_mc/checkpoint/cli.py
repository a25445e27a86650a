"""`myllm checkpoint inspect DIR`: step, layout, tokens seen and parameter count of a checkpoint, without torch;
verifies its files against the manifest (exit 1 when damaged).

DIR may be a checkpoint root (its `latest` is shown, with the list of complete checkpoints) or one step directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import base_pointer, manifest, store


def describe(path: Path) -> dict:
    path = Path(path)
    target = path if store.is_complete(path) else store.find_latest(path)
    if target is None:
        raise SystemExit(f"myllm checkpoint: {path} holds no complete checkpoint"
                         " — fix: pass a checkpoint.dir or one of its step_NNNNNNN directories")
    stale = store.stale_latest(path) if target != path else None
    if stale:                                   # as a resume says it: which checkpoint is shown instead, and why
        print(stale, file=sys.stderr, flush=True)
    meta = store.read_meta(target)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    problems = manifest.verify(target)
    if meta.get("lora"):                        # adapters only: the base they need, and whether it is there
        meta["lora_base_ok"], meta["lora_base_status"] = base_pointer.base_status(meta["lora"])
    return {"path": str(target), "bytes": size, **meta, "problems": problems,
            "intact": not manifest.is_damaged(problems),
            "complete": [p.name for p in store.list_complete(target.parent)]}


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="myllm checkpoint", description=__doc__)
    parser.add_argument("action", choices=["inspect"])
    parser.add_argument("dir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    info = describe(Path(args.dir))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0 if info["intact"] else 1
    print(f"checkpoint   {info['path']} ({info['bytes'] / 2**20:.1f} MiB)")
    if "consumed_samples" in info:              # a training checkpoint (a bare weights save records only the step)
        layout = info["layout"]
        vpp = f"×VPP{layout['virtual_pipeline']}" if layout.get("virtual_pipeline") else ""
        print(f"step         {info['step']:,}  ({info['consumed_samples']:,} samples consumed)")
        print(f"tokens seen  {info['tokens_seen']:,}")
        print(f"parameters   {info['parameters']:,}  ({info['config']})")
        print(f"layout       TP{layout['tensor']}×PP{layout['pipeline']}{vpp}×CP{layout['context']}"
              f"×DP{layout['data']}  (loads at any other layout)")
    else:
        print(f"step         {info.get('step', '?')}")
    print(f"complete     {', '.join(info['complete'])}")
    if info.get("lora"):
        lora = info["lora"]
        layers = "every layer" if lora.get("layers") is None else f"layers {lora['layers']}"
        print(f"lora         rank {lora['rank']}, alpha {lora['alpha']:g} on {', '.join(lora['targets'])}, {layers}:"
              " adapters (and their optimizer state) only")
        print(f"needs base   {info['lora_base_status']}")
        if not info["lora_base_ok"]:
            return 1
    if not info["intact"]:
        print(f"DAMAGED      {'; '.join(info['problems'][:3])} — fix: resume from another checkpoint "
              f"(--resume auto skips damaged ones)")
        return 1
    print(f"verified     {'sizes and checksums match the manifest' if not info['problems'] else info['problems'][0]}")
    return 0

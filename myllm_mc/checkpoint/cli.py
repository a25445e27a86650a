"""`myllm checkpoint inspect DIR`: step, layout, tokens seen and parameter count of a checkpoint, without torch.

DIR may be a checkpoint root (its `latest` is shown, with the list of complete checkpoints) or one step directory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import store


def describe(path: Path) -> dict:
    path = Path(path)
    target = path if store.is_complete(path) else store.find_latest(path)
    if target is None:
        raise SystemExit(f"myllm checkpoint: {path} holds no complete checkpoint"
                         " — fix: pass a checkpoint.dir or one of its step_NNNNNNN directories")
    meta = store.read_meta(target)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return {"path": str(target), "bytes": size, **meta,
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
        return 0
    layout = info["layout"]
    vpp = f"×VPP{layout['virtual_pipeline']}" if layout.get("virtual_pipeline") else ""
    print(f"checkpoint   {info['path']} ({info['bytes'] / 2**20:.1f} MiB)")
    print(f"step         {info['step']:,}  ({info['consumed_samples']:,} samples consumed)")
    print(f"tokens seen  {info['tokens_seen']:,}")
    print(f"parameters   {info['parameters']:,}  ({info['config']})")
    print(f"layout       TP{layout['tensor']}×PP{layout['pipeline']}{vpp}×CP{layout['context']}×DP{layout['data']}"
          "  (loads at any other layout)")
    print(f"complete     {', '.join(info['complete'])}")
    return 0

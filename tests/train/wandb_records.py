"""Reading a W&B offline run file (`run-<id>.wandb`) back without the network: wandb 0.31 no longer ships a
Python reader, so this is its format — a 7-byte header (":W&B", magic 0xBEE1, version 0), then LevelDB log
records (crc32, 2-byte length, type FULL/FIRST/MIDDLE/LAST) in 32 KiB blocks, each payload a protobuf `Record`."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict, Iterator, Tuple

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    at, pending = HEADER, b""
    while at + 7 <= len(data):
        room = BLOCK - at % BLOCK
        if room < 7:                                 # the block's tail is padding
            at += room
            continue
        _, length, kind = struct.unpack("<IHB", data[at:at + 7])
        chunk = data[at + 7:at + 7 + length]
        at += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def records(path):
    from wandb.proto import wandb_internal_pb2 as pb

    for payload in payloads(path):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def history(path) -> Dict[Tuple[str, int], float]:
    """{(key, step): value} of every history row in one run file."""
    out: Dict[Tuple[str, int], float] = {}
    for record in records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        step = int(items.pop("_step", record.history.step.num))
        for key, value in items.items():
            if not key.startswith("_") and isinstance(value, (int, float)):
                out[(key, step)] = float(value)
    return out


def run_info(path) -> dict:
    """{"id", "name", "tags"} from the run record."""
    for record in records(path):
        if record.WhichOneof("record_type") == "run":
            return {"id": record.run.run_id, "name": record.run.display_name, "tags": list(record.run.tags)}
    return {}


def config(path) -> dict:
    """The run's config as logged ({key: value}): the run record's, then any later config records."""
    out = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        update = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        for item in update:
            out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out

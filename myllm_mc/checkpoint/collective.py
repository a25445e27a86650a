"""Decide on rank 0, tell every rank: checks that read the file system once (lock, verification, free space).

Why: N ranks hashing the same checkpoint or racing for one lock file is waste or worse; and a check that fails on
one rank only would leave the others waiting in the next collective for the 10-minute timeout. Every rank gets
the same answer, or the same CheckpointError.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from .errors import CheckpointError

T = TypeVar("T")


def on_rank0(fn: Callable[[], T]) -> T:
    import torch.distributed as dist

    active = dist.is_available() and dist.is_initialized()
    payload = [None]
    if not active or dist.get_rank() == 0:
        try:
            payload[0] = ("ok", fn())
        except CheckpointError as err:
            payload[0] = ("error", str(err))
        except Exception as err:            # any failure must reach the other ranks too, or they hang
            payload[0] = ("error", f"{type(err).__name__}: {err}")
    if active and dist.get_world_size() > 1:
        dist.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if kind == "error":
        raise CheckpointError(value)
    return value

"""data.loader: dali — NVIDIA DALI moves token batches to the GPU on its own prefetching pipeline.

Why: at 8 × H100 the host-side collate and host→device copy of [micro_batch, seq_length] int64 tensors can show
up between steps; DALI overlaps them with compute. GPU only: `nvidia.dali` is imported lazily, so CPU installs
never need it. The samples themselves still come from megatron-core's GPTDataset (same shuffle, same resume).
Not measured yet: no GPU was available when this was written (see docs/data.md).
"""

from __future__ import annotations

import numpy as np

from myllm_mc.errors import MyllmError
from myllm_mc.parallel.hardware import cuda_available

FIELDS = ("tokens", "labels", "loss_mask", "position_ids")


class DaliUnavailable(MyllmError, RuntimeError):
    pass


def _import_dali():
    try:
        if not cuda_available():
            raise DaliUnavailable("data.loader: dali needs a CUDA GPU — fix: set data.loader=megatron on CPU")
        from nvidia.dali import fn, pipeline_def, types  # noqa: F401
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy  # noqa: F401
    except ImportError:
        raise DaliUnavailable("data.loader: dali needs NVIDIA DALI — fix: pip install nvidia-dali-cuda120 "
                              "(the gpu extra)") from None
    return fn, pipeline_def, types, DALIGenericIterator, LastBatchPolicy


class DaliTokenLoader:
    """Iterates dicts of CUDA tensors (tokens, labels, loss_mask, position_ids) for the sampler's micro-batches."""

    def __init__(self, dataset, batch_sampler, device_id: int | None = None, prefetch: int = 2, num_threads: int = 2):
        fn, pipeline_def, types, DALIGenericIterator, LastBatchPolicy = _import_dali()
        import torch  # not at the top: data.datasets imports this module, and preflight imports that torch-free

        self.batches = list(batch_sampler)
        self.dataset = dataset
        device_id = torch.cuda.current_device() if device_id is None else device_id
        micro_batch = batch_sampler.micro_batch_size
        state = {"next": 0}

        def source(_info=None):
            if state["next"] >= len(self.batches):
                raise StopIteration
            indices = self.batches[state["next"]]
            state["next"] += 1
            samples = [self.dataset[i] for i in indices]
            return tuple([np.asarray(s[f]) for s in samples] for f in FIELDS)

        @pipeline_def(batch_size=micro_batch, num_threads=num_threads, device_id=device_id,
                      prefetch_queue_depth=prefetch)
        def token_pipeline():
            outputs = fn.external_source(source=source, num_outputs=len(FIELDS), batch=True, device="cpu")
            return tuple(o.gpu() for o in outputs)

        pipe = token_pipeline()
        pipe.build()
        self._iterator = DALIGenericIterator([pipe], list(FIELDS), last_batch_policy=LastBatchPolicy.PARTIAL,
                                             auto_reset=False)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self._iterator:
            yield batch[0]

"""data.loader: dali — NVIDIA DALI moves token batches to the GPU on its own prefetching pipeline.

Why: at 8 × H100 the host-side collate and host→device copy of [micro_batch, seq_length] int64 tensors can show
up between steps; DALI overlaps them with compute. `nvidia.dali` is imported lazily, so installs without it never
need it. The samples themselves still come from megatron-core's GPTDataset (same shuffle, same resume): an
`fn.external_source` reads the sampler's micro-batches, and the pipeline copies them to the GPU (`device="gpu"`,
what training uses). `device="cpu"` builds the same pipeline without a device (DALI's CPU-only mode, `device_id`
None) and leaves out only the copy: the tests run it on CPU machines and check it yields the megatron loader's
batches. The GPU copy and any speed-up are not measured yet (docs/data.md).
"""

from __future__ import annotations

import numpy as np

from myllm_mc.errors import MyllmError
from myllm_mc.parallel.hardware import cuda_available

INSTALL = "pip install nvidia-dali-cuda120==2.4.0"


class DaliUnavailable(MyllmError, RuntimeError):
    pass


def _import_dali(device: str):
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device {device!r}: use gpu (training) or cpu (a CPU-only pipeline, for tests)")
    if device == "gpu" and not cuda_available():
        raise DaliUnavailable("data.loader: dali needs a CUDA GPU — fix: set data.loader=megatron on CPU")
    try:
        from nvidia.dali import fn, pipeline_def
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    except ImportError:
        raise DaliUnavailable(f"data.loader: dali needs NVIDIA DALI — fix: {INSTALL} (in the gpu extra:"
                              " pip install -e \".[gpu]\")") from None
    return fn, pipeline_def, DALIGenericIterator, LastBatchPolicy


class DaliTokenLoader:
    """Iterates dicts of tensors for the sampler's micro-batches, with every key of the dataset's samples in their
    order (GPTDataset: tokens, labels, [attention_mask,] loss_mask, position_ids; a BlendedDataset adds dataset_id
    first), as torch's DataLoader collates them: CUDA tensors with `device="gpu"`, CPU tensors with `device="cpu"`."""

    def __init__(self, dataset, batch_sampler, device: str = "gpu", device_id: int | None = None, prefetch: int = 2,
                 num_threads: int = 2):
        fn, pipeline_def, DALIGenericIterator, LastBatchPolicy = _import_dali(device)

        self.batches = list(batch_sampler)
        self.dataset = dataset
        if device == "gpu" and device_id is None:
            import torch  # not at the top: data.datasets imports this module, and preflight imports that torch-free
            device_id = torch.cuda.current_device()
        first = dataset[self.batches[0][0]] if self.batches else {}
        self.fields = tuple(first)                     # every key, in the sample's order, as torch's collate
        fields, state = self.fields, {"next": 0}

        def source(_info=None):
            if state["next"] >= len(self.batches):
                raise StopIteration
            indices = self.batches[state["next"]]
            state["next"] += 1
            samples = [self.dataset[i] for i in indices]
            return tuple([np.asarray(s[f]) for s in samples] for f in fields)

        @pipeline_def(batch_size=batch_sampler.micro_batch_size, num_threads=num_threads,
                      device_id=device_id if device == "gpu" else None, prefetch_queue_depth=prefetch)
        def token_pipeline():
            outputs = fn.external_source(source=source, num_outputs=len(fields), batch=True, device="cpu")
            return tuple(o.gpu() for o in outputs) if device == "gpu" else tuple(outputs)

        self._iterator = None
        if self.batches:
            pipe = token_pipeline()
            pipe.build()
            self._iterator = DALIGenericIterator([pipe], list(fields), last_batch_policy=LastBatchPolicy.PARTIAL,
                                                 auto_reset=False)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        if self._iterator is None:           # (not `or ()`: DALI's iterator has no length here, and tests false)
            return
        for batch in self._iterator:
            yield batch[0]

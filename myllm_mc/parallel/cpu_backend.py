"""Run megatron-core's real CUDA-assuming code on CPU over gloo: the only module that knows CUDA may be absent.

megatron-core 0.16.1 hard-codes CUDA in a handful of places (device placement, synchronisation, RNG state).
None of them is essential to the maths, so on a machine without CUDA we bridge each one and then run the
unmodified tensor / sequence / pipeline / context / data-parallel code with gloo. `install()` is idempotent and
a no-op when CUDA is present; `uninstall()` exists for the tests that prove each patch is still needed.

Every patch is listed in `PATCHES` with the megatron-core call sites that need it; tests/parallel/test_cpu_backend.py
asserts each call site still contains the CUDA call (so a megatron-core upgrade that removes it fails loudly)
and that the call works with the patch. See docs/cpu_backend.md for the traps.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from dataclasses import dataclass

import torch
from megatron.core.inference import communication_utils
from megatron.core.tensor_parallel import mappings
from megatron.core.tensor_parallel import random as mrandom
from megatron.core.transformer.moe import moe_utils
from megatron.core.transformer.moe.token_dispatcher import MoEAlltoAllTokenDispatcher
from torch.autograd.function import BackwardCFunction
from torch.overrides import TorchFunctionMode

from .cpu_allocator import pin_mmap_threshold


@dataclass(frozen=True)
class Patch:
    name: str
    why: str
    call_sites: tuple  # (megatron module, source snippet that makes the patch necessary)


PATCHES = (
    Patch("current_device",
          "torch.cuda.current_device() is passed as device= to factories; it must answer 'cpu' itself, because a"
          " TorchFunctionMode is not active inside autograd.Function.backward (sequence-parallel backward)",
          (("megatron.core.tensor_parallel.layers", "device=torch.cuda.current_device()"),
           ("megatron.core.tensor_parallel.mappings", "device=torch.cuda.current_device()"),
           ("megatron.core.models.common.embeddings.rotary_pos_embedding", "torch.cuda.current_device()"),
           ("megatron.core.pipeline_parallel.p2p_communication", "torch.cuda.current_device()"))),
    Patch("synchronize",
          "batched p2p and the checkpoint writer call torch.cuda.synchronize(), which raises without CUDA;"
          " CPU ops are synchronous, so a no-op is exact",
          (("megatron.core.pipeline_parallel.p2p_communication", "torch.cuda.synchronize()"),
           ("megatron.core.dist_checkpointing.strategies.filesystem_async", "torch.cuda.synchronize()"))),
    Patch("manual_seed",
          "model_parallel_cuda_manual_seed seeds through torch.cuda.manual_seed, which without CUDA is queued and"
          " never run: the seed would be silently ignored and initial weights would change run to run",
          (("megatron.core.tensor_parallel.random", "torch.cuda.manual_seed(data_parallel_seed)"),)),
    Patch("cuda_factories",
          "factory calls with device='cuda' (schedules' token counters, the default causal mask, grad-norm"
          " buffers) are mapped to the CPU by a TorchFunctionMode",
          (("megatron.core.pipeline_parallel.schedules", 'device="cuda"'),
           ("megatron.core.transformer.utils", 'device="cuda"'),
           ("megatron.core.utils", 'device="cuda"'))),
    Patch("tensor_cuda",
          "Tensor.cuda() becomes the identity (distributed optimizer on save, RoPE under context parallelism)",
          (("megatron.core.models.common.embeddings.rope_utils", ".cuda("),
           ("megatron.core.optimizer.distrib_optimizer", ".cuda()"))),
    Patch("pin_memory",
          "pin_memory=True needs an accelerator; RoPE's context-parallel slicing asks for it, so it is dropped",
          (("megatron.core.models.common.embeddings.rope_utils", "pin_memory=True"),)),
    Patch("tensor_type",
          "Tensor.type() reports torch.cuda.*Tensor for CPU tensors: the distributed optimizer and grad clipping"
          " accept only CUDA type names",
          (("megatron.core.optimizer.clip_grads", "param.grad.type() == 'torch.cuda.FloatTensor'"),
           ("megatron.core.optimizer.distrib_optimizer", "model_param.type() == 'torch.cuda.FloatTensor'"))),
    Patch("backward_mode",
          "the autograd engine runs a Python autograd.Function's backward with an empty TorchFunctionMode stack,"
          " so activation recompute (CheckpointFunction re-running attention in backward) would meet"
          " device='cuda' unbridged; torch's BackwardCFunction.apply re-enters the mode",
          (("megatron.core.tensor_parallel.random", "outputs = ctx.run_function(*detached_inputs)"),
           ("megatron.core.fusions.fused_softmax", "mask = get_default_causal_mask(sq)"),
           ("torch.autograd.function", "return user_fn(self, *args)"))),
    Patch("rng_tracker",
          "megatron's CudaRNGStatesTracker stores CUDA generator states; ours keeps CPU generator states, so"
          " tensor-parallel init, dropout forks and activation recompute reproduce their random streams",
          (("megatron.core.tensor_parallel.random", "orig_rng_state = torch.cuda.get_rng_state()"),
           ("megatron.core.tensor_parallel.random", "_set_cuda_rng_state(self.states_[name]"))),
    Patch("inference_is_cuda",
          "megatron's inference broadcasts (sampled tokens from the last pipeline stage) assert tensor.is_cuda"
          " before a torch.distributed.broadcast that gloo runs on CPU tensors; the check becomes 'not None'",
          (("megatron.core.inference.communication_utils", "assert tensor.is_cuda"),)),
    Patch("moe_te_gemm",
          "moe_utils imports te_general_gemm only inside `try: import transformer_engine` and never defines it"
          " otherwise, so the router's RouterGatingLinearFunction (forward and backward) raises NameError without"
          " TE; defined as None, megatron takes its own torch.mm branch",
          (("megatron.core.transformer.moe.moe_utils", "if te_general_gemm is not None and router_dtype"),
           ("megatron.core.transformer.moe.moe_utils", "if te_general_gemm is not None and ctx.router_dtype"))),
    Patch("moe_dtoh_stream",
          "the alltoall dispatcher creates a CUDA stream for its device-to-host copies when it is built, unless"
          " the class attribute is already set; a placeholder is set (the CPU needs no copy stream)",
          (("megatron.core.transformer.moe.token_dispatcher",
            "MoEAlltoAllTokenDispatcher.cuda_dtoh_stream = torch.cuda.Stream()"),)),
    Patch("moe_dtoh_sync",
          "the alltoall dispatcher's _maybe_dtoh_and_synchronize calls torch.cuda.current_stream() every forward"
          " and turns the split sizes into numpy arrays only for CUDA tensors; the CPU version does the numpy"
          " conversion itself (all_to_all_single rejects tensors there: 'incompatible function arguments')",
          (("megatron.core.transformer.moe.token_dispatcher",
            "on_side_stream = torch.cuda.current_stream() != self.cuda_dtoh_stream"),
           ("megatron.core.transformer.moe.token_dispatcher", "self.input_splits, as_numpy=True"),
           ("megatron.core.transformer.moe.moe_utils", "if torch.is_tensor(tensor) and tensor.is_cuda:"))),
    Patch("uneven_all_gather",
          "expert tensor parallelism all-gathers each rank's routed tokens, a different number per rank, with a"
          " list all_gather of uneven tensors (mappings._gather_along_first_dim): NCCL accepts that, gloo raises"
          " 'invalid tensor size'; the uneven case becomes an all_gather_into_tensor of rows padded to the"
          " largest split, then sliced (the backward's uneven reduce_scatter runs on gloo as it is)",
          (("megatron.core.tensor_parallel.mappings",
            "torch.distributed.all_gather(output_tensor_list, input_, group=group)"),)),
)


def _is_cuda(device) -> bool:
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, torch.device) and device.type == "cuda"


class _CudaOnCpuMode(TorchFunctionMode):
    """Device rewrites that megatron-core reaches through ordinary torch calls (patches cuda_factories,
    tensor_cuda, pin_memory, tensor_type)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda or func is torch.Tensor.pin_memory:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name if ".cuda." in name else name.replace("torch.", "torch.cuda.", 1)
        if _is_cuda(kwargs.get("device")):
            kwargs = dict(kwargs, device="cpu")
        if kwargs.get("pin_memory"):
            kwargs = {k: v for k, v in kwargs.items() if k != "pin_memory"}
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda(args[1]):
            args = (args[0], "cpu") + tuple(args[2:])
        return func(*args, **kwargs)


def _backward_with_mode(original):
    def apply(self, *args):
        if _mode is not None and torch._C._len_torch_function_stack() == 0:
            with _mode:
                return original(self, *args)
        return original(self, *args)
    return apply


def _cpu_rng_tracker_class():
    class CpuRNGStatesTracker(mrandom.CudaRNGStatesTracker):
        """megatron's tracker with the CPU default generator in place of the CUDA one (patch rng_tracker)."""

        def add(self, name, seed):
            if seed in self.seeds_:
                raise Exception(f"seed {seed} already exists")
            if name in self.states_:
                raise Exception(f"rng state {name} already exists")
            self.seeds_.add(seed)
            original = torch.get_rng_state()
            torch.manual_seed(seed)
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(original)

        @contextlib.contextmanager
        def fork(self, name=mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME):
            if name not in self.states_:
                raise Exception(f"rng state {name} is not added")
            original = torch.get_rng_state()
            torch.set_rng_state(self.states_[name])
            try:
                yield
            finally:
                self.states_[name] = torch.get_rng_state()
                torch.set_rng_state(original)

    return CpuRNGStatesTracker


def _cpu_is_cuda(tensor):
    assert tensor is not None


def _cpu_get_rng_state(device="cuda", clone=False, graph_safe=False):
    return torch.get_rng_state()


def _cpu_set_rng_state(new_state, device=-1, graph_safe=False):
    torch.set_rng_state(new_state)


class _NoStream:
    """Stands for the alltoall dispatcher's device-to-host CUDA stream (patch moe_dtoh_stream); never used, because
    patch moe_dtoh_sync replaces the only method that touches it."""


def _as_numpy(value):
    return value.numpy() if torch.is_tensor(value) else value


def _cpu_dtoh_and_synchronize(self, point, tokens_per_expert=None):
    """megatron's `_maybe_dtoh_and_synchronize` without streams (patch moe_dtoh_sync): at the copy point the split
    sizes become numpy arrays, as `maybe_move_tensor_to_cpu(as_numpy=True)` makes them from CUDA tensors; the
    all-to-all needs them as lists of ints. CPU ops are synchronous, so the sync point needs nothing."""
    if not self.drop_and_pad and point == self.cuda_dtoh_point:
        self.input_splits = _as_numpy(self.input_splits)
        self.output_splits = _as_numpy(self.output_splits)
        self.output_splits_tp = _as_numpy(self.output_splits_tp)
    return tokens_per_expert


def _gather_uneven_on_gloo(original):
    """megatron's `_gather_along_first_dim` with uneven `output_split_sizes` done as a padded even all-gather
    (patch uneven_all_gather); every other case is megatron's own."""
    def gather(input_, group, output_split_sizes=None, use_global_buffer=False):
        if output_split_sizes is None or group is None or group.size() == 1 or len(set(output_split_sizes)) == 1:
            return original(input_, group, output_split_sizes, use_global_buffer)
        width = max(output_split_sizes)
        padded = input_.new_zeros((width, *input_.shape[1:]))
        padded[:input_.shape[0]] = input_
        gathered = input_.new_empty((width * group.size(), *input_.shape[1:]))
        torch.distributed.all_gather_into_tensor(gathered, padded, group=group)
        return torch.cat([gathered[i * width:i * width + n] for i, n in enumerate(output_split_sizes)])
    return gather


_ABSENT = object()
_saved: dict = {}
_mode: _CudaOnCpuMode | None = None


def is_installed() -> bool:
    return _mode is not None


def install() -> bool:
    """Bridge megatron-core's CUDA assumptions to the CPU. Returns True when the bridge is (now) active,
    False when CUDA is present and nothing was done. Safe to call any number of times."""
    global _mode
    if torch.cuda.is_available():
        return False
    if _mode is not None:
        return True
    tracker_cls = _cpu_rng_tracker_class()
    _saved.update(backward_apply=BackwardCFunction.apply,
        current_device=torch.cuda.current_device, synchronize=torch.cuda.synchronize,
        manual_seed=torch.cuda.manual_seed, tracker_cls=mrandom.CudaRNGStatesTracker,
        get_state=mrandom._get_cuda_rng_state, set_state=mrandom._set_cuda_rng_state,
        tracker=mrandom._CUDA_RNG_STATE_TRACKER, tracker_init=mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED,
        is_cuda=communication_utils._is_cuda, dtoh_stream=MoEAlltoAllTokenDispatcher.cuda_dtoh_stream,
        dtoh_sync=MoEAlltoAllTokenDispatcher._maybe_dtoh_and_synchronize,
        te_gemm=moe_utils.__dict__.get("te_general_gemm", _ABSENT), gather=mappings._gather_along_first_dim)
    torch.cuda.current_device = lambda: "cpu"          # patch current_device
    torch.cuda.synchronize = lambda device=None: None  # patch synchronize
    torch.cuda.manual_seed = torch.manual_seed         # patch manual_seed (the CPU default generator)
    # patch rng_tracker: new trackers (initialize_rng_tracker reads the module global) are CPU trackers, and the
    # module-level state accessors that activation recompute (CheckpointFunction) uses read the CPU generator
    mrandom.CudaRNGStatesTracker = tracker_cls
    mrandom._get_cuda_rng_state = _cpu_get_rng_state
    mrandom._set_cuda_rng_state = _cpu_set_rng_state
    mrandom.initialize_rng_tracker(force_reset=True)
    BackwardCFunction.apply = _backward_with_mode(BackwardCFunction.apply)   # patch backward_mode
    communication_utils._is_cuda = _cpu_is_cuda                              # patch inference_is_cuda
    if _saved["te_gemm"] is _ABSENT:                                         # patch moe_te_gemm
        moe_utils.te_general_gemm = None
    if MoEAlltoAllTokenDispatcher.cuda_dtoh_stream is None:                  # patch moe_dtoh_stream
        MoEAlltoAllTokenDispatcher.cuda_dtoh_stream = _NoStream()
    MoEAlltoAllTokenDispatcher._maybe_dtoh_and_synchronize = _cpu_dtoh_and_synchronize   # patch moe_dtoh_sync
    mappings._gather_along_first_dim = _gather_uneven_on_gloo(_saved["gather"])          # patch uneven_all_gather
    _mode = _CudaOnCpuMode()
    _mode.__enter__()
    pin_mmap_threshold()    # not CUDA-related, but CPU-only: predictable resident memory (see cpu_allocator.py)
    return True


def uninstall() -> None:
    """Undo `install()` (for tests that show what fails without a patch)."""
    global _mode
    if _mode is None:
        return
    _mode.__exit__(None, None, None)
    _mode = None
    BackwardCFunction.apply = _saved["backward_apply"]
    torch.cuda.current_device = _saved["current_device"]
    torch.cuda.synchronize = _saved["synchronize"]
    torch.cuda.manual_seed = _saved["manual_seed"]
    mrandom.CudaRNGStatesTracker = _saved["tracker_cls"]
    mrandom._get_cuda_rng_state = _saved["get_state"]
    mrandom._set_cuda_rng_state = _saved["set_state"]
    mrandom._CUDA_RNG_STATE_TRACKER = _saved["tracker"]
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = _saved["tracker_init"]
    communication_utils._is_cuda = _saved["is_cuda"]
    if _saved["te_gemm"] is _ABSENT:
        moe_utils.__dict__.pop("te_general_gemm", None)
    MoEAlltoAllTokenDispatcher.cuda_dtoh_stream = _saved["dtoh_stream"]
    MoEAlltoAllTokenDispatcher._maybe_dtoh_and_synchronize = _saved["dtoh_sync"]
    mappings._gather_along_first_dim = _saved["gather"]


def missing_call_sites() -> list[str]:
    """Call sites in `PATCHES` that no longer contain their CUDA call: each one means megatron-core changed
    underneath and that patch (or its documentation) needs revisiting."""
    missing = []
    for patch in PATCHES:
        for module_name, snippet in patch.call_sites:
            source = inspect.getsource(importlib.import_module(module_name))
            if snippet not in source:
                missing.append(f"{patch.name}: {module_name} no longer contains {snippet!r}")
    return missing

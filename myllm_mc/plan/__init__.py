"""The planner: parameters, FLOPs, memory, tokens, time and KV cache as pure functions of a Config.

No torch or megatron-core import anywhere below this package, so `myllm plan` runs on any laptop in well under
a second, and train/ and the benchmark import the same formulas they are checked against.
"""

from .flops import attention_flops_per_token, flops_per_iteration, flops_per_token, six_nd
from .hardware import GPUS, GpuSpec, gpu_spec
from .memory import MemoryBreakdown, memory_per_gpu
from .params import ParamBreakdown, padded_vocab_size, parameter_breakdown

__all__ = ["ParamBreakdown", "parameter_breakdown", "padded_vocab_size", "flops_per_iteration", "flops_per_token",
           "attention_flops_per_token", "six_nd", "MemoryBreakdown", "memory_per_gpu", "GpuSpec", "GPUS", "gpu_spec"]

"""Datasheet figures of the GPUs the planner and the benchmark compare against.

Dense (not 2:4-sparse) tensor-core peaks, because MFU is defined against dense peak. Memory is what
`nvidia-smi` reports as total (GiB), before the CUDA context takes its share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from myllm_mc.config import ConfigError


@dataclass(frozen=True)
class GpuSpec:
    name: str
    label: str
    bf16_tflops: float              # dense BF16 tensor-core peak, TFLOP/s
    fp8_tflops: Optional[float]     # dense FP8 peak; None where the GPU has no FP8 tensor cores
    hbm_tb_per_s: float             # HBM bandwidth, TB/s (1e12 bytes/s)
    memory_gib: float               # HBM capacity as nvidia-smi reports it

    def peak_flops(self, precision: str = "bf16") -> float:
        """FLOP/s at the precision the run computes in (fp32 runs are counted against the BF16 peak: TF32/BF16)."""
        if precision == "fp8":
            if self.fp8_tflops is None:
                raise ConfigError(f"model.precision: fp8 but the {self.label} has no FP8 tensor cores"
                                  " — fix: --set model.precision=bf16 or plan.gpu=h100")
            return self.fp8_tflops * 1e12
        return self.bf16_tflops * 1e12

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * 2**30)


# NVIDIA datasheets: A100 (SXM 80GB), H100 (SXM5), H200 (SXM), B200 (HGX B200, per GPU).
GPUS = {
    "a100": GpuSpec("a100", "A100 80GB SXM", bf16_tflops=312.0, fp8_tflops=None, hbm_tb_per_s=2.039,
                    memory_gib=80.0),
    "h100": GpuSpec("h100", "H100 SXM", bf16_tflops=989.0, fp8_tflops=1979.0, hbm_tb_per_s=3.35,
                    memory_gib=79.6),
    "h200": GpuSpec("h200", "H200 SXM", bf16_tflops=989.0, fp8_tflops=1979.0, hbm_tb_per_s=4.8,
                    memory_gib=140.4),
    "b200": GpuSpec("b200", "B200", bf16_tflops=2250.0, fp8_tflops=4500.0, hbm_tb_per_s=8.0,
                    memory_gib=179.1),
}


def gpu_spec(name: str) -> GpuSpec:
    """Look a GPU up by name (case-insensitive, 'H100 SXM' or 'h100' both work)."""
    key = name.strip().lower().replace("-", " ").split(" ")[0] if name else ""
    if key not in GPUS:
        raise ConfigError(f"unknown GPU {name!r} — fix: use one of {', '.join(GPUS)} (e.g. --set plan.gpu=h100)")
    return GPUS[key]

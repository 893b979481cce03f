"""The numeric policy of a training run: mixed bfloat16 or float16 where the hardware computes in it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

# The `precision` knob's explicit values, as Keras policies: variables stay float32, layers compute
# in the narrower type.
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# /proc/cpuinfo flags of CPUs with bfloat16 arithmetic, which oneDNN uses for convolutions and
# matrix products: AVX512_BF16 (Intel Cooper Lake and later, AMD Zen 4 and later) and AMX-BF16
# (Intel Sapphire Rapids and later).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# NVIDIA compute capabilities: bfloat16 tensor cores from Ampere (8.0); float16 tensor cores from
# Volta (7.0); below that Keras' mixed precision guide expects no math speed-up. Under
# mixed_float16 Keras' `compile` wraps the optimizer in a LossScaleOptimizer (float16 gradients
# underflow without loss scaling); bfloat16 has float32's range and needs none.
GPU_BF16_CAPABILITY = (8, 0)
GPU_FP16_CAPABILITY = (7, 0)


@dataclass(frozen=True)
class Hardware:
    """What the precision choice depends on: the CPU's flags and each GPU's compute capability."""

    cpu_flags: frozenset[str]
    gpu_capabilities: tuple[tuple[int, int], ...] = ()

    @classmethod
    def detect(cls, cpuinfo: Path = Path("/proc/cpuinfo")) -> Hardware:
        flags: frozenset[str] = frozenset()
        try:
            for line in cpuinfo.read_text().splitlines():
                if line.startswith("flags"):
                    flags = frozenset(line.partition(":")[2].split())
                    break
        except OSError:  # not Linux: no flags known, so no bfloat16 claimed
            pass
        capabilities = tuple(
            tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
            for gpu in tf.config.list_physical_devices("GPU")
        )
        return cls(flags, capabilities)


@dataclass(frozen=True)
class Precision:
    policy: str
    reason: str


def choose_precision(requested: str, hardware: Hardware) -> Precision:
    """The Keras policy for the `precision` knob on this hardware. `auto`: mixed_bfloat16 where the
    hardware computes in bfloat16 (GPUs of compute capability >= 8.0, else CPUs with AVX512_BF16
    or AMX), mixed_float16 on GPUs of capability 7.x, float32 otherwise. With GPUs the model runs
    on them, so they decide, and the least capable one decides for all."""
    automatic = _automatic_precision(hardware)
    if requested == "auto":
        return Precision(automatic.policy, f"auto: {automatic.reason}")
    return Precision(
        PRECISION_POLICIES[requested],
        f"precision={requested} was asked for (auto would pick {automatic.policy}: {automatic.reason})",
    )


def _automatic_precision(hardware: Hardware) -> Precision:
    if hardware.gpu_capabilities:
        major, minor = weakest = min(hardware.gpu_capabilities)
        gpus = f"GPU compute capability {major}.{minor}"
        if weakest >= GPU_BF16_CAPABILITY:
            return Precision("mixed_bfloat16", f"{gpus} has bfloat16 tensor cores")
        if weakest >= GPU_FP16_CAPABILITY:
            return Precision("mixed_float16", f"{gpus} has float16 but no bfloat16 tensor cores")
        return Precision("float32", f"{gpus} has no tensor cores")
    found = [flag for flag in CPU_BF16_FLAGS if flag in hardware.cpu_flags]
    if found:
        return Precision("mixed_bfloat16", f"no GPU; the CPU has {', '.join(found)}")
    return Precision("float32", f"no GPU, and the CPU has none of {', '.join(CPU_BF16_FLAGS)}")

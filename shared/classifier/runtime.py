"""Where and how the model runs: device, compute precision and quantization, resolved from the settings and the
hardware (the defaults and why: docs/benchmarks.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.classifier.errors import ClassifierError
from shared.settings import Device, Dtype, Quantization, Settings

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs, resolved from the settings and the hardware."""

    device: str
    dtype: "torch.dtype"
    quantization: Quantization

    @classmethod
    def resolve(cls, settings: Settings) -> "Runtime":
        import torch

        device = settings.device.value
        if device == Device.auto.value:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ClassifierError("STANCESTREAM_DEVICE=cuda but torch sees no CUDA device")
        quant = settings.quantization
        if quant is Quantization.auto:
            # Measured on a 2-core AMX CPU: bf16 12-17 tweets/s, nf4 3.7 (bitsandbytes dequantizes on every
            # call on CPU). On CUDA, nf4 keeps the paper's 4-bit memory budget with fused kernels.
            quant = Quantization.nf4 if device == "cuda" else Quantization.none
        if settings.dtype is Dtype.fp32:
            dtype = torch.float32
        elif settings.dtype is Dtype.bf16 or device == "cuda" or _cpu_has_fast_bf16():
            dtype = torch.bfloat16
        else:
            dtype = torch.float32
        return cls(device, dtype, quant)


def _cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def nf4_config(compute_dtype):
    try:
        from transformers import BitsAndBytesConfig
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ClassifierError("quantization=nf4 needs bitsandbytes (pip install bitsandbytes)") from exc
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype)

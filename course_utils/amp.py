"""Mixed precision as a callback: `learn.to_fp16()`, `learn.to_bf16()`, `learn.to_fp32()`.

fp16 (CUDA, Apple MPS): the forward pass and loss run under `torch.autocast(float16)` while the
weights stay fp32 ("master weights"); the loss is multiplied by a dynamic scale so small gradients
do not underflow. A step whose gradients overflow (inf/NaN) is skipped and the scale halved;
after 2000 clean steps it doubles (torch.amp.GradScaler).
bf16 (recent GPUs, CPUs with native bf16): same autocast with bfloat16, whose exponent range
equals fp32's, so no loss scaling is needed.

Which one actually runs is decided per device by `choose_precision`, because lower precision is
only faster where the hardware has instructions for it: on a CPU without native bf16 (AVX2 laptops,
AMD before Zen 4) bf16 is emulated, and a resnet18 training step measured 22x slower than fp32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .callbacks import CALLBACK_ORDER, Callback

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

# ATen's kernel levels below AVX-512: no CPU at these levels has bf16 instructions, and torch reports them
# when the CPU lacks AVX-512 or when the user capped it (ATEN_CPU_CAPABILITY=avx2).
_NO_BF16_LEVELS = ("DEFAULT", "NO AVX", "AVX", "AVX2", "ZVECTOR", "VSX", "SVE256", "SVE")


def cpu_capability() -> dict:
    """What this CPU offers torch: its kernel level (AVX2 / AVX512 / ...), native bf16 and AMX, and threads."""
    def probe(name: str) -> bool:
        fn = getattr(torch.cpu, name, None)  # private probes; absent in some torch builds
        try:
            return bool(fn()) if fn is not None else False
        except RuntimeError:
            return False
    return {"isa": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_native_bf16(),
            "avx512_bf16": probe("_is_avx512_bf16_supported"), "amx": probe("_is_amx_tile_supported"),
            "threads": torch.get_num_threads()}


def cpu_has_native_bf16() -> bool:
    """True where this CPU computes bf16 in hardware (AMX or AVX512-BF16), by torch's own checks."""
    if torch.backends.cpu.get_cpu_capability().upper() in _NO_BF16_LEVELS:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _mps_autocast_available() -> bool:
    try:
        return bool(torch.amp.autocast_mode.is_autocast_available("mps"))
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class PrecisionChoice:
    """What `to_fp16()`/`to_bf16()` settled on: the autocast dtype (None = plain fp32) and why, in one line."""
    dtype: torch.dtype | None
    reason: str


def choose_precision(device: torch.device | str, wanted: torch.dtype, force: bool = False) -> PrecisionChoice:
    """The fastest mixed precision for `device` given what was `wanted` (float16 or bfloat16).

    CUDA: fp16 (with loss scaling); bf16 when asked and the GPU has it, else fp16. CPU: bf16 only where it
    is native, else fp32. MPS: fp16 where this torch can autocast on MPS, else fp32. `force=True` takes
    `wanted` (bf16 on a CPU) whatever the hardware, for experiments.
    """
    kind = torch.device(device).type
    name = {torch.float16: "to_fp16()", torch.bfloat16: "to_bf16()"}[wanted]
    if force:
        return PrecisionChoice(wanted, f"{name}: forced {_label(wanted)} on {kind}, whatever its speed there")
    if kind == "cuda":
        if wanted == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return PrecisionChoice(torch.float16, f"{name}: this GPU has no bf16, so training uses fp16 "
                                                  "with loss scaling")
        return PrecisionChoice(wanted, f"{name}: training in {_label(wanted)} mixed precision on the GPU")
    if kind == "mps":
        if _mps_autocast_available():
            return PrecisionChoice(torch.float16, f"{name}: training in fp16 mixed precision on Apple's GPU (MPS)")
        return PrecisionChoice(None, f"{name}: this torch cannot autocast on MPS, so training stays in fp32")
    if cpu_has_native_bf16():
        return PrecisionChoice(torch.bfloat16, f"{name}: this CPU has native bf16, so training uses bf16 "
                                               "mixed precision")
    return PrecisionChoice(None, f"{name}: this CPU has no native bf16, so training stays in fp32 "
                                 "(bf16 would be many times slower here)")


def _label(dtype: torch.dtype) -> str:
    return "fp16" if dtype == torch.float16 else "bf16"


class MixedPrecision(Callback):
    """Run forward and loss under autocast in `dtype`; with float16, scale the loss and skip overflowing steps."""
    order = CALLBACK_ORDER["MixedPrecision"]

    def __init__(self, dtype: torch.dtype = torch.float16):
        self.dtype = dtype
        self.scaler = None

    def before_fit(self):
        device = self.learn.data.device.type
        if self.dtype == torch.float16 and self.scaler is None:
            self.scaler = torch.amp.GradScaler(device)  # kept across fits, so the scale it learnt carries on
        self.learn.amp_dtype = self.dtype

    def before_backward(self):
        if self.scaler is not None:
            self.learn.loss_to_backward = self.scaler.scale(self.learn.loss_to_backward)  # after AR/TAR etc.

    def before_step(self):
        if self.scaler is None:
            return False
        scale = self.scaler.get_scale()
        self.scaler.step(self.learn.opt)  # skipped if the unscaled gradients hold inf/NaN
        self.scaler.update()
        self.learn.skipped_steps += int(self.scaler.get_scale() < scale)
        return True

    def after_fit(self):
        self.learn.amp_dtype = None

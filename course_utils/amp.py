"""Mixed precision as a callback: `learn.to_fp16()`, `learn.to_bf16()`, `learn.to_fp32()`.

fp16 (CUDA): the forward pass and loss run under `torch.autocast(float16)` while the weights
stay fp32 ("master weights"); the loss is multiplied by a dynamic scale so small gradients do
not underflow. A step whose gradients overflow (inf/NaN) is skipped and the scale halved;
after 2000 clean steps it doubles (torch.amp.GradScaler).
bf16 (CPU and recent GPUs): same autocast with bfloat16, whose exponent range equals fp32's,
so no loss scaling is needed.
"""
from __future__ import annotations

import torch

from .callbacks import Callback

__all__ = ["MixedPrecision"]


class MixedPrecision(Callback):
    """Run forward and loss under autocast in `dtype`; with float16, scale the loss and skip overflowing steps."""
    order = 50  # after callbacks that add to the loss (AR/TAR), so the scale applies to all of it

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

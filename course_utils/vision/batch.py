"""Batch augmentation: the random geometry and lighting of a whole batch in one go, on the batch's device.

Per item, the DataLoader only decodes (or reads the decode-once cache), resizes, cuts out the output
window and draws the random transform; what it returns is uint8 pixels plus each image's parameters:

    {"pixels": uint8 (3, h, w), "aug": float32 (3, 3), "light": float32 (2,)}

`augment_batch` then turns the stacked batch into float images with one `grid_sample` for all of
them (each image through its own 3x3 matrix) and the lighting as a few element-wise operations. On a
GPU this takes a fraction of a millisecond and keeps the CPU free for decoding; on a CPU it is one
large, multi-threaded operation instead of many small ones. Masks go through the same grids with
nearest-neighbour sampling; points are moved per item (a 3x3 product per point), by the same matrices.

`TransformPlan.apply_image` (transforms.py) is the one-image reference this must agree with, and
tests/test_batch_aug.py checks that it does for the same random draws.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .transforms import TransformPlan

__all__ = ["plan_params", "batch_grid", "resample_batch", "lighting_batch", "augment_batch"]


def plan_params(plan: TransformPlan) -> dict:
    """One item's random draw as tensors that collate into a batch: `aug` (3, 3) maps output to window
    coordinates; `light` is (brightness, contrast), NaN for a part that was not drawn."""
    nan = float("nan")
    light = [nan if plan.brightness is None else plan.brightness, nan if plan.contrast is None else plan.contrast]
    return {"aug": torch.from_numpy(plan.aug).float(), "light": torch.tensor(light, dtype=torch.float32)}


def batch_grid(aug: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
    """The sampling grid (B, h, w, 2) of a batch of matrices `aug` (B, 3, 3), or None if all are the identity."""
    eye = torch.eye(3, dtype=aug.dtype, device=aug.device)
    if bool((aug == eye).all()):
        return None
    h, w = size
    ys = (torch.arange(h, dtype=aug.dtype, device=aug.device) * 2 + 1) / h - 1  # pixel centres, align_corners=False
    xs = (torch.arange(w, dtype=aug.dtype, device=aug.device) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(1, h * w, 3)
    pts = base @ aug.transpose(1, 2)  # (B, h*w, 3): every output pixel's place in its input window
    return (pts[..., :2] / pts[..., 2:]).reshape(-1, h, w, 2)


def resample_batch(x: torch.Tensor, grid: torch.Tensor | None, mode: str = "bilinear") -> torch.Tensor:
    """Sample a float batch (B, C, h, w) at `grid` (mirrored at the edges); a None grid leaves it as it is."""
    if grid is None:
        return x
    return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode="reflection", align_corners=False)


def lighting_batch(x: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """Brightness and contrast per image in logit space (as the lesson's library did); `light` is (B, 2) of
    (brightness, contrast) with NaN where nothing was drawn. Images without lighting are returned untouched."""
    brightness, contrast = light[:, 0], light[:, 1]
    lit = ~(brightness.isnan() & contrast.isnan())
    if not bool(lit.any()):
        return x
    shape = (-1,) + (1,) * (x.dim() - 1)
    b = brightness.nan_to_num(0.5).clamp(1e-6, 1 - 1e-6)
    logit = torch.logit(x.clamp(1e-4, 1 - 1e-4)) * contrast.nan_to_num(1.0).view(shape)
    out = torch.sigmoid(logit + torch.log(b / (1 - b)).view(shape))
    return torch.where(lit.view(shape), out, x)


def augment_batch(pixels: torch.Tensor, aug: torch.Tensor, light: torch.Tensor):
    """uint8 windows (B, 3, h, w) -> augmented float images in [0, 1], with one resample for the whole batch.

    Returns (images, grid); pass the grid to `resample_batch(..., mode='nearest')` to move masks the same way."""
    grid = batch_grid(aug, tuple(pixels.shape[-2:]))
    x = resample_batch(pixels.float().div_(255), grid)
    return lighting_batch(x, light), grid

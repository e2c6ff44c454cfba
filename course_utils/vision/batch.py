"""Batch augmentation: the random geometry and lighting of a whole batch in one go, on the batch's device.

Per item, the DataLoader only decodes (or reads the decode-once cache), resizes, cuts out the output
window and draws the random transform; what it returns is uint8 pixels plus each image's parameters:

    {"pixels": uint8 (3, h, w), "aug": float32 (3, 3), "light": float32 (2,)}

`augment_batch` then turns the stacked batch into float images: the lighting as one table lookup per
pixel (a 256-entry curve per image), then one `grid_sample` for all of them (each image through its own
3x3 matrix). On a
GPU this takes a fraction of a millisecond and keeps the CPU free for decoding; on a CPU it is one
large, multi-threaded operation instead of many small ones. Masks go through the same grids with
nearest-neighbour sampling; points are moved per item (a 3x3 product per point), by the same matrices.

`TransformPlan.apply_image` (transforms.py) is the one-image reference this must agree with, and
tests/test_batch_aug.py checks that it does for the same random draws.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info

from .transforms import TransformPlan, lighting_curve, pixel_centres

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

LUT_CHUNK = 8  # images per table lookup on a CPU (see `to_float_lit`)
CPU_CHUNK = 16  # images per lookup and resample when a CPU augments a batch (see `augment_batch`)


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
    ys, xs = pixel_centres(h, aug.dtype, aug.device), pixel_centres(w, aug.dtype, aug.device)
    if bool((aug[:, 2] == eye[2]).all()):  # no perspective warp: each coordinate is a row term plus a column term
        grid = torch.empty(aug.shape[0], h, w, 2, dtype=aug.dtype, device=aug.device)
        for k in range(2):  # (64 x 128 px: 1.0 ms here vs 10.8 ms for F.affine_grid)
            torch.add((aug[:, k, 1:2] * ys + aug[:, k, 2:3])[:, :, None], (aug[:, k, 0:1] * xs)[:, None, :],
                      out=grid[..., k])
        return grid
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    m = aug[:, :, :, None, None]  # (B, 3, 3, 1, 1): each output pixel's place in its window, divided through
    pts = m[:, :, 0] * gx + m[:, :, 1] * gy + m[:, :, 2]  # (B, 3, h, w)
    return (pts[:, :2] / pts[:, 2:]).permute(0, 2, 3, 1)


def resample_batch(x: torch.Tensor, grid: torch.Tensor | None, mode: str = "bilinear") -> torch.Tensor:
    """Sample a float batch (B, C, h, w) at `grid` (mirrored at the edges); a None grid leaves it as it is."""
    if grid is None:
        return x
    return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode="reflection", align_corners=False)


def lighting_lut(light: torch.Tensor) -> torch.Tensor:
    """(B, 256) float32: what each uint8 value becomes in each image, lighting included (/255 when unlit)."""
    v = torch.arange(256, dtype=torch.float32, device=light.device) / 255
    brightness, contrast = light[:, 0:1], light[:, 1:2]
    lit = ~(brightness.isnan() & contrast.isnan())
    curve = lighting_curve(v, brightness.nan_to_num(0.5), contrast.nan_to_num(1.0))
    return torch.where(lit, curve, v)


def to_float_lit(pixels: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, h, w) -> float in [0, 1] with each image's lighting: one table lookup per pixel (lighting
    is per pixel, so it can come before the resample; a lookup is several times cheaper than logit/sigmoid)."""
    if bool(light.isnan().all()):
        return pixels.float().div_(255)
    lut = lighting_lut(light)
    flat = pixels.reshape(pixels.shape[0], -1)
    if pixels.device.type != "cpu":
        return torch.gather(lut, 1, flat.long()).view(pixels.shape)
    # on a CPU, a few images at a time: the int64 indices gather needs take 8 bytes per pixel, 32 MB for a batch
    # of 64 at 128 px, held at once, in every DataLoader worker; in chunks they take a small fraction of that
    out = torch.empty(flat.shape, dtype=lut.dtype)
    for i in range(0, len(flat), LUT_CHUNK):
        torch.gather(lut[i:i + LUT_CHUNK], 1, flat[i:i + LUT_CHUNK].long(), out=out[i:i + LUT_CHUNK])
    return out.view(pixels.shape)


def augment_batch(pixels: torch.Tensor, aug: torch.Tensor, light: torch.Tensor, chunk: int | None = None):
    """uint8 windows (B, 3, h, w) -> augmented float images in [0, 1]: lighting by table lookup, then one
    resample for the whole batch (on a CPU, `chunk` images at a time, into one output: the same pixels, with a
    fraction of the temporary memory; in a DataLoader worker the output is made in shared memory, where the
    batch has to go to reach the main process anyway).

    Returns (images, grid); pass the grid to `resample_batch(..., mode='nearest')` to move masks the same way."""
    grid = batch_grid(aug, tuple(pixels.shape[-2:]))
    if chunk is None or pixels.device.type != "cpu" or len(pixels) <= chunk:
        return resample_batch(to_float_lit(pixels, light), grid), grid
    out = torch.empty(pixels.shape, dtype=torch.float32)
    if get_worker_info() is not None:
        out.share_memory_()
    for i in range(0, len(pixels), chunk):
        part = slice(i, i + chunk)
        out[part] = resample_batch(to_float_lit(pixels[part], light[part]), None if grid is None else grid[part])
    return out, grid

"""Opening images as PIL and tensors, and drawing them."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["open_image", "load_rgb", "to_rgb", "image_to_tensor", "show_image", "image_extensions"]

image_extensions = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def open_image(path: str | Path) -> Image.Image:
    """Open an image lazily (only the header is read), with an error that names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image {path} does not exist.")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"Cannot read image {path}: {e}. Delete or replace the file.") from e


def load_rgb(img: Image.Image, min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode `img` to RGB; for JPEGs, decode straight at a reduced scale no smaller than `min_size` (w, h)."""
    if min_size is not None and img.format == "JPEG":
        img.draft("RGB", min_size)  # DCT-domain downscale: several times cheaper than decode-then-resize
    try:
        return to_rgb(img)
    except OSError as e:
        raise ValueError(f"Cannot decode image {getattr(img, 'filename', '')}: {e}. "
                         "The file is truncated or corrupt; delete or replace it.") from e


# Modes whose pixels are more than 8 bits: scaled down, since Pillow's own convert("RGB") would clip them.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB, so every image gives the model the same 3 channels.

    - Transparency (RGBA, LA, PA, a palette or grey image with a transparent colour) is composited on
      *white*, the background such images are drawn on in browsers and documents; the colour hidden
      under transparent pixels is arbitrary, so it is never used.
    - 16-bit images ('I;16', and 'I', which Pillow uses for 16-bit data) are scaled from 0..65535 to
      0..255 (not clipped, which would turn almost every pixel white). 'I' values outside 0..65535
      are scaled from the image's own min..max.
    - Float images ('F') are taken as 0..1 intensities when all their values lie in [0, 1], else
      scaled from the image's own min..max.
    - Everything else (grey 'L', '1', palette 'P', 'CMYK', 'YCbCr', ...) uses Pillow's conversion."""
    if img.mode in _WIDE_MODES:
        return _wide_to_rgb(img)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _wide_to_rgb(img: Image.Image) -> Image.Image:
    a = np.asarray(img).astype(np.float64)
    lo, hi = (0.0, 1.0) if img.mode == "F" else (0.0, 65535.0)
    if a.size and (a.min() < lo or a.max() > hi):
        lo, hi = float(a.min()), float(a.max())
    grey = np.rint((a - lo) / max(hi - lo, 1e-12) * 255).clip(0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)


def show_image(img: torch.Tensor, ax: plt.Axes | None = None, title: str | None = None, figsize=(3, 3)) -> plt.Axes:
    """Draw a (3, H, W) tensor in [0, 1] on `ax` (a new figure if None)."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.axis("off")
    if title:
        ax.set_title(wrap_title(title, _chars_across(ax, fontsize=9)), fontsize=9)
    return ax


def _chars_across(ax: plt.Axes, fontsize: float) -> int:
    """About how many characters of `fontsize` fit across `ax` (an average glyph is ~0.6 em wide)."""
    width_pt = ax.get_position().width * ax.figure.get_figwidth() * 72
    return max(8, int(width_pt / (0.6 * fontsize)))


def wrap_title(title: str, width: int) -> str:
    """Break each line of a title after a space, ';' or ',' so no line is longer than `width` characters:
    multi-label titles (`clear;primary;road;water`) would otherwise run into their neighbours' titles."""
    lines = []
    for line in title.split("\n"):
        current = ""
        for piece in re.split(r"(?<=[;, ])", line):
            if current and len(current + piece) > width:
                lines.append(current.rstrip())
                current = ""
            current += piece
        lines.append(current.rstrip())
    return "\n".join(lines)

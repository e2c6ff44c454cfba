"""Opening images as PIL and tensors, and drawing them."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["open_image", "image_to_tensor", "show_image", "image_extensions"]

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
        return img.convert("RGB")
    except OSError as e:
        raise ValueError(f"Cannot decode image {getattr(img, 'filename', '')}: {e}. "
                         "The file is truncated or corrupt; delete or replace it.") from e


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
        ax.set_title(title, fontsize=9)
    return ax

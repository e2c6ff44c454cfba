"""Opening images as PIL and tensors, and drawing them."""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import ExifTags, ImageOps, UnidentifiedImageError
from PIL import Image as PILImage

Image = PILImage  # this module's code means Pillow's `Image` module; the lesson's image class is `VisionImage`

__all__ = ["VisionImage", "open_image", "plot_multi", "show_image"]

image_extensions = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class VisionImage(PILImage.Image):
    """What `open_image` returns: a Pillow image (so `resize`, `convert`, `mode`, `np.asarray(img)` and
    `with open_image(f) as img` work as with Pillow) with the lesson video's extras: `img.data` (a (3, H, W)
    float tensor in [0, 1]), `img.shape` ((3, H, W)) and `img.show(...)`, which draws with matplotlib.

    `img.size` stays Pillow's (width, height); the lesson's library gave (height, width) there, which
    `img.shape[1:]` gives here."""

    @classmethod
    def from_pil(cls, pil: PILImage.Image) -> "VisionImage":
        """The same pixels as a VisionImage (shares the decoded data; `pil` should not be used afterwards)."""
        img = cls.__new__(cls)
        img.__dict__.update(pil.__dict__)
        return img

    @property
    def data(self) -> torch.Tensor:
        """The pixels as a (3, H, W) float tensor in [0, 1]."""
        return image_to_tensor(self.convert("RGB"))

    @property
    def shape(self) -> torch.Size:
        """(channels, height, width), as the lesson's `img.shape`."""
        return torch.Size((len(self.getbands()), self.height, self.width))

    def __repr__(self) -> str:
        return f"Image {tuple(self.shape)}"

    def show(self, ax: plt.Axes | None = None, figsize=(3, 3), title: str | None = None, y=None, **kwargs):
        """Draw the image with matplotlib (never Pillow's own viewer window); `y` (an ImageSegment or ImagePoints,
        e.g. `img.show(y=mask)` or `img.show(y=get_ip(img, ctr))`) is drawn over it. `kwargs` go to `y.show`
        (e.g. `alpha=` for a mask). Returns nothing, so Jupyter shows the figure once."""
        if ax is None:
            _, ax = plt.subplots(figsize=figsize)
        if y is None:
            show_image(self.data, ax=ax, title=title)
        elif hasattr(y, "show_on"):
            y.show_on(self.data, ax=ax, title=title, **kwargs)
        else:
            raise TypeError(f"img.show(y=...) draws an ImageSegment (open_mask) or ImagePoints over the image, not a "
                            f"{type(y).__name__}; for points in pixels use ImagePoints(FlowField(img.size, pts)).")


def open_image(path: str | Path) -> VisionImage:
    """An image file decoded as 8-bit RGB (see `to_rgb`) and upright (EXIF orientation applied), whatever its
    colour mode: real Planet JPEGs, for one, are CMYK, which a notebook would show in the wrong colours and
    numpy would see as 4 channels. It is a Pillow image with the lesson's `.show()`, `.data` and `.shape`
    (see `VisionImage`)."""
    with open_lazy(path) as img:
        rgb = load_rgb(img)
        rgb.load()  # the file closes on leaving the block; the pixels must be read before
    return VisionImage.from_pil(rgb)


def plot_multi(func, nrows: int = 1, ncols: int = 1, figsize: tuple | None = None) -> None:
    """A grid of `nrows` x `ncols` plots: `func(i, j, ax)` draws the one at row i, column j (the lesson's way
    to look at several augmentations of one image). Returns nothing, so Jupyter shows the figure once."""
    _, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    for i in range(nrows):
        for j in range(ncols):
            func(i, j, axes[i, j])


def open_lazy(path: str | Path) -> Image.Image:
    """Open an image file in its own colour mode with an error that names the file, upright: a photo stored
    sideways with an EXIF orientation tag (phones do this) is turned the way every viewer shows it. Other
    images are opened lazily (only the header is read): the data pipeline decodes them later with
    `load_rgb`, at a reduced scale where it can. Masks are opened this way too (their pixels are class ids)."""
    path = Path(path)
    img = _open(path)
    if _orientation(img) in _TURNS:
        try:
            upright = ImageOps.exif_transpose(img)  # decodes this image now (a turn needs the pixels)
        except OSError as e:
            raise ValueError(f"Cannot decode image {path}: {e}. The file is truncated or corrupt; delete or "
                             "replace it.") from e
        finally:
            img.close()
        upright.filename = str(path)  # errors and the decode cache name the file
        return upright
    return img


class CachedImage:
    """What the data pipeline gets instead of an opened file when the decode cache already holds the image's
    pixels (vision/cache.py): its name and its size as shown, which is all the transforms ask of the file.
    Opening a JPEG only to read its header took a quarter of a warm epoch's per-item time (0.12 of 0.47 ms for a
    256-px JPEG at 128 px, AVX2, no native bf16)."""

    def __init__(self, filename: str, height: int, width: int):
        self.filename, self.height, self.width = filename, height, width

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL gives it."""
        return self.width, self.height

    def open(self) -> Image.Image:
        """The file itself, opened lazily (when the cache no longer holds it after all)."""
        return open_lazy(self.filename)

    def close(self) -> None:
        """Nothing to close: the file was never opened."""

    def __repr__(self) -> str:
        return f"CachedImage({self.filename!r}, {self.width}x{self.height})"


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image as shown (EXIF orientation applied), from its header only."""
    with _open(Path(path)) as img:
        w, h = img.size
        return (h, w) if _orientation(img) in _SIDEWAYS else (w, h)


# EXIF orientations that need a turn or a flip, and those among them that swap width and height
_TURNS, _SIDEWAYS = (2, 3, 4, 5, 6, 7, 8), (5, 6, 7, 8)


def _orientation(img: Image.Image) -> int:
    if img.format == "PNG" and "exif" not in img.info:
        return 1  # an eXIf chunk after the pixels is rare, and reading it would decode the whole image
    try:
        return int(img.getexif().get(ExifTags.Base.Orientation, 1))
    except (OSError, ValueError, TypeError, SyntaxError):  # a damaged EXIF block: show the pixels as stored
        return 1


def _open(path: Path) -> Image.Image:
    """Image.open with errors that name the file and say what to do."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image file. Give the image files inside it.")
    if not path.is_file():
        raise FileNotFoundError(f"Image {path} does not exist.")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ValueError(_bomb_message(path, e)) from e
    except PermissionError as e:
        raise ValueError(f"Cannot read image {path}: permission denied. Make it readable "
                         f"(chmod a+r '{path}') or remove it.") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"Cannot read image {path}: {e}. Delete or replace the file.") from e
    for w in caught:
        if issubclass(w.category, Image.DecompressionBombWarning):
            warnings.warn(f"{path} is {img.width}x{img.height} pixels: decoding it takes "
                          f"{img.width * img.height * 3 / 2**20:.0f} MB of memory. Shrink it if that is a mistake.",
                          stacklevel=3)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return img


def _bomb_message(path: Path, e: Exception) -> str:
    pixels = str(e).partition("(")[2].partition(" pixels)")[0]  # "Image size (400000000 pixels) exceeds ..."
    shown = f"{int(pixels):,} pixels" if pixels.isdigit() else "too many pixels"
    return (f"Cannot read image {path}: it has {shown}, more than twice Pillow's safety limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,}), so it may be a decompression bomb (a small "
            "file that fills the memory when decoded). Shrink it or remove it; if you trust it, raise "
            "PIL.Image.MAX_IMAGE_PIXELS before loading.")


def load_rgb(img: Image.Image, min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode `img` to RGB; for JPEGs, decode straight at a reduced scale no smaller than `min_size` (w, h)."""
    if min_size is not None and img.format == "JPEG":
        img.draft("RGB", min_size)  # DCT-domain downscale: several times cheaper than decode-then-resize
    try:
        img.load()  # decode every pixel here, so a truncated file fails inside this error handling
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
      scaled from the image's own min..max. NaN or infinite values are an error naming the file: no
      scaling can make pixels of them.
    - Everything else (grey 'L', '1', palette 'P', 'CMYK', 'YCbCr', ...) uses Pillow's conversion."""
    if img.mode in _WIDE_MODES:
        return _wide_to_rgb(img)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _wide_to_rgb(img: Image.Image) -> Image.Image:
    a = np.asarray(img).astype(np.float64)
    bad = a.size - np.count_nonzero(np.isfinite(a))
    if bad:  # they would be cast to arbitrary bytes (0 on most machines), with only a numpy warning
        name = getattr(img, "filename", "") or "(not from a file)"
        raise ValueError(f"Image {name} has NaN or infinite pixel values ({bad:,} of {a.size:,} pixels); re-export it "
                         "as 8-bit, or replace the NaNs (numpy.nan_to_num) and save it again.")
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


def image_grid(n: int, cell: tuple[float, float], figsize: tuple | None = None, cols: int | None = None,
               fit_rows: bool = False, extra_height: float = 0.0, **kwargs) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure with a grid of axes for `n` pictures (show_batch's grid): `cols` columns (default ceil(sqrt(n))) and
    as many rows, or with `fit_rows` only the rows `n` fills. Each cell is `cell` = (width, height) inches, plus
    `extra_height` inches in all (room for a legend), unless `figsize` is given; `kwargs` go to `plt.subplots`.

    Returns (fig, the first n axes in reading order); the axes after them are hidden."""
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols) if fit_rows else cols
    w, h = cell
    fig, axes = plt.subplots(rows, cols, figsize=figsize or (w * cols, h * rows + extra_height), squeeze=False,
                             **kwargs)
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes[:n]


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

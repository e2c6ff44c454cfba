"""Segmentation (lesson 3's CamVid): `SegmentationItemList` and `SegmentationLabelList`, one class id per pixel,
with the masks' files, colours, loss and plots."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.patches import Patch
from PIL import Image

from ..data_block import ItemList, TargetList
from ..metrics import masked_accuracy
from .data import ImageList
from .image import image_grid, open_lazy, show_image
from .transforms import TransformPlan

__all__ = ["ImageSegment", "SegmentationItemList", "open_mask", "show_mask"]


# One fixed colour per class id, so a class looks the same in every plot (ids past 40 wrap around).
# tab20 and tab20b list each hue in 2 or 4 shades; taking one shade of every hue first gives neighbouring
# ids (CamVid's Building 4 and Car 5) different hues.
_TAB20, _TAB20B = np.array(plt.get_cmap("tab20").colors), np.array(plt.get_cmap("tab20b").colors)
MASK_COLOURS = np.concatenate([_TAB20[0::2], _TAB20[1::2], *(_TAB20B[k::4] for k in range(4))])


class ImageSegment(torch.Tensor):
    """What `open_mask` returns: a (1, H, W) long tensor of class ids (it works wherever a tensor does) with the
    lesson video's `mask.show(figsize=..., alpha=...)` and `mask.data` (the plain tensor)."""

    @property
    def data(self) -> torch.Tensor:
        """The class ids as a plain (1, H, W) long tensor."""
        return self.as_subclass(torch.Tensor)

    def show(self, ax: plt.Axes | None = None, figsize=(3, 3), alpha: float = 1.0, title: str | None = None,
             **kwargs) -> None:
        """Draw the mask in its class colours with matplotlib (`alpha` matters over an image:
        `img.show(y=mask, alpha=0.5)`). Returns nothing, so Jupyter shows the figure once."""
        show_mask(self.data, ax=ax, alpha=alpha, title=title, figsize=figsize)

    def show_on(self, img: torch.Tensor, ax: plt.Axes | None = None, alpha: float = 0.5, title: str | None = None,
                **kwargs) -> None:
        """Draw the mask over the (3, H, W) image `img` (what `img.show(y=mask)` calls)."""
        show_mask(self.data, img=img, ax=ax, alpha=alpha, title=title)


def open_mask(path: str | Path, n_classes: int | None = None) -> ImageSegment:
    """A mask file (one class id per pixel, e.g. CamVid's labels/<stem>_P.png) as a (1, H, W) long tensor
    (an `ImageSegment`, so `mask.show(alpha=1)` works as in the lesson)."""
    return _read_mask(path, n_classes).as_subclass(ImageSegment)


def _read_mask(path: str | Path, n_classes: int | None = None) -> torch.Tensor:
    """open_mask's plain tensor, for the data pipeline."""
    with open_lazy(path) as img:
        mask = torch.from_numpy(_class_ids(img, path).astype(np.int64))[None]
    if n_classes is not None and int(mask.max()) >= n_classes:
        raise ValueError(f"Mask {path} holds class id {int(mask.max())}, but there are only {n_classes} classes "
                         f"(ids 0..{n_classes - 1}). Check the `classes=` you labelled with (CamVid: codes.txt, "
                         "line i = id i; np.loadtxt skips blank lines and so shifts the ids after one; "
                         "read_codes keeps them).")
    return mask


def _class_ids(img: Image.Image, path) -> np.ndarray:
    """The (H, W) class ids of a single-channel mask image; a colour image is refused, saying how to convert it."""
    if img.mode in ("L", "P", "I", "I;16"):
        return np.asarray(img)
    raise ValueError(f"Mask {path} is a {img.mode} image; a mask must be single-channel, one class id per "
                     "pixel. A colour-coded label image has to be converted first: look each pixel's (r, g, b) up in "
                     "the dataset's colour table to get its class index, and save the indices as an 8-bit grey PNG "
                     "(Image.fromarray(ids.astype(np.uint8)).save(...)).")


def show_mask(mask: torch.Tensor, img: torch.Tensor | None = None, ax: plt.Axes | None = None, alpha: float = 0.5,
              title: str | None = None, figsize=(3, 3)) -> plt.Axes:
    """Draw a (1, H, W) mask of class ids in its class colours, over the (3, H, W) image `img` if given."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    if img is not None:
        show_image(img, ax=ax)
    colours = MASK_COLOURS[mask.reshape(mask.shape[-2:]).numpy() % len(MASK_COLOURS)]
    ax.imshow(colours, alpha=alpha if img is not None else 1.0, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _class_legend(fig: plt.Figure, masks: list[torch.Tensor], classes: list[str]) -> None:
    """A legend under the figure naming the classes present in `masks`, in their colours."""
    ids = sorted(set(torch.cat([m.flatten() for m in masks]).unique().tolist()))
    handles = [Patch(color=MASK_COLOURS[i % len(MASK_COLOURS)], label=classes[i]) for i in ids]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)


class PixelCrossEntropy(nn.Module):
    """Cross entropy over every pixel: logits (N, C, H, W) against masks (N, 1, H, W). Void pixels count too,
    as in the lesson (only the metric leaves them out)."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(input, target[:, 0] if target.dim() == input.dim() else target)


class SegmentationLabelList(TargetList):
    """The masks of a segmentation set (file paths, opened lazily): one class id per pixel."""

    kind = "segmentation"

    def default_metrics(self) -> list:
        """Pixel accuracy over every pixel (no void class)."""
        return [partial(masked_accuracy, void_code=-1)]

    def __init__(self, items, classes: list[str], path="."):
        super().__init__(items, path)
        self.classes = np.asarray(classes).tolist()  # plain str, not np.str_ (from np.loadtxt): export stores them

    @classmethod
    def from_labels(cls, labels, x, classes=None, **kwargs) -> "SegmentationLabelList":
        if classes is None:
            raise ValueError("Segmentation needs the class names, one per mask value: label_from_func(get_y_fn, "
                             "classes=codes), with CamVid's codes = np.loadtxt(path/'codes.txt', dtype=str).")
        _check_codes_file(classes, x)
        _check_masks_exist(labels, x)
        return cls([Path(o) for o in labels], classes, x.path)

    def labels_for_valid(self, labels, valid_x):
        _check_masks_exist(labels, valid_x)
        return self.new([Path(o) for o in labels]), None

    def get(self, i: int) -> torch.Tensor:
        return _read_mask(self.items[i], len(self.classes))

    def check_target(self, img, y: torch.Tensor, tfm_y: bool) -> None:
        """A mask must move with its image and be exactly its size."""
        if not tfm_y:
            raise ValueError("A segmentation mask must follow its image's transforms: call "
                             "`.transform(tfms, size=..., tfm_y=True)`.")
        if tuple(y.shape[-2:]) != (img.height, img.width):
            raise ValueError(f"The mask of {getattr(img, 'filename', 'an image')} is {y.shape[-1]}x{y.shape[-2]} "
                             f"pixels but the image is {img.width}x{img.height}; each mask must match its image.")

    def transform_target(self, y: torch.Tensor, plan: TransformPlan) -> torch.Tensor:
        """Resize the mask like its image (nearest neighbour: no invented class ids), then the same random geometry."""
        return plan.apply_mask(self._resized(y, plan))

    def prepare_target(self, y: torch.Tensor, plan: TransformPlan) -> torch.Tensor:
        """Resized and windowed like its image; the random geometry follows in `batch_target`."""
        return plan.window(self._resized(y, plan)).contiguous()

    def batch_target(self, y: torch.Tensor, resample) -> torch.Tensor:
        """A batch of masks (B, 1, h, w) through their images' grids, nearest neighbour."""
        return resample(y.float(), "nearest").round().to(y.dtype)

    @staticmethod
    def _resized(y: torch.Tensor, plan: TransformPlan) -> torch.Tensor:
        small = plan.resize(Image.fromarray(y[0].numpy().astype(np.int32)), Image.Resampling.NEAREST)  # any id count
        return torch.from_numpy(np.asarray(small).astype(np.int64))[None]

    def loss_func(self) -> nn.Module:
        return PixelCrossEntropy()

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        return out.softmax(dim=1)

    def decode(self, pred: torch.Tensor, **kwargs) -> torch.Tensor:
        """A (1, H, W) mask: the arg-max class of each pixel if `pred` holds scores, else `pred` itself."""
        return pred.argmax(dim=0, keepdim=True) if pred.is_floating_point() else pred

    def label_str(self, y: torch.Tensor) -> str:
        return ", ".join(self.classes[i] for i in self.decode(y).unique().tolist())

    def predict_result(self, probs: torch.Tensor, **kwargs):
        mask = self.decode(probs)
        return mask, mask, probs

    def state(self) -> dict:
        return {"classes": self.classes}

    def __repr__(self) -> str:
        return f"SegmentationLabelList ({len(self)} masks, {len(self.classes)} classes)"

    @property
    def c(self) -> int:
        return len(self.classes)


def read_codes(path: str | Path) -> list[str]:
    """The class names of a codes file (CamVid's codes.txt), one per line, line i naming class id i. A blank line
    among them is refused, naming it (`np.loadtxt` would skip it and shift every later id by one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No class names file {path}: write the class names one per line (line i = id i).")
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    blank = [i + 1 for i, line in enumerate(lines) if not line]
    if blank:
        raise ValueError(f"{path}, line {blank[0]}, is blank, but line i names class id i: give that id a name "
                         "(e.g. 'unused') or delete the line if no mask uses it (the later ids then shift down).")
    return lines


def _check_codes_file(classes, x: ItemList) -> None:
    """`classes` read from a codes.txt (next to the images, or one folder up) that has blank lines between its
    names were shifted (np.loadtxt skips blank lines): refuse, naming the blank line, rather than mislabel."""
    names = [str(c) for c in np.asarray(classes).reshape(-1).tolist()]
    for folder in (x.path, x.path.parent):
        f = folder / "codes.txt"
        try:
            lines = [line.strip() for line in f.read_text(encoding="utf-8-sig").splitlines()] if f.is_file() else []
        except (OSError, UnicodeDecodeError):
            continue
        if [line for line in lines if line] == names and names:
            read_codes(f)  # raises, naming the blank line, if there is one among the names


def _check_masks_exist(labels, x: ItemList) -> None:
    """Fail at labelling time, naming the image, if its mask file is missing."""
    for item, label in zip(x.items, labels):
        if not Path(label).is_file():
            raise FileNotFoundError(f"The mask of {item} should be {label}, which does not exist. "
                                    "Check the function that maps an image to its mask (get_y_fn).")


class SegmentationItemList(ImageList):
    """Images whose targets are masks (`label_from_func(get_y_fn, classes=codes)`); masks always move with
    their image, so `transform(tfms, size=...)` applies the same random transform to both."""

    tfm_y_default = True

    def _label_cls(self, labels, kwargs) -> type:
        return SegmentationLabelList

    def show_xys(self, xs: torch.Tensor, ys: torch.Tensor, y_list: TargetList, rows: int = 3,
                 figsize: tuple | None = None, alpha: float = 0.5, **kwargs) -> None:
        """A rows x rows grid of images with their masks drawn over them, and a legend of the classes shown."""
        n = min(len(xs), rows * rows)
        fig, axes = image_grid(n, (3, 2.6), figsize, fit_rows=True, extra_height=0.6, layout="constrained")
        for i, ax in enumerate(axes):
            show_mask(ys[i], xs[i], ax=ax, alpha=alpha)
        _class_legend(fig, list(ys[:n]), y_list.classes)

    def show_results(self, xs: torch.Tensor, ys: torch.Tensor, preds: torch.Tensor, y_list: TargetList,
                     rows: int = 3, figsize: tuple | None = None, alpha: float = 0.6, **kwargs) -> None:
        """One row per image: the input, the true mask and the predicted mask (over the image)."""
        n = min(len(xs), rows)
        masks = [y_list.decode(p) for p in preds[:n]]
        fig, axes = plt.subplots(n, 3, figsize=figsize or (9, 2.6 * n + 0.6), squeeze=False, layout="constrained")
        for i in range(n):
            show_image(xs[i], ax=axes[i, 0], title="input" if i == 0 else None)
            show_mask(ys[i], xs[i], ax=axes[i, 1], alpha=alpha, title="truth" if i == 0 else None)
            show_mask(masks[i], xs[i], ax=axes[i, 2], alpha=alpha, title="prediction" if i == 0 else None)
        _class_legend(fig, list(ys[:n]) + masks, y_list.classes)


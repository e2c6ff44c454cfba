"""Image items for the data block chain: `ImageList` and its batch display."""
from __future__ import annotations

import math
import numbers
import warnings
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.patches import Patch
from PIL import Image
from tqdm.auto import tqdm

from ..data_block import ItemList, TargetList
from ..metrics import mse
from .cache import image_cache
from .image import image_extensions, image_size, image_to_tensor, load_rgb, open_image, open_lazy, show_image
from .batch import augment_batch, plan_params, resample_batch
from .transforms import ImageTransforms, ResizeMethod, TransformPlan, sample_plan

__all__ = ["ImageList", "imagenet_stats", "PointsItemList", "PointsLabelList", "show_points",
           "SegmentationItemList", "SegmentationLabelList", "PixelCrossEntropy", "open_mask", "show_mask"]

imagenet_stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CHECK_BAR_FROM = 1000  # images: checking fewer takes a second or two, more get a progress bar


class ImageList(ItemList):
    """Image files; `get` opens one lazily, `apply_tfms` decodes, resizes and augments it."""

    extensions = image_extensions
    tfm_y_default = False  # whether targets follow the image when `transform` is not told (masks always do)

    def _check_items(self) -> None:
        missing = [p for p in self.items if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.items)} images listed in the table do not exist, e.g. {missing[0]}. "
                "Check the `folder=` and `suffix=` arguments (Planet: folder='train-jpg', suffix='.jpg').")
        self._warn_duplicates()

    def _warn_duplicates(self) -> None:
        """The same file twice in a table would let one image be both trained on and validated on."""
        rows = defaultdict(list)
        for i, p in enumerate(self.items):
            rows[str(p)].append(i + 2)  # CSV rows, the header being row 1
        dups = [(p, r) for p, r in rows.items() if len(r) > 1]
        if dups:
            shown = "; ".join(f"{self._short(p)} (rows {', '.join(map(str, r))})" for p, r in dups[:5])
            warnings.warn(f"The table names {len(dups)} image(s) more than once: {shown}"
                          f"{' ...' if len(dups) > 5 else ''}. Each copy counts as an item (the splits keep all "
                          "copies of a file on the same side); remove the extra rows, or merge their labels into "
                          "one row.", stacklevel=4)

    def check(self, strict: bool = False) -> list[tuple[Path, str]]:
        """Decode every image once and report *all* the unreadable ones together (not one per training run).

        Returns the (file, problem) pairs and prints a summary; with `strict`, raises instead."""
        problems = []
        for i, p in enumerate(self.items):
            why = self._item_problem(i)
            if why is not None:
                problems.append((Path(p), why.split(". ")[0]))
        if problems:
            lines = "\n".join(f"  {self._short(p)}: {why}" for p, why in problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            msg = (f"{len(problems)} of {len(self.items)} images cannot be read:\n{lines}{more}\n"
                   "Delete or replace them (or drop them from your CSV) before training.")
            if strict:
                raise ValueError(msg)
            print(msg)
        else:
            print(f"All {len(self.items)} images can be read.")
        return problems

    def check_for_training(self, y_list: TargetList | None = None, size=None, resize_method: str | None = None,
                           tfm_y: bool | None = None, cache: bool = False, **kwargs) -> list[str]:
        """Everything that would stop training, for every item, found before it starts: each file opened and
        fully decoded (filling the decode cache when `cache`), masks' modes, sizes and class ids and points'
        positions checked. Returns one message per bad item, each naming its file."""
        items = range(len(self.items))
        if len(self.items) >= CHECK_BAR_FROM:
            items = tqdm(items, desc=f"Checking {len(self.items)} images", unit="img", leave=False)
        found = (self._item_problem(i, y_list, size, resize_method, tfm_y, cache) for i in items)
        return [why for why in found if why is not None]

    def _item_problem(self, i: int, y_list: TargetList | None = None, size=None, resize_method: str | None = None,
                      tfm_y: bool | None = None, cache: bool = False) -> str | None:
        """What is wrong with item i (and its target), or None: the image decoded as training will decode it."""
        try:
            img = open_lazy(self.items[i])
            try:
                y = None if y_list is None else y_list.get(i)
                self._check_target(img, y, y_list, self.tfm_y_default if tfm_y is None else tfm_y)
                plan = sample_plan(None, (img.height, img.width), size, resize_method, train=False)
            except BaseException:
                img.close()
                raise
            self._decode(img, plan, size, resize_method, cache)  # closes the image
        except (ValueError, FileNotFoundError, OSError) as e:
            return str(e)
        return None

    def check_batchable(self, size=None, resize_method: str | None = None, **kwargs) -> None:
        """Images keep their own size without `size=` (or with resize_method='no'), and a batch needs one size:
        fail now, naming two files of different sizes, not in the DataLoader once training has started."""
        _check_size(size)
        if size is not None and resize_method != ResizeMethod.NO:
            return
        first = None
        for p in self.items:
            wh = image_size(p)  # the header only: no decoding
            if first is None:
                first = (p, wh)
            elif wh != first[1]:
                raise ValueError(
                    f"Images of different sizes cannot form a batch: {self._short(first[0])} is "
                    f"{first[1][0]}x{first[1][1]} but {self._short(p)} is {wh[0]}x{wh[1]} pixels (width x height). "
                    "Pass a size so every image is resized the same way, e.g. `.transform(tfms, size=224)`.")

    def get(self, i: int):
        """Image i decoded as RGB (what a student looks at; the pipeline opens it lazily with `raw`)."""
        return open_image(self.items[i])

    def raw(self, i: int):
        """Image i opened lazily in its file's own mode: `apply_tfms` decodes it at the scale it needs."""
        return open_lazy(self.items[i])

    def open_item(self, item):
        """A path or a PIL image, as `raw` returns it."""
        return item.copy() if isinstance(item, Image.Image) else open_lazy(item)  # never touch the caller's image

    @staticmethod
    def tfms_from_state(state: dict) -> ImageTransforms:
        return ImageTransforms(**state)

    def apply_tfms(self, img, y, y_list: TargetList, tfms: ImageTransforms | None, size=None,
                   resize_method: str | None = None, tfm_y: bool | None = None, train: bool = True,
                   cache: bool = False):
        """Decode, resize and (on training items) augment one image; with `tfm_y`, move its target the same way.

        With `cache`, the decoded, resized pixels are kept for later epochs and stages (see vision/cache.py).
        This is the one-item path (`ds[i]`, `predict`); DataLoaders split it into `prepare_tfms` per item and
        `batch_tfms` per batch, which give the same result."""
        plan, pixels, tfm_y = self._plan_and_pixels(img, y, y_list, tfms, size, resize_method, tfm_y, train, cache)
        x = plan.apply_image(pixels.float().div_(255))
        return x, (y_list.transform_target(y, plan) if tfm_y else y)

    def prepare_tfms(self, img, y, y_list: TargetList, tfms: ImageTransforms | None, size=None,
                     resize_method: str | None = None, tfm_y: bool | None = None, train: bool = True,
                     cache: bool = False):
        """The per-item half of the transforms when whole batches are augmented (vision/batch.py): decode (or
        read the cache), resize, cut out the window and draw the random transform, but resample nothing.

        Returns ({"pixels": uint8 (3, h, w), "aug": (3, 3), "light": (2,)}, target): the target is moved
        completely if it is points, and only resized and windowed if it is a mask (`batch_tfms` does the rest)."""
        plan, pixels, tfm_y = self._plan_and_pixels(img, y, y_list, tfms, size, resize_method, tfm_y, train, cache)
        x = {"pixels": plan.window(pixels).contiguous(), **plan_params(plan)}
        return x, (y_list.prepare_target(y, plan) if tfm_y else y)

    def _plan_and_pixels(self, img, y, y_list: TargetList, tfms, size, resize_method, tfm_y, train, cache):
        """What both paths start with: check the target, draw the plan, decode and resize (uint8 (3, h, w))."""
        tfm_y = self.tfm_y_default if tfm_y is None else tfm_y
        self._check_target(img, y, y_list, tfm_y)
        plan = self._draw_plan(img, y if tfm_y else None, y_list, tfms, size, resize_method, train)
        return plan, self._decode(img, plan, size, resize_method, cache), tfm_y

    def batch_tfms(self, x: dict, y: torch.Tensor, y_list: TargetList):
        """The per-batch half: every image's random geometry in one resample, lighting, and masks moved alike."""
        images, grid = augment_batch(x["pixels"], x["aug"], x["light"])
        return images, y_list.batch_target(y, lambda t, mode: resample_batch(t, grid, mode))

    def _decode(self, img, plan: TransformPlan, size, resize_method, cache: bool) -> torch.Tensor:
        """The image resized to `plan.resized`, as uint8 (3, h, w) (from the decode-once cache if `cache`)."""
        h, w = plan.resized
        try:
            def decode():
                return plan.resize(load_rgb(img, min_size=(w, h)))
            path = getattr(img, "filename", "")
            pixels = image_cache(self, size, resize_method).get(path, decode) if cache and path else decode()
            return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)
        finally:
            img.close()

    def _check_target(self, img, y, y_list: TargetList, tfm_y: bool) -> None:
        """Refuse a target that cannot follow the image (subclasses: points and masks)."""

    def _draw_plan(self, img, y, y_list: TargetList, tfms: ImageTransforms | None, size, resize_method: str | None,
                   train: bool) -> TransformPlan:
        """Draw one image's random transform; `y` is its target if it moves too (points redraw to stay in view)."""
        return sample_plan(tfms, (img.height, img.width), size, resize_method, train)

    def show_results(self, xs: torch.Tensor, ys: torch.Tensor, preds: torch.Tensor, y_list: TargetList,
                     rows: int = 3, figsize: tuple | None = None, **kwargs) -> None:
        """Images titled with their true label and the prediction (one row per image)."""
        n = min(len(xs), rows)
        fig, axes = plt.subplots(n, 1, figsize=figsize or (3.2, 3.2 * n), squeeze=False)
        for i in range(n):
            show_image(xs[i], ax=axes[i, 0], title=f"true: {y_list.label_str(ys[i])}\npred: {y_list.label_str(preds[i])}")
        fig.tight_layout()

    def show_xys(self, xs: torch.Tensor, ys: torch.Tensor, y_list: TargetList, rows: int = 3,
                 figsize: tuple | None = None, **kwargs) -> None:
        """A rows x rows grid of images titled with their labels."""
        n = min(len(xs), rows * rows)
        rows = math.ceil(math.sqrt(n))
        fig, axes = plt.subplots(rows, rows, figsize=figsize or (2.6 * rows, 2.6 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i < n:
                show_image(xs[i], ax=ax, title=y_list.label_str(ys[i]))
            else:
                ax.axis("off")
        fig.tight_layout()


def _check_size(size) -> None:
    sizes = size if isinstance(size, (tuple, list)) else [size]
    ok = size is None or (len(sizes) in (1, 2) and all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and s >= 1 for s in sizes))
    if not ok:
        raise ValueError(f"size must be a positive number of pixels, or a (height, width) pair of them; got {size!r}. "
                         "The lesson uses e.g. `.transform(tfms, size=128)`.")


# --- points (head pose) --------------------------------------------------------------------------
def points_to_unit(pts: torch.Tensor, size) -> torch.Tensor:
    """(row, col) pixels of an image of `size` (h, w) -> coordinates in [-1, 1], -1 and 1 being the image's
    outer edges (pixel centres sit at integers, so pixel 0 covers -0.5 to 0.5)."""
    hw = pts.new_tensor(tuple(size))
    return (2 * pts + 1) / hw - 1


def unit_to_points(unit: torch.Tensor, size) -> torch.Tensor:
    """The inverse of `points_to_unit`: [-1, 1] coordinates -> (row, col) pixels of an image of `size` (h, w)."""
    hw = unit.new_tensor(tuple(size))
    return ((unit + 1) * hw - 1) / 2


def _inside(unit: torch.Tensor) -> bool:
    return bool((unit.abs() <= 1).all())


def _to_source(pts: torch.Tensor, plan: TransformPlan) -> torch.Tensor:
    """(row, col) pixels of a plan's output -> (row, col) pixels of its source image (undoes `apply_points`)."""
    xy = points_to_unit(pts.double(), plan.out_size).flip(-1)  # the plan's matrices work on (x, y)
    q = torch.cat([xy, torch.ones_like(xy[:, :1])], dim=1) @ torch.from_numpy(plan.matrix()).T
    return unit_to_points((q[:, :2] / q[:, 2:]).flip(-1), plan.src_size).float()


def show_points(img, pts: torch.Tensor, ax: plt.Axes | None = None, title: str | None = None, color: str = "red",
                figsize=(4, 3)) -> plt.Axes:
    """Draw an image (a (3, H, W) tensor or a PIL image) with points given as (row, col) pixels marked on it."""
    if isinstance(img, Image.Image):
        img = image_to_tensor(img.convert("RGB"))
    ax = show_image(img, ax=ax, title=title, figsize=figsize)
    pts = torch.as_tensor(pts, dtype=torch.float32).reshape(-1, 2)
    ax.scatter(pts[:, 1], pts[:, 0], s=80, c=color, marker="+", linewidths=2)  # matplotlib wants (x, y) = (col, row)
    return ax


class PointsLabelList(TargetList):
    """Point targets: per item an (n, 2) float tensor of (row, col) pixels of the source image.

    `transform_target` moves the points with the image (the plan's own matrix) and scales them to
    [-1, 1]; the model has 2n outputs and the loss is the mean squared error over all coordinates.
    `decode` and `predict_result` turn [-1, 1] coordinates back into pixels."""

    is_regression = True

    @classmethod
    def from_labels(cls, labels, x, **kwargs) -> "PointsLabelList":
        pts = [_as_points(o, x, i) for i, o in enumerate(labels)]
        counts = sorted({len(p) for p in pts})
        if len(counts) > 1:
            first = next(i for i, p in enumerate(pts) if len(p) != len(pts[0]))
            raise ValueError(f"Every item needs the same number of points to form batches, but {x._short(x.items[0])} "
                             f"has {len(pts[0])} and {x._short(x.items[first])} has {len(pts[first])}.")
        return cls(pts, x.path)

    def get(self, i):
        return self.items[i].clone()

    def transform_target(self, y, plan: TransformPlan):
        return points_to_unit(plan.apply_points(y), plan.out_size)

    def loss_func(self):
        return mse  # flattened: predictions (bs, 2n) against targets (bs, n, 2)

    def decode(self, pred, size=None, **kwargs):
        """[-1, 1] coordinates (a target or a prediction) as (n, 2) (row, col) pixels of an image of `size` (h, w)."""
        if size is None:
            raise ValueError("Decoding points to pixels needs the image size: decode(pred, size=(h, w)).")
        return unit_to_points(pred.reshape(-1, 2).float(), size)

    def label_str(self, y, size=None):
        """The points as text: pixels when `size` is given, else the [-1, 1] coordinates."""
        pts = y.reshape(-1, 2) if size is None else self.decode(y, size)
        return "; ".join(f"({r:.3g}, {c:.3g})" for r, c in pts.tolist())

    def predict_result(self, probs, plan: TransformPlan | None = None, **kwargs):
        """(points in pixels of the original image, the same in the model's [-1, 1] coordinates, raw outputs)."""
        if plan is None:
            raise ValueError("Mapping a predicted point back onto the image needs its transform; use learn.predict.")
        unit = probs.reshape(-1, 2)
        return _to_source(unit_to_points(unit.float(), plan.out_size), plan), unit, probs

    def __repr__(self):
        return f"PointsLabelList ({len(self)} items, {len(self.items[0]) if self.items else 0} point(s) each)"

    @property
    def c(self) -> int:
        return 2 * (len(self.items[0]) if self.items else 1)


def _as_points(label, x: ItemList, i: int) -> torch.Tensor:
    """One label as an (n, 2) float tensor, with an error naming the item if it is not a set of (row, col) pairs."""
    try:
        pts = torch.as_tensor(label, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        pts = torch.empty(0)
    if pts.numel() == 0 or pts.numel() % 2 or not torch.isfinite(pts).all():
        raise ValueError(f"The label of {x._short(x.items[i])} is {label!r}; a points label must be one (row, col) "
                         "pair of pixel coordinates, or an (n, 2) array of them, with finite values.")
    return pts.reshape(-1, 2)


class PointsItemList(ImageList):
    """Images whose targets are points on them (lesson 3's head pose): `label_from_func` gives the points.

    Points are always (row, col) = (y, x) in pixels: labels, `get`, plots and `predict`'s answer are in pixels of
    the original image; the model sees them scaled to [-1, 1] in its input image. `transform(..., tfm_y=True)`
    is required, so that every flip, rotation, zoom, warp, crop or squish moves the points exactly as it
    moves their pixels.

    A point that a random transform would push out of the image: the lesson's library silently dropped it,
    which for head pose would leave an item without a target and a batch that cannot be stacked. Here the
    random transform is drawn again instead, up to `max_draws` times in all, and if no draw keeps every
    point inside (or a label lies outside its own image) loading the item fails with an error naming it."""

    max_draws = 100  # a draw costs microseconds; 100 make a spurious failure practically impossible

    def _label_cls(self, labels, kwargs):
        return PointsLabelList

    def _check_target(self, img, y, y_list: TargetList, tfm_y: bool) -> None:
        if y is None or not isinstance(y_list, PointsLabelList):
            return
        if not tfm_y:
            raise ValueError("Points must move with their image: pass tfm_y=True to transform(), e.g. "
                             ".transform(get_transforms(), tfm_y=True, size=(120, 160)).")
        if not _inside(points_to_unit(y, (img.height, img.width))):
            name = getattr(img, "filename", "") or "an image"
            raise ValueError(f"The point(s) {y.tolist()} of {name} lie outside its {img.height}x{img.width} image. "
                             "Check the labelling function: points are (row, col) = (y, x), in pixels.")

    def _draw_plan(self, img, y, y_list, tfms, size, resize_method, train) -> TransformPlan:
        if y is None or not isinstance(y_list, PointsLabelList):
            return super()._draw_plan(img, y, y_list, tfms, size, resize_method, train)
        name = getattr(img, "filename", "") or "an image"
        for _ in range(self.max_draws):
            plan = super()._draw_plan(img, y, y_list, tfms, size, resize_method, train)
            if _inside(points_to_unit(plan.apply_points(y), plan.out_size)):
                return plan
        raise ValueError(f"The point(s) {y.tolist()} of {name} fell outside the {plan.out_size} output in all "
                         f"{self.max_draws} draws of the transforms. A point this close to the edge is cut off by a "
                         "crop (an int size) or a strong zoom/rotation: use a tuple size such as (120, 160), which "
                         "squishes the whole image in, or smaller max_zoom / max_rotate / max_warp.")

    def item_context(self, item, tfms: ImageTransforms | None = None, size=None, resize_method: str | None = None,
                     **kwargs) -> dict:
        """The validation transform of a raw image, so `predict` can map its point back to the image's pixels."""
        img = self.open_item(item)
        try:
            return {"plan": sample_plan(tfms, (img.height, img.width), size, resize_method, train=False)}
        finally:
            img.close()

    def show_xys(self, xs, ys, y_list: TargetList, rows: int = 3, figsize: tuple | None = None, **kwargs) -> None:
        """A rows x rows grid of images with their target points marked."""
        n = min(len(xs), rows * rows)
        rows = math.ceil(math.sqrt(n))
        fig, axes = plt.subplots(rows, rows, figsize=figsize or (3 * rows, 2.4 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i < n:
                show_points(xs[i], y_list.decode(ys[i], xs[i].shape[-2:]), ax=ax)
            else:
                ax.axis("off")
        fig.tight_layout()

    def show_results(self, xs, ys, preds, y_list: TargetList, rows: int = 3, figsize: tuple | None = None,
                     **kwargs) -> None:
        """One row per image: the target points on the left, the predicted points on the right."""
        n = min(len(xs), rows)
        fig, axes = plt.subplots(n, 2, figsize=figsize or (6, 2.4 * n), squeeze=False)
        for i in range(n):
            size = xs[i].shape[-2:]
            show_points(xs[i], y_list.decode(ys[i], size), ax=axes[i, 0], title="target" if i == 0 else None)
            show_points(xs[i], y_list.decode(preds[i], size), ax=axes[i, 1], color="lime",
                        title="prediction" if i == 0 else None)
        fig.tight_layout()


# --- segmentation (lesson 3, CamVid) -------------------------------------------------------------
# One fixed colour per class id, so a class looks the same in every plot (ids past 40 wrap around).
# tab20 and tab20b list each hue in 2 or 4 shades; taking one shade of every hue first gives neighbouring
# ids (CamVid's Building 4 and Car 5) different hues.
_TAB20, _TAB20B = np.array(plt.get_cmap("tab20").colors), np.array(plt.get_cmap("tab20b").colors)
_MASK_COLOURS = np.concatenate([_TAB20[0::2], _TAB20[1::2], *(_TAB20B[k::4] for k in range(4))])


def open_mask(path: str | Path, n_classes: int | None = None) -> torch.Tensor:
    """A mask file (one class id per pixel, e.g. CamVid's labels/<stem>_P.png) as a (1, H, W) long tensor."""
    with open_lazy(path) as img:
        mask = torch.from_numpy(_class_ids(img, path).astype(np.int64))[None]
    if n_classes is not None and int(mask.max()) >= n_classes:
        raise ValueError(f"Mask {path} holds class id {int(mask.max())}, but there are only {n_classes} classes "
                         f"(ids 0..{n_classes - 1}). Check the `classes=` you labelled with (CamVid: codes.txt).")
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
    colours = _MASK_COLOURS[mask.reshape(mask.shape[-2:]).numpy() % len(_MASK_COLOURS)]
    ax.imshow(colours, alpha=alpha if img is not None else 1.0, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _class_legend(fig: plt.Figure, masks: list[torch.Tensor], classes: list[str]) -> None:
    """A legend under the figure naming the classes present in `masks`, in their colours."""
    ids = sorted(set(torch.cat([m.flatten() for m in masks]).unique().tolist()))
    handles = [Patch(color=_MASK_COLOURS[i % len(_MASK_COLOURS)], label=classes[i]) for i in ids]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)


class PixelCrossEntropy(nn.Module):
    """Cross entropy over every pixel: logits (N, C, H, W) against masks (N, 1, H, W). Void pixels count too,
    as in the lesson (only the metric leaves them out)."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(input, target[:, 0] if target.dim() == input.dim() else target)


class SegmentationLabelList(TargetList):
    """The masks of a segmentation set (file paths, opened lazily): one class id per pixel."""

    def __init__(self, items, classes: list[str], path="."):
        super().__init__(items, path)
        self.classes = np.asarray(classes).tolist()  # plain str, not np.str_ (from np.loadtxt): export stores them

    @classmethod
    def from_labels(cls, labels, x, classes=None, **kwargs) -> "SegmentationLabelList":
        if classes is None:
            raise ValueError("Segmentation needs the class names, one per mask value: label_from_func(get_y_fn, "
                             "classes=codes), with CamVid's codes = np.loadtxt(path/'codes.txt', dtype=str).")
        _check_masks_exist(labels, x)
        return cls([Path(o) for o in labels], classes, x.path)

    def labels_for_valid(self, labels, valid_x):
        _check_masks_exist(labels, valid_x)
        return self.new([Path(o) for o in labels]), None

    def get(self, i: int) -> torch.Tensor:
        return open_mask(self.items[i], len(self.classes))

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

    def _check_target(self, img, y, y_list: TargetList, tfm_y: bool) -> None:
        if isinstance(y_list, SegmentationLabelList) and y is not None:
            if not tfm_y:
                raise ValueError("A segmentation mask must follow its image's transforms: call "
                                 "`.transform(tfms, size=..., tfm_y=True)`.")
            if tuple(y.shape[-2:]) != (img.height, img.width):
                raise ValueError(f"The mask of {getattr(img, 'filename', 'an image')} is {y.shape[-1]}x{y.shape[-2]} "
                                 f"pixels but the image is {img.width}x{img.height}; each mask must match its image.")

    def show_xys(self, xs: torch.Tensor, ys: torch.Tensor, y_list: TargetList, rows: int = 3,
                 figsize: tuple | None = None, alpha: float = 0.5, **kwargs) -> None:
        """A rows x rows grid of images with their masks drawn over them, and a legend of the classes shown."""
        n = min(len(xs), rows * rows)
        cols = math.ceil(math.sqrt(n))
        nrows = math.ceil(n / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=figsize or (3 * cols, 2.6 * nrows + 0.6), squeeze=False,
                                 layout="constrained")
        for i, ax in enumerate(axes.flat):
            if i < n:
                show_mask(ys[i], xs[i], ax=ax, alpha=alpha)
            else:
                ax.axis("off")
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

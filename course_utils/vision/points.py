"""Points on images as targets (lesson 3's head pose): `PointsItemList` and `PointsLabelList`.

A point is (row, col) = (y, x) in pixels of its image; the model sees it in [-1, 1] coordinates of its input
(`points_to_unit`, the pixel-centre convention of vision/transforms.py)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from PIL import Image

from ..data_block import ItemList, TargetList, TransformConfig
from ..metrics import mse
from .data import ImageList
from .image import image_grid, image_to_tensor, show_image
from .transforms import ImageTransforms, TransformPlan, points_to_unit, sample_plan, unit_to_points

__all__ = ["FlowField", "ImagePoints", "PointsItemList", "show_points"]


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


class FlowField:
    """The lesson video's pair of an image size and points: `FlowField(img.size, pts)`, only to be wrapped in
    `ImagePoints`. `flow` is an (n, 2) tensor of points (or one point, (2,))."""

    def __init__(self, size, flow):
        self.size = tuple(int(s) for s in size)
        self.flow = torch.as_tensor(flow, dtype=torch.float32).reshape(-1, 2)


class ImagePoints:
    """Points on an image, as the video builds them for head pose: `ImagePoints(FlowField(img.size, pts),
    scale=True)`, then `img.show(y=points)`. Points are (row, col) pixels (`y_first=True`, the lesson's order);
    `scale=True` says they are in pixels (the lesson's case). `scale=False` means [-1, 1] coordinates of an image
    of `size` = (height, width) (the lesson's library's order; Pillow's `img.size` is (width, height), so use
    `img.shape[1:]` there). `points.data` is the (n, 2) tensor of (row, col) pixels."""

    def __init__(self, flow: FlowField, scale: bool = True, y_first: bool = True):
        pts = flow.flow if y_first else flow.flow.flip(-1)
        self.size = flow.size
        self.data = pts if scale else unit_to_points(pts, flow.size)

    def __repr__(self) -> str:
        return f"ImagePoints ({len(self.data)} points, (row, col) pixels: {self.data.tolist()})"

    def show(self, ax: plt.Axes | None = None, figsize=(4, 3), color: str = "red", **kwargs) -> None:
        """Mark the points on `ax` (a new figure if None). Returns nothing."""
        if ax is None:
            _, ax = plt.subplots(figsize=figsize)
        ax.scatter(self.data[:, 1], self.data[:, 0], s=80, c=color, marker="+", linewidths=2)

    def show_on(self, img: torch.Tensor, ax: plt.Axes | None = None, title: str | None = None, color: str = "red",
                **kwargs) -> None:
        """Draw the (3, H, W) image `img` with the points on it (what `img.show(y=points)` calls)."""
        show_points(img, self.data, ax=ax, title=title, color=color)


class PointsLabelList(TargetList):
    """Point targets: per item an (n, 2) float tensor of (row, col) pixels of the source image.

    `transform_target` moves the points with the image (the plan's own matrix) and scales them to
    [-1, 1]; the model has 2n outputs and the loss is the mean squared error over all coordinates.
    `decode` and `predict_result` turn [-1, 1] coordinates back into pixels."""

    is_regression = True
    kind = "points"  # default_metrics: none, the MSE loss is the lesson's measure

    max_draws = 100  # a draw costs microseconds; 100 make a spurious failure practically impossible

    def check_target(self, img, y, tfm_y: bool) -> None:
        """Points must move with their image, and start inside it."""
        if not tfm_y:
            raise ValueError("Points must move with their image: pass tfm_y=True to transform(), e.g. "
                             ".transform(get_transforms(), tfm_y=True, size=(120, 160)).")
        if not _inside(points_to_unit(y, (img.height, img.width))):
            name = getattr(img, "filename", "") or "an image"
            raise ValueError(f"The point(s) {y.tolist()} of {name} lie outside its {img.height}x{img.width} image. "
                             "Check the labelling function: points are (row, col) = (y, x), in pixels.")

    def draw_plan(self, y, draw, name: str) -> TransformPlan:
        """Draw again while a point would leave the output (up to `max_draws` draws), then fail naming the item."""
        for _ in range(self.max_draws):
            plan = draw()
            if _inside(points_to_unit(plan.apply_points(y), plan.out_size)):
                return plan
        raise ValueError(f"The point(s) {y.tolist()} of {name} fell outside the {plan.out_size} output in all "
                         f"{self.max_draws} draws of the transforms. A point this close to the edge is cut off by a "
                         "crop (an int size) or a strong zoom/rotation: use a tuple size such as (120, 160), which "
                         "squishes the whole image in, or smaller max_zoom / max_rotate / max_warp.")

    @classmethod
    def from_labels(cls, labels, x, **kwargs) -> "PointsLabelList":
        pts = [_as_points(o, x, i) for i, o in enumerate(labels)]
        counts = sorted({len(p) for p in pts})
        if len(counts) > 1:
            first = next(i for i, p in enumerate(pts) if len(p) != len(pts[0]))
            raise ValueError("Every item needs the same number of points to form batches, but "
                             f"{x.item_name(x.items[0])} "
                             f"has {len(pts[0])} and {x.item_name(x.items[first])} has {len(pts[first])}.")
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
        raise ValueError(f"The label of {x.item_name(x.items[i])} is {label!r}; a points label must be one (row, col) "
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

    def _label_cls(self, labels, kwargs):
        return PointsLabelList

    def item_context(self, item, tfms: ImageTransforms | None = None, cfg: TransformConfig = TransformConfig()
                     ) -> dict:
        """The validation transform of a raw image, so `predict` can map its point back to the image's pixels."""
        img = self.open_item(item)
        try:
            return {"plan": sample_plan(tfms, (img.height, img.width), cfg.size, cfg.resize_method, train=False)}
        finally:
            img.close()

    def show_xys(self, xs, ys, y_list: TargetList, rows: int = 3, figsize: tuple | None = None, **kwargs) -> None:
        """A rows x rows grid of images with their target points marked."""
        fig, axes = image_grid(min(len(xs), rows * rows), (3, 2.4), figsize)
        for i, ax in enumerate(axes):
            show_points(xs[i], y_list.decode(ys[i], xs[i].shape[-2:]), ax=ax)
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


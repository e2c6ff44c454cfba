"""Bounding boxes as a target type (lesson 3's COCO example of the data block API).

A box is **[top, left, bottom, right]** in pixels, measured at pixel *edges*: a box around the whole of an
image of height h and width w is [0, 0, h, w] (COCO's [x, y, width, height] is [y, x, y + height, x + width]).
Each item's target is (boxes (n, 4) float, class ids (n,) long), where id 0 is reserved for `background`,
the padding of `bb_pad_collate`.

Boxes move with their image through the same 3x3 matrix (`TransformPlan.matrix`) as its pixels: every corner
goes through it, and the moved box is the bounding box of the moved corners (a rotated box grows to hold its
rotated corners). Afterwards the boxes are in the model's coordinates, [-1, 1] from the output's top/left
edge to its bottom/right edge, like points; boxes pushed fully out of view are dropped, boxes partly out
are clipped to the edges.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.patches import Rectangle
from torch.utils.data import default_collate

from ..data_block import ItemList, TargetList
from .data import ImageList
from .image import image_grid, show_image
from .transforms import TransformPlan

__all__ = ["get_annotations", "ObjectItemList", "ObjectCategoryList", "bb_pad_collate", "move_boxes",
           "unit_to_pixels", "show_boxes", "BACKGROUND"]

BACKGROUND = "background"  # class id 0: what `bb_pad_collate` pads with


# --- reading COCO annotations ------------------------------------------------------------------
def get_annotations(json_path: str | Path, prefix: str = "") -> tuple[list[str], list[tuple[list, list]]]:
    """Read a COCO-format annotation file into (file names, [(boxes, class names)] per file), as in the lesson:
    `images, lbl_bbox = get_annotations(path/'train.json'); img2bbox = dict(zip(images, lbl_bbox))`.

    Boxes are [top, left, bottom, right] in pixels (COCO's [x, y, w, h] -> [y, x, y + h, x + w]); class names come
    from `categories` (their ids may have gaps). Every image is listed, those without annotations with no boxes.
    A malformed annotation raises an error naming its id, before anything is used."""
    path = Path(json_path)
    data = _read_json(path)
    names = {c["id"]: str(c["name"]) for c in _section(data, "categories", path)}
    images = {o["id"]: prefix + str(o["file_name"]) for o in _section(data, "images", path)}
    labels = {i: ([], []) for i in images}
    for a in _section(data, "annotations", path):
        image_id, box, name = _parse_annotation(a, images, names, path)
        labels[image_id][0].append(box)
        labels[image_id][1].append(name)
    return list(images.values()), [labels[i] for i in images]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"Annotation file {path} not found (COCO_TINY's is train.json, next to train/).")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); is the download complete?") from e


def _section(data: dict, key: str, path: Path) -> list:
    """One of COCO's lists, each entry checked for the keys we read."""
    need = {"images": ("id", "file_name"), "annotations": ("id", "image_id", "category_id", "bbox"),
            "categories": ("id", "name")}[key]
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{path} has no {key!r} list; a COCO annotation file has 'images', 'annotations' "
                         "and 'categories'.")
    for k, o in enumerate(data[key]):
        missing = [n for n in need if not isinstance(o, dict) or n not in o]
        if missing:
            raise ValueError(f"Entry {k} of {key!r} in {path} lacks {', '.join(missing)}: {str(o)[:120]}.")
    return data[key]


def _parse_annotation(a: dict, images: dict, names: dict, path: Path) -> tuple[object, list[float], str]:
    """(image id, [top, left, bottom, right], class name) of one COCO annotation, or an error naming its id."""
    where = f"Annotation {a['id']} in {path}"
    if a["image_id"] not in images:
        raise ValueError(f"{where} refers to image_id {a['image_id']}, which is not in 'images'.")
    if a["category_id"] not in names:
        raise ValueError(f"{where} has category_id {a['category_id']}, which is not in 'categories' "
                         f"(known ids: {sorted(names)}).")
    bbox = a["bbox"]
    ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    if not ok or bbox[2] <= 0 or bbox[3] <= 0:
        raise ValueError(f"{where} has bbox {bbox!r}; COCO boxes are [x, y, width, height]: four finite numbers, "
                         "width and height above 0. Fix or remove that annotation.")
    x, y, w, h = (float(v) for v in bbox)
    return a["image_id"], [y, x, y + h, x + w], names[a["category_id"]]


# --- moving boxes with their image --------------------------------------------------------------
def move_boxes(boxes: torch.Tensor, plan: TransformPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (n, 4) [top, left, bottom, right] in pixels of the plan's source image -> the same boxes in the
    output's [-1, 1] coordinates, and a mask of those kept.

    Each box's four corners go through the inverse of `plan.matrix()` (which maps output to source); the new box
    is their bounding box, clipped to [-1, 1]; a box left with no area was pushed out of view and is dropped."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).float(), torch.zeros(0, dtype=torch.bool)
    sh, sw = plan.src_size
    b = boxes.double()
    t, l, bo, r = 2 * b[:, 0] / sh - 1, 2 * b[:, 1] / sw - 1, 2 * b[:, 2] / sh - 1, 2 * b[:, 3] / sw - 1
    xs, ys = torch.stack([l, r, l, r], dim=1), torch.stack([t, t, bo, bo], dim=1)  # (n, 4) corners, x right y down
    corners = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ torch.from_numpy(np.linalg.inv(plan.matrix())).T
    xs, ys = corners[..., 0] / corners[..., 2], corners[..., 1] / corners[..., 2]
    moved = torch.stack([ys.amin(1), xs.amin(1), ys.amax(1), xs.amax(1)], dim=1).clamp(-1, 1)
    keep = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
    return moved[keep].float(), keep


def unit_to_pixels(boxes: torch.Tensor, size) -> torch.Tensor:
    """[-1, 1] boxes -> [top, left, bottom, right] pixel edges of an image of `size` (h, w)."""
    h, w = (float(v) for v in size)
    return (boxes.float() + 1) / 2 * boxes.new_tensor([h, w, h, w], dtype=torch.float32)


def bb_pad_collate(samples, pad_idx: int = 0):
    """Collate items with different numbers of boxes: each item's boxes and class ids are padded at the end
    to the batch's largest count, with zero boxes of class `pad_idx` (background).

    Returns (x, (boxes (B, m, 4), class ids (B, m))); x is collated as usual (images, or the dicts of the
    batch-augmentation path)."""
    xs = default_collate([s[0] for s in samples])
    m = max(len(ids) for _, (_, ids) in samples)
    boxes = torch.zeros(len(samples), m, 4)
    ids = torch.full((len(samples), m), pad_idx, dtype=torch.long)
    for k, (_, (b, c)) in enumerate(samples):
        boxes[k, :len(c)], ids[k, :len(c)] = b, c
    return xs, (boxes, ids)


# --- the target type ------------------------------------------------------------------------------
class ObjectCategoryList(TargetList):
    """Box targets: per item (boxes (n, 4) in source pixels, class ids (n,)); `classes[0]` is `background`.

    `transform_target` moves the boxes with their image (see `move_boxes`) and drops the classes of dropped
    boxes. Items have different numbers of boxes, so batches need `bb_pad_collate` (the default for this type)."""

    def __init__(self, items, classes, path="."):
        super().__init__(items, path)
        self.classes = list(classes)

    @classmethod
    def from_labels(cls, labels, x: ItemList, classes=None, **kwargs) -> "ObjectCategoryList":
        parsed = [_as_boxes(o, x, i) for i, o in enumerate(labels)]
        if classes is None:
            classes = [BACKGROUND] + sorted({n for _, names in parsed for n in names})
        elif not classes or classes[0] != BACKGROUND:
            classes = [BACKGROUND] + [c for c in classes if c != BACKGROUND]
        idx = {c: i for i, c in enumerate(classes)}
        for i, (_, names) in enumerate(parsed):
            unknown = [n for n in names if n not in idx]
            if unknown:
                raise ValueError(f"The boxes of {x.item_name(x.items[i])} have classes {unknown} that are not in the "
                                 f"classes you gave ({classes}). Add them to `classes` or fix the labels.")
        return cls([(b, torch.tensor([idx[n] for n in names], dtype=torch.long)) for b, names in parsed],
                   classes, x.path)

    def labels_for_valid(self, labels, valid_x):
        """Validation boxes with the training classes; a box of a class training never saw is left out (warned)."""
        idx = {c: i for i, c in enumerate(self.classes)}
        items, unknown = [], set()
        for i, o in enumerate(labels):
            b, names = _as_boxes(o, valid_x, i)
            keep = [k for k, n in enumerate(names) if n in idx]
            unknown.update(n for n in names if n not in idx)
            items.append((b[keep], torch.tensor([idx[names[k]] for k in keep], dtype=torch.long)))
        if unknown:
            warnings.warn(f"Validation boxes of classes the training set lacks were left out: {sorted(unknown)}.")
        return self.new(items), None

    def get(self, i):
        boxes, ids = self.items[i]
        return boxes.clone(), ids.clone()

    def check_target(self, img, y, tfm_y: bool) -> None:
        """Boxes must move with their image."""
        if not tfm_y:
            raise ValueError("Bounding boxes must move with their image: pass tfm_y=True to transform(), e.g. "
                             ".transform(get_transforms(), tfm_y=True).")

    def transform_target(self, y, plan: TransformPlan):
        """Move the boxes with the image (`move_boxes`): [-1, 1] coordinates, boxes out of view dropped."""
        boxes, ids = y
        moved, keep = move_boxes(boxes, plan)
        return moved, ids[keep]

    collate_fn = staticmethod(bb_pad_collate)  # what `databunch` collates with unless told otherwise

    def loss_func(self):
        raise NotImplementedError("Lesson 3 only shows bounding-box data; training a detector (a model that "
                                  "predicts boxes, such as RetinaNet) needs its own loss and model, not provided here.")

    def label_str(self, y) -> str:
        _, ids = y
        return ", ".join(self.classes[i] for i in ids.tolist() if i != 0)

    def state(self):
        return {"classes": self.classes}

    def __repr__(self):
        n = sum(len(b) for b, _ in self.items)
        return f"ObjectCategoryList ({len(self)} items, {n} boxes, {len(self.classes)} classes incl. background)"

    @property
    def c(self) -> int:
        return len(self.classes)


def _as_boxes(label, x: ItemList, i: int) -> tuple[torch.Tensor, list[str]]:
    """One label (boxes, class names) checked: as ((n, 4) float tensor, names), or an error naming the item."""
    what = f"The label of {x.item_name(x.items[i])}"
    if not (isinstance(label, (list, tuple)) and len(label) == 2):
        raise ValueError(f"{what} is {str(label)[:80]}; a bounding-box label is a pair (boxes, class names), "
                         "e.g. ([[10, 20, 50, 60]], ['tv']) with boxes as [top, left, bottom, right].")
    boxes, names = label
    try:
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), dtype=torch.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{what} has boxes {str(boxes)[:80]}; each box must be 4 numbers "
                         "[top, left, bottom, right].") from None
    names = [str(n) for n in names]
    if len(names) != len(b):
        raise ValueError(f"{what} has {len(b)} boxes but {len(names)} class names; give one class per box.")
    bad = ~torch.isfinite(b).all(1) | (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bad.any():
        raise ValueError(f"{what} has the box {b[bad][0].tolist()}; a box is [top, left, bottom, right] with "
                         "bottom > top and right > left (COCO's [x, y, w, h] becomes [y, x, y + h, x + w]).")
    return b, names


# --- the item list ----------------------------------------------------------------------------------
class ObjectItemList(ImageList):
    """Images whose targets are bounding boxes with classes (lesson 3's COCO example):
    `label_from_func` gives each image (boxes as [top, left, bottom, right] pixels, class names).

    Boxes always move with their image; `databunch` pads each batch's boxes with `bb_pad_collate`."""

    tfm_y_default = True

    def _label_cls(self, labels, kwargs) -> type:
        return ObjectCategoryList

    def show_xys(self, xs, ys, y_list: TargetList, rows: int = 3, figsize: tuple | None = None, **kwargs) -> None:
        """A rows x rows grid of images with their boxes drawn and named (padding boxes are not drawn)."""
        boxes, ids = ys
        fig, axes = image_grid(min(len(xs), rows * rows), (3, 3), figsize)
        for i, ax in enumerate(axes):
            real = ids[i] != 0
            names = [y_list.classes[k] for k in ids[i][real].tolist()]
            show_boxes(xs[i], unit_to_pixels(boxes[i][real], xs[i].shape[-2:]), names, ax=ax, classes=y_list.classes)
        fig.tight_layout()


_BOX_COLOURS = plt.get_cmap("tab10").colors


def show_boxes(img: torch.Tensor, boxes: torch.Tensor, names: list[str], ax: plt.Axes | None = None,
               title: str | None = None, classes: list[str] | None = None, figsize=(3, 3)) -> plt.Axes:
    """Draw a (3, H, W) image with boxes ([top, left, bottom, right] pixel edges) outlined and named, one
    colour per class (its place in `classes`, so a class keeps its colour from image to image)."""
    ax = show_image(img, ax=ax, title=title, figsize=figsize)
    order = classes or sorted(set(names))
    palette = {n: _BOX_COLOURS[order.index(n) % len(_BOX_COLOURS)] for n in set(names)}
    outline = [patheffects.Stroke(linewidth=3, foreground="black"), patheffects.Normal()]
    for (t, l, b, r), name in zip(boxes.tolist(), names):
        # pixel edge p is at p - 0.5 in imshow's coordinates (pixel centres sit on integers)
        rect = ax.add_patch(Rectangle((l - 0.5, t - 0.5), r - l, b - t, fill=False, lw=1.5, color=palette[name]))
        rect.set_path_effects(outline)
        ax.text(l - 0.5, t - 0.5, name, va="bottom", fontsize=7, color=palette[name], path_effects=outline)
    return ax

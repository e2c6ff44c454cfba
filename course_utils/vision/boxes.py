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
import unicodedata
import warnings
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath

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

__all__ = ["get_annotations", "ObjectItemList", "bb_pad_collate", "show_boxes"]

BACKGROUND = "background"  # class id 0: what `bb_pad_collate` pads with


# --- reading COCO annotations ------------------------------------------------------------------
def get_annotations(json_path: str | Path, prefix: str = "") -> tuple[list[str], list[tuple[list, list]]]:
    """Read a COCO-format annotation file into (file names, [(boxes, class names)] per file), as in the lesson:
    `images, lbl_bbox = get_annotations(path/'train.json'); img2bbox = dict(zip(images, lbl_bbox))`.

    Boxes are [top, left, bottom, right] in pixels (COCO's [x, y, w, h] -> [y, x, y + h, x + w]); class names come
    from `categories` (their ids may have gaps). Every image is listed, those without annotations with no boxes.
    Ids must be unique, file names relative paths inside the image folder, and a box must lie (at least partly)
    inside its image when the image's `width` and `height` are given. A malformed entry raises an error naming
    it (by its id, or by its place in the list when it has none), before anything is used."""
    path = Path(json_path)
    data = _read_json(path)
    names = {}
    for k, c in enumerate(_section(data, "categories", path)):
        cid = _unique_id(c["id"], k, "categories", names, path, lambda v: f"the category {names[v]!r}")
        names[cid] = _category_name(c, k, path)
    images, sizes = {}, {}
    for k, o in enumerate(_section(data, "images", path)):
        iid = _unique_id(o["id"], k, "images", images, path, lambda v: f"the image {images[v]!r}")
        images[iid] = prefix + _file_name(o, k, path)
        sizes[iid] = _image_size(o)
    labels = {i: ([], []) for i in images}
    seen = {}
    for k, a in enumerate(_section(data, "annotations", path)):
        if "id" in a:
            _unique_id(a["id"], k, "annotations", seen, path, lambda v: f"entry {seen[v]}")
            seen[a["id"]] = k
        image_id, box, name = _parse_annotation(a, k, images, names, sizes, path)
        labels[image_id][0].append(box)
        labels[image_id][1].append(name)
    return list(images.values()), [labels[i] for i in images]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"Annotation file {path} not found (COCO_TINY's is train.json, next to train/).")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a byte order mark (Windows editors write one) is not part of the JSON
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path} is not UTF-8 text (line {line}: byte 0x{raw[e.start]:02x}); JSON must be UTF-8. "
                         "Re-save it as UTF-8 (iconv -f latin1 -t utf-8 in.json > out.json).") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); is the download complete?") from e
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to read (a COCO file is a few levels deep): "
                         "it is not a COCO annotation file, or it is damaged.") from None


def _section(data: dict, key: str, path: Path) -> list:
    """One of COCO's lists, each entry checked for the keys we read."""
    need = {"images": ("id", "file_name"), "annotations": ("image_id", "category_id", "bbox"),
            "categories": ("id", "name")}[key]
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{path} has no {key!r} list; a COCO annotation file has 'images', 'annotations' "
                         "and 'categories'.")
    for k, o in enumerate(data[key]):
        missing = [n for n in need if not isinstance(o, dict) or n not in o]
        if missing:
            raise ValueError(f"Entry {k} of {key!r} in {path} lacks {', '.join(missing)}: {str(o)[:120]}.")
    return data[key]


def _is_id(v) -> bool:
    """COCO ids are numbers (or, in some exports, text): anything else cannot name an entry."""
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _unique_id(v, k: int, key: str, seen: dict, path: Path, owner: Callable[[object], str]) -> object:
    """The id `v` of entry k of `key`, refused (naming the entry) if it is not a number or text, or if it repeats
    one in `seen` (`owner(v)` names the entry that has it)."""
    if not _is_id(v):
        raise ValueError(f"Entry {k} of {key!r} in {path} has id {str(v)[:60]}; an id is a whole number. "
                         "Fix that entry.")
    if v in seen:
        raise ValueError(f"Entry {k} of {key!r} in {path} repeats the id {v!r} (already used by {owner(v)}); "
                         "ids must be unique, or annotations go to the wrong entry. Give it its own id.")
    return v


def _category_name(c: dict, k: int, path: Path) -> str:
    name = c["name"]
    if isinstance(name, bool) or not isinstance(name, (str, int, float)) or not str(name).strip():
        raise ValueError(f"Category {c['id']!r} (entry {k} of 'categories') in {path} has the name {name!r}; "
                         "every category needs a name (text), e.g. \"chair\". Fix that entry.")
    return unicodedata.normalize("NFC", str(name).strip())


def _file_name(o: dict, k: int, path: Path) -> str:
    """An image's file name, refused unless it is a relative path that stays inside the image folder."""
    name = o["file_name"]
    where = f"Image {o['id']!r} (entry {k} of 'images') in {path}"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where} has the file_name {str(name)[:60]!r}; it must be the image's file name (text).")
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or PureWindowsPath(name).drive:
        raise ValueError(f"{where} has the file_name {name!r}, which points outside the image folder; a COCO "
                         "file_name is relative to the folder of the images, e.g. '000012.jpg'. Fix that entry.")
    return name


def _image_size(o: dict) -> tuple[float, float] | None:
    """(height, width) when the image entry gives both as positive numbers (COCO does), else None."""
    h, w = o.get("height"), o.get("width")
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in (h, w))
    return (float(h), float(w)) if ok else None


def _parse_annotation(a: dict, k: int, images: dict, names: dict, sizes: dict, path: Path
                      ) -> tuple[object, list[float], str]:
    """(image id, [top, left, bottom, right], class name) of the k-th COCO annotation, or an error naming it (by
    its id, or by its place in the list if it has none)."""
    where = (f"Annotation {a['id']} in {path}" if "id" in a and _is_id(a["id"])
             else f"Annotation at entry {k} of 'annotations' in {path}")
    for key, known in (("image_id", images), ("category_id", names)):
        v = a[key]
        if not _is_id(v):
            raise ValueError(f"{where} has {key} {str(v)[:60]}; it must be the id (a whole number) of an entry of "
                             f"{'images' if key == 'image_id' else 'categories'}. Fix that annotation.")
        if v not in known:
            typed = [i for i in known if str(i) == str(v)]
            hint = (f" ({v!r} is text; the id there is the number {typed[0]}: write it without quotes)" if typed
                    else "")
            if key == "image_id":
                raise ValueError(f"{where} refers to image_id {v!r}, which is not in 'images'{hint}.")
            raise ValueError(f"{where} has category_id {v!r}, which is not in 'categories' "
                             f"(known ids: {sorted(names, key=lambda i: (isinstance(i, str), i))}){hint}.")
    bbox = a["bbox"]
    ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    if ok:
        x, y, w, h = (float(v) for v in bbox)
        ok = w > 0 and h > 0 and math.isfinite(x + w) and math.isfinite(y + h)
    if not ok:
        raise ValueError(f"{where} has bbox {bbox!r}; COCO boxes are [x, y, width, height]: four finite numbers, "
                         "width and height above 0. Fix or remove that annotation.")
    size = sizes[a["image_id"]]
    outside = x + w <= 0 or y + h <= 0 or (size is not None and (y >= size[0] or x >= size[1]))
    if outside:
        frame = f"the {size[1]:g}x{size[0]:g} image" if size is not None else "the image (it ends left of or above it)"
        raise ValueError(f"{where} has bbox {bbox!r} ([x, y, width, height]), which lies entirely outside {frame} "
                         f"{images[a['image_id']]}. Fix or remove that annotation.")
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
        """Boxes must move with their image, and each must lie at least partly inside it (one wholly outside
        would be dropped without a word: its labels are wrong, or belong to another image)."""
        if not tfm_y:
            raise ValueError("Bounding boxes must move with their image: pass tfm_y=True to transform(), e.g. "
                             ".transform(get_transforms(), tfm_y=True).")
        boxes, ids = y
        if len(boxes):
            h, w = img.height, img.width
            out = (boxes[:, 0] >= h) | (boxes[:, 1] >= w) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
            if out.any():
                k = int(out.nonzero()[0, 0])
                raise ValueError(f"The box {boxes[k].tolist()} ({self.classes[int(ids[k])]}) of "
                                 f"{getattr(img, 'filename', 'an image')} lies entirely outside the image ({w}x{h} "
                                 "pixels; a box is [top, left, bottom, right]); fix or remove that box.")

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

"""Images and single- or multi-label classification for the data block chain: `ImageList` (file on disk ->
decoded, resized, augmented tensor) and its batch display. Points live in points.py, masks in segmentation.py,
bounding boxes in boxes.py; each of those item lists is an `ImageList` whose label list says how its target
follows the image (`TargetList.check_target`, `draw_plan`, `transform_target`)."""
from __future__ import annotations

import numbers
import warnings
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data_block import ItemList, TargetList, TransformConfig, problem_kind, problem_list
from ..tables import same_names_on_disk
from .batch import CPU_CHUNK, augment_batch, plan_params, resample_batch
from .cache import ImageCache, decide_auto_cache
from .image import CachedImage, image_extensions, image_grid, image_size, load_rgb, open_image, open_lazy, show_image
from .transforms import ImageTransforms, ResizeMethod, TransformPlan, sample_plan

__all__ = ["ImageList", "ImageItemList", "ImageFileList", "get_image_files", "imagenet_stats"]

imagenet_stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CHECK_BAR_FROM = 1000  # images: checking fewer takes a second or two, more get a progress bar


class ImageList(ItemList):
    """Image files; `get` opens one lazily, `apply_tfms` decodes, resizes and augments it."""

    extensions = image_extensions
    tfm_y_default = False  # whether targets follow the image when `transform` is not told (masks always do)
    _caches: tuple | None = None  # (the items they cache, {(size, resize method): ImageCache})
    _auto_caches: tuple | None = None  # (the items, {(size, resize method): whether a DataBunch chose to cache})

    def image_cache(self, size, resize_method: str | None, shapes=None) -> ImageCache:
        """The decode-once cache of these images at this size (vision/cache.py), made on first use (`shapes`:
        the resized sizes, if already known).

        Split copies of a list share it while they share its items, so every DataBunch, `lr_find` and stage
        built from the same split reuses it."""
        if self._caches is None or self._caches[0] is not self.items:
            self._caches = (self.items, {})
        key = (repr(size), resize_method)
        if key not in self._caches[1]:
            self._caches[1][key] = ImageCache(self.items, size, resize_method, shapes=shapes)
        return self._caches[1][key]

    def auto_cache(self, cfg: TransformConfig) -> bool | None:
        """Whether a DataBunch chose to cache these images at `cfg`'s size (`transform` not told `cache=`);
        None until one decides (`data_block.decide_auto_cache`)."""
        if self._auto_caches is None or self._auto_caches[0] is not self.items:
            return None
        return self._auto_caches[1].get((repr(cfg.size), cfg.resize_method))

    def set_auto_cache(self, cfg: TransformConfig, shapes) -> None:
        """Record a DataBunch's choice for `cfg`'s size: cache (`shapes`, the resized sizes, given) or not (None)."""
        if self._auto_caches is None or self._auto_caches[0] is not self.items:
            self._auto_caches = (self.items, {})
        self._auto_caches[1][(repr(cfg.size), cfg.resize_method)] = shapes is not None
        if shapes is not None:
            self.image_cache(cfg.size, cfg.resize_method, shapes)

    @staticmethod
    def decide_auto_cache(lists: list) -> str:
        """Cache the images of one DataBunch's sets ((ImageList, TransformConfig) pairs) if they fit the memory
        budget, or not; returns the line that says which (vision/cache.py)."""
        return decide_auto_cache(lists)[1]

    def _check_items(self) -> None:
        missing = [p for p in self.items if not p.is_file()]
        if missing:  # "café" typed in the CSV (NFC) may be spelt "cafe" + accent (NFD) on disk, e.g. by macOS
            self.items = same_names_on_disk(self.items)
            missing = [p for p in self.items if not p.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:3]) + (", ..." if len(missing) > 3 else "")
            msg = (f"{len(missing)} of {len(self.items)} images listed in the table do not exist, e.g. {shown}. "
                   "Check the `folder=` and `suffix=` arguments (Planet: folder='train-jpg', suffix='.jpg').")
            if len(missing) < len(self.items):  # the rest are there: decode them now, so one run lists everything
                others = [p for p in self.check_for_training() if problem_kind(p) != "files that do not exist"]
                if others:
                    msg += (f"\nThe images that are there have problems too ({len(others)}), all listed now so you "
                            f"can fix everything at once:\n{problem_list(others)}")
            raise FileNotFoundError(msg)
        self._warn_duplicates()

    def _warn_duplicates(self) -> None:
        """The same file twice in a table would let one image be both trained on and validated on."""
        rows = defaultdict(list)
        for i, p in enumerate(self.items):
            rows[str(p)].append(i + 2)  # CSV rows, the header being row 1
        dups = [(p, r) for p, r in rows.items() if len(r) > 1]
        if dups:
            shown = "; ".join(f"{self.item_name(p)} (rows {', '.join(map(str, r))})" if len(r) <= 3 else
                              f"{self.item_name(p)} ({len(r)} rows: {', '.join(map(str, r[:3]))}, ...)"
                              for p, r in dups[:5])
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
            lines = "\n".join(f"  {self.item_name(p)}: {why}" for p, why in problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            msg = (f"{len(problems)} of {len(self.items)} images cannot be read:\n{lines}{more}\n"
                   "Delete or replace them (or drop them from your CSV) before training.")
            if strict:
                raise ValueError(msg)
            print(msg)
        else:
            print(f"All {len(self.items)} images can be read.")
        return problems

    def check_for_training(self, y_list: TargetList | None = None, cfg: TransformConfig = TransformConfig()
                           ) -> list[str]:
        """Everything that would stop training, for every item, found before it starts: each file opened and
        fully decoded (filling the decode cache when `cfg.cache`), masks' modes, sizes and class ids and points'
        positions checked. Returns one message per bad item, each naming its file."""
        items = range(len(self.items))
        if len(self.items) >= CHECK_BAR_FROM:
            items = tqdm(items, desc=f"Checking {len(self.items)} images", unit="img", leave=False)
        found = (self._item_problem(i, y_list, cfg) for i in items)
        return [why for why in found if why is not None]

    def _item_problem(self, i: int, y_list: TargetList | None = None, cfg: TransformConfig = TransformConfig()
                      ) -> str | None:
        """What is wrong with item i (and its target), or None: the image decoded as training will decode it."""
        try:
            img = open_lazy(self.items[i])
            try:
                y = None if y_list is None else y_list.get(i)
                self._check_target(img, y, y_list, self._tfm_y(cfg))
                plan = sample_plan(None, (img.height, img.width), cfg.size, cfg.resize_method, train=False)
            except BaseException:
                img.close()
                raise
            self._decode(img, plan, cfg)  # closes the image
        except (ValueError, FileNotFoundError, OSError) as e:
            return str(e)
        return None

    def check_batchable(self, cfg: TransformConfig = TransformConfig()) -> None:
        """Images keep their own size without `size=` (or with resize_method='no'), and a batch needs one size:
        fail now, naming two files of different sizes, not in the DataLoader once training has started."""
        _check_size(cfg.size)
        if cfg.size is not None and cfg.resize_method != ResizeMethod.NO:
            return
        first = None
        for p in self.items:
            wh = image_size(p)  # the header only: no decoding
            if first is None:
                first = (p, wh)
            elif wh != first[1]:
                raise ValueError(
                    f"Images of different sizes cannot form a batch: {self.item_name(first[0])} is "
                    f"{first[1][0]}x{first[1][1]} but {self.item_name(p)} is {wh[0]}x{wh[1]} pixels (width x height). "
                    "Pass a size so every image is resized the same way, e.g. `.transform(tfms, size=224)`.")

    def get(self, i: int):
        """Image i decoded as RGB (what a student looks at; the pipeline opens it lazily with `raw`)."""
        return open_image(self.items[i])

    def raw(self, i: int, cfg: TransformConfig | None = None):
        """Image i opened lazily in its file's own mode: `apply_tfms` decodes it at the scale it needs. Given the
        transform settings `cfg`, an image the decode cache holds at their size is not opened at all: a
        `CachedImage` stands in, with the file's name and size."""
        if cfg is not None and self._caching(cfg):
            hw = self.image_cache(cfg.size, cfg.resize_method).source_size(self.items[i])
            if hw is not None:
                return CachedImage(str(self.items[i]), *hw)
        return open_lazy(self.items[i])

    def _caching(self, cfg: TransformConfig) -> bool:
        """Whether these images are cached at `cfg`'s size: `transform(cache=...)`, else the DataBunch's choice."""
        return bool(cfg.cache if cfg.cache is not None else self.auto_cache(cfg))

    def open_item(self, item):
        """A path or a PIL image, as `raw` returns it."""
        return item.copy() if isinstance(item, Image.Image) else open_lazy(item)  # never touch the caller's image

    @staticmethod
    def tfms_from_state(state: dict) -> ImageTransforms:
        return ImageTransforms(**state)

    def apply_tfms(self, img, y, y_list: TargetList, tfms: ImageTransforms | None, cfg: TransformConfig):
        """Decode, resize and (on training items) augment one image; with `tfm_y`, move its target the same way.

        With `cfg.cache` (or, when it is None, the DataBunch's own choice), the decoded, resized pixels are kept
        for later epochs and stages (see vision/cache.py).
        This is the one-item path (`ds[i]`, `predict`); DataLoaders split it into `prepare_tfms` per item and
        `batch_tfms` per batch, which give the same result."""
        plan, pixels, tfm_y = self._plan_and_pixels(img, y, y_list, tfms, cfg)
        x = plan.apply_image(pixels.float().div_(255))
        return x, (y_list.transform_target(y, plan) if tfm_y else y)

    def prepare_tfms(self, img, y, y_list: TargetList, tfms: ImageTransforms | None, cfg: TransformConfig):
        """The per-item half of the transforms when whole batches are augmented (vision/batch.py): decode (or
        read the cache), resize, cut out the window and draw the random transform, but resample nothing.

        Returns ({"pixels": uint8 (3, h, w), "aug": (3, 3), "light": (2,)}, target): the target is moved
        completely if it is points, and only resized and windowed if it is a mask (`batch_tfms` does the rest)."""
        plan, pixels, tfm_y = self._plan_and_pixels(img, y, y_list, tfms, cfg)
        x = {"pixels": plan.window(pixels).contiguous(), **plan_params(plan)}
        return x, (y_list.prepare_target(y, plan) if tfm_y else y)

    def _plan_and_pixels(self, img, y, y_list: TargetList, tfms, cfg: TransformConfig):
        """What both paths start with: check the target, draw the plan, decode and resize (uint8 (3, h, w))."""
        tfm_y = self._tfm_y(cfg)
        self._check_target(img, y, y_list, tfm_y)
        plan = self._draw_plan(img, y if tfm_y else None, y_list, tfms, cfg)
        return plan, self._decode(img, plan, cfg), tfm_y

    def _tfm_y(self, cfg: TransformConfig) -> bool:
        """Whether targets follow the image: `cfg.tfm_y`, or this list's default when `transform` was not told."""
        return self.tfm_y_default if cfg.tfm_y is None else cfg.tfm_y

    def batch_tfms(self, x: dict, y: torch.Tensor, y_list: TargetList):
        """The per-batch half: every image's random geometry in one resample, lighting, and masks moved alike."""
        images, grid = augment_batch(x["pixels"], x["aug"], x["light"], chunk=CPU_CHUNK)
        return images, y_list.batch_target(y, lambda t, mode: resample_batch(t, grid, mode))

    def _decode(self, img, plan: TransformPlan, cfg: TransformConfig) -> torch.Tensor:
        """The image resized to `plan.resized`, as uint8 (3, h, w) (from the decode-once cache if `cfg.cache`)."""
        h, w = plan.resized
        try:
            def decode():
                if isinstance(img, CachedImage):  # the file changed since the cache was asked: read it after all
                    with img.open() as src:
                        return plan.resize(load_rgb(src, min_size=(w, h)))
                return plan.resize(load_rgb(img, min_size=(w, h)))
            path = getattr(img, "filename", "")
            if path and self._caching(cfg):
                cache = self.image_cache(cfg.size, cfg.resize_method)
                pixels = cache.get(path, decode, (img.height, img.width))
            else:
                pixels = decode()
            return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)
        finally:
            img.close()

    def _check_target(self, img, y, y_list: TargetList | None, tfm_y: bool) -> None:
        """Refuse a target that cannot follow the image; its label list knows how (`TargetList.check_target`)."""
        if y is not None and y_list is not None:
            y_list.check_target(img, y, tfm_y)

    def _draw_plan(self, img, y, y_list: TargetList, tfms: ImageTransforms | None, cfg: TransformConfig
                   ) -> TransformPlan:
        """Draw one image's random transform; `y` is its target if it moves too, and its label list may ask for
        another draw (points must stay in view: `TargetList.draw_plan`)."""
        def draw() -> TransformPlan:
            return sample_plan(tfms, (img.height, img.width), cfg.size, cfg.resize_method, cfg.train)
        return draw() if y is None else y_list.draw_plan(y, draw, getattr(img, "filename", "") or "an image")

    def show_results(self, xs: torch.Tensor, ys: torch.Tensor, preds: torch.Tensor, y_list: TargetList,
                     rows: int = 3, figsize: tuple | None = None, **kwargs) -> None:
        """Images titled with their true label and the prediction (one row per image)."""
        n = min(len(xs), rows)
        fig, axes = plt.subplots(n, 1, figsize=figsize or (3.2, 3.2 * n), squeeze=False)
        for i in range(n):
            show_image(xs[i], ax=axes[i, 0],
                       title=f"true: {y_list.label_str(ys[i])}\npred: {y_list.label_str(preds[i])}")
        fig.tight_layout()

    def show_xys(self, xs: torch.Tensor, ys: torch.Tensor, y_list: TargetList, rows: int = 3,
                 figsize: tuple | None = None, **kwargs) -> None:
        """A rows x rows grid of images titled with their labels."""
        fig, axes = image_grid(min(len(xs), rows * rows), (2.6, 2.6), figsize)
        for i, ax in enumerate(axes):
            show_image(xs[i], ax=ax, title=y_list.label_str(ys[i]))
        fig.tight_layout()


def _check_size(size) -> None:
    sizes = size if isinstance(size, (tuple, list)) else [size]
    ok = size is None or (len(sizes) in (1, 2) and all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and s >= 1 for s in sizes))
    if not ok:
        raise ValueError(f"size must be a positive number of pixels, or a (height, width) pair of them; got {size!r}. "
                         "The lesson uses e.g. `.transform(tfms, size=128)`.")


def get_image_files(path: str | Path, recurse: bool = False, folders: Iterable[str] | None = None) -> list[Path]:
    """The image files (by extension, hidden ones skipped) in the folder `path`, sorted; `recurse=True` also
    looks in its sub-folders, `folders` only in those sub-folders (by name). The lesson's
    `get_image_files(path_img)`; an empty list if there are none."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"get_image_files: {path} is not a folder. Check the path (and that the dataset "
                                "was extracted); `path.ls()` lists what is there.")
    found = []
    for sub in ([path / f for f in folders] if folders is not None else [path]):
        files = sub.rglob("*") if recurse else sub.glob("*")
        found += [f for f in files if f.suffix.lower() in image_extensions and f.is_file()
                  and not any(p.startswith(".") for p in f.relative_to(path).parts)]
    return sorted(found)


# The lesson video's names for `ImageList`: the same class (ImageFileList was the earliest name).
ImageItemList = ImageFileList = ImageList

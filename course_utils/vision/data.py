"""Image items for the data block chain: `ImageList` and its batch display."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
from PIL import Image

from ..data_block import ItemList, TargetList
from .image import image_extensions, image_to_tensor, load_rgb, open_image, show_image
from .transforms import ImageTransforms, sample_plan

__all__ = ["ImageList", "imagenet_stats"]

imagenet_stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


class ImageList(ItemList):
    """Image files; `get` opens one lazily, `apply_tfms` decodes, resizes and augments it."""

    extensions = image_extensions

    def _check_items(self) -> None:
        missing = [p for p in self.items if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.items)} images listed in the table do not exist, e.g. {missing[0]}. "
                "Check the `folder=` and `suffix=` arguments (Planet: folder='train-jpg', suffix='.jpg').")

    def get(self, i: int):
        return open_image(self.items[i])

    def open_item(self, item):
        """A path or a PIL image, as `get` returns it."""
        return item.copy() if isinstance(item, Image.Image) else open_image(item)  # never touch the caller's image

    @staticmethod
    def tfms_from_state(state: dict) -> ImageTransforms:
        return ImageTransforms(**state)

    def apply_tfms(self, img, y, y_list: TargetList, tfms: ImageTransforms | None, size=None,
                   resize_method: str | None = None, tfm_y: bool = False, train: bool = True):
        """Decode, resize and (on training items) augment one image; with `tfm_y`, move its target the same way."""
        plan = sample_plan(tfms, (img.height, img.width), size, resize_method, train)
        h, w = plan.resized
        try:
            x = plan.apply_image(image_to_tensor(plan.resize(load_rgb(img, min_size=(w, h)))))
        finally:
            img.close()
        if tfm_y:
            y = y_list.transform_target(y, plan)
        return x, y

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

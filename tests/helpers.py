"""Small builders shared by several test modules (fixtures stay in conftest.py): image folders, CSV files, a
tiny BatchNorm model and a three-colour DataBunch."""
from __future__ import annotations

import torch
import torch.nn as nn
from PIL import Image

from course_utils.vision import ImageList


def named_images(root, names):
    """8x8 JPEGs `root/imgs/<name>.jpg`, one per name; returns `root`."""
    (root / "imgs").mkdir(parents=True)
    for name in names:
        Image.new("RGB", (8, 8), (40, 0, 0)).save(root / "imgs" / f"{name}.jpg")
    return root


def csv_file(root, lines, name="labels.csv"):
    """`root/name` holding `lines` (UTF-8); returns its path."""
    (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / name


def colour_databunch(root, classes=("a", "b", "c")):
    """Three solid colours named by `classes`, 4 images each, one validation image per class."""
    for k, name in enumerate(classes):
        for i in range(4):
            colour = [0, 0, 0]
            colour[k] = 200 + i
            Image.new("RGB", (8, 8), tuple(colour)).save(root / f"{name}_{i}.png")
    return (ImageList.from_folder(root).split_by_valid_func(lambda p: p.stem.endswith("_3"))
            .label_from_func(lambda p: p.stem.split("_")[0]).transform(size=8)
            .databunch(bs=3, num_workers=0, device=torch.device("cpu")))


def bn_model(n_out):
    """A tiny CNN with a BatchNorm layer, for tests of what happens to its statistics."""
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, n_out))

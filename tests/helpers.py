"""Small builders shared by several test modules (fixtures stay in conftest.py): image folders, CSV files, a
tiny BatchNorm model and a three-colour DataBunch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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


CPU = torch.device("cpu")


def shaded_images(root, n: int = 6, folder: str = "img"):
    """`n` 8x8 PNGs `root/folder/<i>.png`, each a different shade of red; returns `root`."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / folder / f"{i}.png")
    return root


def labelled_images(root, labels, **kw):
    """An ImageList of one shaded image per label, read from a table with the columns `name` and `label`."""
    import pandas as pd

    df = pd.DataFrame({"name": [str(i) for i in range(len(labels))], "label": labels})
    return ImageList.from_df(df, shaded_images(root, len(labels)), folder="img", suffix=".png", **kw)


def sideways_photo(path):
    """A phone photo held upright (red top half, 32 wide x 64 tall), stored sideways with orientation 6."""
    upright = np.zeros((64, 32, 3), np.uint8)
    upright[:32, :, 0] = 255
    stored = np.rot90(upright, k=1)  # what the camera wrote; tag 6 says: rotate 90 degrees clockwise to show
    img = Image.fromarray(np.ascontiguousarray(stored))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(path, exif=exif, quality=95)


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


# The bundled data, and the synthetic sets the fixtures in conftest.py build from these constants.
REPO_ROOT = Path(__file__).resolve().parents[1]


PLANET_TINY = REPO_ROOT / "data" / "planet_tiny"


# The Planet-like fixture: image i gets PLANET_TAGS[i % len(PLANET_TAGS)].
PLANET_TAGS = [
    "clear primary",
    "cloudy",
    "haze primary water",
    "agriculture clear primary",
    "clear primary water",
    "agriculture haze",
]


PLANET_CLASSES = ["agriculture", "clear", "cloudy", "haze", "primary", "water"]


N_PLANET = 24


# The single-label fixture: solid colours (plus a little noise), one folder per class.
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 210)}


N_TRAIN_PER_CLASS, N_VALID_PER_CLASS = 6, 2


SEG_CODES = ["Sky", "Building", "Road", "Car", "Tree", "Void"]


SEG_COLOURS = np.array([(230, 40, 40), (40, 200, 60), (40, 60, 230), (235, 225, 40), (220, 50, 220), (40, 220, 220)],
                       dtype=np.uint8)


N_SEG, N_SEG_VALID = 8, 2


def planet_tags(i: int) -> str:
    """The tags the Planet-like fixture gives image `train_{i}`."""
    return PLANET_TAGS[i % len(PLANET_TAGS)]


def tiny_model(n_out: int) -> nn.Module:
    """A model small enough to train in milliseconds: mean colour -> linear layer."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, n_out))


def camvid_src(path: Path):
    """The lesson's chain up to labelling: images, valid.txt split, masks from labels/<stem>_P.png."""
    from course_utils.vision import SegmentationItemList

    return (SegmentationItemList.from_folder(path / "images")
            .split_by_fname_file("../valid.txt")
            .label_from_func(lambda x: path / "labels" / f"{x.stem}_P{x.suffix}", classes=SEG_CODES))

"""A tiny trained-or-not learner of every kind the course makes, for the export, web app and finetune tests:
planet-style multi-label, single-label, segmentation (U-Net), points (head pose) and the IMDB text classifier.
Each is built on a few synthetic files in the lesson's layouts (random init, no download, CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

KINDS = ("multi-label", "single-label", "segmentation", "points", "text")
CPU = torch.device("cpu")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 210)}
TAGS = ["clear primary", "cloudy", "haze primary water", "agriculture clear"]
REVIEWS = {"pos": ["a wonderful film , i loved it", "great acting and a superb story", "brilliant , moving , fun"],
           "neg": ["a terrible film , i hated it", "awful acting and a boring story", "dull , stupid , a waste"]}


def _noisy(rng, colour, size=(24, 24)) -> np.ndarray:
    return np.clip(np.array(colour)[None, None] + rng.integers(-15, 16, (*size, 3)), 0, 255).astype(np.uint8)


def single_label_learner(root: Path):
    """Solid-colour images in class folders (train/valid), resnet18 at 16 px."""
    from course_utils.vision import ImageList, cnn_learner, imagenet_stats, models

    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("valid", 2)):
        for name, colour in COLOURS.items():
            (root / "data" / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_noisy(rng, colour)).save(root / "data" / split / name / f"{name}_{i}.png")
    data = (ImageList.from_folder(root / "data").split_by_folder().label_from_folder().transform(size=16)
            .databunch(bs=4, num_workers=0, device=CPU).normalize(imagenet_stats))
    return (cnn_learner(data, models.resnet18, pretrained=False, path=root),
            root / "data" / "valid" / "red" / "red_0.png")


def multi_label_learner(root: Path):
    """Planet's layout (train_v2.csv + train-jpg/), random 32 px JPEGs, resnet18."""
    from course_utils.vision import ImageList, cnn_learner, get_transforms, imagenet_stats, models

    rng = np.random.default_rng(0)
    (root / "train-jpg").mkdir(parents=True)
    rows = ["image_name,tags"]
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "train-jpg" / f"train_{i}.jpg")
        rows.append(f"train_{i},{TAGS[i % len(TAGS)]}")
    (root / "train_v2.csv").write_text("\n".join(rows) + "\n")
    data = (ImageList.from_csv(root, "train_v2.csv", folder="train-jpg", suffix=".jpg").split_by_rand_pct(0.25, seed=42)
            .label_from_df(label_delim=" ").transform(get_transforms(flip_vert=True, max_warp=0.0), size=32)
            .databunch(bs=4, num_workers=0, device=CPU).normalize(imagenet_stats))
    return cnn_learner(data, models.resnet18, pretrained=False, path=root), root / "train-jpg" / "train_0.jpg"


def segmentation_learner(root: Path):
    """CamVid's layout (images/, labels/<stem>_P.png, codes.txt), 48x64 blocks of colour, U-Net at 32 px."""
    from course_utils.vision import SegmentationItemList, get_transforms, imagenet_stats, models, unet_learner

    codes = ["Sky", "Road", "Car"]
    colours = np.array([(230, 40, 40), (40, 200, 60), (40, 60, 230)], dtype=np.uint8)
    rng = np.random.default_rng(2)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(6):
        mask = np.kron(rng.integers(0, 3, (6, 8)), np.ones((8, 8), dtype=np.int64)).astype(np.uint8)
        Image.fromarray(colours[mask]).save(root / "images" / f"f{i}.png")
        Image.fromarray(mask).save(root / "labels" / f"f{i}_P.png")
    data = (SegmentationItemList.from_folder(root / "images").split_by_idx([4, 5])
            .label_from_func(lambda x: root / "labels" / f"{x.stem}_P.png", classes=codes)
            .transform(get_transforms(), size=32, tfm_y=True).databunch(bs=2, num_workers=0, device=CPU)
            .normalize(imagenet_stats))
    return unet_learner(data, models.resnet18, pretrained=False, path=root), root / "images" / "f4.png"


def points_learner(root: Path):
    """Head pose's shape of problem: 40x56 photos with one dark dot each, its (row, col) the target."""
    from course_utils.vision import PointsItemList, cnn_learner, imagenet_stats, models

    rng = np.random.default_rng(3)
    pts = {}
    (root / "photos").mkdir(parents=True)
    for i in range(10):
        img = _noisy(rng, (200, 200, 200), (40, 56))
        r, c = int(rng.integers(10, 30)), int(rng.integers(10, 46))
        img[r - 2:r + 3, c - 2:c + 3] = 0
        Image.fromarray(img).save(root / "photos" / f"p{i}.png")
        pts[f"p{i}.png"] = (float(r), float(c))
    data = (PointsItemList.from_folder(root / "photos").split_by_idx([8, 9])
            .label_from_func(lambda o: torch.tensor([pts[o.name]])).transform(size=(20, 28), tfm_y=True)
            .databunch(bs=4, num_workers=0, device=CPU).normalize(imagenet_stats))
    return cnn_learner(data, models.resnet18, pretrained=False, path=root), root / "photos" / "p8.png"


def text_learner(root: Path):
    """IMDB's layout (train|test/pos|neg/*.txt), a tiny AWD-LSTM classifier with its own vocabulary."""
    from course_utils.text import AWD_LSTM, TextList, text_classifier_learner

    for split, n in (("train", 6), ("test", 2)):
        for label, texts in REVIEWS.items():
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                (root / split / label / f"{i}_1.txt").write_text(texts[i % 3])
    data = (TextList.from_folder(root, min_freq=1).split_by_folder(valid="test")
            .label_from_folder(classes=["neg", "pos"]).databunch(bs=4, num_workers=0, device=CPU))
    learn = text_classifier_learner(data, AWD_LSTM, config=dict(emb_sz=8, n_hid=16, n_layers=2), drop_mult=0.5,
                                    pretrained=False, path=root)
    return learn, "A wonderful film, I loved the story!"


BUILDERS = {"multi-label": multi_label_learner, "single-label": single_label_learner,
            "segmentation": segmentation_learner, "points": points_learner, "text": text_learner}


def make_learner(kind: str, root: Path):
    """(learner, a sample input: an image path or a text) of `kind`, with its data under `root`."""
    torch.manual_seed(0)
    return BUILDERS[kind](Path(root))

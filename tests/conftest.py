"""Shared fixtures for the course_utils unit tests.

Everything is tiny and synthetic so the suite runs in well under a minute on a 2-core CPU:
a Planet-like multi-label folder (JPEGs + `train_v2.csv`, as in Kaggle's format), a single-label
folder-per-class set of solid-colour PNGs, and model factories (a tiny `nn.Sequential`, or
resnet18 with `pretrained=False` at 32px). Nothing here touches the network.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: no windows during tests

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import (  # noqa: E402
    COLOURS,
    N_PLANET,
    N_SEG,
    N_SEG_VALID,
    N_TRAIN_PER_CLASS,
    N_VALID_PER_CLASS,
    SEG_CODES,
    SEG_COLOURS,
    camvid_src,
    planet_tags,
    tiny_model,
)
from http_server import TOY, LocalServer  # noqa: E402
from imdb import make_imdb_like  # noqa: E402
from PIL import Image  # noqa: E402

# One intra-op thread: on a small shared CPU, oneDNN with 2 threads spends seconds warming up
# per new shape, while a single thread runs these tiny models at once.
torch.set_num_threads(int(os.environ.get("COURSE_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _token_cache_in_tmp(tmp_path, monkeypatch):
    """Every test tokenizes into its own cache folder: no test reads another's (or the user's) cached tokens."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    """Every test starts from the same random state and leaves no matplotlib figures behind."""
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    plt.close("all")


def _noisy_solid(rng: np.random.Generator, colour, size=(16, 16)) -> np.ndarray:
    base = np.array(colour, dtype=np.int16)[None, None, :]
    noise = rng.integers(-15, 16, size=(*size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def planet_path(tmp_path_factory) -> Path:
    """A tiny Planet in Kaggle's layout: `train_v2.csv` (image_name,tags) and `train-jpg/train_N.jpg` (32x32)."""
    root = tmp_path_factory.mktemp("planet")
    (root / "train-jpg").mkdir()
    rng = np.random.default_rng(0)
    rows = ["image_name,tags"]
    for i in range(N_PLANET):
        arr = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / "train-jpg" / f"train_{i}.jpg", quality=95)
        rows.append(f"train_{i},{planet_tags(i)}")
    (root / "train_v2.csv").write_text("\n".join(rows) + "\n")
    (root / "test-jpg").mkdir()
    Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(root / "test-jpg" / "test_0.jpg")
    return root


@pytest.fixture(scope="session")
def colour_path(tmp_path_factory) -> Path:
    """Single-label images, one folder per class, under `train/` and `valid/`; plus an `extra/` folder
    that split_by_folder must ignore. File names start with the class (`red_3.png`)."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(1)
    for split, n in (("train", N_TRAIN_PER_CLASS), ("valid", N_VALID_PER_CLASS), ("extra", 1)):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_noisy_solid(rng, colour)).save(folder / f"{name}_{i}.png")
    return root


@pytest.fixture
def planet_src(planet_path):
    """The lesson's chain up to labelling, on the Planet-like fixture (18 train / 6 valid)."""
    from course_utils.vision import ImageList

    return (ImageList.from_csv(planet_path, "train_v2.csv", folder="train-jpg", suffix=".jpg")
            .split_by_rand_pct(0.25, seed=42)
            .label_from_df(label_delim=" "))


@pytest.fixture
def planet_data(planet_src):
    """A normalised multi-label DataBunch at 32px with the lesson's augmentations, bs=4, no workers."""
    from course_utils.vision import get_transforms, imagenet_stats

    tfms = get_transforms(flip_vert=True, max_lighting=0.1, max_zoom=1.05, max_warp=0.0)
    return (planet_src.transform(tfms, size=32)
            .databunch(bs=4, num_workers=0, device=torch.device("cpu"))
            .normalize(imagenet_stats))


@pytest.fixture
def colour_data(colour_path):
    """A normalised single-label DataBunch (18 train / 6 valid solid-colour images, 16px), bs=4."""
    from course_utils.vision import ImageList, imagenet_stats

    return (ImageList.from_folder(colour_path, include=["train", "valid"])
            .split_by_folder()
            .label_from_folder()
            .transform(size=16)
            .databunch(bs=4, num_workers=0, device=torch.device("cpu"))
            .normalize(imagenet_stats))


@pytest.fixture
def tiny_learner(colour_data):
    """A Learner with the tiny model on the colour data."""
    from course_utils.learner import Learner

    return Learner(colour_data, tiny_model(colour_data.c))


@pytest.fixture
def planet_learner(planet_data, tmp_path):
    """resnet18 (random init, no download) on the Planet-like data; saves under tmp_path."""
    from course_utils.vision import cnn_learner, models

    return cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path)


# The segmentation fixture: 64x64 images made of 8x8 blocks of solid colours, one colour per class, so
# each pixel's class can be read back from its colour after any transform (SEG_CODES[-1] is the Void).


@pytest.fixture(scope="session")
def camvid_path(tmp_path_factory) -> Path:
    """A tiny CamVid in fastai's layout: images/f<i>.png, labels/f<i>_P.png (class ids), codes.txt, valid.txt."""
    root = tmp_path_factory.mktemp("camvid")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(2)
    names = [f"f{i}.png" for i in range(N_SEG)]
    for name in names:
        mask = np.kron(rng.integers(0, len(SEG_CODES), size=(8, 8)), np.ones((8, 8), dtype=np.int64)).astype(np.uint8)
        Image.fromarray(SEG_COLOURS[mask]).save(root / "images" / name)
        Image.fromarray(mask).save(root / "labels" / name.replace(".png", "_P.png"))
    (root / "codes.txt").write_text("\n".join(SEG_CODES) + "\n")
    (root / "valid.txt").write_text("\n".join(names[-N_SEG_VALID:]) + "\n")
    return root


@pytest.fixture
def camvid_data(camvid_path):
    """A normalised segmentation DataBunch at 32px with the lesson's default augmentations, bs=2."""
    from course_utils.vision import get_transforms, imagenet_stats

    return (camvid_src(camvid_path).transform(get_transforms(), size=32, tfm_y=True)
            .databunch(bs=2, num_workers=0, device=torch.device("cpu"))
            .normalize(imagenet_stats))


@pytest.fixture
def server():
    """A LocalServer (tests/http_server.py) on 127.0.0.1 running for the test: the download tests' network."""
    srv = LocalServer()
    srv.thread.start()
    yield srv
    srv.close()


@pytest.fixture
def toy(server, tmp_path, monkeypatch):
    """A registry entry `toy` served by the local server; the data dir is tmp_path/data."""
    from course_utils.download import DATASETS, Dataset, Source

    url = server.serve("toy.tgz", TOY)
    monkeypatch.setitem(DATASETS, "toy", Dataset(sources=(Source(url),), folder="toy", expect=("hello.txt", "sub")))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def imdb_path(tmp_path) -> Path:
    """A tiny IMDB-like folder (tests/imdb.py) in the lesson's layout."""
    return make_imdb_like(tmp_path / "imdb")


@pytest.fixture
def fsynced(monkeypatch):
    """Watch os.fsync; returns `check(path)`: whether the file now at `path` was fsynced with its present size
    (files keep their inode when renamed, so an atomic write's temporary file counts for the file it became)."""
    seen = set()
    real_fsync = os.fsync

    def spy(fd):
        st = os.fstat(fd)
        seen.add((st.st_dev, st.st_ino, st.st_size))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)

    def check(path) -> bool:
        st = os.stat(path)
        return (st.st_dev, st.st_ino, st.st_size) in seen

    return check

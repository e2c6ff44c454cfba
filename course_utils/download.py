"""Where each lesson's dataset lives: the tiny copy bundled in the repository's data/ folder,
or the real dataset in the data directory (`$COURSE_DATA`, see config.py)."""
from __future__ import annotations

from pathlib import Path

from .config import course_mode, data_dir

__all__ = ["get_dataset", "DATASETS", "bundled_data_dir"]

# name -> the bundled tiny folder, the folder of the real data under data_dir(), files that prove it is
# there, and how to get it.
DATASETS = {
    "planet": {
        "tiny": "planet_tiny",
        "full": "planet",
        "expect": ["train_v2.csv", "train-jpg"],
        "how": ("Planet comes from Kaggle (accept the competition rules first at "
                "https://www.kaggle.com/c/planet-understanding-the-amazon-from-space/rules):\n"
                "  kaggle competitions download -c planet-understanding-the-amazon-from-space "
                "-f train-jpg.tar.7z -p {dest}\n"
                "  kaggle competitions download -c planet-understanding-the-amazon-from-space "
                "-f train_v2.csv.zip -p {dest}\n"
                "then extract both into {dest} (py7zr for the .7z, then tar) so that {dest}/train_v2.csv "
                "and {dest}/train-jpg/ exist."),
    },
    # Tiny copies only so far; their full-size entries (url, checksum, format) belong to the registry.
    "camvid": {"tiny": "camvid_tiny", "full": "camvid", "expect": ["images", "labels", "codes.txt"], "how": ""},
    "biwi_head_pose": {"tiny": "biwi_head_pose_tiny", "full": "biwi_head_pose", "expect": ["01"], "how": ""},
    "imdb": {"tiny": "imdb_tiny", "full": "imdb", "expect": ["train", "test"], "how": ""},
    "imdb_sample": {"tiny": "imdb_tiny", "full": "imdb_sample", "expect": ["texts.csv"], "how": ""},
}


def bundled_data_dir() -> Path:
    """The repository's data/ folder, where the tiny datasets live."""
    return Path(__file__).resolve().parent.parent / "data"


def get_dataset(name: str, mode: str | None = None) -> Path:
    """The folder of dataset `name`: the bundled tiny copy in tiny mode, the real one in full mode.

    Full mode expects the data in `data_dir()/<name>`; if it is missing, the error says how to get it."""
    if name not in DATASETS:
        raise KeyError(f"Unknown dataset {name!r}; known: {sorted(DATASETS)}.")
    info, mode = DATASETS[name], mode or course_mode()
    if mode == "tiny":
        path = bundled_data_dir() / info["tiny"]
        if not path.is_dir():
            raise FileNotFoundError(f"The tiny {name} dataset should be at {path}. It ships with the course "
                                    "repository: run from a clone (pip install -e .), or regenerate it with "
                                    f"`python data/make_{info['tiny']}.py`.")
        return path
    path = data_dir() / info["full"]
    missing = [f for f in info["expect"] if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"The full {name} dataset is not in {path} (missing: {', '.join(missing)}).\n"
                                + info["how"].format(dest=path))
    return path

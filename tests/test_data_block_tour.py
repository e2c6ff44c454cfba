"""The data block tour's MNIST sample: the bundled layout, and the lesson's chain on it."""
from __future__ import annotations

from PIL import Image

from course_utils.download import get_dataset
from course_utils.vision import ImageList


def test_mnist_tiny_has_the_real_layout():
    path = get_dataset("mnist_tiny", "tiny")
    rows = (path / "labels.csv").read_text().splitlines()
    assert rows[0] == "name,label"
    for name, label in (r.split(",") for r in rows[1:]):
        assert name.split("/")[1] == label and (path / name).is_file()
    for folder in ("train/3", "train/7", "valid/3", "valid/7"):
        with Image.open(next((path / folder).glob("*.png"))) as img:
            assert img.size == (28, 28) and img.mode == "L"
    assert len(rows) - 1 == sum(1 for _ in path.glob("[tv]*/[37]/*.png"))


def test_the_lessons_mnist_chain_splits_by_folder_and_labels_by_folder_with_a_test_folder():
    path = get_dataset("mnist_tiny", "tiny")
    ll = ImageList.from_folder(path).split_by_folder().label_from_folder().add_test_folder()
    n_csv = {split: sum(1 for r in (path / "labels.csv").read_text().splitlines()[1:] if r.startswith(split))
             for split in ("train", "valid")}
    assert (len(ll.train), len(ll.valid)) == (n_csv["train"], n_csv["valid"])
    assert ll.train.y.classes == ["3", "7"]
    assert sorted(ll.test.x.items) == sorted((path / "test").glob("*.png")) and len(ll.test) > 0
    x, y = ll.transform(size=32).train[0]
    assert x.shape == (3, 32, 32) and ll.train.y.classes[int(y)] == ll.train.x.items[0].parent.name

"""The exercises of lesson3-data-block: a DataBunch from a new folder layout (on the shapes folders
`make_shapes_folder` draws), a Dataset of your own, a sum of ReLUs by hand.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import torch

from .core import _answer, _blank, _call, _function, _Report, _result

__all__ = ["make_shapes_folder", "check_folder_databunch", "check_dataset", "check_relu_sum"]

_SHAPES = ("circle", "square", "triangle")


def make_shapes_folder(dest: Path | None = None, counts: dict | None = None, seed: int = 0) -> Path:
    """A small image-classification folder in MNIST's layout: `train/<shape>/*.png` and `valid/<shape>/*.png`,
    16x16 grey drawings of circles, squares and triangles (`counts`: {"train": n, "valid": m} per shape,
    default 6 and 2). Returns its path (a new temporary folder unless `dest` is given)."""
    from PIL import Image, ImageDraw

    counts = counts or {"train": 6, "valid": 2}
    dest = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="shapes-"))
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for shape in _SHAPES:
            (dest / split / shape).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = Image.new("L", (16, 16), 0)
                d = ImageDraw.Draw(img)
                a, b = int(rng.integers(1, 5)), int(rng.integers(11, 15))
                if shape == "circle":
                    d.ellipse([a, a, b, b], fill=255)
                elif shape == "square":
                    d.rectangle([a, a, b, b], fill=255)
                else:
                    d.polygon([(a, b), (b, b), ((a + b) // 2, a)], fill=255)
                img.save(dest / split / shape / f"{shape}_{i}.png")
    return dest


def check_folder_databunch(ns: dict) -> None:
    """Data block tour, exercise 1: a DataBunch for a new folder layout. `my_databunch(folder)` must build, for
    two folders that `make_shapes_folder` creates (train/ and valid/ with one sub-folder per shape, different
    counts), a DataBunch with the three shape classes, the folders' split, and batches of 4 images of 16x16."""
    r = _Report("a DataBunch from folders", "my_databunch")
    fn = _answer(ns, "my_databunch", "lesson3-data-block")
    if _blank(fn):
        return r.blank("with `def my_databunch(folder): ...`")
    if not _function(r, fn, "(folder)"):
        return
    with tempfile.TemporaryDirectory(prefix="shapes-check-") as tmp:
        for k, counts in enumerate(({"train": 5, "valid": 3}, {"train": 4, "valid": 2})):
            folder = make_shapes_folder(Path(tmp) / f"layout{k}", counts, seed=k + 1)
            with contextlib.redirect_stdout(io.StringIO()):  # the DataBunch's own notes (the decode cache's line)
                ok, data = _result(r, fn, (folder,), f"Path({str(folder)!r})")
            if not ok:
                return
            if not hasattr(data, "train_ds") or not hasattr(data, "one_batch"):
                return r.hint(f"my_databunch returned a {type(data).__name__}, not a DataBunch: end the chain with "
                              ".databunch(bs=4).")
            n_train, n_valid = 3 * counts["train"], 3 * counts["valid"]
            if list(data.classes) != list(_SHAPES):
                return r.hint(f"the classes are {list(data.classes)}, expected {list(_SHAPES)}: label each image "
                              "with the name of its folder (label_from_folder).")
            if (len(data.train_ds), len(data.valid_ds)) != (n_train, n_valid):
                return r.hint(f"{len(data.train_ds)} training and {len(data.valid_ds)} validation images, the folders "
                              f"hold {n_train} and {n_valid}: split by the train/ and valid/ folders "
                              "(split_by_folder), not at random.")
            xb, yb = data.one_batch()
            if tuple(xb.shape[1:]) != (3, 16, 16) or len(xb) != 4:
                return r.hint(f"one batch holds images of shape {tuple(xb.shape)}; expected (4, 3, 16, 16): "
                              ".transform(..., size=16) and .databunch(bs=4).")
            if yb.dim() != 1 or int(yb.max()) >= 3:
                return r.hint(f"the batch's labels {yb.tolist()} should be one class index per image.")
    r.correct("on two new folder layouts: classes circle/square/triangle, the folders' split (15+9 and 12+6 images), "
              "batches of 4 images 3x16x16 with one class index each.")


def check_dataset(ns: dict) -> None:
    """Data block tour, exercise 2: a Dataset of our own. `MySquares(n)` must have length n and item i
    (i, i*i) as two float tensors of one element, so that a `DataLoader` stacks them into batches."""
    from torch.utils.data import DataLoader

    r = _Report("a Dataset of your own", "MySquares")
    cls = _answer(ns, "MySquares", "lesson3-data-block")
    if _blank(cls):
        return r.blank("with `class MySquares(Dataset): ...`")
    if not isinstance(cls, type):
        return r.hint(f"MySquares should be a class (`class MySquares(Dataset):`), not a {type(cls).__name__}.")
    ds, err = _call(cls, 10)
    if err:
        return r.hint(f"MySquares(10) raised {err}: `__init__(self, n)` takes the number of items.")
    n, err = _call(len, ds)
    if err:
        return r.hint(f"len(MySquares(10)) raised {err}: a Dataset needs `__len__`.")
    if n != 10:
        return r.hint(f"len(MySquares(10)) is {n}, not 10: `__len__` returns the number of items.")
    for i in (0, 3, 9):
        hint = _item_miss(ds, i)
        if hint:
            return r.hint(hint)
    batch, err = _call(lambda: next(iter(DataLoader(ds, batch_size=4))))
    if err:
        return r.hint(f"a DataLoader could not make a batch: {err}. Return tensors of the same shape for every item.")
    xb, yb = batch
    if len(xb) != 4:
        return r.hint(f"a batch of 4 items has inputs of shape {tuple(xb.shape)}.")
    r.correct(f"len 10, items (i, i*i), and a DataLoader batch of 4: inputs {tuple(xb.shape)}, targets "
              f"{tuple(yb.shape)}.")


def _item_miss(ds, i: int) -> str | None:
    """The hint when item `i` of a MySquares(10) is not (i, i*i) as two one-number tensors; None when it is."""
    item, err = _call(ds.__getitem__, i)
    if err:
        return f"MySquares(10)[{i}] raised {err}: `__getitem__(self, i)` returns item i."
    if not (isinstance(item, tuple) and len(item) == 2):
        return f"MySquares(10)[{i}] is {item!r}: an item is a pair (input, target)."
    try:
        x, y = (float(torch.as_tensor(v).reshape(-1)[0]) for v in item)
    except (TypeError, ValueError, IndexError, RuntimeError):
        return f"MySquares(10)[{i}] is {item!r}: input and target should be tensors of one number."
    if (x, y) != (i, i * i) and (x, y) == (i * i, i):
        return "input and target are swapped: item i is (i, i*i), input first."
    if (x, y) != (i, i * i):
        return f"MySquares(10)[{i}] is ({x}, {y}), expected ({float(i)}, {float(i * i)})."
    return None


def check_relu_sum(ns: dict) -> None:
    """Data block tour, exercise 3: a sum of ReLUs by hand. `my_relu_sum(x, w, b, a, c)` must compute
    c + sum_i a_i * max(0, w_i * x + b_i) for every x (a 1-d tensor), equal to Linear(1, n), ReLU, Linear(n, 1)
    with those weights."""
    r = _Report("a sum of ReLUs", "my_relu_sum")
    fn = _answer(ns, "my_relu_sum", "lesson3-data-block")
    if _blank(fn):
        return r.blank("with `def my_relu_sum(x, w, b, a, c): ...`")
    if not _function(r, fn, "(x, w, b, a, c)"):
        return
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(-3, 3, 13)
    w, b, a = (torch.randn(5, generator=g) for _ in range(3))
    c = 0.5
    model = torch.nn.Sequential(torch.nn.Linear(1, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    with torch.no_grad():
        model[0].weight.copy_(w[:, None])
        model[0].bias.copy_(b)
        model[2].weight.copy_(a[None])
        model[2].bias.fill_(c)
        want = model(x[:, None])[:, 0]
    ok, value = _result(r, fn, (x.clone(), w, b, a, c), "x, w, b, a, c")
    if not ok:
        return
    try:
        got = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        return r.hint(f"my_relu_sum should return one value per x, got {type(value).__name__}.")
    if got.shape != want.shape:
        return r.hint(f"my_relu_sum returned {tuple(got.shape)} values for {len(x)} x's: one per x. Broadcast "
                      "x[:, None] against w (shape (n,)) and sum over the ReLUs (dim=1).")
    if torch.allclose(got, want, atol=1e-4):
        return r.correct("equals Linear(1, 5) -> ReLU -> Linear(5, 1) at 13 points in [-3, 3].")
    lin = c + ((w * x[:, None] + b) * a).sum(1)
    if torch.allclose(got, lin, atol=1e-4):
        return r.hint("there is no ReLU: without max(0, .) the sum of lines is one straight line.")
    if torch.allclose(got, (c + ((w * x[:, None] + b) * a).sum(1)).clamp(min=0), atol=1e-4):
        return r.hint("the ReLU is applied after the sum: each term gets its own max(0, w_i·x + b_i), then the "
                      "a_i-weighted sum.")
    return r.hint("not c + Σ a_i·max(0, w_i·x + b_i); compare at x = 0 by hand.")

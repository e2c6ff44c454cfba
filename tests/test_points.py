"""Point targets (lesson 3's head pose): points move with their pixels, are scaled to [-1, 1] for the model
and back to pixels for people, pick a regression head with MSE, and `predict` answers in the original image's
pixels. Points are (row, col) everywhere."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib.collections import PathCollection
from PIL import Image

from course_utils.learner import Learner, load_learner
from course_utils.metrics import mse
from course_utils.vision import (
    PointsItemList,
    cnn_learner,
    get_transforms,
    imagenet_stats,
    models,
)
from course_utils.vision.points import PointsLabelList, points_to_unit, unit_to_points

H, W = 40, 56  # source images: not square, so a swapped row/col shows up


def _dot_image(rng, row: float, col: float, size=(H, W)) -> np.ndarray:
    """Dark noise with one bright Gaussian dot centred on pixel (row, col)."""
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    dot = np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * 1.6 ** 2))
    img = rng.uniform(0, 40, (*size, 3)) + 215 * dot[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dots_path(tmp_path_factory):
    """Folders `a/` (training) and `b/` (validation) of 40x56 PNGs, each with one dot; the dot positions in `pts`.

    Dots keep 14 px from the edges: rotations and warps fill the corners by reflecting the image, and a
    reflected copy of a dot near an edge would be a second dot."""
    root = tmp_path_factory.mktemp("dots")
    rng = np.random.default_rng(0)
    pts = {}
    for folder, n in (("a", 12), ("b", 4)):
        (root / folder).mkdir()
        for i in range(n):
            r, c = rng.uniform(14, H - 14), rng.uniform(15, W - 15)  # far enough in that no reflection shows them
            f = root / folder / f"dot_{folder}{i}.png"
            Image.fromarray(_dot_image(rng, r, c)).save(f)
            pts[f.name] = (r, c)
    return root, pts


def _src(dots_path):
    root, pts = dots_path
    return (PointsItemList.from_folder(root).split_by_valid_func(lambda o: o.parent.name == "b")
            .label_from_func(lambda o: torch.tensor(pts[o.name])))


def _data(dots_path, tfms=None, bs=4, **kwargs):
    kwargs = {"tfm_y": True, **kwargs}
    return _src(dots_path).transform(tfms, **kwargs).databunch(bs=bs, num_workers=0, device=torch.device("cpu"))


def _dot_position(x: torch.Tensor) -> torch.Tensor:
    """(row, col) of the dot in a transformed image: the centroid of the pixels above half its peak."""
    s = x.sum(0)
    w = (s - s.median()).clamp(min=0)
    w = torch.where(w > 0.5 * w.max(), w, torch.zeros_like(w))
    rows, cols = torch.meshgrid(torch.arange(s.shape[0]), torch.arange(s.shape[1]), indexing="ij")
    return torch.stack([(w * rows).sum() / w.sum(), (w * cols).sum() / w.sum()])


# --- labels, targets, loss ----------------------------------------------------------------------------
def test_points_items_get_points_targets_in_source_pixels(dots_path):
    src = _src(dots_path)
    y = src.train.y
    assert isinstance(y, PointsLabelList) and y.c == 2
    f = src.train.x.items[0]
    torch.testing.assert_close(y.get(0), torch.tensor([dots_path[1][f.name]], dtype=torch.float32))


def test_several_points_per_item_give_two_outputs_each(dots_path):
    root, pts = dots_path
    src = (PointsItemList.from_folder(root).split_by_valid_func(lambda o: o.parent.name == "b")
           .label_from_func(lambda o: [pts[o.name], (5.0, 6.0), (30.0, 40.0)]))
    assert src.train.y.get(0).shape == (3, 2) and src.train.y.c == 6


def test_bad_points_labels_are_refused_naming_the_item(dots_path):
    root, pts = dots_path
    items = PointsItemList.from_folder(root).split_by_valid_func(lambda o: o.parent.name == "b")
    with pytest.raises(ValueError, match="dot_a0.png"):
        items.label_from_func(lambda o: [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="same number of points"):
        items.label_from_func(lambda o: [(1.0, 2.0)] * (1 + o.name.endswith("1.png")))


def test_cnn_learner_on_points_is_a_regression_with_flattened_mse(dots_path):
    data = _data(dots_path, size=(20, 28)).normalize(imagenet_stats)
    learn = cnn_learner(data, models.resnet18, pretrained=False)
    assert learn.loss_func is mse
    assert learn.model[-1][-1].out_features == 2  # the head's last linear layer: 2 * one point
    xb, yb = data.one_batch()
    assert yb.shape == (4, 1, 2)
    pred = learn.model.eval()(xb)
    assert pred.shape == (4, 2)
    assert torch.equal(pred, torch.zeros(4, 2))  # a regression head starts at the image centre, not at noise
    with torch.no_grad():
        learn.model[-1][-1].weight.normal_()
    pred = learn.model(xb)
    torch.testing.assert_close(learn.loss_func(pred, yb), ((pred - yb.view(4, 2)) ** 2).mean())
    assert data.train_ds.y.activation(pred) is pred  # no sigmoid/softmax: the outputs are the coordinates


# --- normalisation ---------------------------------------------------------------------------------------
def test_unit_coordinates_run_from_edge_to_edge_and_round_trip():
    size = (H, W)
    corners = torch.tensor([[-0.5, -0.5], [H - 0.5, W - 0.5], [(H - 1) / 2, (W - 1) / 2]])
    torch.testing.assert_close(points_to_unit(corners, size), torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
    pts = torch.rand(50, 2) * torch.tensor([H, W])
    torch.testing.assert_close(unit_to_points(points_to_unit(pts, size), size), pts)


def test_targets_are_scaled_to_unit_coordinates_and_decode_back_to_pixels(dots_path):
    """Without augmentation, a squish to (20, 28) halves the pixel coordinates; decode gives them back."""
    data = _data(dots_path, size=(20, 28))
    x, y = data.valid_ds[0]
    assert x.shape == (3, 20, 28) and y.shape == (1, 2) and y.abs().max() <= 1
    r, c = data.valid_ds.y.get(0)[0].tolist()
    expected = torch.tensor([[(r + 0.5) / 2 - 0.5, (c + 0.5) / 2 - 0.5]])  # pixel centres scale about the edges
    torch.testing.assert_close(data.valid_ds.y.decode(y, (20, 28)), expected)
    assert "(" in data.valid_ds.y.label_str(y, (20, 28))


# --- points follow their pixels ---------------------------------------------------------------------------
@pytest.mark.parametrize("tfm_kwargs, size", [
    ({"max_rotate": 0, "max_zoom": 1, "max_warp": 0}, (40, 56)),                  # horizontal flips
    ({"flip_vert": True, "max_rotate": 0, "max_zoom": 1, "max_warp": 0}, 40),     # all 8 dihedral + random crop
    ({"do_flip": False, "max_rotate": 30, "max_zoom": 1, "max_warp": 0}, (40, 56)),
    ({"do_flip": False, "max_rotate": 0, "max_zoom": 1.6, "max_warp": 0}, (40, 56)),
    ({"do_flip": False, "max_rotate": 0, "max_zoom": 1, "max_warp": 0.4}, (40, 56)),
    ({"max_rotate": 20, "max_zoom": 1.4, "max_warp": 0.3}, (30, 30)),            # everything + squish
    ({"max_rotate": 20, "max_zoom": 1.4, "max_warp": 0.3}, 32),                  # everything + crop
])
def test_the_point_stays_on_its_dot_under_every_transform(dots_path, tfm_kwargs, size):
    tfms = get_transforms(**{"max_lighting": 0.3, "p_affine": 1.0, **tfm_kwargs})
    data = _data(dots_path, tfms, size=size)
    for i in range(6):
        for _ in range(3):
            x, y = data.train_ds[i]
            found = _dot_position(x)
            target = data.train_ds.y.decode(y, x.shape[-2:])[0]
            assert (found - target).abs().max() < 0.8, (i, found.tolist(), target.tolist())


# --- points leaving the image ---------------------------------------------------------------------------
def test_random_transforms_are_redrawn_so_the_point_stays_in_the_image(tmp_path):
    """A dot 3 px from the left edge under strong zooms, which cut it off more often than not: every draw
    still comes back with its point inside [-1, 1]."""
    rng = np.random.default_rng(1)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(_dot_image(rng, 20.0, 3.0)).save(tmp_path / folder / "edge.png")
    data = (PointsItemList.from_folder(tmp_path).split_by_valid_func(lambda o: o.parent.name == "b")
            .label_from_func(lambda o: torch.tensor([20.0, 3.0]))
            .transform(get_transforms(max_zoom=1.3, max_warp=0, p_affine=1.0), tfm_y=True, size=(40, 56))
            .databunch(bs=1, num_workers=0))
    cols = []
    for _ in range(30):
        x, y = data.train_ds[0]
        assert y.abs().max() <= 1
        cols.append(abs(y[0, 1].item()))
    assert max(cols) - min(cols) > 0.05  # still random: the redraws did not freeze the transform


def test_a_point_that_no_transform_keeps_in_view_is_an_error_naming_the_file(tmp_path):
    """A centre crop (int size) always cuts off a dot at the far right: a clear error, not a silent drop."""
    rng = np.random.default_rng(2)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(_dot_image(rng, 20.0, 53.0)).save(tmp_path / folder / "edge.png")
    src = (PointsItemList.from_folder(tmp_path).split_by_valid_func(lambda o: o.parent.name == "b")
           .label_from_func(lambda o: torch.tensor([20.0, 53.0])))
    with pytest.raises(ValueError, match=r"edge\.png.*tuple size"):
        src.transform(None, tfm_y=True, size=40)


def test_a_label_outside_its_image_is_an_error_hinting_at_row_col(dots_path):
    root, _ = dots_path
    src = (PointsItemList.from_folder(root).split_by_valid_func(lambda o: o.parent.name == "b")
           .label_from_func(lambda o: torch.tensor([10.0, 50.0 + H])))  # a (col, row) mix-up, say
    with pytest.raises(ValueError, match=r"dot_a0\.png.*\(row, col\)"):
        src.transform(None, tfm_y=True, size=(20, 28))


def test_points_without_tfm_y_are_refused(dots_path):
    with pytest.raises(ValueError, match="tfm_y=True"):
        _src(dots_path).transform(get_transforms(), size=(20, 28))


# --- predict and display ----------------------------------------------------------------------------------
class DotFinder(nn.Module):
    """A 'perfect model': it outputs the dot's [-1, 1] position in its input image (channels summed, centroid)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))  # so the Learner has something to optimise

    def forward(self, x):
        pts = torch.stack([_dot_position(img) for img in x])
        return points_to_unit(pts, x.shape[-2:]) + 0 * self.dummy


@pytest.mark.parametrize("size", [(20, 28), 24, (30, 30)])
def test_predict_answers_in_pixels_of_the_original_image(dots_path, size):
    """Squished, cropped or stretched for the model, the prediction still lands on the dot of the original file."""
    data = _data(dots_path, size=size).normalize(imagenet_stats)
    learn = Learner(data, DotFinder())
    root, pts = dots_path
    for f in sorted((root / "b").glob("*.png")):
        point, unit, raw = learn.predict(f)
        assert point.shape == (1, 2) and unit.shape == (1, 2) and raw.shape == (2,)
        assert (point[0] - torch.tensor(pts[f.name])).abs().max() < 0.6, f.name
    point_from_pil, _, _ = learn.predict(Image.open(f))
    torch.testing.assert_close(point_from_pil, point)


def test_exported_points_learner_predicts_the_same_pixels(dots_path, tmp_path):
    data = _data(dots_path, size=(20, 28)).normalize(imagenet_stats)
    learn = cnn_learner(data, models.resnet18, pretrained=False, path=tmp_path)
    f = sorted((dots_path[0] / "b").glob("*.png"))[0]
    expected = learn.predict(f)[0]
    learn.export()
    loaded = load_learner(tmp_path)
    torch.testing.assert_close(loaded.predict(f)[0], expected)


def _scatter_points(ax) -> np.ndarray:
    """(row, col) of the points drawn on an axis (matplotlib stores them as (x, y) = (col, row))."""
    offsets = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    return np.concatenate(offsets)[:, ::-1]


def test_show_batch_marks_each_target_point(dots_path):
    import matplotlib.pyplot as plt

    data = _data(dots_path, size=(20, 28)).normalize(imagenet_stats)
    data.show_batch(rows=2, ds_type="valid")
    axes = [ax for ax in plt.gcf().axes if ax.images]
    assert len(axes) == 4
    _, yb = data.one_batch("valid")
    for ax, y in zip(axes, yb):
        np.testing.assert_allclose(_scatter_points(ax), data.valid_ds.y.decode(y, (20, 28)).numpy(), atol=1e-4)


def test_show_results_puts_targets_beside_predictions(dots_path):
    import matplotlib.pyplot as plt

    data = _data(dots_path, size=(20, 28)).normalize(imagenet_stats)
    learn = Learner(data, DotFinder())
    learn.show_results(rows=2)
    axes = [ax for ax in plt.gcf().axes if ax.images]
    assert len(axes) == 4  # 2 rows x (target, prediction)
    for target_ax, pred_ax in zip(axes[::2], axes[1::2]):  # the finder is right: both marks on the same pixel
        np.testing.assert_allclose(_scatter_points(target_ax), _scatter_points(pred_ax), atol=0.6)


# --- labels that are not points -----------------------------------------------------------------------------
def test_a_points_label_that_is_not_row_col_pairs_names_its_item(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    labels = {"0.png": [1.0, 2.0], "1.png": [1.0, 2.0, 3.0], "2.png": [4.0, 4.0]}
    with pytest.raises(ValueError, match=r"label of 1\.png is \[1\.0, 2\.0, 3\.0\].*\(row, col\) pair"):
        PointsItemList.from_folder(tmp_path).split_none().label_from_func(lambda p: labels[p.name])

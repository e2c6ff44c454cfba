"""Batch augmentation (vision/batch.py) against the one-item reference (TransformPlan.apply_image / apply_mask):
the same random draws must give the same pixels, masks and points."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.vision import ImageList, PointsItemList, SegmentationItemList, get_transforms
from course_utils.vision.batch import augment_batch, batch_grid, lighting_lut, plan_params, resample_batch, to_float_lit
from course_utils.vision.transforms import ResizeMethod, sample_plan

STRONG = get_transforms(flip_vert=True, max_rotate=30, max_zoom=1.5, max_lighting=0.4, max_warp=0.3,
                        p_affine=1.0, p_lighting=1.0)[0]


def _random_image(rng, h, w) -> torch.Tensor:
    """A smooth-ish random uint8 image (3, h, w): bilinear sampling of pure noise would magnify rounding."""
    small = rng.integers(0, 256, size=(h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


@pytest.mark.parametrize("size, method", [((24, 32), None), (20, ResizeMethod.CROP), (20, ResizeMethod.PAD),
                                          (None, None)])
def test_a_batch_equals_each_image_transformed_alone(size, method):
    """Eight images with eight different draws (warp, dihedral flips, rotation, zoom, lighting), resampled
    together in one call, match the one-image reference pixel for pixel (float32 grid vs float64)."""
    rng = np.random.default_rng(0)
    windows, params, expected = [], [], []
    for k in range(8):
        src = (30, 40)
        g = np.random.default_rng(k)
        plan = sample_plan(STRONG, src, size, method, train=True, rng=g)
        pixels = _random_image(rng, *plan.resized)
        expected.append(plan.apply_image(pixels.float() / 255))
        windows.append(plan.window(pixels))
        params.append(plan_params(plan))
    x, grid = augment_batch(torch.stack(windows), torch.stack([p["aug"] for p in params]),
                            torch.stack([p["light"] for p in params]))
    assert grid is not None and x.shape == (8, *expected[0].shape)
    torch.testing.assert_close(x, torch.stack(expected), atol=2e-4, rtol=0)


def test_masks_follow_the_same_grids_with_nearest_sampling():
    """Masks through the batch grids equal the one-item reference and contain only ids that were there."""
    rng = np.random.default_rng(1)
    windows, refs, augs = [], [], []
    for k in range(6):
        plan = sample_plan(STRONG, (32, 48), 24, ResizeMethod.CROP, train=True, rng=np.random.default_rng(10 + k))
        mask = torch.from_numpy(rng.integers(0, 12, size=(1, *plan.resized))).long()
        refs.append(plan.apply_mask(mask))
        windows.append(plan.window(mask))
        augs.append(plan_params(plan)["aug"])
    grid = batch_grid(torch.stack(augs), (24, 24))
    out = resample_batch(torch.stack(windows).float(), grid, "nearest").round().long()
    ref = torch.stack(refs)
    assert out.dtype == torch.long and set(out.unique().tolist()) <= set(range(12))
    assert (out == ref).float().mean() > 0.999  # a pixel exactly between two may round either way


def test_identity_draws_skip_the_resample_and_unlit_images_are_untouched():
    pixels = torch.randint(0, 256, (3, 3, 8, 10), dtype=torch.uint8)
    aug = torch.eye(3).expand(3, 3, 3).clone()
    assert batch_grid(aug, (8, 10)) is None
    x, grid = augment_batch(pixels, aug, torch.full((3, 2), float("nan")))
    assert grid is None and torch.equal(x, pixels.float() / 255)
    light = torch.tensor([[float("nan"), float("nan")], [0.7, float("nan")], [float("nan"), 1.5]])
    lit = to_float_lit(pixels, light)
    assert torch.equal(lit[0], x[0])
    assert lit[1].mean() > x[1].mean()  # brightness 0.7 brightens
    assert (lit[2] - lit[2].mean()).abs().mean() > (x[2] - x[2].mean()).abs().mean()  # contrast 1.5 spreads
    lut = lighting_lut(light)
    assert torch.equal(lut[0], torch.arange(256) / 255) and (lut[1:].diff(dim=1) >= 0).all()  # curves keep order


def test_the_affine_fast_path_and_the_perspective_path_give_the_same_grid():
    """Without a warp the grid comes from torch's affine_grid; the general (perspective) formula must agree."""
    plans = [sample_plan(STRONG, (30, 40), (24, 32), None, train=True, rng=np.random.default_rng(k)) for k in range(6)]
    aug = torch.stack([plan_params(p)["aug"] for p in plans])
    aug[:, 2] = torch.tensor([0.0, 0.0, 1.0])  # drop the perspective row: an affine batch
    fast = batch_grid(aug, (24, 32))
    tilted = aug.clone()
    tilted[0, 2, 0] = 1e-30  # a negligible perspective term forces the general path
    torch.testing.assert_close(batch_grid(tilted, (24, 32)), fast, atol=1e-5, rtol=0)
    reference = torch.nn.functional.affine_grid(aug[:, :2], [6, 1, 24, 32], align_corners=False)
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=0)  # the same pixel-centre convention as torch


def _dataset(tmp_path, kind):
    rng = np.random.default_rng(2)
    for split in ("train", "valid"):
        for i in range(6):
            arr = np.array(Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).resize((30, 24)))
            (tmp_path / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(tmp_path / split / f"{i}.png")
            Image.fromarray(rng.integers(0, 5, (24, 30), dtype=np.uint8)).save(tmp_path / split / f"{i}_m.gif")
    if kind == "points":
        return (PointsItemList.from_folder(tmp_path, extensions=[".png"]).split_by_folder()
                .label_from_func(lambda p: [11.0 + int(p.stem), 14.0]))
    if kind == "masks":
        return (SegmentationItemList.from_folder(tmp_path, extensions=[".png"]).split_by_folder()
                .label_from_func(lambda p: p.with_name(f"{p.stem}_m.gif"), classes=list("abcde")))
    return ImageList.from_folder(tmp_path, extensions=[".png"]).split_by_folder().label_from_func(lambda p: "x")


@pytest.mark.parametrize("kind", ["category", "points", "masks"])
def test_loader_batches_are_the_same_with_and_without_batch_transforms(tmp_path, kind):
    """End to end through the DataLoader: with the same seed both paths draw the same transforms, so the
    training batches (images and targets) agree."""
    tfms = get_transforms(max_rotate=20, max_zoom=1.3, max_lighting=0.3, max_warp=0.2, p_affine=1.0)
    src = _dataset(tmp_path, kind)
    batches = []
    for batched in (True, False):
        data = src.transform(tfms, size=(16, 20), tfm_y=kind != "category").databunch(
            bs=6, num_workers=0, batch_tfms=batched)
        torch.manual_seed(5)
        batches.append(data.one_batch())
    (xb, yb), (xi, yi) = batches
    torch.testing.assert_close(xb, xi, atol=2e-4, rtol=0)
    if kind == "masks":
        assert (yb == yi).float().mean() > 0.999
    else:
        torch.testing.assert_close(yb, yi)


def test_points_stay_on_their_pixel_in_a_batch(tmp_path):
    """A bright dot drawn at the labelled point is still under the (moved) point after batch augmentation."""
    rng = np.random.default_rng(3)
    for i in range(8):
        arr = np.zeros((48, 64, 3), np.uint8)
        r, c = rng.integers(14, 34), rng.integers(18, 46)
        arr[r - 1:r + 2, c - 1:c + 2] = 255
        (tmp_path / "train").mkdir(exist_ok=True)
        Image.fromarray(arr).save(tmp_path / "train" / f"{i}_{r}_{c}.png")
    src = (PointsItemList.from_folder(tmp_path).split_none()
           .label_from_func(lambda p: [float(p.stem.split("_")[1]), float(p.stem.split("_")[2])]))
    tfms = get_transforms(flip_vert=True, max_rotate=25, max_zoom=1.2, max_lighting=0, max_warp=0.2, p_affine=1.0)
    data = src.transform(tfms, tfm_y=True, size=(48, 64)).databunch(bs=8, num_workers=0)
    x, y = data.one_batch()
    pts = data.train_ds.y.decode(y[0], (48, 64))
    for k in range(8):
        r, c = data.train_ds.y.decode(y[k], (48, 64))[0].round().long().tolist()
        assert x[k, :, r - 1:r + 2, c - 1:c + 2].max() > 0.5, f"no dot under the point of image {k}"
    assert pts.shape == (1, 2)

"""Augmentation and resizing: get_transforms' semantics, and TransformPlan moving images, masks and points together."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.vision import ImageList, ResizeMethod, get_transforms
from course_utils.vision.image import image_to_tensor
from course_utils.vision.transforms import ImageTransforms, sample_plan


def _save_png(arr: np.ndarray, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _one_image_data(tmp_path, arr: np.ndarray, tfms, **kwargs):
    """A DataBunch whose train and valid sets both hold exactly this image (PNG, so pixels are exact)."""
    for split in ("train", "valid"):
        _save_png(arr, tmp_path / split / "a" / "img.png")
    src = ImageList.from_folder(tmp_path).split_by_folder().label_from_folder()
    return src.transform(tfms, **kwargs).databunch(bs=1, num_workers=0)


def _dihedral_images(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of a square image (C, H, W), built from flips and a transpose."""
    out = []
    for t in (x, x.transpose(1, 2)):
        out += [t, t.flip(1), t.flip(2), t.flip(1).flip(2)]
    return out


def test_get_transforms_returns_random_train_and_plain_valid_settings():
    train, valid = get_transforms()
    assert train.is_random and train.do_flip and not train.flip_vert
    assert not valid.is_random and valid == ImageTransforms()


def test_flip_vert_gives_exactly_the_eight_dihedral_symmetries(tmp_path):
    """With only flips on, every training draw is one of the 8 symmetries of the square, and all 8 occur."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    tfms = get_transforms(flip_vert=True, max_rotate=0, max_zoom=1, max_lighting=0, max_warp=0)
    data = _one_image_data(tmp_path, arr, tfms, size=16)
    original = image_to_tensor(Image.fromarray(arr))
    targets = _dihedral_images(original)
    assert len({tuple(t.flatten().tolist()) for t in targets}) == 8  # the test image has no symmetry
    seen = set()
    for _ in range(80):
        x, _ = data.train_ds[0]
        assert x.shape == (3, 16, 16)
        matches = [k for k, t in enumerate(targets) if torch.allclose(x, t, atol=1e-5, rtol=0)]
        assert len(matches) == 1, "a training draw is not one of the 8 dihedral symmetries"
        seen.add(matches[0])
    assert seen == set(range(8))


def test_do_flip_without_flip_vert_only_mirrors_left_right(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    tfms = get_transforms(max_rotate=0, max_zoom=1, max_lighting=0, max_warp=0)
    data = _one_image_data(tmp_path, arr, tfms, size=16)
    original = image_to_tensor(Image.fromarray(arr))
    outs = [data.train_ds[0][0] for _ in range(40)]
    n_plain = sum(torch.allclose(o, original, atol=1e-5) for o in outs)
    n_mirror = sum(torch.allclose(o, original.flip(2), atol=1e-5) for o in outs)
    assert n_plain + n_mirror == 40
    assert n_plain > 0 and n_mirror > 0


def test_valid_set_gets_no_random_augmentation(tmp_path):
    """Same validation item twice -> identical tensors, the centre crop of the image."""
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    data = _one_image_data(tmp_path, arr, get_transforms(flip_vert=True, max_rotate=30, max_lighting=0.5), size=24)
    a, _ = data.valid_ds[0]
    b, _ = data.valid_ds[0]
    assert torch.equal(a, b)
    expected = image_to_tensor(Image.fromarray(arr))[:, :, 8:32]
    torch.testing.assert_close(a, expected, atol=1e-6, rtol=0)


def test_train_set_is_augmented(tmp_path):
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    data = _one_image_data(tmp_path, arr, get_transforms(flip_vert=True, max_rotate=30, max_lighting=0.3), size=16)
    outs = [data.train_ds[0][0] for _ in range(6)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])


def _stripes(h: int, w: int) -> np.ndarray:
    """Four vertical stripes of different colours, each w/4 wide."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    for k, c in enumerate(colours):
        arr[:, k * w // 4:(k + 1) * w // 4] = c
    return arr


def test_int_size_centre_crops_to_a_square_keeping_the_aspect_ratio(tmp_path):
    """A 32x64 image with size=32 becomes its middle 32x32: stripes 2 and 3, 16 px each, undistorted."""
    arr = _stripes(32, 64)
    data = _one_image_data(tmp_path, arr, None, size=32)
    x, _ = data.valid_ds[0]
    assert x.shape == (3, 32, 32)
    expected = image_to_tensor(Image.fromarray(arr))[:, :, 16:48]
    torch.testing.assert_close(x, expected, atol=1e-6, rtol=0)


def test_tuple_size_squishes_the_whole_image(tmp_path):
    """size=(32, 32) keeps all four stripes, each squeezed to 8 px wide."""
    arr = _stripes(32, 64)
    data = _one_image_data(tmp_path, arr, None, size=(32, 32))
    x, _ = data.valid_ds[0]
    assert x.shape == (3, 32, 32)
    centres = [x[:, 16, 8 * k + 4] for k in range(4)]  # middle column of each squeezed stripe
    colours = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)]
    for got, want in zip(centres, colours):
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float32), atol=1e-6, rtol=0)


def test_tuple_size_can_change_the_aspect_ratio(tmp_path):
    arr = _stripes(32, 64)
    data = _one_image_data(tmp_path, arr, None, size=(20, 12))
    assert data.valid_ds[0][0].shape == (3, 20, 12)


def test_crop_method_on_train_picks_random_windows_inside_the_image(tmp_path):
    arr = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (16, 1, 3))  # columns encode their index
    tfms = ImageTransforms(p_affine=0.5)  # random (so the crop moves) yet geometry-free
    assert tfms.is_random
    data = _one_image_data(tmp_path, arr, (tfms, None), size=16)
    starts = set()
    for _ in range(20):
        x, _ = data.train_ds[0]
        cols = (x[0, 0] * 255 / 4).round().long().tolist()
        assert cols == list(range(cols[0], cols[0] + 16))  # a contiguous, unflipped 16-column window
        starts.add(cols[0])
    assert len(starts) > 1 and min(starts) >= 0 and max(starts) <= 48


def test_resize_method_pad_fits_the_whole_image(tmp_path):
    arr = _stripes(16, 32)
    data = _one_image_data(tmp_path, arr, None, size=32, resize_method=ResizeMethod.PAD)
    x, _ = data.valid_ds[0]
    assert x.shape == (3, 32, 32)
    # the whole width is kept: the middle row shows all four stripes left to right
    row = x[:, 16]
    for k, want in enumerate([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)]):
        torch.testing.assert_close(row[:, 8 * k + 4], torch.tensor(want, dtype=torch.float32), atol=1e-6, rtol=0)


# --- TransformPlan: points and masks follow the pixels ----------------------------------------------
def _random_plans(n: int, src_size=(32, 40), size=32, **tfm_kwargs):
    tfms = ImageTransforms(**{"do_flip": True, "flip_vert": True, "max_rotate": 30.0, "max_zoom": 1.3,
                              "p_affine": 1.0, **tfm_kwargs})
    rng = np.random.default_rng(123)
    return [sample_plan(tfms, src_size, size, train=True, rng=rng) for _ in range(n)]


@pytest.mark.parametrize("max_warp", [0.0, 0.2])
def test_apply_points_moves_a_point_exactly_with_its_pixel(max_warp):
    """A single bright pixel and its coordinates, pushed through the same random plan
    (crop, flips, rotation, zoom, optionally perspective warp), land together."""
    h, w = 32, 40
    checked = 0
    for k, plan in enumerate(_random_plans(60, (h, w), max_warp=max_warp)):
        r, c = 8 + (k * 5) % 16, 10 + (k * 7) % 20
        img = torch.zeros(3, h, w)
        img[:, r, c] = 1.0
        assert plan.resized == (h, w)
        out = plan.apply_image(img)
        (pr, pc), = plan.apply_points(torch.tensor([[float(r), float(c)]])).tolist()
        th, tw = plan.out_size
        if not (1 <= pr <= th - 2 and 1 <= pc <= tw - 2):
            continue  # the point left the output window: nothing to compare
        flat = int(out[0].argmax())
        ar, ac = divmod(flat, tw)
        assert out[0, ar, ac] > 0.2, "the bright pixel vanished though its point is inside the output"
        assert abs(ar - pr) <= 1.0 and abs(ac - pc) <= 1.0, (k, (ar, ac), (pr, pc))
        checked += 1
    assert checked >= 30


def test_apply_points_is_exact_for_flips_and_crops():
    """Without interpolation (flips, integer crop offsets) points land exactly on their pixel."""
    tfms = ImageTransforms(do_flip=True, flip_vert=True, p_affine=0.0)
    rng = np.random.default_rng(5)
    for _ in range(20):
        plan = sample_plan(tfms, (24, 30), 24, train=True, rng=rng)
        img = torch.zeros(1, 24, 30)
        img[0, 5, 2] = 1.0
        out = plan.apply_image(img)
        (pr, pc), = plan.apply_points(torch.tensor([[5.0, 2.0]])).tolist()
        if not (0 <= round(pr) < 24 and 0 <= round(pc) < 24):
            assert out.max() == 0  # cropped away
            continue
        assert pr == pytest.approx(round(pr), abs=1e-5) and pc == pytest.approx(round(pc), abs=1e-5)
        assert out[0, round(pr), round(pc)] == pytest.approx(1.0, abs=1e-5)


def test_apply_points_without_augmentation_is_the_centre_crop_shift():
    plan = sample_plan(None, (32, 64), 32, train=False)
    pts = torch.tensor([[0.0, 16.0], [10.0, 40.0], [31.0, 47.0]])
    torch.testing.assert_close(plan.apply_points(pts), pts - torch.tensor([0.0, 16.0]))


def test_apply_mask_never_invents_class_ids():
    ids = torch.tensor([0, 3, 7])
    g = torch.Generator().manual_seed(0)
    mask = ids[torch.randint(0, 3, (1, 32, 40), generator=g)]
    mask[:, 8:20, 10:30] = 7  # a big blob, so resampling crosses many borders
    for plan in _random_plans(25, (32, 40), max_warp=0.3, max_lighting=0.5, p_lighting=1.0):
        out = plan.apply_mask(mask)
        assert out.dtype == mask.dtype
        assert out.shape == (1, *plan.out_size)
        assert set(out.unique().tolist()) <= {0, 3, 7}


def test_apply_mask_follows_the_image_geometry():
    """The mask of a bright square and the square itself end up in the same place."""
    for plan in _random_plans(10, (32, 40), max_zoom=1.0):
        mask = torch.zeros(1, 32, 40, dtype=torch.long)
        mask[:, 10:22, 12:26] = 1
        img = mask.float().expand(3, -1, -1).clone()
        out_img, out_mask = plan.apply_image(img), plan.apply_mask(mask)
        agree = ((out_img[0] > 0.5).long() == out_mask[0]).float().mean()
        assert agree > 0.97


def test_lighting_changes_brightness_but_keeps_the_order_of_pixel_values():
    tfms = ImageTransforms(max_lighting=0.4, p_lighting=1.0)
    rng = np.random.default_rng(9)
    perm = torch.randperm(768, generator=torch.Generator().manual_seed(1))
    x = torch.linspace(0.05, 0.95, 768)[perm].view(3, 16, 16)  # distinct values, well inside (0, 1)
    for _ in range(5):
        plan = sample_plan(tfms, (16, 16), 16, train=True, rng=rng)
        out = plan.apply_image(x)
        assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
        assert not torch.allclose(out, x)
        assert torch.equal(out.flatten().argsort(), x.flatten().argsort())


def test_a_numpy_size_crops_like_the_lesson_camvid_src_size_halved():
    """CamVid passes `src_size // 2` (a numpy array): not a list, so it crops (the CamVid lesson)."""
    import numpy as np

    from course_utils.vision.transforms import ResizeMethod, _target_size

    assert _target_size(np.array([360, 480]), (720, 960)) == ((360, 480), ResizeMethod.CROP)


def test_without_a_generator_plans_come_from_torchs_seed_and_cover_every_draw():
    """Plans drawn without `rng` take their numbers from torch's generator: a seed repeats them exactly, and over
    many items every dihedral symmetry, both lighting draws and the zoom's full range turn up."""
    tfms = get_transforms(flip_vert=True, max_lighting=0.2, max_zoom=1.5, max_warp=0.0)[0]

    def plans(seed: int, n: int):
        torch.manual_seed(seed)
        return [sample_plan(tfms, (40, 60), 32, train=True) for _ in range(n)]
    a, b, c = plans(3, 50), plans(3, 50), plans(4, 50)
    assert all(np.array_equal(p.aug, q.aug) and p.brightness == q.brightness and p.offset == q.offset
               for p, q in zip(a, b))
    assert any(not np.array_equal(p.aug, q.aug) for p, q in zip(a, c))
    many = plans(0, 2000)
    flips = {tuple(np.sign(np.round(p.aug[:2, :2], 6)).astype(int).ravel()) for p in many if np.allclose(
        np.abs(p.aug[:2, :2]), np.round(np.abs(p.aug[:2, :2])))}  # the plans with no zoom/rotation: a pure symmetry
    assert len(flips) == 8
    lit = [p.brightness for p in many if p.brightness is not None]
    assert 0.65 < len(lit) / len(many) < 0.85 and 0.4 <= min(lit) < 0.41 and 0.59 < max(lit) <= 0.6
    offsets = {p.offset for p in many}
    assert len(offsets) > 1  # the random crop moves the window
    torch.manual_seed(0)
    sample_plan(None, (40, 60), 32, train=False)  # nothing random: nothing drawn
    assert torch.equal(torch.rand(1), torch.manual_seed(0) and torch.rand(1))

"""Segmentation data (lesson 3, CamVid): masks as targets, moved exactly like their images, and shown with them."""
from __future__ import annotations

from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from helpers import N_SEG, N_SEG_VALID, SEG_CODES, SEG_COLOURS, camvid_src
from PIL import Image

from course_utils.data_block import TransformConfig
from course_utils.learner import Metric, load_learner
from course_utils.metrics import masked_accuracy
from course_utils.vision import (
    SegmentationItemList,
    get_transforms,
    imagenet_stats,
    open_mask,
    unet_learner,
)
from course_utils.vision.segmentation import PixelCrossEntropy, SegmentationLabelList

VOID = SEG_CODES.index("Void")


def _classes_from_colours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Read each pixel's class back from its colour: (nearest palette colour, whether the pixel is that colour)."""
    palette = torch.from_numpy(SEG_COLOURS).float() / 255
    dist = (x.permute(1, 2, 0)[:, :, None, :] - palette).norm(dim=-1)  # (H, W, n_colours)
    best, cls = dist.min(dim=-1)
    return cls, best < 0.05


def test_split_by_valid_txt_and_masks_as_targets(camvid_path):
    src = camvid_src(camvid_path)
    assert (len(src.train), len(src.valid)) == (N_SEG - N_SEG_VALID, N_SEG_VALID)
    assert [p.name for p in src.valid.x.items] == [f"f{i}.png" for i in range(N_SEG - N_SEG_VALID, N_SEG)]
    assert isinstance(src.train.y, SegmentationLabelList) and src.train.y.classes == SEG_CODES
    mask = src.train.y.get(0)
    assert mask.shape == (1, 64, 64) and mask.dtype == torch.long


def test_databunch_gives_image_and_mask_batches_and_a_per_pixel_loss(camvid_data):
    x, y = camvid_data.one_batch()
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (2, 1, 32, 32) and y.dtype == torch.long
    assert camvid_data.c == len(SEG_CODES) and camvid_data.classes == SEG_CODES
    loss = camvid_data.loss_func
    assert isinstance(loss, PixelCrossEntropy)
    logits = torch.randn(2, len(SEG_CODES), 32, 32)
    expected = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1).reshape(-1, len(SEG_CODES)), y.flatten())
    assert loss(logits, y).item() == pytest.approx(expected.item(), rel=1e-5)  # void pixels count in the loss


def test_the_mask_stays_aligned_with_its_image_through_every_random_transform(camvid_path):
    """Strong flips, rotation, zoom and warp: wherever a pixel still shows one pure class colour, the mask says that
    class; masks get no new ids (nearest sampling)."""
    tfms = get_transforms(flip_vert=True, max_rotate=30, max_zoom=1.5, max_warp=0.3, max_lighting=0, p_affine=1.0)
    data = camvid_src(camvid_path).transform(tfms, size=48, tfm_y=True).databunch(bs=2, num_workers=0)
    originals = set(torch.cat([data.train_ds.y.get(i).unique() for i in range(len(data.train_ds))]).tolist())
    seen = set()
    for _ in range(6):
        for i in range(len(data.train_ds)):
            x, y = data.train_ds[i]
            cls, pure = _classes_from_colours(x)
            assert pure.float().mean() > 0.5
            assert (cls[pure] == y[0][pure]).float().mean() > 0.99
            seen.add(tuple(x[:, 24, 24].tolist()))
            assert set(y.unique().tolist()) <= originals
    assert len(seen) > len(data.train_ds)  # the draws really were random


def test_lighting_changes_the_image_but_never_the_mask(camvid_path):
    tfms = get_transforms(do_flip=False, max_rotate=0, max_zoom=1, max_warp=0, max_lighting=0.5, p_lighting=1.0)
    data = camvid_src(camvid_path).transform(tfms, size=64, tfm_y=True).databunch(bs=2, num_workers=0)
    x, y = data.train_ds[0]
    assert torch.equal(y, data.train_ds.y.get(0))
    assert not torch.allclose(x, data.valid_ds.x.apply_tfms(data.train_ds.x.get(0), None, data.train_ds.y, None,
                                                             TransformConfig(size=64, tfm_y=False))[0])


def test_the_mask_is_resized_with_nearest_neighbour_like_its_image(camvid_path):
    """Validation (no augmentation) at half size: the mask is the nearest-neighbour shrink of the original."""
    data = camvid_src(camvid_path).transform(get_transforms(), size=32, tfm_y=True).databunch(bs=2, num_workers=0)
    _, y = data.valid_ds[0]
    full = data.valid_ds.y.get(0)[0].numpy().astype(np.uint8)
    expected = np.asarray(Image.fromarray(full).resize((32, 32), Image.Resampling.NEAREST))
    assert np.array_equal(y[0].numpy(), expected)


def test_labelling_without_classes_says_to_pass_the_codes(camvid_path):
    src = SegmentationItemList.from_folder(camvid_path / "images").split_by_fname_file("../valid.txt")
    with pytest.raises(ValueError, match="classes=codes"):
        src.label_from_func(lambda x: camvid_path / "labels" / f"{x.stem}_P{x.suffix}")


def test_a_missing_mask_is_named_with_its_image(camvid_path):
    src = SegmentationItemList.from_folder(camvid_path / "images").split_by_fname_file("../valid.txt")
    with pytest.raises(FileNotFoundError, match=r"f0\.png.*f0_mask\.png"):
        src.label_from_func(lambda x: camvid_path / "labels" / f"{x.stem}_mask.png", classes=SEG_CODES)


def test_forgetting_tfm_y_is_a_clear_error(camvid_path):
    with pytest.raises(ValueError, match="tfm_y=True"):
        camvid_src(camvid_path).transform(get_transforms(), size=32, tfm_y=False)


def test_a_mask_with_an_unknown_class_id_names_the_file(tmp_path):
    Image.fromarray(np.full((4, 4), 40, dtype=np.uint8)).save(tmp_path / "bad_P.png")
    with pytest.raises(ValueError, match=r"bad_P\.png.*class id 40.*6 classes"):
        open_mask(tmp_path / "bad_P.png", n_classes=len(SEG_CODES))


def test_a_colour_mask_is_rejected_with_the_file_name(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "rgb_P.png")
    with pytest.raises(ValueError, match=r"rgb_P\.png.*single-channel"):
        open_mask(tmp_path / "rgb_P.png")


def test_a_mask_of_another_size_than_its_image_names_the_image(camvid_path, tmp_path):
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        Image.open(camvid_path / "images" / f"f{i}.png").save(tmp_path / "images" / f"f{i}.png")
        Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(tmp_path / "labels" / f"f{i}_P.png")
    src = (SegmentationItemList.from_folder(tmp_path / "images").split_by_idx([2])
           .label_from_func(lambda x: tmp_path / "labels" / f"{x.stem}_P.png", classes=SEG_CODES))
    with pytest.raises(ValueError, match=r"f0\.png is 32x32 pixels but the image is 64x64"):
        src.transform(get_transforms(), size=32, tfm_y=True)


def test_masked_accuracy_in_the_progress_table_is_the_hand_computed_share_of_non_void_pixels(camvid_path, tmp_path):
    data = (camvid_src(camvid_path).transform(get_transforms(), size=32, tfm_y=True)
            .databunch(bs=2, val_bs=N_SEG_VALID, num_workers=0).normalize(imagenet_stats))
    acc = partial(masked_accuracy, void_code=VOID)
    learn = unet_learner(data, "resnet18", metrics=acc, pretrained=False, path=tmp_path)
    preds, targs = learn.get_preds()
    keep = targs[:, 0] != VOID
    by_hand = (preds.argmax(dim=1)[keep] == targs[:, 0][keep]).float().mean().item()
    assert Metric(acc).name == "masked_accuracy"
    assert learn.validate()["masked_accuracy"] == pytest.approx(by_hand, abs=1e-6)


def test_show_batch_draws_masks_with_a_legend_of_class_names(camvid_data):
    camvid_data.show_batch(rows=2)
    fig = plt.gcf()
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names and set(names) <= set(SEG_CODES)
    assert len([ax for ax in fig.axes if ax.images]) == 2  # rows * rows items, but the batch holds only 2
    assert all(len(ax.images) == 2 for ax in fig.axes if ax.images)  # the image, and the mask over it


def test_show_results_shows_input_truth_and_prediction_side_by_side(camvid_data, tmp_path):
    learn = unet_learner(camvid_data, "resnet18", pretrained=False, path=tmp_path)
    learn.show_results(rows=2)
    fig = plt.gcf()
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "truth", "prediction"]
    assert len(fig.axes) == 6 and fig.legends


def test_predict_and_load_learner_give_the_same_mask(camvid_path, tmp_path):
    codes = np.loadtxt(camvid_path / "codes.txt", dtype=str)  # numpy strings, as the lesson reads them
    data = (SegmentationItemList.from_folder(camvid_path / "images").split_by_fname_file("../valid.txt")
            .label_from_func(lambda x: camvid_path / "labels" / f"{x.stem}_P{x.suffix}", classes=codes)
            .transform(get_transforms(), size=32, tfm_y=True).databunch(bs=2, num_workers=0)
            .normalize(imagenet_stats))
    learn = unet_learner(data, "resnet18", pretrained=False, path=tmp_path)
    img = camvid_path / "images" / "f7.png"
    mask, same, probs = learn.predict(img)
    assert mask.shape == (1, 32, 32) and mask.dtype == torch.long and torch.equal(mask, same)
    assert probs.shape == (len(SEG_CODES), 32, 32)
    assert torch.allclose(probs.sum(0), torch.ones(32, 32), atol=1e-5)
    learn.export()
    loaded = load_learner(tmp_path)
    mask2, _, probs2 = loaded.predict(img)
    assert torch.equal(mask, mask2) and torch.allclose(probs, probs2, atol=1e-5)
    assert loaded.data.classes == SEG_CODES


def _seg_folder(tmp_path, codes_text):
    """Two 8x8 images with masks holding ids 0..3, and a codes.txt beside the images' folder."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{i}.png")
        Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 4).save(tmp_path / "labels" / f"{i}.png")
    (tmp_path / "codes.txt").write_text(codes_text)
    return SegmentationItemList.from_folder(tmp_path / "images").split_none()


def test_a_blank_line_in_codes_txt_is_refused_naming_the_line(tmp_path):
    """np.loadtxt drops the blank line, so 'Car' (id 3) would become id 2: refused, not shifted."""
    from course_utils.vision.segmentation import read_codes
    src = _seg_folder(tmp_path, "Sky\n\nRoad\nCar\n")
    codes = np.loadtxt(tmp_path / "codes.txt", dtype=str)
    with pytest.raises(ValueError, match=r"codes.txt, line 2, is blank, but line i names class id i"):
        src.label_from_func(lambda p: p.parent.parent / "labels" / p.name, classes=codes)
    with pytest.raises(ValueError, match=r"codes.txt, line 2, is blank"):
        read_codes(tmp_path / "codes.txt")
    (tmp_path / "codes.txt").write_text("Sky\nVoid\nRoad\nCar\n\n")  # a trailing blank line is harmless
    assert read_codes(tmp_path / "codes.txt") == ["Sky", "Void", "Road", "Car"]
    ll = src.label_from_func(lambda p: p.parent.parent / "labels" / p.name, classes=read_codes(tmp_path / "codes.txt"))
    assert ll.train.y.classes == ["Sky", "Void", "Road", "Car"]


# --- masks that are not class codes -------------------------------------------------------------------------
def test_a_colour_mask_is_refused_saying_how_to_convert_it(tmp_path):
    Image.fromarray(np.array([[[128, 64, 128], [64, 0, 128]]], dtype=np.uint8)).save(tmp_path / "c_P.png")
    with pytest.raises(ValueError, match=r"c_P\.png is a RGB image.*colour table.*8-bit grey PNG"):
        open_mask(tmp_path / "c_P.png")

"""Bounding boxes (vision/boxes.py): COCO annotations, boxes that move with their image, the padding collate."""
from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle
from PIL import Image

from course_utils.download import get_dataset
from course_utils.vision import ObjectItemList, bb_pad_collate, get_annotations, get_transforms
from course_utils.vision.boxes import ObjectCategoryList, move_boxes, unit_to_pixels
from course_utils.vision.transforms import (
    ResizeMethod,
    dihedral_matrix,
    rotation_matrix,
    sample_plan,
    warp_matrix,
    zoom_matrix,
)


def _moved(box, src, aug=np.eye(3), size=None, method=None):
    """A box [top, left, bottom, right] in pixels of a `src` (h, w) image, through the validation resize to
    `size` and then the geometry `aug`: the moved boxes in output pixels."""
    plan = sample_plan(None, src, size, method, train=False)
    plan.aug = aug
    moved, _ = move_boxes(torch.tensor([box], dtype=torch.float32), plan)
    return unit_to_pixels(moved, plan.out_size).tolist()


# --- each transform against corners computed by hand -------------------------------------------------
S = 10 * math.sqrt(2)  # half the diagonal of a 20 px square


@pytest.mark.parametrize("name, src, aug, box, expected", [
    # (100 x 200): a left-right flip sends columns c -> 200 - c
    ("flip x", (100, 200), dihedral_matrix(1), [10, 20, 30, 60], [10, 140, 30, 180]),
    # an upside-down flip sends rows r -> 100 - r
    ("flip y", (100, 200), dihedral_matrix(2), [10, 20, 30, 60], [70, 20, 90, 60]),
    # the transpose of a square swaps rows and columns
    ("transpose", (100, 100), dihedral_matrix(4), [10, 20, 30, 60], [20, 10, 60, 30]),
    # 90 degrees: the matrix maps output (x, y) to input (-y, x), so input (x, y) lands at (y, -x)
    ("rotate 90", (100, 100), rotation_matrix(90, (100, 100)), [10, 20, 30, 60], [40, 10, 80, 30]),
    # 45 degrees: a centred 20 px square turns into a diamond whose bounding box reaches half its diagonal out
    ("rotate 45", (100, 100), rotation_matrix(45, (100, 100)), [40, 40, 60, 60], [50 - S, 50 - S, 50 + S, 50 + S]),
    # zoom x2 on the centre doubles distances from it
    ("zoom", (100, 100), zoom_matrix(2, 0, 0), [40, 40, 60, 60], [30, 30, 70, 70]),
    # warp (top edge shrunk to 0.8, bottom widened to 1.2): the column band 30-70 spans 25-75 at the top (0.4/0.8)
    # and 33.3-66.7 at the bottom (0.4/1.2); its bounding box is the wider one
    ("warp", (100, 100), warp_matrix(0, 0.2), [0, 30, 100, 70], [0, 25, 100, 75]),
])
def test_box_corners_move_like_the_image(name, src, aug, box, expected):
    np.testing.assert_allclose(_moved(box, src, aug), [expected], atol=1e-4, err_msg=name)


@pytest.mark.parametrize("size, method, box, expected", [
    ((50, 50), None, [10, 20, 30, 60], [5, 5, 15, 15]),  # squish (100, 200) -> (50, 50): rows / 2, columns / 4
    (50, None, [40, 100, 60, 140], [20, 25, 30, 45]),  # crop: halve to (50, 100), centre window from column 25
    (50, ResizeMethod.PAD, [0, 0, 100, 200], [12, 0, 37, 50]),  # pad: quarter to (25, 50), the band it fills
])
def test_boxes_follow_resizing_cropping_and_padding(size, method, box, expected):
    np.testing.assert_allclose(_moved(box, (100, 200), size=size, method=method), [expected], atol=1e-4)


def test_boxes_partly_out_of_view_are_clipped_and_boxes_fully_out_are_dropped():
    # the centre crop (columns 25-75 of the halved image) cuts a box at its left edge...
    np.testing.assert_allclose(_moved([10, 20, 30, 60], (100, 200), size=50), [[5, 0, 15, 5]], atol=1e-4)
    # ...and a box left of column 25 entirely disappears
    assert _moved([10, 0, 30, 40], (100, 200), size=50) == []
    # zoom x2 towards the right: the box now starts left of the image, and is clipped to it
    np.testing.assert_allclose(_moved([40, 40, 60, 60], (100, 100), zoom_matrix(2, 0.5, 0)), [[30, 0, 70, 20]],
                               atol=1e-4)
    assert _moved([0, 0, 10, 10], (100, 100), zoom_matrix(2, 0, 0)) == []  # pushed out past the corner


def test_dropped_boxes_take_their_classes_with_them():
    y_list = ObjectCategoryList([], ["background", "a", "b", "c"])
    plan = sample_plan(None, (100, 200), 50, None, train=False)
    boxes = torch.tensor([[10, 0, 30, 40], [40, 100, 60, 140], [10, 20, 30, 60]], dtype=torch.float32)
    moved, ids = y_list.transform_target((boxes, torch.tensor([1, 2, 3])), plan)
    assert ids.tolist() == [2, 3] and moved.shape == (2, 4)
    assert ((moved >= -1) & (moved <= 1)).all()


# --- through the data block chain ------------------------------------------------------------------------
def _rect_dataset(tmp_path, n=8):
    """Black 48x64 images, each with one white rectangle labelled by its exact box."""
    rng = np.random.default_rng(0)
    labels = {}
    for split in ("train", "valid"):
        (tmp_path / split).mkdir()
        for i in range(n):
            t, l = int(rng.integers(14, 20)), int(rng.integers(18, 30))
            b, r = t + int(rng.integers(8, 14)), l + int(rng.integers(8, 16))
            arr = np.zeros((48, 64, 3), np.uint8)
            arr[t:b, l:r] = 255
            Image.fromarray(arr).save(tmp_path / split / f"{i}.png")
            labels[f"{split}/{i}.png"] = ([[t, l, b, r]], ["rect"])
    return (ObjectItemList.from_folder(tmp_path).split_by_folder()
            .label_from_func(lambda p: labels[f"{p.parent.name}/{p.name}"]))


STRONG = get_transforms(flip_vert=True, max_rotate=30, max_zoom=1.2, max_lighting=0.0, max_warp=0.2, p_affine=1.0)


def test_boxes_are_the_same_on_the_per_item_and_the_batch_path(tmp_path):
    """With the same seed the DataLoader draws the same transforms on both paths: same images, same boxes."""
    src = _rect_dataset(tmp_path)
    batches = []
    for batched in (True, False):
        data = src.transform(STRONG, size=(40, 48), tfm_y=True).databunch(bs=8, num_workers=0, batch_tfms=batched)
        torch.manual_seed(3)
        batches.append(data.one_batch())
    (xb, (bb, cb)), (xi, (bi, ci)) = batches
    torch.testing.assert_close(xb, xi, atol=2e-4, rtol=0)
    torch.testing.assert_close(bb, bi)
    assert torch.equal(cb, ci) and (cb == 1).all()


def test_each_box_still_frames_its_object_after_batch_augmentation(tmp_path):
    """The white rectangle's pixels, after every flip, rotation, zoom and warp, fill the moved box: the box is
    the bounding box of the rotated rectangle (to a pixel, for resampling)."""
    data = _rect_dataset(tmp_path).transform(STRONG, size=(48, 64), tfm_y=True).databunch(bs=8, num_workers=0)
    torch.manual_seed(0)
    x, (boxes, ids) = data.one_batch()
    for k in range(8):
        rows, cols = torch.nonzero(x[k].mean(0) > 0.5, as_tuple=True)
        seen = torch.tensor([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], dtype=torch.float32)
        box = unit_to_pixels(boxes[k, 0], (48, 64))
        assert (box - seen).abs().max() <= 1.5, f"image {k}: box {box.tolist()} vs pixels {seen.tolist()}"


def test_boxes_without_tfm_y_are_refused(tmp_path):
    with pytest.raises(ValueError, match="tfm_y=True"):
        _rect_dataset(tmp_path).transform(STRONG, size=32, tfm_y=False)


@pytest.mark.parametrize("label, match", [
    (([[10, 20, 5, 60]], ["rect"]), "bottom > top"),  # top and bottom swapped
    (([[10, 20, 30, 60]], ["rect", "rect"]), "1 boxes but 2 class names"),
    ("rect", "pair \\(boxes, class names\\)"),
])
def test_bad_box_labels_are_refused_naming_the_item(tmp_path, label, match):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "a.png")
    with pytest.raises(ValueError, match=f"train/a.png.*{match}"):
        ObjectItemList.from_folder(tmp_path).split_none().label_from_func(lambda p: label)


# --- the padding collate and show_batch ------------------------------------------------------------------
def test_bb_pad_collate_pads_to_the_largest_count_with_background():
    b = lambda n: torch.arange(4 * n, dtype=torch.float32).reshape(n, 4) + 1
    samples = [(torch.zeros(3, 4, 4), (b(2), torch.tensor([3, 1]))),
               (torch.ones(3, 4, 4), (b(0), torch.zeros(0, dtype=torch.long))),
               (torch.ones(3, 4, 4), (b(3), torch.tensor([2, 2, 4])))]
    x, (boxes, ids) = bb_pad_collate(samples)
    assert x.shape == (3, 3, 4, 4) and boxes.shape == (3, 3, 4) and ids.shape == (3, 3)
    assert ids.tolist() == [[3, 1, 0], [0, 0, 0], [2, 2, 4]]
    assert torch.equal(boxes[0, :2], b(2)) and torch.equal(boxes[2], b(3))
    assert (boxes[0, 2] == 0).all() and (boxes[1] == 0).all()
    xd, _ = bb_pad_collate([({"pixels": torch.zeros(2)}, s[1]) for s in samples])  # the batch path's dicts
    assert xd["pixels"].shape == (3, 2)


def test_show_batch_draws_each_real_box_with_its_class_name(tmp_path):
    data = _rect_dataset(tmp_path).transform(size=(48, 64), tfm_y=True).databunch(bs=4, num_workers=0)
    data.show_batch(rows=2, ds_type="valid")
    axes = plt.gcf().axes
    assert len(axes) == 4
    for ax in axes:
        assert sum(isinstance(p, Rectangle) for p in ax.patches) == 1
        assert [t.get_text() for t in ax.texts] == ["rect"]
    plt.close("all")


# --- COCO annotations ---------------------------------------------------------------------------------------
def _coco(tmp_path, annotations):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}, {"id": 12, "file_name": "c.jpg"}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}, {"id": 62, "name": "chair"}, {"id": 84, "name": "book"}]}))
    return path


GOOD = [{"id": 1, "image_id": 7, "category_id": 84, "bbox": [10, 20, 30, 40]},
        {"id": 2, "image_id": 7, "category_id": 62, "bbox": [0.5, 1.5, 2, 3]},
        {"id": 3, "image_id": 12, "category_id": 1, "bbox": [5, 6, 7, 8]}]


def test_get_annotations_reads_boxes_as_top_left_bottom_right_with_category_names(tmp_path):
    images, labels = get_annotations(_coco(tmp_path, GOOD))
    assert images == ["a.jpg", "b.jpg", "c.jpg"]
    lbl = dict(zip(images, labels))
    assert lbl["a.jpg"] == ([[20, 10, 60, 40], [1.5, 0.5, 4.5, 2.5]], ["book", "chair"])  # ids 84 and 62: the gap
    assert lbl["b.jpg"] == ([], [])  # an image without annotations is kept, with no boxes
    assert lbl["c.jpg"] == ([[6, 5, 14, 12]], ["person"])
    assert get_annotations(_coco(tmp_path, GOOD), prefix="train/")[0][0] == "train/a.jpg"


@pytest.mark.parametrize("bad, match", [
    ({"bbox": [10, 20, 30]}, "Annotation 17 .*bbox \\[10, 20, 30\\]"),
    ({"bbox": [10, 20, -3, 40]}, "Annotation 17 .*width and height above 0"),
    ({"bbox": [10, "20", 30, 40]}, "Annotation 17 .*four finite numbers"),
    ({"bbox": [10, 20, float("nan"), 40]}, "Annotation 17 "),
    ({"category_id": 63}, "Annotation 17 .*category_id 63.*\\[1, 62, 84\\]"),
    ({"image_id": 8}, "Annotation 17 .*image_id 8"),
])
def test_a_malformed_annotation_is_an_error_naming_its_id(tmp_path, bad, match):
    ann = {"id": 17, "image_id": 9, "category_id": 62, "bbox": [1, 2, 3, 4], **bad}
    with pytest.raises(ValueError, match=match):
        get_annotations(_coco(tmp_path, GOOD + [ann]))


def test_a_missing_or_broken_annotation_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        get_annotations(tmp_path / "nope.json")
    (tmp_path / "cut.json").write_text('{"images": [')
    with pytest.raises(ValueError, match="cut.json is not valid JSON"):
        get_annotations(tmp_path / "cut.json")
    (tmp_path / "x.json").write_text('{"images": [], "annotations": [{"id": 3}], "categories": []}')
    with pytest.raises(ValueError, match="Entry 0 of 'annotations'.*lacks image_id, category_id, bbox"):
        get_annotations(tmp_path / "x.json")


def _coco_doc(tmp_path, images=None, annotations=None, categories=None, name="train.json"):
    """A COCO file from its three lists (the defaults: two images, one chair on a.jpg)."""
    doc = {"images": images if images is not None else [{"id": 1, "file_name": "a.jpg"},
                                                        {"id": 2, "file_name": "b.jpg"}],
           "annotations": annotations if annotations is not None else [
               {"id": 1, "image_id": 1, "category_id": 62, "bbox": [2, 3, 12, 10]}],
           "categories": categories if categories is not None else [{"id": 62, "name": "chair"}]}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _ann(**kw):
    return {"id": 5, "image_id": 1, "category_id": 62, "bbox": [2, 3, 12, 10], **kw}


@pytest.mark.parametrize("bbox, match", [
    ([-50, -50, 10, 10], r"Annotation 5 .*\[-50, -50, 10, 10\].*entirely outside the 64x48 image"),  # above-left
    ([1e308, 1, 1e308, 5], r"Annotation 5 .*four finite numbers"),  # x + width overflows to inf
    ([1e6, 5, 10, 10], r"Annotation 5 .*entirely outside the 64x48 image a.jpg"),  # right of a 64-wide image
])
def test_a_box_outside_its_image_or_overflowing_is_refused_naming_the_annotation(tmp_path, bbox, match):
    images = [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}]
    with pytest.raises(ValueError, match=match):
        get_annotations(_coco_doc(tmp_path, images=images, annotations=[_ann(bbox=bbox)]))


def test_a_box_partly_outside_its_image_is_kept(tmp_path):
    """COCO boxes may reach a little past the edge; the transforms clip them."""
    images, labels = get_annotations(_coco_doc(tmp_path, annotations=[_ann(bbox=[-5, -5, 10, 10])]))
    assert labels[0] == ([[-5.0, -5.0, 5.0, 5.0]], ["chair"])


def test_a_box_outside_its_image_is_named_by_the_databunch_check(tmp_path):
    """Without sizes in the file, the check before training finds the box that would vanish from view."""
    for split in ("train", "valid"):
        (tmp_path / split).mkdir()
        for i in range(2):
            Image.new("RGB", (32, 24)).save(tmp_path / split / f"{i}.png")
    far = {"train/1.png": ([[5, 1e6, 15, 1e6 + 10]], ["chair"])}
    src = (ObjectItemList.from_folder(tmp_path).split_by_folder()
           .label_from_func(lambda p: far.get(f"{p.parent.name}/{p.name}", ([[2, 2, 10, 10]], ["chair"]))))
    with pytest.raises(ValueError, match=r"(?s)1 of 4 items cannot be used.*box .* of .*1.png lies entirely outside "
                                         r"the image \(32x24"):
        src.transform(None, size=16, tfm_y=True).databunch(bs=2, num_workers=0)


@pytest.mark.parametrize("section, entries, match", [
    ("images", [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "c.jpg"}],
     r"Entry 1 of 'images' .*repeats the id 1 \(already used by the image 'a.jpg'\)"),
    ("annotations", [_ann(), _ann()], r"Entry 1 of 'annotations' .*repeats the id 5 \(already used by entry 0\)"),
    ("categories", [{"id": 62, "name": "chair"}, {"id": 62, "name": "sofa"}],
     r"Entry 1 of 'categories' .*repeats the id 62 \(already used by the category 'chair'\)"),
    ("images", [{"id": [1], "file_name": "a.jpg"}], r"Entry 0 of 'images' .*has id \[1\]; an id is a whole number"),
    ("annotations", [_ann(image_id=[1])], r"Annotation 5 .*has image_id \[1\]; it must be the id"),
])
def test_repeated_or_malformed_ids_are_refused_naming_the_entry(tmp_path, section, entries, match):
    """Two images with one id would silently give one image's boxes to the other."""
    with pytest.raises(ValueError, match=match):
        get_annotations(_coco_doc(tmp_path, **{section: entries}))


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/shadow", "C:\\\\x.jpg", "sub/../../x.jpg"])
def test_a_file_name_outside_the_image_folder_is_refused(tmp_path, name):
    images = [{"id": 1, "file_name": name}]
    with pytest.raises(ValueError, match=r"Image 1 \(entry 0 of 'images'\) .*points outside the image folder"):
        get_annotations(_coco_doc(tmp_path, images=images))
    images = [{"id": 1, "file_name": "sub/a.jpg"}]  # a sub-folder is fine
    assert get_annotations(_coco_doc(tmp_path, images=images))[0] == ["sub/a.jpg"]


def test_an_id_written_as_text_is_named_with_its_type(tmp_path):
    with pytest.raises(ValueError, match=r"refers to image_id '1', which is not in 'images' \('1' is text; the id "
                                         r"there is the number 1"):
        get_annotations(_coco_doc(tmp_path, annotations=[_ann(image_id="1")]))


def test_a_category_without_a_name_is_refused(tmp_path):
    for name in (None, "", True):
        with pytest.raises(ValueError, match=r"Category 62 \(entry 0 of 'categories'\) .*every category needs a name"):
            get_annotations(_coco_doc(tmp_path, categories=[{"id": 62, "name": name}]))


def test_annotations_without_an_id_are_read_and_named_by_their_place(tmp_path):
    anns = [{"image_id": 1, "category_id": 62, "bbox": [2, 3, 12, 10]}, {"image_id": 1, "category_id": 62,
                                                                         "bbox": [1, 1, 0, 5]}]
    with pytest.raises(ValueError, match=r"Annotation at entry 1 of 'annotations' in .*bbox \[1, 1, 0, 5\]"):
        get_annotations(_coco_doc(tmp_path, annotations=anns))
    images, labels = get_annotations(_coco_doc(tmp_path, annotations=anns[:1] * 2))
    assert labels[0] == ([[3.0, 2.0, 13.0, 14.0]] * 2, ["chair", "chair"])


def test_byte_order_mark_latin1_and_deep_nesting_files(tmp_path):
    """A BOM is read; text that is not UTF-8 and absurd nesting are refused naming the file, not raw errors."""
    good = _coco_doc(tmp_path)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())
    assert get_annotations(bom)[0] == ["a.jpg", "b.jpg"]
    latin = tmp_path / "latin.json"
    latin.write_bytes(good.read_bytes().replace(b"a.jpg", "caf\u00e9.jpg".encode("latin-1")))
    with pytest.raises(ValueError, match=r"latin.json is not UTF-8 text \(line 1: byte 0xe9\)"):
        get_annotations(latin)
    deep = tmp_path / "deep.json"
    deep.write_text('{"info": ' + "[" * 100_000 + "]" * 100_000 + ', "images": []}')
    with pytest.raises(ValueError, match="deep.json is nested too deeply"):
        get_annotations(deep)


# --- the bundled tiny datasets --------------------------------------------------------------------------------
def test_coco_tiny_is_in_coco_format_with_the_lessons_category_ids():
    coco = get_dataset("coco_tiny", "tiny")
    data = json.loads((coco / "train.json").read_text())
    assert {c["id"]: c["name"] for c in data["categories"]} == {62: "chair", 63: "couch", 72: "tv", 75: "remote",
                                                               84: "book", 86: "vase"}
    images, labels = get_annotations(coco / "train.json")
    assert len(images) >= 200 and all((coco / "train" / f).is_file() for f in images)
    assert sum(len(n) for _, n in labels) == len(data["annotations"])
    assert any(not n for _, n in labels)  # some rooms are empty

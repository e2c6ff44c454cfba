"""The lesson video's fastai v1 names (course_utils.all and the aliases beside each concern), and the harness
that replays the video's cells (tools/video_check.py)."""
import importlib.util
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_get_image_files_recursive_or_not(tmp_path):
    from course_utils.all import get_image_files
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for f in ("b.png", "a.JPG", "notes.txt", "sub/c.jpeg", ".hidden/d.png"):
        (tmp_path / f).write_bytes(b"x")
    assert [f.name for f in get_image_files(tmp_path)] == ["a.JPG", "b.png"]
    assert [f.relative_to(tmp_path).as_posix() for f in get_image_files(tmp_path, recurse=True)] == \
        ["a.JPG", "b.png", "sub/c.jpeg"]
    assert get_image_files(tmp_path / "sub")[0].name == "c.jpeg"
    with pytest.raises(FileNotFoundError, match="not a folder"):
        get_image_files(tmp_path / "missing")


def test_path_ls_lists_and_untar_data_goes_through_the_registry(tmp_path):
    from course_utils.all import Path as CPath
    from course_utils.all import URLs, untar_data
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("x")
    assert [p.name for p in CPath(tmp_path).ls()] == ["a.txt", "b"]
    assert isinstance(CPath(tmp_path) / "b", CPath) and (CPath(tmp_path) / "b").ls() == []
    path = untar_data(URLs.CAMVID)  # tiny mode (tests/conftest.py): the bundled copy
    assert path == ROOT / "data" / "camvid_tiny" and {p.name for p in path.ls()} >= {"images", "labels", "codes.txt"}
    assert untar_data("biwi_head_pose").name == "biwi_head_pose_tiny"
    with pytest.raises(AttributeError, match="URLs.CAMVID"):
        URLs.PETS


def test_open_image_show_draws_points_at_their_pixel(tmp_path):
    from course_utils.all import FlowField, ImagePoints, open_image, tensor
    f = tmp_path / "a.png"
    PILImage.fromarray(np.zeros((40, 60, 3), np.uint8)).save(f)
    img = open_image(f)
    assert tuple(img.shape) == (3, 40, 60) and img.size == (60, 40) and img.data.shape == (3, 40, 60)
    assert np.asarray(img).shape == (40, 60, 3) and img.mode == "RGB"  # still a Pillow image
    img.show(y=ImagePoints(FlowField(img.size, tensor([10.0, 25.0])), scale=True), figsize=(3, 3))
    ax = plt.gcf().axes[0]
    (x, y), = ax.collections[0].get_offsets().tolist()
    assert (x, y) == (25.0, 10.0), "a (row, col) point is drawn at x=col, y=row"
    assert len(ax.images) == 1


def test_pillow_viewer_is_never_used(tmp_path, monkeypatch):
    from course_utils.all import open_image
    f = tmp_path / "a.png"
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f)
    monkeypatch.setattr(PILImage.Image, "show", lambda *a, **k: pytest.fail("Pillow's viewer was opened"))
    open_image(f).show()
    assert len(plt.gcf().axes) == 1


def test_open_mask_show_and_data(tmp_path):
    from course_utils.all import open_mask
    f = tmp_path / "m_P.png"
    PILImage.fromarray(np.array([[0, 1], [2, 3]], np.uint8)).save(f)
    mask = open_mask(f)
    assert mask.shape == (1, 2, 2) and type(mask.data) is torch.Tensor and mask.data.tolist() == [[[0, 1], [2, 3]]]
    mask.show(figsize=(2, 2), alpha=1)
    assert len(plt.gcf().axes[0].images) == 1


def _planet(tmp_path):
    from course_utils.all import ImageItemList
    src = (ImageItemList.from_csv(ROOT / "data" / "planet_tiny", "train_v2.csv", folder="train-jpg", suffix=".jpg")
           .split_by_rand_pct(0.2, seed=0).label_from_df(label_delim=" "))
    return src


@pytest.mark.parametrize("size", [np.array([24, 32]), (24, 32), torch.tensor([24, 32]), np.int64(24)])
def test_size_as_any_array_like(size):
    src = _planet(None)
    data = src.transform(None, size=size).databunch(bs=8, num_workers=0, device=CPU, check=False)
    x, _ = data.one_batch()
    want = (24, 24) if np.ndim(size) == 0 else (24, 32)
    assert tuple(x.shape[-2:]) == want


def test_load_learner_with_test_predicts_the_test_set(tmp_path):
    from course_utils.all import DatasetType, ImageList, cnn_learner, load_learner, models
    src = _planet(tmp_path)
    data = src.transform(None, size=24).databunch(bs=16, num_workers=0, device=CPU, check=False)
    learn = cnn_learner(data, models.resnet18, pretrained=False, path=tmp_path)
    learn.export()
    test_dir = ROOT / "data" / "planet_tiny" / "test-jpg"
    test = ImageList.from_folder(test_dir).add(ImageList.from_folder(test_dir))
    loaded = load_learner(tmp_path, test=test)
    preds, _ = loaded.get_preds(ds_type=DatasetType.Test)
    assert preds.shape == (2 * len(list(test_dir.glob("*.jpg"))), data.c)
    assert loaded.data.test_ds.items[0] == test.items[0]
    one = loaded.predict(test.items[3])[2]
    torch.testing.assert_close(preds[3], one, atol=1e-5, rtol=1e-4)
    assert DatasetType.Valid == "valid" and str(DatasetType.Test) == "test"


def test_lr_find_function_destroy_and_renamed_builders(tmp_path, capsys):
    from course_utils.all import Learner, cnn_learner, create_cnn, lr_find, models
    data = _planet(tmp_path).transform(None, size=16).databunch(bs=16, num_workers=0, device=CPU, check=False)
    with pytest.warns(UserWarning, match="now `cnn_learner`"):
        learn = create_cnn(data, models.resnet18, pretrained=False, path=tmp_path)
    lr_find(learn, num_it=3)
    assert len(learn.recorder.lrs) > 0
    learn.destroy()
    with pytest.raises(RuntimeError, match="destroyed"):
        learn.fit(1)
    assert Learner.create_cnn and cnn_learner


def test_small_helpers():
    from course_utils.all import MSELossFlat, gpu_mem_get_free_no_cache, plot_multi, tensor
    assert tensor([1.0, 2.0]).tolist() == [1.0, 2.0] and tensor(1, 2).tolist() == [1, 2]
    loss = MSELossFlat()(torch.zeros(4, 2), torch.ones(4, 1, 2))
    assert loss.item() == 1.0
    calls = []
    plot_multi(lambda i, j, ax: calls.append((i, j)), 2, 3)
    assert calls == [(i, j) for i in range(2) for j in range(3)]
    free = gpu_mem_get_free_no_cache()
    assert free == 0 if not torch.cuda.is_available() else free > 0


def test_unsupported_names_say_what_to_type():
    with pytest.raises(ImportError, match="ImageList.from_folder"):
        from course_utils.all import ImageDataBunch  # noqa: F401
    with pytest.raises(ImportError, match="course_utils.all import MSELossFlat"):
        from course_utils.vision import MSELossFlat  # noqa: F401
    from course_utils.all import ImageList
    with pytest.raises(AttributeError, match="split_by_rand_pct"):
        ImageList([], ".").random_split_by_pct


def _harness():
    spec = importlib.util.spec_from_file_location("video_check", ROOT / "tools" / "video_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["video_check"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_harness_counts_failures_and_runs_fixes(tmp_path, monkeypatch):
    vc = _harness()
    lesson = tmp_path / "video_cells"
    lesson.mkdir()
    monkeypatch.setattr(vc, "HERE", tmp_path)
    (lesson / "__init__.py").write_text((ROOT / "tools" / "video_cells" / "__init__.py").read_text())
    (lesson / "toy.py").write_text("from video_cells import Skip\nCELLS = ['a = 1', ('b = undefined_name', 'b = 2'), "
                                   "Skip('download'), 'c = a + b']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in [m for m in sys.modules if m == "video_cells" or m.startswith("video_cells.")]:
        monkeypatch.delitem(sys.modules, m)
    cell, verbatim = vc.run_lesson("toy", "cell"), vc.run_lesson("toy", "verbatim")
    assert (cell.cells, cell.skipped, cell.ran) == (4, 1, 2)
    assert (verbatim.ran, len(verbatim.failures)) == (1, 2), "verbatim: no fix, so c = a + b fails too"
    assert "NameError" in cell.failures[0].error
    assert "total" in vc.report([cell, verbatim])


def test_harness_verbatim_head_pose_meets_the_target():
    """The video's head-pose cells, typed verbatim top to bottom (the fastest vision lesson; the full harness
    over all lessons is `python tools/video_check.py`)."""
    vc = _harness()
    for m in [m for m in sys.modules if m == "video_cells" or m.startswith("video_cells.")]:
        del sys.modules[m]  # the toy lesson's package (another test) must not shadow the real one
    result = vc.run_lesson("head_pose", "verbatim")
    assert result.percent >= 90, vc.report([result])


def test_the_videos_sep_and_datasets_still_label_several_tags():
    """The video types `label_from_csv(sep=' ')`-style calls and `.datasets()`: both work, with a note naming
    today's spelling (before, `sep` was silently ignored and 143 single-label classes came out)."""
    from course_utils.all import ImageItemList
    il = ImageItemList.from_csv(ROOT / "data" / "planet_tiny", "train_v2.csv", folder="train-jpg", suffix=".jpg")
    with pytest.warns(UserWarning, match="label_delim"):
        src = il.split_by_rand_pct(0.2, seed=42).label_from_df(sep=" ")
    assert len(src.train.y.classes) < 20 and "primary" in src.train.y.classes
    with pytest.warns(UserWarning, match="no longer needed"):
        assert src.datasets() is src


def test_the_videos_label_cls_points_says_what_to_type(tmp_path):
    """The video-era head pose passes `label_cls=PointsItemList`; here the items' kind comes first, and the error
    says so (it was `type object 'PointsItemList' has no attribute 'from_labels'`)."""
    from course_utils.all import ImageList, PointsItemList
    src = ImageList.from_folder(ROOT / "data" / "planet_tiny" / "train-jpg").split_by_rand_pct(0.2, seed=0)
    with pytest.raises(TypeError, match=r"PointsItemList.from_folder\(\.\.\.\)"):
        src.label_from_func(lambda o: [[1.0, 2.0]], label_cls=PointsItemList)

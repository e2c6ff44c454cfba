"""The decode-once image cache: the same pixels as decoding, refreshed when a file changes, shared with workers."""
from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import torch
from helpers import camvid_src
from PIL import Image

from course_utils.vision import ImageList, PointsItemList, get_transforms, imagenet_stats
from course_utils.vision.cache import ImageCache

TFMS = get_transforms(flip_vert=True, max_lighting=0.1, max_zoom=1.05, max_warp=0.0)


def _items(ds, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    return [ds[i] for i in range(len(ds))]


def _assert_same(a, b) -> None:
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_cached_items_equal_decoded_items_exactly_cold_and_warm(planet_src):
    plain = planet_src.transform(TFMS, size=24)
    cached = planet_src.transform(TFMS, size=24, cache=True)
    cache = cached.train.x.image_cache(24, None)
    expected = _items(plain.train)
    _assert_same(_items(cached.train), expected)  # cold: fills the cache
    assert cache.n_filled() == len(cache) == len(plain.train)
    _assert_same(_items(cached.train), expected)  # warm: served from the cache
    _assert_same(_items(cached.valid), _items(plain.valid))


def test_a_later_stage_of_the_same_size_reuses_the_cache_and_a_new_size_gets_its_own(planet_src):
    first = planet_src.transform(TFMS, size=24, cache=True)
    _items(first.train)
    again = planet_src.transform(TFMS, size=24, cache=True)
    assert again.train.x.image_cache(24, None) is first.train.x.image_cache(24, None)
    assert again.train.x.image_cache(24, None).n_filled() == len(first.train)
    bigger = planet_src.transform(TFMS, size=32, cache=True)
    assert bigger.train.x.image_cache(32, None).shapes.tolist() == [[32, 32]] * len(first.train)


def test_a_changed_file_is_decoded_again(planet_path, tmp_path):
    shutil.copytree(planet_path, tmp_path / "planet")
    src = (ImageList.from_csv(tmp_path / "planet", "train_v2.csv", folder="train-jpg", suffix=".jpg")
           .split_none().label_from_df(label_delim=" "))
    ds = src.transform(size=16, cache=True).train
    before = ds[0][0]
    f = ds.x.items[0]
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(f, quality=95)
    os.utime(f, ns=(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns + 10**9))  # a new mtime even on coarse clocks
    after = ds[0][0]
    assert not torch.equal(before, after)
    assert torch.equal(after, src.transform(size=16).train[0][0])


def test_workers_fill_the_cache_the_main_process_sees(planet_src):
    data = planet_src.transform(TFMS, size=24, cache=True).databunch(bs=4, num_workers=2, device=torch.device("cpu"),
                                                                   check=False)  # workers, not the check, fill it
    plain = planet_src.transform(TFMS, size=24, cache=False).databunch(bs=4, num_workers=0, device=torch.device("cpu"))
    for dl in (data.train_dl, data.valid_dl):
        for _ in dl:
            pass
    assert data.train_ds.x.image_cache(24, None).n_filled() == len(data.train_dl) * 4  # the short batch is dropped
    assert data.valid_ds.x.image_cache(24, None).n_filled() == len(data.valid_ds)
    for (xa, ya), (xb, yb) in zip(data.valid_dl, plain.valid_dl):  # no randomness in validation: equal batches
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_large_cache_is_a_file_in_the_data_folder_kept_between_sessions(planet_src, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    items = planet_src.train.x.items
    cache = ImageCache(items, 16, None, memory_limit=0)
    assert cache.file.parent == tmp_path / "cache" and cache.file.stat().st_size > cache.nbytes
    first = items[0]
    with Image.open(first) as img:
        pixels = np.array(cache.get(first, lambda: img.convert("RGB").resize((16, 16))))
    reopened = pickle.loads(pickle.dumps(cache))  # what a spawned worker does
    assert reopened.n_filled() == 1 and np.array_equal(reopened.get(first, None), pixels)
    assert ImageCache(items, 16, None, memory_limit=0).n_filled() == 1  # a new session finds it filled


def test_segmentation_with_a_cache_gives_the_same_images_and_masks(camvid_path):
    tfms = get_transforms(flip_vert=True, max_rotate=30, max_zoom=1.5, max_warp=0.3, p_affine=1.0)
    plain = camvid_src(camvid_path).transform(tfms, size=24, tfm_y=True).train
    cached = camvid_src(camvid_path).transform(tfms, size=24, tfm_y=True, cache=True).train
    expected = _items(plain, seed=3)
    _assert_same(_items(cached, seed=3), expected)
    _assert_same(_items(cached, seed=3), expected)


def test_a_cached_databunch_trains_and_normalises_like_any_other(planet_src):
    data = (planet_src.transform(TFMS, size=24, cache=True)
            .databunch(bs=4, num_workers=0, device=torch.device("cpu")).normalize(imagenet_stats))
    x, y = data.one_batch()
    assert x.shape == (4, 3, 24, 24) and y.shape == (4, 6)


def test_points_move_the_same_with_a_cache(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    src = (PointsItemList.from_folder(tmp_path).split_none()
           .label_from_func(lambda o: torch.tensor([[12.0 + int(o.stem[1]), 20.0]])))
    tfms = get_transforms(max_rotate=20, max_zoom=1.2, p_affine=1.0)
    expected = _items(src.transform(tfms, size=(24, 32), tfm_y=True).train, seed=5)
    cached = src.transform(tfms, size=(24, 32), tfm_y=True, cache=True).train
    _assert_same(_items(cached, seed=5), expected)
    _assert_same(_items(cached, seed=5), expected)


# --- the automatic cache: each DataBunch decides whether its images fit the budget ---------------------------
def _budget(monkeypatch, nbytes: int) -> None:
    monkeypatch.setattr("course_utils.vision.cache.image_cache_budget", lambda: (nbytes, "a test budget"))


def _cached_count(ds) -> int:
    caches = ds.x._caches
    key = (repr(ds.cfg.size), ds.cfg.resize_method)
    return 0 if caches is None or caches[0] is not ds.x.items or key not in caches[1] else caches[1][key].n_filled()


def test_images_that_fit_the_budget_are_cached_and_the_line_says_so(planet_src, monkeypatch, capsys):
    _budget(monkeypatch, 24 * 24 * 3 * 24)  # exactly the 18 + 6 images at 24 px
    data = planet_src.transform(TFMS, size=24).databunch(bs=4, num_workers=0, device=torch.device("cpu"))
    out = capsys.readouterr().out
    assert "caching 24 decoded images at 24 px: 40 KB in memory" in out and "budget 40 KB: a test budget" in out
    assert out.count("caching") == 1
    # the databunch's check decoded every image once, and that filled the cache: epoch 1 is already warm
    assert _cached_count(data.train_ds) == 18 and _cached_count(data.valid_ds) == 6
    again = data.train_ds.x.image_cache(24, None)
    for _ in data.train_dl:
        pass
    assert data.train_ds.x.image_cache(24, None) is again
    planet_src.transform(TFMS, size=24).databunch(bs=4, num_workers=0, device=torch.device("cpu"))
    assert "caching" not in capsys.readouterr().out  # the same split at the same size: decided, said once


def test_images_over_the_budget_are_not_cached_and_the_line_says_why(planet_src, monkeypatch, capsys):
    _budget(monkeypatch, 24 * 24 * 3 * 24 - 1)  # one byte short
    data = planet_src.transform(TFMS, size=24).databunch(bs=4, num_workers=0, device=torch.device("cpu"))
    out = capsys.readouterr().out
    assert ("not caching: 24 decoded images at 24 px would take 40 KB, over the budget of 40 KB (a test budget), "
            "so every epoch decodes the files again") in out
    for _ in data.train_dl:
        pass
    assert _cached_count(data.train_ds) == _cached_count(data.valid_ds) == 0
    # a new size is a new decision: the same images at 8 px fit
    small = planet_src.transform(TFMS, size=8).databunch(bs=4, num_workers=0, device=torch.device("cpu"))
    assert "caching 24 decoded images at 8 px" in capsys.readouterr().out
    assert _cached_count(small.train_ds) == 18


def test_cache_given_to_transform_wins_over_the_budget(planet_src, monkeypatch, capsys):
    _budget(monkeypatch, 0)
    forced = planet_src.transform(TFMS, size=24, cache=True).databunch(bs=4, num_workers=0,
                                                                       device=torch.device("cpu"))
    assert _cached_count(forced.train_ds) == 18
    _budget(monkeypatch, 2**40)
    off = planet_src.transform(TFMS, size=16, cache=False).databunch(bs=4, num_workers=0, device=torch.device("cpu"))
    for _ in off.train_dl:
        pass
    assert _cached_count(off.train_ds) == 0
    assert "caching" not in capsys.readouterr().out  # nothing was decided, so nothing is announced


def test_the_budget_comes_from_course_image_cache(monkeypatch):
    from course_utils.config import available_memory, image_cache_budget
    monkeypatch.setenv("COURSE_IMAGE_CACHE", "800MB")
    assert image_cache_budget() == (800 * 2**20, "COURSE_IMAGE_CACHE=800MB")
    monkeypatch.setenv("COURSE_IMAGE_CACHE", "2gb")
    assert image_cache_budget()[0] == 2 * 2**30
    monkeypatch.setenv("COURSE_IMAGE_CACHE", "0")
    assert image_cache_budget()[0] == 0
    monkeypatch.setattr("course_utils.config.available_memory", lambda: 1000 * 2**20)
    monkeypatch.setenv("COURSE_IMAGE_CACHE", "0.5")
    assert image_cache_budget() == (500 * 2**20, "50% of the 1,000 MB available; COURSE_IMAGE_CACHE sets it")
    monkeypatch.delenv("COURSE_IMAGE_CACHE")
    assert image_cache_budget()[0] == 250 * 2**20  # a quarter by default
    for bad in ("lots", "3", "-1MB"):
        monkeypatch.setenv("COURSE_IMAGE_CACHE", bad)
        try:
            image_cache_budget()
        except ValueError as e:
            assert "COURSE_IMAGE_CACHE must be" in str(e) and "800MB" in str(e)
        else:
            raise AssertionError(f"COURSE_IMAGE_CACHE={bad!r} was accepted")
    monkeypatch.undo()
    assert available_memory() is None or available_memory() > 0


# --- the batch resample in the DataLoader workers -------------------------------------------------------------
def _batches(data, seed: int) -> list:
    torch.manual_seed(seed)  # the workers' seeds come from here, so both loaders draw the same transforms
    return [(x.clone(), y.clone()) for x, y in data.train_dl]


def test_workers_resample_the_batches_and_give_the_same_ones_as_the_main_process(camvid_path, monkeypatch):
    """On a CPU with workers, each worker augments its whole batch (it hands over float images, not the uint8
    windows); the batches are exactly those the main process made from the same draws."""
    from course_utils.data_block import DataBunch
    tfms = get_transforms(flip_vert=True, max_rotate=30, max_zoom=1.5, max_lighting=0.3, max_warp=0.3, p_affine=1.0)
    src = camvid_src(camvid_path).transform(tfms, size=24, tfm_y=True)
    cpu = torch.device("cpu")
    data = src.databunch(bs=2, num_workers=2, device=cpu)
    assert data.augments_in_workers()
    in_workers = _batches(data, 7)  # first: persistent workers take their seeds from the first pass
    x, _ = next(iter(data.train_dl.dl))  # what a worker hands over
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape[1:] == (3, 24, 24)
    monkeypatch.setattr(DataBunch, "augments_in_workers", lambda self: False)
    main = src.databunch(bs=2, num_workers=2, device=cpu)
    in_main = _batches(main, 7)
    assert isinstance(next(iter(main.train_dl.dl))[0], dict)  # the uint8 windows and draws, as before
    assert len(in_workers) == len(in_main) > 1
    for (xa, ya), (xb, yb) in zip(in_workers, in_main):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_cpu_batch_augmented_in_chunks_is_the_batch_augmented_at_once():
    from course_utils.vision.batch import augment_batch
    from course_utils.vision.transforms import sample_plan
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (37, 3, 20, 24), dtype=torch.uint8, generator=g)
    plans = [sample_plan(TFMS[0], (20, 24), None, None, train=True, rng=np.random.default_rng(k)) for k in range(37)]
    from course_utils.vision.batch import plan_params
    params = [plan_params(p) for p in plans]
    aug, light = torch.stack([p["aug"] for p in params]), torch.stack([p["light"] for p in params])
    whole, grid = augment_batch(pixels, aug, light)
    chunked, grid2 = augment_batch(pixels, aug, light, chunk=8)
    assert grid is not None and torch.equal(grid, grid2) and torch.equal(whole, chunked)


def test_deciding_and_making_the_cache_draws_nothing_from_torchs_generator(planet_src, monkeypatch):
    """Sizing the cache must not shift a seeded run's random augmentations (it once drew one number per image)."""
    _budget(monkeypatch, 2**40)
    states = []
    for cache in (False, None, True):
        ls = planet_src.transform(TFMS, size=24, cache=cache)
        torch.manual_seed(0)
        ls.databunch(bs=4, num_workers=0, device=torch.device("cpu"))
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1]) and torch.equal(states[0], states[2])


def test_a_warm_epoch_opens_no_image_file_but_a_changed_one_is_read_again(planet_path, tmp_path, monkeypatch):
    """Once the cache holds an image, the pipeline does not even open its file (a `CachedImage` stands in with its
    name and size); a file changed since is opened and decoded again."""
    import course_utils.vision.data as vision_data
    from course_utils.vision.image import CachedImage
    shutil.copytree(planet_path, tmp_path / "planet")
    src = (ImageList.from_csv(tmp_path / "planet", "train_v2.csv", folder="train-jpg", suffix=".jpg")
           .split_none().label_from_df(label_delim=" "))
    ds = src.transform(TFMS, size=16, cache=True).train
    expected = _items(ds)  # cold: opens and decodes every file
    opened = []
    real_open = vision_data.open_lazy
    monkeypatch.setattr(vision_data, "open_lazy", lambda p: opened.append(p) or real_open(p))
    _assert_same(_items(ds), expected)
    assert opened == []
    stand_in = ds.x.raw(0, ds.cfg)
    assert isinstance(stand_in, CachedImage) and stand_in.size == Image.open(ds.x.items[0]).size
    f = ds.x.items[1]
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(f, quality=95)
    os.utime(f, ns=(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns + 10**9))
    assert not isinstance(ds.x.raw(1, ds.cfg), CachedImage)
    opened.clear()
    ds[0]
    changed = ds[1][0]
    assert opened == [f]
    assert expected[1][0].std() > 0.05 > changed.std()  # the new, flat grey pixels


def test_a_file_changed_after_the_cache_was_asked_is_decoded_after_all(planet_path, tmp_path):
    """Between `raw` handing out a stand-in and the decode, the file may change: the decode then opens it."""
    shutil.copytree(planet_path, tmp_path / "planet")
    src = (ImageList.from_csv(tmp_path / "planet", "train_v2.csv", folder="train-jpg", suffix=".jpg")
           .split_none().label_from_df(label_delim=" "))
    ds = src.transform(size=16, cache=True).train
    _items(ds)
    stand_in = ds.x.raw(0, ds.cfg)
    f = ds.x.items[0]
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(f, quality=95)
    os.utime(f, ns=(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns + 10**9))
    x, _ = ds.x.apply_tfms(stand_in, ds.y.get(0), ds.y, ds.tfms, ds.cfg)
    assert torch.allclose(x, torch.full_like(x, 200 / 255), atol=0.02)

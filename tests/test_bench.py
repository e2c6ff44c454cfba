"""The benchmark's pieces: its generated data loads in the library and in the plain baseline alike."""
from __future__ import annotations

import torch

from course_utils import bench


def test_generated_data_feeds_the_library_and_the_plain_baseline(tmp_path):
    root = bench.make_data(tmp_path / "planet", 4)
    assert len(list((root / "train-jpg").glob("*.jpg"))) == len(list((root / "labels").glob("*.png"))) == 4
    src = bench.planet_src(root, 3)
    assert (len(src.train), len(src.valid)) == (3, 0)
    x, y = src.transform(size=32, cache=True).train[0]
    assert x.shape == (3, 32, 32) and y.sum() >= 1
    px, py = bench.plain_planet(root, 32)[0]
    assert px.shape == (3, 32, 32) and px.dtype == torch.float32 and torch.equal(py, bench.plain_planet(root, 32).targets[0])
    sx, sy = bench.plain_seg(root, (24, 32))[1]
    assert sx.shape == (3, 24, 32) and sy.shape == (24, 32) and int(sy.max()) < bench.N_SEG_CLASSES
    mx, my = bench.seg_src(root, 2).transform(size=(24, 32), tfm_y=True).train[0]
    assert mx.shape == (3, 24, 32) and my.shape == (1, 24, 32)


def test_the_plain_unet_predicts_every_pixel():
    out = bench.PlainUnet(bench.N_SEG_CLASSES).eval()(torch.zeros(1, 3, 64, 96))
    assert out.shape == (1, bench.N_SEG_CLASSES, 64, 96)

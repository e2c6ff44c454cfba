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
    assert (px.shape == (3, 32, 32) and px.dtype == torch.float32
            and torch.equal(py, bench.plain_planet(root, 32).targets[0]))
    sx, sy = bench.plain_seg(root, (24, 32))[1]
    assert sx.shape == (3, 24, 32) and sy.shape == (24, 32) and int(sy.max()) < bench.N_SEG_CLASSES
    mx, my = bench.seg_src(root, 2).transform(size=(24, 32), tfm_y=True).train[0]
    assert mx.shape == (3, 24, 32) and my.shape == (1, 24, 32)


def test_the_machine_line_says_the_cpu_level_and_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    m = bench.machine()
    assert m["capability"]["isa"] == "AVX2" and m["capability"]["native_bf16"] is False
    line = bench.describe(m)
    assert "kernels AVX2" in line and "native bf16 no" in line and f"{m['capability']['threads']} torch threads" in line


def test_the_training_row_says_what_to_fp16_picked(tmp_path, monkeypatch):
    monkeypatch.setattr("course_utils.amp.cpu_has_native_bf16", lambda: False)
    root = bench.make_data(tmp_path / "planet", 8)
    r = bench.bench_lib_train("resnet18", root, 32, 4, 1, "to_fp16")
    assert r["picked"] == "fp32" and r["img_s"] > 0
    assert bench.bench_lib_train("resnet18", root, 32, 4, 1, "bf16")["picked"] == "bf16"

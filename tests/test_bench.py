"""The benchmark's pieces: its generated data loads in the library and in the plain baseline alike."""
from __future__ import annotations

import pytest
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


def test_the_pipeline_rows_use_the_default_settings_and_alternate_with_plain(tmp_path, monkeypatch):
    root = bench.make_data(tmp_path / "planet", 8)
    calls = []
    real = bench.bench_pipeline

    def spy(root, workers, variants=True):
        calls.append(variants)
        return real(root, workers, size=32, bs=4, variants=variants)
    monkeypatch.setattr(bench, "bench_pipeline", spy)
    r = bench.pipeline_rounds(root, 2, rounds=2)
    assert calls == [True, False]  # the variants once, ours-then-plain each round
    assert r["cached"] and r["cache_mb"] > 0 and r["in_workers"]  # the default: cached (it fits), workers augment
    assert len(r["lib_warm_rounds"]) == len(r["plain_rounds"]) == 2 and r["lib_nocache"] > 0
    assert r["warm_vs_plain"] == pytest.approx(sum(r["lib_warm_rounds"]) / sum(r["plain_rounds"]))


def test_the_table_shows_each_round_and_the_ratio_of_their_sums():
    pipe = {"lib_cold_rounds": [900, 1100], "lib_warm_rounds": [1000, 1200], "plain_epoch1_rounds": [400, 600],
            "plain_rounds": [500, 600], "warm_vs_plain": 2200 / 1100, "cold_vs_plain": 2.0, "lib_nocache": 700,
            "lib_warm_per_item": 650, "cached": True}
    one = {"img_s": 30.0, "mean_loss": 1.0, "picked": "fp32", "timed_batches": 3}
    row = {"fp32": one, "plain": one, "fp32_rounds": [30.0, 32.0], "plain_rounds": [29.0, 31.0],
           "bf16": {**one, "img_s": float("nan"), "picked": "skipped", "timed_batches": 0}, "to_fp16": one,
           "fp32_vs_plain": 62 / 60, "picked_vs_plain": 1.0, "picked_loss_rel_diff": 0.0, "gflop_per_img": 3.5,
           "params_m": 11.7}
    text = bench.table({"pipeline": {0: pipe}, "training": {"resnet18@128": row}, "n_images": 400,
                        "memory": {"max_rss_mb": 1500, "children_max_rss_mb": 800, "cache_mb": 19}})
    assert "decode cache on by the budget" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("0 "))
    assert "1000 / 1200" in line and "500 / 600" in line and "2.00" in line
    assert "30.0 / 32.0" in text and "29.0 / 31.0" in text and "1.03" in text and "bf16: skipped" in text

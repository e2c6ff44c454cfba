"""`python -m course_utils.bench`: images/s of this library's input pipeline and training, beside a plain
torchvision baseline measured in the same process, so the ratios hold on any machine.

It makes planet-style 256-px JPEGs (and 8-class masks for the U-Net) in a temporary folder by upscaling
and jittering data/planet_tiny, then measures
  (a) the input pipeline alone (planet augmentations at 128 px, batch 64) with the settings a notebook gets by
      default (the decode cache when the images fit the memory budget; batches augmented in the workers when
      there are workers), its first epoch ("cold") and the next ("warm"); also with the cache off and with
      per-item augmentation; at num_workers 0 and 2, against a `Dataset` that decodes every file and applies
      `transforms.v2`, measured right after ours, `--rounds` times (ours and plain alternating);
  (b) training resnet18 at 64 and 128 px and the lesson's resnet18 U-Net at 96x128: fp32, bf16 forced, and
      whatever `to_fp16()` picks on this CPU, a few batches each (the first is warm-up and not timed;
      the median batch time counts);
  (c) the same models, freshly built, in a plain fp32 PyTorch loop over a plain Dataset (fp32 and plain
      alternate `--rounds` times);
and prints a table; everything goes to a JSON file. `--quick` runs in about a minute; `--no-bf16` skips the
forced-bf16 column, which on a CPU without native bf16 is emulated and takes minutes.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import io
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import tv_tensors
from torchvision.transforms import v2

from .amp import cpu_capability, cpu_has_native_bf16
from .callbacks import CALLBACK_ORDER, Callback, CancelFit
from .config import seed_everything
from .vision import ImageList, SegmentationItemList, cnn_learner, get_transforms, imagenet_stats, unet_learner

__all__: list[str] = []  # a command (python -m course_utils.bench): nothing here is imported by name

PLANET_TINY = Path(__file__).resolve().parents[1] / "data" / "planet_tiny"
N_SEG_CLASSES = 8
CPU = torch.device("cpu")
PLANET_TFMS = dict(flip_vert=True, max_lighting=0.1, max_zoom=1.05, max_warp=0.0)


# --- data -----------------------------------------------------------------------------------------------
def make_data(root: Path, n: int, seed: int = 0) -> Path:
    """`n` 256-px planet-style JPEGs (upscaled, shifted, recoloured tiny planet images) with their tags, and
    an 8-class mask per image (its quantised brightness) for the U-Net."""
    src = pd.read_csv(PLANET_TINY / "train_v2.csv")
    rng = np.random.default_rng(seed)
    (root / "train-jpg").mkdir(parents=True)
    (root / "labels").mkdir()
    rows = []
    for i in range(n):
        name, tags = src.iloc[i % len(src)]
        with Image.open(PLANET_TINY / "train-jpg" / f"{name}.jpg") as img:
            big = np.asarray(img.convert("RGB").resize((288, 288), Image.Resampling.BICUBIC), dtype=np.float32)
        dy, dx = rng.integers(0, 33, size=2)
        arr = big[dy:dy + 256, dx:dx + 256] * rng.uniform(0.85, 1.15, size=3) + rng.normal(0, 6, size=(256, 256, 3))
        arr = arr.clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "train-jpg" / f"img_{i}.jpg", quality=90)
        mask = (arr.mean(-1) * N_SEG_CLASSES / 256).astype(np.uint8)
        Image.fromarray(mask).save(root / "labels" / f"img_{i}.png")
        rows.append((f"img_{i}", tags))
    pd.DataFrame(rows, columns=["image_name", "tags"]).to_csv(root / "train_v2.csv", index=False)
    return root


def _first(items, n: int | None):
    """The first `n` items (all if None) for training, none for validation: only training is measured."""
    return items.split_by_idxs(range(n or len(items)), [])


def planet_src(root: Path, n: int | None = None):
    """The lesson's planet chain over the generated images."""
    items = ImageList.from_csv(root, "train_v2.csv", folder="train-jpg", suffix=".jpg")
    return _first(items, n).label_from_df(label_delim=" ")


def seg_src(root: Path, n: int | None = None):
    """The generated images with their masks, for the U-Net."""
    classes = [f"c{i}" for i in range(N_SEG_CLASSES)]
    return _first(SegmentationItemList.from_folder(root / "train-jpg"), n).label_from_func(
        lambda p: root / "labels" / f"{p.stem}.png", classes=classes)


class PlainDataset(Dataset):
    """The baseline: decode every file with PIL on every access, then torchvision's v2 transforms."""

    def __init__(self, files, targets, tfm, masks=None):
        self.files, self.targets, self.tfm, self.masks = files, targets, tfm, masks

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with Image.open(self.files[i]) as img:
            x = tv_tensors.Image(torchvision.transforms.functional.pil_to_tensor(img.convert("RGB")))
        if self.masks is None:
            return self.tfm(x), self.targets[i]
        with Image.open(self.masks[i]) as m:
            mask = tv_tensors.Mask(torch.from_numpy(np.asarray(m, dtype=np.int64))[None])
        x, mask = self.tfm(x, mask)
        return x, mask[0]


def plain_tfm(size) -> v2.Compose:
    """The planet augmentations written with transforms.v2: resize, random crop, flips, rotate/zoom, lighting."""
    crop = [v2.Resize(size, antialias=True), v2.RandomCrop(size)] if isinstance(size, int) else [v2.Resize(size)]
    return v2.Compose([*crop, v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
                       v2.RandomApply([v2.RandomAffine(degrees=10, scale=(1.0, 1.05))], p=0.75),
                       v2.RandomApply([v2.ColorJitter(brightness=0.1, contrast=0.1)], p=0.75),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(*imagenet_stats)])


def plain_planet(root: Path, size: int) -> PlainDataset:
    df = pd.read_csv(root / "train_v2.csv")
    classes = sorted({t for tags in df.tags for t in tags.split()})
    targets = torch.zeros(len(df), len(classes))
    for i, tags in enumerate(df.tags):
        targets[i, [classes.index(t) for t in tags.split()]] = 1
    return PlainDataset([root / "train-jpg" / f"{n}.jpg" for n in df.image_name], targets, plain_tfm(size))


def plain_seg(root: Path, size) -> PlainDataset:
    files = sorted((root / "train-jpg").glob("*.jpg"))
    return PlainDataset(files, None, plain_tfm(size), masks=[root / "labels" / f"{f.stem}.png" for f in files])


def plain_loader(ds: Dataset, bs: int, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=bs, shuffle=True, drop_last=True, num_workers=workers,
                      persistent_workers=workers > 0)


# --- (a) the input pipeline -----------------------------------------------------------------------------
def epoch_rate(loader) -> float:
    """Images per second of one pass over `loader`."""
    n, start = 0, time.perf_counter()
    for x, _ in loader:
        n += len(x)
    return n / (time.perf_counter() - start)


def bench_pipeline(root: Path, workers: int, size: int = 128, bs: int = 64, variants: bool = True) -> dict:
    """The library with a notebook's default settings (`transform` not told `cache=`: each DataBunch decides),
    first epoch and next; then (`variants`) with the cache off and with per-item augmentation, warm; then the
    plain baseline's first and second epochs, measured right after ours."""
    tfms = get_transforms(**PLANET_TFMS)
    res = {}
    src = planet_src(root).transform(tfms, size=size)
    data = src.databunch(bs=bs, num_workers=workers, device=CPU).normalize(imagenet_stats)
    res["lib_cold"], res["lib_warm"] = epoch_rate(data.train_dl), epoch_rate(data.train_dl)
    res["cached"] = bool(data.train_ds.x.auto_cache(data.train_ds.cfg))
    res["cache_mb"] = data.train_ds.x.image_cache(size, None).nbytes / 2**20 if res["cached"] else 0.0
    res["in_workers"] = data.augments_in_workers()
    del data
    gc.collect()  # stop its persistent workers now, before the next loader forks
    if variants:
        off = planet_src(root).transform(tfms, size=size, cache=False)
        for key, lists, kw in (("lib_nocache", off, {}), ("lib_warm_per_item", src, {"batch_tfms": False})):
            data = lists.databunch(bs=bs, num_workers=workers, device=CPU, **kw).normalize(imagenet_stats)
            epoch_rate(data.train_dl)
            res[key] = epoch_rate(data.train_dl)
            del data
            gc.collect()
    dl = plain_loader(plain_planet(root, size), bs, workers)
    res["plain_epoch1"], res["plain"] = epoch_rate(dl), epoch_rate(dl)
    del dl
    gc.collect()
    res["warm_vs_plain"] = res["lib_warm"] / res["plain"]
    res["cold_vs_plain"] = res["lib_cold"] / res["plain_epoch1"]
    return res


def pipeline_rounds(root: Path, workers: int, rounds: int) -> dict:
    """`bench_pipeline` `rounds` times (ours and plain alternating; the variants only in the first round): the
    first round's figures, each round's default-warm and plain-warm figures, and the ratios of their sums."""
    runs = [bench_pipeline(root, workers, variants=r == 0) for r in range(rounds)]
    res = dict(runs[0])
    for key in ("lib_cold", "lib_warm", "plain_epoch1", "plain"):
        res[f"{key}_rounds"] = [r[key] for r in runs]
    res["warm_vs_plain"] = sum(res["lib_warm_rounds"]) / sum(res["plain_rounds"])
    res["cold_vs_plain"] = sum(res["lib_cold_rounds"]) / sum(res["plain_epoch1_rounds"])
    return res


# --- (b) and (c) training -------------------------------------------------------------------------------
class BatchTimer(Callback):
    """Times each training batch and stops the fit after `n` timed batches (the first one is warm-up)."""
    order = CALLBACK_ORDER["BatchTimer"]

    def __init__(self, n: int):
        self.n, self.times, self.losses = n, [], []

    def after_batch(self):
        if not self.learn.training:
            return
        self.times.append(time.perf_counter())
        self.losses.append(self.learn.loss.item())
        if len(self.times) > self.n:
            raise CancelFit()


def rate(times: list[float], bs: int) -> float:
    """Images/s from the end times of consecutive batches (the first is warm-up): `bs` over the *median* batch
    time, so one batch slowed by a neighbour on a shared CPU does not decide a short run."""
    return bs / float(np.median(np.diff(times)))


def gflop_per_image(model: nn.Module, shape) -> float:
    """GFLOP of one forward and backward pass for one image (counted by torch's FLOP counter)."""
    model.train()
    with FlopCounterMode(display=False) as fc:
        model(torch.zeros(2, *shape)).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / 2 / 1e9


def lib_learner(kind: str, root: Path, size, bs: int, n_items: int):
    """A learner of this library over the first `n_items` images, its cache filled beforehand."""
    seed_everything(0)
    tfms = get_transforms(**PLANET_TFMS)
    src = seg_src(root, n_items) if kind == "unet" else planet_src(root, n_items)
    with contextlib.redirect_stdout(io.StringIO()):  # its cache line was said by (a), once is enough
        data = src.transform(tfms, size=size, tfm_y=kind == "unet").databunch(  # the default: cached if it fits
            bs=bs, num_workers=0, device=CPU).normalize(imagenet_stats)
    seed_everything(0)
    if kind == "unet":
        return unet_learner(data, torchvision.models.resnet18, pretrained=False)
    return cnn_learner(data, torchvision.models.resnet18, pretrained=False)


PRECISIONS = ("fp32", "bf16", "to_fp16")


def bench_lib_train(kind: str, root: Path, size, bs: int, n: int, precision: str) -> dict:
    """Images/s of this library's `fit` in fp32, forced bf16, or whatever `to_fp16()` picks on this machine."""
    learn = lib_learner(kind, root, size, bs, bs * (n + 1))
    if precision == "bf16":
        learn.to_bf16(force=True)
    elif precision == "to_fp16":
        learn.to_fp16()
    timer = BatchTimer(n)
    learn.fit(1, lr=1e-3, callbacks=[timer], progress=False)
    picked = learn.precision.dtype if learn.precision else None
    return {"img_s": rate(timer.times, bs), "mean_loss": float(np.mean(timer.losses)),
            "picked": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(picked, "fp32"), "timed_batches": n}


def bench_plain_train(kind: str, root: Path, size, bs: int, n: int) -> dict:
    """The baseline: the same model as the library's, freshly built, trained by a plain fp32 loop over the
    plain Dataset (num_workers=0, as on a CPU), so the difference is the library's loop and pipeline."""
    ds = plain_seg(root, size) if kind == "unet" else plain_planet(root, size)
    spec = lib_learner(kind, root, size, bs, bs).model_spec
    if kind != "unet":  # every tag of the whole CSV, as the plain Dataset encodes them
        spec = dataclasses.replace(spec, n_out=int(ds.targets.shape[1]))
    torch.manual_seed(0)
    model = spec.build()
    loss_fn = nn.CrossEntropyLoss() if kind == "unet" else nn.BCEWithLogitsLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    times = []
    model.train()
    for i, (x, y) in enumerate(plain_loader(ds, bs, 0)):
        loss_fn(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
        if i == n:
            break
    return {"img_s": rate(times, bs)}


def bench_training(root: Path, n: int, start: float, rounds: int = 1, bf16: bool = True) -> dict:
    """Each workload in the library (fp32, forced bf16, what `to_fp16()` picks) and in the plain loop; fp32
    and plain alternate `rounds` times (the ratio is that of their sums).

    Without native bf16 a forced bf16 step is emulated and can take many seconds, so it is timed over one
    batch there (`bf16=False` skips it)."""
    res, native = {}, cpu_has_native_bf16()
    for kind, size, bs in (("resnet18", 64, 32), ("resnet18", 128, 32), ("unet", (96, 128), 8)):
        name = f"{kind}@{size if isinstance(size, int) else 'x'.join(map(str, size))}"
        fp32, plain = [], []
        for _ in range(rounds):
            fp32.append(bench_lib_train(kind, root, size, bs, n, "fp32"))
            plain.append(bench_plain_train(kind, root, size, bs, n))
        row = {"fp32": fp32[0], "plain": plain[0], "fp32_rounds": [r["img_s"] for r in fp32],
               "plain_rounds": [r["img_s"] for r in plain]}
        for p in PRECISIONS[1:]:
            if p == "bf16" and not bf16:
                row[p] = {"img_s": float("nan"), "mean_loss": float("nan"), "picked": "skipped", "timed_batches": 0}
            else:
                row[p] = bench_lib_train(kind, root, size, bs, n if p != "bf16" or native else 1, p)
        learn = lib_learner(kind, root, size, bs, bs)
        shape = (3, *size) if isinstance(size, tuple) else (3, size, size)
        row["gflop_per_img"] = gflop_per_image(learn.model, shape)
        row["params_m"] = sum(p.numel() for p in learn.model.parameters()) / 1e6
        row["fp32_vs_plain"] = sum(row["fp32_rounds"]) / sum(row["plain_rounds"])
        row["picked_vs_plain"] = row["to_fp16"]["img_s"] / row["plain"]["img_s"]
        row["picked_loss_rel_diff"] = abs(row["to_fp16"]["mean_loss"] / row["fp32"]["mean_loss"] - 1)
        res[name] = row
        print(f"  {name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    return res


# --- report ---------------------------------------------------------------------------------------------
def machine() -> dict:
    """The CPU as torch sees it (kernel level, native bf16, AMX, threads) and the versions."""
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "capability": cpu_capability(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "load_avg_start": os.getloadavg()}


def _cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines()
             if ln.startswith("model name")] if info.exists() else []
    return names[0] if names else (platform.processor() or platform.machine())


def describe(m: dict) -> str:
    """One line: which CPU, what torch can use on it, and how busy the machine was."""
    c = m["capability"]
    return (f"{m['cpu']}, {m['cores']} cores, {c['threads']} torch threads; kernels {c['isa']}, "
            f"native bf16 {'yes' if c['native_bf16'] else 'no'} (AVX512-BF16 {'yes' if c['avx512_bf16'] else 'no'}, "
            f"AMX {'yes' if c['amx'] else 'no'}); torch {m['torch']}; load average {m['load_avg_start'][0]:.1f}")


def _rounds(values: list[float], fmt: str = ".0f") -> str:
    """Each round's figure, 'a / b'."""
    return " / ".join(f"{v:{fmt}}" for v in values)


def table(res: dict) -> str:
    first = next(iter(res["pipeline"].values()))
    how = (f"decode cache {'on' if first.get('cached') else 'OFF'} by the budget" if "cached" in first
           else "decode cache")
    lines = [f"input pipeline, images/s (planet augmentations, 128 px, batch 64); default settings ({how}), "
             "each round's figure, ours then plain",
             f"{'workers':>8} {'cold':>13} {'warm':>13} {'plain cold':>13} {'plain warm':>13} {'warm/plain':>10} "
             f"{'cold/plain':>10} {'cache off':>9} {'per-item aug':>12}"]
    for w, r in res["pipeline"].items():
        lines.append(f"{w:>8} {_rounds(r['lib_cold_rounds']):>13} {_rounds(r['lib_warm_rounds']):>13} "
                     f"{_rounds(r['plain_epoch1_rounds']):>13} {_rounds(r['plain_rounds']):>13} "
                     f"{r['warm_vs_plain']:10.2f} {r['cold_vs_plain']:10.2f} {r['lib_nocache']:9.0f} "
                     f"{r['lib_warm_per_item']:12.0f}")
    lines.append("cold: the first epoch (the DataBunch's check has decoded every image once, filling the cache); "
                 "warm: the next; workers > 0: batches augmented in the workers")
    picked = next(iter(res["training"].values()))["to_fp16"]["picked"]
    lines += ["", "training, images/s (batches after the first; num_workers 0, cache warm; plain = the same model "
              "in a plain fp32 loop over a plain Dataset)",
              f"{'workload':>13} {'fp32':>13} {'bf16':>7} {'to_fp16 (' + picked + ')':>16} {'plain':>13} "
              f"{'fp32/plain':>10} {'to_fp16/plain':>13} {'GFLOP/img':>9} {'params':>7} {'loss diff':>9}"]
    for name, r in res["training"].items():
        one = "*" if r["bf16"]["timed_batches"] == 1 and r["to_fp16"]["timed_batches"] > 1 else " "
        lines.append(f"{name:>13} {_rounds(r['fp32_rounds'], '.1f'):>13} {r['bf16']['img_s']:6.1f}{one} "
                     f"{r['to_fp16']['img_s']:16.1f} {_rounds(r['plain_rounds'], '.1f'):>13} "
                     f"{r['fp32_vs_plain']:10.2f} "
                     f"{r['picked_vs_plain']:13.2f} {r['gflop_per_img']:9.2f} {r['params_m']:6.1f}M "
                     f"{r['picked_loss_rel_diff']:9.1%}")
    if any(r["bf16"]["timed_batches"] == 1 for r in res["training"].values()):
        lines.append("* bf16 forced on a CPU without native bf16 (emulated): one timed batch")
    if any(r["bf16"]["picked"] == "skipped" for r in res["training"].values()):
        lines.append("bf16: skipped (--no-bf16)")
    m = res["memory"]
    lines += ["", f"peak RSS: {m['max_rss_mb']:.0f} MB (workers: {m['children_max_rss_mb']:.0f} MB); "
              f"cache at 128 px: {m['cache_mb']:.0f} MB for {res['n_images']} images"]
    return "\n".join(lines)


def run(n_images: int, n_batches: int, out: Path, workers=(0, 2), rounds: int = 1, bf16: bool = True) -> dict:
    """Generate the data, measure everything, write `out` and return the results."""
    start = time.perf_counter()
    res = {"machine": machine(), "n_images": n_images, "timed_batches": n_batches, "rounds": rounds}
    print(describe(res["machine"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="course_bench_") as tmp:
        os.environ.setdefault("COURSE_DATA", tmp)  # a cache over the memory limit goes to a file here
        root = make_data(Path(tmp) / "planet", n_images)
        print(f"{n_images} planet-style 256-px JPEGs (+ masks) generated in {root} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        res["pipeline"] = {}
        for w in workers:
            res["pipeline"][w] = pipeline_rounds(root, w, rounds)
            print(f"  pipeline, num_workers={w}: done ({time.perf_counter() - start:.0f} s)", flush=True)
        res["training"] = bench_training(root, n_batches, start, rounds, bf16)
    return finish(res, out, start, cache_mb=res["pipeline"][workers[0]]["cache_mb"])


def finish(res: dict, out: Path, start: float, **memory) -> dict:
    """Add the peak memory (this process and its workers, plus `memory`), the load average at the end and the
    seconds since `start` to `res`, write it to `out` as JSON and return it (tools/bench_fastai.py ends so too)."""
    res["memory"] = {"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                     "children_max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, **memory}
    res["machine"]["load_avg_end"] = os.getloadavg()
    res["seconds"] = time.perf_counter() - start
    out.write_text(json.dumps(res, indent=1, default=str))
    return res


def main(argv=None) -> None:
    """Command line: `python -m course_utils.bench [--quick] [--out FILE]`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer images and batches: about a minute")
    p.add_argument("--images", type=int, help="images to generate (default 2000, quick 400)")
    p.add_argument("--batches", type=int, help="timed training batches per workload (default 4, quick 1)")
    p.add_argument("--rounds", type=int, default=1, help="times ours and plain alternate (default 1)")
    p.add_argument("--no-bf16", action="store_true", help="skip forced bf16 (emulated, slow, without native bf16)")
    p.add_argument("--out", type=Path, default=Path("bench_results.json"), help="where the JSON results go")
    a = p.parse_args(argv)
    n_images = a.images or (400 if a.quick else 2000)
    n_batches = a.batches or (1 if a.quick else 4)
    res = run(n_images, n_batches, a.out, rounds=a.rounds, bf16=not a.no_bf16)
    m = res["machine"]
    print(f"\n{describe(m)} at start, {m['load_avg_end'][0]:.1f} at end")
    print(table(res))
    print(f"\n{res['seconds']:.0f} s in all; results in {a.out}")


if __name__ == "__main__":
    main()

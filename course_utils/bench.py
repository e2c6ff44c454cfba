"""`python -m course_utils.bench`: images/s of this library's input pipeline and training, beside a plain
torchvision baseline measured in the same process, so the ratios hold on any machine.

It makes planet-style 256-px JPEGs (and 8-class masks for the U-Net) in a temporary folder by upscaling
and jittering data/planet_tiny, then measures
  (a) the input pipeline alone (planet augmentations at 128 px, batch 64): no cache, cold and warm cache,
      at num_workers 0 and 2, against a `Dataset` that decodes every file and applies `transforms.v2`;
  (b) training resnet18 at 64 and 128 px and the resnet18 U-Net at 96x128, fp32 and bf16 (and bf16 with
      channels_last), a few batches each (the first is warm-up and not timed), with GFLOP per image;
  (c) the same training in a plain fp32 PyTorch loop;
and prints a table; everything goes to a JSON file. `--quick` runs in about a minute.
"""
from __future__ import annotations

import argparse
import gc
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
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import tv_tensors
from torchvision.transforms import v2

from .callbacks import Callback, CancelFit
from .config import seed_everything
from .vision import ImageList, SegmentationItemList, cnn_learner, get_transforms, imagenet_stats, unet_learner
from .vision.cache import image_cache

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


def bench_pipeline(root: Path, workers: int, size: int = 128, bs: int = 64) -> dict:
    """Library without cache, with a cold then warm cache; the plain baseline's first and second epochs."""
    tfms = get_transforms(**PLANET_TFMS)
    res = {}
    for cache in (False, True):
        src = planet_src(root).transform(tfms, size=size, cache=cache)
        data = src.databunch(bs=bs, num_workers=workers, device=CPU).normalize(imagenet_stats)
        first, second = epoch_rate(data.train_dl), epoch_rate(data.train_dl)
        if cache:
            res["lib_cold"], res["lib_warm"] = first, second
            res["cache_mb"] = image_cache(data.train_ds.x, size, None).nbytes / 2**20
            # the same warm cache, augmenting one item at a time in the loader instead of the whole batch
            item = src.databunch(bs=bs, num_workers=workers, device=CPU, batch_tfms=False).normalize(imagenet_stats)
            res["lib_warm_per_item"] = epoch_rate(item.train_dl)
            del item
        else:
            res["lib_nocache"] = second
        del data
        gc.collect()  # stop its persistent workers now, before the next loader forks
    dl = plain_loader(plain_planet(root, size), bs, workers)
    res["plain_epoch1"], res["plain"] = epoch_rate(dl), epoch_rate(dl)
    del dl
    gc.collect()
    res["warm_vs_plain"] = res["lib_warm"] / res["plain"]
    res["cold_vs_plain"] = res["lib_cold"] / res["plain_epoch1"]
    return res


# --- (b) and (c) training -------------------------------------------------------------------------------
class BatchTimer(Callback):
    """Times each training batch and stops the fit after `n` timed batches (the first one is warm-up)."""
    order = 100

    def __init__(self, n: int):
        self.n, self.times, self.losses = n, [], []

    def after_batch(self):
        if not self.learn.training:
            return
        self.times.append(time.perf_counter())
        self.losses.append(self.learn.loss.item())
        if len(self.times) > self.n:
            raise CancelFit()


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
    data = src.transform(tfms, size=size, tfm_y=kind == "unet", cache=True).databunch(
        bs=bs, num_workers=0, device=CPU).normalize(imagenet_stats)
    for _ in data.train_dl:  # fill the cache: this measures the model, (a) measures the pipeline
        pass
    seed_everything(0)
    if kind == "unet":
        return unet_learner(data, torchvision.models.resnet18, pretrained=False)
    return cnn_learner(data, torchvision.models.resnet18, pretrained=False)


def bench_lib_train(kind: str, root: Path, size, bs: int, n: int, precision: str) -> dict:
    learn = lib_learner(kind, root, size, bs, bs * (n + 1))
    if precision != "fp32":
        learn.to_bf16()
    if precision == "bf16+cl":
        learn.to_channels_last()
    timer = BatchTimer(n)
    learn.fit(1, lr=1e-3, callbacks=[timer], progress=False)
    return {"img_s": n * bs / (timer.times[-1] - timer.times[0]), "mean_loss": float(np.mean(timer.losses))}


class PlainUnet(nn.Module):
    """A straightforward U-Net over torchvision's resnet18: bilinear upsampling, concatenated skips, two convs."""

    def __init__(self, n_classes: int):
        super().__init__()
        r = torchvision.models.resnet18()
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu)
        self.downs = nn.ModuleList([nn.Sequential(r.maxpool, r.layer1), r.layer2, r.layer3, r.layer4])
        outs, skips = [256, 128, 64, 32, 32], [256, 128, 64, 64, 0]
        self.ups = nn.ModuleList([self._block(i + s, o) for i, s, o in zip([512, *outs[:-1]], skips, outs)])
        self.head = nn.Conv2d(32, n_classes, 1)

    @staticmethod
    def _block(ni: int, nf: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(ni, nf, 3, padding=1), nn.BatchNorm2d(nf), nn.ReLU(inplace=True),
                             nn.Conv2d(nf, nf, 3, padding=1), nn.BatchNorm2d(nf), nn.ReLU(inplace=True))

    def forward(self, x):
        feats = [self.stem(x)]
        for d in self.downs:
            feats.append(d(feats[-1]))
        h = feats.pop()
        for up in self.ups:
            skip = feats.pop() if feats else None
            h = F.interpolate(h, size=skip.shape[-2:] if skip is not None else x.shape[-2:], mode="bilinear")
            h = up(torch.cat([h, skip], 1) if skip is not None else h)
        return self.head(h)


def bench_plain_train(kind: str, root: Path, size, bs: int, n: int) -> dict:
    """The baseline: a plain fp32 loop over the plain Dataset (num_workers=0, as on a CPU)."""
    torch.manual_seed(0)
    ds = plain_seg(root, size) if kind == "unet" else plain_planet(root, size)
    model = PlainUnet(N_SEG_CLASSES) if kind == "unet" else torchvision.models.resnet18(num_classes=ds.targets.shape[1])
    loss_fn = nn.CrossEntropyLoss() if kind == "unet" else nn.BCEWithLogitsLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    model.train()
    for i, (x, y) in enumerate(plain_loader(ds, bs, 0)):
        loss_fn(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
        if i == n:
            break
    shape = (3, *size) if isinstance(size, tuple) else (3, size, size)
    return {"img_s": n * bs / (times[-1] - times[0]), "gflop_per_img": gflop_per_image(model, shape),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def bench_training(root: Path, n: int, start: float) -> dict:
    """Each workload in the library (fp32, bf16, bf16 + channels_last) and in the plain loop."""
    res = {}
    for kind, size, bs in (("resnet18", 64, 32), ("resnet18", 128, 32), ("unet", (96, 128), 8)):
        name = f"{kind}@{size if isinstance(size, int) else 'x'.join(map(str, size))}"
        row = {p: bench_lib_train(kind, root, size, bs, n, p) for p in ("fp32", "bf16", "bf16+cl")}
        learn = lib_learner(kind, root, size, bs, bs)
        shape = (3, *size) if isinstance(size, tuple) else (3, size, size)
        row["lib_gflop_per_img"] = gflop_per_image(learn.model, shape)
        row["lib_params_m"] = sum(p.numel() for p in learn.model.parameters()) / 1e6
        row["plain"] = bench_plain_train(kind, root, size, bs, n)
        row["bf16_vs_plain"] = row["bf16"]["img_s"] / row["plain"]["img_s"]
        # per unit of work: the library's U-Net (the lesson's) does several times the plain one's FLOPs per image
        row["bf16_vs_plain_per_gflop"] = row["bf16_vs_plain"] * row["lib_gflop_per_img"] / row["plain"]["gflop_per_img"]
        row["bf16_loss_rel_diff"] = abs(row["bf16"]["mean_loss"] / row["fp32"]["mean_loss"] - 1)
        res[name] = row
        print(f"  {name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    return res


# --- report ---------------------------------------------------------------------------------------------
def machine() -> dict:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "bf16_units": [f for f in ("amx_bf16", "avx512_bf16") if f in flags],
            "torch": torch.__version__, "torchvision": torchvision.__version__, "load_avg_start": os.getloadavg()}


def table(res: dict) -> str:
    lines = ["input pipeline, images/s (planet augmentations, 128 px, batch 64)",
             f"{'workers':>8} {'no cache':>9} {'cold':>8} {'warm':>8} {'warm, per-item aug':>19} {'plain':>8} "
             f"{'warm/plain':>10} {'cold/plain':>10}"]
    for w, r in res["pipeline"].items():
        lines.append(f"{w:>8} {r['lib_nocache']:9.0f} {r['lib_cold']:8.0f} {r['lib_warm']:8.0f} "
                     f"{r.get('lib_warm_per_item', float('nan')):19.0f} {r['plain']:8.0f} "
                     f"{r['warm_vs_plain']:10.2f} {r['cold_vs_plain']:10.2f}")
    lines += ["", "training, images/s (batches after the first; num_workers 0, cache warm)",
              f"{'workload':>16} {'fp32':>7} {'bf16':>7} {'bf16+cl':>8} {'plain':>7} {'bf16/plain':>10} "
              f"{'GFLOP/img lib|plain':>20} {'bf16/plain GFLOP/s':>18} {'loss diff':>9}"]
    for name, r in res["training"].items():
        lines.append(f"{name:>16} {r['fp32']['img_s']:7.1f} {r['bf16']['img_s']:7.1f} {r['bf16+cl']['img_s']:8.1f} "
                     f"{r['plain']['img_s']:7.1f} {r['bf16_vs_plain']:10.2f} "
                     f"{r['lib_gflop_per_img']:9.2f} | {r['plain']['gflop_per_img']:7.2f} "
                     f"{r['bf16_vs_plain_per_gflop']:18.2f} {r['bf16_loss_rel_diff']:9.1%}")
    m = res["memory"]
    lines += ["", f"peak RSS: {m['max_rss_mb']:.0f} MB (workers: {m['children_max_rss_mb']:.0f} MB); "
              f"cache at 128 px: {m['cache_mb']:.0f} MB for {res['n_images']} images"]
    return "\n".join(lines)


def run(n_images: int, n_batches: int, out: Path, workers=(0, 2)) -> dict:
    """Generate the data, measure everything, write `out` and return the results."""
    start = time.perf_counter()
    res = {"machine": machine(), "n_images": n_images, "timed_batches": n_batches}
    with tempfile.TemporaryDirectory(prefix="course_bench_") as tmp:
        os.environ.setdefault("COURSE_DATA", tmp)  # a cache over the memory limit goes to a file here
        root = make_data(Path(tmp) / "planet", n_images)
        print(f"{n_images} planet-style 256-px JPEGs (+ masks) generated in {root} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        res["pipeline"] = {}
        for w in workers:
            res["pipeline"][w] = bench_pipeline(root, w)
            print(f"  pipeline, num_workers={w}: done ({time.perf_counter() - start:.0f} s)", flush=True)
        res["training"] = bench_training(root, n_batches, start)
    res["memory"] = {"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                     "children_max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                     "cache_mb": res["pipeline"][workers[0]]["cache_mb"]}
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
    p.add_argument("--out", type=Path, default=Path("bench_results.json"), help="where the JSON results go")
    a = p.parse_args(argv)
    n_images = a.images or (400 if a.quick else 2000)
    n_batches = a.batches or (1 if a.quick else 4)
    res = run(n_images, n_batches, a.out)
    m = res["machine"]
    print(f"\n{m['cores']} cores, {m['torch_threads']} torch threads, bf16 units: {m['bf16_units'] or 'none'}, torch {m['torch']}; "
          f"load average {m['load_avg_start'][0]:.1f} at start, {m['load_avg_end'][0]:.1f} at end")
    print(table(res))
    print(f"\n{res['seconds']:.0f} s in all; results in {a.out}")


if __name__ == "__main__":
    main()

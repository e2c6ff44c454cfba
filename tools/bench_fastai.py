"""`tools/bench_fastai.py`: fastai 2.8 on exactly the workload of `python -m course_utils.bench`, so its figures
can sit beside ours, measured run after run on the same machine.

fastai is not a dependency of the course and never becomes one: install it into a folder of its own, without its
dependencies (so pip leaves the course's torch, torchvision, numpy, pillow and pandas alone), and put that folder
on PYTHONPATH for this tool only:

    .venv/bin/python -m pip install --target /tmp/fastai_pkgs --no-deps "fastai==2.8.*" fastcore \
        "fastprogress<1.1" fastdownload fasttransform "plum-dispatch<2.10" beartype cloudpickle \
        scipy scikit-learn joblib threadpoolctl narwhals
    PYTHONPATH=/tmp/fastai_pkgs .venv/bin/python tools/bench_fastai.py --images 400 --batches 3 --rounds 2

(fastprogress 1.1 imports python-fasthtml and its web stack; fastai 2.8 and fasttransform want plum-dispatch < 2.10.)

It measures, on the CPU in fp32, with fastai's own idioms (a `DataBlock`, `item_tfms=Resize`, `aug_transforms` with
the planet settings and `Normalize.from_stats(*imagenet_stats)` as `batch_tfms`, `vision_learner`/`unet_learner`):
  (a) the input pipeline: images/s of `dls.train` (shuffled, drop_last, batch 64, 128 px) at num_workers 0 and 2,
      its first epoch ("cold") and the next ("warm"), `--rounds` times;
  (b) training: resnet18 at 64 and 128 px (batch 32) and a resnet18 U-Net at 96x128 (batch 8), num_workers 0, the
      median time between `after_batch` events over `--batches` batches after the first, `--rounds` times;
and the peak RSS; it prints a table laid out as ours and writes everything to a JSON file.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.bench import (  # noqa: E402  (the course from this checkout)
    N_SEG_CLASSES,
    PLANET_TFMS,
    describe,
    epoch_rate,
    finish,
    machine,
    make_data,
    rate,
)

CPU = torch.device("cpu")
PKGS = "/tmp/fastai_pkgs"
INSTALL = (f'.venv/bin/python -m pip install --target {PKGS} --no-deps "fastai==2.8.*" fastcore "fastprogress<1.1" '
           'fastdownload fasttransform "plum-dispatch<2.10" beartype cloudpickle scipy scikit-learn joblib '
           'threadpoolctl narwhals')
WORKLOADS = (("resnet18", 64, 32), ("resnet18", 128, 32), ("unet", (96, 128), 8))


def fastai_version() -> str:
    """fastai's version; without an importable fastai, a one-line way to install it and exit code 2."""
    try:
        with warnings.catch_warnings():  # fastai's layers still use torch.jit.script, which torch now deprecates
            warnings.filterwarnings("ignore", message=".*torch.jit.script", category=FutureWarning)
            import fastai
            import fastai.vision.all  # noqa: F401  (its dependencies: scipy, scikit-learn, plum, ...)
    except ImportError as e:
        print(f"fastai is not importable ({e}); it is not part of the course. Install it beside the course without "
              f"touching torch: {INSTALL} && PYTHONPATH={PKGS} .venv/bin/python tools/bench_fastai.py", file=sys.stderr)
        sys.exit(2)
    return fastai.__version__


def _all_train(items):
    """Every item for training, none for validation: only training is measured (as ours)."""
    return list(range(len(items))), []


def _batch_tfms() -> list:
    """The planet augmentations on the batch, then ImageNet normalisation: fastai's usual `batch_tfms`."""
    from fastai.vision.all import Normalize, aug_transforms, imagenet_stats
    return [*aug_transforms(**PLANET_TFMS), Normalize.from_stats(*imagenet_stats)]


def planet_dls(root: Path, workers: int, size: int, bs: int, n: int | None = None):
    """fastai `DataLoaders` over the first `n` (all if None) generated planet images with their tags."""
    from fastai.vision.all import ColReader, DataBlock, ImageBlock, MultiCategoryBlock, Resize
    df = pd.read_csv(root / "train_v2.csv").iloc[:n]
    block = DataBlock(blocks=(ImageBlock, MultiCategoryBlock), splitter=_all_train,
                      get_x=ColReader(0, pref=root / "train-jpg", suff=".jpg"), get_y=ColReader(1, label_delim=" "),
                      item_tfms=Resize(size), batch_tfms=_batch_tfms())
    return block.dataloaders(df, bs=bs, num_workers=workers, device=CPU)


def seg_dls(root: Path, size, bs: int, n: int):
    """fastai `DataLoaders` over the first `n` generated images (sorted by name) with their 8-class masks; the
    images are squished to `size`, as ours does for a (height, width) size."""
    from fastai.vision.all import DataBlock, ImageBlock, MaskBlock, Resize, ResizeMethod, get_image_files
    codes = [f"c{i}" for i in range(N_SEG_CLASSES)]
    block = DataBlock(blocks=(ImageBlock, MaskBlock(codes)), splitter=_all_train,
                      get_items=lambda p: get_image_files(p).sorted()[:n],
                      get_y=lambda p: root / "labels" / f"{p.stem}.png",
                      item_tfms=Resize(size, method=ResizeMethod.Squish), batch_tfms=_batch_tfms())
    return block.dataloaders(root / "train-jpg", bs=bs, num_workers=0, device=CPU)


def bench_pipeline(root: Path, workers: int, size: int = 128, bs: int = 64) -> dict:
    """Images/s of the first epoch of a fresh `dls.train` (cold) and of the next one (warm)."""
    dls = planet_dls(root, workers, size, bs)
    res = {"shuffle": dls.train.shuffle, "drop_last": dls.train.drop_last}
    res["cold"], res["warm"] = epoch_rate(dls.train), epoch_rate(dls.train)
    del dls
    gc.collect()
    return res


def batch_timer(n: int):
    """A fastai callback that records the time of each training `after_batch` and stops the fit (CancelFit) after
    `n` timed batches (the first batch is warm-up), as our `BatchTimer` does."""
    from fastai.callback.core import Callback, CancelFitException

    class FastaiBatchTimer(Callback):
        """Times each training batch once everything else is done (our `BatchTimer`'s order too)."""
        order = 100

        def __init__(self):
            self.times, self.losses = [], []

        def after_batch(self):
            """Record the end of a training batch and its loss; stop after `n` + 1 of them."""
            if not self.training:
                return
            self.times.append(time.perf_counter())
            self.losses.append(self.learn.loss.item())
            if len(self.times) > n:
                raise CancelFitException()

    return FastaiBatchTimer()


def bench_train(kind: str, root: Path, size, bs: int, n: int) -> dict:
    """Images/s of fastai's `fit` (fp32, CPU) over the first `bs * (n + 1)` images, as our `bench_lib_train`."""
    from fastai.vision.all import resnet18, set_seed, unet_learner, vision_learner
    set_seed(0)
    if kind == "unet":
        learn = unet_learner(seg_dls(root, size, bs, bs * (n + 1)), resnet18, pretrained=False, metrics=[])
    else:
        learn = vision_learner(planet_dls(root, 0, size, bs, bs * (n + 1)), resnet18, pretrained=False, metrics=[])
    timer = batch_timer(n)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, lr=1e-3, cbs=[timer])
    return {"img_s": rate(timer.times, bs), "mean_loss": float(np.mean(timer.losses)), "timed_batches": n,
            "params_m": sum(p.numel() for p in learn.model.parameters()) / 1e6}


def bench_training(root: Path, n: int, rounds: int, start: float) -> dict:
    """Each training workload `rounds` times: the first round's figures and each round's images/s."""
    res = {}
    for kind, size, bs in WORKLOADS:
        name = f"{kind}@{size if isinstance(size, int) else 'x'.join(map(str, size))}"
        runs = [bench_train(kind, root, size, bs, n) for _ in range(rounds)]
        res[name] = {**runs[0], "img_s_rounds": [r["img_s"] for r in runs]}
        gc.collect()
        print(f"  {name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    return res


def _rounds(values: list[float], fmt: str = ".0f") -> str:
    """Each round's figure, 'a / b'."""
    return " / ".join(f"{v:{fmt}}" for v in values)


def table(res: dict) -> str:
    """The results as one compact table, laid out as `course_utils.bench`'s."""
    lines = [f"fastai {res['fastai']}: input pipeline, images/s (planet augmentations, 128 px, batch 64; dls.train, "
             "shuffled, drop_last), each round's figure",
             f"{'workers':>8} {'cold':>13} {'warm':>13}"]
    for w, r in res["pipeline"].items():
        lines.append(f"{w:>8} {_rounds(r['cold_rounds']):>13} {_rounds(r['warm_rounds']):>13}")
    lines += ["cold: the first epoch of fresh DataLoaders (every file decoded); warm: the next; decode and Resize "
              "per item (in the workers if any), batch tfms in the main process",
              "", "training, images/s (batches after the first; num_workers 0; fp32; vision_learner / unet_learner, "
              "pretrained=False)",
              f"{'workload':>13} {'fp32':>13} {'params':>7} {'loss':>7}"]
    for name, r in res["training"].items():
        lines.append(f"{name:>13} {_rounds(r['img_s_rounds'], '.1f'):>13} {r['params_m']:6.1f}M {r['mean_loss']:7.3f}")
    m = res["memory"]
    lines += ["", f"peak RSS: {m['max_rss_mb']:.0f} MB (workers: {m['children_max_rss_mb']:.0f} MB)"]
    return "\n".join(lines)


def measure(root: Path, res: dict, workers, rounds: int, n_batches: int, start: float) -> None:
    """The pipeline at each number of workers (`rounds` times) and the training workloads, into `res`."""
    res["pipeline"] = {}
    for w in workers:
        runs = [bench_pipeline(root, w) for _ in range(rounds)]
        res["pipeline"][w] = {**runs[0], "cold_rounds": [r["cold"] for r in runs],
                              "warm_rounds": [r["warm"] for r in runs]}
        print(f"  pipeline, num_workers={w}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    res["training"] = bench_training(root, n_batches, rounds, start)


def run(n_images: int, n_batches: int, rounds: int, out: Path, data: Path | None, workers=(0, 2)) -> dict:
    """Generate the data (unless `data` holds it), measure everything, write `out` and return the results."""
    start = time.perf_counter()
    res = {"fastai": fastai_version(), "machine": machine(), "n_images": n_images, "timed_batches": n_batches,
           "rounds": rounds}
    print(describe(res["machine"]), flush=True)
    if data is not None:
        if not (data / "train_v2.csv").exists():
            make_data(data, n_images)
        res["n_images"] = len(pd.read_csv(data / "train_v2.csv"))
        measure(data, res, workers, rounds, n_batches, start)
    else:
        with tempfile.TemporaryDirectory(prefix="fastai_bench_") as tmp:
            root = make_data(Path(tmp) / "planet", n_images)
            print(f"{n_images} planet-style 256-px JPEGs (+ masks) generated in {root} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            measure(root, res, workers, rounds, n_batches, start)
    return finish(res, out, start)


def main(argv=None) -> None:
    """Command line: `PYTHONPATH=/tmp/fastai_pkgs .venv/bin/python tools/bench_fastai.py [--out FILE] ...`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=400, help="images to generate (default 400)")
    p.add_argument("--batches", type=int, default=3, help="timed training batches per workload (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="times each measurement is repeated (default 2)")
    p.add_argument("--data", type=Path, help="reuse (or generate once into) this folder of images")
    p.add_argument("--out", type=Path, default=Path("bench_fastai.json"), help="where the JSON results go")
    a = p.parse_args(argv)
    fastai_version()  # before generating anything
    res = run(a.images, a.batches, a.rounds, a.out, a.data)
    m = res["machine"]
    print(f"\n{describe(m)} at start, {m['load_avg_end'][0]:.1f} at end")
    print(table(res))
    print(f"\n{res['seconds']:.0f} s in all; results in {a.out}")


if __name__ == "__main__":
    main()

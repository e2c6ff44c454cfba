"""Train on your own images with lesson 3's recipe, from Python or the command line:

    python -m course_utils train --images DIR (--csv FILE | --folders | --masks DIR) --out DIR
    python -m course_utils predict MODEL IMAGE...

The same code the lesson notebooks use (data block chain, cnn_learner/unet_learner, lr_find, fit_one_cycle),
packaged as three steps: `own_data` (your layout -> labelled data), `own_learner` (model and metrics for its
label type) and `train_recipe` (frozen, then unfrozen with discriminative learning rates).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt

from .data_block import LabelLists
from .guard import NonFiniteLossError
from .kinds import kind_of
from .learner import Learner, load_learner, unfreeze_slice
from .tables import read_csv, same_names_on_disk
from .vision import ImageList, SegmentationItemList, cnn_learner, get_transforms, imagenet_stats, unet_learner
from .vision.image import image_extensions

__all__ = ["own_learner", "add_train_command", "add_predict_command"]


def own_data(images: str | Path, csv: str | Path | None = None, masks: str | Path | None = None,
             codes: str | Path | None = None, valid_pct: float = 0.2, seed: int = 42,
             label_delim: str = " ") -> LabelLists:
    """Your images, labelled by one of three layouts and split for validation:

    * `csv`: a CSV whose first column names the image (with or without extension) and whose second holds
      its labels separated by `label_delim` (multi-label, like Planet's train_v2.csv);
    * neither: one sub-folder per class (single-label); `train/` and `valid/` top folders are used as the split;
    * `masks`: a folder of class-index PNG masks named like the images (`<stem>.png` or `<stem>_P.png`),
      with the class names one per line in `codes` (default: `codes.txt` beside the masks folder)."""
    images = Path(images)
    if csv is not None:
        return _csv_data(images, Path(csv), valid_pct, seed, label_delim)
    if masks is not None:
        return _mask_data(images, Path(masks), codes, valid_pct, seed)
    items = ImageList.from_folder(images)
    tops = {p.relative_to(images).parts[0] for p in items.items}
    split = items.split_by_folder() if {"train", "valid"} <= tops else items.split_by_rand_pct(valid_pct, seed=seed)
    src = split.label_from_folder()
    _need_two_classes(src, images)
    return src


def _need_two_classes(src: LabelLists, images: Path) -> None:
    """A folder layout with one class trains a model that always answers it (accuracy 1.0): refuse it."""
    classes = getattr(src.train.y, "classes", None)
    if classes is not None and len(classes) < 2:
        raise ValueError(f"{images} holds only one class ({classes[0]!r}): --folders expects one sub-folder per "
                         f"class, e.g. {images}/cats/*.jpg and {images}/dogs/*.jpg (optionally under train/ and "
                         "valid/). For a flat folder of images, label them with --csv instead.")


def _csv_data(images: Path, csv: Path, valid_pct: float, seed: int, label_delim: str) -> LabelLists:
    df = read_csv(csv, dtype=str, keep_default_na=False)
    if df.shape[1] < 2:
        raise ValueError(f"{csv} needs two columns (image name, labels); it has {list(df.columns)}.")
    suffix = "" if Path(df.iloc[0, 0]).suffix.lower() in image_extensions else _guess_suffix(images, df.iloc[0, 0])
    return (ImageList.from_df(df, images, cols=0, suffix=suffix)
            .split_by_rand_pct(valid_pct, seed=seed)
            .label_from_df(cols=1, label_delim=label_delim))


def _guess_suffix(images: Path, name: str) -> str:
    """The extension of the file named `name` in `images` (CSV files often omit it, like Planet's)."""
    for ext in image_extensions:
        if same_names_on_disk([images / f"{name}{ext}"])[0].is_file():  # "café" in the CSV, NFD on disk
            return ext
    raise FileNotFoundError(f"No image called {name} (with any of {', '.join(image_extensions)}) in {images}; "
                            "the CSV's first column must name the images in that folder.")


def _mask_data(images: Path, masks: Path, codes: str | Path | None, valid_pct: float, seed: int) -> LabelLists:
    codes = Path(codes) if codes else masks.parent / "codes.txt"
    if not codes.is_file():
        raise FileNotFoundError(f"No class names file {codes}: write the class names one per line (line i = id i).")
    classes = [ln.strip() for ln in codes.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]

    def mask_of(img: Path) -> Path:
        for name in (f"{img.stem}.png", f"{img.stem}_P.png"):
            if (masks / name).is_file():
                return masks / name
        raise FileNotFoundError(f"No mask for {img.name} in {masks} (looked for {img.stem}.png and {img.stem}_P.png).")

    return (SegmentationItemList.from_folder(images)
            .split_by_rand_pct(valid_pct, seed=seed)
            .label_from_func(mask_of, classes=classes))


def default_metrics(src: LabelLists) -> list:
    """The lesson's metrics for the label type (its label list's `default_metrics`): thresholded accuracy and
    F2, accuracy, or pixel accuracy."""
    return src.train.y.default_metrics()


def own_learner(src: LabelLists, size: int = 128, bs: int = 32, arch: str = "resnet34", pretrained: bool = True,
                tfms=None, **kwargs) -> Learner:
    """A DataBunch at `size` (default augmentations: `get_transforms()`) and the right learner for the label
    type: a U-Net for masks, else a CNN."""
    kind = kind_of(src)
    data = src.transform(tfms or get_transforms(), size=size, tfm_y=kind.tfm_y).databunch(bs=bs, **kwargs)
    data.normalize(imagenet_stats)
    make = unet_learner if kind.per_pixel else cnn_learner
    return make(data, arch, pretrained=pretrained, metrics=default_metrics(src))


def train_recipe(learn: Learner, epochs: int = 4, lr: float | None = None,
                 after_stage: Callable[[int], None] | None = None) -> float:
    """The lesson's recipe: head first (frozen body) at `lr` (default: the LR finder's suggestion), then
    unfreeze, run the LR finder again and train everything with the discriminative rates of `unfreeze_slice`
    (the same rule the notebooks use). `after_stage(1)` and `after_stage(2)` run as each stage finishes (the
    command line exports there). Returns the learning rate used."""
    if lr is None:
        learn.lr_find()
        learn.recorder.plot(suggestion=True)
        lr = learn.recorder.suggested_lr
        plt.close("all")
    learn.fit_one_cycle(epochs, slice(lr))
    if after_stage:
        after_stage(1)
    learn.unfreeze()
    learn.lr_find()
    learn.recorder.plot(suggestion=True)
    plt.close("all")  # the command line shows no plots
    learn.fit_one_cycle(epochs, unfreeze_slice(lr, suggested=learn.recorder.suggested_lr))
    if after_stage:
        after_stage(2)
    return lr


# --- command line ---------------------------------------------------------------------------------------
TRAIN_EXAMPLE = """examples:
  python -m course_utils train --images data/planet_tiny/train-jpg --csv data/planet_tiny/train_v2.csv \\
      --arch resnet18 --no-pretrained --size 32 --epochs 3 --out runs/planet
  python -m course_utils train --images photos/ --folders --size 224 --epochs 4 --out runs/pets
  python -m course_utils train --images scenes/images --masks scenes/labels --size 128 --out runs/streets
"""


def add_train_command(commands) -> None:
    """Register `train` on the CLI's subparsers."""
    cmd = commands.add_parser(
        "train", help="train a model on your own images with the lesson's recipe",
        description="Train on your own images: lr_find picks the learning rate (unless --lr), then the head "
                    "trains with the body frozen, then everything with discriminative learning rates; the "
                    "model is exported to OUT/export.pkl for `predict`.",
        epilog=TRAIN_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("--images", required=True, metavar="DIR", help="folder of images")
    layout = cmd.add_mutually_exclusive_group(required=True)
    layout.add_argument("--csv", metavar="FILE", help="CSV: image name, space-separated labels (multi-label)")
    layout.add_argument("--folders", action="store_true", help="one sub-folder of DIR per class (single-label)")
    layout.add_argument("--masks", metavar="DIR", help="folder of class-index PNG masks named like the images")
    cmd.add_argument("--codes", metavar="FILE", help="class names for --masks, one per line (default: codes.txt "
                     "beside the masks folder)")
    cmd.add_argument("--arch", default="resnet34", help="torchvision architecture (default: resnet34)")
    cmd.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                     help="start from random weights instead of ImageNet's (no download needed)")
    cmd.add_argument("--size", type=positive_int, default=128, help="image size in pixels (default: 128)")
    cmd.add_argument("--bs", type=positive_int, default=32, help="batch size, per GPU under torchrun (default: 32)")
    cmd.add_argument("--epochs", type=positive_int, default=4, help="epochs for each of the two stages (default: 4)")
    cmd.add_argument("--lr", type=learning_rate, help="maximum learning rate (default: the LR finder's suggestion)")
    cmd.add_argument("--valid-pct", type=number_arg(lambda v: 0 < v < 1, "a number between 0 and 1 (both excluded)"),
                     default=0.2, help="share held out for validation, above 0 and below 1 (default: 0.2)")
    cmd.add_argument("--seed", type=seed_arg, default=42, help="seed of the validation split (default: 42)")
    cmd.add_argument("--out", required=True, metavar="DIR", help="where to write export.pkl")
    cmd.set_defaults(run=_train)


def number_arg(ok: Callable[[float], bool], expected: str, whole: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number for which `ok(value)` holds (and whole with `whole`), else an error
    saying it must be `expected`; argparse puts the option's name first ("argument --lr: must be ...")."""
    def parse(text: str):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and ok(value) and (not whole or value.is_integer())):
            raise argparse.ArgumentTypeError(f"must be {expected}, not {text!r}")
        return int(value) if whole else value
    parse.__name__ = "number"
    return parse


FLOAT32_MAX = 3.4028234663852886e38  # a larger learning rate is infinite for float32 weights (torch refuses it)

# a size, batch size or epoch count of 0 cannot work; a learning rate of 0, below 0 or NaN trains nothing or uphill
positive_int = number_arg(lambda v: v >= 1, "a positive whole number", whole=True)
learning_rate = number_arg(lambda v: 0 < v <= FLOAT32_MAX, "a finite number above 0")
seed_arg = number_arg(lambda v: v >= 0, "a whole number of at least 0", whole=True)


def _train(args) -> int:
    out = writable_folder(Path(args.out))  # before anything slow: a bad --out must not cost a training run
    src = own_data(args.images, csv=args.csv, masks=args.masks, codes=args.codes, valid_pct=args.valid_pct,
                   seed=args.seed)
    learn = own_learner(src, size=args.size, bs=args.bs, arch=args.arch, pretrained=args.pretrained)
    learn.path = out
    print(f"{len(src.train)} training and {len(src.valid)} validation images; {learn.data.c} outputs")
    finished = []
    def export_stage(stage: int) -> None:
        finished.append(stage)
        print(f"stage {stage} of 2 done; exported to {learn.export()}")
    try:
        lr = train_recipe(learn, args.epochs, args.lr, after_stage=export_stage)
    except KeyboardInterrupt:
        return _interrupted(learn, finished)
    except NonFiniteLossError:
        raise ValueError(_diverged(learn, finished)) from None
    print(f"learning rate {lr:.2e}; the final model is {out / 'export.pkl'}")
    return 0


def writable_folder(folder: Path, option: str = "--out", file: Path | None = None) -> Path:
    """`folder`, created if needed and known to be writable, or a ValueError naming `option` and saying why
    not (`file`: the option names a file and `folder` is where it goes)."""
    what = f"{option} {folder}" if file is None else f"the folder {folder} of {option} {file}"
    if folder.exists() and not folder.is_dir():
        hint = ("give a folder (the model is written inside it, as export.pkl)" if file is None
                else f"choose another {option}")
        raise ValueError(f"{what[0].upper()}{what[1:]} is a file, not a folder; {hint}.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"Cannot write in {what} ({e.strerror or e}); choose another {option}.") from e
    return folder


def _diverged(learn: Learner, finished: list[int]) -> str:
    """What the command line says when the training loss turned NaN or infinite (the NaN guard stopped it)."""
    stage = len(finished) + 1
    kept = (f"The model as stage {finished[-1]} finished stays exported in {learn.path / 'export.pkl'}."
            if finished else "Nothing was exported.")
    return (f"Training stopped in stage {stage} of 2, epoch {learn.epoch + 1}/{learn.n_epochs}: the loss became "
            f"{learn.loss.item():g} (learning rate {learn.opt.param_groups[-1]['lr']:.2e}), so the learning rate "
            f"is too high. {kept} Try a smaller --lr (or leave --lr out: the LR finder picks one); if it happens "
            "at once, look for NaN or infinite values in the data.")


def _interrupted(learn: Learner, finished: list[int]) -> int:
    """Ctrl-C: export whatever finished training holds, say where, and how to go on."""
    epochs = len(learn.recorder.epoch_rows)  # finished epochs of the stage that was interrupted
    if not finished and not epochs:
        print("\nInterrupted before the first epoch finished: nothing was trained, so nothing was saved.",
              file=sys.stderr)
        return 130
    stage = len(finished) + 1
    if epochs:  # finished epochs beyond the last export: export them
        f, what = learn.export(), f"after {epochs} finished epoch(s) of stage {stage}"
    else:  # a part-trained epoch is not worth replacing the finished stage's export with
        f, what = learn.path / "export.pkl", f"as stage {finished[-1]} finished"
    print(f"\nInterrupted in stage {stage} of 2. The model {what} is exported in {f}.\n"
          f"Use it: python -m course_utils predict {f} IMAGE...\n"
          "Train more: run the command again (training starts afresh; give another --out to keep this model).",
          file=sys.stderr)
    return 130


def add_predict_command(commands) -> None:
    """Register `predict` on the CLI's subparsers."""
    cmd = commands.add_parser(
        "predict", help="predict images with an exported model",
        description="Print each image's predicted labels and their probabilities.",
        epilog="example:\n  python -m course_utils predict runs/planet/export.pkl photo1.jpg photo2.jpg",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("model", metavar="MODEL", help="export.pkl written by `train` (or its folder)")
    cmd.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    cmd.add_argument("--thresh", type=number_arg(lambda v: 0 <= v <= 1, "a number from 0 to 1"),
                     help="multi-label: probability from 0 to 1 above which a label is printed (default: the "
                          "model's own, tuned or 0.5)")
    cmd.set_defaults(run=_predict)


def _predict(args) -> int:
    learn = load_learner(args.model)
    classes = learn.data.classes
    for img in args.images:
        label, _, probs = learn.predict(img, **({} if args.thresh is None else {"thresh": args.thresh}))
        if probs.dim() == 3:  # a mask: report the share of pixels of each class
            shares = probs.argmax(0).flatten().bincount(minlength=len(classes)).float() / probs[0].numel()
            top = sorted(zip(classes, shares.tolist()), key=lambda t: -t[1])[:5]
            print(f"{img}: " + ", ".join(f"{c} {s:.0%} of pixels" for c, s in top if s > 0))
        elif probs.dim() == 1 and classes and len(probs) == len(classes):
            top = sorted(zip(classes, probs.tolist()), key=lambda t: -t[1])[:5]
            detail = ", ".join(f"{c} {p:.3f}" for c, p in top)
            print(f"{img}: {label}  ({detail})")
        else:
            print(f"{img}: {label}")
    return 0

"""Fine-tune an exported model on the corrections its web app collected (lesson 3's Q&A: "record what the user
said the right answer was, then fine-tune on those at the end of the day"):

    python -m course_utils finetune EXPORT --feedback DIR [--data ORIGINAL] [--epochs N] --out NEW_EXPORT

The corrections (feedback.csv) become a small training set, mixed with a sample of the original training data
when `--data` names it, so the model learns the corrections without forgetting the rest. The score on the
corrected items and on the original validation set is printed before and after; the new model is exported
to NEW_EXPORT, never over an existing file.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .callbacks import Callback
from .config import seed_everything
from .data_block import DataBunch, LabelLists, MultiCategoryList
from .learner import Learner, load_learner
from .serve.feedback import read_feedback
from .serve.predictor import model_kind
from .tables import read_csv

__all__ = ["FrozenBatchNorm", "read_corrections", "original_lists", "finetune_data", "score", "finetune",
           "add_finetune_command"]

# Original training items mixed in per correction: enough that the model keeps seeing what it knew, few
# enough that the corrections are a fifth of what it trains on and are learnt within a few epochs.
ORIGINAL_PER_CORRECTION = 4


class FrozenBatchNorm(Callback):
    """Keeps BatchNorm layers in evaluation mode while fine-tuning: a handful of corrections (batches of one or
    two) cannot re-estimate the statistics the model learnt on the whole dataset; its weights still train."""
    order = 1

    def before_batch(self):
        if self.learn.training:
            for m in self.learn.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()


# --- the data ------------------------------------------------------------------------------------------------
def read_corrections(learn: Learner, feedback: str | Path) -> tuple[list, list]:
    """(items, labels) from feedback.csv: image paths (or texts) and their corrected labels, checked against the
    model's classes before any training (errors name the CSV line)."""
    kind = model_kind(learn)
    if kind == "segmentation":
        raise ValueError("The web app collects no corrections for masks, so there is nothing to fine-tune on.")
    classes = set(learn.data.classes or [])
    items, labels = [], []
    for line, row in enumerate(read_feedback(feedback), start=2):
        where = f"{Path(feedback) / 'feedback.csv'}, line {line}"
        labels.append(_parse_label(kind, row["corrected"], classes, where))
        items.append(row["path"].read_text(encoding="utf-8") if kind == "text" else row["path"])
    return items, labels


def _parse_label(kind: str, text: str, classes: set, where: str):
    if kind == "points":
        try:
            pts = np.array([float(v) for v in text.replace(";", " ").split()], dtype=np.float32).reshape(-1, 2)
        except ValueError:
            raise ValueError(f"{where}: {text!r} is not a point 'row col'; fix or remove the line.") from None
        return pts
    tags = text.split() if kind == "multi-label" else [text]
    unknown = [t for t in tags if t not in classes]
    if unknown:
        raise ValueError(f"{where}: {unknown[0]!r} is not one of the model's classes ({', '.join(sorted(classes))}); "
                         "fix or remove the line.")
    return tags if kind == "multi-label" else text


def original_lists(learn: Learner, data: str | Path, images: str | Path | None = None, seed: int = 42) -> LabelLists:
    """The original dataset, split as `train` (or the notebooks) split it: a folder of class sub-folders, or a
    CSV (image name, labels) with `images` = its images folder; for a text model, a CSV with `label` and
    `text` columns (and `is_valid`, as IMDB's sample). Points models have no such layout: use no --data."""
    from .train import own_data

    kind, data = model_kind(learn), Path(data)
    if not data.exists():
        raise FileNotFoundError(f"--data {data} does not exist.")
    if kind == "text":
        return _text_lists(learn, data, seed)
    if kind not in ("single-label", "multi-label"):
        raise ValueError(f"--data works for classifiers; for a {kind} model fine-tune on the corrections alone.")
    if data.is_dir():
        return own_data(data, valid_pct=0.2, seed=seed)
    if images is None:
        raise ValueError(f"--data {data} is a CSV: say where its images are with --images DIR.")
    return own_data(images, csv=data, valid_pct=0.2, seed=seed, label_delim=" " if kind == "multi-label" else None)


def _text_lists(learn: Learner, csv: Path, seed: int) -> LabelLists:
    from .text import TextList

    x = learn.data.train_ds.x
    df = read_csv(csv)
    texts = TextList.from_df(df, csv.parent, cols="text", vocab=x.vocab, tokenizer=x.tokenizer)
    split = texts.split_from_df("is_valid") if "is_valid" in df.columns else texts.split_by_rand_pct(0.2, seed=seed)
    return split.label_from_df(cols="label")


def _named(ds) -> tuple[list, list]:
    """A labelled set as (raw items, label names), for mixing with the corrections."""
    x, y = ds.x, ds.y
    items = [x.text(i) for i in range(len(x))] if hasattr(x, "text") else list(x.items)
    if isinstance(y, MultiCategoryList):
        return items, [[y.classes[j] for j in o] for o in y.items]
    return items, [y.classes[o] for o in y.items]


def finetune_data(learn: Learner, train: tuple[list, list], valid: tuple[list, list], bs: int = 16) -> DataBunch:
    """A DataBunch of raw items and label names, prepared exactly like the exported model's inputs (its
    classes, vocabulary and tokenizer, transforms, size and normalisation)."""
    exported, text = learn.data, model_kind(learn) == "text"
    x0, y0 = exported.train_ds.x, exported.train_ds.y
    items = list(train[0]) + list(valid[0])
    x = x0.new(items) if text else type(x0)(items, exported.path)  # a text list keeps its vocab and tokenizer
    n = len(train[0])
    kwargs = {"classes": exported.classes} if exported.classes is not None else {}
    src = x.split_by_idxs(range(n), range(n, len(items))).label_from_lists(train[1], valid[1], label_cls=type(y0),
                                                                           **kwargs)
    if text:
        return src.databunch(bs=min(bs, n), num_workers=0, device=exported.device)
    cfg = dataclasses.replace(exported.valid_ds.cfg, cache=False)  # feedback images: nothing worth caching
    src = src.transform((exported.train_ds.tfms, exported.valid_ds.tfms), **cfg.options())
    data = src.databunch(bs=min(bs, n), num_workers=0, device=exported.device)
    data.norm = exported.norm
    return data


# --- scoring --------------------------------------------------------------------------------------------------
def score(learn: Learner, data: DataBunch) -> tuple[str, float]:
    """(what, value) on `data`'s validation set: accuracy; for multi-label the share of items whose tags are
    all right (the model's thresholds); for points the mean distance in pixels of the model's input."""
    saved, learn.data = learn.data, data
    try:
        preds, targs = learn.get_preds("valid")
    finally:
        learn.data = saved
    y = data.train_ds.y
    if isinstance(y, MultiCategoryList):
        thresh = torch.as_tensor(saved.train_ds.y.thresh, dtype=preds.dtype)
        return "all tags right", float(((preds > thresh) == (targs > 0.5)).all(1).float().mean())
    if y.is_regression:
        h, w = data.valid_ds[0][0].shape[-2:]  # the model's input size
        half = torch.tensor([h / 2, w / 2])
        dist = ((preds.reshape(targs.shape) - targs) * half).norm(dim=-1).mean()
        return "mean point error (px)", float(dist)
    return "accuracy", float((preds.argmax(1) == targs).float().mean())


# --- the whole step ---------------------------------------------------------------------------------------------
def finetune(export: str | Path, feedback: str | Path, out: str | Path, data: str | Path | None = None,
             images: str | Path | None = None, epochs: int = 8, lr: float = 1e-3, seed: int = 42) -> dict:
    """Fine-tune `export` on the corrections in `feedback` (plus a sample of `data`'s training set), print
    the scores before and after, and export the result to `out`. Returns the scores."""
    out = _new_export_path(export, out)
    seed_everything(seed)
    learn = load_learner(export)
    corr = read_corrections(learn, feedback)
    orig = original_lists(learn, data, images, seed) if data is not None else None
    train = _mix(corr, orig, seed)
    sets = {"corrected items": finetune_data(learn, corr, corr)}
    if orig is not None:
        sets["original validation"] = finetune_data(learn, corr, _named(orig.valid))
    print(f"{len(corr[0])} corrections from {feedback}; {len(train[0]) - len(corr[0])} original training items "
          f"mixed in; {epochs} epochs at lr {lr:g}")
    before = {k: score(learn, d) for k, d in sets.items()}
    _train(learn, finetune_data(learn, train, _named(orig.valid) if orig is not None else corr), epochs, lr)
    after = {k: score(learn, d) for k, d in sets.items()}
    _print_scores(sets, before, after)
    learn.path = out.parent
    learn.export(out.name)
    print(f"exported to {out} (the original {export} is unchanged)")
    return {k: (before[k][1], after[k][1]) for k in sets}


def _new_export_path(export: str | Path, out: str | Path) -> Path:
    out, export = Path(out), Path(export)
    export = export / "export.pkl" if export.is_dir() else export
    if out.exists() or out.resolve() == export.resolve():
        raise ValueError(f"{out} exists already; finetune never overwrites an export. Choose another --out.")
    return out


def _mix(corr: tuple[list, list], orig: LabelLists | None, seed: int) -> tuple[list, list]:
    if orig is None:
        return corr
    items, labels = _named(orig.train)
    n = min(len(items), ORIGINAL_PER_CORRECTION * len(corr[0]))
    pick = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
    return list(corr[0]) + [items[i] for i in pick], list(corr[1]) + [labels[i] for i in pick]


def _train(learn: Learner, data: DataBunch, epochs: int, lr: float) -> None:
    """Train every layer with the one-cycle schedule, BatchNorm statistics frozen, then restore the export's
    inference data (its thresholds, vocabulary and transforms go into the new export unchanged)."""
    exported, learn.data = learn.data, data
    frozen = FrozenBatchNorm()
    frozen.learn = learn
    learn.callbacks.append(frozen)
    try:
        learn.fit_one_cycle(epochs, lr)
    finally:
        learn.callbacks.remove(frozen)
        learn.data = exported


def _print_scores(sets: dict, before: dict, after: dict) -> None:
    what = next(iter(before.values()))[0]
    print(f"{what + ' on':<32} {'before':>8} {'after':>8}")
    for k, d in sets.items():
        print(f"{k + f' ({len(d.valid_ds)})':<32} {before[k][1]:>8.3f} {after[k][1]:>8.3f}")


# --- command line -----------------------------------------------------------------------------------------------
FINETUNE_EXAMPLE = """example:
  python -m course_utils finetune runs/planet/export.pkl --feedback runs/planet/feedback \\
      --data data/planet_tiny/train_v2.csv --images data/planet_tiny/train-jpg --out runs/planet/export-2.pkl
"""


def add_finetune_command(commands) -> None:
    """Register `finetune` on the CLI's subparsers."""
    cmd = commands.add_parser(
        "finetune", help="fine-tune an exported model on the corrections its web app collected",
        description="Fine-tune an exported model on the corrections in feedback.csv (written by `serve`), mixed "
                    "with a sample of the original training data if --data is given; prints the scores on the "
                    "corrected items and on the original validation set before and after, and writes a new export.",
        epilog=FINETUNE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("export", metavar="EXPORT", help="export.pkl (or its folder)")
    cmd.add_argument("--feedback", required=True, metavar="DIR", help="the folder holding feedback.csv")
    cmd.add_argument("--data", metavar="ORIGINAL", help="the original data: a folder of class sub-folders, a CSV "
                     "of (image, labels) with --images, or a text CSV (label, text[, is_valid])")
    cmd.add_argument("--images", metavar="DIR", help="the images of a --data CSV")
    cmd.add_argument("--epochs", type=int, default=8, help="epochs (default: 8)")
    cmd.add_argument("--lr", type=float, default=1e-3, help="maximum learning rate (default: 1e-3)")
    cmd.add_argument("--out", required=True, metavar="NEW_EXPORT", help="the new export file (must not exist)")
    cmd.set_defaults(run=_finetune)


def _finetune(args) -> int:
    finetune(args.export, args.feedback, args.out, args.data, args.images, args.epochs, args.lr)
    return 0

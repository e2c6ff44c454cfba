"""The data of `finetune`: the corrections in the web app's feedback.csv, checked row by row before any training
(each error names the CSV line), the original dataset split as `train` split it, and DataBunches of raw items
prepared exactly like an exported model's inputs."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from .data_block import DataBunch, LabelLists
from .kinds import kind_of
from .learner import Learner
from .serve.feedback import read_feedback
from .tables import read_csv
from .vision.image import open_lazy

__all__ = ["finetune_data"]


LISTED = 3  # notes about many rows name this many lines, then give a count


def read_corrections(learn: Learner, feedback: str | Path) -> tuple[list, list, list[str]]:
    """(items, labels, notes) from feedback.csv: image paths (or texts) and their corrected labels, checked
    before any training, each error naming the CSV line: the labels against the model's classes, each stored
    image decoded once (an empty or cut file), a point inside its photo. A row whose correction equals what the
    model predicted is no correction: it is skipped, and `notes` says so; when one input was corrected more
    than once, it counts once, with its latest correction."""
    kind = kind_of(learn)  # how its cells read (kinds.py: the web app writes them the same way)
    if kind.uncollected:
        raise ValueError(f"The web app collects no corrections for {kind.uncollected}, so there is nothing to "
                         "fine-tune on.")
    classes = set(learn.data.classes or [])
    csv = Path(feedback) / "feedback.csv"
    kept, sizes, skipped, repeated = {}, {}, [], []
    for n, row in enumerate(read_feedback(feedback), start=2):
        line, name = row.get("line", n), row["file"]
        where = f"{csv}, line {line}"
        if kind.input == "image" and name not in sizes:
            sizes[name] = _image_size(row["path"], where)  # once per stored image, however many rows name it
        label = kind.read_cell(row["corrected"], classes, where, sizes.get(name))
        if kind.same_answer(row["predicted"], row["corrected"]):
            skipped.append((where, row["corrected"]))
            continue
        if name in kept:
            repeated.append((where, name, kept[name][0]))
        kept[name] = (line, _read_text(row["path"], where) if kind.input == "text" else row["path"], label)
    notes = _notes(csv, [f"{w}: the correction {c!r} is what the model predicted, so it corrects nothing; skipped."
                         for w, c in skipped], [w for w, _ in skipped],
                   "the correction is what the model predicted, so they correct nothing; skipped")
    notes += _notes(csv, [f"{w}: {f} was corrected before (line {first}); this later correction is used."
                          for w, f, first in repeated], [w for w, _, _ in repeated],
                    f"each corrects an input an earlier row corrected; every input counts once, with its latest "
                    f"correction: {len(kept)} inputs in all")
    return [v[1] for v in kept.values()], [v[2] for v in kept.values()], notes


def _notes(csv: Path, each: list[str], wheres: list[str], summary: str) -> list[str]:
    """One note per row when there are a few, else one note: how many rows, the first lines, and `summary`
    (100,000 rows naming the same 8 images must not print 100,000 lines)."""
    if len(each) <= LISTED:
        return each
    lines = ", ".join(w.rpartition("line ")[2] for w in wheres[:LISTED])
    return [f"{csv}, lines {lines}, ... ({len(each)} rows): {summary}."]


def _image_size(path: Path, where: str) -> tuple[int, int]:
    """(height, width) of a stored image as the model sees it (upright), decoded in full, so an empty or cut
    file is reported here with its CSV line rather than during training."""
    try:
        with open_lazy(path) as img:
            img.load()
            return img.height, img.width
    except (ValueError, OSError):
        what = "is empty" if path.is_file() and path.stat().st_size == 0 else "cannot be decoded as an image"
        raise ValueError(f"{where}: the stored input {path.name} {what}; restore it or remove the line.") from None


def _read_text(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{where}: the stored text {path.name} is not UTF-8; restore it or remove the line.") from None


def original_lists(learn: Learner, data: str | Path, images: str | Path | None = None, seed: int = 42) -> LabelLists:
    """The original dataset, split as `train` (or the notebooks) split it: a folder of class sub-folders, or a
    CSV (image name, labels) with `images` = its images folder; for a text model, a CSV with `label` and
    `text` columns (and `is_valid`, as IMDB's sample). Points models have no such layout: use no --data."""
    from .train import own_data

    kind, data = kind_of(learn), Path(data)
    if not data.exists():
        raise FileNotFoundError(f"--data {data} does not exist.")
    if kind.input == "text":
        return _text_lists(learn, data, seed)
    if not kind.classifier:
        raise ValueError(f"--data works for classifiers; for a {kind.name} model fine-tune on the corrections "
                         "alone.")
    if data.is_dir():
        return own_data(data, valid_pct=0.2, seed=seed)
    if images is None:
        raise ValueError(f"--data {data} is a CSV: say where its images are with --images DIR.")
    return own_data(images, csv=data, valid_pct=0.2, seed=seed, label_delim=kind.label_delim)


def _text_lists(learn: Learner, csv: Path, seed: int) -> LabelLists:
    from .text import TextList

    x = learn.data.train_ds.x
    df = read_csv(csv)
    texts = TextList.from_df(df, csv.parent, cols="text", vocab=x.vocab, tokenizer=x.tokenizer)
    split = texts.split_from_df("is_valid") if "is_valid" in df.columns else texts.split_by_rand_pct(0.2, seed=seed)
    return split.label_from_df(cols="label")


def named_items(ds) -> tuple[list, list]:
    """A labelled set as (raw items, label names), for mixing with the corrections."""
    x = ds.x
    items = [x.text(i) for i in range(len(x))] if hasattr(x, "text") else list(x.items)
    return items, kind_of(ds).label_names(ds.y)


def same_inputs(corrected: list, items: list) -> list[int]:
    """Indices of `items` (original image paths or texts) that are one of the corrected inputs, byte for byte.
    Only files as large as a corrected one are read."""
    if not corrected:
        return []
    if isinstance(corrected[0], str):  # texts
        wanted = set(corrected)
        return [i for i, t in enumerate(items) if t in wanted]
    digests = {_sha256(Path(p)) for p in corrected}
    sizes = {Path(p).stat().st_size for p in corrected}
    found = []
    for i, p in enumerate(items):
        try:
            if Path(p).stat().st_size in sizes and _sha256(Path(p)) in digests:
                found.append(i)
        except OSError:
            continue
    return found


def _sha256(f: Path) -> str:
    return hashlib.sha256(f.read_bytes()).hexdigest()


def finetune_data(learn: Learner, train: tuple[list, list], valid: tuple[list, list], bs: int = 16) -> DataBunch:
    """A DataBunch of raw items and label names, prepared exactly like the exported model's inputs (its
    classes, vocabulary and tokenizer, transforms, size and normalisation)."""
    exported, text = learn.data, kind_of(learn).input == "text"
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

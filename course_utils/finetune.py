"""Fine-tune an exported model on the corrections its web app collected (lesson 3's Q&A at 42:01: keep what the
users said the right answer was, and fine-tune on it at the end of the day):

    python -m course_utils finetune EXPORT --feedback DIR [--data ORIGINAL] --out NEW_EXPORT

The corrections (feedback.csv) become a small training set, mixed with the original training data when `--data`
names it, so the model learns the corrections without forgetting the rest. The recipe (chosen by measurement on
tiny Planet, see RECIPE below): only the last linear layer trains, by plain SGD with momentum, on its inputs
computed once (the body and its BatchNorm statistics stay as they were); each correction counts 64 times; and
after every epoch the original validation set is scored (accuracy, or for multi-label the lesson's F2 at 0.2),
so the epoch kept is the one that fixes most corrections without losing more than `tolerance` there. The score
on the corrected items (all tags right, for multi-label) and on the original validation set is printed before
and after. When every epoch loses more than
the tolerance, nothing is written unless `accept_worse` (`--accept-worse`); the new export never replaces a file.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .callbacks import CALLBACK_ORDER, Callback
from .config import seed_everything
from .data_block import DataBunch, LabelLists
from .finetune_data import finetune_data, named_items, original_lists, read_corrections, same_inputs
from .guard import NonFiniteLossError
from .kinds import LOWER_IS_BETTER, kind_of
from .learner import Learner, load_learner
from .train import FLOAT32_MAX, learning_rate, number_arg, positive_int, writable_folder

__all__ = ["finetune", "add_finetune_command"]

DEFAULT_TOLERANCE = 0.02  # the most the original validation score may drop (absolute) before finetune refuses

# The recipe, chosen by measuring candidates on the tiny-Planet model of nbs/lesson3-your-own-data.ipynb with
# five real corrections of wrong validation predictions (the measurements are in the README's finetune section).
RECIPE = {
    "epochs": 12,                 # epochs over the mix; the best one is kept (see `_pick_epoch`)
    "lr": 0.1,                    # plain SGD's rate (momentum 0.9, constant) for the last layer
    "train": "last",              # what trains: "last" linear layer, the "head" (body frozen), or "all" layers
    "correction_weight": 64,      # each correction appears this many times in the mix
    "original_per_correction": 20,  # original training items mixed in per correction ...
    "all_original_up_to": 1000,   # ... or all of them when the original training set is no larger than this
}


TRAIN = {"last": "the last layer", "head": "the head", "all": "every layer"}


class FrozenBatchNorm(Callback):
    """Keeps BatchNorm layers in evaluation mode while fine-tuning: a handful of corrections (batches of one or
    two) cannot re-estimate the statistics the model learnt on the whole dataset; its weights still train."""
    order = CALLBACK_ORDER["FrozenBatchNorm"]

    def before_batch(self):
        if self.learn.training:
            for m in self.learn.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()


class _EpochStates(Callback):
    """Keeps a copy of the weights after every epoch, so the best epoch can be kept (early stopping)."""
    order = CALLBACK_ORDER["EpochStates"]

    def __init__(self, states: list[dict]):
        self.states = states

    def after_epoch(self):
        self.states.append({k: v.detach().clone() for k, v in self.learn.model.state_dict().items()})


@dataclasses.dataclass
class FinetuneResult:
    """What `finetune` did: `scores` maps each scored set to (before, after), `epoch` is the epoch kept (0: the
    original model, nothing better was found), `written` the new export (None when nothing was written),
    `notes` the corrections skipped or reported, `per_epoch` the scores after each epoch, `interrupted` whether
    Ctrl-C stopped the training early (the finished epochs were scored and the best kept by the usual rule)."""
    what: str
    scores: dict
    epoch: int
    written: Path | None
    notes: list
    per_epoch: list
    interrupted: bool = False

    def __getitem__(self, key):  # result["corrected items"] -> (before, after), as the scores dict did
        return self.scores[key]


# --- scoring --------------------------------------------------------------------------------------------------
def score(learn: Learner, data: DataBunch, exact: bool = True) -> tuple[str, float]:
    """(what, value) on `data`'s validation set: accuracy; for multi-label the share of items whose tags are
    all right (the model's thresholds), or with `exact=False` the lesson's own metric, F2 at threshold 0.2 (the
    validation score: one wrong tag on one photo moves it a little, not a whole item); for points the mean
    distance in pixels of the model's input."""
    saved, learn.data = learn.data, data
    try:
        preds, targs = learn.get_preds("valid")
    finally:
        learn.data = saved
    return kind_of(data).score(preds, targs, learn, data, exact)  # each kind's metric: kinds.py


# --- the whole step ---------------------------------------------------------------------------------------------
def finetune(export: str | Path, feedback: str | Path, out: str | Path, data: str | Path | None = None,
             images: str | Path | None = None, epochs: int | None = None, lr: float | None = None, seed: int = 42,
             tolerance: float = DEFAULT_TOLERANCE, accept_worse: bool = False, train: str | None = None,
             correction_weight: int | None = None) -> FinetuneResult:
    """Fine-tune `export` on the corrections in `feedback` (mixed with `data`'s training set), print the scores
    before and after, and export the epoch that fixes most corrections while the original validation score
    drops by at most `tolerance` to `out` (a new file). When every epoch drops more, nothing is written unless
    `accept_worse`. Unset settings come from `RECIPE`. Returns a `FinetuneResult`."""
    epochs = _positive("epochs", RECIPE["epochs"] if epochs is None else epochs, whole=True)
    lr = _positive("lr", RECIPE["lr"] if lr is None else lr, most=FLOAT32_MAX)
    tolerance = _positive("tolerance", tolerance, zero=True)
    train = train or RECIPE["train"]
    if train not in TRAIN:
        raise ValueError(f"train={train!r}: say one of {', '.join(map(repr, TRAIN))}.")
    weight = int(_positive("correction_weight", correction_weight or RECIPE["correction_weight"], whole=True))
    out, export = _new_export_path(export, out)  # before anything slow: a bad --out must not cost a training run
    seed_everything(seed)
    learn = load_learner(export)
    items, labels, notes = read_corrections(learn, feedback)
    orig = original_lists(learn, data, images, seed) if data is not None else None
    train_set, valid_set, more = _sets((items, labels), orig, weight, seed)
    notes += more
    for note in notes:
        print(note)
    if not items:
        print(f"Nothing to fine-tune on: no row of {Path(feedback) / 'feedback.csv'} corrects the model. "
              "Nothing was written.")
        return FinetuneResult("", {}, 0, None, notes, [])
    corr = (items, labels)
    sets = {"corrected items": finetune_data(learn, corr, corr)}
    if valid_set is not None:
        sets["original validation"] = finetune_data(learn, corr, valid_set)
    n_corr = weight * len(items)
    n_orig = len(train_set[0]) - n_corr
    print(f"{len(items)} corrections from {feedback} (each counted {weight} times); {n_orig} original training "
          f"items mixed in; {TRAIN[train]} trained {epochs} epochs at lr {lr:g}")
    exact = {"corrected items": True, "original validation": False}
    before = {k: score(learn, d, exact[k]) for k, d in sets.items()}
    what = before["corrected items"][0]
    original = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    states, interrupted = _train_epochs(learn, corr, weight, train_set, valid_set, epochs, lr, seed, train)
    if not states:
        print(f"\nInterrupted before the first epoch finished: nothing was trained, so nothing was written to {out}.")
        return FinetuneResult(what, {k: (v[1], v[1]) for k, v in before.items()}, 0, None, notes, [], True)
    if interrupted:
        print(f"\nInterrupted after {len(states)} finished epoch(s) of {epochs}: they are scored, and the best is "
              "kept by the same rule as at the end of a full run.")
    per_epoch = []
    for state in states:
        learn.model.load_state_dict(state)
        per_epoch.append({k: score(learn, d, exact[k])[1] for k, d in sets.items()})
    epoch, verdict, write = _pick_epoch(what, {k: v[1] for k, v in before.items()}, per_epoch, tolerance,
                                        accept_worse)
    learn.model.load_state_dict(states[epoch - 1] if epoch else original)
    after = per_epoch[epoch - 1] if epoch else {k: v[1] for k, v in before.items()}
    _print_scores(sets, before, after, epoch, len(states))
    print("after each epoch: " + ", ".join(" / ".join(f"{v:.3f}" for v in e.values()) for e in per_epoch)
          + f"  ({' / '.join(sets)})")
    print(verdict)
    written = None
    if write and not _finite(learn.model):
        print(f"The fine-tuned weights are not all finite numbers (lr {lr:g} is far too high); nothing was "
              "written. Try a lower --lr.")
        write = False
    if write:
        learn.path = out.parent
        written = learn.export(out.name)
        print(f"exported to {out} (the original {export} is unchanged); serve it with "
              f"`python -m course_utils serve {out} --feedback {feedback}`")
    return FinetuneResult(what, {k: (before[k][1], after[k]) for k in sets}, epoch, written, notes, per_epoch,
                          interrupted)


def _positive(name: str, value, whole: bool = False, zero: bool = False, most: float = math.inf):
    """`value` if it is a finite number above 0 (or 0 with `zero`; whole with `whole`) and at most `most`, else a
    ValueError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
        value >= 0 if zero else value > 0) and value <= most and (not whole or float(value).is_integer())
    if not ok:
        kind = "a whole number of at least 1" if whole else ("a number of at least 0" if zero else "a positive number")
        raise ValueError(f"finetune: {name} must be {kind}" + (f" up to {most:g}" if most < math.inf else "")
                         + f", not {value!r}.")
    return int(value) if whole else float(value)


def _new_export_path(export: str | Path, out: str | Path) -> tuple[Path, Path]:
    """(out, export): `out` must be a new file, in a folder that is created if needed and that we can write to,
    checked before any training (as `train` checks its --out)."""
    out, export = Path(out), Path(export)
    export = export / "export.pkl" if export.is_dir() else export
    if out.exists() or out.resolve() == export.resolve():
        raise ValueError(f"{out} exists already; finetune never overwrites an export. Choose another --out.")
    writable_folder(out.parent, "--out", file=out)
    return out, export


def _sets(corr: tuple[list, list], orig: LabelLists | None, weight: int,
          seed: int) -> tuple[tuple[list, list], tuple[list, list] | None, list[str]]:
    """(the training mix, the original validation set without the corrected inputs, notes). Each correction
    appears `weight` times; original items whose input was corrected are left out of both."""
    items, labels = list(corr[0]) * weight, list(corr[1]) * weight
    if orig is None:
        return (items, labels), None, ["Without --data there is no original validation set: finetune cannot tell "
                                       "whether the model got worse on what it knew."] if corr[0] else []
    notes = []
    v_items, v_labels = named_items(orig.valid)
    in_valid = same_inputs(corr[0], v_items)
    if in_valid:
        notes.append(f"{len(in_valid)} of the corrected inputs are also in the original validation set; they are "
                     "scored with the corrected items and left out of 'original validation'.")
    keep = sorted(set(range(len(v_items))) - set(in_valid))
    valid = ([v_items[i] for i in keep], [v_labels[i] for i in keep])
    t_items, t_labels = named_items(orig.train)
    in_train = set(same_inputs(corr[0], t_items))
    if in_train:
        notes.append(f"{len(in_train)} of the corrected inputs are in the original training set: their old labels "
                     "are left out of the mix (the corrections replace them).")
    pool = [i for i in range(len(t_items)) if i not in in_train]
    n = len(pool) if len(pool) <= RECIPE["all_original_up_to"] else RECIPE["original_per_correction"] * len(corr[0])
    pick = np.random.default_rng(seed).choice(pool, size=min(n, len(pool)), replace=False) if corr[0] else []
    return (items + [t_items[i] for i in pick], labels + [t_labels[i] for i in pick]), valid, notes


def _train_epochs(learn: Learner, corr: tuple[list, list], weight: int, train_set: tuple[list, list],
                  valid_set: tuple[list, list] | None, epochs: int, lr: float, seed: int,
                  train: str) -> tuple[list[dict], bool]:
    """(the weights after each finished epoch, whether Ctrl-C stopped the training early: the finished epochs
    are kept). A training loss that becomes NaN or infinite is a ValueError saying to lower the rate."""
    n_corr, states = weight * len(corr[0]), []
    try:
        orig = (train_set[0][n_corr:], train_set[1][n_corr:])
        if train != "last" or not _train_last(learn, corr, weight, orig, epochs, lr, seed, states):
            _train(learn, finetune_data(learn, train_set, valid_set or corr), epochs, lr, train, states)
    except KeyboardInterrupt:
        return states, True
    except NonFiniteLossError:
        raise ValueError(f"finetune: the training loss became NaN or infinite in epoch {len(states) + 1} of "
                         f"{epochs}: lr {lr:g} is far too high. Nothing was written; try a smaller --lr (the "
                         f"recipe's is {RECIPE['lr']:g}).") from None
    return states, False


def _train(learn: Learner, data: DataBunch, epochs: int, lr: float, train: str, states: list[dict]) -> None:
    """Train with the one-cycle schedule, BatchNorm statistics frozen (and with `train="head"` the body too),
    then restore the export's inference data (its thresholds, vocabulary and transforms go into the new export
    unchanged). The weights after each epoch are appended to `states`."""
    exported, learn.data = learn.data, data
    part = _trained_part(learn.model, train)
    for p in learn.model.parameters():
        p.requires_grad_(False)
    for p in part.parameters():
        p.requires_grad_(True)
    learn.create_opt()
    extra = [FrozenBatchNorm(), _EpochStates(states)]
    for cb in extra:
        cb.learn = learn
        learn.callbacks.append(cb)
    try:
        learn.fit_one_cycle(epochs, lr)
    finally:
        for cb in extra:
            learn.callbacks.remove(cb)
        for p in learn.model.parameters():
            p.requires_grad_(True)
        learn.data = exported


def _train_last(learn: Learner, corr: tuple[list, list], weight: int, orig: tuple[list, list], epochs: int,
                lr: float, seed: int, states: list[dict], bs: int = 16, momentum: float = 0.9) -> bool:
    """Train only the model's last linear layer with plain SGD (momentum, constant rate): the inputs of that
    layer are computed once (evaluation mode, the validation transforms), each correction counted `weight` times
    beside the original items `orig`. Adam moves every weight by about the rate however small its gradient, and
    measured, lost more on the original validation set; SGD moves each weight by its gradient. The model's
    weights after each epoch are appended to `states`. Returns False, untrained, when the last linear layer's
    output is not the model's output (then the whole model must run at every step)."""
    lin = [m for m in learn.model.modules() if isinstance(m, nn.Linear)]
    if not lin:
        return False
    lin = lin[-1]
    x, y = [], []
    for part, times in ((corr, weight), (orig, 1)):
        if not part[0]:
            continue
        feats, outs = [], []

        def keep(module, inputs, output, feats=feats, outs=outs):  # returns None: the output is left as it is
            feats.append(inputs[0].detach())
            outs.append(output.detach())

        hook = lin.register_forward_hook(keep)
        data, saved = finetune_data(learn, part, part), learn.data
        learn.data = data
        try:
            preds, targs = learn.get_preds("valid", activ=False)
        finally:
            learn.data = saved
            hook.remove()
        out = torch.cat(outs)
        if out.shape != preds.shape or not torch.allclose(out, preds, atol=1e-4):
            return False
        x.append(torch.cat(feats).repeat(times, *[1] * (feats[0].dim() - 1)))
        y.append(targs.repeat(times, *[1] * (targs.dim() - 1)))
    x, y = torch.cat(x), torch.cat(y)
    loss_func = learn.loss_func
    opt = torch.optim.SGD(lin.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), bs):
            i = order[start:start + bs]
            loss = loss_func(lin(x[i].to(lin.weight.device)), y[i].to(lin.weight.device))
            if not bool(torch.isfinite(loss)):
                raise NonFiniteLossError(f"the loss became {loss.item()}")
            opt.zero_grad()
            loss.backward()
            opt.step()
        states.append({k: v.detach().clone() for k, v in learn.model.state_dict().items()})
    return True


def _trained_part(model: nn.Module, train: str) -> nn.Module:
    """What trains: "all" the model; "head" a CNN's head or a text classifier's pooling classifier (the last
    child); "last" the model's last linear layer (the one that gives the classes' scores)."""
    if train == "all":
        return model
    if train == "last":
        return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    children = list(model.children())
    return children[-1] if len(children) > 1 else model


def _pick_epoch(what: str, before: dict, per_epoch: list[dict], tolerance: float,
                accept_worse: bool) -> tuple[int, str, bool]:
    """(the epoch to keep, 0 for the original; what happened, in a sentence; whether to write it). The epoch
    kept fixes the most corrected items among those that lose at most `tolerance` on the original validation
    set (then: the best validation score); with no such epoch, nothing is written unless `accept_worse`."""
    sign = -1 if what in LOWER_IS_BETTER else 1
    gain = lambda e, k: sign * (per_epoch[e - 1][k] - before[k])  # noqa: E731  (above 0: better)
    epochs = range(1, len(per_epoch) + 1)
    rank = lambda e: (gain(e, "corrected items"), gain(e, "original validation") if "original validation" in before  # noqa: E731
                      else 0, e)
    if "original validation" not in before:
        best = max(epochs, key=rank)
        return best, f"Kept epoch {best} (no validation set to check it against).", True
    ok = [e for e in epochs if gain(e, "original validation") >= -tolerance - 1e-9]
    if ok:
        best = max(ok, key=rank)
        if gain(best, "corrected items") > 0:
            return best, (f"Kept epoch {best}: it fixes the most corrected items while the original validation "
                          f"score drops by at most the tolerance, {tolerance:g}."), True
        if not accept_worse:
            return 0, ("No epoch did better on the corrected items without losing more than the tolerance "
                       f"({tolerance:g}) on the original validation set: the original model is kept and nothing "
                       "was written. Collect more corrections, or try another --lr or --epochs."), False
    worst = max(epochs, key=rank)
    drop = -gain(worst, "original validation")
    if not ok and not accept_worse:
        return 0, (f"REFUSED: every epoch lost more than the tolerance ({tolerance:g}) on the original validation "
                   f"set (epoch {worst}: {drop:+.3f} worse), so the fine-tuned model is worse at what it knew. The "
                   "original model is kept and nothing was written; try a lower --lr or fewer --epochs, or pass "
                   "--accept-worse to write it anyway."), False
    return worst, (f"Kept epoch {worst} although the original validation score dropped by {drop:.3f}, more than "
                   f"the tolerance ({tolerance:g}), because --accept-worse was given."), True


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def _print_scores(sets: dict, before: dict, after: dict, epoch: int, epochs: int) -> None:
    kept = f"after (epoch {epoch} of {epochs})" if epoch else "after (original kept)"
    print(f"{'':<30} {'score':<16} {'before':>7} {kept:>22}")
    for k, d in sets.items():
        print(f"{k + f' ({len(d.valid_ds)})':<30} {before[k][0]:<16} {before[k][1]:>7.3f} {after[k]:>22.3f}")


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
                    "with the original training data if --data is given; prints the scores on the corrected items "
                    "and on the original validation set before and after, and writes a new export unless the "
                    "original validation score drops by more than --tolerance.",
        epilog=FINETUNE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("export", metavar="EXPORT", help="export.pkl (or its folder)")
    cmd.add_argument("--feedback", required=True, metavar="DIR", help="the folder holding feedback.csv")
    cmd.add_argument("--data", metavar="ORIGINAL", help="the original data: a folder of class sub-folders, a CSV "
                     "of (image, labels) with --images, or a text CSV (label, text[, is_valid])")
    cmd.add_argument("--images", metavar="DIR", help="the images of a --data CSV")
    cmd.add_argument("--epochs", type=positive_int, default=RECIPE["epochs"],
                     help=f"epochs; the best is kept (default: {RECIPE['epochs']})")
    cmd.add_argument("--lr", type=learning_rate, default=RECIPE["lr"],
                     help=f"maximum learning rate (default: {RECIPE['lr']:g})")
    cmd.add_argument("--tolerance", type=number_arg(lambda v: v >= 0, "a number of at least 0"),
                     default=DEFAULT_TOLERANCE,
                     help="the most the original validation score may drop, absolute (default: "
                          f"{DEFAULT_TOLERANCE:g})")
    cmd.add_argument("--accept-worse", action="store_true", help="write the new export even when it loses more "
                     "than --tolerance on the original validation set")
    cmd.add_argument("--out", required=True, metavar="NEW_EXPORT", help="the new export file (must not exist)")
    cmd.set_defaults(run=_finetune)


def _finetune(args) -> int:
    try:
        res = finetune(args.export, args.feedback, args.out, args.data, args.images, args.epochs, args.lr,
                       tolerance=args.tolerance, accept_worse=args.accept_worse)
    except KeyboardInterrupt:  # before training, or while the finished epochs were scored
        done = f"{args.out} was written" if Path(args.out).exists() else f"nothing was written to {args.out}"
        print(f"\nInterrupted: {done}.", file=sys.stderr)
        return 130
    return 130 if res.interrupted else 0 if res.written is not None else 1

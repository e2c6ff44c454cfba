"""The Learner: a model, its data, a loss and an optimizer, and the lesson's training verbs
(fit_one_cycle, lr_find, freeze/unfreeze, save/load/export, predict).

The loop in `fit` is fixed; schedules, recording, progress and mixed precision are callbacks
(see callbacks.py for the events).
"""
from __future__ import annotations

import copy
import gc
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from .amp import MixedPrecision, PrecisionChoice, choose_precision
from .callbacks import CancelFit, LRFinder, OneCycleScheduler, ProgressTable, Recorder, unfreeze_slice  # noqa: F401
from .config import SMOKE_TRAIN_ITEMS, announce_smoke, smoke_batches
from .data_block import DataBunch
from .distributed import DistributedTraining, launched_by_torchrun
from .guard import NaNGuard
from .metrics import Metric, ValidSums
from .persist import (
    ModelSpec,
    atomic_save,
    check_data_fits,
    check_export,
    check_finite,
    check_spec_fits_weights,
    load_weights,
    safe_load,
    seal_export,
)
from .smallconv import use_small_map_convs

__all__ = ["Learner", "load_learner", "lr_find"]

DEFAULT_LR = slice(3e-3)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm)


def _first_images(batch):
    """A smoke test's training batch: a batch of images (N, C, H, W) cut to its first `SMOKE_TRAIN_ITEMS`, with its
    targets (a tensor, or a tuple of them: boxes and classes); other batches (texts: a language model carries its
    state from batch to batch at a fixed batch size) as they are."""
    xb, yb = batch
    k = SMOKE_TRAIN_ITEMS
    if not (isinstance(xb, torch.Tensor) and xb.dim() == 4 and len(xb) > k):
        return xb, yb
    return xb[:k], (yb[:k] if isinstance(yb, torch.Tensor) else type(yb)(t[:k] for t in yb))


def lr_range(lr: float | slice, n_groups: int) -> list[float]:
    """Per-layer-group learning rates: a float for all groups; `slice(b)` -> b/10 for all but the last group;
    `slice(a, b)` -> spread geometrically from a (first group) to b (last group)."""
    if not isinstance(lr, slice):
        return [float(lr)] * n_groups
    if lr.start is None:
        return [lr.stop / 10] * (n_groups - 1) + [lr.stop]
    if n_groups == 1:
        return [lr.stop]
    ratio = (lr.stop / lr.start) ** (1 / (n_groups - 1))
    return [lr.start * ratio ** i for i in range(n_groups)]


class Learner:
    """Trains `model` on `data`; the loss defaults to the one the data's label type calls for.

    The training loop's state, which callbacks read (and a few write), is declared here; each line says who
    writes it. Everything is set in `__init__`, so every attribute exists before the first fit."""
    # --- set by the loop itself (`fit`, `_one_batch`, `_evaluate`) ---------------------------------------
    training: bool                 # True during a training batch, False in validation and prediction
    n_epochs: int                  # the running (or last) fit's epochs
    epoch: int                     # the running epoch, from 0
    xb: torch.Tensor | None        # the current batch's inputs ...
    yb: torch.Tensor | None        # ... and targets
    pred: torch.Tensor | None      # the model's output for xb (float32)
    loss: torch.Tensor | None      # loss_func(pred, yb); DistributedTraining.after_batch replaces it by the
                                   # mean over the processes (what the Recorder records)
    loss_to_backward: torch.Tensor | None  # the loss the backward pass uses: RNNRegularizer adds AR/TAR to
                                   # it, then MixedPrecision scales it (in that order, see CALLBACK_ORDER)
    valid_sums: ValidSums          # the last validation's sums; DistributedTraining.after_validate adds up
                                   # the processes' shares
    epoch_result: dict | None      # the last epoch's validation results (what the progress table shows)
    fit_callbacks: list            # the running (or last) fit's callbacks, in event order
    # --- set by callbacks -------------------------------------------------------------------------------
    amp_dtype: torch.dtype | None  # MixedPrecision, during a fit: the autocast dtype `forward` uses
    skipped_steps: int             # MixedPrecision: fp16 steps the loss scaler skipped (overflowed gradients)
    # --- set by the learner's methods -------------------------------------------------------------------
    opt: torch.optim.Optimizer     # create_opt (again after freeze/unfreeze and when joining processes)
    dist: DistributedTraining | None  # to_distributed (automatic under torchrun)
    precision: PrecisionChoice | None  # to_fp16 / to_bf16: what was chosen and why

    def __init__(self, data: DataBunch, model: nn.Module, loss_func: Callable | None = None, metrics=None,
                 wd: float = 1e-2, train_bn: bool = True, path: str | Path | None = None, model_dir: str = "models",
                 layer_groups: Sequence[nn.Module] | None = None, callbacks: Sequence = (),
                 model_spec: ModelSpec | None = None):
        self.data, self.model = data, model.to(data.device)
        use_small_map_convs(model)  # a CPU's weight gradients on tiny maps, ten times faster (smallconv.py)
        self.loss_func = loss_func or data.loss_func
        metrics = metrics if isinstance(metrics, (list, tuple)) else ([metrics] if metrics else [])
        self.metric_fns = [Metric(m) for m in metrics]
        self.wd, self.train_bn = wd, train_bn
        self.path, self.model_dir = Path(path or data.path), model_dir
        self.layer_groups = list(layer_groups) if layer_groups else [model]
        self.model_spec = model_spec
        self.recorder = Recorder()
        self.callbacks = [self.recorder, NaNGuard(), *callbacks]
        for cb in self.callbacks:
            cb.learn = self
        self.amp_dtype, self.training, self.skipped_steps = None, False, 0
        self.precision, self._precision_said = None, None
        self.n_epochs, self.epoch = 0, 0
        self.xb = self.yb = self.pred = self.loss = self.loss_to_backward = None
        self.valid_sums, self.epoch_result, self.fit_callbacks = ValidSums(), None, []
        self.create_opt()
        self.dist: DistributedTraining | None = None
        if launched_by_torchrun():  # one of several processes: train as one of them
            self.to_distributed()

    @staticmethod
    def create_unet(data: DataBunch, arch, **kwargs) -> "Learner":
        """The lesson video's `Learner.create_unet(data, arch, ...)`: now `unet_learner` (same arguments)."""
        warnings.warn("`Learner.create_unet` is the lesson video's name; it is now `unet_learner` (same arguments).",
                      stacklevel=2)
        from .vision.unet import unet_learner
        return unet_learner(data, arch, **kwargs)

    @staticmethod
    def create_cnn(data: DataBunch, arch, **kwargs) -> "Learner":
        """The lesson video's `Learner.create_cnn(data, arch, ...)`: now `cnn_learner` (same arguments)."""
        warnings.warn("`Learner.create_cnn` is the lesson video's name; it is now `cnn_learner` (same arguments).",
                      stacklevel=2)
        from .vision.models import cnn_learner
        return cnn_learner(data, arch, **kwargs)

    def destroy(self) -> None:
        """Free what this learner holds (model, optimizer, data, recorded values) and the GPU's cached memory,
        before building a bigger one (CamVid's "go big"); `del learn` then frees the rest. Using the learner
        afterwards raises an error saying it was destroyed."""
        self.__dict__.clear()
        self.__dict__["_destroyed"] = True
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print("this Learner was destroyed: its model, optimizer and data are freed; build a new one to go on.")

    def __getattr__(self, name: str):
        if self.__dict__.get("_destroyed"):
            raise RuntimeError(f"This Learner was destroyed with learn.destroy(), so it has no {name!r} any more; "
                               "build a new one (e.g. `learn = unet_learner(data, models.resnet34, ...)`).")
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # --- optimizer and layer groups --------------------------------------------------------
    def create_opt(self) -> None:
        """A fresh AdamW (decoupled weight decay, betas (0.9, 0.99)) with one parameter group per layer group."""
        seen, groups = set(), []
        for g in self.layer_groups:
            params = [p for p in g.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            groups.append({"params": params})
        # fused: one kernel for all parameters; on a CPU ~4x faster a step than the default for a U-Net's 31M weights
        self.opt = torch.optim.AdamW(groups, lr=DEFAULT_LR.stop, betas=(0.9, 0.99), eps=1e-8, weight_decay=self.wd,
                                     fused=self.data.device.type in ("cpu", "cuda"))

    def set_hyper(self, lrs: Sequence[float], mom: float | None) -> None:
        """Set each layer group's learning rate (and beta1, if `mom` is given)."""
        for g, lr in zip(self.opt.param_groups, lrs):
            g["lr"] = lr
            if mom is not None:
                g["betas"] = (mom, g["betas"][1])

    def lr_range(self, lr: float | slice) -> list[float]:
        """This learner's per-group learning rates for `lr` (see `lr_range`)."""
        return lr_range(lr, len(self.layer_groups))

    def freeze_to(self, n: int) -> None:
        """Train only layer groups n onwards (BatchNorm layers keep training if `train_bn`); resets the optimizer."""
        for i, g in enumerate(self.layer_groups):
            frozen = i < (n if n >= 0 else len(self.layer_groups) + n)
            for m in g.modules():
                trainable = not frozen or (self.train_bn and isinstance(m, _BN_TYPES))
                for p in m.parameters(recurse=False):
                    p.requires_grad_(trainable)
        self.create_opt()

    def freeze(self) -> None:
        """Train only the last layer group (the new head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every layer group."""
        self.freeze_to(0)

    # --- the training loop ---------------------------------------------------------------------
    def fit(self, epochs: int, lr: float | slice = DEFAULT_LR, wd: float | None = None, callbacks: Sequence = (),
            progress: bool = True) -> None:
        """Train for `epochs` epochs at a constant learning rate (per group, see `lr_range`)."""
        if wd is not None:
            self.wd = wd
            for g in self.opt.param_groups:
                g["weight_decay"] = wd
        self.set_hyper(self.lr_range(lr), None)
        extra = [*callbacks, ProgressTable()] if progress else list(callbacks)
        for cb in extra:
            cb.learn = self
        cbs = self.fit_callbacks = sorted(self.callbacks + extra, key=lambda c: c.order)
        if smoke_batches():
            epochs = min(epochs, 1)  # COURSE_SMOKE: one epoch per call (and a couple of batches, see _batches)
        self.n_epochs, self.epoch = epochs, 0
        try:
            self._event("before_fit", cbs)
            for self.epoch in range(epochs):
                self._event("before_epoch", cbs)
                self._train_epoch(cbs)
                if self._event("before_validate", cbs):
                    continue  # a callback (the LR finder) asked to skip validation and the epoch's results
                self.epoch_result = self._validate(cbs)
                self._event("after_epoch", cbs)
        except CancelFit:
            pass
        except KeyboardInterrupt:
            self.opt.zero_grad(set_to_none=True)  # a half-done batch's gradients must not leak into the next fit
            print(f"Interrupted in epoch {self.epoch + 1}: the recorder keeps the {len(self.recorder.epoch_rows)} "
                  "finished epoch(s) and the model its weights so far; `learn.save(...)` them, or call fit again.")
            raise
        finally:
            self.training = False
            self._event("after_fit", cbs)

    def fit_one_cycle(self, cyc_len: int, max_lr: float | slice = DEFAULT_LR, moms=(0.95, 0.85),
                      div_factor: float = 25.0, pct_start: float = 0.3, final_div: float | None = None,
                      wd: float | None = None) -> None:
        """Train with the one-cycle policy (lesson 3): warm-up then cosine annealing of the LR, inverse momentum."""
        sched = OneCycleScheduler(self.lr_range(max_lr), moms, div_factor, pct_start, final_div)
        self.fit(cyc_len, max_lr, wd=wd, callbacks=[sched])

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int | None = None,
                stop_div: bool = True) -> None:
        """Train briefly with an exponentially growing learning rate, recording the loss, then restore the
        weights and optimizer. Look at the curve with `learn.recorder.plot(suggestion=True)`.

        `num_it` defaults to the lesson's 100 batches, but at most 5 epochs: on a small dataset more
        would mostly re-train on the same images (and take time) without sharpening the curve."""
        num_it = num_it or min(100, 5 * len(self.data.train_dl))
        model_state = copy.deepcopy(self.model.state_dict())
        opt_state = copy.deepcopy(self.opt.state_dict())
        epochs = math.ceil(num_it / max(1, len(self.data.train_dl)))
        try:
            self.fit(epochs, start_lr, callbacks=[LRFinder(start_lr, end_lr, num_it, stop_div)], progress=False)
        finally:
            self.model.load_state_dict(model_state)
            self.opt.load_state_dict(opt_state)
        print("LR Finder is complete, type learn.recorder.plot() to see the graph.")

    @staticmethod
    def _event(name: str, cbs: Sequence) -> bool:
        """Call the event `name` on each callback of `cbs` that has it, in order; True if any returned True."""
        handled = False
        for cb in cbs:
            method = getattr(cb, name, None)
            if method is not None:
                handled = bool(method()) or handled
        return handled

    def _own_callbacks(self) -> list:
        """The learner's own callbacks in event order: what evaluation outside a fit runs (not the LR finder or
        schedule of the last fit)."""
        return sorted(self.callbacks, key=lambda c: c.order)

    def _train_epoch(self, cbs: Sequence) -> None:
        self.training = True
        self.model.train()
        for self.xb, self.yb in self._batches(self.data.train_dl, train=True):
            self._one_batch(cbs)

    @staticmethod
    def _batches(dl, train: bool = False):
        """The batches of `dl`: all of them, or only the first under COURSE_SMOKE=1 (a smoke test), whose
        training batches of images keep their first `SMOKE_TRAIN_ITEMS` images (see config.py)."""
        n = smoke_batches()
        if n is None:
            return dl
        announce_smoke()
        batches = itertools.islice(dl, n)
        return map(_first_images, batches) if train else batches

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        """The model's output for a batch as float32, under this learner's precision (autocast when mixed)."""
        # in distributed training, the DDP wrapper's backward pass averages the gradients of all processes
        model = self.dist.ddp_model if self.training and self.dist and self.dist.ddp_model else self.model
        with torch.autocast(self.data.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            return model(xb).float()

    def _one_batch(self, cbs: Sequence) -> None:
        self._event("before_batch", cbs)
        self.pred = self.forward(self.xb)
        self.loss = self.loss_func(self.pred, self.yb)
        self._event("after_loss", cbs)
        if self.training:
            self.loss_to_backward = self.loss
            self._event("before_backward", cbs)
            self.loss_to_backward.backward()
            if not self._event("before_step", cbs):
                self.opt.step()
            self._event("after_step", cbs)
            self.opt.zero_grad(set_to_none=True)
        self._event("after_batch", cbs)

    def _evaluate(self, dl, cbs: Sequence, score: bool = True, keep: bool = False):
        """The one loop over a loader without training, behind `validate`, `get_preds` and `TTA`. Each batch
        fires before_batch, after_loss (when `score`) and after_batch on `cbs` with `learn.training` False, so
        callbacks see validation too. Returns the `ValidSums` (empty unless `score`) and, with `keep`, the raw
        outputs and targets on the CPU."""
        self.model.eval()
        self.training = False
        sums = ValidSums(metrics=[0.0] * len(self.metric_fns))
        preds, targs = [], []
        with torch.no_grad():
            for self.xb, self.yb in self._batches(dl):
                self._event("before_batch", cbs)
                self.pred = self.forward(self.xb)
                if score:
                    self.loss = self.loss_func(self.pred, self.yb)
                    self._event("after_loss", cbs)
                    n = len(self.xb)
                    sums.items += n
                    sums.loss += self.loss.item() * n
                    for i, m in enumerate(self.metric_fns):
                        sums.metrics[i] += float(m(self.pred, self.yb)) * n
                if keep:
                    preds.append(self.pred.cpu())
                    targs.append(self.yb.cpu())
                self._event("after_batch", cbs)
        return sums, preds, targs

    def validate(self) -> dict:
        """Validation loss and metrics of the current model, each averaged over the items (batch-size weighted);
        `train_loss` is the last smoothed training loss."""
        return self._validate(self._own_callbacks())

    def _validate(self, cbs: Sequence) -> dict:
        """`validate` with the callbacks `cbs` (a fit's, or the learner's own). After the loop, the
        `after_validate` event may change `learn.valid_sums` (distributed training adds up the processes'
        shares there)."""
        self.valid_sums, _, _ = self._evaluate(self.data.valid_dl, cbs)
        self._event("after_validate", cbs)
        sums = self.valid_sums
        total = sums.items
        result = {"train_loss": self.recorder.smooth_losses[-1] if self.recorder.smooth_losses else None,
                  "valid_loss": sums.loss / total if total else None}
        for m, s in zip(self.metric_fns, sums.metrics):
            result[m.name] = s / total if total else None
        return result

    # --- several processes ---------------------------------------------------------------------------
    def to_distributed(self, sync_bn: bool = False, timeout: float | None = None) -> "Learner":
        """Train as one of the processes torchrun started (done automatically under torchrun): DDP keeps the
        copies in step, each process trains on its share of each epoch, metrics cover the whole validation
        set, only rank 0 prints and writes files. `bs` is per process. `sync_bn` (GPUs only) computes
        BatchNorm statistics over all processes' batches; `timeout` (seconds) bounds any wait for the others.
        See course_utils/distributed.py."""
        if self.dist is None:
            dist = DistributedTraining(sync_bn, timeout)
            dist.setup(self)
            self.dist = dist
            self.callbacks.append(dist)
        return self

    # --- mixed precision ------------------------------------------------------------------------
    def to_fp16(self, force: bool = False) -> "Learner":
        """Mixed precision where it is faster: fp16 with loss scaling on a GPU (CUDA, MPS), bf16 on a CPU with
        native bf16, plain fp32 elsewhere. Prints what it chose; `force=True` insists on fp16
        (see `choose_precision`)."""
        return self._choose_precision(torch.float16, force)

    def to_bf16(self, force: bool = False) -> "Learner":
        """bf16 mixed precision where the hardware has it (weights stay float32); otherwise the fastest
        alternative, said in one line. `force=True` runs bf16 anyway, e.g. to measure emulated bf16 on a CPU."""
        return self._choose_precision(torch.bfloat16, force)

    def _choose_precision(self, wanted: torch.dtype, force: bool) -> "Learner":
        choice = choose_precision(self.data.device, wanted, force)
        if choice.reason != self._precision_said:
            print(choice.reason)  # once per learner and decision, not every time a notebook cell re-runs it
            self._precision_said = choice.reason
        self.precision = choice
        return self._set_precision(choice.dtype)

    def to_fp32(self) -> "Learner":
        """Back to plain float32 training."""
        return self._set_precision(None)

    def to_channels_last(self, enable: bool = True) -> "Learner":
        """Keep the model's 4-D weights (and so its activations) in channels_last memory order, which the
        bf16/fp16 convolution kernels of recent CPUs and GPUs prefer. Measure it (`python -m
        course_utils.bench`): on the 2-core CPU here it sped up resnet18 in bf16 at 128 px and slowed it at
        64 px. `enable=False` goes back to the usual order. Saved weights are the same either way."""
        fmt = torch.channels_last if enable else torch.contiguous_format
        self.model.to(memory_format=fmt)
        return self

    def _set_precision(self, dtype: torch.dtype | None) -> "Learner":
        self.callbacks = [c for c in self.callbacks if not isinstance(c, MixedPrecision)]
        if dtype is not None:
            cb = MixedPrecision(dtype)
            cb.learn = self
            self.callbacks.append(cb)
        return self

    # --- predictions ------------------------------------------------------------------------------
    def get_preds(self, ds_type: str = "valid", activ: bool = True, dl=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, targets) for a whole set, in the set's order; `activ` applies softmax/sigmoid. `dl`: any
        other loader instead, e.g. `learn.data.items_dl(paths)` for new items."""
        dl = dl if dl is not None else self.data.ordered_dl(ds_type)
        _, preds, targs = self._evaluate(dl, self._own_callbacks(), score=False, keep=True)
        preds = torch.cat(preds)
        return (self.data.train_ds.y.activation(preds) if activ else preds), torch.cat(targs)

    def TTA(self, beta: float = 0.4, n: int = 4, ds_type: str = "valid") -> tuple[torch.Tensor, torch.Tensor]:
        """Test-time augmentation: beta * plain predictions + (1 - beta) * the mean over `n` passes
        with the training augmentations."""
        preds, targs = self.get_preds(ds_type)
        aug_dl = self.data.ordered_dl(ds_type, augment=True)
        aug = torch.stack([self.get_preds(dl=aug_dl)[0] for _ in range(n)]).mean(0)
        return beta * preds + (1 - beta) * aug, targs

    def show_results(self, ds_type: str = "valid", rows: int = 3, **kwargs) -> None:
        """Inputs of one batch beside their targets and the model's predictions (how: the item type decides)."""
        xb, yb = next(iter(self.data.ordered_dl(ds_type)))
        self.model.eval()
        with torch.no_grad():
            preds = self.data.train_ds.y.activation(self.forward(xb).cpu())
        self.data.train_ds.x.show_results(self.data.denorm(xb).cpu(), yb.cpu(), preds, self.data.train_ds.y,
                                          rows=rows, **kwargs)

    def predict(self, item, run: Callable[[torch.Tensor], torch.Tensor] | None = None, **kwargs):
        """Predict one item (an image path or PIL image): (decoded label, target-like tensor, probabilities).

        For multi-label data, `thresh=` sets the probability above which a tag is predicted. For points, the
        decoded label is the (row, col) pixels on the original image (see `PointsLabelList.predict_result`).
        `run` computes the model's output for the item's batch of one instead of this call (the web app passes
        its batcher, which runs `eval_forward` on many requests' items at once)."""
        xb = self.data.one_item(item)
        out = run(xb) if run is not None else self.eval_forward(xb)
        probs = self.data.train_ds.y.activation(out.cpu())[0]
        return self.data.train_ds.y.predict_result(probs, **self.data.item_context(item), **kwargs)

    def eval_forward(self, xb: torch.Tensor) -> torch.Tensor:
        """The model's output for a batch in evaluation mode, without gradients (as predictions are made)."""
        self.model.eval()
        with torch.no_grad():
            return self.forward(xb)

    # --- persistence ------------------------------------------------------------------------------
    def save(self, name: str, with_opt: bool = True) -> Path:
        """Save the weights (and optimizer state) to `path/models/name.pth`, atomically."""
        f = self.path / self.model_dir / f"{name}.pth"
        state = {"model": self.model.state_dict()}
        if self.data.classes is not None:  # checked by `load`: weights for other classes would be misread
            state["classes"] = list(self.data.classes)
        if with_opt:
            state["opt"] = self.opt.state_dict()
        self._write(state, f)
        return f

    def load(self, name: str, strict: bool = True) -> "Learner":
        """Load weights saved by `save`; returns the learner, so calls can be chained."""
        f = self.path / self.model_dir / f"{name}.pth"
        if not f.is_file():
            raise FileNotFoundError(f"No saved model {f}. Saved models here: "
                                    f"{sorted(p.stem for p in f.parent.glob('*.pth')) if f.parent.is_dir() else 'none'}"
                                    ".")
        state = safe_load(f, map_location=self.data.device)
        load_weights(self.model, state["model"], f, _REBUILD, strict=strict)
        _warn_other_classes(state.get("classes"), self.data.classes, f)
        if "opt" in state:
            try:
                self.opt.load_state_dict(state["opt"])
            except (ValueError, KeyError):
                pass  # another freeze state: the lesson keeps the weights and starts the optimizer afresh
        return self

    def export(self, fname: str = "export.pkl") -> Path:
        """Write what inference needs (model, classes, transforms, normalisation) to `path/fname`."""
        if self.model_spec is None:
            raise ValueError("This model was not built by one of the course's learner builders (cnn_learner, "
                             "unet_learner, language_model_learner, text_classifier_learner), so export cannot "
                             "rebuild it; use learn.save() and rebuild the model yourself.")
        f = self.path / fname
        weights = {k: v.cpu() for k, v in self.model.state_dict().items()}
        check_finite(weights, f, exporting=True)  # a diverged model would predict NaN wherever it is loaded
        state = {"model_spec": self.model_spec.to_state(), "model": weights, "data": self.data.export_state()}
        self._write(seal_export(state), f)
        return f

    def _write(self, state: dict, f: Path) -> None:
        """atomic_save; in distributed training only rank 0 writes and the others wait until the file is complete."""
        if self.dist is None:
            atomic_save(state, f)
        else:
            self.dist.on_main(lambda: atomic_save(state, f))


_REBUILD = ("It was saved from a model with another architecture or another number of classes: rebuild the "
            "learner as it was when you saved, or train afresh.")


def _warn_other_classes(saved, current, f: Path) -> None:
    """Weights fit any learner with as many classes; warn when they were trained for other class names."""
    if saved is not None and current is not None and list(saved) != list(current):
        warnings.warn(f"The weights in {f} were saved for the classes {list(saved)}, but this learner's classes are "
                      f"{list(current)}: its predictions will use the new names for what was learned about the old "
                      "ones. Label the data as when you saved (same classes, same order), or train afresh.",
                      stacklevel=3)


def lr_find(learn: Learner, *args, **kwargs) -> None:
    """The lesson video's function form, `lr_find(learn)`: the same as `learn.lr_find()`."""
    learn.lr_find(*args, **kwargs)


def load_learner(path: str | Path, fname: str = "export.pkl", test=None,
                 device: torch.device | str | None = None) -> Learner:
    """A Learner for inference from `path/fname` written by `export()`; no training data needed.

    `test`: unlabelled items to predict (an ItemList such as `ImageList.from_folder(path/'test-jpg')`, or a list of
    paths); they become `learn.data.test_ds`, predicted in order by `learn.get_preds(ds_type=DatasetType.Test)`.

    The file holds only tensors and plain values (loaded with `weights_only=True`): nothing in it can run code.
    Everything in it is checked before it is used (`check_export`): a damaged or edited file is refused with its
    name and what to do, never a traceback from deep inside torch, and a model is built only once its spec is
    known to fit the weights stored beside it. A `pretrained` in an old export's spec is ignored: the weights
    are in the file, so nothing is downloaded."""
    path = Path(path)
    f = path / fname if path.is_dir() else path
    if not f.is_file():
        raise FileNotFoundError(f"No exported learner at {f}; call learn.export() first.")
    device = torch.device(device) if device else None
    try:
        learn = _rebuild(f, device)
    except Exception as e:
        if str(f) in str(e):  # already says which file and what to do
            raise
        raise ValueError(f"{f} could not be loaded: {_first_line(e)} ({type(e).__name__}). The file was edited, "
                         "damaged, or written by another version of course_utils; export it again with "
                         "learn.export().") from e
    if test is not None:
        learn.data.add_test(test)
    return learn


def _rebuild(f: Path, device: torch.device | None) -> Learner:
    """The learner exported in `f`, each part checked before the next is built (see `load_learner`)."""
    state = safe_load(f, map_location="cpu")  # tensors land on the CPU, so a GPU-made export loads anywhere
    spec = check_export(state, f)  # damage, another version, a builder that is not ours: refused before anything runs
    spec.builder_function()  # imported first: it defines the data's types (text)
    data = DataBunch.from_state(state["data"], f.parent, device=device)
    check_data_fits(data, spec, f)
    check_spec_fits_weights(spec, state["model"], f)
    model = spec.build()
    load_weights(model, state["model"], f, _REBUILD)
    return (spec.learner_class() or Learner)(data, model, path=f.parent, model_spec=spec)


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__

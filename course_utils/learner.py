"""The Learner: a model, its data, a loss and an optimizer, and the lesson's training verbs
(fit_one_cycle, lr_find, freeze/unfreeze, save/load/export, predict).

The loop in `fit` is fixed; schedules, recording, progress and mixed precision are callbacks
(see callbacks.py for the events).
"""
from __future__ import annotations

import copy
import functools
import importlib
import itertools
import math
import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from .amp import MixedPrecision
from .callbacks import CancelFit, LRFinder, OneCycleScheduler, ProgressTable, Recorder
from .config import announce_smoke, smoke_batches
from .data_block import DataBunch
from .guard import NaNGuard

__all__ = ["Learner", "load_learner", "lr_range", "safe_load"]

DEFAULT_LR = slice(3e-3)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


class Metric:
    """A metric function with the name the progress table shows (`partial` keeps the function's name)."""

    def __init__(self, func: Callable):
        self.func = func
        inner = func.func if isinstance(func, functools.partial) else func
        self.name = getattr(inner, "__name__", type(inner).__name__)

    def __call__(self, pred, targ):
        return self.func(pred, targ)


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
    """Trains `model` on `data`; the loss defaults to the one the data's label type calls for."""

    def __init__(self, data: DataBunch, model: nn.Module, loss_func: Callable | None = None, metrics=None,
                 wd: float = 1e-2, train_bn: bool = True, path: str | Path | None = None, model_dir: str = "models",
                 layer_groups: Sequence[nn.Module] | None = None, callbacks: Sequence = (),
                 model_spec: dict | None = None):
        self.data, self.model = data, model.to(data.device)
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
        self.create_opt()

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
        self._cbs = sorted(self.callbacks + extra, key=lambda c: c.order)
        if smoke_batches():
            epochs = min(epochs, 1)  # COURSE_SMOKE: one epoch per call (and a couple of batches, see _batches)
        self.n_epochs, self.epoch = epochs, 0
        try:
            self._event("before_fit")
            for self.epoch in range(epochs):
                self._event("before_epoch")
                self._run_epoch(train=True)
                if self._event("before_validate"):
                    continue  # a callback (the LR finder) asked to skip validation and the epoch's results
                self.epoch_result = self._validate()
                self._event("after_epoch")
        except CancelFit:
            pass
        except KeyboardInterrupt:
            self.opt.zero_grad(set_to_none=True)  # a half-done batch's gradients must not leak into the next fit
            print(f"Interrupted in epoch {self.epoch + 1}: the recorder keeps the {len(self.recorder.epoch_rows)} "
                  "finished epoch(s) and the model its weights so far; `learn.save(...)` them, or call fit again.")
            raise
        finally:
            self.training = False
            self._event("after_fit")

    def fit_one_cycle(self, cyc_len: int, max_lr: float | slice = DEFAULT_LR, moms=(0.95, 0.85), div_factor: float = 25.0,
                      pct_start: float = 0.3, final_div: float | None = None, wd: float | None = None) -> None:
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

    def _event(self, name: str) -> bool:
        handled = False
        for cb in self._cbs:
            method = getattr(cb, name, None)
            if method is not None:
                handled = bool(method()) or handled
        return handled

    def _run_epoch(self, train: bool) -> None:
        self.training = train
        self.model.train(train)
        dl = self.data.train_dl if train else self.data.valid_dl
        with torch.set_grad_enabled(train):
            for self.xb, self.yb in self._batches(dl):
                self._one_batch()

    @staticmethod
    def _batches(dl):
        """The batches of `dl`: all of them, or only the first under COURSE_SMOKE=1 (a smoke test)."""
        n = smoke_batches()
        if n is None:
            return dl
        announce_smoke()
        return itertools.islice(dl, n)

    def _forward(self, xb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.data.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            return self.model(xb).float()

    def _one_batch(self) -> None:
        self._event("before_batch")
        self.pred = self._forward(self.xb)
        self.loss = self.loss_func(self.pred, self.yb)
        self._event("after_loss")
        if self.training:
            self.loss_to_backward = self.loss
            self._event("before_backward")
            self.loss_to_backward.backward()
            if not self._event("before_step"):
                self.opt.step()
            self._event("after_step")
            self.opt.zero_grad(set_to_none=True)
        self._event("after_batch")

    def _validate(self) -> dict:
        """Validation loss and metrics, each averaged over samples (batch-size weighted)."""
        result = {"train_loss": self.recorder.smooth_losses[-1] if self.recorder.smooth_losses else None}
        self.model.eval()
        self.training = False
        total, loss_sum, metric_sums = 0, 0.0, [0.0] * len(self.metric_fns)
        with torch.no_grad():
            for xb, yb in self._batches(self.data.valid_dl):
                pred = self._forward(xb)
                n = len(xb)
                total += n
                loss_sum += self.loss_func(pred, yb).item() * n
                for i, m in enumerate(self.metric_fns):
                    metric_sums[i] += float(m(pred, yb)) * n
        result["valid_loss"] = loss_sum / total if total else None
        for m, s in zip(self.metric_fns, metric_sums):
            result[m.name] = s / total if total else None
        return result

    def validate(self) -> dict:
        """Validation loss and metrics of the current model."""
        return self._validate()

    # --- mixed precision ------------------------------------------------------------------------
    def to_fp16(self) -> "Learner":
        """Train in float16 mixed precision with dynamic loss scaling (CUDA); on other devices, bf16."""
        if self.data.device.type != "cuda":
            warnings.warn(f"fp16 mixed precision needs a CUDA GPU; on {self.data.device.type} using bf16 instead.")
            return self.to_bf16()
        return self._set_precision(torch.float16)

    def to_bf16(self) -> "Learner":
        """Train in bfloat16 mixed precision (CPU, or a GPU that supports it); weights stay float32."""
        if self.data.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RuntimeError("This GPU does not support bf16; use learn.to_fp16() instead.")
        return self._set_precision(torch.bfloat16)

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
    def get_preds(self, ds_type: str = "valid", activ: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, targets) for a whole set, in the set's order; `activ` applies softmax/sigmoid."""
        return self._preds(self.data.ordered_dl(ds_type), activ)

    def _preds(self, dl, activ: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        preds, targs = [], []
        with torch.no_grad():
            for xb, yb in self._batches(dl):
                preds.append(self._forward(xb).cpu())
                targs.append(yb.cpu())
        preds = torch.cat(preds)
        return (self.data.train_ds.y.activation(preds) if activ else preds), torch.cat(targs)

    def TTA(self, beta: float = 0.4, n: int = 4, ds_type: str = "valid") -> tuple[torch.Tensor, torch.Tensor]:
        """Test-time augmentation: beta * plain predictions + (1 - beta) * the mean over `n` passes
        with the training augmentations."""
        preds, targs = self.get_preds(ds_type)
        aug_dl = self.data.ordered_dl(ds_type, augment=True)
        aug = torch.stack([self._preds(aug_dl)[0] for _ in range(n)]).mean(0)
        return beta * preds + (1 - beta) * aug, targs

    def show_results(self, ds_type: str = "valid", rows: int = 3, **kwargs) -> None:
        """Inputs of one batch beside their targets and the model's predictions (how: the item type decides)."""
        xb, yb = next(iter(self.data.ordered_dl(ds_type)))
        self.model.eval()
        with torch.no_grad():
            preds = self.data.train_ds.y.activation(self._forward(xb).cpu())
        self.data.train_ds.x.show_results(self.data.denorm(xb).cpu(), yb.cpu(), preds, self.data.train_ds.y,
                                          rows=rows, **kwargs)

    def predict(self, item, **kwargs):
        """Predict one item (an image path or PIL image): (decoded label, target-like tensor, probabilities).

        For multi-label data, `thresh=` sets the probability above which a tag is predicted. For points, the
        decoded label is the (row, col) pixels on the original image (see `PointsLabelList.predict_result`)."""
        xb = self.data.one_item(item)
        self.model.eval()
        with torch.no_grad():
            probs = self.data.train_ds.y.activation(self._forward(xb).cpu())[0]
        return self.data.train_ds.y.predict_result(probs, **self.data.item_context(item), **kwargs)

    # --- persistence ------------------------------------------------------------------------------
    def save(self, name: str, with_opt: bool = True) -> Path:
        """Save the weights (and optimizer state) to `path/models/name.pth`, atomically."""
        f = self.path / self.model_dir / f"{name}.pth"
        state = {"model": self.model.state_dict()}
        if with_opt:
            state["opt"] = self.opt.state_dict()
        atomic_save(state, f)
        return f

    def load(self, name: str, strict: bool = True) -> "Learner":
        """Load weights saved by `save`; returns the learner, so calls can be chained."""
        f = self.path / self.model_dir / f"{name}.pth"
        if not f.is_file():
            raise FileNotFoundError(f"No saved model {f}. Saved models here: "
                                    f"{sorted(p.stem for p in f.parent.glob('*.pth')) if f.parent.is_dir() else 'none'}.")
        state = safe_load(f, map_location=self.data.device)
        _load_weights(self.model, state["model"], f, strict)
        if "opt" in state:
            try:
                self.opt.load_state_dict(state["opt"])
            except (ValueError, KeyError):
                pass  # another freeze state: the lesson keeps the weights and starts the optimizer afresh
        return self

    def export(self, fname: str = "export.pkl") -> Path:
        """Write what inference needs (model, classes, transforms, normalisation) to `path/fname`."""
        if self.model_spec is None:
            raise ValueError("This model was not built by cnn_learner/unet_learner, so export cannot rebuild it; "
                             "use learn.save() and rebuild the model yourself.")
        state = {"model_spec": self.model_spec, "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
                 "data": self.data.export_state()}
        f = self.path / fname
        atomic_save(state, f)
        return f


def _load_weights(model: nn.Module, state: dict, f: Path, strict: bool) -> None:
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        raise RuntimeError(f"The weights in {f} do not fit this model: it was saved from a model with another "
                           "architecture or another number of classes. Rebuild the learner as it was when "
                           f"you saved, or train afresh.\n(details: {_first_mismatch(e)})") from e


def _first_mismatch(e: RuntimeError) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return next((ln for ln in lines if "size mismatch" in ln or "Missing key" in ln or "Unexpected key" in ln), lines[0])


def atomic_save(obj, f: Path) -> None:
    """torch.save to a temporary file beside `f`, then rename: a crash never leaves a half-written `f`."""
    f.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=f".{f.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the file the usual permissions
        os.replace(tmp, f)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_load(f: Path, map_location: torch.device | str = "cpu"):
    """torch.load of a file we wrote (tensors and plain values only), refusing anything that would run code.

    A .pth/.pkl file made with plain pickling can execute any code when loaded, so `weights_only=True` is
    never relaxed; such a file is refused with an explanation, and a damaged one with a plain message."""
    try:
        return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not _is_pickle(f):  # garbage also fails to unpickle: that is damage, not danger
            raise _unreadable(f, e) from e
        raise pickle.UnpicklingError(
            f"Refusing to load {f}: it holds Python objects other than tensors and plain values, so it was not "
            "written by learn.save/export, and loading it would mean running code stored in the file (a pickle "
            "can do anything on your machine). Use a file made by this course's save/export; for weights from "
            "elsewhere, ask for a plain state_dict of tensors.") from e
    except (RuntimeError, EOFError, KeyError) as e:
        raise _unreadable(f, e) from e


def _is_pickle(f: Path) -> bool:
    """A torch.save zip archive, or a plain pickle (protocol 2+ starts with the PROTO opcode)."""
    with open(f, "rb") as fh:
        return zipfile.is_zipfile(fh) or (fh.seek(0) == 0 and fh.read(1) == b"\x80")


def _unreadable(f: Path, e: Exception) -> ValueError:
    return ValueError(f"Cannot read {f}: it is empty, truncated or not a PyTorch file ({type(e).__name__}). "
                      "Save it again (learn.save / learn.export).")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_learner(path: str | Path, fname: str = "export.pkl", device: torch.device | str | None = None) -> Learner:
    """A Learner for inference from `path/fname` written by `export()`; no training data needed.

    The file holds only tensors and plain values (loaded with `weights_only=True`): nothing in it can run code."""
    path = Path(path)
    f = path / fname if path.is_dir() else path
    if not f.is_file():
        raise FileNotFoundError(f"No exported learner at {f}; call learn.export() first.")
    state = safe_load(f, map_location="cpu")  # tensors land on the CPU, so a GPU-made export loads anywhere
    data = DataBunch.from_state(state["data"], f.parent, device=torch.device(device) if device else None)
    spec = state["model_spec"]
    module, _, name = spec["builder"].partition(":")
    if not module.startswith("course_utils."):
        raise ValueError(f"{f}: unknown model builder {spec['builder']!r}.")
    model = getattr(importlib.import_module(module), name)(spec)
    _load_weights(model, state["model"], f, strict=True)
    return Learner(data, model, path=f.parent, model_spec=spec)

"""Files the Learner writes and reads back: one place for "write to a temp file, fsync, rename", for
loading without running code, and for the integrity of exports.

An export carries a sha256 of its weights and settings, computed when it is written and checked when it is
loaded, so a file damaged on a disk, a USB stick or a copy is refused instead of silently predicting
something else. The checksum does not stop deliberate edits (whoever edits a file can recompute it), so every
value in an export is also checked before it is used: its `ModelSpec` may name only the package's own model
builders (`BUILDERS`), its sizes must be sane and fit its weights (checked on a model built on the "meta" device,
which allocates nothing), its class names must be text and fit the model's outputs, its normalisation must be
finite, and its weights must be finite.
"""
from __future__ import annotations

import errno
import hashlib
import importlib
import json
import math
import os
import pickle
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

# The functions an export may name to rebuild its model, by the key its ModelSpec stores: this table is also the
# allowlist, so a crafted file cannot make `load_learner` call any other function. A new builder is one entry.
BUILDERS = {"cnn": "course_utils.vision.models:cnn_model", "unet": "course_utils.vision.unet:unet_model",
            "language_model": "course_utils.text.models:language_model",
            "text_classifier": "course_utils.text.models:text_classifier_model"}
# The Learner classes an export may ask `load_learner` for (its spec's `learner`; plain `Learner` without one).
LEARNER_CLASSES = {"LanguageLearner": "course_utils.text.learner:LanguageLearner"}

# What every export has had since exports began; a file without one of them was written by another version.
EXPORT_KEYS = {"model_spec": ("builder",), "data": ("x_cls", "y_cls", "y_state", "tfms", "tfm_kwargs", "norm")}


# --- writing ------------------------------------------------------------------------------------------
def atomic_save(obj, f: Path) -> None:
    """torch.save to a temporary file beside `f`, then rename: a crash never leaves a half-written `f`
    (`atomic_write`, whose errors say why a write failed)."""
    atomic_write(f, lambda fh: torch.save(obj, fh))


def atomic_write(f: Path, write: Callable[[BinaryIO], None], mode: int | None = None) -> None:
    """`write(fh)` into a temporary file beside `f`, fsync, then rename it to `f` (`commit_file`): a crash never
    leaves a half-written `f`, and readers in other processes see the old file or the whole new one. The new
    `f` gets the permissions `mode`, by default those of any new file (0o666 less the umask).

    A write that fails (a full disk, a read-only folder, a folder that is a file) raises an OSError naming
    `f`, the likely cause and what happened to any older `f` (kept as it was); no temporary file is left."""
    f = Path(f)
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=f".{f.name}.", suffix=".tmp")
    except OSError as e:
        raise _write_error(f, e) from e
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)  # mkstemp makes 0600 files
        commit_file(tmp, f)
    except (OSError, RuntimeError) as e:  # torch reports a short write as RuntimeError ("unexpected pos")
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(f, e) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def commit_file(tmp: Path, dest: Path) -> Path:
    """Make the finished temporary file `tmp` (beside `dest`) the file `dest`, and return `dest`: fsync it, so
    its bytes are on the disk before its new name is, then rename it over any older `dest` in one step.

    The one way a file written here gets its final name. `atomic_write` uses it for a file written in one go;
    call it directly for a file written piece by piece under a temporary name (a resumable `.part` download)."""
    tmp, dest = Path(tmp), Path(dest)
    fd = os.open(tmp, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows flushes only files open for writing
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    return dest


def _write_error(f: Path, e: Exception) -> OSError:
    """An error for a failed write of `f` that says why in words a student can act on."""
    no = getattr(e, "errno", None)
    if no == errno.ENOSPC or (isinstance(e, RuntimeError) and not isinstance(e, OSError)):
        why = f"the disk is full ({_free(f.parent)} free there): free some space, or save somewhere else"
    elif no == errno.EROFS:
        why = "the disk is mounted read-only: save somewhere else"
    elif no in (errno.EACCES, errno.EPERM):
        why = "you may not write in that folder: save somewhere else, or fix its permissions"
    elif no in (errno.ENOTDIR, errno.EEXIST) or _a_parent_is_a_file(f):
        why = f"{_first_file(f)} is a file, not a folder: move it away, or save somewhere else"
    else:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
    old = f"The older {f.name} was kept as it was." if f.is_file() else "Nothing was written."
    return OSError(no or errno.EIO, f"Could not write {f}: {why}. {old}")


def _a_parent_is_a_file(f: Path) -> bool:
    return any(p.is_file() for p in f.parents)


def _first_file(f: Path) -> Path:
    return next((p for p in reversed(f.parents) if p.is_file()), f.parent)


def _free(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB"
    except OSError:
        return "unknown space"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- reading --------------------------------------------------------------------------------------------
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


def load_weights(module: torch.nn.Module, state: dict, f: Path, fix: str, what: str = "weights",
                 strict: bool = True) -> None:
    """`module.load_state_dict(state)`; when they do not fit, a RuntimeError naming the file `f`, the first
    mismatched layer and `fix` (what to do about it). `what` names the file's contents in the message."""
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        first = next((ln for ln in lines if "size mismatch" in ln or "Missing key" in ln or "Unexpected key" in ln),
                     lines[0] if lines else str(e))
        raise RuntimeError(f"The {what} in {f} do not fit this model. {fix}\n(details: {first})") from e


def _is_pickle(f: Path) -> bool:
    """A torch.save zip archive, or a plain pickle (protocol 2+ starts with the PROTO opcode)."""
    with open(f, "rb") as fh:
        return zipfile.is_zipfile(fh) or (fh.seek(0) == 0 and fh.read(1) == b"\x80")


def _unreadable(f: Path, e: Exception) -> ValueError:
    return ValueError(f"Cannot read {f}: it is empty, truncated or not a PyTorch file ({type(e).__name__}). "
                      "Save it again (learn.save / learn.export).")


# --- the model spec -----------------------------------------------------------------------------------------
_MAX_OUTPUTS = 2 ** 20  # classes, 2 per point, or a language model's vocabulary
_MAX_WIDTH = 2 ** 16  # a hidden layer, an embedding, an LSTM, a bptt window
_MAX_SIDE = 2 ** 13  # an image's side, in pixels


def _whole(lo: int, hi: int) -> tuple[Callable, str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
            f"a whole number from {lo} to {hi}")


def _number(v, lo: float, hi: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def _is_arch(v) -> bool:
    import torchvision  # only when an export is read: nothing else here needs it
    return isinstance(v, str) and v in torchvision.models.list_models(module=torchvision.models)


def _is_width(v) -> bool:
    return _whole(1, _MAX_WIDTH)[0](v)


def _is_dropout(v) -> bool:
    return _number(v, 0, 1)


def _is_config(v) -> bool:
    """AWD-LSTM settings: sizes and a padding id, and dropouts (the names ending in `_p`)."""
    return v is None or isinstance(v, dict) and all(
        isinstance(k, str) and (_is_dropout(x) if k.endswith("_p") else _whole(0, _MAX_WIDTH)[0](x))
        for k, x in v.items())


_FLAG = (lambda v: isinstance(v, bool), "True or False")
# Every setting a builder may store, how it is checked, and what it must be (said when it is not).
_OPTION_CHECKS = {
    "arch": (_is_arch, "the name of a torchvision classification model, such as 'resnet34'"),
    "cut": (lambda v: v is None or _whole(-1000, 1000)[0](v), "None or a layer index"),
    "lin_ftrs": (lambda v: v is None or _is_width(v) or isinstance(v, list) and len(v) <= 16 and all(map(_is_width, v)),
                 f"a list of up to 16 layer widths from 1 to {_MAX_WIDTH}"),
    "ps": (lambda v: v is None or _is_dropout(v) or isinstance(v, list) and len(v) <= 17 and all(map(_is_dropout, v)),
           "a dropout from 0 to 1, or a list of them"),
    "bn_final": _FLAG, "blur": _FLAG, "blur_final": _FLAG, "last_cross": _FLAG, "bottle": _FLAG,
    "config": (_is_config, f"None or AWD-LSTM settings: sizes from 0 to {_MAX_WIDTH}, dropouts (…_p) from 0 to 1"),
    "drop_mult": (lambda v: _number(v, 0, 10), "a number from 0 to 10"),
    "vocab_sz": _whole(1, _MAX_OUTPUTS), "bptt": _whole(1, _MAX_WIDTH), "max_len": _whole(1, 2 ** 24),
}
# The settings of each builder (all of them stored; `cut` may be missing from old exports).
_OPTIONS = {"cnn": ("arch", "cut", "lin_ftrs", "ps", "bn_final"),
            "unet": ("arch", "cut", "blur", "blur_final", "last_cross", "bottle"),
            "language_model": ("config", "drop_mult"),
            "text_classifier": ("vocab_sz", "config", "drop_mult", "bptt", "max_len", "lin_ftrs", "ps")}


def _named(path: str):
    """The object a "module:name" path names (only ever a path from BUILDERS or LEARNER_CLASSES)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a learner's model: `builder` (a key of BUILDERS), `n_out` (its outputs: one per class, two
    per point, or a language model's vocabulary), `options` (the builder's own settings: arch, lin_ftrs, ps, ...)
    and `learner` (a key of LEARNER_CLASSES; None for a plain Learner). Pretrained weights are not part of it:
    a model loaded from an export gets the weights stored there, and nothing is downloaded."""
    builder: str
    n_out: int
    options: dict = field(default_factory=dict)
    learner: str | None = None

    def __post_init__(self):
        if self.builder not in BUILDERS:
            raise ValueError(f"Unknown model builder {self.builder!r}; the builders are {', '.join(BUILDERS)}.")
        if self.learner is not None and self.learner not in LEARNER_CLASSES:
            raise ValueError(f"Unknown learner class {self.learner!r}; they are {', '.join(LEARNER_CLASSES)}.")

    def builder_function(self) -> Callable:
        """The function that builds this spec's model (`fn(spec)`, random weights); importing it also defines
        the data types of its kind (text)."""
        return _named(BUILDERS[self.builder])

    def build(self):
        """The model, with random weights."""
        return self.builder_function()(self)

    def learner_class(self) -> type | None:
        """The Learner subclass to load the model in, or None for a plain Learner."""
        return None if self.learner is None else _named(LEARNER_CLASSES[self.learner])

    def to_state(self) -> dict:
        """Plain values, as an export stores them."""
        return {"builder": self.builder, "n_out": self.n_out, "options": dict(self.options), "learner": self.learner}

    @classmethod
    def from_state(cls, state, f: Path) -> "ModelSpec":
        """The spec stored in the export `f`, checked before anything is built: `to_state`'s layout, or the dict
        of older exports (builder and learner as "module:name", `n_class` for a text classifier, and maybe
        `pretrained`, which is ignored: the weights are in the file)."""
        if not isinstance(state, dict):
            raise _edited(f, f"its model_spec is a {type(state).__name__}, not a dict of settings")
        builder = state.get("builder")
        if isinstance(builder, str) and builder in BUILDERS:
            unknown = sorted(map(str, set(state) - {"builder", "n_out", "options", "learner"}))
            if unknown:
                raise _edited(f, f"its model_spec has the unknown part(s) {', '.join(unknown)}")
            n_out, options, learner = state.get("n_out"), state.get("options"), state.get("learner")
            if learner is not None and (not isinstance(learner, str) or learner not in LEARNER_CLASSES):
                raise _foreign(f, "learner class", learner, LEARNER_CLASSES)
        else:
            builder, n_out, options, learner = _old_layout(state, f)
        if not isinstance(options, dict):
            raise _edited(f, f"its model_spec's options are a {type(options).__name__}, not a dict")
        _check_options(builder, options, f)
        if not _whole(1, _MAX_OUTPUTS)[0](n_out):
            raise _edited(f, f"its model_spec's n_out (the model's outputs) is {_short(n_out)}, but it must be "
                             f"{_whole(1, _MAX_OUTPUTS)[1]}")
        return cls(builder, n_out, dict(options), learner)


def _old_layout(state: dict, f: Path) -> tuple:
    """(builder key, n_out, options, learner key) from the dict spec exports had before ModelSpec."""
    paths = {path: key for key, path in BUILDERS.items()}
    builder = state.get("builder")
    if not isinstance(builder, str) or builder not in paths:
        raise _foreign(f, "model builder", builder, BUILDERS)
    learner = state.get("learner")
    if learner is not None:
        keys = {path: key for key, path in LEARNER_CLASSES.items()}
        if not isinstance(learner, str) or learner not in keys:
            raise _foreign(f, "learner class", learner, LEARNER_CLASSES)
        learner = keys[learner]
    key = paths[builder]
    options = {k: v for k, v in state.items() if k not in ("builder", "learner", "n_out", "n_class", "pretrained")}
    n_out = options.pop("vocab_sz", None) if key == "language_model" else state.get("n_out", state.get("n_class"))
    return key, n_out, options, learner


def _check_options(builder: str, options: dict, f: Path) -> None:
    allowed = _OPTIONS[builder]
    unknown = [str(k) for k in options if k not in allowed]
    if unknown:
        raise _edited(f, f"its model_spec has the setting {unknown[0]!r}, which a {builder} model does not take "
                         f"(it takes {', '.join(allowed)})")
    missing = [k for k in allowed if k not in options and k != "cut"]
    if missing:
        raise _edited(f, f"its model_spec lacks the setting {missing[0]!r} of a {builder} model")
    for k, v in options.items():
        ok, what = _OPTION_CHECKS[k]
        if not ok(v):
            raise _edited(f, f"its model_spec's {k} is {_short(v)}, but it must be {what}")


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _edited(f: Path, what: str) -> ValueError:
    """The refusal of an export whose contents make no sense: what is wrong, and what to do."""
    return ValueError(f"{f}: {what}. The file was edited, damaged, or written by another version of course_utils, "
                      "so it was refused before anything was built; export it again with learn.export().")


def _foreign(f: Path, what: str, name, table: dict) -> ValueError:
    plural = what + ("es" if what.endswith("s") else "s")
    return ValueError(f"{f}: the {what} {_short(name)} is not one of the course's {plural} "
                      f"({', '.join(sorted(table.values()))}), so the file was not made by learn.export(); "
                      "it was refused without running anything.")


# --- export integrity -------------------------------------------------------------------------------------
def export_digest(state: dict) -> str:
    """The sha256 of an export's weights (names, dtypes, shapes, bytes) and of its other values."""
    h = hashlib.sha256()
    for name in sorted(state["model"]):
        t = state["model"][name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    rest = {k: v for k, v in state.items() if k not in ("model", "sha256")}
    h.update(json.dumps(rest, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def seal_export(state: dict) -> dict:
    """`state` with its sha256 added (see `export_digest`)."""
    return {**state, "sha256": export_digest(state)}


def check_export(state, f: Path) -> ModelSpec:
    """Refuse an export that is damaged, from another version, names a function that is not a model builder, or
    holds values that make no sense (sizes, normalisation, non-finite weights); return its checked ModelSpec.

    The checksum catches damage, not edits (whoever edits the file can recompute it): the other checks are what
    refuse a crafted file. An export without a checksum (written before exports had one) loads with a warning."""
    if not isinstance(state, dict):
        raise _edited(f, f"it holds a {type(state).__name__}, not an export (model_spec, model and data)")
    _check_keys(state, f)
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(t, torch.Tensor)
                                                for k, t in weights.items()):
        raise _edited(f, f"its model is a {type(weights).__name__}, not a dict of named weight tensors")
    if not isinstance(state["data"], dict):
        raise _edited(f, f"its data settings are a {type(state['data']).__name__}, not a dict")
    if "sha256" not in state:
        warnings.warn(f"{f} has no checksum (it was exported by an older version of course_utils), so damage to "
                      "it cannot be detected. Export it again with learn.export() to add one.", stacklevel=3)
    elif state["sha256"] != export_digest(state):
        raise ValueError(f"{f} is damaged: its weights or settings no longer match the checksum stored when it was "
                         "exported (a bad disk, or an interrupted or corrupted copy). Copy it again from where it "
                         "was made, or export it again with learn.export().")
    spec = ModelSpec.from_state(state["model_spec"], f)
    _check_data_state(state["data"], f)
    check_finite(weights, f)
    return spec


def _check_keys(state: dict, f: Path) -> None:
    missing = [k for k in ("model", *EXPORT_KEYS) if k not in state]
    missing += [k for part, keys in EXPORT_KEYS.items() if isinstance(state.get(part), dict)
                for k in keys if k not in state[part]]
    if missing:
        raise ValueError(f"{f} was written by another version of course_utils: "
                         f"it lacks {', '.join(map(repr, missing))}."
                         " Open the notebook that trained it with this version and export it again "
                         "(learn.export()).")


def _check_data_state(data: dict, f: Path) -> None:
    """The normalisation (finite, every std above 0) and the image size (1 to 8192 pixels a side)."""
    norm = data["norm"]
    if norm is not None:
        mean, std = (norm.get("mean"), norm.get("std")) if isinstance(norm, dict) else (None, None)
        ok = isinstance(mean, list) and isinstance(std, list) and 0 < len(mean) == len(std) and \
            all(_number(m, -1e6, 1e6) for m in mean) and all(_number(s, 1e-12, 1e6) for s in std)
        if not ok:
            raise _edited(f, f"its normalisation {_short(norm)} is not a finite mean and std per channel with every "
                             "std above 0 (dividing by a std of 0 makes every prediction NaN)")
    cfg = data["tfm_kwargs"]
    size = cfg.get("size") if isinstance(cfg, dict) else None
    sides = size if isinstance(size, (list, tuple)) else [size]
    if size is not None and not (0 < len(sides) <= 2 and all(_number(s, 1, _MAX_SIDE) for s in sides)):
        raise _edited(f, f"its image size {_short(size)} is not 1 to {_MAX_SIDE} pixels a side")


def check_finite(weights: dict, f: Path, exporting: bool = False) -> None:
    """Refuse weights holding NaN or infinite values, naming how many tensors and the first: such a model predicts
    NaN for every input. `exporting`: the message says nothing was written to `f`."""
    bad = [k for k, t in weights.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if not bad:
        return
    what = (f"{len(bad)} of the model's {len(weights)} weight tensors hold NaN or infinite values (the first: "
            f"{bad[0]}), so it would predict NaN for every input")
    if exporting:
        raise ValueError(f"Not exporting to {f}: {what}; training diverged (a learning rate too high?). Nothing was "
                         "written. Load weights saved before it went wrong (learn.load(...)), or train again with a "
                         "lower learning rate, then export.")
    raise ValueError(f"{f} was refused: {what}. Export it again from a model that trained without diverging.")


def check_data_fits(data, spec: ModelSpec, f: Path) -> None:
    """Refuse an export whose class names are not text or do not fit the model's outputs, or whose vocabulary
    does not fit its model (every kind: a text classifier's classes are checked like an image classifier's)."""
    classes = data.classes
    if classes is not None:
        bad = next(((i, c) for i, c in enumerate(classes) if not isinstance(c, str)), None)
        if bad is not None:
            raise _edited(f, f"its class name {bad[0]} is {_short(bad[1])} (of type {type(bad[1]).__name__}): "
                             "class names are text")
        check_classes_fit(classes, spec.n_out, f)
    vocab = getattr(data, "vocab", None)
    if vocab is not None:
        want = spec.n_out if spec.builder == "language_model" else spec.options.get("vocab_sz")
        if want is not None and len(vocab.itos) != want:
            raise _edited(f, f"its vocabulary has {len(vocab.itos)} tokens but its model_spec makes {want}")


def check_classes_fit(classes, n_out: int | None, f: Path) -> None:
    """Refuse class names that do not match the model's outputs (one output per class)."""
    if classes is not None and n_out is not None and len(classes) != n_out:
        raise ValueError(f"{f} has {len(classes)} class names but its model has {n_out} outputs: one of them was "
                         "changed after export. Export it again with learn.export().")


def check_spec_fits_weights(spec: ModelSpec, weights: dict, f: Path) -> None:
    """Build `spec`'s model on the "meta" device (shapes only, no memory) and refuse the export unless its layers
    have the names and shapes of the weights in the file: a spec edited to ask for a huge layer is refused before
    anything is allocated, and what the file holds bounds what gets built."""
    with torch.device("meta"):
        probe = spec.build()
    want = {k: tuple(t.shape) for k, t in probe.state_dict().items()}
    got = {k: tuple(t.shape) for k, t in weights.items()}
    if want == got:
        return
    name = next((k for k in want if k in got and want[k] != got[k]), None)
    if name is not None:
        raise _edited(f, f"its model_spec makes {name} of shape {list(want[name])}, but the weights stored for it "
                         f"have the shape {list(got[name])}")
    odd = sorted(set(want) ^ set(got))[0]
    raise _edited(f, f"its model_spec makes a model with {len(want)} weight tensors, but the file holds {len(got)} "
                     f"({odd!r} is in only one of them)")

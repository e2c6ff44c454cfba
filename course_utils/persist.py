"""Files the Learner writes and reads back: one place for "write to a temp file, fsync, rename", for
loading without running code, and for the integrity of exports.

An export carries a sha256 of its weights and settings, computed when it is written and checked when it is
loaded, so a file damaged on a disk, a USB stick or a copy is refused instead of silently predicting
something else. Only the package's own model builders may be named in it, and its class names must fit
the model's outputs.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

__all__ = ["atomic_save", "atomic_write", "commit_file", "safe_load", "load_weights", "export_digest", "seal_export",
           "check_export", "MODEL_BUILDERS", "LEARNER_CLASSES"]

# The functions an export may name to rebuild its model: the package's own builders, nothing else, so a
# crafted file cannot make `load_learner` call any other importable function. A new builder is added here.
MODEL_BUILDERS = frozenset({"course_utils.vision.models:cnn_model", "course_utils.vision.unet:unet_model",
                            "course_utils.text.models:text_classifier_model",
                            "course_utils.text.models:language_model"})
# The Learner classes an export may ask `load_learner` for (its spec's "learner"; plain `Learner` without one).
LEARNER_CLASSES = frozenset({"course_utils.text.learner:LanguageLearner"})

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


def check_export(state: dict, f: Path) -> None:
    """Refuse an export that is damaged, from another version, or names a function that is not a model builder.

    An export without a checksum (written before exports had one) loads with a warning."""
    _check_keys(state, f)
    if "sha256" not in state:
        warnings.warn(f"{f} has no checksum (it was exported by an older version of course_utils), so damage to "
                      "it cannot be detected. Export it again with learn.export() to add one.", stacklevel=3)
    elif state["sha256"] != export_digest(state):
        raise ValueError(f"{f} is damaged: its weights or settings no longer match the checksum stored when it was "
                         "exported (a bad disk, or an interrupted or corrupted copy). Copy it again from where it "
                         "was made, or export it again with learn.export().")
    builder = state["model_spec"]["builder"]
    if builder not in MODEL_BUILDERS:
        raise ValueError(f"{f}: the model builder {builder!r} is not one of the course's model builders "
                         f"({', '.join(sorted(MODEL_BUILDERS))}), so the file was not made by learn.export(); "
                         "it was refused without running anything.")
    learner = state["model_spec"].get("learner")
    if learner is not None and learner not in LEARNER_CLASSES:
        raise ValueError(f"{f}: the learner class {learner!r} is not one of the course's "
                         f"({', '.join(sorted(LEARNER_CLASSES))}), so the file was not made by "
                         "learn.export(); it was refused without running anything.")


def _check_keys(state: dict, f: Path) -> None:
    missing = [k for k in ("model", *EXPORT_KEYS) if k not in state]
    missing += [k for part, keys in EXPORT_KEYS.items() if isinstance(state.get(part), dict)
                for k in keys if k not in state[part]]
    if missing:
        raise ValueError(f"{f} was written by another version of course_utils: "
                         f"it lacks {', '.join(map(repr, missing))}."
                         " Open the notebook that trained it with this version and export it again "
                         "(learn.export()).")


def check_classes_fit(classes, n_out: int | None, f: Path) -> None:
    """Refuse class names that do not match the model's outputs (one output per class)."""
    if classes is not None and n_out is not None and len(classes) != n_out:
        raise ValueError(f"{f} has {len(classes)} class names but its model has {n_out} outputs: one of them was "
                         "changed after export. Export it again with learn.export().")

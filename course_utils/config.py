"""Where things live and what runs them: data/model folders, the device, seeding, workers.

Every COURSE_* environment variable is read here and nowhere else (README.md lists them); torchrun's own
variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) are read where they are used."""
import os
import pathlib
import random
import sys
from pathlib import Path

import numpy as np
import torch

__all__ = ["course_mirror", "seed_everything", "CoursePath", "gpu_mem_get_free_no_cache"]

# Batches per epoch and per validation or prediction pass under COURSE_SMOKE=1. One, not a couple: on a
# 2-core CPU one training step of the CamVid U-Net at the lesson's 4x360x480 takes about a minute (measured,
# 60-100 s on a shared machine), and the rehearsal must fit in CI's time. What a second batch would add
# (state carried between batches) is the same code in tiny mode, where `make test` runs whole epochs.
SMOKE_BATCHES = 1
# ... and the images of a training batch it keeps: the first two (BatchNorm needs two to train). The data is still
# loaded and augmented at full batch size and full image size; only the backward pass, most of a step's time on a
# CPU, shrinks (CamVid at full size: 2 of the lesson's 4 images).
SMOKE_TRAIN_ITEMS = 2
_smoke_announced = False


def data_dir() -> Path:
    """The folder full-mode datasets are downloaded to: `$COURSE_DATA`, else ~/.course_utils/data."""
    return Path(os.environ.get("COURSE_DATA", Path.home() / ".course_utils" / "data")).expanduser()


def models_dir() -> Path:
    """The folder pretrained weights are cached in: `$COURSE_MODELS`, else ~/.course_utils/models."""
    return Path(os.environ.get("COURSE_MODELS", Path.home() / ".course_utils" / "models")).expanduser()


def cache_dir() -> Path:
    """The folder for derived files (tokenized corpora): `$COURSE_CACHE`, else ~/.course_utils/cache."""
    return Path(os.environ.get("COURSE_CACHE", Path.home() / ".course_utils" / "cache")).expanduser()


def course_mode() -> str:
    """`tiny` (bundled data, CPU, seconds) or `full` (real data, GPU), from `$COURSE_MODE`."""
    mode = os.environ.get("COURSE_MODE", "tiny").strip().lower()
    if mode not in ("tiny", "full"):
        raise ValueError(f"COURSE_MODE must be 'tiny' or 'full', not {mode!r}.")
    return mode


def course_mirror() -> str | None:
    """Where full mode looks for dataset files first: `$COURSE_MIRROR`, a local folder or an http(s) base
    address holding the registry's files under their file names (a shared drive, a LAN server); None if unset."""
    mirror = os.environ.get("COURSE_MIRROR", "").strip()
    return mirror or None


def smoke_batches() -> int | None:
    """With `COURSE_SMOKE=1`, how many batches each epoch and each prediction pass runs (else None): a smoke
    test of the whole lesson (same data, models and sizes) in minutes, not a training run."""
    return SMOKE_BATCHES if _env_flag("COURSE_SMOKE", "smoke test") else None


def _env_flag(name: str, meaning: str) -> bool:
    """An on/off environment variable: unset, 0/false/no/off is off; 1/true/yes/on is on; anything else is refused,
    naming the variable and what 1 means."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value not in ("1", "true", "yes", "on"):
        raise ValueError(f"{name} must be 1 ({meaning}) or 0, not {value!r}.")
    return True


def announce_smoke() -> None:
    """Say once per process that COURSE_SMOKE is on, so nobody mistakes a smoke run's numbers for results."""
    global _smoke_announced
    if smoke_batches() and not _smoke_announced:
        _smoke_announced = True
        print(f"COURSE_SMOKE=1: a smoke test, not training: every fit and lr_find runs 1 epoch of {SMOKE_BATCHES} "
              f"batch (of images: its first {SMOKE_TRAIN_ITEMS}), every validation and prediction pass 1 batch. "
              "Unset COURSE_SMOKE for real results.", flush=True)


def dist_timeout(default: float) -> float:
    """Seconds a distributed collective operation (gradient averaging, a barrier) may wait for the other
    processes: `$COURSE_DIST_TIMEOUT`, else `default`."""
    raw = os.environ.get("COURSE_DIST_TIMEOUT", "").strip()
    if not raw:
        return float(default)
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"COURSE_DIST_TIMEOUT must be a number of seconds, not {raw!r}.") from None


IMAGE_CACHE_FRACTION = 0.25  # of the memory available when a DataBunch is made: what the decode cache may take


def available_memory() -> int | None:
    """Bytes of RAM available to this process now, or None if the system does not say: Linux's MemAvailable
    (what can be used without swapping), lowered to what is left under a container's memory limit (cgroup v2 or
    v1, e.g. Colab or Docker); elsewhere psutil if installed, else the free physical pages."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap, cur = Path(limit).read_text().strip(), Path(used).read_text().strip()
        except OSError:
            continue
        if cap.isdigit() and int(cap) < 2**60:  # "max" or a huge number: no limit
            found.append(max(int(cap) - int(cur), 0))
        break
    if not found:
        try:
            import psutil
            found.append(int(psutil.virtual_memory().available))
        except ImportError:
            try:
                found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
            except (ValueError, OSError, AttributeError):
                return None
    return min(found)


def image_cache_budget() -> tuple[int, str]:
    """Bytes the decode cache may take when `transform` was not told `cache=` (vision/cache.py), and how that
    number was reached, for the one line a DataBunch prints. `$COURSE_IMAGE_CACHE`: a fraction of the memory
    available now (default 0.25), a size such as `800MB` or `2GB`, or 0 (off)."""
    raw = os.environ.get("COURSE_IMAGE_CACHE", "").strip().upper().replace(" ", "")
    how = "COURSE_IMAGE_CACHE sets it"
    if raw in ("0", "OFF", "NO", "FALSE"):
        return 0, "COURSE_IMAGE_CACHE=0 turns the automatic cache off"
    units = {"GB": 2**30, "G": 2**30, "MB": 2**20, "M": 2**20}
    for unit, scale in units.items():
        if raw.endswith(unit):
            try:
                amount = float(raw[:-len(unit)])
            except ValueError:
                break
            if amount >= 0:
                return int(amount * scale), f"COURSE_IMAGE_CACHE={raw}"
            break
    else:
        try:
            fraction = float(raw) if raw else IMAGE_CACHE_FRACTION
        except ValueError:
            fraction = -1.0
        if 0 <= fraction <= 1:
            free = available_memory()
            if free is None:
                free = 2**30  # the system does not say: assume 1 GB, so only small caches are made
                return int(fraction * free), f"{fraction:.0%} of an assumed 1,024 MB (available memory unknown); {how}"
            return int(fraction * free), f"{fraction:.0%} of the {free / 2**20:,.0f} MB available; {how}"
    raise ValueError(f"COURSE_IMAGE_CACHE must be a fraction of the available memory (e.g. 0.25), a size such as "
                     f"800MB or 2GB, or 0 (no automatic cache); got {os.environ['COURSE_IMAGE_CACHE']!r}.")


def course_solutions() -> bool:
    """With `COURSE_SOLUTIONS=1`, every exercise check at the end of a lesson notebook runs the reference solution
    (solutions/<notebook>.py) instead of the student's cell and fails loudly if it is not accepted: for
    teachers and `make test`. Unset (students), a check prints a hint and never raises."""
    return _env_flag("COURSE_SOLUTIONS", "check the reference solutions")


def default_device() -> torch.device:
    """The fastest device present: CUDA, then Apple's MPS, then the CPU. Under torchrun, GPU number LOCAL_RANK:
    each process has its own, and none should touch another's (a CUDA context costs GPU memory)."""
    if torch.cuda.is_available():
        local_rank = os.environ.get("LOCAL_RANK")
        return torch.device("cuda") if local_rank is None else torch.device("cuda", int(local_rank))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_num_workers() -> int:
    """DataLoader worker processes: none when the model trains on the CPU, up to 8 beside a GPU.

    On a CPU the model needs every core and image decoding is the smaller cost: measured on a 2-core
    machine, an epoch of tiny Planet at 64 px took 3.9 s with 0 workers and 6.3 s with 2. Beside a GPU,
    workers keep it fed. Off Linux, workers are spawned (re-importing the notebook's code), a common
    source of hangs for students, so we use none there either.
    """
    if not (sys.platform.startswith("linux") and torch.cuda.is_available()):
        return 0
    return min(8, len(os.sched_getaffinity(0)))


def seed_everything(seed: int = 42) -> None:
    """Seed Python, NumPy and torch so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class CoursePath(type(pathlib.Path())):
    """A pathlib path (PosixPath or WindowsPath, whichever this system uses) with the lesson video's `ls()`.
    `get_dataset` and `untar_data` return one, and so do paths made from it (`path/'images'`, `.parent`)."""

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"

    def ls(self) -> list["CoursePath"]:
        """What the folder holds, sorted by name (the lesson's `path.ls()`)."""
        if not self.is_dir():
            raise NotADirectoryError(f"{self} is not a folder, so there is nothing to list"
                                     f"{'' if self.exists() else ' (it does not exist)'}.")
        return sorted(self.iterdir())


def gpu_mem_get_free_no_cache() -> int:
    """Free memory on the current GPU in MB, after handing PyTorch's cached, unused blocks back to the driver
    (the lesson's check before picking a batch size for the big CamVid stage). On a machine without a CUDA GPU
    it says so in one line and returns 0: there is no GPU memory to fill, and the CPU uses ordinary RAM."""
    if not torch.cuda.is_available():
        print("gpu_mem_get_free_no_cache: no CUDA GPU here (training runs on the CPU), so 0 MB of GPU memory is free.")
        return 0
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    return int(free // 2**20)

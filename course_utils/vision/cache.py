"""Decode once: the resized uint8 pixels of each image, kept for every later epoch and stage.

Decoding a JPEG and resizing it is most of the CPU cost of vision training, and it gives the same
pixels every epoch: only the random geometry and lighting applied *after* the resize change. So
`transform(tfms, size=..., cache=True)` keeps each image at its `TransformPlan.resized` size (after
the antialiased PIL resize, before any randomness), filled lazily the first time an item is decoded:
the first epoch costs what it did without a cache, later epochs, `lr_find` and later stages at the
same size skip the decoding. Progressive resizing gets one cache per size.

Storage: one slot per item in a single uint8 buffer, with a per-item stamp (file mtime and size), the image's
own size and a filled flag. Up to `MEMORY_LIMIT` bytes it is anonymous *shared* memory; beyond, a memory-
mapped file under `data_dir()/cache` (kept between sessions, named by a hash of the files' paths, mtimes and
sizes, the size and the resize method). Both are shared with DataLoader workers started by fork (Linux's
default), so items a worker decodes are cached for every process; a worker started by spawn reopens the file,
or (in-memory cache) simply decodes without caching. A file whose mtime or size changed is decoded again: its
stamp no longer matches. An item the cache holds is not even opened (`source_size` gives what the transforms
need to know of the file: its size), which takes a quarter off a warm epoch's per-item work.

When `transform` is not told `cache=`, each DataBunch decides (`decide_auto_cache`): if all its sets' decoded,
resized images fit the budget (`config.image_cache_budget`: a fraction of the memory available then, settable
with COURSE_IMAGE_CACHE), they are cached, otherwise not; one line says which and why. `cache=True` or
`cache=False` given to `transform` always wins.

Only the input images are cached: a segmentation mask is decoded by its label list before the image is
transformed (and resized nearest, as without a cache); points need no decoding.
"""
from __future__ import annotations

import hashlib
import mmap
import os
from pathlib import Path

import numpy as np

from ..config import data_dir, image_cache_budget
from ..persist import atomic_write
from .image import image_size
from .transforms import sample_plan

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

MEMORY_LIMIT = 512 * 2**20  # bytes of pixels kept in RAM; a bigger cache is a file in the data folder
_FORMAT = 2  # bump when the file layout changes, so old cache files are never misread


def _stamp(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def resized_shapes(items, size, resize_method: str | None) -> np.ndarray:
    """(n, 2) int64: the (height, width) each image is resized to before augmentation. A squished fixed size
    needs no file; otherwise only each file's header is read. Draws nothing from the global random generators
    (a plan without augmentation needs no randomness: given its own generator, `sample_plan` leaves torch's alone),
    so caching or not leaves a seeded run's augmentations the same."""
    rng = np.random.default_rng(0)

    def one(path) -> tuple[int, int]:
        if isinstance(size, (tuple, list)) and resize_method in (None, "squish"):
            return int(size[0]), int(size[1])
        try:
            w, h = image_size(path)
        except (ValueError, OSError):  # unreadable: it takes no room, and the check that follows lists every such file
            return 0, 0
        return sample_plan(None, (h, w), size, resize_method, train=False, rng=rng).resized
    return np.array([one(p) for p in items], dtype=np.int64).reshape(-1, 2)


def _size_words(size) -> str:
    if size is None:
        return "their own size"
    if isinstance(size, (tuple, list)):
        return f"{size[0]}x{size[1]} px"
    return f"{size} px"


def _amount(nbytes: int) -> str:
    if nbytes < 2**20 / 10:
        return f"{nbytes / 1024:,.0f} KB"
    return f"{nbytes / 2**20:.1f} MB" if nbytes < 10 * 2**20 else f"{nbytes / 2**20:,.0f} MB"


def decide_auto_cache(lists, budget: tuple[int, str] | None = None) -> tuple[bool, str]:
    """Whether the decoded, resized images of `lists` ((ImageList, TransformConfig) pairs: one DataBunch's sets)
    fit the decode cache's budget together, and the one line that says so. `budget` is (bytes, how it was
    reached); default `config.image_cache_budget()`. If they fit, each list's cache is made now (its shapes
    are already known) and marked on; otherwise each is marked off."""
    limit, how = budget if budget is not None else image_cache_budget()
    if limit <= 0:
        for x, cfg in lists:
            x.set_auto_cache(cfg, None)
        return False, f"not caching: {how}."
    shapes = [resized_shapes(x.items, cfg.size, cfg.resize_method) for x, cfg in lists]
    n = sum(len(s) for s in shapes)
    nbytes = sum(int((s.prod(1) * 3).sum()) for s in shapes)
    fits = nbytes <= limit
    for (x, cfg), s in zip(lists, shapes):
        x.set_auto_cache(cfg, s if fits else None)
    sizes = sorted({_size_words(cfg.size) for _, cfg in lists})
    what = f"{n:,} decoded images at {' and '.join(sizes)}"
    if fits:
        where = "in memory" if all(x.image_cache(cfg.size, cfg.resize_method).file is None for x, cfg in lists) \
            else f"in a file under {data_dir() / 'cache'}"
        return True, (f"caching {what}: {_amount(nbytes)} {where} (budget {_amount(limit)}: {how}; "
                      "transform(..., cache=False) turns it off)")
    return False, (f"not caching: {what} would take {_amount(nbytes)}, over the budget of {_amount(limit)} "
                   f"({how}), so every epoch decodes the files again")


class ImageCache:
    """Resized RGB uint8 pixels of a list of image files at one (size, resize method)."""

    def __init__(self, items, size, resize_method: str | None, memory_limit: int = MEMORY_LIMIT,
                 shapes: np.ndarray | None = None):
        self.paths = [Path(p) for p in items]
        self.index = {str(p): i for i, p in enumerate(self.paths)}
        self.size, self.resize_method, self.channels = size, resize_method, 3
        self.shapes = resized_shapes(self.paths, size, resize_method) if shapes is None else shapes
        nbytes = self.shapes.prod(1) * self.channels
        self.offsets = np.concatenate([[0], np.cumsum(nbytes)])
        self.file = None if self.nbytes <= memory_limit else self._file_name()
        self._open()

    @property
    def nbytes(self) -> int:
        """Bytes of pixels the cache holds when full."""
        return int(self.offsets[-1])

    def _file_name(self) -> Path:
        h = hashlib.sha1(repr((_FORMAT, self.size, self.resize_method)).encode())
        for p in self.paths:
            h.update(f"{p}\0{_stamp(p)}\n".encode())
        return data_dir() / "cache" / f"images-{h.hexdigest()[:20]}.u8"

    def _open(self) -> None:
        """Map the buffer: [stamps int64 (n, 2)][source sizes int64 (n, 2)][filled flags (n)][pixels], all zeros
        when new."""
        n = len(self.paths)
        head = 32 * n + n
        total = head + self.nbytes
        if self.file is None:
            self._buf = np.frombuffer(mmap.mmap(-1, max(total, 1)), dtype=np.uint8)  # MAP_SHARED: fork shares it
        else:
            self._buf = self._map_file(total)
        self.stamps = self._buf[:16 * n].view(np.int64).reshape(n, 2)
        self.sources = self._buf[16 * n:32 * n].view(np.int64).reshape(n, 2)
        self.filled = self._buf[32 * n:head]
        self.pixels = self._buf[head:total]

    def _map_file(self, total: int) -> np.memmap:
        if not self.file.exists() or self.file.stat().st_size != total:
            # sparse: zeros, no disk written until filled; atomic: another process never maps a half-made file
            atomic_write(self.file, lambda fh: fh.truncate(total))
        return np.memmap(self.file, dtype=np.uint8, mode="r+", shape=(total,))

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_buf", "stamps", "sources", "filled", "pixels")}
        state["_shared"] = self.file is not None
        return state

    def __setstate__(self, state: dict) -> None:
        shared = state.pop("_shared")
        self.__dict__.update(state)
        if shared:
            self._open()
        else:  # a spawned worker cannot reach the parent's anonymous memory: it decodes without caching
            self._buf = None

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, path) -> bool:
        return str(path) in self.index

    def n_filled(self) -> int:
        """How many items are cached so far."""
        return 0 if self._buf is None else int(self.filled.sum())

    def _slot(self, i: int) -> np.ndarray:
        h, w = self.shapes[i]
        return self.pixels[self.offsets[i]:self.offsets[i + 1]].reshape(h, w, self.channels)

    def source_size(self, path) -> tuple[int, int] | None:
        """(height, width) of the image file `path` as shown (EXIF orientation applied) if the cache holds its
        current pixels, else None (not cached yet, not one of these files, or changed since)."""
        i = self.index.get(str(path))
        if i is None or self._buf is None or not self.filled[i]:
            return None
        try:
            if tuple(self.stamps[i]) != _stamp(self.paths[i]):
                return None
        except OSError:  # gone: opening it gives the error that names it
            return None
        h, w = (int(v) for v in self.sources[i])
        return (h, w) if h > 0 and w > 0 else None

    def get(self, path, decode, source_size: tuple[int, int] = (0, 0)) -> np.ndarray:
        """The pixels of `path` as uint8 (h, w, 3): a read-only view of the cache, or on a miss `decode()`'s PIL
        image as an array, stored for next time with the file's own `source_size` (h, w). Copy what you keep: a
        slot may be rewritten."""
        i = self.index.get(str(path))
        if i is None or self._buf is None:
            return np.asarray(decode())
        stamp = _stamp(self.paths[i])
        if self.filled[i] and tuple(self.stamps[i]) == stamp:
            return self._slot(i)
        arr = np.asarray(decode())
        if arr.shape[:2] == tuple(self.shapes[i]):  # a file replaced by one of another shape is simply not cached
            self.filled[i] = 0  # while rewriting, another process must not read a half-written slot
            self._slot(i)[...] = arr
            self.stamps[i] = stamp
            self.sources[i] = source_size
            self.filled[i] = 1
        return arr

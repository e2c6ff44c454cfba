"""Training on several GPUs (or machines) at once, with PyTorch's own engine: `torchrun` starts one process
per GPU and `DistributedDataParallel` (DDP) keeps their models in step.

Each process holds a whole copy of the model and trains on its own share of every batch; during the
backward pass DDP averages the gradients of all processes, so every copy takes the same optimizer step
and the weights stay identical. One step therefore sees `bs` items *per process*: the effective batch is
`bs * world_size`. What this module adds to a Learner, as one callback (`DistributedTraining`):

* the process group (`nccl` between GPUs, `gloo` between CPU processes), from the environment torchrun
  sets (RANK, WORLD_SIZE, LOCAL_RANK), with a timeout, so a process that stops answering ends the job
  with an error instead of leaving the others waiting forever;
* the DDP wrapper, made at the start of each fit around the weights that train then (freeze/unfreeze
  decide which) and made again whenever that set changes;
* samplers: training items are shuffled by one seed shared by every process and dealt out in turn
  (`DistributedSampler`, reshuffled each epoch); validation items are dealt out without repeats, and
  the loss and metric sums are added up over all processes, so everyone reports the whole set's numbers;
* the training loss averaged over the processes each batch, so the progress table and `lr_find` see
  the same curve everywhere (and the LR finder suggests the same rate on every process);
* rank 0 alone prints and writes files (`save`, `export`); the others wait until the file is complete.

Notebooks stay single-process: torchrun starts fresh Python processes that run a script from the top,
which a notebook's kernel cannot be. The command line (`python -m course_utils train`) runs unchanged
under torchrun; see the README's "Training on several GPUs".
"""
from __future__ import annotations

import atexit
import hashlib
import os
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from .callbacks import CALLBACK_ORDER, Callback, ProgressTable
from .config import dist_timeout

__all__ = ["rank_prefix"]

DEFAULT_TIMEOUT = 600.0  # seconds; torch's own default for NCCL. Override with $COURSE_DIST_TIMEOUT.


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (it sets RANK and WORLD_SIZE for each process it starts)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank_prefix() -> str:
    """`[rank1 on host]: ` in a process torchrun started (its messages then say which process and machine they
    come from), else the empty string."""
    if not launched_by_torchrun():
        return ""
    return f"[rank{os.environ['RANK']} on {socket.gethostname()}]: "


def _timeout(timeout: float | None) -> timedelta:
    if timeout is None:
        timeout = dist_timeout(DEFAULT_TIMEOUT)
        if not timeout > 0:  # also NaN
            raise ValueError(f"COURSE_DIST_TIMEOUT must be a positive number of seconds, not {timeout:g}: it is "
                             "how long a process waits for the others before giving up (default "
                             f"{DEFAULT_TIMEOUT:g}).")
    elif not timeout > 0:
        raise ValueError(f"to_distributed(timeout=...) must be a positive number of seconds, not {timeout!r}.")
    return timedelta(seconds=timeout)


def _is_timeout(error: BaseException) -> bool:
    """Whether `error` is a collective operation that gave up waiting for the other processes."""
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("timed out" in text or "timeout" in text)


def _install_timeout_hook(seconds: float) -> None:
    """Print a collective's timeout as one line naming COURSE_DIST_TIMEOUT, instead of a gloo/NCCL traceback;
    every other uncaught error goes to the hook in place before (torch's, which prefixes `[rankN]:`)."""
    previous = sys.excepthook

    def hook(kind, error, tb):
        if not _is_timeout(error):
            return previous(kind, error, tb)
        print(f"{rank_prefix()}error: another process stopped answering: this one waited {seconds:g} s for it "
              f"(COURSE_DIST_TIMEOUT={seconds:g}) and gave up. Look above for the other process's own error; if "
              "none, it hung or its machine is out of memory or unreachable. If it is only slow, raise "
              f"COURSE_DIST_TIMEOUT. ({type(error).__name__}: {str(error).splitlines()[0][:200]})",
              file=sys.stderr, flush=True)

    sys.excepthook = hook


def init_process_group(device_type: str, timeout: float | None = None) -> torch.device:
    """Join the processes torchrun started (once per process) and return this process's device:
    GPU number LOCAL_RANK with `nccl`, or the CPU with `gloo`.

    A collective operation (gradient averaging, a barrier) that waits longer than `timeout` seconds
    (default $COURSE_DIST_TIMEOUT, else 600) raises, so a process stuck or lost elsewhere ends the job."""
    if not launched_by_torchrun():
        raise RuntimeError("Distributed training needs the processes torchrun starts, e.g.\n"
                           "  torchrun --nproc_per_node=2 -m course_utils train --images ... --out ...\n"
                           "(RANK and WORLD_SIZE are not set in this process).")
    if device_type not in ("cuda", "cpu"):
        raise RuntimeError(f"Distributed training runs on CUDA GPUs or on the CPU, not on {device_type}.")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = device_type == "cuda"
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"Process LOCAL_RANK={local_rank} has no GPU of its own: this machine has "
                               f"{torch.cuda.device_count()}. Start at most that many: --nproc_per_node="
                               f"{torch.cuda.device_count()}.")
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if not dist.is_initialized():  # device_id binds NCCL to this process's GPU at once (no guessing at barriers)
        limit = _timeout(timeout)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=limit, device_id=device if cuda else None)
        _install_timeout_hook(limit.total_seconds())
        atexit.register(_leave)
    return device


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ShardSampler(Sampler[int]):
    """Items rank, rank + world, rank + 2*world, ... of a set: every item goes to exactly one process, none is
    repeated (unlike `DistributedSampler`, which pads with repeats so all shares are equal; a repeated item
    would be counted twice in the validation metrics). Shares differ by at most one item."""

    def __init__(self, n: int, rank: int, world_size: int):
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


class DistributedTraining(Callback):
    """One process's part in training on several devices (see the module's docstring); made by
    `learn.to_distributed()`, or by every Learner in a process started by torchrun."""
    order = CALLBACK_ORDER["DistributedTraining"]

    def __init__(self, sync_bn: bool = False, timeout: float | None = None):
        self.sync_bn, self.timeout = sync_bn, timeout
        self.ddp_model, self._wrapped = None, None
        self.epochs_seen = 0

    # --- joining ------------------------------------------------------------------------------------
    def setup(self, learn) -> None:
        """Join the process group, put the model and data on this process's device, silence the other ranks."""
        self.learn = learn
        _check_supported(learn.data, self.sync_bn)  # before joining: every process fails at once, none waits
        device = init_process_group(learn.data.device.type, self.timeout)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        if learn.data.device != device:  # e.g. data made with device="cuda" (GPU 0): each process needs its own
            learn.data.device = device
            learn.model.to(device)
            learn.create_opt()
        if self.sync_bn:
            nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)  # swaps BN layers in place, keeps the weights
        self.seed = int(self.share(torch.randint(0, 2**31 - 1, ()).item()))  # rank 0's draw: seeded runs repeat
        if self.rank != 0:  # one progress table, one set of messages; errors and warnings (stderr) stay
            sys.stdout = open(os.devnull, "w")
        self.check_same_data()
        self.shard_data()

    @property
    def is_main(self) -> bool:
        """True on the process that prints and writes files (rank 0)."""
        return self.rank == 0

    # --- data ------------------------------------------------------------------------------------
    def check_same_data(self) -> None:
        """Refuse, on every process at once, data that differs between processes (another folder or CSV on
        one machine): each would deal out its own items, and the first batch would end in a collective mismatch."""
        mine = _data_fingerprint(self.learn.data)
        every: list = [None] * self.world_size
        dist.all_gather_object(every, mine)
        message = _data_mismatch(every)
        if message:
            raise ValueError(message)

    def shard_data(self) -> None:
        """Give this process its share of the training and validation sets (again after `learn.data = ...`)."""
        data = self.learn.data
        if isinstance(data.train_dl.dl.sampler, DistributedSampler):
            return
        n, bs = len(data.train_ds), data.train_dl.dl.batch_size
        if 0 < n and n // self.world_size < bs:
            raise ValueError(f"The training set has {n} items: shared by {self.world_size} processes that is "
                             f"{n // self.world_size} each, fewer than one batch (bs={bs}, per process). Lower "
                             "the batch size or start fewer processes.")
        data.train_dl = self._sharded(data.train_dl, train=True)
        data.valid_dl = self._sharded(data.valid_dl, train=False)

    def _sharded(self, ddl, train: bool):
        dl = ddl.dl
        n = len(dl.dataset)
        sampler = (DistributedSampler(dl.dataset, self.world_size, self.rank, shuffle=True, seed=self.seed,
                                      drop_last=True) if train else ShardSampler(n, self.rank, self.world_size))
        workers = min(dl.num_workers, max(1, (os.cpu_count() or 1) // _local_world_size()))
        new = DataLoader(dl.dataset, batch_size=dl.batch_size, sampler=sampler, drop_last=dl.drop_last,
                         collate_fn=dl.collate_fn, num_workers=workers, pin_memory=dl.pin_memory,
                         persistent_workers=workers > 0 and n > 0)
        return type(ddl)(new, self.learn.data, ddl.dataset)

    # --- the model --------------------------------------------------------------------------------
    def wrap_model(self) -> None:
        """(Re)make the DDP wrapper if the model or the set of weights that train changed since the last fit.

        DDP averages only the parameters that needed gradients when it was made. Without a new wrapper, a
        later unfreeze leaves the body's gradients un-averaged and the processes' bodies drift apart silently
        (measured: 0.018 apart after 2 epochs), and a later freeze stops the job at the next step ("Expected
        to have finished reduction"). `find_unused_parameters=True` cures only the second, by searching the
        autograd graph every step; making a wrapper costs one broadcast of the weights (0.3 s for resnet34
        between 2 CPU processes here), once per fit whose trainable set changed."""
        model = self.learn.model
        trainable = tuple(p.requires_grad for p in model.parameters())
        if self._wrapped is not None and self._wrapped[0] is model and self._wrapped[1] == trainable:
            return
        self.ddp_model = None
        if any(trainable):  # DDP refuses a model with nothing to train
            ids = [torch.cuda.current_device()] if self.learn.data.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(model, device_ids=ids)  # copies rank 0's weights to all
        self._wrapped = (model, trainable)

    def sync_buffers(self) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every process. DDP does so before each
        training forward pass; after the last batch each process has updated them with its own share."""
        for b in self.learn.model.buffers():
            dist.broadcast(b, src=0)

    # --- events -----------------------------------------------------------------------------------
    def before_fit(self):
        self.shard_data()
        self.wrap_model()
        if not self.is_main:
            for cb in self.learn.fit_callbacks:
                if isinstance(cb, ProgressTable):
                    cb.show_bar = False

    def before_epoch(self):
        self.learn.data.train_dl.dl.sampler.set_epoch(self.epochs_seen)  # a new shuffle, the same on every rank
        self.epochs_seen += 1

    def after_batch(self):
        if self.learn.training:  # the recorded loss is the whole batch's: the mean of the processes' means
            loss = self.learn.loss.detach().float().clone()
            dist.all_reduce(loss)
            self.learn.loss = loss / self.world_size

    def before_validate(self):
        self.sync_buffers()

    def after_validate(self):  # each process saw its share of the set: add the shares up
        self.learn.valid_sums = type(self.learn.valid_sums).from_list(self.all_sum(self.learn.valid_sums.as_list()))

    def after_fit(self):
        # a fit stopped early (CancelFit) may end without validation; one ended by an error must not wait here
        # for the others (they are stuck elsewhere, and torchrun stops them once this process exits)
        if sys.exc_info()[0] is None and dist.is_initialized():
            self.sync_buffers()

    # --- collective helpers the Learner calls ---------------------------------------------------------
    def all_sum(self, values: list[float]) -> list[float]:
        """Each value added up over all processes (float64, so counts stay exact)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.learn.data.device)
        dist.all_reduce(t)
        return t.tolist()

    def share(self, value):
        """Rank 0's `value` (any picklable object), on every process."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, write: Callable[[], object]) -> None:
        """Run `write` (a file write) on rank 0 only; every process returns once it is done. If it fails,
        every process raises, so none goes on to read a file that is not there."""
        error = None
        if self.is_main:
            try:
                write()
            except Exception as e:  # re-raised below, after the others have been told
                error = e
        failed = self.share(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        if failed is not None:
            raise RuntimeError(f"Process 0 failed to write the file: {failed}")


def _check_supported(data, sync_bn: bool) -> None:
    """Fail with a plain message on what distributed training cannot do, before any process waits for another."""
    for name in ("train_dl", "valid_dl"):
        dl = getattr(data, name).dl
        if not isinstance(dl, DataLoader):
            raise TypeError(f"Distributed training supports data in torch DataLoaders (images: classification, "
                            f"segmentation, points); this data uses {type(dl).__name__} (text), which is not "
                            "supported yet. Train it in one process.")
    if sync_bn and data.device.type != "cuda":
        raise ValueError("sync_bn=True needs GPUs: torch synchronises BatchNorm statistics only between CUDA "
                         "devices. Leave it off on CPU processes.")


def _data_fingerprint(data) -> dict:
    """The training and validation sets' sizes, and a hash of their items' names, in order."""
    out = {}
    for kind in ("train", "valid"):
        ds = getattr(data, f"{kind}_ds")
        names = "\n".join(os.path.basename(os.fspath(o)) if isinstance(o, (str, os.PathLike)) else repr(o)
                          for o in (getattr(ds, "items", None) or []))
        out[kind] = (len(ds), hashlib.sha256(names.encode("utf-8", "surrogatepass")).hexdigest())
    return out


def _data_mismatch(every: list[dict]) -> str | None:
    """What differs between rank 0's data and another rank's (one line), or None if every rank has the same."""
    words = {"train": "training", "valid": "validation"}
    for rank, theirs in enumerate(every[1:], start=1):
        for kind, word in words.items():
            (n0, h0), (n, h) = every[0][kind], theirs[kind]
            if n != n0:
                return (f"rank {rank} sees {n} {word} items, rank 0 sees {n0}: every rank must see the same data "
                        "(same folder, same CSV, same split) on every machine.")
            if h != h0:
                return (f"rank {rank} sees other {word} items than rank 0 (both have {n}, with other file names or "
                        "in another order): every rank must see the same data (same folder, same CSV, same split "
                        "and seed) on every machine.")
    return None


def _local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1))

"""One process of a distributed test run (tests/test_distributed.py starts it under torchrun):

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py DATA OUT --bs 4

It follows the lesson's recipe on the Planet-like fixture at DATA: lr_find, the head alone (body frozen),
then everything with discriminative rates, then `save`. The model has no dropout and (unless --batchnorm)
no BatchNorm, so splitting a batch over processes changes nothing but the order of additions. Each process
writes what it ended with to OUT/rank<R>.pt; only rank 0 prints.
"""
import argparse
import os
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn

import course_utils.learner as learner_module
from course_utils.callbacks import Callback
from course_utils.config import seed_everything
from course_utils.learner import Learner
from course_utils.metrics import accuracy_thresh, fbeta
from course_utils.vision import ImageList, get_transforms, imagenet_stats


class Misbehave(Callback):
    """Make one rank raise, or hang, at its second training batch (for the failure tests)."""

    def __init__(self, rank: int, how: str | None):
        self.rank, self.how, self.batches = rank, how, 0

    def after_batch(self):
        if not self.learn.training or self.how is None or self.learn.dist.rank != self.rank:
            return
        self.batches += 1
        if self.batches == 2 and self.how == "raise":
            raise RuntimeError(f"rank {self.rank} failed on purpose at its second batch")
        if self.batches == 2 and self.how == "hang":
            time.sleep(600)


def count_writes() -> list:
    """Every file this process writes through the Learner's atomic_save, listed as it happens."""
    writes, save = [], learner_module.atomic_save
    def counted(obj, f):
        writes.append(f)
        save(obj, f)
    learner_module.atomic_save = counted
    return writes


def tiny_model(n_out: int, batchnorm: bool = False) -> tuple[nn.Module, nn.Module]:
    """A two-layer conv body and a linear head: no dropout, and BatchNorm only if asked."""
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8) if batchnorm else nn.Identity(),
                         nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, n_out))
    return body, head


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--bs", type=int, required=True, help="per process")
    parser.add_argument("--misbehave", choices=["raise", "hang"])
    parser.add_argument("--bad-rank", type=int, default=1)
    parser.add_argument("--other-split", action="store_true", help="the bad rank holds out half, not 30%%")
    parser.add_argument("--fp16", action="store_true", help="mixed precision (bf16 on a CPU)")
    parser.add_argument("--batchnorm", action="store_true", help="a BatchNorm layer in the body")
    parser.add_argument("--augment", action="store_true", help="the lesson's augmentations, decode-once cache")
    args = parser.parse_args()
    torch.set_num_threads(1)
    writes = count_writes()
    start = time.perf_counter()
    seed_everything(0)
    data = (ImageList.from_csv(args.data, "train_v2.csv", folder="train-jpg", suffix=".jpg")
            .split_by_rand_pct(0.5 if args.other_split and int(os.environ["RANK"]) == args.bad_rank else 0.3,
                               seed=42)  # 7 valid items: 4 + 3, an uneven share
            .label_from_df(label_delim=" ")
            .transform(get_transforms() if args.augment else None, size=16, cache=args.augment)
            .databunch(bs=args.bs, num_workers=0, device=torch.device("cpu"))
            .normalize(imagenet_stats))
    body, head = tiny_model(data.c, args.batchnorm)
    learn = Learner(data, nn.Sequential(body, head), layer_groups=[body, head], path=args.out,
                    metrics=[partial(accuracy_thresh, thresh=0.2), partial(fbeta, thresh=0.2)],
                    callbacks=[Misbehave(args.bad_rank, args.misbehave)])  # torchrun's environment: distributed
    if args.fp16:
        learn.to_fp16()
    learn.lr_find(num_it=6)
    learn.recorder.plot(suggestion=True)
    suggestion = learn.recorder.suggested_lr
    learn.freeze()
    learn.fit_one_cycle(2, 5e-2)
    learn.unfreeze()
    learn.fit_one_cycle(2, slice(5e-3, 5e-2))
    learn.save("stage-2")
    rank = learn.dist.rank
    torch.save({"weights": learn.model.state_dict(), "result": learn.recorder.final_results,
                "suggestion": suggestion, "n_valid": len(learn.data.valid_dl.dl.sampler),
                "writes": len(writes),
                "seconds": time.perf_counter() - start}, args.out / f"rank{rank}.pt")
    print(f"world size {int(os.environ['WORLD_SIZE'])}: {learn.recorder.final_results}")


if __name__ == "__main__":
    main()

"""Distributed training with torchrun and DDP, on the CPU with gloo (2 processes, as CI's 2-core machine allows).

The reference is the same script in a world of one process with the whole batch (bs 8) against two
processes with bs 4 each: the same global batch and, with the same seed, the same shuffle (one process's
`DistributedSampler` deals it all to itself). The tiny model has no BatchNorm and no dropout, whose
results depend on how a batch is split, so the two runs may differ only by the order of floating-point
additions: we allow 1e-5 on the metrics and 1e-6 on the weights (measured: 1.4e-7 and 6e-8).
Most of each run's time is starting Python and importing torch in every process.
"""
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from course_utils.distributed import DistributedTraining, ShardSampler, _data_mismatch, _timeout, rank_prefix
from course_utils.learner import load_learner
from course_utils.vision import ImageList  # noqa: F401  (load_learner finds the item type among those imported)

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("ddp_worker.py")
METRIC_TOL, WEIGHT_TOL = 1e-5, 1e-6


def torchrun(nproc: int, *args: str, env: dict | None = None, timeout: float = 300) -> SimpleNamespace:
    """`torchrun --standalone --nproc_per_node=nproc ARGS` with this checkout's code; output and wall time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    return SimpleNamespace(rc=proc.returncode, out=proc.stdout, err=proc.stderr, wall=time.perf_counter() - start)


def _worker_run(planet_path: Path, out: Path, nproc: int, *extra: str) -> SimpleNamespace:
    run = torchrun(nproc, str(WORKER), str(planet_path), str(out), "--bs", str(8 // nproc), *extra)
    assert run.rc == 0, run.err[-4000:]
    run.ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(nproc)]
    return run


@pytest.fixture(scope="module")
def one(planet_path, tmp_path_factory):
    """The worker in one process, bs 8."""
    return _worker_run(planet_path, tmp_path_factory.mktemp("world1"), 1)


@pytest.fixture(scope="module")
def two(planet_path, tmp_path_factory):
    """The worker in two processes, bs 4 each (the same global batch)."""
    out = tmp_path_factory.mktemp("world2")
    run = _worker_run(planet_path, out, 2)
    run.dir = out
    return run


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=atol), f"{k} differs by {(a[k] - b[k]).abs().max():.3g}"


def test_weights_are_identical_on_every_rank(two):
    _assert_same_weights(two.ranks[0]["weights"], two.ranks[1]["weights"])  # bit for bit


def test_two_processes_train_like_one_with_the_same_global_batch(one, two):
    ref, res = one.ranks[0]["result"], two.ranks[0]["result"]
    assert ref.keys() == res.keys() == {"train_loss", "valid_loss", "accuracy_thresh", "fbeta"}
    for k in ref:
        assert res[k] == pytest.approx(ref[k], abs=METRIC_TOL), k
    assert two.ranks[1]["result"] == res, "every rank reports the same numbers"
    _assert_same_weights(one.ranks[0]["weights"], two.ranks[0]["weights"], atol=WEIGHT_TOL)


def test_each_validation_item_is_counted_once(two):
    assert [r["n_valid"] for r in two.ranks] == [4, 3], "7 items dealt out without a padded repeat"


def test_lr_finder_suggests_the_same_rate_on_every_rank(one, two):
    assert two.ranks[0]["suggestion"] == two.ranks[1]["suggestion"] == pytest.approx(one.ranks[0]["suggestion"])


def test_only_rank_zero_prints_and_writes(two):
    assert two.out.count("epoch       train_loss") == 2, "one progress table per fit, not one per process"
    assert two.out.count("world size 2:") == 1
    assert sorted(p.name for p in (two.dir / "models").iterdir()) == ["stage-2.pth"], "one file, no temp left"
    assert [r["writes"] for r in two.ranks] == [1, 0], "learn.save wrote on rank 0 only"


def test_mixed_precision_batchnorm_and_augmentation_keep_the_ranks_identical(planet_path, tmp_path):
    # bf16 autocast on a CPU; each process augments its own batches and fills its own decode cache
    run = _worker_run(planet_path, tmp_path, 2, "--fp16", "--batchnorm", "--augment")
    assert "running_mean" in "".join(run.ranks[0]["weights"]), "the BatchNorm statistics are compared too"
    _assert_same_weights(run.ranks[0]["weights"], run.ranks[1]["weights"])
    assert all(torch.isfinite(torch.tensor(v)) for v in run.ranks[0]["result"].values())


def test_command_line_trains_under_torchrun_and_exports_once(planet_path, tmp_path):
    out = tmp_path / "run"
    run = torchrun(2, "-m", "course_utils", "train", "--images", str(planet_path / "train-jpg"),
                   "--csv", str(planet_path / "train_v2.csv"), "--arch", "resnet18", "--no-pretrained",
                   "--size", "32", "--bs", "4", "--epochs", "1", "--out", str(out))
    assert run.rc == 0, run.err[-4000:]
    # the CLI exports after each of its 2 stages and runs lr_find before each; only rank 0 prints, so each line
    # appears once per stage
    assert run.out.count("exported to") == 2 and run.out.count("Suggested learning rate") == 2
    assert [p.name for p in out.iterdir()] == ["export.pkl"], "exactly one export, written by rank 0"
    learn = load_learner(out)
    label, _, probs = learn.predict(planet_path / "train-jpg" / "train_0.jpg")
    assert probs.shape == (6,) and torch.isfinite(probs).all()


def test_command_line_trains_a_unet_under_torchrun(camvid_path, tmp_path):
    out = tmp_path / "run"
    run = torchrun(2, "-m", "course_utils", "train", "--images", str(camvid_path / "images"), "--masks",
                   str(camvid_path / "labels"), "--arch", "resnet18", "--no-pretrained", "--size", "32", "--bs", "2",
                   "--epochs", "1", "--lr", "1e-2", "--out", str(out))
    assert run.rc == 0, run.err[-4000:]
    assert run.out.count("masked_accuracy") == 2, "two stages, one table each, printed by rank 0 alone"
    assert [p.name for p in out.iterdir()] == ["export.pkl"]
    assert load_learner(out).predict(camvid_path / "images" / "f0.png")[2].shape == (6, 32, 32)


def test_a_rank_that_raises_ends_the_job_with_its_message(planet_path, tmp_path):
    run = torchrun(2, str(WORKER), str(planet_path), str(tmp_path), "--bs", "4", "--misbehave", "raise")
    assert run.rc != 0
    assert "RuntimeError: rank 1 failed on purpose" in run.err


def test_a_rank_that_hangs_makes_the_others_time_out(planet_path, tmp_path):
    """The waiting rank says, in one line, that another process stopped answering, and names the variable."""
    run = torchrun(2, str(WORKER), str(planet_path), str(tmp_path), "--bs", "4", "--misbehave", "hang",
                   env={"COURSE_DIST_TIMEOUT": "5"})
    assert run.rc != 0
    line = next((x for x in run.err.splitlines() if x.startswith("[rank0 on ")), "")
    assert "error: another process stopped answering: this one waited 5 s" in line, run.err[-3000:]
    assert "(COURSE_DIST_TIMEOUT=5)" in line and "raise COURSE_DIST_TIMEOUT" in line
    assert "[rank0]: Traceback" not in run.err, "a timeout is one line, not a gloo traceback"
    assert run.wall < 300, "the hanging rank sleeps 600 s: the job ended on the timeout, not on the sleep"


def test_ranks_that_see_different_data_are_refused_before_training(planet_path, tmp_path):
    """Every rank stops with one line saying which rank sees how many items (not a gloo size mismatch)."""
    run = torchrun(2, str(WORKER), str(planet_path), str(tmp_path), "--bs", "4", "--other-split")
    assert run.rc != 0
    expected = ("ValueError: rank 1 sees 12 training items, rank 0 sees 17: every rank must see the same data "
                "(same folder, same CSV, same split)")
    assert f"[rank0]: {expected}" in run.err and f"[rank1]: {expected}" in run.err, run.err[-3000:]
    assert "EnforceNotMet" not in run.err and not list(tmp_path.glob("rank*.pt"))


def test_an_error_printed_by_the_command_line_names_the_rank_and_host(tmp_path, monkeypatch, capsys):
    """Under torchrun, `error: ...` lines start with the process's rank and machine, as the README says."""
    import socket

    from course_utils.__main__ import main
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--images", str(tmp_path / "no_such_folder"), "--folders", "--out",
                 str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"[rank1 on {socket.gethostname()}]: error: ") and "no_such_folder" in err
    assert rank_prefix() == f"[rank1 on {socket.gethostname()}]: "
    monkeypatch.delenv("RANK")
    assert rank_prefix() == ""


def test_different_item_names_with_the_same_counts_are_refused():
    """Same sizes but other files on one rank: the message says the items differ."""
    same = {"train": (17, "a"), "valid": (7, "b")}
    assert _data_mismatch([same, dict(same)]) is None
    other = {"train": (17, "a"), "valid": (7, "c")}
    assert _data_mismatch([same, other]).startswith("rank 1 sees other validation items than rank 0 (both have 7")
    assert _data_mismatch([same, same, {"train": (16, "a"), "valid": (7, "b")}]).startswith(
        "rank 2 sees 16 training items, rank 0 sees 17")


def test_the_readme_says_what_a_silent_or_refused_rendezvous_means():
    """torchrun's own rendezvous cannot be timed from inside: the README tells what its two failures mean."""
    text = (REPO_ROOT / "README.md").read_text()
    assert "prints nothing at all" in text and "--rdzv-endpoint" in text
    assert "address already in use" in text and "--master-port" in text


# --- in this process, no process group ------------------------------------------------------------------
@pytest.mark.parametrize("n,world", [(7, 2), (2, 3), (0, 2), (10, 4)])
def test_shard_sampler_deals_every_item_to_exactly_one_rank(n, world):
    shares = [list(ShardSampler(n, r, world)) for r in range(world)]
    assert sorted(i for s in shares for i in s) == list(range(n))
    assert [len(ShardSampler(n, r, world)) for r in range(world)] == [len(s) for s in shares]
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def _as_rank(learn, rank: int, world_size: int) -> DistributedTraining:
    """A DistributedTraining that believes it is `rank` of `world_size` (no process group: data logic only)."""
    d = DistributedTraining()
    d.learn, d.rank, d.world_size, d.seed = learn, rank, world_size, 7
    return d


def test_training_shares_are_disjoint_whole_batches_reshuffled_each_epoch(tiny_learner):
    data = tiny_learner.data  # 18 training items, bs 4
    samplers = [_as_rank(tiny_learner, r, 2)._sharded(data.train_dl, train=True).dl.sampler for r in range(2)]
    first = [list(s) for s in samplers]
    assert not set(first[0]) & set(first[1]) and len(first[0]) == len(first[1]) == 9
    for s in samplers:
        s.set_epoch(1)
    assert [list(s) for s in samplers] != first, "a new shuffle each epoch"


def test_a_training_set_too_small_for_every_process_is_a_clear_error(tiny_learner):
    with pytest.raises(ValueError, match=r"18 items: shared by 8 processes that is 2 each, fewer than one batch "
                                         r"\(bs=4, per process\)"):
        _as_rank(tiny_learner, 0, 8).shard_data()


def test_to_distributed_outside_torchrun_says_how_to_launch(tiny_learner, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        tiny_learner.to_distributed()
    assert tiny_learner.dist is None


def test_text_data_is_refused_before_any_process_waits(tmp_path, monkeypatch):
    from imdb import lm_data, make_imdb_like

    from course_utils.text import AWD_LSTM, language_model_learner
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    learn = language_model_learner(lm_data(make_imdb_like(tmp_path / "imdb")), AWD_LSTM, pretrained=False)
    with pytest.raises(TypeError, match="not supported yet. Train it in one process"):
        learn.to_distributed()  # no process group needed: the check comes first


def test_sync_bn_on_a_cpu_is_refused(tiny_learner):
    with pytest.raises(ValueError, match="sync_bn=True needs GPUs"):
        tiny_learner.to_distributed(sync_bn=True)


def test_under_torchrun_each_process_picks_its_own_gpu(monkeypatch):
    from course_utils.config import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert default_device() == torch.device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert default_device() == torch.device("cuda", 3)


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_DIST_TIMEOUT", "12.5")
    assert _timeout(None).total_seconds() == 12.5
    assert _timeout(3).total_seconds() == 3
    monkeypatch.setenv("COURSE_DIST_TIMEOUT", "ten")
    with pytest.raises(ValueError, match="COURSE_DIST_TIMEOUT"):
        _timeout(None)


@pytest.mark.parametrize("raw", ["0", "-5", "nan"])
def test_a_timeout_that_is_not_positive_names_the_variable(monkeypatch, raw):
    """COURSE_DIST_TIMEOUT=0 is refused naming the variable, not an anonymous 'process group timeout'."""
    monkeypatch.setenv("COURSE_DIST_TIMEOUT", raw)
    with pytest.raises(ValueError, match=r"^COURSE_DIST_TIMEOUT must be a positive number of seconds, not "):
        _timeout(None)
    with pytest.raises(ValueError, match=r"to_distributed\(timeout=...\) must be a positive number"):
        _timeout(0)

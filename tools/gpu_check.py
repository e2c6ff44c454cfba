"""`make gpu-check`: everything that only a CUDA GPU can show, in one run, offline, with one table at the end.

On a machine with a CUDA GPU it
  1. runs every lesson notebook in full mode with COURSE_SMOKE=1 on the GPU, from a local mirror built from the
     bundled tiny datasets, with stand-in ImageNet weights (tools/rehearse.py's machinery: no network needed),
     and checks what the rehearsal checks plus: the learner trained on the GPU, and where `to_fp16()` was called,
     that it really took fp16 with a loss scaler (its skipped steps are reported);
  2. measures the benchmark's rows on the GPU (course_utils/bench.py's planet-style data, 128 px, batch 64,
     the default settings): the input pipeline's images/s, training resnet18's images/s in fp32 and after
     `to_fp16()`, and how much of each training step the GPU spent waiting for the next batch;
  3. with 2 or more GPUs, trains the command line under `torchrun` with `nccl` (one process per GPU) and
     checks the export;
and exits 1 if anything failed. On a machine without CUDA it says so and exits 0.

    python tools/gpu_check.py                      # everything (make gpu-check)
    python tools/gpu_check.py --skip-notebooks     # the benchmark rows and torchrun only
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# What each notebook's kernel must show on the GPU, beside the rehearsal's facts: expression -> expected value,
# None = reported, not checked. `_learners()` are the Learner objects the notebook left in its globals.
ON_GPU = "all(l.data.device.type == 'cuda' for l in _learners()) and len(_learners()) > 0"
FP16 = {
    ON_GPU: True,
    "[str(l.precision.dtype) for l in _learners() if l.precision is not None]": None,
    "any(getattr(c, 'scaler', None) is not None for l in _learners() for c in l.callbacks)": True,
    "sum(l.skipped_steps for l in _learners())": None,
}
GPU_FACTS = {"lesson3-camvid.ipynb": FP16}  # the other notebooks: {ON_GPU: True}
LEARNERS = ("from course_utils.learner import Learner as _Learner\n"
            "def _learners():\n"
            "    return [v for v in list(globals().values()) if isinstance(v, _Learner)]\n")


@dataclass
class Row:
    """One line of the table: what was checked, whether it passed (None: a figure, not a check), the figures."""
    check: str
    ok: bool | None
    figures: str


# --- what runs on the GPU (a fake runner stands in for it in tests/test_gpu_check.py) ------------------------
class GpuRunner:
    """Runs the checks for real: notebooks through the rehearsal's mirror, the benchmark, torchrun."""

    def __init__(self, work: Path, timeout: int):
        self.work, self.timeout = work, timeout

    def notebooks(self, paths: list[Path]):
        """Yield (path, seconds, facts, error, rehearsal problems) for each notebook, run in full smoke mode."""
        import rehearse
        mirror, _, env = rehearse.prepare(self.work)
        server, log = rehearse.serve_mirror(mirror)
        env["COURSE_MIRROR"] = f"http://127.0.0.1:{server.server_address[1]}"
        out = self.work / "executed"
        out.mkdir(exist_ok=True)
        saved, cell = dict(rehearse.EXPECT), rehearse.FACTS_CELL
        # the rehearsal's last cell evaluates EXPECT's expressions: add ours, and _learners() that they use
        rehearse.FACTS_CELL = LEARNERS + cell
        try:
            for path in paths:
                expected = saved.get(path.name, {})
                rehearse.EXPECT[path.name] = {**expected, **GPU_FACTS.get(path.name, {ON_GPU: True})}
                secs, facts, error = rehearse.run_notebook(path, out, env, self.timeout)
                problems = [] if error else [f"{e} is {facts.get(e, 'not reported')}, expected {w!r}"
                                             for e, w in expected.items() if facts.get(e) != repr(w)]
                for name in rehearse.DATASETS.get(path.name, []):
                    problems += rehearse.check_dataset(name, env, mirror, log)
                yield path, secs, facts, error, problems
        finally:
            rehearse.EXPECT.clear()
            rehearse.EXPECT.update(saved)
            rehearse.FACTS_CELL = cell
            server.shutdown()

    def bench(self) -> dict:
        """The benchmark's rows on the GPU (see `gpu_bench`)."""
        return gpu_bench(self.work / "bench")

    def torchrun(self, n_gpus: int) -> tuple[int, float, str, bool]:
        """The command line trained under torchrun on `n_gpus` GPUs: (exit status, seconds, output, exported)."""
        out = self.work / "ddp"
        tiny = ROOT / "data" / "planet_tiny"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_gpus}",
               "-m", "course_utils", "train", "--images", str(tiny / "train-jpg"), "--csv", str(tiny / "train_v2.csv"),
               "--arch", "resnet18", "--no-pretrained", "--size", "64", "--bs", "4", "--epochs", "1",
               "--out", str(out)]
        env = {**os.environ, "NCCL_DEBUG": "INFO", "PYTHONPATH": str(ROOT)}
        start = time.time()
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=self.timeout)
        return run.returncode, time.time() - start, run.stdout + run.stderr, (out / "export.pkl").is_file()


def gpu_bench(work: Path, n_images: int = 1280, size: int = 128, bs: int = 64, batches: int = 10) -> dict:
    """Pipeline images/s (the default DataBunch on the GPU: its workers, the decode cache if it fits, batches
    augmented on the GPU), warm; then resnet18 training images/s in fp32 and after `to_fp16()`, with the share
    of each step spent waiting for the next batch (the GPU idle for lack of data)."""
    import torch
    import torchvision

    from course_utils import bench
    from course_utils.callbacks import Callback, CancelFit
    from course_utils.vision import cnn_learner, get_transforms, imagenet_stats

    class WaitTimer(Callback):
        """Per training batch: seconds waiting for it (end of the last step to its arrival) and seconds of step."""
        order = 100

        def __init__(self, n: int):
            self.n, self.waits, self.steps, self._end, self._got = n, [], [], None, None

        def before_batch(self):
            if self.learn.training:
                self._got = time.perf_counter()
                if self._end is not None:
                    self.waits.append(self._got - self._end)

        def after_batch(self):
            if not self.learn.training:
                return
            self.learn.loss.item()  # waits for the GPU to finish the step
            self._end = time.perf_counter()
            self.steps.append(self._end - self._got)
            if len(self.steps) > self.n:
                raise CancelFit()

    shutil.rmtree(work, ignore_errors=True)
    root = bench.make_data(work / "planet", n_images)
    cuda = torch.device("cuda")
    data = (bench.planet_src(root).transform(get_transforms(**bench.PLANET_TFMS), size=size)
            .databunch(bs=bs, device=cuda).normalize(imagenet_stats))
    bench.epoch_rate(data.train_dl)
    torch.cuda.synchronize()
    res = {"pipeline": bench.epoch_rate(data.train_dl), "workers": data.num_workers,
           "cached": bool(data.train_ds.x.auto_cache(data.train_ds.cfg)), "gpu": torch.cuda.get_device_name()}
    for precision in ("fp32", "to_fp16"):
        learn = cnn_learner(data, torchvision.models.resnet18, pretrained=False)
        if precision == "to_fp16":
            learn.to_fp16()
        timer = WaitTimer(batches)
        learn.fit(1, lr=1e-3, callbacks=[timer], progress=False)
        waits, steps = timer.waits[1:], timer.steps[1:]  # the first batch is warm-up
        per_batch = sum(waits) / len(waits) + sum(steps) / len(steps)
        res[precision] = {"img_s": bs / per_batch, "wait_share": sum(waits) / (sum(waits) + sum(steps)),
                          "skipped_steps": learn.skipped_steps,
                          "dtype": str(learn.precision.dtype) if learn.precision else "fp32"}
    return res


# --- the checks, as rows ---------------------------------------------------------------------------------------
def notebook_rows(runner, paths: list[Path]) -> list[Row]:
    """One row per notebook: it ran in full smoke mode on the GPU and showed what it must."""
    rows = []
    for path, secs, facts, error, problems in runner.notebooks(paths):
        gpu = GPU_FACTS.get(path.name, {ON_GPU: True})
        wrong = [f"{e} is {facts.get(e, 'not reported')}, expected {w!r}" for e, w in gpu.items()
                 if w is not None and facts.get(e) != repr(w) and e != ON_GPU]  # that one is said below
        if ON_GPU in gpu and facts.get(ON_GPU) != "True":
            wrong.append("")
        said = [f"{secs:.0f} s"]
        if ON_GPU in gpu:
            said.append("trained on the GPU" if facts.get(ON_GPU) == "True" else "NOT on the GPU")
        if gpu is FP16:
            dtypes = facts.get(next(e for e in FP16 if "precision" in e), "?")
            skipped = facts.get(next(e for e in FP16 if "skipped" in e), "?")
            said.append(f"to_fp16: {dtypes}, loss scaler "
                        f"{'on' if facts.get(next(e for e in FP16 if 'scaler' in e)) == 'True' else 'OFF'}, "
                        f"{skipped} skipped step(s)")
        trouble = ([error.splitlines()[-1]] if error else []) + problems + [w for w in wrong if w]
        ok = not trouble and not wrong
        rows.append(Row(f"notebook {path.stem} (full, smoke)", ok, "; ".join(said + trouble)))
    return rows


def bench_rows(runner) -> list[Row]:
    """The benchmark on the GPU: pipeline and training images/s, and whether the GPU waits for data."""
    try:
        r = runner.bench()
    except Exception as e:  # report it in the table, go on with the other checks
        return [Row("benchmark on the GPU", False, f"{type(e).__name__}: {e}")]
    rows = [Row("pipeline, default settings", r["pipeline"] > 0,
                f"{r['pipeline']:,.0f} img/s ({r['workers']} workers, decode cache "
                f"{'on' if r['cached'] else 'off'}, augmented on the GPU; {r['gpu']})")]
    for precision in ("fp32", "to_fp16"):
        t = r[precision]
        ok = t["img_s"] > 0 and math.isfinite(t["img_s"])
        if precision == "to_fp16":
            ok = ok and t["dtype"] == "torch.float16"
        waits = t["wait_share"] > 0.1
        rows.append(Row(f"train resnet18@128, {precision}", ok,
                        f"{t['img_s']:,.0f} img/s ({t['dtype']}, {t['skipped_steps']} skipped step(s)); the GPU "
                        f"waits for data {t['wait_share']:.0%} of the time"
                        + (": the input pipeline limits training" if waits else "")))
    return rows


def ddp_rows(runner, n_gpus: int) -> list[Row]:
    """With 2+ GPUs: the command line under torchrun with nccl, exported once."""
    if n_gpus < 2:
        return [Row("torchrun with nccl", None, f"skipped: {n_gpus} GPU (it needs 2 or more)")]
    rc, secs, out, exported = runner.torchrun(n_gpus)
    nccl = "NCCL INFO" in out
    ok = rc == 0 and exported and nccl
    why = "" if ok else (f"; exit {rc}, export {'written' if exported else 'missing'}, nccl "
                         f"{'used' if nccl else 'not seen'}: {out.strip().splitlines()[-1] if out.strip() else ''}")
    return [Row(f"torchrun with nccl, {n_gpus} GPUs", ok, f"{secs:.0f} s{why}")]


def render(rows: list[Row]) -> str:
    """The table: one line per row, its verdict first."""
    width = max(len(r.check) for r in rows)
    mark = {True: "ok    ", False: "FAILED", None: "-     "}
    return "\n".join(f"{mark[r.ok]} {r.check:<{width}}  {r.figures}" for r in rows)


def gpu_count() -> int:
    """CUDA GPUs visible to torch (0 without CUDA)."""
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_checks(runner, notebooks: list[Path], n_gpus: int, skip_notebooks: bool = False,
               skip_bench: bool = False) -> tuple[list[Row], int]:
    """Every check, as table rows, and the exit status: 1 if any row failed."""
    rows = [] if skip_notebooks else notebook_rows(runner, notebooks)
    rows += [] if skip_bench else bench_rows(runner)
    rows += ddp_rows(runner, n_gpus)
    return rows, int(any(r.ok is False for r in rows))


def main(argv=None, runner=None, n_gpus: int | None = None) -> int:
    """Command line; `runner` and `n_gpus` stand in for the GPU in tests."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="*", help="notebooks to run (default: every nbs/*.ipynb)")
    p.add_argument("--skip-notebooks", action="store_true", help="only the benchmark rows and torchrun")
    p.add_argument("--skip-bench", action="store_true", help="no benchmark rows")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed per notebook cell and for torchrun")
    p.add_argument("--out", help="work folder to keep (default: a temporary one, kept only on failure)")
    a = p.parse_args(argv)
    n_gpus = gpu_count() if n_gpus is None else n_gpus
    if n_gpus == 0:
        import torch
        print(f"gpu-check: no CUDA GPU on this machine (torch {torch.__version__}, CUDA "
              f"{torch.version.cuda or 'not built in'}), so there is nothing to check here. Run `make gpu-check` "
              "on a machine with an NVIDIA GPU.")
        return 0
    notebooks = [Path(n).resolve() for n in a.notebooks] or sorted((ROOT / "nbs").glob("*.ipynb"))
    work = Path(a.out).resolve() if a.out else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    runner = runner or GpuRunner(work, a.timeout)
    start = time.time()
    rows, status = run_checks(runner, notebooks, n_gpus, a.skip_notebooks, a.skip_bench)
    print(f"\ngpu-check, {n_gpus} GPU(s), {time.time() - start:.0f} s:")
    print(render(rows))
    print(f"gpu-check {'passed' if status == 0 else 'FAILED'} (work folder: {work})")
    if status == 0 and not a.out:
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

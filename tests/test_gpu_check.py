"""tools/gpu_check.py (`make gpu-check`): its CPU path, and its table and exit status with a fake runner in place
of the GPU (no GPU is needed to test what it reports)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import gpu_check  # noqa: E402

NB = [Path("nbs/lesson3-camvid.ipynb"), Path("nbs/lesson3-planet.ipynb")]
SCALER = next(e for e in gpu_check.FP16 if "scaler" in e)
DTYPES = next(e for e in gpu_check.FP16 if "precision" in e)
SKIPPED = next(e for e in gpu_check.FP16 if "skipped" in e)


class FakeRunner:
    """What a GPU machine would report; each piece can be made to fail."""

    def __init__(self, nb_error=None, scaler=True, on_gpu=True, bench_fails=False, wait=0.02, ddp_rc=0, nccl=True):
        self.nb_error, self.scaler, self.on_gpu = nb_error, scaler, on_gpu
        self.bench_fails, self.wait, self.ddp_rc, self.nccl = bench_fails, wait, ddp_rc, nccl
        self.ddp_asked = None

    def notebooks(self, paths):
        for p in paths:
            facts = {gpu_check.ON_GPU: repr(self.on_gpu)}
            if p.name == "lesson3-camvid.ipynb":
                facts.update({SCALER: repr(self.scaler), DTYPES: "['torch.float16']", SKIPPED: "3"})
            yield p, 12.0, facts, (self.nb_error if p.name == "lesson3-planet.ipynb" else None), []

    def bench(self):
        if self.bench_fails:
            raise RuntimeError("CUDA out of memory")
        row = {"img_s": 900.0, "wait_share": self.wait, "skipped_steps": 0, "dtype": "fp32"}
        return {"pipeline": 4100.0, "workers": 8, "cached": True, "gpu": "NVIDIA H100",
                "fp32": row, "to_fp16": {**row, "img_s": 1500.0, "dtype": "torch.float16", "skipped_steps": 2}}

    def torchrun(self, n):
        self.ddp_asked = n
        return self.ddp_rc, 40.0, ("NCCL INFO Init COMPLETE" if self.nccl else "gloo"), self.ddp_rc == 0


def test_without_cuda_it_says_so_and_exits_0(capsys):
    assert gpu_check.main([], runner=FakeRunner(nb_error="never asked"), n_gpus=0) == 0
    out = capsys.readouterr().out
    assert "no CUDA GPU on this machine" in out and "make gpu-check" in out and "FAILED" not in out


def test_the_real_entry_point_on_this_machine_exits_0_without_a_gpu():
    if gpu_check.gpu_count():
        pytest.skip("this machine has a GPU: `make gpu-check` runs the real checks")
    import subprocess
    run = subprocess.run([sys.executable, str(Path(gpu_check.__file__))], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "no CUDA GPU on this machine" in run.stdout


def test_all_passing_gives_one_table_and_exit_0(capsys):
    runner = FakeRunner()
    assert gpu_check.main([str(p) for p in NB], runner=runner, n_gpus=2) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith(("ok", "FAILED", "-"))]
    assert len(lines) == 2 + 3 + 1 and all(ln.startswith("ok") for ln in lines)
    assert "to_fp16: ['torch.float16'], loss scaler on, 3 skipped step(s)" in out
    assert "4,100 img/s (8 workers, decode cache on" in out and "waits for data 2% of the time" in out
    assert "1,500 img/s (torch.float16, 2 skipped step(s))" in out
    assert runner.ddp_asked == 2 and "torchrun with nccl, 2 GPUs" in out and "gpu-check passed" in out


@pytest.mark.parametrize("runner, failing", [
    (FakeRunner(nb_error="Traceback\nRuntimeError: CUDA error: device-side assert"), "notebook lesson3-planet"),
    (FakeRunner(scaler=False), "notebook lesson3-camvid"),
    (FakeRunner(on_gpu=False), "NOT on the GPU"),
    (FakeRunner(bench_fails=True), "benchmark on the GPU"),
    (FakeRunner(ddp_rc=1), "torchrun with nccl"),
    (FakeRunner(nccl=False), "torchrun with nccl"),
])
def test_any_failure_is_marked_in_the_table_and_exits_1(runner, failing, capsys, tmp_path):
    assert gpu_check.main([*map(str, NB), "--out", str(tmp_path / "work")], runner=runner, n_gpus=2) == 1
    out = capsys.readouterr().out
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED ")]
    assert failed and all(failing in ln for ln in failed) and "gpu-check FAILED" in out


def test_one_gpu_skips_torchrun_and_a_starved_gpu_is_named(capsys):
    runner = FakeRunner(wait=0.4)
    assert gpu_check.main([str(NB[0])], runner=runner, n_gpus=1) == 0
    out = capsys.readouterr().out
    assert runner.ddp_asked is None and "skipped: 1 GPU (it needs 2 or more)" in out
    assert "waits for data 40% of the time: the input pipeline limits training" in out

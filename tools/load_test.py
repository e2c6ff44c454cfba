"""The web app under load: start `python -m course_utils serve` on a free 127.0.0.1 port, send N /predict requests at
each concurrency (threads, one HTTP session each), and print one table: errors, latency percentiles, requests per
second and the server's memory. With `--compare`, the same run against the app with batching off (`--max-batch 1`,
one request through the model at a time, as before batching), alternating, so the two columns share the machine's
state.

    python tools/load_test.py                          # a tiny export made here (resnet18, 32 px, 5 classes)
    python tools/load_test.py EXPORT IMAGE -n 300 --concurrency 1 8 32 --compare --rounds 2

Without EXPORT it trains one (1 epoch, random init, the bundled Planet sample at 32 px) into a temporary folder,
which is what the README's figures use; without IMAGE it sends a 256x256 JPEG of noise. Client and server share
the machine: the figures are for that setting (say which CPU when you quote them).
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Run the load test and print its table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", nargs="?", help="export.pkl to serve (default: a tiny one made here)")
    p.add_argument("image", nargs="?", help="image to send (default: a 256x256 JPEG of noise)")
    p.add_argument("-n", type=int, default=300, help="requests per concurrency level (default: 300)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="levels (default: 1 8 32)")
    p.add_argument("--compare", action="store_true", help="also run the app with batching off, alternating")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds with --compare (default: 1)")
    p.add_argument("--wait-ms", type=float, help="the app's --batch-wait-ms (default: the app's default)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(args.export) if args.export else tiny_export(Path(tmp))
        image = Path(args.image).read_bytes() if args.image else noise_jpeg()
        setups = [("batched", [])] + ([("one at a time", ["--max-batch", "1"])] if args.compare else [])
        wait = ["--batch-wait-ms", str(args.wait_ms)] if args.wait_ms is not None else []
        rows = []
        for r in range(args.rounds if args.compare else 1):
            for name, flags in setups:
                rows += run_setup(export, image, flags + wait, args.n, args.concurrency, f"{name}" +
                                  (f", round {r + 1}" if args.rounds > 1 else ""), Path(tmp))
    print_table(rows)
    return 1 if any(row["errors"] for row in rows) else 0


def tiny_export(folder: Path) -> Path:
    """A multi-label resnet18 at 32 px trained 1 epoch (random init) on 64 images of the bundled Planet sample."""
    import pandas as pd
    import torch

    from course_utils.vision import ImageList, cnn_learner, imagenet_stats, models

    torch.manual_seed(0)
    planet = ROOT / "data" / "planet_tiny"
    df = pd.read_csv(planet / "train_v2.csv").head(64)
    data = (ImageList.from_df(df, planet, folder="train-jpg", suffix=".jpg").split_by_rand_pct(0.2, seed=42)
            .label_from_df(label_delim=" ").transform(size=32).databunch(bs=16, num_workers=0)
            .normalize(imagenet_stats))
    learn = cnn_learner(data, models.resnet18, pretrained=False, path=folder)
    learn.fit_one_cycle(1, 1e-3)
    return learn.export()


def noise_jpeg(size: int = 256) -> bytes:
    """A `size`-pixel JPEG of noise (about 60 KB at 256 px: a photo's worth of bytes)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def run_setup(export: Path, image: bytes, flags: list[str], n: int, levels: list[int], name: str,
              tmp: Path) -> list[dict]:
    """Start the app with `flags`, load it at each concurrency level, stop it; one row per level."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "course_utils", "serve", str(export), "--port", str(port),
           "--feedback", str(tmp / f"feedback-{port}"), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = []
    try:
        wait_healthy(url, proc)
        for _ in range(5):  # warm-up: the first requests pay for lazy initialisation
            requests.post(f"{url}/predict", files={"file": ("photo.jpg", image)}, timeout=60)
        for c in levels:
            times, errors, wall = load(url, image, n, c)
            rows.append({"setup": name, "concurrency": c, "requests": n, "errors": errors, "times": times,
                         "wall": wall, "rss": rss_mb(proc.pid)})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


def load(url: str, image: bytes, n: int, concurrency: int) -> tuple[list[float], int, float]:
    """Send `n` requests from `concurrency` threads; (latencies in s, errors, wall time in s)."""
    times, errors, lock = [], [0], threading.Lock()
    todo = iter(range(n))

    def worker():
        with requests.Session() as s:
            while True:
                with lock:
                    if next(todo, None) is None:
                        return
                t = time.perf_counter()
                try:
                    ok = s.post(f"{url}/predict", files={"file": ("photo.jpg", image)}, timeout=120).ok
                except requests.RequestException:
                    ok = False
                with lock:
                    times.append(time.perf_counter() - t)
                    errors[0] += not ok

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors[0], time.perf_counter() - start


def print_table(rows: list[dict]) -> None:
    """One line per setup and concurrency level."""
    import torch

    print(f"POST /predict, {os.cpu_count()} CPUs (torch kernels {torch.backends.cpu.get_cpu_capability()}); client "
          "and server on this machine")
    head = f"{'setup':<24}{'conc.':>6}{'reqs':>6}{'errors':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'req/s':>8}" \
           f"{'RSS MB':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        ms = sorted(1000 * t for t in r["times"])
        q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
        print(f"{r['setup']:<24}{r['concurrency']:>6}{r['requests']:>6}{r['errors']:>7}{q[49]:>7.0f}ms"
              f"{q[94]:>7.0f}ms{q[98]:>7.0f}ms{ms[-1]:>7.0f}ms{r['requests'] / r['wall']:>8.1f}{r['rss']:>8.0f}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Wait until GET /health answers; raise with the server's output if it exits first."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"The app exited with status {proc.returncode}:\n{proc.stderr.read()}")
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        except requests.RequestException:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer /health within {seconds:.0f} s")


def rss_mb(pid: int) -> float:
    """The process's resident memory now, in MB (Linux; 0 elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


if __name__ == "__main__":
    sys.exit(main())

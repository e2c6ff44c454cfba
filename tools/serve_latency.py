"""The web app's predict latency: start `python -m course_utils serve EXPORT` on a free 127.0.0.1 port, POST one
image to /predict N times (after 3 warm-up requests) and print the median and the 90th percentile.

    python tools/serve_latency.py EXPORT IMAGE [-n 50]
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests


def main() -> None:
    """Measure and print the latency of POST /predict."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export")
    p.add_argument("image")
    p.add_argument("-n", type=int, default=50)
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "course_utils", "serve", args.export, "--port", str(port)])
    try:
        _wait(url)
        data = Path(args.image).read_bytes()
        times = []
        for i in range(args.n + 3):
            t = time.perf_counter()
            r = requests.post(f"{url}/predict", files={"file": (Path(args.image).name, data)}, timeout=60)
            r.raise_for_status()
            if i >= 3:
                times.append(time.perf_counter() - t)
        q = statistics.quantiles(times, n=10)
        print(f"POST /predict, {args.n} requests: median {1000 * statistics.median(times):.1f} ms, "
              f"90th percentile {1000 * q[-1]:.1f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait(url: str, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not start")


if __name__ == "__main__":
    main()

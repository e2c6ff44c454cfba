"""Full mode, rehearsed: run every lesson notebook's real path end to end, offline, in minutes.

Tiny mode is tested by `make test`; this tests what a student runs on a GPU. It
  1. builds every full-mode download in its real upstream format and layout (tools/rehearsal_files.py),
     and stand-in pretrained weights under the file names torchvision looks for, in a temporary TORCH_HOME;
  2. rehearses Planet by hand: a Kaggle that answers 404 for train-jpg.tar.7z (as the real one does), then
     the archive, then an unpacked train-jpg/ folder, put in the downloads folder the message names;
  3. serves the archives from 127.0.0.1 as the dataset mirror (COURSE_MIRROR), with empty COURSE_DATA,
     COURSE_MODELS and HOME, and runs every notebook in nbs/ top to bottom with COURSE_MODE=full
     COURSE_SMOKE=1 (a couple of batches per epoch: same archives, architectures, sizes and code paths);
  4. checks, from each executed notebook (a last cell it adds reports facts from the kernel) and from the
     data folders: each dataset was downloaded from the mirror, verified and extracted; the full-mode
     architecture, the pretrained weights and the image sizes were used; the WT103 weights were loaded and
     remapped; export, load_learner and predict ran. It prints the wall time of each notebook.

    python tools/rehearse.py                      # everything (make rehearse); exit status 1 on any failure
    python tools/rehearse.py nbs/lesson3-imdb.ipynb --out /tmp/rehearsal   # one notebook, keep the files
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rehearsal_files as files  # noqa: E402  (a sibling module: tools/ is not a package)

ROOT = Path(__file__).resolve().parent.parent
PLANET = "planet-understanding-the-amazon-from-space"

# What each notebook must show in full mode: expression (evaluated in its kernel at the end) -> expected value.
# `_pretrained(learn)`: the model started from the stand-in ImageNet weights (their BatchNorm fingerprint).
# `_wt103_remapped(learn)`: the WT103 stand-in's embedding rows sit at our tokens' rows (the mean row for
# tokens WT103 lacks), still after the smoke training.
EXPECT = {
    "lesson3-planet.ipynb": {
        "learn.model_spec.options['arch']": "resnet50", "_pretrained(learn)": True, "SIZE": 128,
        "tuple(data.train_ds[0][0].shape)": (3, 256, 256),  # progressive resizing: 2 * SIZE
        "(path / 'export.pkl').is_file()": True,
        "'tags' in globals() and probs.shape == (data.c,)": True, "open_image(img_path).mode": "RGB"},
    "lesson3-camvid.ipynb": {
        "learn.model_spec.builder": "unet",
        "learn.model_spec.options['arch']": "resnet34", "_pretrained(learn)": True,
        "tuple(int(v) for v in size)": (360, 480), "tuple(data.train_ds[0][0].shape)": (3, 720, 960),
        "len(codes)": 32},
    "lesson3-data-block.ipynb": {
        "PLANET_SIZE": 128, "CAMVID_SIZE": (360, 480), "mnist.name": "mnist_tiny", "coco.name": "coco_tiny",
        "len(codes)": 32},
    "lesson3-head-pose.ipynb": {
        "learn.model_spec.options['arch']": "resnet34", "_pretrained(learn)": True, "SIZE": (120, 160),
        "tuple(data.train_ds[0][0].shape)": (3, 120, 160), "FNAME": "09/frame_00667_rgb.jpg",
        "img.size": (640, 480), "tuple(point.shape)": (1, 2)},
    "lesson3-imdb.ipynb": {
        "PRETRAINED": True, "_wt103_remapped(learn)": True,
        "tuple(learn.encoder.encoder.weight.shape)[1]": files.AWD_LSTM_SIZES[0],
        "len(learn.encoder.rnns)": files.AWD_LSTM_SIZES[2]},
    "lesson3-your-own-data.ipynb": {
        "learn.model_spec.options['arch']": "resnet34", "_pretrained(learn)": True, "SIZE": 224,
        "(learn.path / 'export.pkl').is_file()": True, "_pretrained(inference)": True,
        "sorted(learn.data.classes)": ["clear", "cloudy", "haze", "partly_cloudy"]},
}
# Which registry entries each notebook installs (and must have taken from the mirror).
DATASETS = {"lesson3-planet.ipynb": ["planet"], "lesson3-camvid.ipynb": ["camvid"],
            "lesson3-head-pose.ipynb": ["biwi_head_pose"], "lesson3-imdb.ipynb": ["imdb", "imdb_sample", "wt103"],
            "lesson3-data-block.ipynb": ["mnist_tiny", "coco_tiny", "camvid"]}

FACTS_CELL = """# added by tools/rehearse.py: facts for the rehearsal's checks
import json as _json, pickle as _pickle, torch as _torch
from course_utils.config import models_dir as _models_dir

def _pretrained(learner):
    counts = [int(m.num_batches_tracked) for m in learner.model.modules() if isinstance(m, _torch.nn.BatchNorm2d)]
    return max(counts) >= FINGERPRINT

def _cos(a, b):
    return _torch.nn.functional.cosine_similarity(a, b, dim=-1)

def _wt103_remapped(learner):
    folder = _models_dir() / "wt103-fwd"
    old = _torch.load(folder / "lstm_fwd.pth", weights_only=True)["0.encoder.weight"]
    old_itos = _pickle.loads((folder / "itos_wt103.pkl").read_bytes())
    where = {w: i for i, w in enumerate(old_itos)}
    ours = learner.encoder.encoder.weight.detach().float().cpu()
    itos = learner.data.vocab.itos
    known = [(i, where[w]) for i, w in enumerate(itos) if w in where and w != "xxpad"]
    unknown = [i for i, w in enumerate(itos) if w not in where]
    rows_ok = _cos(ours[[i for i, _ in known]], old[[j for _, j in known]]).mean() > 0.9
    mean_ok = not unknown or _cos(ours[unknown], old.mean(0, keepdim=True)).mean() > 0.9
    return bool(rows_ok and mean_ok and len(known) > 10)

_facts = {}
for _expr in EXPRESSIONS:
    try:
        _facts[_expr] = repr(eval(_expr))
    except Exception as _e:
        _facts[_expr] = f"error: {type(_e).__name__}: {_e}"
print("REHEARSAL-FACTS " + _json.dumps(_facts))
"""


# --- local servers ------------------------------------------------------------------------------------------

class _Quiet(ThreadingHTTPServer):
    daemon_threads = True


def serve_mirror(folder: Path) -> tuple[ThreadingHTTPServer, list]:
    """`folder` over http on 127.0.0.1 (like `python -m http.server`); the log lists (path, status) per request."""
    log = []

    class Handler(SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            log.append((self.path, int(code) if str(code).isdigit() else code))

        def log_message(self, *args):
            pass

    server = _Quiet(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, log


def serve_kaggle_404() -> tuple[ThreadingHTTPServer, list]:
    """The Kaggle API as it answers for Planet today: 404 for train-jpg.tar.7z (any file, here), and a listing
    without it. The official client reaches it with KAGGLE_API_ENVIRONMENT=LOCALHOST (plain http to localhost)
    and HTTP_PROXY pointing here, so any free port will do."""
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            asked.append((self.path.rsplit("/", 1)[-1], body.get("fileName")))
            if self.path.endswith("/ListDataFiles"):
                names = ["train_v2.csv/train_v2.csv", "Kaggle-planet-test-tif.torrent",
                         "Kaggle-planet-train-tif.torrent"]
                return self._json(200, {"files": [{"name": n} for n in names]})
            self._json(404, {"code": 404, "message": "Not Found"})

        def _json(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = _Quiet(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


# --- the pieces of a rehearsal -------------------------------------------------------------------------------

def base_env(work: Path) -> dict[str, str]:
    """A student's fresh machine in full mode: empty data, models, torch and home folders; no Kaggle token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "COURSE_"))}
    home = work / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), TORCH_HOME=str(work / "torch"), COURSE_MODE="full", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_utils", *args], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def planet_by_hand(work: Path, mirror: Path, env: dict) -> list[str]:
    """Kaggle's 404 for the JPEG archive names the downloads folder (and the unpacked folder); with the
    archive there, or the unpacked folder, Planet installs without Kaggle. Returns the problems found."""
    problems = []
    home = Path(env["HOME"])
    (home / ".kaggle").mkdir(parents=True, exist_ok=True)
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "student", "key": "not-a-real-key"}))
    (home / ".kaggle" / "kaggle.json").chmod(0o600)
    server, asked = serve_kaggle_404()
    try:
        data = work / "by-hand"
        proxy = f"http://127.0.0.1:{server.server_address[1]}"
        by_hand = {**env, "COURSE_DATA": str(data), "KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": proxy,
                   "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
        downloads = data / "downloads"
        failed = _cli(["download", "planet"], by_hand)
        expected = [f"put it in {downloads}/", f"{downloads / 'train-jpg'}/", "HTTP 404", "train_v2.csv/train_v2.csv"]
        if failed.returncode != 1 or not all(s in failed.stderr for s in expected):
            problems.append(f"Kaggle's 404 for train-jpg.tar.7z should fail naming {downloads}/ and its train-jpg/; "
                            f"got exit {failed.returncode}: {failed.stderr.strip()[-800:]}")
        print("  Kaggle 404 message:", failed.stderr.strip().replace("\n", "\n    "))
        n_asked = len(asked)
        jpgs = work / "files" / "planet" / "train-jpg"
        n_images = len(list(jpgs.glob("*.jpg")))
        downloads.mkdir(parents=True, exist_ok=True)
        for name in ("train-jpg.tar.7z", "train_v2.csv.zip"):
            shutil.copy(mirror / name, downloads / name)
        problems += _installed_by_hand(_cli(["download", "planet"], by_hand), data, "the archive", n_images)
        data = work / "by-hand-unpacked"
        shutil.copytree(jpgs, data / "downloads" / "train-jpg")
        shutil.copy(mirror / "train_v2.csv.zip", data / "downloads" / "train_v2.csv.zip")
        problems += _installed_by_hand(_cli(["download", "planet"], {**by_hand, "COURSE_DATA": str(data)}), data,
                                       "an unpacked train-jpg/ folder", n_images)
        if len(list((data / "downloads" / "train-jpg").glob("*.jpg"))) != n_images:
            problems.append("Planet by hand: installing from the unpacked train-jpg/ folder changed that folder")
        if len(asked) != n_asked:
            problems.append(f"Planet by hand asked Kaggle again although its files were there: {asked[n_asked:]}")
    finally:
        server.shutdown()
    return problems


def _installed_by_hand(run: subprocess.CompletedProcess, data: Path, how: str, n_images: int) -> list[str]:
    installed = len(list((data / "planet" / "train-jpg").glob("*.jpg")))
    if run.returncode != 0 or installed != n_images:
        return [f"Planet by hand from {how} did not install {n_images} images (found {installed}): "
                f"exit {run.returncode}: {run.stderr.strip()[-800:]}"]
    print(f"  Planet by hand from {how}: {installed} images installed")
    return []


def run_notebook(path: Path, out_dir: Path, env: dict, timeout: int) -> tuple[float, dict, str | None]:
    """Execute `path` (plus the facts cell) with `env`; save the executed copy. (seconds, facts, error)."""
    nb = nbformat.read(path, as_version=4)
    expressions = list(EXPECT.get(path.name, {}))
    source = f"FINGERPRINT = {files.BN_FINGERPRINT}\nEXPRESSIONS = {expressions!r}\n{FACTS_CELL}"
    nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": ["rehearsal-facts"]}))
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    start, error = time.time(), None
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as e:
        error = _short_error(e)
    except Exception as e:  # the kernel died or never started: report it, go on with the next notebook
        error = f"{type(e).__name__}: {e}"
    finally:
        os.environ.clear()
        os.environ.update(saved)
    secs = time.time() - start
    nbformat.write(nb, out_dir / path.name)
    return secs, _facts(nb), error


def _short_error(e: CellExecutionError) -> str:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the traceback's terminal colours
    lines = [ln for ln in plain.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-6:])


def _facts(nb) -> dict:
    for out in nb.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith("REHEARSAL-FACTS "):
                return json.loads(line[len("REHEARSAL-FACTS "):])
    return {}


def check_facts(name: str, facts: dict) -> list[str]:
    """Each expected fact of notebook `name` against what its kernel reported."""
    return [f"{name}: {expr} is {facts.get(expr, 'not reported')}, expected {want!r}"
            for expr, want in EXPECT.get(name, {}).items() if facts.get(expr) != repr(want)]


def check_dataset(name: str, env: dict, mirror: Path, log: list) -> list[str]:
    """Dataset `name` came from the mirror (each file fetched with HTTP 200), was verified (the recorded sha256
    is the mirror file's) and extracted (complete, with its marker)."""
    sys.path.insert(0, str(ROOT))
    from course_utils.download import DATASETS as REGISTRY
    dataset = REGISTRY[name]
    root = Path(env["COURSE_MODELS"] if dataset.weights else env["COURSE_DATA"])
    problems = []
    marker = root / dataset.folder / ".complete"
    if not marker.is_file():
        return [f"{name}: not installed ({marker} missing)"]
    records = json.loads((root / "checksums.json").read_text()) if (root / "checksums.json").is_file() else {}
    for source in dataset.sources:
        served = [n for n in source.local_names() if (mirror / n).is_file()]
        if not served:
            problems.append(f"{name}: the rehearsal has no file for {source.url}")
            continue
        if (f"/{served[0]}", 200) not in log:
            problems.append(f"{name}: {served[0]} was not downloaded from the mirror (mirror log: {log})")
        digest = hashlib.sha256((mirror / served[0]).read_bytes()).hexdigest()
        if records.get(source.url, {}).get("sha256") != digest:
            problems.append(f"{name}: no verified checksum of {served[0]} recorded in {root / 'checksums.json'}")
    return problems


def check_weights(torch_home: Path, standins: list[Path]) -> list[str]:
    """Torchvision used only the stand-ins: it downloaded nothing else into its cache."""
    found = sorted((torch_home / "hub" / "checkpoints").iterdir())
    extra = [p.name for p in found if p not in standins]
    return [f"torchvision fetched weights the rehearsal does not stand in for: {extra}"] if extra else []


def prepare(work: Path) -> tuple[Path, list[Path], dict]:
    """Build the mirror and the stand-in weights; the environment for the notebooks (without the mirror)."""
    t = time.time()
    mirror = work / "mirror"
    files.build_mirror(mirror, work / "files")
    env = base_env(work)
    standins = files.write_imagenet_standins(Path(env["TORCH_HOME"]))
    files.own_images(Path(env["HOME"]), work / "files" / "planet" / "train-jpg")
    env.update(COURSE_DATA=str(work / "data"), COURSE_MODELS=str(work / "models"), COURSE_SMOKE="1")
    print(f"Built the mirror ({', '.join(sorted(p.name for p in mirror.iterdir()))}) and stand-in weights "
          f"({', '.join(p.name for p in standins)}) in {time.time() - t:.0f}s")
    return mirror, standins, env


def rehearse(notebooks: list[Path], work: Path, timeout: int) -> bool:
    """The whole rehearsal in `work`; prints what it finds and returns whether everything passed."""
    start = time.time()
    mirror, standins, env = prepare(work)
    print("Planet by hand (no mirror; a Kaggle that answers 404 for train-jpg.tar.7z):")
    problems = planet_by_hand(work, mirror, env)
    server, log = serve_mirror(mirror)
    env["COURSE_MIRROR"] = f"http://127.0.0.1:{server.server_address[1]}"
    (work / "executed").mkdir()
    print(f"Notebooks in full mode with COURSE_SMOKE=1, from the mirror {env['COURSE_MIRROR']}:")
    try:
        for nb in notebooks:
            secs, facts, error = run_notebook(nb, work / "executed", env, timeout)
            found = [f"{nb.name} failed:\n{error}"] if error else check_facts(nb.name, facts)
            for name in DATASETS.get(nb.name, []):
                found += check_dataset(name, env, mirror, log)
            print(f"  {'ok    ' if not found else 'FAILED'} {nb.stem:<28} {secs:6.1f}s", flush=True)
            problems += found
    finally:
        server.shutdown()
    problems += check_weights(Path(env["TORCH_HOME"]), standins)
    for p in problems:
        print(f"PROBLEM: {p}")
    print(f"Rehearsal {'passed' if not problems else 'FAILED'} in {time.time() - start:.0f}s "
          f"(executed notebooks: {work / 'executed'})")
    return not problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: every nbs/*.ipynb)")
    parser.add_argument("--out", help="work folder to keep (default: a temporary one, kept only on failure)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    args = parser.parse_args()
    notebooks = [Path(p).resolve() for p in args.notebooks] or sorted((ROOT / "nbs").glob("*.ipynb"))
    work = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="rehearsal-"))
    if args.out and work.exists() and any(work.iterdir()):
        parser.error(f"--out {work} is not empty: the rehearsal starts from empty folders.")
    work.mkdir(parents=True, exist_ok=True)
    ok = rehearse(notebooks, work, args.timeout)
    if ok and not args.out:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

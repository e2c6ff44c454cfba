"""The files the rehearsal serves (tools/rehearse.py): every full-mode download, in the real upstream format
and layout, made from the bundled tiny datasets (the output of data/make_*_tiny.py), at the real image
sizes; and stand-in pretrained weights under the names torchvision and the WT103 loader look for.

The contents are small (tens of images per dataset) so that a smoke run takes minutes on a CPU; the
formats are not: Planet's JPEGs are 256x256 CMYK files in a tar inside a 7z, CamVid's frames are
960x720 PNGs, BIWI's are 640x480 JPEGs in subject folders 01..24, IMDB's reviews are `{id}_{rating}.txt`
files with raw `<br />` tags. The stand-in weights are random: they check the loading path, not accuracy.
Each stand-in carries a fingerprint a notebook's model can be checked for after training (below).
"""
from __future__ import annotations

import pickle
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import torch
import torchvision
from PIL import Image

DATA = Path(__file__).resolve().parent.parent / "data"

# The real datasets' sizes: what full mode must handle.
PLANET_SIZE = 256
CAMVID_SIZE = (960, 720)  # width, height
BIWI_SIZE = (640, 480)
BIWI_SUBJECTS = [f"{i:02d}" for i in range(1, 25)]
BIWI_LESSON_FRAME = ("09", "frame_00667")  # the frame the lesson's notebook looks at
BIWI_FRAMES = 4  # per subject: 23 training subjects x 4 = 92 frames, more than one full-mode batch (64)
CAMVID_TRAIN, CAMVID_VALID = 16, 8  # frames kept: enough for a few batches, few enough to build in seconds

# Pretrained torchvision backbones the full-mode notebooks ask for (planet: resnet50; camvid, head pose,
# your own data: resnet34). A notebook asking for another would make torchvision try the internet.
IMAGENET_ARCHS = ("resnet34", "resnet50")
# Every BatchNorm layer of a stand-in has counted this many batches: a model that really started from the
# stand-in keeps a count at least this high after any amount of smoke training (and through export/load),
# one built without it counts from zero. BatchNorm only uses the count when momentum is None (never here).
BN_FINGERPRINT = 10 ** 6
WT103_SPECIALS = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxmaj", "xxup", "xxrep", "xxwrep"]
AWD_LSTM_SIZES = (400, 1152, 3)  # embedding, hidden, layers: those of the real WT103 weights


# --- small helpers ---------------------------------------------------------------------------------------

def _tgz(folder: Path, out: Path) -> Path:
    """`folder` as `out` (a .tgz holding one top folder named like `folder`, as fastai's archives do)."""
    with tarfile.open(out, "w:gz", compresslevel=1) as t:
        t.add(folder, arcname=folder.name)
    return out


def _upscaled(src: Path, size: tuple[int, int], resample=Image.BICUBIC) -> Image.Image:
    with Image.open(src) as img:
        return img.resize(size, resample)


# --- datasets -----------------------------------------------------------------------------------------------

def planet(out: Path, work: Path) -> list[Path]:
    """Kaggle's Planet files: `train-jpg.tar.7z` (a 7z holding train-jpg.tar, holding train-jpg/train_N.jpg,
    256x256 four-component CMYK JPEGs like the real ones) and `train_v2.csv.zip` (Kaggle zips the CSV)."""
    import py7zr

    jpgs = work / "train-jpg"
    jpgs.mkdir(parents=True)
    for f in sorted((DATA / "planet_tiny" / "train-jpg").glob("*.jpg")):
        _upscaled(f, (PLANET_SIZE, PLANET_SIZE)).convert("CMYK").save(jpgs / f.name, quality=90)
    tar = work / "train-jpg.tar"
    with tarfile.open(tar, "w") as t:
        t.add(jpgs, arcname="train-jpg")
    fast = [{"id": py7zr.FILTER_LZMA2, "preset": 1}]  # LZMA2 as 7-Zip writes it, at its quickest setting
    with py7zr.SevenZipFile(out / "train-jpg.tar.7z", "w", filters=fast) as z:
        z.write(tar, "train-jpg.tar")
    with zipfile.ZipFile(out / "train_v2.csv.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(DATA / "planet_tiny" / "train_v2.csv", "train_v2.csv")
    return [out / "train-jpg.tar.7z", out / "train_v2.csv.zip"]


def camvid(out: Path, work: Path) -> list[Path]:
    """fastai's `camvid.tgz`: camvid/{images/*.png 960x720, labels/<stem>_P.png (class ids), codes.txt, valid.txt}."""
    src, root = DATA / "camvid_tiny", work / "camvid"
    valid = (src / "valid.txt").read_text().split()[:CAMVID_VALID]
    train = sorted(p.name for p in (src / "images").glob("*.png") if p.name not in valid)[:CAMVID_TRAIN]
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name in train + valid:
        stem = Path(name).stem
        _upscaled(src / "images" / name, CAMVID_SIZE).save(root / "images" / name, compress_level=1)
        _upscaled(src / "labels" / f"{stem}_P.png", CAMVID_SIZE, Image.NEAREST).save(
            root / "labels" / f"{stem}_P.png", compress_level=1)
    shutil.copy(src / "codes.txt", root / "codes.txt")
    (root / "valid.txt").write_text("\n".join(valid) + "\n")
    return [_tgz(root, out / "camvid.tgz")]


def _real_calibration(tiny_cal: str, scale: float) -> str:
    """The tiny calibration with its intrinsics (the first 3x3 block) scaled back to the real frame size."""
    lines = tiny_cal.splitlines()
    for i in range(2):  # fx 0 cx / 0 fy cy: pixel units; the third row (0 0 1) has none
        lines[i] = " ".join(f"{float(v) * scale:g}" if float(v) else "0" for v in lines[i].split()) + " "
    return "\n".join(lines) + "\n"


def biwi(out: Path, work: Path) -> list[Path]:
    """fastai's `biwi_head_pose.tgz`: biwi_head_pose/{01..24}/frame_XXXXX_rgb.jpg (640x480) with
    frame_XXXXX_pose.txt and rgb.cal, and {01..24}.obj beside the folders. The tiny subjects (01-13) are
    reused in turn; the poses (millimetres) hold as they are, the intrinsics are scaled to the real size."""
    src, root = DATA / "biwi_head_pose_tiny", work / "biwi_head_pose"
    tiny = sorted(p.name for p in src.iterdir() if p.is_dir() and any(p.glob("*_rgb.jpg")))  # not models/
    for k, subject in enumerate(BIWI_SUBJECTS):
        from_ = src / (subject if subject in tiny else tiny[k % len(tiny)])
        folder = root / subject
        folder.mkdir(parents=True)
        frames = sorted(from_.glob("*_rgb.jpg"))[: 8 if subject == "13" else BIWI_FRAMES]
        with Image.open(frames[0]) as first:
            scale = BIWI_SIZE[0] / first.width
        (folder / "rgb.cal").write_text(_real_calibration((from_ / "rgb.cal").read_text(), scale))
        for j, f in enumerate(frames):
            stem = f.name[: -len("_rgb.jpg")]
            if (subject, j) == (BIWI_LESSON_FRAME[0], 0):
                stem = BIWI_LESSON_FRAME[1]
            _upscaled(f, BIWI_SIZE).save(folder / f"{stem}_rgb.jpg", quality=90)
            shutil.copy(f.with_name(f.name.replace("_rgb.jpg", "_pose.txt")), folder / f"{stem}_pose.txt")
        (root / f"{subject}.obj").write_text("# head model (stand-in)\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    return [_tgz(root, out / "biwi_head_pose.tgz")]


def imdb(out: Path, work: Path) -> list[Path]:
    """fastai's `imdb.tgz` (imdb/{train/{pos,neg}, test/{pos,neg}, unsup, README, imdb.vocab}, one review per
    `{id}_{rating}.txt` with raw `<br />` tags) and `imdb_sample.tgz` (imdb_sample/texts.csv)."""
    src, root = DATA / "imdb_tiny", work / "imdb"
    for part in ("train/pos", "train/neg", "test/pos", "test/neg", "unsup"):
        shutil.copytree(src / part, root / part)
    words = sorted({w for f in root.rglob("*.txt") for w in re.findall(r"[a-z']+", f.read_text().lower())})
    (root / "imdb.vocab").write_text("\n".join(words) + "\n")
    (root / "README").write_text("Large Movie Review Dataset (rehearsal stand-in built from data/imdb_tiny).\n")
    sample = work / "imdb_sample"
    sample.mkdir()
    shutil.copy(src / "texts.csv", sample / "texts.csv")
    return [_tgz(root, out / "imdb.tgz"), _tgz(sample, out / "imdb_sample.tgz")]


def wt103_vocab(texts_dir: Path) -> list[str]:
    """A stand-in WT103 vocabulary: the special tokens, most words of the IMDB texts (every fifth one left out,
    so that the remap's "unknown to WT103: mean row" path runs too) and words IMDB does not have."""
    words = sorted({w for f in texts_dir.rglob("*.txt") for w in re.findall(r"[a-z']+", f.read_text().lower())})
    kept = [w for i, w in enumerate(words) if i % 5]
    return WT103_SPECIALS + kept + [f"wikiword{i}" for i in range(500)]


def wt103_state_dict(n_tokens: int, seed: int = 103) -> dict[str, torch.Tensor]:
    """Random AWD-LSTM language-model weights under the key names of fastai's lstm_fwd.pth."""
    g = torch.Generator().manual_seed(seed)
    emb, hid, layers = AWD_LSTM_SIZES
    encoder = torch.randn(n_tokens, emb, generator=g) * 0.1
    sd = {"0.encoder.weight": encoder, "0.encoder_dp.emb.weight": encoder.clone()}
    for i in range(layers):
        n_in, n_out = emb if i == 0 else hid, emb if i == layers - 1 else hid
        w_hh = torch.randn(4 * n_out, n_out, generator=g) * 0.02
        sd[f"0.rnns.{i}.weight_hh_l0_raw"] = w_hh
        sd[f"0.rnns.{i}.module.weight_ih_l0"] = torch.randn(4 * n_out, n_in, generator=g) * 0.02
        sd[f"0.rnns.{i}.module.weight_hh_l0"] = w_hh.clone()
        sd[f"0.rnns.{i}.module.bias_ih_l0"] = torch.zeros(4 * n_out)
        sd[f"0.rnns.{i}.module.bias_hh_l0"] = torch.zeros(4 * n_out)
    sd["1.decoder.weight"] = encoder.clone()
    sd["1.decoder.bias"] = torch.randn(n_tokens, generator=g) * 0.1
    return sd


def wt103(out: Path, work: Path) -> list[Path]:
    """fastai's `wt103-fwd.tgz`: wt103-fwd/{lstm_fwd.pth (state dict), itos_wt103.pkl (pickled token list)}."""
    root = work / "wt103-fwd"
    root.mkdir()
    itos = wt103_vocab(DATA / "imdb_tiny")
    torch.save(wt103_state_dict(len(itos)), root / "lstm_fwd.pth")
    (root / "itos_wt103.pkl").write_bytes(pickle.dumps(itos))
    return [_tgz(root, out / "wt103-fwd.tgz")]


def lesson_sample(name: str):
    """A builder for the lesson's small sample archives (`mnist_tiny.tgz`, `coco_tiny.tgz`): the bundled copy,
    which has the real layout (mnist_tiny/{train,valid}/{3,7}, test, labels.csv; coco_tiny/{train, train.json})."""
    def build(out: Path, work: Path) -> list[Path]:
        root = work / name
        shutil.copytree(DATA / name, root)
        return [_tgz(root, out / f"{name}.tgz")]
    return build


BUILDERS = {"planet": planet, "camvid": camvid, "biwi_head_pose": biwi, "imdb": imdb, "wt103": wt103,
            "mnist_tiny": lesson_sample("mnist_tiny"), "coco_tiny": lesson_sample("coco_tiny")}


def build_mirror(out: Path, work: Path) -> dict[str, list[Path]]:
    """Every rehearsal archive in the mirror folder `out` (scratch space in `work`): {builder: files}."""
    out.mkdir(parents=True, exist_ok=True)
    built = {}
    for name, builder in BUILDERS.items():
        (work / name).mkdir(parents=True)
        built[name] = builder(out, work / name)
    return built


# --- pretrained ImageNet weights ----------------------------------------------------------------------------

def imagenet_checkpoint_names() -> dict[str, str]:
    """{arch: the file name torchvision caches its default ImageNet weights under (in $TORCH_HOME/hub/checkpoints)}."""
    return {a: Path(torchvision.models.get_model_weights(a).DEFAULT.url).name for a in IMAGENET_ARCHS}


def write_imagenet_standins(torch_home: Path) -> list[Path]:
    """Random-weight stand-ins for each backbone, each BatchNorm carrying BN_FINGERPRINT."""
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for arch, fname in imagenet_checkpoint_names().items():
        sd = torchvision.models.get_model(arch, weights=None).state_dict()
        for k in sd:
            if k.endswith("num_batches_tracked"):
                sd[k] = torch.tensor(BN_FINGERPRINT)
        torch.save(sd, folder / fname)
        written.append(folder / fname)
    return written


def own_images(home: Path, planet_jpgs: Path, per_class: int = 24) -> Path:
    """`~/my-dataset/images/<weather>/*.jpg` under `home`, from the Planet CMYK JPEGs: the folder the
    your-own-data notebook reads in full mode (single-label, one folder per class)."""
    import pandas as pd

    df = pd.read_csv(DATA / "planet_tiny" / "train_v2.csv")
    root = home / "my-dataset" / "images"
    for weather in ("clear", "cloudy", "haze", "partly_cloudy"):
        names = df[df.tags.str.split().apply(lambda t: weather in t)].image_name[:per_class]
        (root / weather).mkdir(parents=True)
        for n in names:
            shutil.copy(planet_jpgs / f"{n}.jpg", root / weather / f"{n}.jpg")
    return root


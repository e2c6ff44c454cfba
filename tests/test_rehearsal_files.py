"""The rehearsal's archives have the real upstream layouts, and full mode installs them from a mirror folder."""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import rehearsal_files as files  # noqa: E402

from course_utils.download import download_dataset  # noqa: E402


def members(tgz: Path) -> set[str]:
    with tarfile.open(tgz) as t:
        return set(t.getnames())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    out = root / "mirror"
    out.mkdir()
    made = {}
    for name in ("camvid", "biwi", "imdb"):
        (root / name).mkdir()
        made[name] = getattr(files, name)(out, root / name)
    return out, made


def test_camvid_tgz_has_fastais_layout_at_the_real_size(built):
    names = members(built[0] / "camvid.tgz")
    assert {"camvid/codes.txt", "camvid/valid.txt", "camvid/images", "camvid/labels"} <= names
    image = sorted(n for n in names if n.startswith("camvid/images/"))[0]
    stem = Path(image).stem
    assert f"camvid/labels/{stem}_P.png" in names


def test_biwi_tgz_has_24_subjects_and_the_lessons_frame(built, tmp_path):
    with tarfile.open(built[0] / "biwi_head_pose.tgz") as t:
        t.extractall(tmp_path, filter="data")
    root = tmp_path / "biwi_head_pose"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == files.BIWI_SUBJECTS
    assert sorted(p.name for p in root.glob("*.obj")) == [f"{s}.obj" for s in files.BIWI_SUBJECTS]
    frame = root / "09" / "frame_00667_rgb.jpg"
    assert Image.open(frame).size == files.BIWI_SIZE and (root / "09" / "frame_00667_pose.txt").is_file()
    assert (root / "01" / "rgb.cal").read_text().split()[:3] == ["517.68", "0", "320"]  # the real intrinsics


def test_imdb_tgz_has_the_real_folders_and_raw_br_tags(built):
    names = members(built[0] / "imdb.tgz")
    assert {"imdb/train/pos", "imdb/train/neg", "imdb/test/pos", "imdb/test/neg", "imdb/unsup", "imdb/README",
            "imdb/imdb.vocab"} <= names
    with tarfile.open(built[0] / "imdb.tgz") as t:
        review = next(n for n in sorted(names) if n.startswith("imdb/train/pos/") and n.endswith(".txt"))
        assert Path(review).stem.split("_")[1].isdigit()  # {id}_{rating}.txt
        assert any(b"<br />" in t.extractfile(n).read() for n in names if n.endswith(".txt") and "/unsup/" not in n)


def test_full_mode_installs_them_from_the_mirror_folder(built, tmp_path):
    for name in ("camvid", "biwi_head_pose", "imdb", "imdb_sample"):
        path = download_dataset(name, tmp_path / "data", mirror=str(built[0]))
        assert (path / ".complete").is_file()
    assert (tmp_path / "data" / "imdb" / "train" / "pos").is_dir()
    assert Image.open(next((tmp_path / "data" / "camvid" / "images").iterdir())).size == files.CAMVID_SIZE


def test_the_wt103_stand_in_loads_and_remaps_into_the_lessons_language_model(tmp_path):
    from course_utils.text.models import get_language_model, load_wt103

    itos = files.WT103_SPECIALS + ["movie", "film", "great"]
    old = files.wt103_state_dict(len(itos))
    import pickle

    import torch
    torch.save(old, tmp_path / "lstm_fwd.pth")
    (tmp_path / "itos_wt103.pkl").write_bytes(pickle.dumps(itos))
    ours = ["xxunk", "xxpad", "film", "unseen"]
    model = get_language_model(len(ours))
    load_wt103(model, ours, (tmp_path / "lstm_fwd.pth", tmp_path / "itos_wt103.pkl"))
    emb = model[0].encoder.weight.detach()
    assert torch.equal(emb[2], old["0.encoder.weight"][itos.index("film")])
    assert torch.allclose(emb[3], old["0.encoder.weight"].mean(0))

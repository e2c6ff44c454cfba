"""Round two of the hostile-input trial (issue 16), the WEAK table cases: errors that came early but misled.
A name written in another Unicode form than the file's (I15), tags separated by unquoted commas (C6), a CSV
with a header and no rows (C10), zero-padded numeric names (C13), and `--codes` given with `--csv` (L2)."""
from __future__ import annotations

import unicodedata

import pytest
from PIL import Image

from course_utils.__main__ import main
from course_utils.data_block import CategoryList, FloatList
from course_utils.learner import Learner
from course_utils.tables import read_csv, same_names_on_disk
from course_utils.text import TextList
from course_utils.vision import ImageList


def _images(root, names):
    (root / "imgs").mkdir(parents=True)
    for name in names:
        Image.new("RGB", (8, 8), (40, 0, 0)).save(root / "imgs" / f"{name}.jpg")
    return root


def _csv(root, lines, name="labels.csv"):
    (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / name


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if any training starts."""
    def fail(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(Learner, "fit", fail)


def _cli_train(images, *layout):
    return main(["train", "--images", str(images), *layout, "--arch", "resnet18", "--no-pretrained", "--size", "16",
                 "--bs", "4", "--epochs", "1", "--lr", "1e-2", "--out", str(images.parent / "run")])


# --- I15: the CSV's name in NFC, the file's in NFD (macOS) --------------------------------------------------
NFC = [unicodedata.normalize("NFC", f"café_{i}") for i in range(12)]
NFD = [unicodedata.normalize("NFD", n) for n in NFC]


def test_names_that_differ_only_in_unicode_form_are_matched(tmp_path):
    _images(tmp_path, NFD)
    (tmp_path / "Ångström").mkdir()  # a folder in one form, named in the other
    (tmp_path / "Ångström" / "x.jpg").write_bytes(b"")
    asked = [tmp_path / "imgs" / f"{n}.jpg" for n in NFC] + [tmp_path / "imgs" / "nope.jpg",
                                                             tmp_path / unicodedata.normalize("NFD", "Ångström/x.jpg")]
    found = same_names_on_disk(asked)
    assert found[:12] == [tmp_path / "imgs" / f"{n}.jpg" for n in NFD]
    assert all(p.is_file() for p in found[:12]) and found[12] == asked[12]  # a missing file stays missing
    assert found[13] == tmp_path / "Ångström" / "x.jpg" and found[13].is_file()


def test_a_csv_naming_files_in_another_unicode_form_finds_them(tmp_path):
    root = _images(tmp_path, NFD)
    _csv(root, ["image_name,tags"] + [f"{n},a" for n in NFC])
    items = ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
    assert all(p.is_file() for p in items.items)


# --- C6: unquoted commas between tags -----------------------------------------------------------------------
@pytest.mark.parametrize("bad_rows, line", [("all", 2), ({3}, 5), ({0}, 2), ({5}, 7)])
def test_a_row_with_more_fields_than_the_header_names_its_line(tmp_path, bad_rows, line):
    root = _images(tmp_path, [f"img_{i}" for i in range(12)])
    def tags(i):
        return "cloudy,haze" if bad_rows == "all" or i in bad_rows else "clear"
    _csv(root, ["image_name,tags"] + [f"img_{i},{tags(i)}" for i in range(12)])
    with pytest.raises(ValueError, match=rf"labels\.csv, line {line}, has 3 fields.*header.*2.*quote the value "
                                         r"\(\"cloudy,haze\"\).*separate tags with spaces \(cloudy haze\)"):
        ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")


def test_two_extra_fields_in_the_first_row_name_its_line(tmp_path):
    csv = _csv(tmp_path, ["image_name,tags", "img_0,cloudy,haze,water", "img_1,clear"])
    with pytest.raises(ValueError, match=r"line 2, has 4 fields"):
        read_csv(csv)


def test_an_index_column_asked_for_is_still_read(tmp_path):
    csv = _csv(tmp_path, ["a,b", "x,1,2", "y,3,4"])
    df = read_csv(csv, index_col=0)
    assert list(df.index) == ["x", "y"] and list(df.columns) == ["a", "b"]


def test_the_command_line_names_the_line_too(tmp_path, capsys, no_training):
    root = _images(tmp_path, [f"img_{i}" for i in range(12)])
    csv = _csv(root, ["image_name,tags"] + [f"img_{i},cloudy,haze" for i in range(12)])
    assert _cli_train(root / "imgs", "--csv", str(csv)) == 1
    assert "line 2, has 3 fields" in capsys.readouterr().err


# --- C10: a header and no rows ---------------------------------------------------------------------------
def test_a_header_only_csv_says_so(tmp_path):
    root = _images(tmp_path, [f"img_{i}" for i in range(4)])
    _csv(root, ["image_name,tags", "", ""])
    with pytest.raises(ValueError, match=r"labels\.csv has a header \(image_name, tags\) but no rows"):
        ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")


def test_a_header_only_texts_csv_says_so(tmp_path):
    _csv(tmp_path, ["label,text,is_valid"], name="texts.csv")
    with pytest.raises(ValueError, match=r"texts\.csv has a header .* but no rows"):
        TextList.from_csv(tmp_path, "texts.csv", cols="text")


def test_a_header_only_csv_on_the_command_line_says_so(tmp_path, capsys, no_training):
    root = _images(tmp_path, [f"img_{i}" for i in range(4)])
    csv = _csv(root, ["image_name,tags"])
    assert _cli_train(root / "imgs", "--csv", str(csv)) == 1
    assert "labels.csv has a header (image_name, tags) but no rows" in capsys.readouterr().err


# --- C13: zero-padded numeric names ------------------------------------------------------------------------
def test_zero_padded_names_stay_text(tmp_path):
    names = [f"{i:04d}" for i in range(24)]
    root = _images(tmp_path, names)
    _csv(root, ["image_name,tags"] + [f"{n},{'a' if i % 2 else 'b'}" for i, n in enumerate(names)])
    items = ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
    assert [p.name for p in items.items] == [f"{n}.jpg" for n in names]


def test_numeric_label_columns_keep_their_type(tmp_path):
    root = _images(tmp_path, [f"{i:03d}" for i in range(12)])
    _csv(root, ["name,size,count"] + [f"{i:03d},{i / 4},{i % 3}" for i in range(12)])
    df = read_csv(root / "labels.csv")
    assert df["name"].tolist()[:3] == ["000", "001", "002"]
    assert df["size"].dtype.kind == "f" and df["count"].dtype.kind == "i"
    src = (ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
           .split_by_rand_pct(0.25, seed=0))
    assert isinstance(src.label_from_df(cols="size").train.y, FloatList)
    assert isinstance(src.label_from_df(cols="count").train.y, CategoryList)


def test_a_dtype_given_is_respected(tmp_path):
    csv = _csv(tmp_path, ["name,n", "0001,1", "0002,2"])
    assert read_csv(csv, dtype={"name": int})["name"].tolist() == [1, 2]


# --- L2: --codes with --csv or --folders ----------------------------------------------------------------------
@pytest.mark.parametrize("layout", [["--csv", "labels.csv"], ["--folders"]])
def test_codes_without_masks_is_refused_before_any_work(tmp_path, capsys, no_training, layout):
    (tmp_path / "codes.txt").write_text("Sky\nRoad\n")
    layout = [str(tmp_path / a) if a.endswith(".csv") else a for a in layout]  # neither path exists: no work done
    with pytest.raises(SystemExit) as e:
        _cli_train(tmp_path / "imgs", *layout, "--codes", str(tmp_path / "codes.txt"))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m course_utils train" in err and "--codes" in err and "--masks" in err

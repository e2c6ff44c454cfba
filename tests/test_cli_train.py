"""`python -m course_utils train` and `predict` end to end, on tiny data in each of the three layouts."""
import numpy as np
import pytest
from PIL import Image

from course_utils.__main__ import main


def _train(tmp_path, *layout, lr="1e-2"):
    out = tmp_path / "run"
    args = ["train", *layout, "--arch", "resnet18", "--no-pretrained", "--size", "32", "--bs", "4",
            "--epochs", "1", "--out", str(out)]
    assert main(args + (["--lr", lr] if lr else [])) == 0
    assert (out / "export.pkl").is_file()
    return out / "export.pkl"


@pytest.fixture(scope="module")
def mask_path(tmp_path_factory):
    """Segmentation in the masks layout: images/, labels/<stem>_P.png (0 = left half, 1 = right), codes.txt."""
    root = tmp_path_factory.mktemp("masks")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        img = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
        img[:, 16:] += 150
        Image.fromarray(img).save(root / "images" / f"scene_{i}.png")
        mask = np.zeros((32, 32), dtype=np.uint8)
        mask[:, 16:] = 1
        Image.fromarray(mask).save(root / "labels" / f"scene_{i}_P.png")
    (root / "codes.txt").write_text("ground\nsky\n")
    return root


def test_csv_layout_trains_exports_and_predicts_tags(planet_path, tmp_path, capsys):
    model = _train(tmp_path, "--images", str(planet_path / "train-jpg"), "--csv", str(planet_path / "train_v2.csv"),
                   lr=None)  # no --lr: the LR finder's suggestion is used
    out = capsys.readouterr().out
    assert "Suggested learning rate" in out and "fbeta" in out, "the per-epoch table is printed"
    img = planet_path / "test-jpg" / "test_0.jpg"
    assert main(["predict", str(model), str(img), "--thresh", "0.0"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{img}: [") and "primary" in line, "with threshold 0 every tag is predicted"


def test_folders_layout_trains_and_predicts_one_class(colour_path, tmp_path, capsys):
    model = _train(tmp_path, "--images", str(colour_path), "--folders")
    img = next((colour_path / "valid" / "red").glob("*.png"))
    assert main(["predict", str(model.parent), str(img)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    label = line.split(": ")[1].split("  (")[0]
    assert label in {"red", "green", "blue"}
    assert line.count(" 0.") + line.count(" 1.0") >= 3, "every class is listed with its probability"


def test_masks_layout_trains_a_unet_and_reports_pixel_shares(mask_path, tmp_path, capsys):
    model = _train(tmp_path, "--images", str(mask_path / "images"), "--masks", str(mask_path / "labels"))
    assert main(["predict", str(model), str(mask_path / "images" / "scene_0.png")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "of pixels" in line and ("ground" in line or "sky" in line)


def test_bad_input_is_one_clear_error_line(planet_path, tmp_path, capsys):
    code = main(["train", "--images", str(planet_path / "train-jpg"), "--csv", str(tmp_path / "missing.csv"),
                 "--out", str(tmp_path / "run")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.csv" in err


def test_help_explains_every_option_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--images", "--csv", "--folders", "--masks", "--arch", "--size", "--epochs", "--lr", "--out"):
        assert option in text
    assert "examples:" in text and "python -m course_utils train" in text

"""`python -m course_utils train` and `predict` end to end, on tiny data in each of the three layouts."""
import numpy as np
import pytest
from PIL import Image

from course_utils.__main__ import main
from course_utils.learner import load_learner


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


# --- bad numbers and a diverging loss -----------------------------------------------------------------------------
@pytest.mark.parametrize("option,value,expected", [
    ("--lr", "nan", "a finite number above 0"), ("--lr", "-1", "a finite number above 0"),
    ("--lr", "0", "a finite number above 0"), ("--lr", "1e300", "a finite number above 0"),
    ("--seed", "-1", "a whole number of at least 0"), ("--seed", "1.5", "a whole number of at least 0"),
    ("--valid-pct", "0", "a number between 0 and 1 (both excluded)"),
    ("--valid-pct", "1", "a number between 0 and 1 (both excluded)"),
    ("--valid-pct", "nan", "a number between 0 and 1 (both excluded)"),
    ("--epochs", "-3", "a positive whole number")])
def test_a_bad_number_is_refused_naming_its_option_before_any_work(planet_path, tmp_path, capsys, option, value,
                                                                   expected):
    """argparse's one line names the option, what it must be and what was given; nothing is created."""
    with pytest.raises(SystemExit) as e:
        main(["train", "--images", str(planet_path / "train-jpg"), "--csv", str(planet_path / "train_v2.csv"),
              f"{option}={value}", "--out", str(tmp_path / "run")])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m course_utils train: error: argument {option}: must be {expected}, not {value!r}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["nan", "2", "-0.1", "inf"])
def test_predict_refuses_a_threshold_outside_0_to_1(tmp_path, capsys, value):
    """--thresh is a probability: NaN or 2 would silently print no labels at all."""
    with pytest.raises(SystemExit) as e:
        main(["predict", str(tmp_path / "export.pkl"), "photo.jpg", f"--thresh={value}"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m course_utils predict: error: argument --thresh: must be a number from 0 to 1, not {value!r}")


COLOUR_ARGS = ["--folders", "--arch", "resnet18", "--no-pretrained", "--size", "16", "--bs", "4", "--epochs", "1"]


def test_a_loss_that_turns_nan_is_one_line_and_nothing_is_exported(colour_path, tmp_path, capsys):
    """--lr 1e38: the NaN guard stops stage 1; the user reads one line that says to lower --lr, no traceback."""
    out = tmp_path / "run"
    assert main(["train", "--images", str(colour_path), *COLOUR_ARGS, "--lr", "1e38", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    last = err.rpartition("\r")[2]  # after the progress bar
    assert last.startswith("error: Training stopped in stage 1 of 2, epoch 1/1: the loss became "), err
    assert "Nothing was exported. Try a smaller --lr (or leave --lr out: the LR finder picks one)" in last
    assert "Traceback" not in err and not (out / "export.pkl").exists()


def test_a_loss_that_turns_nan_in_stage_2_keeps_stage_1s_export(colour_path, tmp_path, capsys, monkeypatch):
    """Stage 1 finished and was exported; stage 2 diverges: the message says the stage-1 model is kept, where."""
    from course_utils import train

    def recipe(learn, epochs, lr, after_stage):
        learn.fit_one_cycle(1, 1e-3)
        after_stage(1)
        learn.unfreeze()
        learn.fit_one_cycle(1, 1e38)

    monkeypatch.setattr(train, "train_recipe", recipe)
    out = tmp_path / "run"
    assert main(["train", "--images", str(colour_path), *COLOUR_ARGS, "--out", str(out)]) == 1
    last = capsys.readouterr().err.rpartition("\r")[2]
    assert last.startswith("error: Training stopped in stage 2 of 2, epoch 1/1: the loss became ")
    assert f"The model as stage 1 finished stays exported in {out / 'export.pkl'}." in last
    assert load_learner(out / "export.pkl").data.classes == ["blue", "green", "red"]

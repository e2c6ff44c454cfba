"""The `train` and `predict` commands: `train` checks its output folder, its options and the images before
training, saves after each stage and on Ctrl-C, and refuses a one-class layout, `--size 0` and `--codes` without
`--masks`; a broken image or a bad CSV is one clear line."""
from __future__ import annotations

import pytest
from helpers import csv_file, named_images

from course_utils.__main__ import main
from course_utils.learner import Learner, load_learner

ARGS = ["--arch", "resnet18", "--no-pretrained", "--size", "32", "--bs", "4", "--epochs", "2", "--lr", "1e-2"]


def _train_args(planet_path, out):
    return ["train", "--images", str(planet_path / "train-jpg"), "--csv", str(planet_path / "train_v2.csv"),
            *ARGS, "--out", str(out)]


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if any training starts."""
    def fail(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(Learner, "fit", fail)


def test_an_out_that_is_a_file_is_refused_before_training(planet_path, tmp_path, capsys, no_training):
    (tmp_path / "afile").write_text("x")
    assert main(_train_args(planet_path, tmp_path / "afile")) == 1
    assert "afile is a file" in capsys.readouterr().err


def test_ctrl_c_in_the_second_stage_exports_the_model_and_says_where(planet_path, tmp_path, capsys, monkeypatch):
    real_validate, calls = Learner._validate, []

    def validate_then_interrupt(self, cbs):
        calls.append(1)
        if len(calls) == 3:  # stage 1 has 2 epochs: this is stage 2's first validation
            raise KeyboardInterrupt
        return real_validate(self, cbs)

    monkeypatch.setattr(Learner, "_validate", validate_then_interrupt)  # what fit calls after each epoch
    out = tmp_path / "run"
    assert main(_train_args(planet_path, out)) == 130
    err = capsys.readouterr().err
    assert f"{out / 'export.pkl'}" in err and "predict" in err and "resume" not in err
    learn = load_learner(out / "export.pkl")
    assert learn.data.classes


def test_each_stage_is_exported_as_it_finishes(planet_path, tmp_path, capsys, monkeypatch):
    from course_utils import train
    seen = []
    real = train.train_recipe

    def spy(learn, *args, after_stage, **kwargs):
        def saved_then_seen(stage):
            after_stage(stage)
            seen.append((stage, (tmp_path / "run" / "export.pkl").is_file()))
        return real(learn, *args, after_stage=saved_then_seen, **kwargs)

    monkeypatch.setattr(train, "train_recipe", spy)
    assert main(_train_args(planet_path, tmp_path / "run")) == 0
    assert seen == [(1, True), (2, True)]


def test_folders_on_a_flat_folder_is_refused(planet_path, tmp_path, capsys, no_training):
    code = main(["train", "--images", str(planet_path / "train-jpg"), "--folders", *ARGS, "--out", str(tmp_path / "r")])
    assert code == 1
    err = capsys.readouterr().err
    assert "one class" in err and "one sub-folder per class" in err


@pytest.mark.parametrize("option", ["--size", "--bs", "--epochs"])
def test_a_zero_size_batch_or_epoch_count_is_refused(planet_path, tmp_path, capsys, option):
    args = _train_args(planet_path, tmp_path / "r")
    args[args.index(option) + 1] = "0"
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert "must be a positive whole number" in capsys.readouterr().err


def test_a_truncated_jpeg_is_one_clear_line_in_train_and_predict(planet_path, tmp_path, capsys, no_training):
    import shutil
    images = tmp_path / "imgs"
    shutil.copytree(planet_path / "train-jpg", images)
    bad = images / "train_9.jpg"
    bad.write_bytes(bad.read_bytes()[:bad.stat().st_size // 2])
    args = _train_args(planet_path, tmp_path / "r")
    args[args.index("--images") + 1] = str(images)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train_9.jpg" in err and "truncated" in err


def test_predict_on_a_truncated_jpeg_is_one_clear_line(planet_data, tmp_path, capsys):
    from course_utils.vision import cnn_learner, models
    f = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path).export()
    bad = tmp_path / "half.jpg"
    src = next(planet_data.train_ds.x.path.glob("train-jpg/*.jpg"))
    bad.write_bytes(src.read_bytes()[:src.stat().st_size // 2])
    assert main(["predict", str(f), str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "half.jpg" in err


# --- bad CSVs and options on the command line ---------------------------------------------------------------
def _cli_train(images, *layout):
    return main(["train", "--images", str(images), *layout, "--arch", "resnet18", "--no-pretrained", "--size", "16",
                 "--bs", "4", "--epochs", "1", "--lr", "1e-2", "--out", str(images.parent / "run")])


def test_the_command_line_names_the_line_too(tmp_path, capsys, no_training):
    root = named_images(tmp_path, [f"img_{i}" for i in range(12)])
    csv = csv_file(root, ["image_name,tags"] + [f"img_{i},cloudy,haze" for i in range(12)])
    assert _cli_train(root / "imgs", "--csv", str(csv)) == 1
    assert "line 2, has 3 fields" in capsys.readouterr().err


def test_a_header_only_csv_on_the_command_line_says_so(tmp_path, capsys, no_training):
    root = named_images(tmp_path, [f"img_{i}" for i in range(4)])
    csv = csv_file(root, ["image_name,tags"])
    assert _cli_train(root / "imgs", "--csv", str(csv)) == 1
    assert "labels.csv has a header (image_name, tags) but no rows" in capsys.readouterr().err


@pytest.mark.parametrize("layout", [["--csv", "labels.csv"], ["--folders"]])
def test_codes_without_masks_is_refused_before_any_work(tmp_path, capsys, no_training, layout):
    (tmp_path / "codes.txt").write_text("Sky\nRoad\n")
    layout = [str(tmp_path / a) if a.endswith(".csv") else a for a in layout]  # neither path exists: no work done
    with pytest.raises(SystemExit) as e:
        _cli_train(tmp_path / "imgs", *layout, "--codes", str(tmp_path / "codes.txt"))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m course_utils train" in err and "--codes" in err and "--masks" in err

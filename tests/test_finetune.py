"""`finetune`: the corrections collected by the web app really change the model's answers on those items without
losing what the model knew (on a model trained on the bundled tiny Planet, with five real mistakes corrected), the
scores are printed before and after, a fine-tune that loses more than the tolerance is refused with nothing
written, and neither the old export nor anything else is overwritten."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kinds import make_learner

from course_utils import finetune as ft
from course_utils.__main__ import main
from course_utils.finetune import DEFAULT_TOLERANCE, finetune
from course_utils.learner import load_learner
from course_utils.serve.feedback import FeedbackStore
from course_utils.serve.predictor import Predictor

PLANET_TINY = Path(__file__).resolve().parents[1] / "data" / "planet_tiny"


def wrong_answers(export, items, feedback, kind):
    """Store a correction for each item that differs from the model's answer (as the web app does)."""
    predictor, store = Predictor(export), FeedbackStore(feedback)
    wanted = {}
    for item in items:
        raw = item.encode() if kind == "text" else item.read_bytes()
        pred = predictor.predict(item if kind == "text" else predictor.open_image(raw)[0])
        right = next(c for c in predictor.classes if c != pred["prediction"])
        store.add(raw, ".txt" if kind == "text" else item.suffix, pred["predicted"], right)
        wanted[item if kind == "text" else str(item)] = right
    return wanted


def test_finetune_makes_the_model_give_the_corrected_answers(tmp_path, capsys):
    learn, _ = make_learner("single-label", tmp_path / "run")
    export = learn.export()
    items = sorted((tmp_path / "run" / "data" / "valid").rglob("*.png"))[:3]
    wanted = wrong_answers(export, items, tmp_path / "fb", "single-label")
    before = export.read_bytes()
    res = finetune(export, tmp_path / "fb", tmp_path / "run" / "export-2.pkl", data=tmp_path / "run" / "data",
                   epochs=8, lr=1e-2)
    new = load_learner(tmp_path / "run" / "export-2.pkl")
    assert {f: new.predict(f)[0] for f in wanted} == wanted
    assert res["corrected items"] == (0.0, 1.0)
    assert set(res.scores) == {"corrected items", "original validation"}
    out = capsys.readouterr().out
    assert "3 corrections" in out and "18 original training items mixed in" in out  # all of a small set
    assert "3 of the corrected inputs are also in the original validation set" in out
    assert "corrected items (3)" in out and "original validation (3)" in out  # the 6 less the 3 corrected
    assert export.read_bytes() == before  # the old export is untouched


def test_finetune_learns_corrected_texts(tmp_path):
    learn, _ = make_learner("text", tmp_path / "run")
    export = learn.export()
    texts = ["a wonderful film , i loved it", "awful acting and a boring story"]
    wanted = wrong_answers(export, texts, tmp_path / "fb", "text")
    res = finetune(export, tmp_path / "fb", tmp_path / "new.pkl", epochs=10, lr=1e-2)
    new = load_learner(tmp_path / "new.pkl")
    assert {t: new.predict(t)[0] for t in texts} == wanted
    assert res["corrected items"] == (0.0, 1.0)


def test_finetune_on_the_command_line_never_overwrites_an_export(tmp_path, capsys):
    learn, _ = make_learner("single-label", tmp_path / "run")
    export = learn.export()
    wrong_answers(export, sorted((tmp_path / "run" / "data" / "valid").rglob("*.png"))[:1], tmp_path / "fb",
                  "single-label")
    assert main(["finetune", str(export), "--feedback", str(tmp_path / "fb"), "--out", str(export)]) == 1
    assert "never overwrites" in capsys.readouterr().err
    assert main(["finetune", str(export), "--feedback", str(tmp_path / "fb"), "--epochs", "1",
                 "--out", str(tmp_path / "new.pkl")]) == 0
    assert "exported to" in capsys.readouterr().out and (tmp_path / "new.pkl").is_file()


def test_a_feedback_row_with_an_unknown_class_is_refused_before_training(tmp_path):
    learn, sample = make_learner("single-label", tmp_path / "run")
    export = learn.export()
    FeedbackStore(tmp_path / "fb").add(sample.read_bytes(), ".png", "red", "purple")
    with pytest.raises(ValueError, match=r"feedback.csv, line 2: 'purple' is not one of the model's classes"):
        finetune(export, tmp_path / "fb", tmp_path / "new.pkl")
    assert not (tmp_path / "new.pkl").exists()


def test_finetune_without_feedback_says_where_it_comes_from(tmp_path):
    learn, _ = make_learner("single-label", tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="serve --feedback DIR"):
        finetune(learn.export(), tmp_path / "nothing", tmp_path / "new.pkl")


# --- a real model, real mistakes ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planet_model(tmp_path_factory):
    """A resnet18 trained briefly on the bundled tiny Planet (32 px, from scratch), exported, and the web app's
    feedback folder holding its first five wrong validation predictions corrected to the true tags, as a user of
    the app would. Returns (export, feedback folder, {photo: true tags})."""
    from course_utils.config import seed_everything
    from course_utils.train import own_data, own_learner
    from course_utils.vision import get_transforms

    root = tmp_path_factory.mktemp("planet")
    seed_everything(42)  # the same model, and so the same five mistakes, at every run
    src = own_data(PLANET_TINY / "train-jpg", csv=PLANET_TINY / "train_v2.csv")
    learn = own_learner(src, size=32, bs=32, arch="resnet18", pretrained=False,
                        tfms=get_transforms(flip_vert=True), num_workers=0)
    learn.path = root
    learn.fit_one_cycle(3, 2e-2)
    export = learn.export()
    predictor = Predictor(export)
    store = FeedbackStore(root / "feedback", predictor.export_id)
    truths = {}
    for i, photo in enumerate(src.valid.x.items):
        truth = src.valid.y.decode(src.valid.y[i])
        raw = Path(photo).read_bytes()
        pred = predictor.predict(predictor.open_image(raw)[0])
        if set(pred["prediction"]) != set(truth):
            store.add(raw, ".jpg", pred["predicted"], " ".join(truth))
            truths[str(photo)] = set(truth)
        if len(truths) == 5:
            break
    return export, root / "feedback", truths


def test_finetune_fixes_real_mistakes_and_keeps_what_the_model_knew(planet_model, tmp_path, capsys):
    export, feedback, truths = planet_model
    res = finetune(export, feedback, tmp_path / "new.pkl", data=PLANET_TINY / "train_v2.csv",
                   images=PLANET_TINY / "train-jpg")
    out = capsys.readouterr().out
    assert res.written == tmp_path / "new.pkl"
    new = load_learner(res.written)
    right = sum(set(new.predict(p)[0]) == tags for p, tags in truths.items())
    assert right >= 3, out  # the model now gets most of the corrected photos right ...
    before, after = res["original validation"]
    assert after >= before - DEFAULT_TOLERANCE, out  # ... and is no worse at what it knew
    assert res["corrected items"] == (0.0, right / 5)
    assert "5 corrections" in out and "original validation (91)" in out  # 96 less the 5 corrected
    assert "all tags right" in out and "F2 at 0.2" in out  # the printout names each score
    print(out)


def test_finetune_refuses_to_write_a_model_that_lost_what_it_knew(planet_model, tmp_path, capsys, monkeypatch):
    export, feedback, _ = planet_model
    # every layer at an absurd rate (the last layer alone stays within the tolerance even at lr 1e4: F2 at 0.2
    # forgives a saturated last layer), so that every epoch loses what the model knew
    monkeypatch.setitem(ft.RECIPE, "train", "all")
    new = tmp_path / "new.pkl"
    argv = ["finetune", str(export), "--feedback", str(feedback), "--data", str(PLANET_TINY / "train_v2.csv"),
            "--images", str(PLANET_TINY / "train-jpg"), "--lr", "3", "--epochs", "2", "--out", str(new)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "nothing was written" in out and "--accept-worse" in out
    assert list(tmp_path.iterdir()) == []  # no export, no temporary file
    assert main(argv + ["--accept-worse"]) == 0
    assert "--accept-worse was given" in capsys.readouterr().out and new.is_file()


# --- what is skipped, reported or refused ------------------------------------------------------------------------
def test_a_correction_equal_to_the_prediction_is_skipped(tmp_path, capsys):
    learn, _ = make_learner("single-label", tmp_path / "run")
    export = learn.export()
    photos = sorted((tmp_path / "run" / "data" / "valid").rglob("*.png"))[:2]
    wrong_answers(export, photos[:1], tmp_path / "fb", "single-label")
    predictor = Predictor(export)
    same = predictor.predict(predictor.open_image(photos[1].read_bytes())[0])["predicted"]
    FeedbackStore(tmp_path / "fb").add(photos[1].read_bytes(), ".png", same, same)  # "corrected" to its own answer
    finetune(export, tmp_path / "fb", tmp_path / "new.pkl", epochs=1)
    out = capsys.readouterr().out
    assert f"feedback.csv, line 3: the correction {same!r} is what the model predicted" in out
    assert "1 corrections from" in out


def test_nothing_to_correct_writes_nothing(tmp_path, capsys):
    learn, sample = make_learner("single-label", tmp_path / "run")
    export = learn.export()
    predictor = Predictor(export)
    same = predictor.predict(predictor.open_image(sample.read_bytes())[0])["predicted"]
    FeedbackStore(tmp_path / "fb").add(sample.read_bytes(), ".png", same, same)
    res = finetune(export, tmp_path / "fb", tmp_path / "new.pkl")
    assert res.written is None and not (tmp_path / "new.pkl").exists()
    assert "Nothing to fine-tune on" in capsys.readouterr().out


@pytest.mark.parametrize("option,value,says", [("--lr", "nan", "finite number above 0"), ("--lr", "0", "above 0"),
                                               ("--lr", "inf", "finite"), ("--lr", "-1e-3", "above 0"),
                                               ("--epochs", "0", "whole number"), ("--epochs", "2.5", "whole"),
                                               ("--tolerance", "-0.1", "at least 0")])
def test_bad_numbers_are_one_line_errors(tmp_path, capsys, option, value, says):
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", "model.pkl", "--feedback", "fb", f"{option}={value}", "--out", str(tmp_path / "new.pkl")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m course_utils finetune: error: argument") and says in err[-1]
    with pytest.raises(ValueError, match="finetune: "):
        finetune("model.pkl", "fb", tmp_path / "new.pkl", **{option[2:]: float(value)})


def test_an_out_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch):
    learn, _ = make_learner("single-label", tmp_path / "run")
    export = learn.export()
    monkeypatch.setattr(ft, "load_learner", lambda *a, **k: pytest.fail("trained before checking --out"))
    (tmp_path / "a-file").write_text("x")
    for out in (tmp_path / "missing" / "new.pkl", tmp_path / "a-file" / "new.pkl"):
        with pytest.raises(ValueError, match="does not exist; create it"):
            finetune(export, tmp_path / "fb", out)


def test_weights_that_are_not_finite_are_never_exported(tmp_path, monkeypatch, capsys):
    learn, _ = make_learner("single-label", tmp_path / "run")
    export = learn.export()
    wrong_answers(export, sorted((tmp_path / "run" / "data" / "valid").rglob("*.png"))[:1], tmp_path / "fb",
                  "single-label")

    def nan_weights(learn, *args):
        return [{k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                 for k, v in learn.model.state_dict().items()}]

    monkeypatch.setattr(ft, "_train", nan_weights)
    monkeypatch.setattr(ft, "_train_last", lambda learn, *args: nan_weights(learn))
    res = finetune(export, tmp_path / "fb", tmp_path / "new.pkl", epochs=1)  # no --data: nothing checks validation
    assert res.written is None and not (tmp_path / "new.pkl").exists()
    assert "not all finite" in capsys.readouterr().out

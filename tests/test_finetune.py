"""`finetune`: the corrections collected by the web app really change the model's answers on those items, the
scores are printed before and after, and neither the old export nor anything else is overwritten."""
from __future__ import annotations

import pytest
from kinds import make_learner

from course_utils.__main__ import main
from course_utils.finetune import finetune
from course_utils.learner import load_learner
from course_utils.serve.feedback import FeedbackStore
from course_utils.serve.predictor import Predictor


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
    scores = finetune(export, tmp_path / "fb", tmp_path / "run" / "export-2.pkl", data=tmp_path / "run" / "data",
                      epochs=8, lr=1e-2)
    new = load_learner(tmp_path / "run" / "export-2.pkl")
    assert {f: new.predict(f)[0] for f in wanted} == wanted
    assert scores["corrected items"] == (0.0, 1.0)
    assert set(scores) == {"corrected items", "original validation"}
    out = capsys.readouterr().out
    assert "3 corrections" in out and "12 original training items mixed in" in out
    assert "corrected items (3)" in out and "original validation (6)" in out
    assert export.read_bytes() == before  # the old export is untouched


def test_finetune_learns_corrected_texts(tmp_path):
    learn, _ = make_learner("text", tmp_path / "run")
    export = learn.export()
    texts = ["a wonderful film , i loved it", "awful acting and a boring story"]
    wanted = wrong_answers(export, texts, tmp_path / "fb", "text")
    scores = finetune(export, tmp_path / "fb", tmp_path / "new.pkl", epochs=10, lr=1e-2)
    new = load_learner(tmp_path / "new.pkl")
    assert {t: new.predict(t)[0] for t in texts} == wanted
    assert scores["corrected items"] == (0.0, 1.0)


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

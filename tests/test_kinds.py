"""The task kinds (course_utils/kinds.py): each kind's feedback cell round-trips (written by the app, stored in
feedback.csv, read back by finetune), each kind's JSON answer fields, `kind_of` on every kind of learner, the
label lists' `kind` and `default_metrics()`, and the convention that no other module switches on the kind by
type or class name."""
from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from kinds import KINDS as LEARNER_KINDS
from kinds import make_learner
from PIL import Image

import course_utils.text  # noqa: F401  (registers TextList and LMLabelList among the item lists)
import course_utils.vision.boxes  # noqa: F401
from course_utils import kinds
from course_utils.data_block import CategoryList, FloatList, ItemList, MultiCategoryList
from course_utils.kinds import BadInput, TaskKind, kind_named, kind_of
from course_utils.metrics import accuracy, accuracy_thresh, fbeta, masked_accuracy
from course_utils.serve import predictor
from course_utils.serve.feedback import FeedbackStore, read_feedback

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["cat", "dog", "-bird"]  # "-bird": a formula character, quoted in the CSV and read back as it was


def test_the_kinds_are_the_lessons_five_in_order():
    assert kinds.KINDS == predictor.KINDS == tuple(LEARNER_KINDS) == (
        "multi-label", "single-label", "segmentation", "points", "text")
    assert predictor.BadInput is BadInput
    assert [kind_named(k).name for k in kinds.KINDS] == list(kinds.KINDS)


# --- the feedback cell: written by the app, stored, read back by finetune -------------------------------------
def _through_csv(tmp_path, predicted: str, corrected: str) -> dict:
    """One row stored as the app stores it and read back as finetune reads it."""
    store = FeedbackStore(tmp_path / "fb", export="m.pkl@abc")
    store.add(b"input bytes", ".png", predicted, corrected)
    return read_feedback(tmp_path / "fb")[-1]


@pytest.mark.parametrize("name, given, cell, label", [
    ("single-label", [" dog "], "dog", "dog"),
    ("single-label", ["-bird"], "-bird", "-bird"),
    ("text", ["dog"], "dog", "dog"),
    ("multi-label", ["dog", "-bird", "dog"], "dog -bird", ["dog", "-bird"]),
])
def test_a_class_correction_round_trips(tmp_path, name, given, cell, label):
    kind = kind_named(name)
    written = kind.correction_cell(given, None, None, CLASSES)
    assert written == cell
    row = _through_csv(tmp_path, "cat", written)
    assert row["corrected"] == cell
    assert kind.read_cell(row["corrected"], set(CLASSES), "feedback.csv, line 2") == label
    assert kind.same_answer(cell, row["corrected"]) and not kind.same_answer("cat", row["corrected"])


def test_a_point_correction_round_trips(tmp_path):
    kind = kind_named("points")
    written = kind.correction_cell([], ("12.5", "30"), (40, 56), [])
    assert written == "12.5 30.0"
    predicted = kind.predicted_cell({"points": [[12.4, 30.2]]})
    assert predicted == "12.4 30.2"
    row = _through_csv(tmp_path, predicted, written)
    pts = kind.read_cell(row["corrected"], set(), "feedback.csv, line 2", (40, 56))
    np.testing.assert_allclose(pts, [[12.5, 30.0]])
    assert kind.same_answer(row["predicted"], row["corrected"])  # within half a pixel: corrects nothing
    assert not kind.same_answer("2.0 3.0", row["corrected"])


def test_cells_that_are_no_answer_are_refused():
    with pytest.raises(BadInput, match="'fish' is not one of the model's classes") as e:
        kind_named("single-label").correction_cell(["fish"], None, None, CLASSES)
    assert e.value.status == 422
    with pytest.raises(BadInput, match="one class per text; send one label, not 2"):
        kind_named("text").correction_cell(["cat", "dog"], None, None, CLASSES)
    with pytest.raises(BadInput, match="one class per image"):
        kind_named("single-label").correction_cell(["cat", "dog"], None, None, CLASSES)
    with pytest.raises(BadInput, match="outside the 40x56 photo"):
        kind_named("points").correction_cell([], (40, 3), (40, 56), [])
    with pytest.raises(ValueError, match="line 7: 'fish' is not one of the model's classes"):
        kind_named("multi-label").read_cell("cat fish", set(CLASSES), "line 7")
    with pytest.raises(ValueError, match="line 7: the point '50 3' is not inside its 40x56 photo"):
        kind_named("points").read_cell("50 3", set(), "line 7", (40, 56))


def test_segmentation_collects_no_corrections():
    kind = kind_named("segmentation")
    assert kind.uncollected == "masks"
    with pytest.raises(BadInput, match="Corrections of masks are not collected") as e:
        kind.correction_cell(["Road"], None, None, ["Sky", "Road"])
    assert e.value.status == 422


# --- each kind's answer, on a real learner ----------------------------------------------------------------------
ANSWER_FIELDS = {"multi-label": {"prediction", "labels", "probabilities"},
                 "single-label": {"prediction", "labels", "probabilities"},
                 "text": {"prediction", "labels", "probabilities"},
                 "segmentation": {"prediction", "legend", "image_png", "mask_png"},
                 "points": {"points", "image_size"}}
INFO_FIELDS = {"multi-label": {"thresh"}, "text": {"max_chars"}}


@pytest.fixture(scope="module")
def learners(tmp_path_factory):
    """kind -> (learner, a sample input: a PIL image or a text)."""
    res = {}
    for name in LEARNER_KINDS:
        learn, sample = make_learner(name, tmp_path_factory.mktemp(name.replace("-", "")))
        res[name] = (learn, sample if isinstance(sample, str) else Image.open(sample).convert("RGB"))
    return res


@pytest.mark.parametrize("name", LEARNER_KINDS)
def test_kind_of_maps_each_learner_to_its_kind(learners, name):
    learn = learners[name][0]
    for given in (learn, learn.data, learn.data.train_ds):
        assert kind_of(given) is kind_named(name)
    assert predictor.model_kind(learn) == name
    assert learn.data.train_ds.y.kind == ("single-label" if name == "text" else name)


@pytest.mark.parametrize("name", LEARNER_KINDS)
def test_each_kinds_answer_fields(learners, name):
    learn, item = learners[name]
    kind = kind_of(learn)
    label, _, probs = learn.predict(item)
    answer = kind.answer(learn, item, label, probs)
    assert set(answer) == ANSWER_FIELDS[name]
    assert isinstance(kind.predicted_cell(answer), str)
    assert set(kind.info(learn, 100)) == INFO_FIELDS.get(name, set())
    if name == "points":
        assert answer["image_size"] == [item.height, item.width]
    else:
        assert set(answer["prediction"] if isinstance(answer["prediction"], list) else [answer["prediction"]]) <= \
            set(learn.data.classes)


def test_targets_no_kind_serves_are_named():
    data = SimpleNamespace(x=ItemList([1, 2]), y=FloatList([1.0, 2.0]))
    with pytest.raises(ValueError, match="predicts FloatList targets, which it cannot show"):
        kind_of(data)


def test_a_new_kind_is_one_class():
    class Boxes(TaskKind):
        name = "boxes (test)"
        labels = ("boxes (test)",)

    try:
        assert "boxes (test)" in kinds._REGISTRY
        y = SimpleNamespace(kind="boxes (test)")
        assert isinstance(kind_of(SimpleNamespace(x=ItemList([1]), y=y)), Boxes)
    finally:
        del kinds._REGISTRY["boxes (test)"]


def test_each_label_list_has_its_default_metrics():
    assert CategoryList([0], ["a", "b"]).default_metrics() == [accuracy]
    multi = MultiCategoryList([[0]], ["a", "b"]).default_metrics()
    assert [(m.func, m.keywords) for m in multi] == [(accuracy_thresh, {"thresh": 0.2}), (fbeta, {"thresh": 0.2})]
    from course_utils.vision.points import PointsLabelList
    from course_utils.vision.segmentation import SegmentationLabelList
    (seg,) = SegmentationLabelList([], ["Sky", "Road"]).default_metrics()
    assert (seg.func, seg.keywords) == (masked_accuracy, {"void_code": -1})
    assert PointsLabelList([]).default_metrics() == [] and FloatList([1.0]).default_metrics() == []


# --- the convention: the kind is decided in kinds.py only ---------------------------------------------------------
SCANNED = ["course_utils/serve/*.py", "course_utils/finetune*.py", "course_utils/train.py", "course_utils/interpret.py"]


def _list_classes() -> set[str]:
    """The names of every item and label list class (ItemList and all its subclasses)."""
    found, todo = set(), [ItemList]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo += cls.__subclasses__()
    return found


def _names(node: ast.AST) -> set[str]:
    return {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node)
            if isinstance(n, (ast.Name, ast.Attribute))}


def _switches(tree: ast.AST, lists: set[str]) -> list[tuple[int, str]]:
    """(line, why) of each type switch on a list class, class-name comparison or kind-name comparison."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("isinstance",
                                                                                               "issubclass"):
            hit = _names(node.args[1]) & lists if len(node.args) > 1 else set()
            if hit:
                found.append((node.lineno, f"{node.func.id} on {', '.join(sorted(hit))}"))
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "__name__" for s in sides):
                found.append((node.lineno, "a comparison of a class name"))
            named_kind = any(isinstance(s, (ast.Name, ast.Attribute)) and (getattr(s, "id", None) or s.attr) == "kind"
                             for s in sides)
            literal = any(isinstance(c, ast.Constant) and c.value in kinds.KINDS
                          for s in sides for c in ast.walk(s))
            if named_kind and literal:
                found.append((node.lineno, "a comparison of the kind with a kind's name"))
    return found


def test_no_module_switches_on_the_task_kind():
    lists = _list_classes()
    assert {"TextList", "CategoryList", "SegmentationLabelList", "PointsLabelList"} <= lists
    files = sorted({f for pattern in SCANNED for f in ROOT.glob(pattern)})
    assert len(files) >= 8
    bad = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        lines = text.splitlines()
        bad += [f"{f.relative_to(ROOT)}:{n}: {why}: {lines[n - 1].strip()}"
                for n, why in _switches(ast.parse(text), lists)]
    assert not bad, "decide the task kind in course_utils/kinds.py (kind_of, a TaskKind attribute), not here:\n" + \
        "\n".join(bad)


def test_the_convention_check_finds_each_switch():
    src = ('if isinstance(y, MultiCategoryList): pass\nif type(x).__name__ == "TextList": pass\n'
           'if self.kind == "points": pass\nif isinstance(v, str): pass\nif kind.input == "text": pass\n')
    assert [n for n, _ in _switches(ast.parse(src), _list_classes())] == [1, 2, 3]

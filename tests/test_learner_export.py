"""`Learner.export` and `load_learner` on files someone has edited: every value in an export is checked before it
is used, so a crafted file is refused with the file's name and what to do (never a traceback from inside torch,
a download, or a model that predicts NaN), and exports written before the ModelSpec still load."""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
import torch
from kinds import make_learner

from course_utils.learner import load_learner
from course_utils.persist import BUILDERS, LEARNER_CLASSES, export_digest

vision_models = importlib.import_module("course_utils.vision.models")  # `course_utils.vision.models` is torchvision's
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """kind -> (learner, sample input, its export) for a multi-label CNN, a points CNN and a text classifier."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for kind in ("multi-label", "points", "text"):
        learn, sample = make_learner(kind, root / kind)
        out[kind] = (learn, sample, learn.export())
    return out


def _copy(made, kind, tmp_path) -> Path:
    f = tmp_path / f"{kind}.pkl"
    shutil.copy(made[kind][2], f)
    return f


def _rewrite(f: Path, change, reseal: bool = True) -> Path:
    """Edit the export `f` in place as someone with a text editor for pickles would, recomputing its checksum."""
    state = torch.load(f, weights_only=True)
    change(state)
    state.pop("sha256", None)
    if reseal:
        state["sha256"] = export_digest(state)
    torch.save(state, f)
    return f


def _old_layout(spec: dict) -> dict:
    """The dict spec exports had before ModelSpec: builder and learner as "module:name", the settings beside them,
    a text classifier's outputs as n_class and a language model's as vocab_sz."""
    old = {"builder": BUILDERS[spec["builder"]], **spec["options"]}
    if spec["learner"]:
        old["learner"] = LEARNER_CLASSES[spec["learner"]]
    count = {"text_classifier": "n_class", "language_model": "vocab_sz"}.get(spec["builder"], "n_out")
    old[count] = spec["n_out"]
    return old


def _refused(f: Path, *words: str) -> str:
    """load_learner's refusal of `f`: one ValueError naming the file, each of `words`, and what to do."""
    with pytest.raises(ValueError) as info:
        load_learner(f)
    msg = str(info.value)
    assert str(f) in msg and "export it again" in msg.lower(), msg
    for w in words:
        assert w in msg, msg
    return msg


def _same_predictions(f: Path, made, kind: str) -> None:
    learn, sample, _ = made[kind]
    for got, want in zip(load_learner(f).predict(sample), learn.predict(sample)):
        if isinstance(want, torch.Tensor):
            torch.testing.assert_close(got, want)
        else:
            assert got == want


def test_the_readme_says_the_checksum_catches_damage_not_deliberate_edits():
    """A re-sealed export with reordered classes cannot be told from a real one: the README says what it guards."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "catches damage" in text and "not deliberate edits" in text


def test_class_names_that_are_not_text_are_refused(made, tmp_path):
    """Class names [1, None, 3.5, ...] used to load and come back from predict as numbers and None."""
    f = _rewrite(_copy(made, "multi-label", tmp_path),
                 lambda s: s["data"]["y_state"].update(classes=[1, None, 3.5, "a", "b", "c"]))
    _refused(f, "class name 0 is 1 (of type int)", "class names are text")


@pytest.mark.parametrize("arch", ["resnet_999", "../../x", 7])
def test_an_unknown_architecture_is_refused_naming_the_file(made, tmp_path, arch):
    f = _rewrite(_copy(made, "multi-label", tmp_path), lambda s: s["model_spec"]["options"].update(arch=arch))
    _refused(f, "arch is", "torchvision classification model")


def test_pretrained_in_an_old_spec_is_ignored_and_nothing_is_downloaded(made, tmp_path, monkeypatch):
    """The weights are in the file: `pretrained: True` in an old export must not fetch ImageNet weights."""
    asked = []
    real = vision_models.load_arch
    monkeypatch.setattr(vision_models, "load_arch", lambda name, pretrained: (asked.append(pretrained),
                                                                              real(name, False))[1])
    f = _rewrite(_copy(made, "multi-label", tmp_path),
                 lambda s: s.update(model_spec={**_old_layout(s["model_spec"]), "pretrained": True}))
    _same_predictions(f, made, "multi-label")
    assert asked and not any(asked)


def test_pretrained_in_a_new_spec_is_refused(made, tmp_path):
    f = _rewrite(_copy(made, "multi-label", tmp_path), lambda s: s["model_spec"]["options"].update(pretrained=True))
    _refused(f, "the setting 'pretrained', which a cnn model does not take")


@pytest.mark.parametrize("n_out, words", [(10 ** 10, ["n_out", "from 1 to"]), (True, ["n_out"]),
                                          (3, ["makes 1.", "of shape [3,", "stored for it have the shape [2,"])])
def test_a_points_export_with_another_output_count_is_refused_before_building(made, tmp_path, n_out, words):
    """A points export has no class list to compare with: n_out=10**10 used to try to allocate 20 TB."""
    f = _rewrite(_copy(made, "points", tmp_path), lambda s: s["model_spec"].update(n_out=n_out))
    _refused(f, *words)


@pytest.mark.parametrize("lin_ftrs, words", [([10 ** 9], ["lin_ftrs is [1000000000]", "layer widths"]),
                                             ([4096], ["of shape [4096,"])])
def test_a_head_size_that_does_not_fit_the_weights_is_refused_before_building(made, tmp_path, lin_ftrs, words):
    f = _rewrite(_copy(made, "multi-label", tmp_path), lambda s: s["model_spec"]["options"].update(lin_ftrs=lin_ftrs))
    _refused(f, *words)


def test_bytes_before_an_export_are_refused_as_unreadable(made, tmp_path):
    f = _copy(made, "multi-label", tmp_path)
    f.write_bytes(bytes(700) + f.read_bytes())
    with pytest.raises(ValueError, match=r"Cannot read .*multi-label\.pkl: it is empty, truncated or not a PyTorch"):
        load_learner(f)


def test_an_unknown_key_in_the_label_settings_is_refused_naming_the_file(made, tmp_path):
    """What a newer version's export could look like; it used to be a raw TypeError."""
    f = _rewrite(_copy(made, "multi-label", tmp_path), lambda s: s["data"]["y_state"].update(evil=1))
    _refused(f, "could not be loaded", "'evil'", "(TypeError)")


def test_an_unknown_transform_option_is_refused_naming_the_file(made, tmp_path):
    f = _rewrite(_copy(made, "multi-label", tmp_path), lambda s: s["data"]["tfms"][1].update(nope=1))
    _refused(f, "could not be loaded", "'nope'")


def test_weights_that_are_not_a_dict_of_tensors_are_refused(made, tmp_path):
    f = _rewrite(_copy(made, "multi-label", tmp_path), lambda s: s.update(model=torch.zeros(3)), reseal=False)
    _refused(f, "its model is a Tensor, not a dict of named weight tensors")


@pytest.mark.parametrize("norm", [{"mean": [0.5], "std": [0.0]}, {"mean": [0.5] * 3, "std": [0.2, float("nan"), 0.2]},
                                  {"mean": [0.5], "std": [0.2, 0.2]}, [0.5, 0.2]])
def test_a_normalisation_that_would_predict_nan_is_refused(made, tmp_path, norm):
    f = _rewrite(_copy(made, "multi-label", tmp_path), lambda s: s["data"].update(norm=norm))
    _refused(f, "its normalisation", "every std above 0")


def test_an_image_size_beyond_any_photo_is_refused(made, tmp_path):
    f = _rewrite(_copy(made, "multi-label", tmp_path), lambda s: s["data"]["tfm_kwargs"].update(size=10 ** 6))
    _refused(f, "its image size 1000000 is not 1 to 8192 pixels a side")


def test_nan_weights_are_refused_at_load_naming_how_many_and_the_first(made, tmp_path):
    def poison(s):
        s["model"]["0.0.weight"][0, 0, 0, 0] = float("nan")
        s["model"]["1.8.bias"][0] = float("inf")
    f = _rewrite(_copy(made, "multi-label", tmp_path), poison)
    _refused(f, "2 of the model's", "the first: 0.0.weight", "NaN for every input")


def test_export_refuses_nan_weights_and_writes_nothing(tmp_path):
    learn, _ = make_learner("single-label", tmp_path / "run")
    with torch.no_grad():
        learn.model[1][-1].weight.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"Not exporting to .*export\.pkl: 1 of the model's \d+ weight tensors hold "
                                         r"NaN.*\(the first: 1\.\d+\.weight\).*Nothing was written"):
        learn.export()
    assert not (tmp_path / "run" / "export.pkl").exists()


def test_a_text_classifier_whose_class_list_was_changed_is_refused(made, tmp_path):
    """Its outputs used to be stored as n_class, which the class-count check never read."""
    f = _rewrite(_copy(made, "text", tmp_path), lambda s: s["data"]["y_state"].update(classes=["neg", "pos", "meh"]))
    with pytest.raises(ValueError, match=r"text\.pkl has 3 class names but its model has 2 outputs"):
        load_learner(f)


def test_a_text_classifier_whose_vocabulary_was_changed_is_refused(made, tmp_path):
    f = _rewrite(_copy(made, "text", tmp_path), lambda s: s["data"]["vocab"].append("extra"))
    _refused(f, "vocabulary has", "tokens but its model_spec makes")


@pytest.mark.parametrize("kind", ["multi-label", "points", "text"])
def test_an_export_written_before_the_model_spec_loads_and_predicts_the_same(made, tmp_path, kind):
    f = _rewrite(_copy(made, kind, tmp_path), lambda s: s.update(model_spec=_old_layout(s["model_spec"])))
    assert torch.load(f, weights_only=True)["model_spec"]["builder"].startswith("course_utils.")
    _same_predictions(f, made, kind)


def test_an_old_text_classifier_export_with_the_wrong_class_count_is_refused(made, tmp_path):
    def old_with_three_classes(s):
        s["model_spec"] = _old_layout(s["model_spec"])
        s["data"]["y_state"]["classes"] = ["neg", "pos", "meh"]
    f = _rewrite(_copy(made, "text", tmp_path), old_with_three_classes)
    with pytest.raises(ValueError, match=r"3 class names but its model has 2 outputs"):
        load_learner(f)

"""Write to a temporary file, fsync, rename: `persist.commit_file` and `persist.atomic_write`, the one way the
package gives a written file its final name (downloads, the mirror, Kaggle's files, checksums, saves); and the
export's `ModelSpec`, read from the current layout or an older export's dict and checked before anything is built."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from course_utils import persist
from course_utils.persist import BUILDERS, ModelSpec, atomic_write, commit_file


def test_commit_file_syncs_the_file_before_renaming_it_over_the_old_one(tmp_path, monkeypatch):
    tmp, dest = tmp_path / "f.part", tmp_path / "f"
    tmp.write_bytes(b"new")
    dest.write_bytes(b"old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(persist.os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_ino)),
                                                         real_fsync(fd)))
    monkeypatch.setattr(persist.os, "replace", lambda a, b: (events.append(("replace", os.stat(a).st_ino)),
                                                             real_replace(a, b)))
    ino = tmp.stat().st_ino
    assert commit_file(tmp, dest) == dest
    assert events == [("fsync", ino), ("replace", ino)]
    assert dest.read_bytes() == b"new" and not tmp.exists()


def test_atomic_write_syncs_and_leaves_only_the_file(tmp_path, fsynced):
    f = tmp_path / "sub" / "f.json"
    atomic_write(f, lambda fh: fh.write(b"{}"))
    assert f.read_bytes() == b"{}" and fsynced(f)
    assert [p.name for p in f.parent.iterdir()] == ["f.json"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_atomic_write_gives_the_usual_permissions_or_the_mode_asked_for(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "private", lambda fh: fh.write(b"x"))
        atomic_write(tmp_path / "shared", lambda fh: fh.write(b"x"), mode=0o644)
    finally:
        os.umask(old)
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o644


# --- the export's model spec ----------------------------------------------------------------------------------
CNN_OPTIONS = {"arch": "resnet18", "cut": None, "lin_ftrs": [512], "ps": 0.5, "bn_final": False}
CLAS_OPTIONS = {"vocab_sz": 32, "config": {"emb_sz": 8}, "drop_mult": 0.5, "bptt": 70, "max_len": 1400,
                "lin_ftrs": None, "ps": None}


def test_a_model_spec_round_trips_through_plain_values():
    spec = ModelSpec("language_model", 60, {"config": None, "drop_mult": 0.3}, learner="LanguageLearner")
    state = spec.to_state()
    assert state == {"builder": "language_model", "n_out": 60, "options": {"config": None, "drop_mult": 0.3},
                     "learner": "LanguageLearner"}
    assert ModelSpec.from_state(state, Path("e.pkl")) == spec


@pytest.mark.parametrize("old, want", [
    ({"builder": "course_utils.vision.models:cnn_model", "n_out": 5, "pretrained": True, **CNN_OPTIONS},
     ModelSpec("cnn", 5, CNN_OPTIONS)),
    ({"builder": "course_utils.text.models:text_classifier_model", "n_class": 2, **CLAS_OPTIONS},
     ModelSpec("text_classifier", 2, CLAS_OPTIONS)),
    ({"builder": "course_utils.text.models:language_model", "learner": "course_utils.text.learner:LanguageLearner",
      "vocab_sz": 60, "config": None, "drop_mult": 0.3},
     ModelSpec("language_model", 60, {"config": None, "drop_mult": 0.3}, learner="LanguageLearner"))],
    ids=["cnn", "text_classifier", "language_model"])
def test_the_dict_spec_of_older_exports_is_read_with_one_name_for_the_outputs(old, want):
    """Old exports named a text classifier's outputs n_class, a language model's vocab_sz; `pretrained` is dropped."""
    assert ModelSpec.from_state(old, Path("e.pkl")) == want


@pytest.mark.parametrize("spec, words", [
    ({"builder": "os:system", "n_out": 2}, "the model builder 'os:system' is not one of the course's model builders"),
    ({"builder": ["cnn"], "n_out": 2}, "the model builder ['cnn'] is not one of"),
    ({"builder": "cnn", "n_out": 2, "options": CNN_OPTIONS, "learner": "os:system"},
     "the learner class 'os:system' is not one of the course's learner classes"),
    ({"builder": "cnn", "n_out": 2, "options": {**CNN_OPTIONS, "evil": 1}}, "the setting 'evil'"),
    ({"builder": "cnn", "n_out": 2, "options": {"arch": "resnet18"}}, "lacks the setting 'lin_ftrs'"),
    ({"builder": "cnn", "n_out": 2.0, "options": CNN_OPTIONS}, "n_out (the model's outputs) is 2.0"),
    ({"builder": "cnn", "n_out": 2, "options": {**CNN_OPTIONS, "ps": float("nan")}}, "ps is nan"),
    ({"builder": "text_classifier", "n_out": 2, "options": {**CLAS_OPTIONS, "config": {"emb_sz": 10 ** 9}}},
     "config is {'emb_sz': 1000000000}"),
    ("cnn", "its model_spec is a str")])
def test_a_spec_naming_anything_else_or_holding_odd_values_is_refused_naming_the_file(spec, words):
    with pytest.raises(ValueError) as info:
        ModelSpec.from_state(spec, Path("crafted.pkl"))
    assert str(info.value).startswith("crafted.pkl: ") and words in str(info.value), str(info.value)


def test_the_builder_table_is_the_allowlist_and_every_entry_is_a_function():
    assert set(BUILDERS) == {"cnn", "unet", "language_model", "text_classifier"}
    for key in BUILDERS:
        assert callable(ModelSpec(key, 2, {}).builder_function())
    assert ModelSpec("language_model", 2, {}, learner="LanguageLearner").learner_class().__name__ == "LanguageLearner"

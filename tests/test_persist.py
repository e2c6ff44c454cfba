"""Write to a temporary file, fsync, rename: `persist.commit_file` and `persist.atomic_write`, the one way the
package gives a written file its final name (downloads, the mirror, Kaggle's files, checksums, saves); and the
export's `ModelSpec`, read from the current layout or an older export's dict and checked before anything is built."""
from __future__ import annotations

import errno
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers import bn_model, colour_databunch

from course_utils import persist
from course_utils.learner import Learner, load_learner, safe_load
from course_utils.persist import BUILDERS, ModelSpec, atomic_write, commit_file
from course_utils.vision import cnn_learner, models


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


# --- the classes are saved with the weights -----------------------------------------------------------------
def test_loading_weights_saved_for_other_classes_warns(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = Learner(colour_databunch(tmp_path / "one", ("a", "b", "c")), bn_model(3), path=tmp_path)
    first.save("stage-1")
    second = Learner(colour_databunch(tmp_path / "two", ("a", "b", "d")), bn_model(3), path=tmp_path)
    with pytest.warns(UserWarning, match=r"saved for the classes \['a', 'b', 'c'\].*\['a', 'b', 'd'\]"):
        second.load("stage-1")


# --- a full disk, a folder that is a file -------------------------------------------------------------------
class _FullDisk:
    """A file object on a disk that fills up after `room` bytes."""
    def __init__(self, fh, room):
        self.fh, self.room = fh, room

    def write(self, b):
        if self.room < len(b):
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(b)
        return self.fh.write(b)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_saving_to_a_full_disk_says_so_and_keeps_the_old_file(tmp_path, monkeypatch):
    import course_utils.persist as persist
    data = colour_databunch(tmp_path)
    learn = Learner(data, bn_model(data.c), path=tmp_path)
    f = learn.save("stage-1")
    before = f.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(persist.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode), room=1000))
    with pytest.raises(OSError, match=r"Could not write .*stage-1\.pth.*disk is full.*kept as it was"):
        learn.save("stage-1")
    assert f.read_bytes() == before
    assert [p.name for p in f.parent.iterdir()] == ["stage-1.pth"], "no temporary file is left behind"


def test_saving_into_a_folder_that_is_a_file_says_so(tmp_path):
    data = colour_databunch(tmp_path)
    (tmp_path / "models").write_text("not a folder")
    learn = Learner(data, bn_model(data.c), path=tmp_path)
    with pytest.raises(OSError, match=r"Could not write .*models.*is a file"):
        learn.save("stage-1")


# --- exports carry their integrity --------------------------------------------------------------------------
@pytest.fixture
def exported(planet_data, tmp_path):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path)
    return learn.export(), planet_data


def _rewrite(f, change, reseal=True):
    from course_utils.persist import export_digest
    state = torch.load(f, weights_only=True)
    change(state)
    if reseal:
        state["sha256"] = export_digest(state)
    torch.save(state, f)


def test_bit_flips_inside_an_export_are_refused(exported):
    f, _ = exported
    raw = bytearray(f.read_bytes())
    at = int(len(raw) * 0.6)  # inside the weights
    raw[at:at + 4096] = bytes(b ^ 0xFF for b in raw[at:at + 4096])
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"export\.pkl is damaged.*checksum"):
        load_learner(f)


def test_an_export_naming_another_function_as_builder_is_refused(exported, monkeypatch):
    import course_utils.__main__ as cli
    calls = []
    monkeypatch.setattr(cli, "main", lambda *a, **k: calls.append(a))
    f, _ = exported
    _rewrite(f, lambda s: s["model_spec"].update(builder="course_utils.__main__:main"))
    with pytest.raises(ValueError, match=r"'course_utils.__main__:main' is not one of the course's model builders"):
        load_learner(f)
    assert calls == [], "nothing named by the file was run"


@pytest.mark.parametrize("n", [2, 7])
def test_an_export_whose_classes_do_not_fit_the_model_is_refused(exported, n):
    f, data = exported
    _rewrite(f, lambda s: s["data"]["y_state"].update(classes=[f"c{i}" for i in range(n)]))
    with pytest.raises(ValueError, match=rf"{n} class names but its model has {data.c} outputs"):
        load_learner(f)


def test_an_export_from_an_older_version_gets_a_plain_message(exported):
    f, _ = exported
    _rewrite(f, lambda s: (s["data"].pop("tfm_kwargs"), s.pop("sha256")), reseal=False)
    with pytest.raises(ValueError, match=r"another version of course_utils.*'tfm_kwargs'.*export it again"):
        load_learner(f)


def test_an_export_with_the_older_transform_options_layout_loads_the_same(exported):
    """Exports once stored only the options `transform` was given, as a plain dict (the key is still `tfm_kwargs`)."""
    f, data = exported
    new = load_learner(f)
    _rewrite(f, lambda s: s["data"].update(tfm_kwargs={"size": 32}))
    old = load_learner(f)
    assert old.data.valid_ds.tfm_cfg == new.data.valid_ds.tfm_cfg == data.valid_ds.tfm_cfg
    assert old.data.train_ds.tfm_cfg == data.train_ds.tfm_cfg
    img = next(data.train_ds.x.path.glob("train-jpg/*.jpg"))
    assert torch.equal(old.data.one_item(img), data.one_item(img))


def test_an_export_with_an_unknown_transform_option_is_refused_plainly(exported):
    f, _ = exported
    _rewrite(f, lambda s: s["data"]["tfm_kwargs"].update(zoom=2))
    with pytest.raises(ValueError, match=r"transform options hold 'zoom'.*another version.*Export the model again"):
        load_learner(f)


def test_an_export_without_a_checksum_loads_with_a_warning(exported):
    f, data = exported
    _rewrite(f, lambda s: s.pop("sha256"), reseal=False)
    with pytest.warns(UserWarning, match="no checksum"):
        learn = load_learner(f)
    assert learn.data.classes == data.classes


def test_load_weights_names_the_file_the_first_mismatch_and_the_fix(tmp_path):
    from course_utils.persist import load_weights

    f = tmp_path / "w.pth"
    saved = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).state_dict()
    with pytest.raises(RuntimeError) as e:
        load_weights(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5)), saved, f, "Use the same head.", what="head")
    msg = str(e.value)
    assert msg.startswith(f"The head in {f} do not fit this model. Use the same head.")
    assert "size mismatch for 1.weight" in msg and msg.count("size mismatch") == 1


# --- checkpoints and exports that cannot be loaded ----------------------------------------------------------
class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this would run",))


def test_a_checkpoint_holding_code_is_refused_with_an_explanation(tiny_learner, tmp_path):
    tiny_learner.path = tmp_path
    f = tmp_path / "models" / "evil.pth"
    f.parent.mkdir()
    torch.save({"model": _RunsCode()}, f)
    with pytest.raises(pickle.UnpicklingError, match="Refusing to load .*evil.pth.*running code"):
        tiny_learner.load("evil")


def test_an_export_holding_code_is_refused(tmp_path):
    f = tmp_path / "export.pkl"
    with open(f, "wb") as fh:
        pickle.dump(_RunsCode(), fh, protocol=2)  # an old-style plain pickle
    with pytest.raises(pickle.UnpicklingError, match="not written by learn.save/export"):
        load_learner(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a model at all", "truncated"])
def test_a_damaged_checkpoint_gets_a_plain_message(tiny_learner, tmp_path, content):
    tiny_learner.path = tmp_path
    f = tiny_learner.save("good")
    if content == "truncated":
        content = f.read_bytes()[: f.stat().st_size // 2]
    f.write_bytes(content)
    with pytest.raises(ValueError, match="Cannot read .*good.pth: it is empty, truncated or not a PyTorch file"):
        tiny_learner.load("good")


def test_safe_load_returns_what_save_wrote(tmp_path):
    torch.save({"model": {"w": torch.ones(2)}, "n": 3}, tmp_path / "ok.pth")
    state = safe_load(tmp_path / "ok.pth")
    assert state["n"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))


def test_an_export_loads_on_a_cpu_only_machine(planet_data, tmp_path, monkeypatch):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path)
    # Save as a GPU run would: every tensor tagged "cuda:0" (torch has no public way to unregister a location
    # tagger, hence the patched registry). Loading such a file without mapping it to the CPU fails here.
    registry = [(1, lambda storage: "cuda:0", lambda storage, location: None),
                *torch.serialization._package_registry]
    monkeypatch.setattr(torch.serialization, "_package_registry", registry)
    f = learn.export()
    monkeypatch.setattr(torch.serialization, "_package_registry", registry[1:])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(f, weights_only=True)  # the file really names a GPU
    loaded = load_learner(f)
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())


def test_loading_weights_of_another_architecture_says_so(tiny_learner, tmp_path):
    tiny_learner.path = tmp_path
    tiny_learner.save("small")
    other = Learner(tiny_learner.data, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 8),
                                                     nn.Linear(8, tiny_learner.data.c)), path=tmp_path)
    with pytest.raises(RuntimeError, match="another architecture or another number of classes"):
        other.load("small")

"""Round two of the hostile-input trial (issue 16), training and saved files: the NaN guard restores
BatchNorm statistics too, weights remember their classes, a full disk is reported plainly, and an export
carries its own integrity (checksum, known builders, class count, older versions)."""
from __future__ import annotations

import errno
import os

import pytest
import torch
import torch.nn as nn
from PIL import Image

from course_utils.callbacks import Callback
from course_utils.guard import NonFiniteLossError
from course_utils.learner import Learner, load_learner
from course_utils.vision import ImageList, cnn_learner, models

CPU = torch.device("cpu")


def _colour_data(root, classes=("a", "b", "c")):
    """Three solid colours named by `classes`, 4 images each, one validation image per class."""
    for k, name in enumerate(classes):
        for i in range(4):
            colour = [0, 0, 0]
            colour[k] = 200 + i
            Image.new("RGB", (8, 8), tuple(colour)).save(root / f"{name}_{i}.png")
    return (ImageList.from_folder(root).split_by_valid_func(lambda p: p.stem.endswith("_3"))
            .label_from_func(lambda p: p.stem.split("_")[0]).transform(size=8)
            .databunch(bs=3, num_workers=0, device=CPU))


def _bn_model(n_out):
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, n_out))


# --- R2: the NaN guard and BatchNorm statistics -------------------------------------------------------------
class _InfStats(Callback):
    """After one step, the BatchNorm running statistics overflow (as at lr=1e4) while the loss stays finite."""
    def __init__(self, at_batch):
        self.at_batch, self.n = at_batch, 0

    def after_step(self):
        if self.n == self.at_batch:
            bn = self.learn.model[1]
            bn.running_mean.fill_(float("inf"))
            bn.running_var.fill_(float("inf"))
        self.n += 1


class _NaNLoss(Callback):
    def __init__(self, at_batch):
        self.at_batch, self.n = at_batch, 0

    def after_loss(self):
        if self.learn.training:
            if self.n == self.at_batch:
                self.learn.loss = self.learn.loss * float("nan")
            self.n += 1


def test_the_nan_guard_restores_finite_batchnorm_statistics(tmp_path):
    data = _colour_data(tmp_path)
    learn = Learner(data, _bn_model(data.c))
    with pytest.raises(NonFiniteLossError, match="back at its last weights"):
        learn.fit(1, 1e-2, callbacks=[_InfStats(at_batch=0), _NaNLoss(at_batch=2)])
    assert all(torch.isfinite(b).all() for b in learn.model.buffers())
    _, _, probs = learn.predict(tmp_path / "a_0.png")
    assert torch.isfinite(probs).all()


def test_a_huge_learning_rate_leaves_a_usable_model(planet_data, tmp_path):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path)
    with pytest.raises(NonFiniteLossError):
        learn.fit_one_cycle(3, 1e4)
    assert all(torch.isfinite(t).all() for t in learn.model.state_dict().values())
    _, _, probs = learn.predict(next(planet_data.train_ds.x.path.glob("train-jpg/*.jpg")))
    assert torch.isfinite(probs).all()


# --- C15: the classes are saved with the weights ---------------------------------------------------------------
def test_loading_weights_saved_for_other_classes_warns(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = Learner(_colour_data(tmp_path / "one", ("a", "b", "c")), _bn_model(3), path=tmp_path)
    first.save("stage-1")
    second = Learner(_colour_data(tmp_path / "two", ("a", "b", "d")), _bn_model(3), path=tmp_path)
    with pytest.warns(UserWarning, match=r"saved for the classes \['a', 'b', 'c'\].*\['a', 'b', 'd'\]"):
        second.load("stage-1")


# --- R5, R8: a full disk, a folder that is a file -----------------------------------------------------------
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
    data = _colour_data(tmp_path)
    learn = Learner(data, _bn_model(data.c), path=tmp_path)
    f = learn.save("stage-1")
    before = f.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(persist.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode), room=1000))
    with pytest.raises(OSError, match=r"Could not write .*stage-1\.pth.*disk is full.*kept as it was"):
        learn.save("stage-1")
    assert f.read_bytes() == before
    assert [p.name for p in f.parent.iterdir()] == ["stage-1.pth"], "no temporary file is left behind"


def test_saving_into_a_folder_that_is_a_file_says_so(tmp_path):
    data = _colour_data(tmp_path)
    (tmp_path / "models").write_text("not a folder")
    learn = Learner(data, _bn_model(data.c), path=tmp_path)
    with pytest.raises(OSError, match=r"Could not write .*models.*is a file"):
        learn.save("stage-1")


# --- R12, R14, R15, R16: exports carry their integrity ----------------------------------------------------------
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

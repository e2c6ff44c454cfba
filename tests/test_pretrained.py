"""Pretrained ImageNet weights come through torchvision's weights API and torch's hub cache; nothing downloads here."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torch.hub
import torch.nn as nn
import torchvision

from course_utils.vision import cnn_learner, models

RESNET18_FILE = Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, and no way to reach the network."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


def test_pretrained_cnn_learner_loads_the_cached_imagenet_weights_and_freezes_the_body(planet_data, torch_home):
    torch.manual_seed(7)
    reference = torchvision.models.resnet18()  # random weights, standing in for ImageNet's
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / RESNET18_FILE)

    learn = cnn_learner(planet_data, models.resnet18, pretrained=True)

    body = learn.model[0]
    ref_body = nn.Sequential(*list(reference.children())[:-2])
    body_state, ref_state = body.state_dict(), ref_body.state_dict()
    assert len(body_state) == len(ref_state)
    for (k, v), (rk, rv) in zip(body_state.items(), ref_state.items()):
        assert torch.equal(v, rv), f"body weight {k} is not the cached {rk}"
    # frozen: the body trains only its BatchNorm layers, the head trains entirely
    for m in body.modules():
        for p in m.parameters(recurse=False):
            assert p.requires_grad == isinstance(m, nn.BatchNorm2d)
    assert all(p.requires_grad for p in learn.model[1].parameters())


def test_pretrained_head_is_new_and_sized_for_the_data(planet_data, torch_home):
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cache / RESNET18_FILE)
    learn = cnn_learner(planet_data, models.resnet18, pretrained=True)
    x, _ = next(iter(planet_data.valid_dl))
    learn.model.eval()
    with torch.no_grad():
        assert learn.model(x).shape == (len(x), planet_data.c)


@pytest.mark.parametrize("error", [urllib.error.URLError("no route to host"), OSError("network unreachable")])
def test_failed_download_raises_runtime_error_saying_how_to_fix_it(planet_data, torch_home, monkeypatch, error):
    calls = []

    def failing_download(url, dst, *args, **kwargs):
        calls.append(url)
        raise error

    monkeypatch.setattr(torch.hub, "download_url_to_file", failing_download)
    with pytest.raises(RuntimeError) as info:
        cnn_learner(planet_data, models.resnet18, pretrained=True)
    msg = str(info.value)
    assert calls == [torchvision.models.ResNet18_Weights.DEFAULT.url]
    assert "pretrained=False" in msg
    assert RESNET18_FILE in msg and str(torch_home / "hub" / "checkpoints") in msg
    assert not (torch_home / "hub" / "checkpoints" / RESNET18_FILE).exists()


def test_pretrained_false_never_touches_the_cache(planet_data, torch_home):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False)
    assert all(p.requires_grad for p in learn.model.parameters())
    assert not (torch_home / "hub" / "checkpoints").exists()


def test_unknown_architecture_raises_value_error(planet_data):
    with pytest.raises(ValueError, match="torchvision"):
        cnn_learner(planet_data, "resnet_does_not_exist", pretrained=False)


def test_exported_pretrained_learner_loads_without_the_cache_or_the_network(planet_data, torch_home, tmp_path):
    """load_learner rebuilds the architecture empty and fills it from export.pkl: no ImageNet weights needed."""
    from course_utils.learner import load_learner

    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cache / RESNET18_FILE)
    learn = cnn_learner(planet_data, models.resnet18, pretrained=True, path=tmp_path / "run")
    learn.export()
    (cache / RESNET18_FILE).unlink()  # and torch_home's fixture makes any download attempt fail
    loaded = load_learner(tmp_path / "run")
    expected, got = learn.model.state_dict(), loaded.model.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def _truncated_checkpoint() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(torchvision.models.resnet18().state_dict(), buf)
    return buf.getvalue()[:50_000]


@pytest.mark.parametrize("kind", ["html-page", "truncated"])
def test_corrupt_cached_weights_raise_runtime_error_naming_the_file_to_delete(planet_data, torch_home, kind):
    cached = torch_home / "hub" / "checkpoints" / RESNET18_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"<html><body>Access denied</body></html>" if kind == "html-page" else _truncated_checkpoint())
    with pytest.raises(RuntimeError) as info:
        cnn_learner(planet_data, models.resnet18, pretrained=True)
    msg = str(info.value)
    assert "pretrained=False" in msg
    assert str(cached) in msg

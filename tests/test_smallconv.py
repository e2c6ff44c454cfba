"""smallconv: the small-map weight gradient gives the gradients nn.Conv2d gives, and only steps in where it pays."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from course_utils import smallconv
from course_utils.smallconv import SmallMapConv2d, use_small_map_convs


def _pair(**kwargs):
    torch.manual_seed(0)
    plain = nn.Conv2d(**kwargs)
    fast = nn.Conv2d(**kwargs)
    fast.load_state_dict(plain.state_dict())
    assert use_small_map_convs(fast) == 1
    return plain, fast


def _grads(conv, x):
    x = x.clone().requires_grad_(True)
    out = conv(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad] + [p.grad for p in conv.parameters()]
    conv.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("kw, hw", [
    (dict(in_channels=16, out_channels=8, kernel_size=3, padding=1, bias=False), (1, 1)),
    (dict(in_channels=16, out_channels=8, kernel_size=3, padding=1), (2, 2)),
    (dict(in_channels=8, out_channels=12, kernel_size=3, padding=1, stride=2), (3, 4)),
    (dict(in_channels=8, out_channels=12, kernel_size=1, stride=2, bias=False), (4, 4)),
    (dict(in_channels=6, out_channels=4, kernel_size=(3, 2), padding=(2, 1), dilation=2), (2, 1)),
])
def test_the_gradients_are_those_of_conv2d_on_small_maps(kw, hw, monkeypatch):
    calls = []
    real = smallconv._SmallMapConv.apply
    monkeypatch.setattr(smallconv._SmallMapConv, "apply", lambda *a: calls.append(1) or real(*a))
    plain, fast = _pair(**kw)
    x = torch.randn(5, kw["in_channels"], *hw)
    (out_a, grads_a), (out_b, grads_b) = _grads(plain, x), _grads(fast, x)
    assert calls, "the small-map path was not taken"
    assert torch.equal(out_a, out_b)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_it_steps_aside_on_larger_maps_in_inference_and_under_autocast(monkeypatch):
    calls = []
    real = smallconv._SmallMapConv.apply
    monkeypatch.setattr(smallconv._SmallMapConv, "apply", lambda *a: calls.append(1) or real(*a))
    _, fast = _pair(in_channels=4, out_channels=4, kernel_size=3, padding=1)
    fast(torch.randn(2, 4, 3, 3)).sum().backward()  # 9 output pixels: over SMALL_MAP
    with torch.no_grad():
        fast(torch.randn(2, 4, 1, 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast(torch.randn(2, 4, 1, 1)).float().sum().backward()
    fast.weight.requires_grad_(False)  # a frozen layer: no weight gradient to speed up
    fast(torch.randn(2, 4, 1, 1, requires_grad=True)).sum().backward()
    assert calls == []
    fast.weight.requires_grad_(True)
    fast(torch.randn(2, 4, 1, 1)).sum().backward()
    assert calls == [1]


def test_a_model_keeps_its_parameters_names_and_printout(tmp_path):
    import torchvision
    model = torchvision.models.resnet18(num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    printed = repr(model)
    assert use_small_map_convs(model) == 20  # every conv of a resnet18
    assert isinstance(model.conv1, SmallMapConv2d)
    others = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 3, padding="same"),
                           nn.Conv2d(4, 4, 3, padding_mode="reflect"))
    assert use_small_map_convs(others) == 0 and all(type(m) is nn.Conv2d for m in others)
    assert repr(model).startswith(printed[:-2]) and "SmallMapConv2d" not in repr(model)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    fresh = torchvision.models.resnet18(num_classes=3)
    fresh.load_state_dict(torch.load(tmp_path / "w.pth"))


def test_a_learners_model_gets_the_same_gradients_as_with_plain_convs(colour_data):
    """The learner gives its model the small-map weight gradient; a batch's gradients are those of plain convs.
    (Whole epochs are not compared: on 16-px images a BatchNorm over a batch of 1x1 maps turns float rounding
    into visibly different weights within a few steps, whichever gradient is the exact one.)"""
    import copy

    from course_utils.vision import cnn_learner
    torch.manual_seed(0)
    learn = cnn_learner(colour_data, "resnet18", pretrained=False, metrics=[])
    learn.unfreeze()
    fast = learn.model
    assert sum(isinstance(m, SmallMapConv2d) for m in fast.modules()) == 20
    plain = copy.deepcopy(fast)
    for m in plain.modules():
        if isinstance(m, SmallMapConv2d):
            m.__class__ = nn.Conv2d
    x, y = learn.data.one_batch()
    grads = []
    for model in (fast, plain):
        model.train()
        torch.manual_seed(1)  # the head's dropout draws the same masks
        learn.loss_func(model(x), y).backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
    for k, g in grads[1].items():
        torch.testing.assert_close(grads[0][k], g, rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_compare_times_both_gradients_and_checks_they_agree():
    rows = smallconv.compare(bs=2, repeats=1)
    assert [r["out"] for r in rows] == ["1x1", "1x1", "2x2", "2x2", "4x4", "8x8"]
    assert all(r["onednn_ms"] > 0 and r["matmul_ms"] > 0 for r in rows)

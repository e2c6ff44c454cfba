"""Mixed precision on the CPU: bf16 autocast with float32 master weights; fp16 falls back to bf16."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from conftest import tiny_model

from course_utils.amp import MixedPrecision
from course_utils.learner import Learner


def _amp_callbacks(learn):
    return [c for c in learn.callbacks if isinstance(c, MixedPrecision)]


def test_to_bf16_trains_on_cpu_with_float32_weights(colour_data):
    learn = Learner(colour_data, tiny_model(colour_data.c)).to_bf16()
    assert [c.dtype for c in _amp_callbacks(learn)] == [torch.bfloat16]
    before = learn.validate()["valid_loss"]
    learn.fit(4, 0.1, progress=False)
    assert learn.validate()["valid_loss"] < 0.7 * before
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    assert learn.amp_dtype is None  # autocast is only on during fit


def test_to_bf16_runs_the_forward_pass_in_bfloat16(colour_data):
    learn = Learner(colour_data, tiny_model(colour_data.c)).to_bf16()
    seen = []
    linear = [m for m in learn.model.modules() if isinstance(m, nn.Linear)][0]
    linear.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    learn.fit(1, 1e-2, progress=False)
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    learn.to_fp32().fit(1, 1e-2, progress=False)
    assert seen and set(seen) == {torch.float32}


def test_to_fp32_removes_the_mixed_precision_callback(tiny_learner):
    tiny_learner.to_bf16()
    assert len(_amp_callbacks(tiny_learner)) == 1
    assert tiny_learner.to_fp32() is tiny_learner
    assert _amp_callbacks(tiny_learner) == []
    assert tiny_learner.recorder in tiny_learner.callbacks


def test_switching_precision_twice_keeps_a_single_callback(tiny_learner):
    tiny_learner.to_bf16().to_bf16()
    assert len(_amp_callbacks(tiny_learner)) == 1


def test_to_fp16_on_cpu_warns_and_falls_back_to_bf16(tiny_learner):
    with pytest.warns(UserWarning, match="bf16"):
        res = tiny_learner.to_fp16()
    assert res is tiny_learner
    assert [c.dtype for c in _amp_callbacks(tiny_learner)] == [torch.bfloat16]
    tiny_learner.fit(1, 1e-2, progress=False)
    assert all(torch.isfinite(torch.tensor(tiny_learner.recorder.losses)))


def test_to_channels_last_changes_the_memory_order_not_the_results(colour_data):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, colour_data.c))
    learn = Learner(colour_data, model)
    xb, _ = colour_data.one_batch()
    before = learn.model.eval()(xb)
    conv = learn.model[0]
    learn.to_channels_last()
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    torch.testing.assert_close(learn.model(xb), before, atol=1e-5, rtol=1e-4)
    learn.to_channels_last(False)
    assert conv.weight.is_contiguous()

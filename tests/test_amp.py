"""Mixed precision: bf16 autocast with float32 master weights, and which precision each device gets."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from helpers import tiny_model

from course_utils.amp import MixedPrecision, choose_precision, cpu_capability, cpu_has_native_bf16
from course_utils.learner import Learner


def _amp_callbacks(learn):
    return [c for c in learn.callbacks if isinstance(c, MixedPrecision)]


def test_to_bf16_trains_on_cpu_with_float32_weights(colour_data):
    learn = Learner(colour_data, tiny_model(colour_data.c)).to_bf16(force=True)
    assert [c.dtype for c in _amp_callbacks(learn)] == [torch.bfloat16]
    before = learn.validate()["valid_loss"]
    learn.fit(4, 0.1, progress=False)
    assert learn.validate()["valid_loss"] < 0.7 * before
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    assert learn.amp_dtype is None  # autocast is only on during fit


def test_to_bf16_runs_the_forward_pass_in_bfloat16(colour_data):
    learn = Learner(colour_data, tiny_model(colour_data.c)).to_bf16(force=True)
    seen = []
    linear = [m for m in learn.model.modules() if isinstance(m, nn.Linear)][0]
    linear.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    learn.fit(1, 1e-2, progress=False)
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    learn.to_fp32().fit(1, 1e-2, progress=False)
    assert seen and set(seen) == {torch.float32}


def test_to_fp32_removes_the_mixed_precision_callback(tiny_learner):
    tiny_learner.to_bf16(force=True)
    assert len(_amp_callbacks(tiny_learner)) == 1
    assert tiny_learner.to_fp32() is tiny_learner
    assert _amp_callbacks(tiny_learner) == []
    assert tiny_learner.recorder in tiny_learner.callbacks


def test_switching_precision_twice_keeps_a_single_callback(tiny_learner):
    tiny_learner.to_bf16(force=True).to_bf16(force=True)
    assert len(_amp_callbacks(tiny_learner)) == 1


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a CPU with (`cpu(True)`) or without (`cpu(False)`) native bf16, by torch's own checks."""
    def pretend(native: bool, isa: str = "AVX512"):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: isa)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    return pretend


def test_a_cpu_with_native_bf16_gets_bf16(cpu):
    cpu(True)
    assert cpu_has_native_bf16()
    for wanted in (torch.float16, torch.bfloat16):
        choice = choose_precision("cpu", wanted)
        assert choice.dtype == torch.bfloat16 and "native bf16" in choice.reason


def test_a_cpu_without_native_bf16_stays_in_fp32_and_says_why(cpu):
    cpu(False)
    choice = choose_precision("cpu", torch.float16)
    assert choice.dtype is None
    assert "no native bf16" in choice.reason and "fp32" in choice.reason


def test_an_avx2_kernel_level_means_no_native_bf16_even_if_onednn_says_yes(cpu):
    cpu(True, isa="AVX2")  # e.g. ATEN_CPU_CAPABILITY=avx2 on an AMX machine
    assert not cpu_has_native_bf16()
    assert choose_precision("cpu", torch.bfloat16).dtype is None


def test_force_keeps_bf16_on_a_cpu_without_it(cpu):
    cpu(False)
    assert choose_precision("cpu", torch.bfloat16, force=True).dtype == torch.bfloat16


def test_cuda_gets_fp16_and_bf16_only_where_the_gpu_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision("cuda", torch.float16).dtype == torch.float16
    assert choose_precision("cuda", torch.bfloat16).dtype == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    choice = choose_precision("cuda", torch.bfloat16)
    assert choice.dtype == torch.float16 and "no bf16" in choice.reason


def test_mps_gets_fp16_where_torch_can_autocast_there(monkeypatch):
    monkeypatch.setattr("course_utils.amp._mps_autocast_available", lambda: True)
    assert choose_precision("mps", torch.float16).dtype == torch.float16
    monkeypatch.setattr("course_utils.amp._mps_autocast_available", lambda: False)
    choice = choose_precision("mps", torch.float16)
    assert choice.dtype is None and "fp32" in choice.reason


def test_to_fp16_says_its_choice_once(cpu, tiny_learner, capsys):
    cpu(False)
    assert tiny_learner.to_fp16() is tiny_learner
    tiny_learner.to_fp16()
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["to_fp16(): this CPU has no native bf16, so training stays in fp32 "
                     "(bf16 would be many times slower here)"]
    assert _amp_callbacks(tiny_learner) == []


def test_the_fp32_fallback_trains_exactly_like_fp32(cpu, colour_data):
    cpu(False)
    results = []
    for half in (False, True):
        torch.manual_seed(0)
        learn = Learner(colour_data, tiny_model(colour_data.c))
        if half:
            learn.to_fp16()
        torch.manual_seed(1)
        learn.fit(2, 0.1, progress=False)
        results.append((learn.recorder.losses, [p.detach().clone() for p in learn.model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_cpu_capability_reports_level_bf16_and_threads():
    cap = cpu_capability()
    assert cap["isa"] == torch.backends.cpu.get_cpu_capability()
    assert cap["native_bf16"] == cpu_has_native_bf16() and cap["threads"] == torch.get_num_threads()


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

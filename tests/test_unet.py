"""The dynamic U-Net (lesson 3): skips found where the encoder halves, output at the input's size, layer groups,
pretrained loading and freezing, and mixed precision (bf16 on the CPU, fp16 on CUDA)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision

from course_utils.amp import MixedPrecision
from course_utils.vision import models, unet_learner
from course_utils.vision.models import create_body
from course_utils.vision.unet import DynamicUnet, PixelShuffleICNR, encoder_shapes, skip_indices

RESNET18_FILE = Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name


@pytest.fixture(scope="module")
def unet18() -> DynamicUnet:
    """A U-Net over a randomly initialised resnet18, 5 classes, in eval mode (shared: tests must not train it)."""
    torch.manual_seed(0)
    return DynamicUnet(create_body(torchvision.models.resnet18()), n_classes=5).eval()


def test_skips_are_the_last_layers_before_each_halving_of_the_resolution(unet18):
    shapes = encoder_shapes(unet18.encoder)
    # resnet body: conv1, bn1, relu, maxpool, layer1..layer4 -> relu (1/2), layer1 (1/4), layer2 (1/8), layer3 (1/16)
    assert skip_indices(shapes) == [2, 4, 5, 6] == unet18.skip_idx
    assert [shapes[i][1] for i in unet18.skip_idx] == [64, 64, 128, 256]


def test_decoder_channels_follow_the_lesson(unet18):
    # resnet18 has resnet34's channels, so the decoder widths are the lesson's 512 -> 512 -> 384 -> 256 -> 96
    assert [b.nf for b in unet18.decoder.blocks] == [512, 384, 256, 96]
    assert unet18.decoder.final.in_channels == 96 + 3  # the raw input joins at full resolution (last_cross)


def test_the_tiramisu_unet_has_the_lesson_parameter_counts():
    """resnet34, bottle=True, 12 classes: 41,133,018 parameters, 19,865,370 of them trainable when frozen
    (the decoder and the encoder's BatchNorm layers), as in the lesson's CamVid-tiramisu notebook."""
    model = DynamicUnet(create_body(torchvision.models.resnet34()), n_classes=12, bottle=True)
    assert sum(p.numel() for p in model.parameters()) == 41_133_018
    bn = [p for m in model.encoder.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
    assert sum(p.numel() for p in [*model.decoder.parameters(), *bn]) == 19_865_370


@pytest.mark.parametrize("size", [(64, 64), (32, 96), (33, 47), (65, 97), (30, 40), (17, 23)])
def test_output_has_the_input_size_for_any_size(unet18, size):
    with torch.no_grad():
        out = unet18(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, *size)


def test_pixel_shuffle_icnr_starts_as_nearest_neighbour_upsampling():
    torch.manual_seed(0)
    up = PixelShuffleICNR(8, 4)
    x = torch.randn(1, 8, 5, 6)
    out = up(x)
    assert out.shape == (1, 4, 10, 12)
    blocks = out.unfold(2, 2, 2).unfold(3, 2, 2)  # (1, 4, 5, 6, 2, 2): each input pixel's 2x2 output block
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))
    assert out.abs().sum() > 0


def test_unet_learner_has_three_layer_groups_encoder_halves_then_decoder(camvid_data, tmp_path):
    learn = unet_learner(camvid_data, models.resnet18, pretrained=False, path=tmp_path)
    model = learn.model
    first, rest, decoder = learn.layer_groups
    assert list(first) == list(model.encoder)[:6] and list(rest) == list(model.encoder)[6:]  # conv1..layer2 | 3, 4
    assert decoder is model.decoder
    assert len(learn.opt.param_groups) == 3
    n_params = sum(p.numel() for g in learn.layer_groups for p in g.parameters())
    assert n_params == sum(p.numel() for p in model.parameters())
    assert learn.lr_range(slice(3e-3)) == pytest.approx([3e-4, 3e-4, 3e-3])
    assert learn.lr_range(slice(1e-5, 1e-3)) == pytest.approx([1e-5, 1e-4, 1e-3])


def test_freeze_trains_only_the_decoder_and_batchnorm_then_unfreeze_trains_all(camvid_data, tmp_path):
    learn = unet_learner(camvid_data, models.resnet18, pretrained=False, path=tmp_path)
    assert all(p.requires_grad for p in learn.model.parameters())  # not pretrained: nothing frozen
    learn.freeze()
    for m in learn.model.encoder.modules():
        for p in m.parameters(recurse=False):
            assert p.requires_grad == isinstance(m, nn.BatchNorm2d)
    assert all(p.requires_grad for p in learn.model.decoder.parameters())
    conv1 = learn.model.encoder[0].weight.detach().clone()
    learn.fit(1, 1e-2, progress=False)
    assert torch.equal(conv1, learn.model.encoder[0].weight)
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


def test_pretrained_unet_loads_the_cached_imagenet_encoder_and_freezes_it(camvid_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(3)
    reference = torchvision.models.resnet18()  # random weights, standing in for ImageNet's
    torch.save(reference.state_dict(), cache / RESNET18_FILE)
    learn = unet_learner(camvid_data, models.resnet18, pretrained=True, path=tmp_path)
    assert torch.equal(learn.model.encoder[0].weight, reference.conv1.weight)
    assert torch.equal(learn.model.encoder[7][1].conv2.weight, reference.layer4[1].conv2.weight)
    assert not learn.model.encoder[0].weight.requires_grad
    assert all(p.requires_grad for p in learn.model.decoder.parameters())


def test_weights_carry_across_image_sizes_go_big(camvid_data, camvid_path, tmp_path):
    """The lesson's 'go big': save at one size, load into a new learner on bigger images."""
    from helpers import camvid_src

    from course_utils.vision import get_transforms, imagenet_stats

    learn = unet_learner(camvid_data, models.resnet18, pretrained=False, path=tmp_path)
    learn.save("stage-2")
    big = (camvid_src(camvid_path).transform(get_transforms(), size=64, tfm_y=True)
           .databunch(bs=1, num_workers=0, device=torch.device("cpu")).normalize(imagenet_stats))
    learn2 = unet_learner(big, models.resnet18, pretrained=False, path=tmp_path).load("stage-2")
    for p, q in zip(learn.model.parameters(), learn2.model.parameters()):
        assert torch.equal(p, q)
    x, _ = big.one_batch("valid")
    assert learn2.model.eval()(x).shape == (1, big.c, 64, 64)


def _amp_callbacks(learn):
    return [c for c in learn.callbacks if isinstance(c, MixedPrecision)]


def test_to_bf16_on_cpu_lowers_the_loss_and_keeps_float32_weights(camvid_data, tmp_path):
    learn = unet_learner(camvid_data, models.resnet18, pretrained=False, path=tmp_path).to_bf16(force=True)
    before = learn.validate()["valid_loss"]
    learn.fit(3, 1e-3, progress=False)
    assert learn.validate()["valid_loss"] < 0.8 * before
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    assert learn.to_fp32() is learn and _amp_callbacks(learn) == []


def test_to_fp16_on_a_cpu_without_native_bf16_stays_in_fp32(camvid_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("course_utils.amp.cpu_has_native_bf16", lambda: False)
    learn = unet_learner(camvid_data, models.resnet18, pretrained=False, path=tmp_path).to_fp16()
    assert _amp_callbacks(learn) == [] and learn.precision.dtype is None
    assert "no native bf16" in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with loss scaling needs a CUDA GPU")
def test_to_fp16_on_cuda_trains_with_loss_scaling_and_float32_weights(camvid_path, tmp_path):
    from helpers import camvid_src

    from course_utils.vision import get_transforms, imagenet_stats

    data = (camvid_src(camvid_path).transform(get_transforms(), size=32, tfm_y=True)
            .databunch(bs=2, num_workers=0, device=torch.device("cuda")).normalize(imagenet_stats))
    learn = unet_learner(data, models.resnet18, pretrained=False, path=tmp_path).to_fp16()
    before = learn.validate()["valid_loss"]
    learn.fit(3, 1e-3, progress=False)
    assert learn.validate()["valid_loss"] < 0.8 * before
    assert _amp_callbacks(learn)[0].scaler is not None
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())

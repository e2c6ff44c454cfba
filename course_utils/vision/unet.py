"""The dynamic U-Net of lesson 3 (CamVid): a torchvision encoder, and a decoder built to fit it.

"Dynamic" because nothing about the encoder is written down: one dummy forward pass, with a hook on
each encoder layer, finds where the resolution halves, and the layers just before each change become
skip connections. The decoder upsamples with a pixel shuffle whose convolution starts as nearest
neighbour upsampling (ICNR init), which avoids checkerboard artefacts, and joins each skip feature.
The output has the input's height and width, whatever they are (a size that is not a multiple of
32 is resized back at the end).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data_block import DataBunch
from ..learner import Learner
from ..persist import ModelSpec
from .models import arch_name, create_body, load_arch, split_body

__all__ = ["unet_learner"]

_PROBE_SIZE = (128, 128)  # the dummy input that reveals the encoder's shape; big enough for 5 halvings


def conv_relu(ni: int, nf: int, ks: int = 3) -> nn.Sequential:
    """A convolution (Kaiming init, as for every ReLU layer) followed by ReLU; no BatchNorm, as in the lesson."""
    conv = nn.Conv2d(ni, nf, ks, padding=ks // 2)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """Initialise a conv weight feeding a PixelShuffle(scale) so the pair starts as nearest upsampling.

    Each output channel's scale*scale sub-pixels get the same kernel, so at first every upsampled
    pixel copies its neighbours: no checkerboard to unlearn (Aitken et al. 2017, "ICNR")."""
    n_out, *rest = weight.shape
    sub = nn.init.kaiming_normal_(torch.empty(n_out // scale ** 2, *rest), nonlinearity="relu")
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale ** 2, dim=0))  # PixelShuffle reads channels c*s*s .. c*s*s+s*s-1
    return weight


class PixelShuffleICNR(nn.Sequential):
    """Upsample 2x from `ni` to `nf` channels: 1x1 conv to 4*nf (ICNR init), ReLU, pixel shuffle, optional blur."""

    def __init__(self, ni: int, nf: int, blur: bool = False):
        conv = nn.Conv2d(ni, nf * 4, 1)
        icnr_(conv.weight)
        nn.init.zeros_(conv.bias)
        layers = [conv, nn.ReLU(inplace=True), nn.PixelShuffle(2)]
        if blur:  # average each pixel with its upper-left neighbours: smooths what the shuffle may leave
            layers += [nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)]
        super().__init__(*layers)


class UnetBlock(nn.Module):
    """One decoder step: upsample, join the encoder's skip feature (BatchNorm + ReLU), two convolutions."""

    def __init__(self, up_in_c: int, skip_c: int, halve: bool = False, blur: bool = False):
        super().__init__()
        self.up = PixelShuffleICNR(up_in_c, up_in_c // 2, blur=blur)
        self.bn = nn.BatchNorm2d(skip_c)
        ni = up_in_c // 2 + skip_c
        self.nf = ni // 2 if halve else ni
        self.convs = nn.Sequential(conv_relu(ni, self.nf), conv_relu(self.nf, self.nf))

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(up_in)
        if up.shape[-2:] != skip.shape[-2:]:  # odd sizes: the encoder rounded up when it halved
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        return self.convs(torch.cat([up, F.relu(self.bn(skip))], dim=1))


class ResBlock(nn.Module):
    """x + two convolutions of x (the inner width halved if `bottle`)."""

    def __init__(self, nf: int, bottle: bool = False):
        super().__init__()
        inner = nf // 2 if bottle else nf
        self.convs = nn.Sequential(conv_relu(nf, inner), conv_relu(inner, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convs(x)


def encoder_shapes(encoder: nn.Sequential, size: tuple[int, int] = _PROBE_SIZE) -> list[torch.Size]:
    """The output shape of each child of `encoder` for a dummy (1, 3, *size) input, recorded by forward hooks."""
    shapes = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: shapes.append(out.shape)) for m in encoder]
    was_training = encoder.training
    try:
        encoder.eval()  # batch statistics of a single dummy image would be meaningless
        with torch.no_grad():
            encoder(torch.zeros(1, 3, *size))
    finally:
        for h in hooks:
            h.remove()
        encoder.train(was_training)
    return shapes


def skip_indices(shapes: list[torch.Size]) -> list[int]:
    """Indices of the encoder layers whose output is the last one at its resolution (before a halving)."""
    return [i for i in range(len(shapes) - 1) if shapes[i][-2:] != shapes[i + 1][-2:]]


class DynamicUnet(nn.Module):
    """A U-Net over any `nn.Sequential` encoder that halves the resolution as it goes (ResNets, VGG, ...).

    Decoder (lesson 3): BN, ReLU and two convs on the encoder's output (doubling then restoring its
    channels); one `UnetBlock` per skip feature, deepest first; a last 2x upsample if the first skip
    is not at full resolution; with `last_cross`, the raw input is concatenated and a residual block
    runs at full resolution; a 1x1 conv gives `n_classes` scores per pixel."""

    def __init__(self, encoder: nn.Sequential, n_classes: int, blur: bool = False, blur_final: bool = True,
                 last_cross: bool = True, bottle: bool = False):
        super().__init__()
        self.encoder = encoder
        shapes = encoder_shapes(encoder)
        self.skip_idx = skip_indices(shapes)
        if not self.skip_idx:
            raise ValueError("The encoder never changes resolution, so a U-Net has nothing to skip across.")
        self.decoder = UnetDecoder(shapes[-1][1], [shapes[i][1] for i in self.skip_idx], n_classes,
                                   upsample_last=shapes[self.skip_idx[0]][-2:] != _PROBE_SIZE,
                                   blur=blur, blur_final=blur_final, last_cross=last_cross, bottle=bottle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, h = [], x
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i in self.skip_idx:
                skips.append(h)
        return self.decoder(h, skips, x)


class UnetDecoder(nn.Module):
    """The U-Net's decoder: everything after the encoder (one layer group, trained first)."""

    def __init__(self, enc_c: int, skip_cs: list[int], n_classes: int, upsample_last: bool, blur: bool,
                 blur_final: bool, last_cross: bool, bottle: bool):
        super().__init__()
        self.centre = nn.Sequential(nn.BatchNorm2d(enc_c), nn.ReLU(inplace=True),
                                    conv_relu(enc_c, 2 * enc_c), conv_relu(2 * enc_c, enc_c))
        blocks, c = [], enc_c
        for k, skip_c in enumerate(reversed(skip_cs)):
            blocks.append(UnetBlock(c, skip_c, halve=k == len(skip_cs) - 1, blur=blur))
            c = blocks[-1].nf
        self.blocks = nn.ModuleList(blocks)
        self.up = PixelShuffleICNR(c, c, blur=blur_final) if upsample_last else nn.Identity()
        self.last_cross = last_cross
        if last_cross:
            c += 3
            self.res = ResBlock(c, bottle)
        self.final = nn.Conv2d(c, n_classes, 1)

    def forward(self, h: torch.Tensor, skips: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        h = self.centre(h)
        for block, skip in zip(self.blocks, reversed(skips)):
            h = block(h, skip)
        h = self.up(h)
        if h.shape[-2:] != x.shape[-2:]:  # sizes that are not a multiple of 32: back to the input's size
            h = F.interpolate(h, x.shape[-2:], mode="nearest")
        if self.last_cross:
            h = self.res(torch.cat([h, x], dim=1))
        return self.final(h)


def unet_model(spec: ModelSpec, pretrained: bool = False) -> DynamicUnet:
    """A DynamicUnet from a spec (arch name, classes, options); what `load_learner` rebuilds (never `pretrained`:
    the weights are in the export)."""
    opts = spec.options
    encoder = create_body(load_arch(opts["arch"], pretrained), opts.get("cut"))
    return DynamicUnet(encoder, spec.n_out, blur=opts["blur"], blur_final=opts["blur_final"],
                       last_cross=opts["last_cross"], bottle=opts["bottle"])


def unet_layer_groups(model: DynamicUnet) -> list[nn.Module]:
    """Three groups as for `cnn_learner`: the first 3/4 of the encoder (ResNet: conv1..layer2),
    the rest of the encoder (layer3, layer4), and the decoder."""
    return [*split_body(model.encoder), model.decoder]


def unet_learner(data: DataBunch, arch: Callable | str, *, pretrained: bool = True, metrics=None, wd: float = 1e-2,
                 blur: bool = False, blur_final: bool = True, last_cross: bool = True, bottle: bool = False,
                 cut: int | None = None, **kwargs) -> Learner:
    """A Learner for segmentation `data` with a U-Net over a torchvision `arch` (e.g. `models.resnet34`).

    With `pretrained=True` the encoder starts from ImageNet weights and is frozen (only the decoder
    trains) until `learn.unfreeze()`. The loss, per-pixel cross entropy, comes from the data."""
    spec = ModelSpec("unet", data.c, {"arch": arch_name(arch), "cut": cut, "blur": blur, "blur_final": blur_final,
                                      "last_cross": last_cross, "bottle": bottle})
    model = unet_model(spec, pretrained)
    learn = Learner(data, model, metrics=metrics, wd=wd, layer_groups=unet_layer_groups(model), model_spec=spec,
                    **kwargs)
    if pretrained:
        learn.freeze()
    return learn

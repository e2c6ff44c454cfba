"""Models for vision: `cnn_learner` = a pretrained torchvision body + the lesson's head, in 3 layer groups."""
from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from torchvision import models  # noqa: F401  (re-exported: `models.resnet34`, as in the lesson)

from ..data_block import DataBunch
from ..learner import Learner
from ..persist import ModelSpec

__all__ = ["cnn_learner", "create_cnn"]


class AdaptiveConcatPool2d(nn.Module):
    """Adaptive max pooling and average pooling side by side: twice the features of either alone."""

    def __init__(self, size: int = 1):
        super().__init__()
        self.max, self.avg = nn.AdaptiveMaxPool2d(size), nn.AdaptiveAvgPool2d(size)

    def forward(self, x):
        return torch.cat([self.max(x), self.avg(x)], dim=1)


def _weights(arch_name: str, pretrained: bool):
    if not pretrained:
        return None
    return torchvision.models.get_model_weights(arch_name).DEFAULT


def load_arch(arch_name: str, pretrained: bool) -> nn.Module:
    """A torchvision model by name, with its ImageNet weights if `pretrained` (downloaded once, then cached
    in torch's hub folder, `$TORCH_HOME/hub/checkpoints`)."""
    weights = _weights(arch_name, pretrained)
    try:
        return torchvision.models.get_model(arch_name, weights=weights)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:  # URLError is an OSError
        if weights is None:
            raise
        cache = torch.hub.get_dir() + "/checkpoints"
        cached = Path(cache) / Path(weights.url).name
        if cached.is_file():
            raise RuntimeError(
                f"The cached ImageNet weights for {arch_name}, {cached}, are corrupt or incomplete ({e}). "
                "Delete that file and run again to download it afresh, or pass pretrained=False.") from e
        raise RuntimeError(
            f"Could not get the pretrained ImageNet weights for {arch_name} from {weights.url} ({e}).\n"
            f"Either connect to the internet and run again, or download that file by hand into {cache}/, "
            "or pass pretrained=False to train from scratch.") from e


def _cut_index(model: nn.Module) -> int:
    """Where the classifier starts: the last adaptive pooling child (ResNets: avgpool, index -2)."""
    children = list(model.children())
    for i in range(len(children) - 1, -1, -1):
        if isinstance(children[i], (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return i
    raise ValueError(f"Can't tell where the classifier of {type(model).__name__} starts; pass `cut=`.")


def create_body(model: nn.Module, cut: int | None = None) -> nn.Sequential:
    """The convolutional part of a torchvision classifier (everything before its pooling and linear layer)."""
    if cut is None and hasattr(model, "features") and not any(
            isinstance(c, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) for c in model.children()):
        return nn.Sequential(*model.features.children())  # densenet, mobilenet: no pooling child
    children = list(model.children())[: _cut_index(model) if cut is None else cut]
    if len(children) == 1 and isinstance(children[0], nn.Sequential):
        children = list(children[0].children())  # vgg, efficientnet: one `features` block
    return nn.Sequential(*children)


def create_head(nf: int, n_out: int, lin_ftrs: list[int] | None = None, ps: float | list[float] = 0.5,
                bn_final: bool = False) -> nn.Sequential:
    """Lesson 3's head: concat pooling, then per hidden size in `lin_ftrs` (default [512]) BN -> dropout -> linear
    -> ReLU, and BN -> dropout -> linear to the outputs. A single `ps` is the last dropout, the ones before it
    half of it (the lesson's 0.25 and 0.5); a list gives one per linear layer."""
    sizes = [2 * nf, *(lin_ftrs or [512]), n_out]
    drops = head_dropouts(ps, len(sizes) - 1)
    layers = [AdaptiveConcatPool2d(), nn.Flatten()]
    for i, (n_in, n_next, p) in enumerate(zip(sizes[:-1], sizes[1:], drops)):
        layers += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_next)]
        if i < len(drops) - 1:
            layers.append(nn.ReLU(inplace=True))
    if bn_final:
        layers.append(nn.BatchNorm1d(n_out, momentum=0.01))
    head = nn.Sequential(*layers)
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return head


def head_dropouts(ps: float | list[float], n: int) -> list[float]:
    """One dropout per linear layer of a head of `n`: a list as given (it must have n entries), a single value for
    the last layer and half of it for the others."""
    if isinstance(ps, (int, float)):
        return [ps / 2] * (n - 1) + [ps]
    if len(ps) != n:
        raise ValueError(f"ps lists {len(ps)} dropout(s) but the head has {n} linear layers (one more than lin_ftrs).")
    return list(ps)


def zero_last_linear(head: nn.Module) -> None:
    """Start a regression head at zero output (the image centre, for points). With the usual random init its
    outputs are ~1.4 wide, so the first MSE is about 2, far above predicting the mean (points are in [-1, 1]),
    and training spends its first epochs undoing that. Dropout before a regression output hurts as well: it
    makes the outputs noisier in training than in evaluation. Measured on tiny head pose (resnet18 from
    scratch, 36x48, bs 16, 12 epochs at 2e-2; valid MSE, predict-the-mean baseline 0.116): random init with
    dropout 0.5: 0.054 (20 epochs); random init, no dropout: 0.045 / 0.077 / 0.057 (seeds 42 / 1 / 2);
    zero start, no dropout: 0.021 / 0.014 / 0.018; zero start with dropout 0.5: 0.13 / 0.22."""
    last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


def num_features(body: nn.Module) -> int:
    """Channels coming out of `body` (found with a small dummy forward pass)."""
    was_training = body.training
    body.eval()
    with torch.no_grad():
        nf = body(torch.zeros(1, 3, 64, 64)).shape[1]
    body.train(was_training)
    return nf


def cnn_model(spec: ModelSpec, pretrained: bool = False) -> nn.Sequential:
    """Body + head from a spec (arch name, outputs, head settings); what `load_learner` rebuilds (never
    `pretrained`: the weights are in the export)."""
    opts = spec.options
    body = create_body(load_arch(opts["arch"], pretrained), opts.get("cut"))
    lin_ftrs = opts["lin_ftrs"]
    lin_ftrs = [lin_ftrs] if isinstance(lin_ftrs, int) else lin_ftrs  # exports made before lin_ftrs became a list
    head = create_head(num_features(body), spec.n_out, lin_ftrs, opts["ps"], opts["bn_final"])
    return nn.Sequential(body, head)


def layer_groups(model: nn.Sequential) -> list[nn.Module]:
    """Three groups as in the lesson: the first 3/4 of the body (ResNet: conv1..layer2), the rest of the body
    (layer3, layer4), and the head. Discriminative learning rates and freezing work on these."""
    return [*split_body(model[0]), model[1]]


def split_body(body: nn.Sequential) -> list[nn.Sequential]:
    """The first 3/4 of a pretrained body's blocks and the rest: the lesson's two body layer groups."""
    k = round(len(body) * 3 / 4)
    return [body[:k], body[k:]]


def arch_name(arch: Callable | str) -> str:
    """The torchvision name of `arch` (a name or a builder such as `models.resnet34`), refused if unknown."""
    name = arch if isinstance(arch, str) else arch.__name__
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"{name!r} is not a torchvision classification model; try models.resnet34.")
    return name


def cnn_learner(data: DataBunch, arch: Callable | str, *, pretrained: bool = True, metrics=None, wd: float = 1e-2,
                cut: int | None = None, lin_ftrs: list[int] | None = None, ps: float | list[float] | None = None,
                bn_final: bool = False, **kwargs) -> Learner:
    """A Learner for `data` with a torchvision `arch` (e.g. `models.resnet34`) as body and a new head.

    With `pretrained=True` the body starts from ImageNet weights and is frozen (only the head trains)
    until `learn.unfreeze()`. `ps` is the head's dropout: 0.5 for classification as in the lesson; for
    regression (points, floats) it defaults to 0 and the last layer starts at zero output (`zero_last_linear`)."""
    regression = data.train_ds.y.is_regression
    if ps is None:
        ps = 0.0 if regression else 0.5
    spec = ModelSpec("cnn", data.c, {"arch": arch_name(arch), "cut": cut, "lin_ftrs": list(lin_ftrs or [512]),
                                     "ps": ps, "bn_final": bn_final})
    model = cnn_model(spec, pretrained)
    if regression:
        zero_last_linear(model[1])
    learn = Learner(data, model, metrics=metrics, wd=wd, layer_groups=layer_groups(model), model_spec=spec, **kwargs)
    if pretrained:
        learn.freeze()
    return learn


def create_cnn(data: DataBunch, arch: Callable | str, **kwargs) -> Learner:
    """The lesson video's name for `cnn_learner` (same arguments), kept working with a one-line note."""
    warnings.warn("`create_cnn` is the lesson video's name; it is now `cnn_learner` (same arguments).", stacklevel=2)
    return cnn_learner(data, arch, **kwargs)

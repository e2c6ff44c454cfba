"""A faster weight gradient for convolutions over tiny feature maps on a CPU.

A resnet's last stage works on tiny maps when the images are small: 1x1 at 32 px, 2x2 at 64 px. There, oneDNN
(PyTorch's CPU convolution library) computes the weight gradient of a 3x3 convolution about ten times slower than
one matrix product does: for 512 -> 512 channels, a batch of 32 at 1x1 took 21.1 ms against 1.5 ms, and at 2x2
17.3 ms against 4.9 ms (best of 10, 2-core AMD EPYC, AVX2, no native bf16; `python -m course_utils.smallconv`
times them on your machine). At 32 px, that one stage was 40% of a tiny Planet lesson's training time. At 4x4 the
two are even (19.5 against 16.9 ms), and oneDNN wins at 8x8 (4.4 against 6.8 ms for 128 channels).

So `use_small_map_convs` gives a model's plain `nn.Conv2d` layers a forward that, only while training on a CPU
in fp32 over an output map of at most `SMALL_MAP` pixels, records the convolution through `_SmallMapConv`: the
same forward (`F.conv2d`), the same input gradient (PyTorch's own convolution backward), and the weight gradient
as one matrix product of the output gradient with the unfolded input. Everywhere else (a GPU, autocast,
inference, larger maps) the layer is exactly `nn.Conv2d`. The parameters, their names and the saved weights do not
change, and the layer still prints as `Conv2d`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

SMALL_MAP = 4  # output pixels (h * w) up to which the weight gradient is one matrix product (see the table above)


class _SmallMapConv(torch.autograd.Function):
    """conv2d (groups 1) whose weight gradient is `grad (Cout, B*L) @ unfold(x) (B*L, Cin*kh*kw)`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.conf, ctx.has_bias = (stride, padding, dilation), bias is not None
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(grad, x, weight, None, stride, padding, dilation, False, [0, 0], 1,
                                                     [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            cols = F.unfold(x, weight.shape[-2:], dilation=dilation, padding=padding, stride=stride)  # (B, Cin*k*k, L)
            g = grad.flatten(2).transpose(0, 1).reshape(grad.shape[1], -1)  # (Cout, B*L)
            gw = (g @ cols.transpose(0, 1).reshape(cols.shape[1], -1).t()).view_as(weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb, None, None, None


def _out_pixels(conv: nn.Conv2d, x: torch.Tensor) -> int:
    n = 1
    for i in (0, 1):
        n *= (x.shape[-2 + i] + 2 * conv.padding[i] - conv.dilation[i] * (conv.kernel_size[i] - 1) - 1) \
            // conv.stride[i] + 1
    return n


class SmallMapConv2d(nn.Conv2d):
    """`nn.Conv2d` with the small-map weight gradient (see the module's docstring); made by `use_small_map_convs`."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (x.device.type == "cpu" and weight.requires_grad and torch.is_grad_enabled() and x.dim() == 4
                and x.dtype == weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and _out_pixels(self, x) <= SMALL_MAP):
            return _SmallMapConv.apply(x, weight, bias, self.stride, self.padding, self.dilation)
        return super()._conv_forward(x, weight, bias)

    def _get_name(self) -> str:
        return "Conv2d"  # printed models look as in the lesson: this is a Conv2d with a faster backward


def use_small_map_convs(model: nn.Module) -> int:
    """Give every plain `nn.Conv2d` of `model` (groups 1, zero padding given as numbers) the small-map weight
    gradient, in place: same parameters, same results. Returns how many layers changed."""
    n = 0
    for m in model.modules():
        if (type(m) is nn.Conv2d and m.groups == 1 and m.padding_mode == "zeros"
                and not isinstance(m.padding, str)):
            m.__class__ = SmallMapConv2d
            n += 1
    return n


def compare(bs: int = 32, repeats: int = 10) -> list[dict]:
    """Time the weight gradient of the convolutions the module's table names, oneDNN's against the matrix product,
    on this machine (`python -m course_utils.smallconv` prints them). Returns one row per convolution."""
    import time

    def best_ms(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) * 1e3
    rows = []
    for cin, cout, size, stride in ((512, 512, 1, 1), (256, 512, 2, 2), (512, 512, 2, 1), (256, 256, 2, 1),
                                    (512, 512, 4, 1), (128, 128, 8, 1)):
        torch.manual_seed(0)
        x, w = torch.randn(bs, cin, size, size), torch.randn(cout, cin, 3, 3)
        grad = torch.randn_like(F.conv2d(x, w, stride=stride, padding=1))
        conf = ([stride, stride], [1, 1], [1, 1])

        def onednn():
            return torch.ops.aten.convolution_backward(grad, x, w, None, *conf, False, [0, 0], 1,
                                                       [False, True, False])[1]

        def matmul():
            return _SmallMapConv.backward(_Ctx(x, w, conf), grad)[1]
        torch.testing.assert_close(matmul(), onednn(), rtol=1e-4, atol=1e-3)
        rows.append({"conv": f"{cin}->{cout} 3x3 stride {stride}", "out": f"{grad.shape[-2]}x{grad.shape[-1]}",
                     "onednn_ms": best_ms(onednn), "matmul_ms": best_ms(matmul)})
    return rows


class _Ctx:
    """What `_SmallMapConv.backward` reads of its context, for timing it alone."""

    def __init__(self, x, weight, conf):
        self.saved_tensors, self.conf, self.has_bias = (x, weight), conf, False
        self.needs_input_grad = (False, True, False)


if __name__ == "__main__":
    print(f"weight gradient of a 3x3 convolution, batch 32, {torch.get_num_threads()} threads, kernels "
          f"{torch.backends.cpu.get_cpu_capability()} (best of 10)")
    print(f"{'convolution':>24} {'output':>6} {'oneDNN':>9} {'matmul':>9}")
    for r in compare():
        print(f"{r['conv']:>24} {r['out']:>6} {r['onednn_ms']:7.2f}ms {r['matmul_ms']:7.2f}ms")

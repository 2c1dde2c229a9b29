"""Winograd F(2x2, 3x3) convolutions for the fp32 CPU path: 2.25x fewer multiplications in the wide 3x3 layers.

A 3x3, stride-1, padding-1 convolution computes each 2x2 output tile from a 4x4 input tile. Winograd's minimal
filtering algorithm (Lavin & Gray, 2016) writes it as ``Y = A^T [(G g G^T) * (B^T d B)] A``: the input tiles are
transformed (additions only), multiplied channel-wise with the transformed filters as 16 independent GEMMs of
(tiles x C) by (C x K), and transformed back (additions only). The GEMMs do 16/36 of the direct multiply-adds. On
channels-last activations the transforms are pointwise over the channels, which inductor fuses into one vectorised
kernel each (with the bias and the following ReLU); the GEMMs are linear layers with constant weights, which freezing
pre-packs for oneDNN. In fp32 the result differs from the direct convolution by float rounding (relative ~3e-6 per
layer: the transforms use only +-1 and 1/2).

It pays where the GEMMs are large enough to run near peak: in fp32 VGG's layers with >= 128 input channels (measured on
one AMD Zen 4 core: 1.45-1.6x per layer at 256-512 channels; the whole fp32 VGG16 1.35-1.4x over the same graph with
direct convolutions), in bf16 those with >= 256 (1.2-1.5x per layer, 1.065x for the whole bf16 VGG16: bf16 direct
convolutions run at the bf16 peak already, and inductor's bf16 transforms are slower; at 128 channels the whole net
was slower). Narrower layers keep the direct convolution; bf16 Winograd rounds the transformed tiles to bf16 (logits'
cosine with fp32 0.99993 against 0.99996 for direct bf16 on a random VGG16). :func:`use_winograd` swaps the eligible
convolutions of a module in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Per dtype, layers with fewer input channels keep the direct convolution (their GEMMs are too thin to win).
MIN_CHANNELS = {torch.float32: 128, torch.bfloat16: 256}

# F(2x2, 3x3): filter transform G (4x3); B^T and A^T are applied below as additions.
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def eligible(module: nn.Module, min_channels: int | None = None) -> bool:
    """A plain 3x3 fp32 or bf16 convolution (stride 1, padding 1, no dilation or groups) with at least
    ``min_channels`` inputs (default: :data:`MIN_CHANNELS` of its dtype)."""
    if not isinstance(module, nn.Conv2d) or module.weight.dtype not in MIN_CHANNELS:
        return False
    if min_channels is None:
        min_channels = MIN_CHANNELS[module.weight.dtype]
    return (
        module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and module.in_channels >= min_channels
    )


def _rows(d: list[torch.Tensor]) -> list[torch.Tensor]:
    """B^T applied to four rows (or columns) of a 4x4 input tile."""
    return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def _cols(m: list[torch.Tensor]) -> list[torch.Tensor]:
    """A^T applied to four rows (or columns) of a 4x4 product tile."""
    return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]


class WinogradConv2d(nn.Module):
    """A drop-in replacement for an eligible :class:`~torch.nn.Conv2d` (see :func:`eligible`), computed with
    Winograd F(2x2, 3x3). Inputs of odd height or width run the original convolution."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        dtype = conv.weight.dtype
        weight = conv.weight.detach().float()  # (K, C, 3, 3)
        g = torch.tensor(_G, dtype=weight.dtype, device=weight.device)
        u = torch.einsum("ai,kcij,bj->abkc", g, weight, g).reshape(16, conv.out_channels, conv.in_channels)
        u = u.to(dtype)
        # one constant weight per GEMM, laid out as a linear layer's (out, in): freezing packs each for oneDNN
        self.weights = nn.ParameterList(
            nn.Parameter(u[i].contiguous(), requires_grad=False) for i in range(16)
        )
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=dtype)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.conv = conv  # for odd sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            return self.conv(x)
        th, tw = h // 2, w // 2
        padded = F.pad(
            x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1)
        )  # NHWC (a view of channels-last), zero border
        tiles = [[padded[:, i : i + 2 * th : 2, j : j + 2 * tw : 2, :] for j in range(4)] for i in range(4)]
        columns = [_rows([tiles[i][j] for i in range(4)]) for j in range(4)]  # columns[j][a]
        products = []
        for a in range(4):
            for v in _rows([columns[j][a] for j in range(4)]):
                products.append(F.linear(v.reshape(n * th * tw, c), self.weights[len(products)]))
        k = products[0].shape[-1]
        m = [p.view(n, th, tw, k) for p in products]  # m[4 * a + b]
        rows = [_cols([m[4 * a + b] for a in range(4)]) for b in range(4)]  # rows[b][r]
        y = torch.stack([torch.stack(_cols([rows[b][r] for b in range(4)]), dim=3) for r in range(2)], dim=2)
        y = y.reshape(n, h, w, k) + self.bias
        return y.permute(0, 3, 1, 2)  # NCHW with channels-last strides

    def extra_repr(self) -> str:
        return f"{self.conv.in_channels}, {self.conv.out_channels}, F(2x2, 3x3)"


def use_winograd(module: nn.Module, min_channels: int | None = None) -> int:
    """Replace every eligible convolution of ``module`` (in place) by a :class:`WinogradConv2d`; returns how many."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if eligible(child, min_channels):
                setattr(parent, name, WinogradConv2d(child))
                count += 1
    return count

"""Winograd F(2x2, 3x3) convolutions and the kept freed memory: equal to the direct convolution to float rounding,
swapped in only where eligible, on by default only for compiled fp32 on the CPU."""

from __future__ import annotations

import pytest
import torch
from test_inference_engine import build, photos, reference

import vggnets
from vggnets.inference import engine, memory
from vggnets.inference.plan import EngineInfo
from vggnets.inference.winograd import WinogradConv2d, eligible, use_winograd


@pytest.mark.parametrize(
    ("cin", "cout", "side", "bias"), [(32, 48, 14, True), (16, 8, 9, False), (8, 8, 1, True)]
)
def test_winograd_equals_the_direct_convolution(cin, cout, side, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=bias).eval()
    x = torch.randn(3, cin, side, side + 2).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, got = conv(x), WinogradConv2d(conv)(x)
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


def test_only_plain_wide_3x3_convolutions_are_swapped():
    assert eligible(torch.nn.Conv2d(128, 64, 3, padding=1))
    assert not eligible(torch.nn.Conv2d(64, 64, 3, padding=1))  # too narrow to win
    assert not eligible(torch.nn.Conv2d(256, 256, 3, padding=1, stride=2))
    assert not eligible(torch.nn.Conv2d(256, 256, 1))
    assert not eligible(torch.nn.Conv2d(256, 256, 3, padding=1, groups=2))
    assert eligible(torch.nn.Conv2d(256, 64, 3, padding=1).bfloat16())
    assert not eligible(torch.nn.Conv2d(128, 64, 3, padding=1).bfloat16())  # bf16 needs 256
    assert not eligible(torch.nn.Conv2d(256, 256, 3, padding=1).half())
    model = vggnets.vgg16(width=0.25).eval()  # channels 16, 32, 64, 128, 128
    wide = sum(eligible(m) for m in model.modules())
    assert use_winograd(model) == wide == 5  # conv4_2, conv4_3, conv5_1..3
    assert sum(isinstance(m, WinogradConv2d) for m in model.modules()) == 5


def test_predictor_with_winograd_matches_fp32():
    torch.manual_seed(4)
    model = vggnets.vgg11(width=0.5, num_classes=10).eval()  # 5 convolutions with >= 128 input channels
    predictor = build(model, compile=False, winograd=True)
    assert predictor.info.winograd == 5 and predictor.info.precision == "fp32"
    torch.testing.assert_close(predictor(photos()), reference(model, photos()), atol=1e-4, rtol=1e-4)
    assert build(model, compile=False).info.winograd == 0  # eager: off unless asked


def test_bf16_winograd_is_close_to_the_direct_bf16_convolution():
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(256, 32, 3, padding=1).eval()
    x = torch.randn(2, 256, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        exact = conv(x)
        direct = conv.bfloat16()(x.bfloat16()).float()
        winograd = WinogradConv2d(conv)(x.bfloat16())
    assert winograd.dtype == torch.bfloat16
    scale = exact.abs().max().item()
    assert (winograd.float() - exact).abs().max().item() < 4 * max(
        (direct - exact).abs().max().item(), 1e-3 * scale
    )


def test_winograd_default_is_compiled_fp32_and_bf16_on_the_cpu():
    def info(precision="fp32", compile="aot", device="cpu"):
        return EngineInfo(precision, precision, compile, "True", device, (1, 4))

    assert engine._winograd_here(None, info())
    assert engine._winograd_here(None, info(compile="jit"))
    assert not engine._winograd_here(None, info(compile="none"))
    assert engine._winograd_here(None, info("bf16")) and not engine._winograd_here(None, info("int8"))
    assert not engine._winograd_here(None, info(device="cuda:0"))
    assert not engine._winograd_here(False, info()) and engine._winograd_here(True, info(compile="none"))


def test_freed_memory_is_kept_once_per_process(monkeypatch):
    monkeypatch.setattr(memory, "_state", {})
    monkeypatch.setenv("VGGNETS_KEEP_FREED_MEMORY", "0")
    assert memory.keep_freed_memory() is False and memory.keep_freed_memory() is False  # decided once
    monkeypatch.setattr(memory, "_state", {})
    monkeypatch.delenv("VGGNETS_KEEP_FREED_MEMORY")
    expected = memory.ctypes.util.find_library("c") is not None and hasattr(
        memory.ctypes.CDLL(None), "mallopt"
    )
    assert memory.keep_freed_memory() is expected


def test_winograd_compiles_with_freezing():
    """inductor (freezing, as the AOT packages are built) lowers the transforms and packs the 16 GEMM weights."""
    import torch._inductor.config as inductor_config

    torch.manual_seed(1)
    conv = torch.nn.Conv2d(128, 16, 3, padding=1).eval()
    module = torch.nn.Sequential(WinogradConv2d(conv), torch.nn.ReLU()).eval()
    x = torch.randn(2, 128, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), inductor_config.patch(freezing=True):
        got = torch.compile(module, dynamic=False)(x)
        expected = torch.relu(conv(x))
    torch.testing.assert_close(got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)

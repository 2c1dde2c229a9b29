"""What the engine runs here: batch buckets, and each fallback from a request this machine cannot serve."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from test_inference_engine import build, tiny

from vggnets.inference import plan
from vggnets.inference.engine import EngineWarning

HAS_TORCHAO = plan.torchao_available()


def test_default_buckets():
    assert plan.default_buckets(16, "jit") == (1, 16)
    assert plan.default_buckets(16, "aot") == (1, 2, 4, 8, 16)
    assert plan.default_buckets(12, "aot") == (1, 2, 4, 8, 12)


def test_given_buckets_are_cut_to_the_batch_size():
    assert plan.choose_buckets(8, (2, 32, 1), "jit") == (1, 2, 8)
    assert plan.choose_buckets(4, None, "none") == (1, 4)


def test_bf16_without_hardware_falls_back_to_fp32(monkeypatch):
    monkeypatch.setattr(plan, "cpu_precision_support", lambda: {"bf16": False, "int8": False, "amx": False})
    with pytest.warns(EngineWarning, match="no bf16 hardware"):
        predictor = build(tiny(), "bf16", compile=False)
    assert predictor.info.precision == "fp32" and predictor.info.requested_precision == "bf16"


def test_int8_without_torchao_falls_back(monkeypatch):
    monkeypatch.setattr(plan, "torchao_available", lambda: False)
    monkeypatch.setattr(plan, "cpu_precision_support", lambda: {"bf16": False, "int8": False, "amx": False})
    with pytest.warns(EngineWarning, match="needs torchao"):
        predictor = build(tiny(), "int8", compile=False)
    assert predictor.info.precision == "fp32"


def test_unavailable_devices_fall_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(EngineWarning, match="no CUDA device"):
        predictor = build(tiny(), device="cuda", compile=False)
    assert predictor.device.type == "cpu"
    with pytest.warns(EngineWarning, match="not supported"):
        build(tiny(), device="meta", compile=False)


def test_int8_on_a_gpu_becomes_bf16():
    notes: list[str] = []
    assert plan.resolve_precision("int8", torch.device("cuda"), notes) == "bf16"
    assert "CPU path" in notes[0]


def test_plan_says_what_will_run_before_building_anything(monkeypatch):
    monkeypatch.setattr(plan, "cpu_precision_support", lambda: {"bf16": False, "int8": False, "amx": False})
    precision, mode, device, notes = plan.plan("bf16", "cpu", True)
    assert (precision, mode, device.type) == ("fp32", "aot", "cpu") and "no bf16 hardware" in notes[0]
    assert plan.plan("fp32", None, False)[:2] == ("fp32", "none")


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_torchao_presence_is_checked_without_importing_it():
    code = (
        "import sys, vggnets.inference.engine, vggnets.inference.plan as p; "
        "assert p.torchao_available(); assert 'torchao' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

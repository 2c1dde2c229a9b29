"""Export round trips: ONNX in onnxruntime, TorchScript, torch.export and safetensors, at fixed and dynamic sizes.

Every test uses a width-1/8 vgg11 (the full architecture with tiny channels), so an export takes seconds. The files are
loaded back here independently of the exporter's own verification and compared with the eager model.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

import vggnets
from vggnets import export as vexport
from vggnets.cli import main
from vggnets.errors import MissingDependencyError
from vggnets.export import ExportError, export_model
from vggnets.export import verify as export_verify
from vggnets.models.dense import FullyConvolutionalVGG

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny() -> vggnets.VGG:
    torch.manual_seed(0)
    return vggnets.vgg11(width=0.125, num_classes=10).eval()


def images(n: int, h: int, w: int | None = None, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, h, w or h, generator=torch.Generator().manual_seed(seed))


def leftovers(folder: Path) -> list[str]:
    """Temporary files an export left behind (there must be none)."""
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


def ort_session(path: Path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def ort_run(session, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


@pytest.fixture
def need_onnx():
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)


# ------------------------------------------------------------------------------------------------------------
# ONNX


def test_onnx_224_runs_in_onnxruntime_with_dynamic_batch(tiny, tmp_path, need_onnx):
    out = tmp_path / "vgg11.onnx"
    report = export_model(tiny, out, format="onnx", input_size=224)
    assert report.path == out and out.stat().st_size == report.bytes > 0
    assert report.input_size == 224 and report.max_abs_diff is not None and report.max_abs_diff <= TOL
    assert "onnxruntime" in report.check and report.exporter
    session = ort_session(out)
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for n in (1, 3):  # the batch is dynamic
        x = images(n, 224, seed=n)
        with torch.no_grad():
            expected = tiny(x)
        got = ort_run(session, x)
        assert got.shape == (n, 10)
        assert (got - expected).abs().max() <= TOL
    assert leftovers(tmp_path) == []


def test_onnx_384_dense_gives_score_maps(tiny, tmp_path, need_onnx):
    out = tmp_path / "dense384.onnx"
    report = export_model(tiny, out, format="onnx", input_size=384, dense=True)
    assert report.dense and report.max_abs_diff <= TOL
    session = ort_session(out)
    assert [o.name for o in session.get_outputs()] == ["scores"]
    x = images(2, 384)
    with torch.no_grad():
        expected = FullyConvolutionalVGG(tiny)(x)
    got = ort_run(session, x)
    assert got.shape == (2, 10, 6, 6)  # 384 / 32 - 6
    assert (got - expected).abs().max() <= TOL


def test_onnx_dynamic_dense_runs_at_two_sizes(tiny, tmp_path, need_onnx):
    out = tmp_path / "dense_dynamic.onnx"
    report = export_model(tiny, out, format="onnx", input_size="dynamic", dense=True)
    assert report.input_size is None and report.max_abs_diff <= TOL
    assert "224" in report.check and "256x320" in report.check  # verified at two sizes
    session = ort_session(out)
    dense = FullyConvolutionalVGG(tiny)
    for h, w in ((224, 224), (288, 352)):
        x = images(1, h, w)
        with torch.no_grad():
            expected = dense(x)
        got = ort_run(session, x)
        assert got.shape == expected.shape == (1, 10, h // 32 - 6, w // 32 - 6)
        assert (got - expected).abs().max() <= TOL


def test_onnx_fp16_runs_in_onnxruntime(tiny, tmp_path, need_onnx):
    out = tmp_path / "half.onnx"
    report = export_model(tiny, out, format="onnx", precision="fp16")
    assert report.precision == "fp16" and report.max_abs_diff <= vexport.tolerance("fp16", torch.zeros(1))
    session = ort_session(out)
    x = images(1, 224)
    got = ort_run(session, x.half())
    assert got.dtype == torch.float16
    with torch.no_grad():
        assert (got.float() - tiny(x)).abs().max() <= 1e-2
    assert next(tiny.parameters()).dtype == torch.float32  # the caller's model is not cast


def test_onnx_refusals_write_nothing(tiny, tmp_path, need_onnx):
    with pytest.raises(ExportError, match="--dense"):
        export_model(tiny, tmp_path / "a.onnx", format="onnx", input_size="dynamic")
    with pytest.raises(ExportError, match="bfloat16"):
        export_model(tiny, tmp_path / "b.onnx", format="onnx", precision="bf16")
    with pytest.raises(ExportError, match="at least 224"):
        export_model(tiny, tmp_path / "c.onnx", format="onnx", input_size=200, dense=True)
    assert list(tmp_path.iterdir()) == []


def test_onnx_falls_back_to_the_torchscript_exporter(tiny, tmp_path, monkeypatch, need_onnx):
    original = torch.onnx.export

    def dynamo_broken(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("dynamo exporter unavailable")
        return original(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_broken)
    report = export_model(tiny, tmp_path / "ts.onnx", format="onnx")
    assert "TorchScript" in report.exporter and report.max_abs_diff <= TOL
    x = images(3, 224)
    with torch.no_grad():
        assert (ort_run(ort_session(tmp_path / "ts.onnx"), x) - tiny(x)).abs().max() <= TOL
    # the old exporter cannot pool a 12x12 map to 7x7 (pytorch#42653): both failures and a way out are reported
    with pytest.raises(ExportError, match="dynamo exporter unavailable") as info:
        export_model(tiny, tmp_path / "p384.onnx", format="onnx", input_size=384)
    assert "--dense" in str(info.value) and not (tmp_path / "p384.onnx").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("missing", ["onnxruntime", "onnxscript", "onnx"])
def test_missing_onnx_dependency_names_the_extra(
    tiny, tmp_path, monkeypatch, capsys, small_vgg11_file, missing
):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'vggnets\[onnx\]'") as info:
        export_model(tiny, tmp_path / "m.onnx", format="onnx")
    assert missing in str(info.value)
    code = main(["export", "--model", "vgg11", "--weights", str(small_vgg11_file), "--format", "onnx",
                 "-o", str(tmp_path / "m.onnx")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "vggnets[onnx]" in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------------------------------------------------
# TorchScript and torch.export


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_reloads_and_runs_at_two_sizes(tiny, tmp_path):
    out = tmp_path / "vgg11.pt"
    report = export_model(tiny, out, format="torchscript", input_size="dynamic")
    assert report.max_abs_diff <= TOL
    loaded = torch.jit.load(str(out))
    for h, w in ((224, 224), (256, 320)):
        x = images(2, h, w)
        with torch.no_grad():
            assert (loaded(x) - tiny(x)).abs().max() <= TOL


@pytest.mark.parametrize("dense", [False, True], ids=["plain", "dense"])
def test_torch_export_reloads_and_runs_at_two_sizes(tiny, tmp_path, dense):
    out = tmp_path / "vgg11.pt2"
    report = export_model(tiny, out, format="exported", input_size="dynamic", dense=dense)
    assert report.exporter == "torch.export" and report.max_abs_diff <= TOL
    program = torch.export.load(str(out)).module()
    reference = FullyConvolutionalVGG(tiny) if dense else tiny
    for n, h, w in ((1, 224, 224), (3, 384, 288)):
        x = images(n, h, w)
        with torch.no_grad():
            expected = reference(x)
            got = program(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= TOL


def test_torch_export_fixed_size_and_bf16(tiny, tmp_path):
    out = tmp_path / "bf16.pt2"
    report = export_model(tiny, out, format="exported", input_size=256, precision="bf16")
    assert report.input_size == 256 and report.max_abs_diff <= vexport.tolerance("bf16", torch.zeros(1))
    program = torch.export.load(str(out)).module()
    assert program(images(3, 256).bfloat16()).shape == (3, 10)  # dynamic batch
    assert next(tiny.parameters()).dtype == torch.float32


# ------------------------------------------------------------------------------------------------------------
# safetensors


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_safetensors_loads_back_with_weights_path(tiny, tmp_path, precision):
    from safetensors import safe_open

    out = tmp_path / "vgg11.safetensors"
    report = export_model(tiny, out, format="safetensors", precision=precision)
    assert report.input_size is None and report.max_abs_diff is not None
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["model"] == "vgg11" and f.metadata()["precision"] == precision
    rebuilt = vggnets.vgg11(weights=out)  # width and num_classes come from the file
    assert rebuilt.num_classes == 10
    for key, value in tiny.state_dict().items():
        got = rebuilt.state_dict()[key]
        if precision == "fp32" or not value.is_floating_point():
            assert torch.equal(got, value), key
        else:
            assert torch.equal(got, value.half().float()), key
    if precision == "fp32":
        assert report.max_abs_diff == 0.0


def test_safetensors_needs_its_extension(tiny, tmp_path):
    with pytest.raises(ExportError, match=r"\.safetensors"):
        export_model(tiny, tmp_path / "weights.pth", format="safetensors")


# ------------------------------------------------------------------------------------------------------------
# files


def test_never_overwrites_without_force(tiny, tmp_path):
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"precious")
    with pytest.raises(ExportError, match="already exists"):
        export_model(tiny, out, format="safetensors")
    assert out.read_bytes() == b"precious"
    export_model(tiny, out, format="safetensors", overwrite=True)
    assert out.stat().st_size > 1000
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_written_file_has_the_usual_permissions(tiny, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    out = tmp_path / "m.safetensors"  # safetensors itself creates files 0600
    export_model(tiny, out, format="safetensors")
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_verification_writes_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(export_verify, "FP32_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="max abs diff"):
        export_model(tiny, tmp_path / "bad.pt", format="torchscript")
    assert list(tmp_path.iterdir()) == []
    report = export_model(tiny, tmp_path / "bad.pt", format="torchscript", verify=False)
    assert report.max_abs_diff is None and (tmp_path / "bad.pt").exists()


def test_training_flag_is_restored(tmp_path):
    model = vggnets.vgg11(width=0.125, num_classes=10).train()
    report = export_model(model, tmp_path / "m.pt", format="torchscript")
    assert report.max_abs_diff <= TOL  # exported in eval mode (dropout off)
    assert model.training


# ------------------------------------------------------------------------------------------------------------
# command line


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("fmt", "name", "extra"),
    [
        ("onnx", "m.onnx", ["--dense", "--input-size", "256"]),
        ("torchscript", "m.pt", []),
        ("exported", "m.pt2", ["--input-size", "dynamic"]),
        ("safetensors", "m.safetensors", []),
    ],
)
def test_cli_exports_each_format(capsys, tmp_path, small_vgg11_file, fmt, name, extra):
    if fmt == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(module)
    out = tmp_path / name
    base = ["export", "--model", "vgg11", "--weights", small_vgg11_file, "--format", fmt, "-o", out]
    code, stdout, err = run_cli(capsys, *base, *extra)
    assert code == 0, err
    assert out.is_file()
    assert stdout.startswith("vgg11: ") and "MB" in stdout and "max abs diff vs PyTorch" in stdout
    # again: refused without --force (exit 2, one-line error, file untouched)
    before = out.read_bytes()
    code, _, err = run_cli(capsys, *base, *extra)
    assert code == 2 and "already exists" in err and "Traceback" not in err
    assert out.read_bytes() == before
    if fmt in ("torchscript", "safetensors"):  # the quick ones: replaced with --force, JSON report
        code, stdout, err = run_cli(capsys, *base, *extra, "--force", "--json")
        assert code == 0, err
        record = json.loads(stdout)
        assert record["format"] == fmt and record["bytes"] == out.stat().st_size
        assert record["max_abs_diff"] <= TOL and record["model"] == "vgg11"
    if fmt == "safetensors":
        reference = vggnets.vgg11(weights=small_vgg11_file).state_dict()
        rebuilt = vggnets.vgg11(weights=out).state_dict()
        assert all(torch.equal(rebuilt[k], v) for k, v in reference.items())
    assert leftovers(tmp_path) == []


def test_cli_usage_errors(capsys, tmp_path, small_vgg11_file):
    base = ["export", "--model", "vgg11", "--weights", small_vgg11_file]
    code, _, err = run_cli(
        capsys, *base, "--format", "torchscript", "--input-size", "big", "-o", tmp_path / "a.pt"
    )
    assert code == 2 and "--input-size" in err
    code, _, err = run_cli(
        capsys, *base, "--format", "torchscript", "--input-size", "16", "-o", tmp_path / "a.pt"
    )
    assert code == 2 and "at least 32" in err and "Traceback" not in err
    code, _, err = run_cli(
        capsys, *base, "--format", "safetensors", "--dense", "-o", tmp_path / "a.safetensors"
    )
    assert code == 2 and "--dense" in err
    assert list(tmp_path.iterdir()) == []

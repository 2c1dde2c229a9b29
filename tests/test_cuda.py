"""Every GPU path on a CUDA device, marked ``cuda`` (``pytest -m cuda``; benchmarks/device_check.sh runs them):
bf16 compile, CUDA graphs, nvJPEG batch decoding, classify and evaluate on cuda, a training step with amp.
Without CUDA every test here is skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import vggnets
from vggnets.cli import main

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
JPEGS = sorted(EXAMPLES.glob("*.jpg"))


def small_model(seed: int = 0, **kwargs) -> vggnets.VGG:
    torch.manual_seed(seed)
    return vggnets.vgg11_bn(width=0.125, **kwargs).eval()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cuda") / "vgg11_small.pth"
    torch.save(small_model(num_classes=10).state_dict(), path)
    return path


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def crops(n: int) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_engine_on_cuda_agrees_with_eager_fp32(precision):
    model = small_model()
    predictor = vggnets.optimize(model, precision, device="cuda", compile="jit", batch_size=8)
    assert predictor.info.device.startswith("cuda")
    x = crops(8)
    reference = model.cuda()(
        ((x.cuda().float() / 255) - torch.tensor([0.485, 0.456, 0.406], device="cuda")[:, None, None])
        / torch.tensor([0.229, 0.224, 0.225], device="cuda")[:, None, None]
    )
    got = predictor(x.cuda())
    assert got.shape == reference.shape
    assert cosine(got.float(), reference) > (0.9999 if precision == "fp32" else 0.99)


def test_cuda_graphs_replay_gives_the_same_answers():
    """Small batches run through torch.compile's CUDA-graph mode: replays must equal the first run."""
    predictor = vggnets.optimize(small_model(), "bf16", device="cuda", compile="jit", batch_size=4)
    x = crops(4).cuda()
    first = predictor(x).clone()
    for _ in range(3):
        assert torch.equal(predictor(x), first)
    assert torch.equal(
        predictor(crops(3).cuda())[:3].float().isfinite(),
        torch.ones(3, first.shape[1], dtype=torch.bool, device="cuda"),
    )


def test_nvjpeg_batch_decode_matches_the_cpu_decoder():
    from vggnets.io.images import decode_jpegs, read_image, read_jpeg_or_image

    read = [(path, *read_jpeg_or_image(path, keep_jpeg=True)) for path in JPEGS]
    jpegs = [(path, data) for path, data, is_jpeg in read if is_jpeg]
    assert jpegs, "the bundled photos include JPEGs the batched decoder takes"
    decoded = decode_jpegs([data for _, data in jpegs], "cuda")
    for image, (path, _) in zip(decoded, jpegs):
        cpu = read_image(path)
        assert image is not None and image.is_cuda and image.shape == cpu.shape
        assert (image.cpu().int() - cpu.int()).abs().float().mean() < 2.0  # decoders may round differently


def test_classify_on_cuda_equals_cpu(small_file, capsys):
    def run(device: str, *extra: str) -> dict:
        code = main(
            [
                "classify",
                str(EXAMPLES),
                "--model",
                "vgg11_bn",
                "--weights",
                str(small_file),
                "--device",
                device,
                "--format",
                "json",
                "-q",
                *extra,
            ]
        )
        out = capsys.readouterr().out
        assert code == 0
        return json.loads(out)

    cpu, gpu = run("cpu"), run("cuda", "--decode", "gpu")
    for a, b in zip(cpu["results"], gpu["results"]):
        assert a["file"] == b["file"]
        assert a["predictions"][0]["index"] == b["predictions"][0]["index"]


def test_evaluate_on_cuda_equals_cpu(small_file, tmp_path, capsys):
    root = tmp_path / "val"
    for i, photo in enumerate(JPEGS[:2]):
        folder = root / f"class{i}"
        folder.mkdir(parents=True)
        shutil.copy(photo, folder / photo.name)
    results = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.json"
        code = main(
            [
                "evaluate",
                str(root),
                "--model",
                "vgg11_bn",
                "--weights",
                str(small_file),
                "--device",
                device,
                "--output",
                str(out),
                "--workers",
                "0",
                "-q",
            ]
        )
        capsys.readouterr()
        assert code == 0
        results[device] = json.loads(out.read_text())["rows"][0]
    assert results["cpu"]["top1_acc"] == results["cuda"]["top1_acc"]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_training_step_with_amp_on_cuda_learns(amp):
    from vggnets.training.epochs import train_one_epoch

    torch.manual_seed(0)
    model = vggnets.vgg11_bn(width=0.125, num_classes=4).cuda()
    x = torch.randn(16, 3, 32, 32, device="cuda")
    y = torch.arange(16, device="cuda") % 4
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    losses = [
        train_one_epoch(model, [(x, y)] * 4, optimizer, amp=amp, scaler=scaler)["loss"] for _ in range(5)
    ]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]

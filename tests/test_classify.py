"""classify_files with batched JPEG decoding on the model's device (nvJPEG on CUDA): the same predictions and the same
errors as decoding in the loader. On a machine without a GPU the batched path runs with device "cpu", which exercises
all of its logic (routing, one call per batch, fallbacks) with torchvision's CPU decoder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vggnets
from vggnets.core.transforms import ImageClassification
from vggnets.errors import ImageError
from vggnets.inference.classify import classify_files
from vggnets.io import images as data
from vggnets.io.images import decode_jpegs, read_image, read_jpeg_or_image


def photo(seed: int, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A smooth random image (JPEG-friendly) of ``size`` (width, height)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BILINEAR).convert(mode)


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEGs of several sizes, a grey one, an EXIF-rotated one, a CMYK one, a PNG, and three broken files."""
    root = tmp_path_factory.mktemp("images")
    for i, size in enumerate([(80, 60), (64, 96), (120, 120), (70, 90), (100, 75)]):
        (root / f"rgb{i}.jpg").write_bytes(jpeg_bytes(photo(i, size)))
    (root / "grey.jpg").write_bytes(jpeg_bytes(photo(7, (90, 70), "L")))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    (root / "rotated.jpg").write_bytes(jpeg_bytes(photo(8, (96, 64)), exif=exif.tobytes()))
    (root / "cmyk.jpg").write_bytes(jpeg_bytes(photo(9, (80, 80), "CMYK")))
    photo(10, (70, 70)).save(root / "plain.png")
    whole = jpeg_bytes(photo(11, (90, 90)))
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "garbage.jpg").write_bytes(whole[:200] + bytes(range(256)) * 8)
    (root / "notes.jpg").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return vggnets.vgg11(width=1 / 16, num_classes=10).eval()


def run(model, files, decode_device=None, batch_size=4, workers=0):
    transform = ImageClassification(crop_size=48, resize_size=56)
    labels = [str(i) for i in range(10)]
    return list(
        classify_files(
            model,
            files,
            transform=transform,
            labels=labels,
            batch_size=batch_size,
            workers=workers,
            decode_device=decode_device,
        )
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_batched_decode_gives_the_same_predictions_and_errors(tiny, folder, workers):
    files = sorted(folder.iterdir())
    usual = run(tiny, files)
    batched = run(tiny, files, decode_device="cpu", workers=workers)
    assert [p.file for p in batched] == [str(f) for f in files]
    for a, b in zip(usual, batched, strict=True):
        assert a.error == b.error, a.file
        assert a.indices == b.indices, a.file
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-5, atol=1e-6)
    errors = {Path(p.file).name for p in batched if p.error}
    assert errors == {"truncated.jpg", "garbage.jpg", "notes.jpg"}


def test_jpegs_of_a_batch_are_decoded_in_one_call(tiny, folder, monkeypatch):
    calls: list[int] = []
    real = data.decode_jpegs

    def counting(encoded, device):
        calls.append(len(encoded))
        return real(encoded, device)

    monkeypatch.setattr(data, "decode_jpegs", counting)
    files = [folder / f"rgb{i}.jpg" for i in range(5)] + [folder / "grey.jpg", folder / "plain.png"]
    results = run(tiny, files, decode_device="cpu", batch_size=4)
    assert all(r.error is None for r in results)
    assert calls == [4, 2]  # rgb0-3; then rgb4 and grey (the PNG is decoded by the loader)


def test_read_jpeg_or_image_keeps_only_what_a_batched_decoder_can_take(folder):
    for name in ("rgb0.jpg", "grey.jpg"):
        encoded, is_jpeg = read_jpeg_or_image(folder / name)
        assert is_jpeg and encoded.dtype == torch.uint8 and encoded.ndim == 1
        assert encoded.numel() == (folder / name).stat().st_size
        decoded, is_jpeg = read_jpeg_or_image(folder / name, keep_jpeg=False)
        assert not is_jpeg and torch.equal(decoded, read_image(folder / name))
    for name in (
        "rotated.jpg",
        "cmyk.jpg",
        "plain.png",
    ):  # need EXIF rotation, colour conversion, another decoder
        decoded, is_jpeg = read_jpeg_or_image(folder / name)
        assert not is_jpeg and torch.equal(decoded, read_image(folder / name))
    with pytest.raises(ImageError, match="decompression bomb"):
        read_jpeg_or_image(folder / "rgb0.jpg", max_pixels=100)
    with pytest.raises(ImageError, match="not an image"):
        read_jpeg_or_image(folder / "notes.jpg")
    with pytest.raises(ImageError, match="no such file"):
        read_jpeg_or_image(folder / "missing.jpg")


def test_decode_jpegs_isolates_a_bad_image(folder):
    good = [read_jpeg_or_image(folder / f"rgb{i}.jpg")[0] for i in range(2)]
    bad = torch.frombuffer(bytearray(b"\xff\xd8\xff\xe0" + bytes(500)), dtype=torch.uint8)
    decoded = decode_jpegs([good[0], bad, good[1]], "cpu")
    assert decoded[1] is None
    for i, image in zip((0, 1), (decoded[0], decoded[2]), strict=True):
        assert torch.equal(image, read_image(folder / f"rgb{i}.jpg"))

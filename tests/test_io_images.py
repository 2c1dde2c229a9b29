"""Tests for vggnets.io.images (also importable as vggnets.data): image decoding (read_image) and input collection (collect_images)."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from vggnets.errors import ImageError, VggnetsError
from vggnets.io import images as data
from vggnets.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, collect_images, read_image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
EXIF_ORIENTATION = 0x0112


# ----------------------------------------------------------------------------------------------------
# helpers


def save(path: Path, img: Image.Image, fmt: str | None = None, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


def header(path: Path) -> SimpleNamespace:
    """What Pillow says about a file (format, mode, size, frames), with the file closed again."""
    with Image.open(path) as im:
        return SimpleNamespace(
            format=im.format, mode=im.mode, size=im.size, n_frames=getattr(im, "n_frames", 1)
        )


def random_rgb(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def chw(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) numpy -> (3, H, W) tensor, the layout read_image returns."""
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1)


def blocky(h_blocks: int = 2, w_blocks: int = 3, seed: int = 3) -> np.ndarray:
    """Black/white 8x8 blocks, different under every flip and rotation (JPEG keeps it almost exact)."""
    rng = np.random.default_rng(seed)
    while True:
        bits = rng.integers(0, 2, (h_blocks, w_blocks), dtype=np.uint8)
        variants = {bits.tobytes()}
        for k in range(1, 4):
            variants.add(np.rot90(bits, k).tobytes())
        if (
            len(variants) == 4
            and not np.array_equal(bits, bits[:, ::-1])
            and not np.array_equal(bits, bits[::-1])
        ):
            break
    arr = np.kron(bits, np.ones((8, 8), dtype=np.uint8)) * 255
    return np.repeat(arr[:, :, None], 3, axis=2)


def assert_image_error(path: Path, *fragments: str, **kw) -> str:
    with pytest.raises(ImageError) as info:
        read_image(path, **kw)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, msg
    assert isinstance(info.value, VggnetsError)
    return msg


def png_with_size(png: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR of a PNG to claim another size (with a valid CRC), leaving the pixel data alone."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


@pytest.fixture(scope="module")
def big_png_bytes() -> bytes:
    """A real 10000x10000 1-bit PNG of zeros: 100,000,000 pixels in about 12 KB."""
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------
# formats


def test_png_exact_pixels(tmp_path):
    arr = random_rgb()
    out = read_image(save(tmp_path / "x.png", Image.fromarray(arr)))
    assert out.shape == (3, 6, 8) and out.dtype == torch.uint8 and out.is_contiguous()
    assert torch.equal(out, chw(arr))


def test_accepts_str_and_path(tmp_path):
    arr = random_rgb()
    p = save(tmp_path / "x.png", Image.fromarray(arr))
    assert torch.equal(read_image(str(p)), read_image(p))


def test_jpeg_close_to_source(tmp_path):
    arr = np.zeros((16, 24, 3), np.uint8)
    arr[:, :8] = (220, 30, 40)
    arr[:, 8:16] = (20, 200, 60)
    arr[:, 16:] = (30, 40, 210)
    out = read_image(save(tmp_path / "x.jpg", Image.fromarray(arr), quality=95, subsampling=0))
    assert out.shape == (3, 16, 24) and out.dtype == torch.uint8
    diff = (out.int() - chw(arr).int()).abs()
    assert diff.float().mean() < 4 and diff.max() < 40


def test_webp_lossless_exact(tmp_path):
    arr = random_rgb(seed=1)
    out = read_image(save(tmp_path / "x.webp", Image.fromarray(arr), lossless=True))
    assert torch.equal(out, chw(arr))


def test_gif_single_frame(tmp_path):
    arr = np.zeros((6, 8, 3), np.uint8)
    arr[:3] = (255, 0, 0)
    arr[3:] = (0, 0, 255)
    out = read_image(save(tmp_path / "x.gif", Image.fromarray(arr)))
    assert out.shape == (3, 6, 8)
    assert torch.equal(out, chw(arr))


def test_animated_gif_gives_first_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_decode_pillow", lambda *a, **k: pytest.fail("torchvision should decode GIF"))
    frames = [Image.new("RGB", (8, 6), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert header(p).n_frames == 3
    out = read_image(p)
    assert out.shape == (3, 6, 8)
    assert out[0].eq(255).all() and out[1:].eq(0).all()


def test_animated_webp_falls_back_to_pillow_first_frame(tmp_path):
    # torchvision refuses animated WEBP; Pillow decodes the first frame.
    frames = [Image.new("RGB", (8, 6), c) for c in [(0, 255, 0), (255, 0, 0)]]
    p = tmp_path / "anim.webp"
    frames[0].save(p, save_all=True, append_images=frames[1:], lossless=True)
    out = read_image(p)
    assert out.shape == (3, 6, 8)
    assert torch.equal(out[:, 0, 0], torch.tensor([0, 255, 0], dtype=torch.uint8))


@pytest.mark.parametrize("suffix, fmt", [(".bmp", "BMP"), (".tif", "TIFF"), (".ppm", "PPM"), (".tga", "TGA")])
def test_pillow_only_formats_exact(tmp_path, suffix, fmt):
    arr = random_rgb(seed=2)
    out = read_image(save(tmp_path / f"x{suffix}", Image.fromarray(arr), fmt))
    assert out.shape == (3, 6, 8) and out.dtype == torch.uint8
    assert torch.equal(out, chw(arr))


@pytest.mark.parametrize(
    "suffix, kw", [(".jpg", {"quality": 95}), (".png", {}), (".webp", {"lossless": True})]
)
def test_torchvision_formats_do_not_need_pillow_decoding(tmp_path, monkeypatch, suffix, kw):
    arr = random_rgb(seed=4)
    p = save(tmp_path / f"x{suffix}", Image.fromarray(arr), **kw)

    def no_pillow(*a, **k):
        raise AssertionError("Pillow decode used for a torchvision format")

    monkeypatch.setattr(data, "_decode_pillow", no_pillow)
    assert read_image(p).shape == (3, 6, 8)


def test_gif_goes_through_torchvision(tmp_path, monkeypatch):
    p = save(tmp_path / "x.gif", Image.new("RGB", (8, 6), (255, 0, 0)))
    monkeypatch.setattr(data, "_decode_pillow", lambda *a, **k: pytest.fail("Pillow used for GIF"))
    assert read_image(p)[0].eq(255).all()


@pytest.mark.parametrize("suffix, fmt", [(".bmp", "BMP"), (".tif", "TIFF")])
def test_pillow_formats_do_not_call_torchvision(tmp_path, monkeypatch, suffix, fmt):
    arr = random_rgb(seed=5)
    p = save(tmp_path / f"x{suffix}", Image.fromarray(arr), fmt)
    monkeypatch.setattr(data, "decode_image", lambda *a, **k: pytest.fail("torchvision used"))
    assert torch.equal(read_image(p), chw(arr))


def test_torchvision_failure_falls_back_to_pillow(tmp_path, monkeypatch):
    arr = random_rgb(seed=6)
    p = save(tmp_path / "x.png", Image.fromarray(arr))

    def broken(*a, **k):
        raise RuntimeError("simulated torchvision decoder failure")

    monkeypatch.setattr(data, "decode_image", broken)
    assert torch.equal(read_image(p), chw(arr))


@pytest.mark.parametrize("suffix, kw", [(".png", {}), (".jpg", {"quality": 100}), (".bmp", {}), (".tif", {})])
def test_grayscale_gives_three_equal_channels(tmp_path, suffix, kw):
    gray = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))  # 8x8, columns 0, 32, ..., 224
    out = read_image(save(tmp_path / f"g{suffix}", Image.fromarray(gray, "L"), **kw))
    assert out.shape == (3, 8, 8)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    tol = 2 if suffix == ".jpg" else 0
    assert (out[0].int() - torch.from_numpy(gray).int()).abs().max() <= tol


def test_one_bit_image_is_black_and_white(tmp_path):
    bits = np.zeros((4, 8), bool)
    bits[:, 4:] = True
    img = Image.fromarray(bits.astype(np.uint8) * 255).convert("1")
    assert img.mode == "1"
    out = read_image(save(tmp_path / "b.bmp", img))
    assert out[:, :, :4].eq(0).all() and out[:, :, 4:].eq(255).all()


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_rgba_drops_alpha(tmp_path, suffix):
    arr = random_rgb(seed=7)
    alpha = np.full((6, 8, 1), 128, np.uint8)
    rgba = Image.fromarray(np.concatenate([arr, alpha], axis=2), "RGBA")
    kw = {"lossless": True, "exact": True} if suffix == ".webp" else {}
    out = read_image(save(tmp_path / f"x{suffix}", rgba, **kw))
    assert out.shape == (3, 6, 8)
    assert torch.equal(out, chw(arr))


def test_la_gives_gray_rgb(tmp_path):
    la = Image.fromarray(
        np.stack([np.full((4, 5), 77, np.uint8), np.full((4, 5), 10, np.uint8)], axis=2), "LA"
    )
    out = read_image(save(tmp_path / "la.png", la))
    assert out.shape == (3, 4, 5) and out.eq(77).all()


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".gif"])
def test_palette_image_gives_palette_colours(tmp_path, suffix):
    p_img = Image.new("P", (6, 4))
    p_img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    idx = np.array([[0, 1, 2, 0, 1, 2]] * 4, np.uint8)
    p_img.putdata(idx.flatten().tolist())
    out = read_image(save(tmp_path / f"p{suffix}", p_img))
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    assert torch.equal(out, chw(colours[idx]))


def test_palette_with_transparency(tmp_path):
    p_img = Image.new("P", (4, 4), 1)
    p_img.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    p_img.info["transparency"] = 0
    out = read_image(save(tmp_path / "pt.png", p_img, transparency=0))
    assert torch.equal(out[:, 0, 0], torch.tensor([10, 20, 30], dtype=torch.uint8))


def test_cmyk_jpeg_close_to_source_colour(tmp_path):
    cmyk = Image.new("RGB", (16, 16), (200, 60, 30)).convert("CMYK")
    p = save(tmp_path / "cmyk.jpg", cmyk, quality=95)
    assert header(p).mode == "CMYK"
    out = read_image(p)
    assert out.shape == (3, 16, 16)
    expected = torch.tensor([200, 60, 30]).view(3, 1, 1)
    assert (out.int() - expected).abs().max() <= 4


def test_cmyk_jpeg_through_pillow_fallback(tmp_path, monkeypatch):
    p = save(tmp_path / "cmyk.jpg", Image.new("RGB", (16, 16), (200, 60, 30)).convert("CMYK"), quality=95)
    monkeypatch.setattr(data, "decode_image", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("nope")))
    out = read_image(p)
    assert (out.int() - torch.tensor([200, 60, 30]).view(3, 1, 1)).abs().max() <= 4


def test_16bit_png_scaled_to_8bit(tmp_path):
    arr = np.array([[65535, 0, 257 * 100, 257 * 200]], np.uint16)
    p = save(tmp_path / "deep.png", Image.fromarray(arr))
    assert header(p).mode == "I;16"
    out = read_image(p)
    assert out.dtype == torch.uint8 and out.shape == (3, 1, 4)
    assert out[0].tolist() == [[255, 0, 100, 200]]
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_16bit_png_pillow_fallback_scales_the_same(tmp_path, monkeypatch):
    arr = np.array([[65535, 0, 257 * 100, 257 * 200]], np.uint16)
    p = save(tmp_path / "deep.png", Image.fromarray(arr))
    expected = read_image(p)
    monkeypatch.setattr(data, "decode_image", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("nope")))
    assert torch.equal(read_image(p), expected)


def test_16bit_tiff_scaled_to_8bit(tmp_path):
    arr = np.array([[65535, 0, 257 * 100]], np.uint16)
    p = save(tmp_path / "deep.tif", Image.fromarray(arr))
    assert header(p).mode.startswith("I;16")
    assert read_image(p)[0].tolist() == [[255, 0, 100]]


# ----------------------------------------------------------------------------------------------------
# EXIF orientation


def test_exif_orientation_6_rotates_jpeg(tmp_path):
    arr = np.zeros((16, 24, 3), np.uint8)  # 24 wide, 16 tall; an 8x8 white block in the top-left corner
    arr[:8, :8] = 255
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    p = save(tmp_path / "rot.jpg", Image.fromarray(arr), exif=exif, quality=100)
    out = read_image(p)
    assert out.shape == (3, 24, 16)  # displayed upright: 16 wide, 24 tall
    # Rotating clockwise moves the top-left corner to the top-right.
    assert out[:, :8, -8:].float().mean() > 240
    assert out[:, :8, :8].float().mean() < 15
    assert out[:, -8:, :].float().mean() < 15


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    "suffix, kw",
    [
        (".jpg", {"quality": 100, "subsampling": 0}),
        (".png", {}),
        (".webp", {"lossless": True}),
        (".tif", {}),
    ],
)
def test_exif_orientation_matches_pillow_exif_transpose(tmp_path, orientation, suffix, kw):
    arr = blocky()
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    kw = {"tiffinfo": {EXIF_ORIENTATION: orientation}} if suffix == ".tif" else {**kw, "exif": exif}
    p = save(tmp_path / f"o{orientation}{suffix}", Image.fromarray(arr), **kw)
    with Image.open(p) as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    if orientation in (5, 6, 7, 8):
        assert ref.shape[:2] == arr.shape[1::-1]  # the reference really is transposed
    out = read_image(p)
    assert out.shape == (3, *ref.shape[:2])
    # binarize: the 8x8-aligned black/white blocks survive JPEG at quality 100
    assert torch.equal(out > 127, chw(ref) > 127)


def test_apply_orientation_helper_matches_pillow():
    arr = random_rgb(5, 7, seed=9)
    for orientation in range(1, 9):
        img = Image.fromarray(arr)
        exif = img.getexif()
        exif[EXIF_ORIENTATION] = orientation
        img.info["exif"] = exif.tobytes()
        ref = np.asarray(ImageOps.exif_transpose(img))
        got = data._apply_orientation(chw(arr), orientation)
        assert torch.equal(got, chw(ref)), orientation


# ----------------------------------------------------------------------------------------------------
# errors


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    assert_image_error(p, "file is empty")


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 10)
    assert_image_error(p, "not an image file (could not identify format)")


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.png"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    assert_image_error(p, "not an image file")


@pytest.mark.parametrize("suffix, kw", [(".jpg", {"quality": 90}), (".png", {}), (".webp", {}), (".gif", {})])
def test_truncated_file(tmp_path, suffix, kw):
    full = save(tmp_path / f"full{suffix}", Image.fromarray(random_rgb(64, 64, seed=8)), **kw).read_bytes()
    p = tmp_path / f"cut{suffix}"
    p.write_bytes(full[: len(full) // 2])
    assert_image_error(p, "truncated or corrupt image data")


def test_truncated_bmp_and_tiff(tmp_path):
    for suffix in (".bmp", ".tif"):
        full = save(tmp_path / f"full{suffix}", Image.fromarray(random_rgb(64, 64, seed=8))).read_bytes()
        p = tmp_path / f"cut{suffix}"
        p.write_bytes(full[: len(full) // 2])
        assert_image_error(p, "truncated or corrupt image data")


def test_corrupt_png_header(tmp_path):
    good = save(tmp_path / "good.png", Image.fromarray(random_rgb())).read_bytes()
    p = tmp_path / "bad.png"
    p.write_bytes(good[:20] + b"\xff" * 13 + good[33:])  # IHDR garbled, CRC wrong
    assert_image_error(p, "truncated or corrupt image data", "PNG")


def test_png_signature_only(tmp_path):
    p = tmp_path / "stub.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert_image_error(p, "truncated or corrupt image data")


def test_missing_path(tmp_path):
    assert_image_error(tmp_path / "nope.jpg", "no such file")


def test_missing_parent_is_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert_image_error(f / "x.jpg", "no such file")


def test_directory(tmp_path):
    d = tmp_path / "dir.jpg"
    d.mkdir()
    assert_image_error(d, "is a directory")


# ----------------------------------------------------------------------------------------------------
# decompression-bomb guard


def test_max_pixels_boundary(tmp_path):
    p = save(tmp_path / "x.png", Image.fromarray(random_rgb(10, 20)))  # 20 wide x 10 tall = 200 pixels
    assert read_image(p, max_pixels=200).shape == (3, 10, 20)
    assert read_image(p, max_pixels=None).shape == (3, 10, 20)
    msg = assert_image_error(p, "image is 20x10 = 200 pixels, above the limit of 199", max_pixels=199)
    assert "possible decompression bomb" in msg and "--max-pixels" in msg


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".tif", ".gif"])
def test_limit_checked_before_any_decoding(tmp_path, monkeypatch, suffix):
    p = save(tmp_path / f"x{suffix}", Image.fromarray(random_rgb(10, 20)))
    monkeypatch.setattr(data, "decode_image", lambda *a, **k: pytest.fail("torchvision decoded"))
    monkeypatch.setattr(data, "_decode_pillow", lambda *a, **k: pytest.fail("Pillow decoded"))
    assert_image_error(p, "200 pixels", "limit of 100", max_pixels=100)


def test_real_header_above_default_limit(tmp_path, big_png_bytes):
    p = tmp_path / "bomb.png"
    p.write_bytes(big_png_bytes)
    assert p.stat().st_size < 100_000
    assert DEFAULT_MAX_PIXELS == 89_478_485
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning leaks out either
        msg = assert_image_error(
            p,
            "image is 10000x10000 = 100,000,000 pixels, above the limit of 89,478,485",
            "(possible decompression bomb)",
        )
    assert "raise --max-pixels if you trust it" in msg


def test_header_above_twice_pillow_limit_gives_our_error(tmp_path, big_png_bytes):
    # 400M pixels: Pillow's own Image.open would raise DecompressionBombError; we must report our message.
    p = tmp_path / "bigger.png"
    p.write_bytes(png_with_size(big_png_bytes, 20_000, 20_000))
    before = Image.MAX_IMAGE_PIXELS
    assert_image_error(p, "image is 20000x20000 = 400,000,000 pixels, above the limit of 89,478,485")
    assert_image_error(p, "above the limit of 1,000", max_pixels=1000)
    assert before == Image.MAX_IMAGE_PIXELS


def test_own_limit_overrides_pillow_global_limit(tmp_path, monkeypatch):
    # Pillow's global limit far below the image size: max_pixels alone decides; the global is left as it was.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    arr = random_rgb(20, 20, seed=10)  # 400 pixels > 2 * 50: Pillow alone would refuse to open it
    p = save(tmp_path / "x.bmp", Image.fromarray(arr))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(read_image(p, max_pixels=None), chw(arr))
        assert torch.equal(read_image(p, max_pixels=1000), chw(arr))
    assert Image.MAX_IMAGE_PIXELS == 50
    assert_image_error(p, "20x20 = 400 pixels", max_pixels=399)


# ----------------------------------------------------------------------------------------------------
# bundled example photos

EXPECTED_EXAMPLES = {
    "astronaut_eileen_collins.jpg": (512, 512),
    "cameraman_grayscale.png": (512, 512),
    "chelsea_cat.png": (300, 451),
    "coffee_cup.jpg": (400, 600),
    "rocket_launch.jpg": (427, 640),
}


def test_example_folder_holds_only_images_and_licences():
    names = sorted(p.name for p in EXAMPLES.iterdir())
    assert names == sorted([*EXPECTED_EXAMPLES, "LICENSES.md"])
    files, problems = collect_images([EXAMPLES])
    assert problems == []
    assert [f.name for f in files] == sorted(EXPECTED_EXAMPLES)
    licences = (EXAMPLES / "LICENSES.md").read_text()
    for name in EXPECTED_EXAMPLES:
        assert f"`{name}`" in licences
    assert any(n.endswith(".png") for n in EXPECTED_EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXPECTED_EXAMPLES))
def test_example_photo_decodes(name):
    out = read_image(EXAMPLES / name)
    assert out.dtype == torch.uint8
    assert out.shape == (3, *EXPECTED_EXAMPLES[name])
    assert out.float().std() > 20  # a real photo, not a blank
    if "grayscale" in name:
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    else:
        assert not torch.equal(out[0], out[2])
    assert (EXAMPLES / name).stat().st_size < 300_000


# ----------------------------------------------------------------------------------------------------
# collect_images


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    """tmp_path/d with images, non-images, hidden entries and a subfolder; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "d"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / ".hiddendir").mkdir()
    for rel in [
        "b.jpg",
        "a.PNG",
        "c.txt",
        "noext",
        ".hidden.jpg",
        "sub/e.jpeg",
        "sub/deeper/f.webp",
        ".hiddendir/g.jpg",
    ]:
        (d / rel).write_bytes(b"x")
    return d


def names(files: list[Path]) -> list[str]:
    return [p.as_posix() for p in files]


def test_image_suffixes():
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} <= IMAGE_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)
    assert ".txt" not in IMAGE_SUFFIXES and ".md" not in IMAGE_SUFFIXES


def test_directory_non_recursive(tree):
    files, problems = collect_images(["d"])
    assert names(files) == ["d/a.PNG", "d/b.jpg"]  # sorted; upper-case suffix kept; .txt/noext/hidden skipped
    assert problems == []
    assert all(isinstance(p, Path) for p in files)


def test_directory_recursive(tree):
    files, problems = collect_images(["d"], recursive=True)
    assert names(files) == ["d/a.PNG", "d/b.jpg", "d/sub/deeper/f.webp", "d/sub/e.jpeg"]
    assert problems == []


def test_explicit_files_kept_in_given_order_even_unknown_suffix_or_hidden(tree):
    files, problems = collect_images(["d/c.txt", "d/b.jpg", "d/noext", "d/.hidden.jpg"])
    assert names(files) == ["d/c.txt", "d/b.jpg", "d/noext", "d/.hidden.jpg"]
    assert problems == []


def test_inputs_keep_their_order_and_duplicates_are_dropped(tree):
    files, problems = collect_images(["d/sub", "d/b.jpg", "d", "./d/b.jpg", "d/../d/a.PNG", tree / "b.jpg"])
    assert names(files) == ["d/sub/e.jpeg", "d/b.jpg", "d/a.PNG"]
    assert problems == []


def test_recursive_dir_after_subdir_does_not_duplicate(tree):
    files, _ = collect_images(["d/sub", "d"], recursive=True)
    assert names(files) == ["d/sub/deeper/f.webp", "d/sub/e.jpeg", "d/a.PNG", "d/b.jpg"]


def test_glob_patterns(tree):
    files, problems = collect_images(["d/*.jpg"])
    assert names(files) == ["d/b.jpg"]  # .hidden.jpg not matched by *
    files, problems = collect_images(["d/*"])
    assert names(files) == ["d/a.PNG", "d/b.jpg"]  # images only, case-insensitive suffix
    files, problems = collect_images(["d/**/*.jp*g"], recursive=True)
    assert names(files) == ["d/b.jpg", "d/sub/e.jpeg"]
    files, problems = collect_images(["d/s?b/*.jpeg", "d/[ab].*"])
    assert names(files) == ["d/sub/e.jpeg", "d/a.PNG", "d/b.jpg"]
    assert problems == []


def test_problems_reported(tree, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only_sub" / "inner").mkdir(parents=True)
    (tmp_path / "only_sub" / "inner" / "x.jpg").write_bytes(b"x")
    files, problems = collect_images(
        ["missing.jpg", "empty", "only_sub", "nomatch/*.jpg", "d/*.txt", "d/b.jpg"]
    )
    assert names(files) == ["d/b.jpg"]
    assert problems == [
        ("missing.jpg", "no such file or directory: missing.jpg"),
        ("empty", "no images found in directory empty"),
        ("only_sub", "no images found in directory only_sub (use --recursive for subfolders)"),
        ("nomatch/*.jpg", "pattern matched no files: nomatch/*.jpg"),
        ("d/*.txt", "pattern matched no image files: d/*.txt"),
    ]
    files, problems = collect_images(["only_sub"], recursive=True)
    assert names(files) == ["only_sub/inner/x.jpg"] and problems == []


def test_directory_with_only_hidden_or_non_images(tmp_path):
    d = tmp_path / "misc"
    d.mkdir()
    (d / ".secret.jpg").write_bytes(b"x")
    (d / "readme.md").write_text("hi")
    files, problems = collect_images([d])
    assert files == [] and problems == [(str(d), f"no images found in directory {d}")]


def test_symlink_loop_does_not_hang(tree):
    (tree / "sub" / "loop").symlink_to(tree, target_is_directory=True)
    files, _ = collect_images(["d"], recursive=True)
    assert names(files) == ["d/a.PNG", "d/b.jpg", "d/sub/deeper/f.webp", "d/sub/e.jpeg"]


def test_collected_examples_decode():
    files, problems = collect_images([EXAMPLES / "*"])
    assert problems == [] and len(files) == len(EXPECTED_EXAMPLES)
    for f in files:
        assert read_image(f).shape[0] == 3


def test_symlinked_subdirectories_are_followed(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    Image.new("RGB", (8, 8)).save(store / "x.png")
    root = tmp_path / "root"
    root.mkdir()
    try:
        (root / "linked").symlink_to(store, target_is_directory=True)
    except OSError:
        pytest.skip("symlinks not supported")
    files, problems = collect_images([root], recursive=True)
    assert [f.name for f in files] == ["x.png"] and problems == []

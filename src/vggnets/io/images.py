"""Image decoding and input collection.

:func:`read_image` turns any common image file into a ``uint8`` RGB tensor of shape ``(3, H, W)`` with the
EXIF orientation applied. JPEG, PNG, WEBP and GIF are decoded by ``torchvision.io``; everything else (BMP,
TIFF, PPM, TGA, AVIF, JPEG 2000, ...) and anything torchvision refuses (animated WEBP, an unusual JPEG) goes
through Pillow. Before any pixel is decoded, the image size is read from the header and images above
``max_pixels`` are refused (decompression-bomb guard). Every failure is an
:class:`~vggnets.errors.ImageError` whose message names the file and says what is wrong.

:func:`collect_images` expands the files, directories and glob patterns given on a command line into a
de-duplicated list of image files in a stable order.
"""

from __future__ import annotations

import errno
import glob
import io
import os
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import to_dtype

from ..errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "check_resized_size",
    "collect_images",
    "decode_image_bytes",
    "decode_jpegs",
    "read_image",
    "read_jpeg_or_image",
]

#: Pillow's default decompression-bomb threshold (89,478,485 pixels, ~0.25 GB as 24-bit RGB), captured at
#: import so that later changes to ``PIL.Image.MAX_IMAGE_PIXELS`` elsewhere do not change vggnets' default.
DEFAULT_MAX_PIXELS: int = 89_478_485 if Image.MAX_IMAGE_PIXELS is None else int(Image.MAX_IMAGE_PIXELS)

#: Suffixes (lowercase, with the dot) that directory and glob expansion treat as images.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".apng",
        ".webp",
        ".gif",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".pbm",
        ".pgm",
        ".ppm",
        ".pnm",
        ".tga",
        ".avif",
        ".jp2",
        ".j2k",
        ".jpx",
        ".qoi",
    }
)

# Formats (as Pillow names them) that torchvision.io.decode_image decodes. MPO is a multi-picture JPEG from
# cameras; its first picture is an ordinary JPEG stream.
_TORCHVISION_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF"})
# Formats whose EXIF orientation torchvision applies itself (it ignores it in WEBP).
_TORCHVISION_ORIENTS = frozenset({"JPEG", "MPO", "PNG"})

_EXIF_ORIENTATION = 0x0112
_TV_DEPRECATION = r"The image decoding and encoding capabilities of TorchVision are deprecated"
# File signatures, to tell "not an image" from "an image whose header is damaged".
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_GLOB_MAGIC = re.compile(r"[*?[]")
_PIL_LIMIT_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------------------------
# Decoding


def read_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Decode any common image file to a uint8 RGB tensor of shape (3, H, W), EXIF orientation applied.

    Grayscale images give three equal channels; an alpha channel is dropped (not composited); 16-bit images
    are scaled to 8 bits (65535 -> 255); animations give their first frame. ``max_pixels`` (width x height,
    read from the header before decoding) guards against decompression bombs; ``None`` disables the guard.

    Raises:
        ImageError: the file is missing, unreadable, empty, not an image, truncated or corrupt, or too large.
    """
    return read_jpeg_or_image(path, max_pixels=max_pixels, keep_jpeg=False)[0]


def read_jpeg_or_image(
    path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, keep_jpeg: bool = True
) -> tuple[torch.Tensor, bool]:
    """Read a file once, returning (tensor, is_jpeg). With ``keep_jpeg``, a JPEG that a batched decoder (nvJPEG on a
    GPU) can take as it is (8-bit RGB or grey, no EXIF rotation) comes back undecoded: its bytes as a 1-D uint8 tensor
    for :func:`decode_jpegs`, and True. Any other image comes back decoded exactly as :func:`read_image` gives it, and
    False.

    Raises:
        ImageError: as :func:`read_image`.
    """
    name = str(path)
    return _decode_buffer(_read_bytes(Path(path), name), name, max_pixels, keep_jpeg)


def decode_image_bytes(
    data: bytes | bytearray | memoryview,
    name: str = "<bytes>",
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """:func:`read_image` for a file already in memory (e.g. a Ray Data ``bytes`` column): the same decoding, checks
    and messages, each starting with ``name`` (the file's path when known).

    Raises:
        ImageError: as :func:`read_image` (``name: file is empty`` for no bytes).
    """
    buf = bytearray(data)  # a writable copy, so torch can wrap it without a warning
    if not buf:
        raise ImageError(f"{name}: file is empty")
    return _decode_buffer(buf, name, max_pixels, keep_jpeg=False)[0]


def _decode_buffer(
    data: bytearray, name: str, max_pixels: int | None, keep_jpeg: bool
) -> tuple[torch.Tensor, bool]:
    """The body of :func:`read_jpeg_or_image` once the bytes are in memory."""
    with _open_header(data, name) as im:
        _check_max_pixels(im, name, max_pixels)
        fmt = im.format
        if keep_jpeg and fmt == "JPEG" and im.mode in ("RGB", "L") and _exif_orientation(im) == 1:
            return torch.frombuffer(data, dtype=torch.uint8), True
        if fmt in _TORCHVISION_FORMATS:
            orientation = 1 if fmt in _TORCHVISION_ORIENTS else _exif_orientation(im)
            tensor = _decode_torchvision(data, apply_exif=fmt in _TORCHVISION_ORIENTS)
            if tensor is not None:
                return _apply_orientation(tensor, orientation), False
        return _decode_pillow(im, name), False


def decode_jpegs(encoded: Sequence[torch.Tensor], device: torch.device | str) -> list[torch.Tensor | None]:
    """Decode JPEG bytes (from :func:`read_jpeg_or_image`) to uint8 RGB (3, H, W) tensors on ``device``, in one batched
    call (nvJPEG on CUDA). An image the decoder refuses gives None in its place (decode it with :func:`read_image`)."""
    from torchvision.io import decode_jpeg

    def decode(data: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _TV_DEPRECATION, DeprecationWarning)
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)

    try:
        return list(decode(list(encoded)))
    except RuntimeError:  # one bad image fails the batch: find it one by one
        decoded: list[torch.Tensor | None] = []
        for data in encoded:
            try:
                decoded.append(decode(data))
            except RuntimeError:
                decoded.append(None)
        return decoded


def _check_max_pixels(im: Image.Image, name: str, max_pixels: int | None) -> None:
    """The decompression-bomb guard, on the size read from the header before any pixel is decoded."""
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name}: image is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,} (possible decompression bomb); raise --max-pixels if you trust it"
        )


def _read_bytes(path: Path, name: str) -> bytearray:
    """The whole file, as a writable buffer (so torch can wrap it without a copy)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = bytearray(size)
            n = f.readinto(buf)
            if n != size:  # the file changed under us, or is not a regular file: fall back to a plain read
                f.seek(0)
                buf = bytearray(f.read())
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            raise ImageError(f"{name}: no such file (a parent is not a directory)") from None
        raise ImageError(f"{name}: could not read file ({e.strerror or e})") from None
    if not buf:
        raise ImageError(f"{name}: file is empty")
    return buf


def _open_header(data: bytearray, name: str) -> Image.Image:
    """Open lazily with Pillow (reads the header only), without letting Pillow's own bomb check interfere."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                return Image.open(io.BytesIO(data))
            except Image.DecompressionBombError:
                # Above twice Pillow's global limit: reopen with the check off (briefly, under a lock,
                # restored in `finally`) so that `max_pixels` alone decides and the message states the size.
                with _PIL_LIMIT_LOCK:
                    saved = Image.MAX_IMAGE_PIXELS
                    Image.MAX_IMAGE_PIXELS = None
                    try:
                        return Image.open(io.BytesIO(data))
                    finally:
                        Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError:
        fmt = _sniff(data)
        if fmt:  # the signature is right but Pillow's header parser gave up on the rest
            raise ImageError(f"{name}: truncated or corrupt image data (unreadable {fmt} header)") from None
        raise ImageError(f"{name}: not an image file (could not identify format)") from None
    except Exception as e:  # corrupt headers: SyntaxError, struct.error, ValueError, EOFError, OSError, ...
        raise ImageError(f"{name}: truncated or corrupt image data ({_describe(e)})") from None


def _decode_torchvision(data: bytearray, *, apply_exif: bool) -> torch.Tensor | None:
    """Decode with torchvision.io; None when torchvision cannot (the caller then tries Pillow)."""
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates torchvision.io in favour of TorchCodec and warns on every call.
            warnings.filterwarnings("ignore", _TV_DEPRECATION, DeprecationWarning)
            img = decode_image(
                torch.frombuffer(data, dtype=torch.uint8),
                mode=ImageReadMode.RGB,
                apply_exif_orientation=apply_exif,
            )
    except (RuntimeError, ValueError):
        return None
    if img.ndim == 4:  # animated GIF: (N, C, H, W)
        img = img[0]
    if img.dtype != torch.uint8:  # 16-bit PNG
        img = to_dtype(img, torch.uint8, scale=True)
    if img.ndim != 3 or img.shape[0] != 3:
        return None
    return img.contiguous()


def _exif_orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block must not make an otherwise good image unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a (C, H, W) tensor, like ``PIL.ImageOps.exif_transpose``."""
    if orientation == 2:
        img = img.flip(-1)
    elif orientation == 3:
        img = img.flip(-2, -1)
    elif orientation == 4:
        img = img.flip(-2)
    elif orientation == 5:
        img = img.transpose(-2, -1)
    elif orientation == 6:
        img = torch.rot90(img, k=-1, dims=(-2, -1))
    elif orientation == 7:
        img = img.transpose(-2, -1).flip(-2, -1)
    elif orientation == 8:
        img = torch.rot90(img, k=1, dims=(-2, -1))
    else:
        return img
    return img.contiguous()


def _decode_pillow(im: Image.Image, name: str) -> torch.Tensor:
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
    except Exception as e:
        raise ImageError(f"{name}: truncated or corrupt image data ({_describe(e)})") from None
    try:
        if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            # 16-bit grayscale (Pillow keeps it as I;16 or I): scale like torchvision does for 16-bit PNG.
            arr = np.clip(np.asarray(im, dtype=np.int64), 0, 65535).astype(np.uint16)
            gray = to_dtype(torch.from_numpy(arr), torch.uint8, scale=True)
            return gray.unsqueeze(0).expand(3, -1, -1).contiguous()
        if im.mode == "F":
            arr = np.nan_to_num(np.asarray(im, dtype=np.float32))
            if arr.size and float(arr.max()) <= 1.0:
                arr = arr * 255.0
            gray = torch.from_numpy(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
            return gray.unsqueeze(0).expand(3, -1, -1).contiguous()
        rgb = np.array(im.convert("RGB"))  # a writable copy that torch can own
    except Exception as e:
        what = f"{im.format or 'image'} mode {im.mode}"
        raise ImageError(f"{name}: cannot convert {what} to RGB ({_describe(e)})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"{name}: cannot convert {im.format or 'image'} mode {im.mode} to 8-bit RGB")
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def _sniff(data: bytearray) -> str | None:
    head = bytes(data[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for sig, fmt in _SIGNATURES if head.startswith(sig)), None)


def _describe(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ------------------------------------------------------------------------------------------------------------
# Collecting inputs


def collect_images(
    inputs: Sequence[str | Path], *, recursive: bool = False
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, directories and glob patterns into a sorted, de-duplicated list of image files.

    The order is stable: inputs in the order given; within a directory or pattern, sorted by path. Returns
    ``(files, problems)``: problems are ``(input, message)`` pairs for inputs that match nothing ('no such file or
    directory: X', 'no images found in directory X (use --recursive for subfolders)' when subfolders hold
    images, 'pattern matched no files: X'). An explicitly named file is kept even if its suffix is unknown (it
    will fail clearly at decode time); directory/glob expansion keeps only IMAGE_SUFFIXES (case-insensitive).
    Hidden files and folders (starting with '.') are skipped in directory expansion; symlinked folders are not
    followed when recursing. A file reached twice (e.g. named and inside a named directory) is kept once, at
    its first position.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in inputs:
        found, problem = _expand_input(item, recursive)
        if problem is not None:
            problems.append((str(item), problem))
        for p in found:
            key = os.path.normcase(os.path.abspath(p))
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files, problems


def _expand_input(item: str | Path, recursive: bool) -> tuple[list[Path], str | None]:
    """One command-line input as (image files, None), or ([], the message saying why it matches nothing)."""
    text = str(item)
    path = Path(item)
    if not path.exists() and text.startswith("~"):
        expanded = Path(os.path.expanduser(text))
        if expanded.exists():
            path = expanded
    if path.is_dir():
        return _expand_directory(path, text, recursive)
    if path.is_file():
        return [path], None
    if path.exists():
        return [], f"not a regular file: {text}"
    if _GLOB_MAGIC.search(text):
        return _expand_pattern(text, recursive)
    return [], f"no such file or directory: {text}"


def _expand_directory(path: Path, text: str, recursive: bool) -> tuple[list[Path], str | None]:
    """The images in a directory, sorted; or why there are none (with a hint when subfolders hold some)."""
    try:
        with os.scandir(path):
            pass
    except PermissionError:
        return [], f"permission denied reading directory {text}"
    except OSError as exc:
        return [], f"cannot read directory {text}: {exc.strerror or exc}"
    found = _sorted(_images_in(path, recursive))
    if found:
        return found, None
    if not recursive and any(True for _ in _images_in(path, True)):
        return [], f"no images found in directory {text} (use --recursive for subfolders)"
    return [], f"no images found in directory {text}"


def _expand_pattern(text: str, recursive: bool) -> tuple[list[Path], str | None]:
    """The image files a glob pattern matches, sorted; or why there are none."""
    matches = [Path(m) for m in glob.glob(os.path.expanduser(text), recursive=recursive)]
    images = _sorted(m for m in matches if m.is_file() and _is_image(m))
    if images:
        return images, None
    hint = ""
    if not recursive and "**" in text:
        hint = " (`**` needs -r/--recursive to match folders at any depth; without it, it matches one level)"
    if matches:
        return [], f"pattern matched no image files: {text}{hint}"
    return [], f"pattern matched no files: {text}{hint}"


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


def _sorted(paths: Iterator[Path] | list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: p.parts)


def _images_in(directory: Path, recursive: bool, _ancestors: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Image files in a directory (and, if recursive, its subdirectories), skipping hidden entries.

    Symlinked subdirectories are followed (datasets are often assembled from links), except one that leads back to a
    directory already being walked, so a symlink loop cannot recurse forever.
    """
    ancestors = _ancestors | {os.path.realpath(directory)}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        p = directory / entry.name
        try:
            if entry.is_file():
                if _is_image(p):
                    yield p
            elif recursive and entry.is_dir() and os.path.realpath(p) not in ancestors:
                yield from _images_in(p, True, ancestors)
        except OSError:
            continue


def check_resized_size(image: torch.Tensor, short_side: int, max_pixels: int | None = None) -> torch.Tensor:
    """Return ``image`` unless resizing its shorter side to ``short_side`` would exceed the pixel limit.

    A 1xN strip resized to a 256-pixel short side needs 256x(256N) pixels; such images get an ImageError instead of
    exhausting memory. The limit is the larger of ``max_pixels`` and DEFAULT_MAX_PIXELS, so that small images may
    still be upscaled.
    """
    limit = max(max_pixels or 0, DEFAULT_MAX_PIXELS)
    h, w = image.shape[-2:]
    scale = short_side / min(h, w)
    if h * w * scale * scale > limit:
        raise ImageError(
            f"{w}x{h} image: resizing its shorter side to {short_side} would make it {round(w * scale)}x"
            f"{round(h * scale)} pixels, above the limit of {limit:,} (aspect ratio too extreme to classify); "
            "crop it first"
        )
    return image

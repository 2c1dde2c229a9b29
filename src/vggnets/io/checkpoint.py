"""Safe reading of checkpoint files (.pth/.pt with weights_only and mmap, .safetensors) into flat state dicts.

This module knows files, not layouts: it returns the tensors a file holds (unwrapped from training checkpoints, with
DDP/compile key prefixes stripped); :mod:`vggnets.convert.files` turns timm and Keras layouts into ours.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from .download import cache_dir

_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
_KEY_PREFIXES = ("module.", "_orig_mod.")


def check_file(path: Path, name: str) -> None:
    """Raise CheckpointError unless path is an existing, non-empty file."""
    if not path.exists():
        raise CheckpointError(
            f"Cannot load {name}: the path {path} does not exist. Check the path (relative paths are "
            f"resolved from {Path.cwd()}), or, for published weights, let vggnets download them again."
        )
    advice = redo_advice(path)
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise CheckpointError(
            f"Cannot load {name}: permission denied reading {path}. Make the file readable for this user "
            f"(e.g. chmod a+r {path}) or copy it somewhere readable."
        ) from None
    except IsADirectoryError:
        pass
    if path.is_dir():
        raise CheckpointError(f"Cannot load {name}: {path} is a directory, not a checkpoint file. {advice}")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"Cannot load {name}: {path} is empty (0 bytes), probably left by an interrupted download or "
            f"copy. {advice}"
        )


def load_state_dict_file(path: str | Path, *, what: str | None = None) -> dict[str, torch.Tensor]:
    """Read a .safetensors or torch.save checkpoint safely (weights_only, mmap) into a flat state dict of tensors,
    as the file holds them (no layout conversion)."""
    path = Path(path)
    name = f"{what} ({path})" if what else str(path)
    check_file(path, name)
    advice = redo_advice(path)
    if path.suffix.lower() == ".safetensors":
        obj: object = _load_safetensors(path, name, advice)
    else:
        obj = _load_torch(path, name, advice)
    return _as_state_dict(obj, name, advice)


def redo_advice(path: Path) -> str:
    """How to replace a bad file: re-download it if it lives in the cache, else recreate it."""
    try:
        in_cache = path.resolve().is_relative_to(cache_dir().resolve())
    except OSError:
        in_cache = False
    if in_cache:
        return f"Delete {path} so that it is downloaded again on next use."
    return f"Copy or export {path} again from its source (and compare its SHA-256 with the original's)."


def _load_safetensors(path: Path, name: str, advice: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"Cannot load {name}: it is not a readable safetensors file ({first_line(exc)}); "
            f"{describe_format(path)}. {advice}"
        ) from exc


#: Globals a weights-only checkpoint may name: torch's tensor, storage and dtype types and rebuild functions, and the
#: few containers torch.save writes. Anything else is code that unpickling would import and may run.
_DATA_MODULES = ("torch", "collections")
_DATA_GLOBALS = frozenset({"_codecs.encode", "builtins.set", "builtins.bytearray", "builtins.complex"})


def pickle_globals(data: bytes, *, limit: int = 8) -> list[str]:
    """The ``module.name`` globals the pickles at the start of ``data`` reference, in order (a legacy torch.save file
    is several pickles back to back); stops quietly at the first byte that is not a pickle."""
    found: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(limit):
        start = stream.tell()
        if data[start : start + 1] != b"\x80":
            break
        strings: list[str] = []
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings = [*strings[-1:], arg]
                elif opcode.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) == 2:
                    found.append(".".join(strings))
        except Exception:  # a truncated or non-pickle tail: what was read so far still counts
            break
    return found


def code_references(globals_: list[str]) -> list[str]:
    """The globals of a pickle that are not plain checkpoint data (see ``_DATA_MODULES``)."""

    def is_data(name: str) -> bool:
        module = name.rpartition(".")[0]
        return name in _DATA_GLOBALS or module in _DATA_MODULES or module.startswith("torch.")

    return [name for name in dict.fromkeys(globals_) if not is_data(name)]


def file_kind(path: Path) -> str:
    """What a checkpoint file is, from its content: ``torch-zip``, ``torchscript``, ``legacy-pickle``, ``safetensors``,
    ``hdf5`` or ``other``."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "torch-zip"
    if head.startswith(b"\x80"):
        return "legacy-pickle"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if len(head) > 9 and head[8:10] == b'{"':
        return "safetensors"
    return "other"


def _referenced_code(path: Path, kind: str) -> list[str]:
    """Globals outside plain checkpoint data that the file's pickles reference (read without unpickling)."""
    try:
        if kind == "torch-zip":
            with zipfile.ZipFile(path) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(pickles[0]) if pickles else b""
        else:
            with open(path, "rb") as f:
                data = f.read(1 << 20)  # the pickles of a legacy file come before its tensor data
    except (OSError, zipfile.BadZipFile, KeyError):
        return []
    return code_references(pickle_globals(data))


def _load_torch(path: Path, name: str, advice: str) -> object:
    """torch.load with weights_only (and mmap for zip files), after refusing files that carry code or are not
    state dicts; torch's own warnings never reach the user."""
    kind = file_kind(path)
    if kind == "torchscript":
        raise CheckpointError(
            f"Cannot load {name}: {path} is a TorchScript archive (torch.jit.save), a whole compiled model rather "
            "than a state dict of weights. Load it with torch.jit.load, or save the weights of the model with "
            "torch.save(model.state_dict(), path) and pass that file."
        )
    if kind in ("torch-zip", "legacy-pickle"):
        code = _referenced_code(path, kind)
        if code:
            raise CheckpointError(_unsafe_pickle_message(path, name, code))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "torch-zip")
    except MemoryError:
        raise
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(exc))
        if unsafe:
            raise CheckpointError(_unsafe_pickle_message(path, name, [unsafe.group(1)])) from exc
        raise CheckpointError(_unreadable_message(path, name, advice, exc)) from exc
    except Exception as exc:  # torch reports corrupt files as RuntimeError, EOFError, KeyError, ...
        raise CheckpointError(_unreadable_message(path, name, advice, exc)) from exc


def _unreadable_message(path: Path, name: str, advice: str, exc: BaseException) -> str:
    return (
        f"Cannot load {name}: it is not a readable PyTorch checkpoint; {describe_format(path)} "
        f"({type(exc).__name__}: {first_line(exc)}). {advice}"
    )


def _unsafe_pickle_message(path: Path, name: str, code: list[str]) -> str:
    out = path.with_suffix(".safetensors")
    convert = (
        "import torch; from safetensors.torch import save_file; "
        f"o = torch.load({str(path)!r}, weights_only=False); "
        "o = o.get('state_dict', o.get('model', o)) if isinstance(o, dict) else o; "
        "o = o.state_dict() if hasattr(o, 'state_dict') else o; "
        f"save_file({{k: v.contiguous().clone() for k, v in o.items() if torch.is_tensor(v)}}, {str(out)!r})"
    )
    return (
        f"Refusing to load {name}: vggnets refuses to run code from a checkpoint, and this pickle references "
        f"{', '.join(code[:4])}{' ...' if len(code) > 4 else ''}; checkpoints are read with weights_only=True "
        "because unpickling arbitrary objects can run any code. "
        f'If you trust the file, convert it once to safetensors and load that instead: python -c "{convert}" '
        "(or allow the class with torch.serialization.add_safe_globals before loading)."
    )


def describe_format(path: Path) -> str:
    """What the first bytes of a file say it is, for error messages."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    stripped = head.lstrip().lower()
    if head.startswith(b"PK\x03\x04"):
        if zipfile.is_zipfile(path):
            return "it is a zip archive, but not a valid torch.save checkpoint"
        return "it starts like a torch.save zip archive but its end is missing, so it is truncated or corrupt"
    if head.startswith(b"\x80"):
        return "it looks like a legacy torch.save pickle that is truncated or corrupt"
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image, not a checkpoint"
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image, not a checkpoint"
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page (often an error or login page saved instead of the file), not a checkpoint"
    if len(head) > 9 and head[8:10] == b'{"':
        if path.suffix.lower() == ".safetensors":
            return "it starts with a safetensors header, so it is truncated or corrupt"
        return "it looks like a safetensors file: give it the .safetensors extension"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "its format is not recognised"
    return "it is a text file, not a checkpoint"


def first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message (torch's are long), for embedding in ours."""
    text = str(exc).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(exc).__name__


def _as_state_dict(obj: object, name: str, advice: str) -> dict[str, torch.Tensor]:
    """Unwrap {'state_dict'|'model'|...: sd}, check str -> Tensor, strip DDP/compile key prefixes."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"Cannot load {name}: it holds a {type(obj).__name__}, not a state dict (a mapping of parameter "
            "names to tensors). Save the weights with torch.save(model.state_dict(), path) or safetensors' "
            "save_file."
        )
    for key in _STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    if not obj:
        raise CheckpointError(f"Cannot load {name}: it holds an empty mapping with no tensors. {advice}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"Cannot load {name}: it is not a state dict of tensors (entry {key!r} holds a "
                f"{type(value).__name__}, and no 'state_dict' or 'model' entry holds the tensors). Save the "
                "weights with torch.save(model.state_dict(), path) or safetensors' save_file."
            )
    state: dict[str, torch.Tensor] = dict(obj)
    stripped = True
    while stripped:
        stripped = False
        for prefix in _KEY_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped = True
    return state

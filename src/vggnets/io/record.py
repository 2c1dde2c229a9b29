"""The metadata record a vggnets checkpoint carries (architecture, width, classes, preprocessing): attach and read.

In a torch.save state_dict the record is a JSON string in the state_dict's own ``_metadata`` (under the root module's
entry, key ``vggnets``), which ``load_state_dict`` ignores: the file stays a plain state_dict that torchvision loads as
it is. In a safetensors file it is the header's ``vggnets`` metadata entry.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

RECORD_KEY = "vggnets"
#: Version of the record's layout; readers ignore records of a newer layout they do not know.
RECORD_VERSION = 1


def attach_record(state_dict: Mapping[str, torch.Tensor], record: Mapping[str, Any]) -> OrderedDict:
    """A state_dict (the same tensors) whose ``_metadata`` carries ``record`` as JSON."""
    out = OrderedDict(state_dict)
    metadata = OrderedDict(getattr(state_dict, "_metadata", None) or {})
    metadata[""] = {
        **metadata.get("", {}),
        RECORD_KEY: json.dumps({"record_version": RECORD_VERSION, **record}),
    }
    out._metadata = metadata  # type: ignore[attr-defined]
    return out


def record_of(obj: object) -> dict[str, Any] | None:
    """The record of a loaded checkpoint object: a state_dict, or a training checkpoint holding one under a key."""
    candidates = [obj]
    if isinstance(obj, Mapping):
        candidates += [obj.get(k) for k in ("model", "state_dict", "model_state_dict")]
    for candidate in candidates:
        metadata = getattr(candidate, "_metadata", None)
        text = (metadata or {}).get("", {}).get(RECORD_KEY) if isinstance(metadata, Mapping) else None
        if text:
            return parse_record(text)
    return None


def parse_record(text: str) -> dict[str, Any] | None:
    """The record in a JSON string, or None when it is not one this version understands."""
    try:
        record = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("record_version", 0) > RECORD_VERSION:
        return None
    return record


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record of a checkpoint file, or None (no record, or not a file this reads). Reads no tensor data:
    a safetensors header, or a weights-only memory-mapped torch.load of a zip checkpoint."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                text = (f.metadata() or {}).get(RECORD_KEY)
            return parse_record(text) if text else None
        if not zipfile.is_zipfile(path):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return record_of(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
    except Exception:  # an unreadable file has no record; reading its weights reports why
        return None

"""Committed units on disk: atomic part files beside an output, the fingerprint of the run that made them, the merge.

A run that writes ``OUT`` keeps its finished units in the folder ``OUT.parts`` (:func:`parts_folder`): one or more
files per unit, named by the unit (``unit-000003-of-000040.jsonl``), each written with the one atomic writer
(:func:`vggnets.io.output.atomic_write`), so a file there is complete or absent; the last file of a unit is its commit
marker. ``manifest.json`` holds the fingerprint of the run (inputs, model, weights, every option that changes a result):
a rerun with the same fingerprint skips the committed units, a rerun with another one is refused and told which
setting differs (or, asked to start again, discards the parts). The folder is removed after a successful merge unless
the command keeps it (``--keep-parts``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import VggnetsError
from ..io.output import PARTIAL_SUFFIX, atomic_write, write_text
from .shards import Unit

__all__ = ["MANIFEST", "Parts", "describe_files", "file_identity", "parts_folder"]

MANIFEST = "manifest.json"


def parts_folder(output: str | Path) -> Path:
    """Where the parts of ``output`` live: ``OUT.parts`` beside it."""
    output = Path(output).expanduser()
    return output.parent / f"{output.name}.parts"


def describe_files(files: Iterable[str | Path]) -> dict[str, Any]:
    """The identity of an input list for a fingerprint: how many files, and a digest of their paths, sizes and
    modification times (a file edited or replaced since changes it)."""
    digest = hashlib.sha256()
    count = 0
    for file in files:
        digest.update(f"{file}|{file_identity(file)}\n".encode())
        count += 1
    return {"files": count, "digest": digest.hexdigest()[:32]}


def file_identity(path: str | Path) -> str:
    """``size:mtime_ns`` of a file, or ``missing`` (an unreadable input is part of the list too)."""
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


class Parts:
    """The parts folder of one run: committed units, their files, the merge's clean-up."""

    def __init__(self, folder: Path, marker: str) -> None:
        self.folder = Path(folder)
        self.marker = marker  # the suffix of the file that commits a unit (written last)

    @classmethod
    def open(
        cls, folder: str | Path, fingerprint: dict[str, Any], *, marker: str, restart: bool = False
    ) -> Parts:
        """The parts folder for a run with ``fingerprint`` (JSON-ready; its keys name the settings as the user gives
        them, e.g. ``--topk``): created with its manifest, or an existing one whose manifest matches. Leftover
        temporary files of a killed writer are removed.

        Raises:
            VggnetsError: the folder holds the parts of another run (the message says which settings differ),
                unless ``restart``, which discards them; or it is not a parts folder.
        """
        parts = cls(Path(folder).expanduser(), marker)
        wanted = json.loads(json.dumps(fingerprint))
        manifest = parts.folder / MANIFEST
        if parts.folder.exists() and not parts.folder.is_dir():
            raise VggnetsError(
                f"{parts.folder} is a file; the parts of this run go in a folder of that name."
            )
        if manifest.is_file():
            found = parts.read_manifest()
            if found == wanted:
                parts.clean()
                return parts
            if not restart:
                raise VggnetsError(
                    f"{parts.folder} holds the finished units of another run ({differences(found, wanted)}), "
                    "so they cannot be merged with this one. Rerun the command that made them to finish it, or "
                    "pass --force to discard them and start again."
                )
            shutil.rmtree(parts.folder)
        elif parts.folder.is_dir() and any(parts.folder.iterdir()):
            raise VggnetsError(
                f"{parts.folder} exists but has no {MANIFEST}, so it is not the parts folder of a vggnets run; "
                "move it away or choose another --output."
            )
        write_text(manifest, json.dumps(wanted, indent=2) + "\n", overwrite=True)
        return parts

    def read_manifest(self) -> dict[str, Any]:
        """The fingerprint stored with the parts ({} when unreadable: it then matches no run)."""
        try:
            return json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def clean(self) -> None:
        """Remove temporary files left by a writer that was killed (their units were never committed)."""
        for leftover in self.folder.glob(f".*{PARTIAL_SUFFIX}*"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def path(self, unit: Unit, suffix: str) -> Path:
        """The file of ``unit`` with ``suffix`` (``.jsonl``, ``.npy`` ...)."""
        return self.folder / f"{unit.name}{suffix}"

    def is_committed(self, unit: Unit) -> bool:
        return self.path(unit, self.marker).is_file()

    def committed(self, units: Sequence[Unit]) -> list[Unit]:
        """The units of ``units`` whose marker file exists."""
        present = {p.name for p in self.folder.glob(f"unit-*{self.marker}")}
        return [u for u in units if f"{u.name}{self.marker}" in present]

    def commit(self, unit: Unit, writers: Sequence[tuple[str, Callable[[Path], None]]]) -> None:
        """Write a unit's files, each atomically and in order (``(suffix, write(tmp_path))`` pairs); the marker's
        writer must come last, so that a unit killed half-way is simply not committed."""
        if not writers or writers[-1][0] != self.marker:
            raise ValueError(f"the last file of a unit must be its marker ({self.marker})")
        for suffix, write in writers:
            atomic_write(self.path(unit, suffix), write, overwrite=True)

    def remove(self) -> None:
        """Remove the folder and everything in it."""
        shutil.rmtree(self.folder, ignore_errors=True)


def differences(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    """The settings that differ between two fingerprints, in words: ``--topk 5 then, 3 now``."""
    keys = list(dict.fromkeys([*wanted, *found]))
    changed = [k for k in keys if found.get(k) != wanted.get(k)]
    if not changed:
        return "an unreadable manifest"
    words = [f"{k}: {_shown(found.get(k))} then, {_shown(wanted.get(k))} now" for k in changed[:4]]
    more = f"; and {len(changed) - 4} more" if len(changed) > 4 else ""
    return "; ".join(words) + more


def _shown(value: Any) -> str:
    if isinstance(value, dict) and "files" in value and "digest" in value:
        return f"{value['files']} files (digest {value['digest'][:8]})"
    return "not set" if value is None else json.dumps(value)

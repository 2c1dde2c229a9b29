"""Regenerate the ImageNet-1k category files shipped in src/vggnets/assets/.

Run once at development time (needs torchvision and timm installed); the package itself never imports either for this.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from torchvision.models._meta import _IMAGENET_CATEGORIES

DATA = Path(__file__).resolve().parents[1] / "src" / "vggnets" / "assets"


def main() -> None:
    """Write one category name per line, and the matching WordNet ids, in torchvision's class order."""
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "imagenet_categories.txt").write_text("\n".join(_IMAGENET_CATEGORIES) + "\n", encoding="utf-8")
    synsets = importlib.resources.files("timm.data._info").joinpath("imagenet_synsets.txt").read_text()
    wnids = [line.strip() for line in synsets.splitlines() if line.strip()]
    assert len(wnids) == 1000 and wnids == sorted(wnids), "expected 1000 sorted WordNet ids"
    (DATA / "imagenet_synsets.txt").write_text("\n".join(wnids) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

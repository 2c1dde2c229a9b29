"""Write scikit-learn's 8x8 handwritten digits as an ImageFolder tree, for quick real-data training runs.

    python scripts/make_digits.py --output data/digits [--size 32] [--seed 0]

gives ``DIR/train/<digit>/<index>.png`` and ``DIR/val/<digit>/<index>.png``: all 1,797 digits of
``sklearn.datasets.load_digits`` (values 0-16), scaled to 0-255, upsampled to SIZE x SIZE (bilinear) and saved as RGB
PNGs, split 80/20 per class (stratified) with a fixed seed, so every run writes the same split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

#: `vggnets train --set` overrides of the paper's recipe for these 32x32 greyscale digits: 32x32 crops of the image
#: rescaled to S in [32, 36] (scale jitter), no flip (digits are not mirror-symmetric), inputs scaled to [-1, 1].
TRAIN_SET = [
    "--set",
    "crop=32",
    "resize=32",
    "scale=32,36",
    "hflip=false",
    "mean=0.5,0.5,0.5",
    "std=0.5,0.5,0.5",
]


def write_digits(
    output: str | Path,
    size: int = 32,
    seed: int = 0,
    *,
    val_fraction: float = 0.2,
    limit: int | None = None,
) -> dict[str, int]:
    """Write the digits ImageFolder tree under ``output``; returns the number of images per split.

    ``limit`` keeps only a seeded, stratified subset of that many digits (before the split), for fast tests.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("scikit-learn is needed: pip install scikit-learn") from exc

    digits = load_digits()
    images, labels = digits.images, digits.target
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    if limit is not None:
        # take the first `limit` of a per-class round robin over the shuffled order: stratified and seeded
        per_class = [order[labels[order] == c] for c in range(10)]
        rank = np.empty(len(labels), dtype=np.int64)
        for members in per_class:
            rank[members] = np.arange(len(members))
        order = order[np.argsort(rank[order], kind="stable")][:limit]

    output = Path(output)
    counts = {"train": 0, "val": 0}
    for c in range(10):
        members = order[labels[order] == c]
        n_val = int(round(len(members) * val_fraction))
        for split, chosen in (("val", members[:n_val]), ("train", members[n_val:])):
            folder = output / split / str(c)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                grey = np.clip(images[i] * (255.0 / 16.0), 0, 255).astype(np.uint8)
                img = Image.fromarray(grey, mode="L").resize((size, size), Image.Resampling.BILINEAR)
                img.convert("RGB").save(folder / f"{i:04d}.png")
                counts[split] += 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="folder to create (train/ and val/ go inside)")
    parser.add_argument("--size", type=int, default=32, help="side of the upsampled images (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="keep only this many digits (stratified)")
    args = parser.parse_args(argv)
    counts = write_digits(args.output, args.size, args.seed, limit=args.limit)
    print(f"wrote {counts['train']} train and {counts['val']} val images to {args.output}")


if __name__ == "__main__":
    main()

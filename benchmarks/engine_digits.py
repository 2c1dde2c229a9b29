"""Agreement of the engine's precisions with fp32 on a trained model and real data: the digits model.

    python benchmarks/train_digits.py          # once: writes runs/digits-vgg11_bn-w0.125/best.pth and data/digits
    python benchmarks/engine_digits.py [--run runs/digits-vgg11_bn-w0.125] [--data data/digits]

The width-1/8 ``vgg11_bn`` trained by ``vggnets train`` on scikit-learn's digits (99% val top-1) is run through
``vggnets.optimize`` at fp32, bf16 and int8 (int8 calibrated on 256 training images, never on the validation images).
For each path: validation top-1, top-1 agreement with fp32 eager and the cosine of the logits over the 359 validation
images. On a CPU without bf16 hardware the bf16 row runs the same bf16 arithmetic emulated (the engine would fall back
to fp32 there; this script forces bf16 to report its numerics).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import vggnets
from vggnets.inference import engine, plan
from vggnets.inference.machine import describe_cpu, format_cpu
from vggnets.io.images import read_image


def load_split(folder: Path, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 3, 32, 32) and labels of an ImageFolder split (class folders named 0-9)."""
    files = sorted(folder.glob("*/*.png"))
    if limit:
        files = files[:: max(1, len(files) // limit)][:limit]
    images = torch.stack([read_image(f) for f in files])
    labels = torch.tensor([int(f.parent.name) for f in files])
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, default=Path("runs/digits-vgg11_bn-w0.125"))
    parser.add_argument("--data", type=Path, default=Path("data/digits"))
    args = parser.parse_args()
    checkpoint = args.run / "best.pth"
    if not checkpoint.is_file():
        sys.exit(f"{checkpoint} not found: run `python benchmarks/train_digits.py` first")

    model = vggnets.vgg11_bn(weights=checkpoint).eval()
    val_x, val_y = load_split(args.data / "val")
    calib, _ = load_split(args.data / "train", limit=256)
    common = {"image_size": 32, "resize_size": 32, "mean": (0.5,) * 3, "std": (0.5,) * 3, "batch_size": 16}
    reference = engine.optimize(model, "fp32", compile=False, **common)(val_x)

    print(format_cpu(describe_cpu()))
    print(
        f"model: {checkpoint} (vgg11_bn, width 1/8); {len(val_x)} validation digits; int8 calibrated on {len(calib)}"
    )
    print("\n| path | runs as | val top-1 | top-1 agreement with fp32 | cosine min | max abs logit diff |")
    print("|---|---|---|---|---|---|")
    rows = [("fp32", {}), ("bf16", {"force_bf16": True}), ("int8", {"calibration": calib})]
    for precision, extra in rows:
        if extra.pop("force_bf16", False):
            plan.cpu_precision_support = lambda: {"bf16": True, "int8": True, "amx": False}
        predictor = engine.optimize(model, precision, compile=True, **common, **extra)
        logits = predictor(val_x)
        cos = torch.nn.functional.cosine_similarity(logits, reference, dim=1)
        print(
            f"| {precision} | {predictor.info.precision}, compile {predictor.info.compile} | "
            f"{100 * (logits.argmax(1) == val_y).float().mean():.2f}% | "
            f"{100 * (logits.argmax(1) == reference.argmax(1)).float().mean():.2f}% | {cos.min():.5f} | "
            f"{(logits - reference).abs().max():.3g} |"
        )


if __name__ == "__main__":
    main()

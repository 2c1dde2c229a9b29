"""The inference engine against torchvision's fp32 eager VGG16, model-only and end to end on a folder of JPEGs.

    python benchmarks/engine_speed.py [--model vgg16] [--batch-size 16] [--jpegs 240] [--output engine.json]
                                      [--peers onnxruntime,openvino]

Runs ``vggnets benchmark`` in this process (torchvision's baseline and every engine precision on the same inputs, so
ratios are comparable even though absolute speed varies by +-15% between runs), after writing a folder of JPEGs of
varied sizes and qualities cut from the bundled photos (random crops, scales 0.6-1.6, quality 70-95; seeded), which the
end-to-end comparison reads: the PyTorch Hub page's script (PIL + torchvision transforms + fp32 eager) against
`vggnets classify --precision int8` (torchvision.io decode, uint8 crop, decode overlapped with the model).
The CPU model, kind and ISA flags are printed with the table, since speed-ups differ a lot between CPUs. With
``--peers`` the peer runtimes run our ONNX export in the same process too (``vggnets benchmark --peers``), and the
load average before and after the run is printed (the README's table says how quiet the machine was).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

from PIL import Image

from vggnets.bench.peers import parse_peers
from vggnets.bench.report import format_report, write_json
from vggnets.bench.runner import run_benchmark
from vggnets.inference.calibration import sample_images_dir


def make_jpeg_folder(folder: Path, count: int = 240, seed: int = 0) -> Path:
    """``count`` JPEGs cut from the bundled photos: random crops (50-100% per side), rescaled 0.6-1.6x, quality
    70-95. A realistic mix of sizes for the decoder and resizer, reproducible from the seed."""
    rng = random.Random(seed)
    sources = sorted(p for p in sample_images_dir().iterdir() if p.suffix in (".jpg", ".png"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        with Image.open(rng.choice(sources)) as im:
            im = im.convert("RGB")
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.5, 1)), int(h * rng.uniform(0.5, 1))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            scale = rng.uniform(0.6, 1.6)
            im = im.crop((x, y, x + cw, y + ch)).resize((max(64, int(cw * scale)), max(64, int(ch * scale))))
            im.save(folder / f"{i:04d}.jpg", quality=rng.randint(70, 95))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="fp32,bf16,int8")
    parser.add_argument("--jpegs", type=int, default=240, help="JPEGs for the end-to-end run (0: skip it)")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON report here")
    parser.add_argument(
        "--peers", default=None, help="peer runtimes to measure too: onnxruntime,openvino or all"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="vggnets-jpegs-") as tmp:
        images = make_jpeg_folder(Path(tmp), args.jpegs) if args.jpegs else None
        report = run_benchmark(
            args.model,
            batch_size=args.batch_size,
            precisions=[p for p in args.precision.split(",") if p],
            images=images,
            iterations=args.iterations,
            log=lambda msg: print(f"[engine_speed] {msg}", file=sys.stderr, flush=True),
            peers=parse_peers(args.peers),
        )
    report["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(format_report(report))
    print(
        "\nload average (1, 5, 15 min): before "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + "; after "
        + ", ".join(f"{v:.2f}" for v in report["load_average"]["after"])
    )
    if args.output:
        write_json(report, args.output, overwrite=True)


if __name__ == "__main__":
    main()

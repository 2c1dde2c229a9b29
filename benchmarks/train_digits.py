"""`vggnets train` on real data that ships with scikit-learn: the 1,797 handwritten digits, upsampled to 32x32.

Runs the command line itself (``python -m vggnets train``, one fresh process per run, wall time includes start-up) and
prints a Markdown table. Three runs:

1. ``digits``: a width-1/8 ``vgg11_bn`` (channels / 8) trained from scratch on all ten digits (1,438 train / 359 val,
   ``scripts/make_digits.py``'s fixed split) with the paper's recipe, adapted to small greyscale images: 32x32 crops of
   the image rescaled to S in [32, 36] (scale jitter), no flip (digits are not mirror-symmetric), [-1, 1] inputs, batch
   32, lr 1e-2, 15 epochs. Its ``best.pth`` is written to ``runs/digits-vgg11_bn-w0.125/best.pth`` (a plain state_dict:
   ``vggnets.vgg11_bn(weights=...)`` loads it), the small model that the inference-engine work measures int8/bf16
   agreement on. The acceptance target is >= 97% validation top-1 within 5 minutes on 2 CPU cores.
2. ``fine-tune``: fine-tuning with ``--freeze features`` (new 10-class head, classifier trained only) from a checkpoint
   pre-trained on digits 0-4 only (``--pretrain-epochs`` epochs, not in the table's time), on all ten digits.
3. ``frozen random``: the same fine-tuning from randomly initialised, frozen features: the baseline that shows what the
   pre-trained features contribute (chance is 10%).

    python benchmarks/train_digits.py [--epochs 15] [--finetune-epochs 5] [--skip-finetune] [--output runs]

This is a benchmark, not a test: it asserts nothing (the slow tests do), and times depend on the machine (printed
first) and on its load (printed before and after).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "scripts"))
try:
    from vggnets.inference.machine import describe_cpu, format_cpu
except ImportError:  # older checkouts: the helper next to the benchmarks
    from _machine import describe_cpu, format_cpu  # noqa: E402
from make_digits import TRAIN_SET as DIGITS_SET  # noqa: E402
from make_digits import write_digits  # noqa: E402

COMMON = [
    "--model",
    "vgg11_bn",
    "--width",
    "0.125",
    "--batch-size",
    "32",
    "--lr",
    "0.01",
    "--init",
    "torchvision",
    "--workers",
    "0",
    "--quiet",
    *DIGITS_SET,
]
MODEL_PATH = "digits-vgg11_bn-w0.125"


def train(data: Path, output: Path, *extra: str) -> float:
    """Run `vggnets train`; returns its wall time in seconds (raises with its stderr on failure)."""
    if output.exists():
        shutil.rmtree(output)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "vggnets", "train", str(data), "--output", str(output), *COMMON, *extra]
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"vggnets train failed ({done.returncode}):\n{done.stderr}")
    return seconds


def summary(run: Path, seconds: float) -> dict[str, float]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: float(r["val_acc"]))
    first_97 = next((r["epoch"] for r in rows if float(r["val_acc"]) >= 0.97), None)
    return {
        "epochs": len(rows),
        "best_top1": float(best["val_acc"]),
        "best_top5": float(best["val_top5"]),
        "best_epoch": int(best["epoch"]),
        "first_97": first_97,
        "images_per_s": sum(float(r["images_per_s"]) for r in rows) / len(rows),
        "seconds": seconds,
    }


def subset(data: Path, target: Path, classes: list[str]) -> Path:
    """A copy of the ImageFolder tree with only some class folders (hard links where possible)."""
    if target.exists():
        shutil.rmtree(target)
    for split in ("train", "val"):
        for c in classes:
            shutil.copytree(data / split / c, target / split / c, copy_function=os.link)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default=str(REPO / "data" / "digits"), help="digits tree (written if missing)"
    )
    parser.add_argument("--output", default=str(REPO / "runs"), help="folder of the run folders")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--skip-finetune", action="store_true")
    args = parser.parse_args(argv)

    print(format_cpu(describe_cpu()))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    data, runs = Path(args.data), Path(args.output)
    if not (data / "train").is_dir():
        counts = write_digits(data, size=32, seed=0)
        print(f"wrote {counts['train']} train and {counts['val']} val digits to {data}")

    rows = []
    main_run = runs / MODEL_PATH
    rows.append(
        ("digits, from scratch", summary(main_run, train(data, main_run, "--epochs", str(args.epochs))))
    )
    if not args.skip_finetune:
        half = subset(data, runs / "digits-0-4", [str(c) for c in range(5)])
        pre = runs / "digits-0-4-vgg11_bn-w0.125"
        train(half, pre, "--epochs", str(args.pretrain_epochs))
        tune = ["--freeze", "features", "--epochs", str(args.finetune_epochs), "--num-classes", "10"]
        ft = runs / "digits-finetune-from-0-4"
        seconds = train(data, ft, "--weights", str(pre / "best.pth"), *tune)
        rows.append(("fine-tune head, features from digits 0-4", summary(ft, seconds)))
        rnd = runs / "digits-finetune-random-features"
        rows.append(("fine-tune head, frozen random features", summary(rnd, train(data, rnd, *tune))))
        shutil.rmtree(half)

    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(
        "| run | epochs | best val top-1 | val top-5 | epoch of best | first epoch >= 97% | train images/s | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, s in rows:
        print(
            f"| {name} | {s['epochs']} | {100 * s['best_top1']:.2f}% | {100 * s['best_top5']:.2f}% | "
            f"{s['best_epoch']} | {s['first_97'] or '-'} | {s['images_per_s']:.0f} | {s['seconds']:.0f} |"
        )
    print()
    print(f"small model for the inference-engine work: {main_run / 'best.pth'}")


if __name__ == "__main__":
    main()

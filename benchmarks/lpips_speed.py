"""LPIPS pairs/s: the lpips package against vggnets.LPIPS on the same VGG16 tensors, side by side in one process.

    python benchmarks/lpips_speed.py                      # 256x256, batches of 8 pairs, 5 timed runs each
    python benchmarks/lpips_speed.py --size 64 --batch-size 4 --repeats 3 --json lpips_speed.json

Both metrics hold the same seeded random VGG16 features and the published v0.1 linear layers (the speed does not depend
on the values); ours runs channels-last here, as it does whenever no gradient flows through the network. The reference, ``lpips.LPIPS(net="vgg")``, is built on the meta device and filled with our tensors, so
nothing is downloaded. Variants are timed round-robin (one run of each in turn) under ``torch.inference_mode``, after a
warm-up run each; the table gives the median pairs/s, the ratio to lpips, and the largest difference from lpips'
distances on the timed inputs. The CPU kind comes first: ratios differ between CPUs (REFERENCE.md 7.1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_cpu, format_cpu  # noqa: E402

from vggnets.features.lpips import LPIPS, SCALE, SHIFT  # noqa: E402


def reference_from(ours: LPIPS):
    """lpips.LPIPS(net="vgg") holding our tensors (built on the meta device: no download, no classifier init)."""
    import lpips

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
    ref.to_empty(device="cpu")
    state = {}
    for key, tensor in ours.state_dict().items():
        head, index, name = key.split(".")
        if head == "lins":
            state[f"lin{index}.model.1.weight"] = tensor
        else:
            state[f"net.slice{1 + sum(int(index) > last for last in (3, 8, 15, 22))}.{index}.{name}"] = tensor
    ref.load_state_dict(state, strict=False)
    ref.scaling_layer.shift.copy_(torch.tensor(SHIFT).view(1, 3, 1, 1))
    ref.scaling_layer.scale.copy_(torch.tensor(SCALE).view(1, 3, 1, 1))
    return ref.eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default: 256)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per call (default: 8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (default: 5)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    device = torch.device(args.device)
    cpu = describe_cpu()
    print(format_cpu(cpu))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    torch.manual_seed(0)
    ours = LPIPS(weights=None)
    ref = reference_from(ours).to(device)
    ours = ours.to(device)
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(args.batch_size, 3, args.size, args.size, generator=g) * 2 - 1).to(device)
    b = (a + 0.2 * torch.randn(a.shape, generator=g).to(device)).clamp(-1, 1)

    bf16_ok = device.type == "cuda" or cpu["flags"].get("avx512_bf16") or cpu["flags"].get("amx_bf16")
    variants = {
        "lpips 0.1.4 (reference)": lambda: ref(a, b),
        "vggnets.LPIPS fp32": lambda: ours(a, b),
    }
    if bf16_ok:

        def bf16():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return ours(a, b)

        variants["vggnets.LPIPS bf16 autocast"] = bf16
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs = {}
    with torch.inference_mode():
        for name, run in variants.items():
            outputs[name] = run().flatten().float().cpu()  # warm-up, and the values compared below
        for _ in range(args.repeats):
            for name, run in variants.items():
                sync()
                start = time.perf_counter()
                run()
                sync()
                times[name].append(time.perf_counter() - start)
    base_name = next(iter(variants))
    base = args.batch_size / statistics.median(times[base_name])
    rows = []
    print(
        f"\nLPIPS (VGG16) at {args.size}x{args.size}, {args.batch_size} pairs per call, median of {args.repeats}"
    )
    print("| variant | pairs/s | ms/pair | vs lpips | max abs diff vs lpips |")
    print("|---|---|---|---|---|")
    for name in variants:
        rate = args.batch_size / statistics.median(times[name])
        diff = float((outputs[name] - outputs[base_name]).abs().max())
        rows.append({"variant": name, "pairs_per_s": rate, "ratio": rate / base, "max_abs_diff": diff})
        print(f"| {name} | {rate:.2f} | {1000 / rate:.1f} | {rate / base:.2f}x | {diff:.1e} |")
    if args.json:
        doc = {
            "cpu": cpu,
            "size": args.size,
            "batch_size": args.batch_size,
            "device": str(device),
            "rows": rows,
        }
        with contextlib.suppress(TypeError):
            args.json.write_text(json.dumps(doc, indent=2, default=str))


if __name__ == "__main__":
    main()

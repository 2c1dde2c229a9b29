"""Grad-CAM images/s: pytorch-grad-cam and captum against vggnets.explain.cam on the same VGG16, side by side.

    python benchmarks/cam_speed.py                       # 224x224, batches of 8, relu5_3, 5 timed runs each
    python benchmarks/cam_speed.py --batch-size 1 --layer pool5 --repeats 3 --json cam_speed.json

One full-size VGG16 with seeded random weights (the speed does not depend on the values), eval mode, fp32. Each
variant computes Grad-CAM maps of each image's top class at the same layer, resized to the input and scaled to [0, 1]:
pytorch-grad-cam's ``GradCAM`` (hooks, backward through the whole network into every weight, OpenCV resize); captum's
``LayerGradCam`` plus ``LayerAttribution.interpolate`` and the same min-max scaling (hooks, gradient with respect to the
layer only); ``vggnets.explain.cam`` (the layers up to the chosen one without autograd, the rest from a leaf copy of
its output). Variants are timed round-robin after a warm-up run each; the table gives the median images/s, the ratio to
pytorch-grad-cam and the lowest per-image Pearson correlation of the maps with pytorch-grad-cam's. The CPU kind comes
first: ratios differ between CPUs (REFERENCE.md 7.1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_cpu, format_cpu  # noqa: E402

import vggnets  # noqa: E402
from vggnets.explain import cam  # noqa: E402
from vggnets.features import named_layers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default: 224)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per call (default: 8)")
    parser.add_argument("--layer", default="relu5_3", help="named layer (default: relu5_3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (default: 5)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM

    device = torch.device(args.device)
    cpu = describe_cpu()
    print(format_cpu(cpu))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    torch.manual_seed(0)
    model = vggnets.vgg16().to(device).eval()
    module = named_layers(model)[args.layer]
    x = torch.randn(args.batch_size, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)).to(
        device
    )

    reference = GradCAM(model=model, target_layers=[module])
    captum = LayerGradCam(model, module)

    def with_captum() -> torch.Tensor:
        with torch.no_grad():
            targets = model(x).argmax(1)
        raw = captum.attribute(x, target=targets, relu_attributions=True)
        maps = LayerAttribution.interpolate(raw, tuple(x.shape[-2:]), "bilinear").flatten(1).detach()
        maps = maps - maps.min(1, keepdim=True).values
        return (maps / maps.max(1, keepdim=True).values.clamp(min=1e-12)).view(len(x), *x.shape[-2:])

    variants = {
        "pytorch-grad-cam 1.5 GradCAM (reference)": lambda: reference(input_tensor=x, targets=None),
        "captum LayerGradCam + interpolate": with_captum,
        "vggnets.explain.cam": lambda: cam(model, x, args.layer),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    outputs = {
        name: np.asarray(F.relu(torch.as_tensor(run())).cpu()) for name, run in variants.items()
    }  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - start)
    reference.activations_and_grads.release()
    base_name = next(iter(variants))
    base = args.batch_size / statistics.median(times[base_name])
    rows = []
    print(
        f"\nGrad-CAM on VGG16 {args.layer} at {args.size}x{args.size}, {args.batch_size} images per call, "
        f"median of {args.repeats}"
    )
    print("| variant | images/s | ms/image | vs pytorch-grad-cam | min Pearson r vs pytorch-grad-cam |")
    print("|---|---|---|---|---|")
    for name in variants:
        rate = args.batch_size / statistics.median(times[name])
        r = min(
            float(np.corrcoef(outputs[name][i].ravel(), outputs[base_name][i].ravel())[0, 1])
            for i in range(args.batch_size)
        )
        rows.append({"variant": name, "images_per_s": rate, "ratio": rate / base, "min_pearson": r})
        print(f"| {name} | {rate:.2f} | {1000 / rate:.0f} | {rate / base:.2f}x | {r:.6f} |")
    if args.json:
        doc = {
            "cpu": cpu,
            "size": args.size,
            "batch_size": args.batch_size,
            "layer": args.layer,
            "rows": rows,
        }
        args.json.write_text(json.dumps(doc, indent=2, default=str))


if __name__ == "__main__":
    main()

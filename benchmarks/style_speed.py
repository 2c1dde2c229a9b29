"""Seconds per L-BFGS step of neural style transfer: vggnets.stylize against the PyTorch tutorial's recipe, same run.

    python benchmarks/style_speed.py [--sizes 512,256] [--steps 3] [--rounds 2] [--device cpu] [--json out.json]

A step is one evaluation of the loss and its gradient (one forward and one backward pass through VGG19 up to conv5_1),
which is what both sides count as a step. The reference is written here after the tutorial "Neural Transfer Using
PyTorch": torchvision's ``vgg19(weights=None).features`` (seeded random weights: no pretrained file can be downloaded
here, and the speed does not depend on the values), a normalisation module, the ReLUs made out-of-place, content and
style loss modules inserted after the loss layers and the network cut after the last one, ``torch.optim.LBFGS`` with its
defaults (but ``max_iter``, set so that one ``step()`` call makes exactly the evaluations timed) and a closure that clamps
the image and counts evaluations. The layers are Gatys et al.'s for both sides
(content conv4_2; style conv1_1, conv2_1, conv3_1, conv4_1, conv5_1; the tutorial's own choice is conv2_2 and the first
five convolutions), the weights the tutorial's (style 1e6, content 1).

vggnets reads the same weights from a file (``weights=PATH``) and runs ``StyleTransfer.run``; its first step's losses
are compared with the reference's to show that both compute the same function. Both sides get the same resized
content (chelsea_cat.png) and style (rocket_launch.jpg) tensors. Per size, the sides run alternately for ``--rounds``
rounds, each ``1 + --steps`` steps of which the first is not timed; the table gives the median seconds per step, the
best, and ratios reference / vggnets (> 1: vggnets faster). ``vggnets bf16`` is the same run under bfloat16 autocast
(the default on CUDA; on a CPU only where AVX-512 BF16 or AMX exist).

This is a benchmark, not a test: nothing here asserts, and the numbers depend on the machine (printed first). On a
shared machine also look at the load average printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_cpu, format_cpu  # noqa: E402

import vggnets  # noqa: E402
from vggnets.features.style import StyleTransfer  # noqa: E402
from vggnets.io.images import read_image  # noqa: E402

PHOTOS = Path(vggnets.__file__).parent / "assets" / "images"
CONTENT_LAYERS = ("conv4_2",)
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
STYLE_WEIGHT, CONTENT_WEIGHT = 1e6, 1.0


# ----------------------------------------------------------------------------------------------------------------
# The reference: the tutorial's recipe, written out


class Normalize(nn.Module):
    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(-1, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225], device=device).view(-1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def gram(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    f = x.view(n * c, h * w)
    return f @ f.t() / (n * c * h * w)


class ContentTerm(nn.Module):
    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target.detach()
        self.loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(x, self.target)
        return x


class StyleTerm(nn.Module):
    def __init__(self, target_features: torch.Tensor) -> None:
        super().__init__()
        self.target = gram(target_features).detach()
        self.loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(gram(x), self.target)
        return x


def reference_model(
    features: nn.Sequential, content: torch.Tensor, style: torch.Tensor, device: torch.device
):
    """The tutorial's construction: walk the features, name the layers, insert loss modules, cut after the last one."""
    model = nn.Sequential(Normalize(device))
    contents, styles = [], []
    stage, conv = 1, 0
    for layer in features.children():
        if isinstance(layer, nn.Conv2d):
            conv += 1
            name = f"conv{stage}_{conv}"
        elif isinstance(layer, nn.ReLU):
            name, layer = f"relu{stage}_{conv}", nn.ReLU(inplace=False)
        elif isinstance(layer, nn.MaxPool2d):
            name, stage, conv = f"pool{stage}", stage + 1, 0
        else:
            raise RuntimeError(f"unexpected layer {layer}")
        model.add_module(name, layer)
        if name in CONTENT_LAYERS:
            term = ContentTerm(model(content[None]))
            model.add_module(f"content_{name}", term)
            contents.append(term)
        if name in STYLE_LAYERS:
            term = StyleTerm(model(style[None]))
            model.add_module(f"style_{name}", term)
            styles.append(term)
    last = max(i for i, m in enumerate(model) if isinstance(m, (ContentTerm, StyleTerm)))
    return model[: last + 1], contents, styles


def run_reference(
    features, content, style, steps: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """``steps`` closure evaluations of the tutorial's L-BFGS loop; (end time of each, first losses)."""
    model, contents, styles = reference_model(features, content, style, device)
    model.eval().requires_grad_(False)
    image = content.clone()[None].requires_grad_(True)
    # The tutorial keeps max_iter=20 and loops over step() calls; one call with max_iter=steps runs exactly `steps`
    # evaluations (the first one, then one per iteration but the last), each costing what the tutorial's cost.
    optimizer = torch.optim.LBFGS([image], max_iter=steps)
    stamps: list[float] = []
    first: list[float] = []

    def closure():
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        model(image)
        style_score = sum(t.loss for t in styles) * STYLE_WEIGHT
        content_score = sum(t.loss for t in contents) * CONTENT_WEIGHT
        loss = style_score + content_score
        loss.backward()
        if not first:
            first.extend([content_score.item(), style_score.item()])
        else:
            loss.item()  # the tutorial prints the losses; synchronise as it would
        stamps.append(time.perf_counter())
        return loss

    start = time.perf_counter()
    while len(stamps) < steps:
        optimizer.step(closure)
    with torch.no_grad():
        image.clamp_(0, 1)
    return [start, *stamps[:steps]], first


def run_ours(transfer: StyleTransfer, content, style, steps: int) -> tuple[list[float], list[float]]:
    stamps: list[float] = []
    start = time.perf_counter()
    result = transfer.run(
        content, style, size=None, steps=steps, callback=lambda r, im: stamps.append(time.perf_counter())
    )
    first = result.history[0]
    return [start, *stamps], [first.content, first.style]


def per_step(stamps: list[float]) -> list[float]:
    """Durations of the timed steps (the first step, with its warm-up, is left out)."""
    return [b - a for a, b in zip(stamps[1:], stamps[2:])]


def photo(name: str, size: int) -> torch.Tensor:
    image = read_image(PHOTOS / name).float().div(255)
    h, w = image.shape[-2:]
    shape = (round(h * size / max(h, w)), round(w * size / max(h, w)))
    return F.interpolate(image[None], size=shape, mode="bilinear", antialias=True)[0].clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="512,256", help="long sides in pixels (default: 512,256)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run (default: 3)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per side (default: 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-bf16", action="store_true", help="leave out the bf16 autocast row")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]

    cpu = describe_cpu()
    print(format_cpu(cpu))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}", end="")
    print(f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    print(f"load average before: {os.getloadavg()[0]:.1f}\n")

    torch.manual_seed(19)
    import torchvision

    reference = torchvision.models.vgg19(weights=None)
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "vgg19_random.pth"
        torch.save(reference.state_dict(), weights)
        sides = {"vggnets": StyleTransfer("vgg19", weights=weights, device=device, precision="fp32")}
        bf16_ok = device.type == "cuda" or cpu["flags"].get("avx512_bf16") or cpu["flags"].get("amx_bf16")
        if not args.no_bf16 and bf16_ok:
            sides["vggnets bf16"] = StyleTransfer("vgg19", weights=weights, device=device, precision="bf16")
    features = reference.features.to(device).eval().requires_grad_(False)

    rows = []
    for size in sizes:
        content, style = (
            photo("chelsea_cat.png", size).to(device),
            photo("rocket_launch.jpg", size).to(device),
        )
        times: dict[str, list[float]] = {"reference": [], **{name: [] for name in sides}}
        firsts: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            stamps, firsts["reference"] = run_reference(features, content, style, args.steps + 1, device)
            times["reference"] += per_step(stamps)
            for name, transfer in sides.items():
                stamps, firsts[name] = run_ours(transfer, content, style, args.steps + 1)
                times[name] += per_step(stamps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ref_median = statistics.median(times["reference"])
        for name, values in times.items():
            median = statistics.median(values)
            c, s = firsts[name]
            rc, rs = firsts["reference"]
            rows.append(
                {
                    "size": f"{content.shape[-1]}x{content.shape[-2]}",
                    "side": name,
                    "median_s": median,
                    "best_s": min(values),
                    "ratio": ref_median / median,
                    "steps_timed": len(values),
                    "first_style_rel_diff": abs(s - rs) / abs(rs),
                    "first_content": c,
                }
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}\n")
    print(
        "| size (WxH) | implementation | s/step median | s/step best | reference / this | first style loss vs ref |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['side']} | {r['median_s']:.3f} | {r['best_s']:.3f} | {r['ratio']:.2f}x | "
            f"{r['first_style_rel_diff']:.1e} |"
        )
    if args.json:
        doc = {"cpu": cpu, "torch": torch.__version__, "device": str(device), "rows": rows}
        args.json.write_text(json.dumps(doc, indent=2, default=str))


if __name__ == "__main__":
    main()

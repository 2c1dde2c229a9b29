"""Time and peak memory from ``import`` to a ready pretrained VGG16: vggnets vs torchvision, same cached file.

    python benchmarks/load_time.py [--repeats 5] [--json out.json] [--torch-home DIR] [--keep]

Once (seeded), a full-size random VGG16 state_dict made with torchvision is saved under a temporary TORCH_HOME as
``hub/checkpoints/vgg16-397923af.pth``, the official file name, so both libraries find it in the cache and never touch
the network. The file is read once before timing so that every run sees it in the page cache (warm). torchvision
accepts the file although its SHA-256 does not start with 397923af: ``torch.hub.load_state_dict_from_url`` checks the
hash prefix only when it downloads (the check sits inside ``if not os.path.exists(cached_file)``), and vggnets trusts
cache hits without hashing.

Every measurement is a fresh ``python -c`` process with TORCH_HOME pointing at that directory. Inside it the clock
starts just before ``import torch``; it records the time and VmRSS/VmHWM (/proc/self/status) and ru_maxrss after
``import torch``, after importing the library, when the model is ready (weights loaded, ``.eval()``), and after the
first forward pass on a seeded 1x3x224x224 input. The sides run alternately, one unmeasured warm-up each first, and
the table reports median (and min) per metric with the ratios vggnets / torchvision against the issue's targets
(<= 0.5x time, <= 0.6x peak RSS). Both sides' logits are compared, so the two models provably hold the same weights.

This is a benchmark, not a test: nothing here asserts, and the numbers depend on the machine (printed first).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_cpu, format_cpu  # noqa: E402

FILE_NAME = "vgg16-397923af.pth"
MIB = 1024 * 1024
RESULT_MARK = "@@RESULT@@ "
TIME_TARGET = 0.5
RSS_TARGET = 0.6

#: The measured statement of each side; ``m`` must be the ready model.
SIDES: dict[str, tuple[str, str]] = {
    "vggnets": ("import vggnets", 'm = vggnets.vgg16(weights="DEFAULT").eval()'),
    "torchvision": (
        "import torchvision",
        "m = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.DEFAULT).eval()",
    ),
}

GENERATE = """
import sys, torch, torchvision
torch.manual_seed(int(sys.argv[2]))
torch.save(torchvision.models.vgg16().state_dict(), sys.argv[1])
"""

#: Run in a fresh interpreter; {import_lib} and {build} come from SIDES. Everything before ``t0`` is excluded.
CHILD = """
import json, resource, sys, time

def status():
    out = {{}}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])  # kB
    out["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return out

t0 = time.perf_counter()
import torch
t_torch = time.perf_counter() - t0
s_torch = status()
{import_lib}
t_import = time.perf_counter() - t0
s_import = status()
{build}
t_ready = time.perf_counter() - t0
s_ready = status()
torch.manual_seed(0)
x = torch.randn(1, 3, 224, 224)
with torch.inference_mode():
    y = m(x)
t_forward = time.perf_counter() - t0
s_forward = status()
from importlib.metadata import version
tv_loaded = "torchvision" in sys.modules
print({mark!r} + json.dumps({{
    "t_torch": t_torch, "t_import": t_import, "t_ready": t_ready, "t_forward": t_forward,
    "s_torch": s_torch, "s_import": s_import, "s_ready": s_ready, "s_forward": s_forward,
    "torchvision_imported_by_lib": tv_loaded,
    "torch": torch.__version__, "torchvision": version("torchvision"), "threads": torch.get_num_threads(),
    "logits": y[0].tolist(),
}}))
"""


def child_source(side: str) -> str:
    import_lib, build = SIDES[side]
    return CHILD.format(import_lib=import_lib, build=build, mark=RESULT_MARK)


def child_env(torch_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TORCH_HOME"] = str(torch_home)
    for key in ("VGGNETS_WEIGHTS_MIRROR", "TORCH_MODEL_ZOO"):
        env.pop(key, None)
    return env


def generate(torch_home: Path, seed: int) -> tuple[Path, bool]:
    """Write the random checkpoint under torch_home unless it is there already; return (path, generated)."""
    path = torch_home / "hub" / "checkpoints" / FILE_NAME
    if path.is_file():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE_NAME}.partial")
    subprocess.run(
        [sys.executable, "-c", GENERATE, str(tmp), str(seed)], check=True, env=child_env(torch_home)
    )
    tmp.replace(path)
    return path, True


def warm_page_cache(path: Path) -> tuple[float, float, str | None]:
    """Read the file twice (seconds for each); also ``fincore``'s residency line where that tool exists."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.read(16 * MIB):
                pass
        times.append(time.perf_counter() - start)
    resident = None
    if shutil.which("fincore"):
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", str(path)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if len(out) == 2 and out[1].isdigit() and int(out[1]) > 0:
            resident = f"{int(out[0]) / int(out[1]):.0%} of the file resident per fincore"
    return times[0], times[1], resident


def run_side(side: str, torch_home: Path) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", child_source(side)],
        capture_output=True,
        text=True,
        env=child_env(torch_home),
        check=False,
    )
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{side} run failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    result["process_wall"] = wall
    return result


def metrics(r: dict[str, Any]) -> dict[str, float]:
    """Flatten one run into the reported metrics (seconds, MiB)."""
    base = r["s_torch"]["VmRSS"]
    return {
        "t_import_torch": r["t_torch"],
        "t_import": r["t_import"],
        "t_ready": r["t_ready"],
        "t_forward": r["t_forward"],
        "t_build": r["t_ready"] - r["t_import"],
        "process_wall": r["process_wall"],
        "rss_after_import_torch": base / 1024,
        "peak_ready": r["s_ready"]["ru_maxrss"] / 1024,
        "peak_forward": r["s_forward"]["ru_maxrss"] / 1024,
        "peak_increase_ready": (r["s_ready"]["VmHWM"] - base) / 1024,
        "peak_increase_forward": (r["s_forward"]["VmHWM"] - base) / 1024,
        "rss_anon_after_import_torch": r["s_torch"]["RssAnon"] / 1024,
        "rss_file_after_import_torch": r["s_torch"]["RssFile"] / 1024,
        "rss_anon_forward": r["s_forward"]["RssAnon"] / 1024,
        "rss_file_forward": r["s_forward"]["RssFile"] / 1024,
    }


#: (key, label, unit, target ratio or None) in table order.
ROWS: tuple[tuple[str, str, str, float | None], ...] = (
    ("t_import_torch", "`import torch`", "s", None),
    ("t_import", "`import torch` + library", "s", None),
    ("t_build", "build + load weights + `.eval()` only", "s", None),
    ("t_ready", "**import-to-ready**", "s", TIME_TARGET),
    ("t_forward", "**import-to-first-forward**", "s", TIME_TARGET),
    ("process_wall", "whole process (interpreter start to exit)", "s", None),
    ("rss_after_import_torch", "RSS right after `import torch`", "MiB", None),
    ("peak_ready", "peak RSS at ready", "MiB", RSS_TARGET),
    ("peak_forward", "**peak RSS after first forward**", "MiB", RSS_TARGET),
    ("peak_increase_ready", "peak RSS increase over `import torch`, at ready", "MiB", RSS_TARGET),
    (
        "peak_increase_forward",
        "**peak RSS increase over `import torch`, after first forward**",
        "MiB",
        RSS_TARGET,
    ),
    ("rss_anon_after_import_torch", "RSS after `import torch`: anonymous", "MiB", None),
    ("rss_file_after_import_torch", "RSS after `import torch`: file-backed (shared libraries)", "MiB", None),
    ("rss_anon_forward", "RSS after forward: anonymous", "MiB", None),
    ("rss_file_forward", "RSS after forward: file-backed (mapped checkpoint, libraries)", "MiB", None),
)


def summarize(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for side, side_runs in runs.items():
        out[side] = {
            key: {
                "median": statistics.median(r[key] for r in side_runs),
                "min": min(r[key] for r in side_runs),
            }
            for key, *_ in ROWS
        }
    return out


def table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    def fmt(value: float, unit: str) -> str:
        return f"{value:.3f}" if unit == "s" else f"{value:,.0f}"

    lines = [
        "| metric | vggnets median (min) | torchvision median (min) | ratio vggnets/tv | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, unit, target in ROWS:
        v, t = summary["vggnets"][key], summary["torchvision"][key]
        ratio = v["median"] / t["median"] if t["median"] else float("nan")
        met = "" if target is None else ("yes" if ratio <= target else "**NO**")
        lines.append(
            f"| {label} ({unit}) | {fmt(v['median'], unit)} ({fmt(v['min'], unit)}) | "
            f"{fmt(t['median'], unit)} ({fmt(t['min'], unit)}) | {ratio:.2f} | "
            f"{'' if target is None else f'<= {target}'} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="measured runs per side (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per side first (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random checkpoint (default 0)")
    parser.add_argument(
        "--torch-home", type=Path, help="reuse this TORCH_HOME (kept) instead of a temporary one"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary TORCH_HOME")
    parser.add_argument("--json", type=Path, help="write all numbers here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    cpu = describe_cpu()
    print("# VGG16 load time and peak RSS: vggnets vs torchvision")
    print(f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(format_cpu(cpu))

    torch_home = args.torch_home or Path(tempfile.mkdtemp(prefix="vggnets-load-time-"))
    try:
        start = time.perf_counter()
        path, generated = generate(torch_home, args.seed)
        made = (
            f"generated (seed {args.seed}) in {time.perf_counter() - start:.1f} s" if generated else "reused"
        )
        size = path.stat().st_size
        print(f"Checkpoint: {path} ({size / MIB:.1f} MiB, random weights, {made})")
        first, second, resident = warm_page_cache(path)
        print(
            f"Page cache: the file was read once before timing ({first:.2f} s), so all runs are warm: "
            f"a second read took {second:.2f} s ({size / MIB / second:,.0f} MiB/s)"
            + (f"; {resident}" if resident else "")
            + "."
        )
        print(
            "Hash: torch.hub checks the 8-hex prefix only when it downloads, so torchvision accepts this cached file "
            "whose SHA-256 differs; vggnets trusts cache hits without hashing."
        )

        sys.stdout.flush()
        order = ["vggnets", "torchvision"]
        for _ in range(args.warmup):
            for side in order:
                run_side(side, torch_home)
        raw: dict[str, list[dict[str, Any]]] = {side: [] for side in order}
        for i in range(args.repeats):
            for side in order if i % 2 == 0 else order[::-1]:
                raw[side].append(run_side(side, torch_home))
                print(
                    f"  run {i + 1}/{args.repeats} {side}: ready {raw[side][-1]['t_ready']:.3f} s",
                    file=sys.stderr,
                )
    finally:
        if args.torch_home is None and not args.keep:
            shutil.rmtree(torch_home, ignore_errors=True)
        elif args.torch_home is None:
            print(f"Kept TORCH_HOME {torch_home}")

    first_v, first_t = raw["vggnets"][0], raw["torchvision"][0]
    diff = max(abs(a - b) for a, b in zip(first_v["logits"], first_t["logits"], strict=True))
    scale = max(abs(b) for b in first_t["logits"])
    runs = {side: [metrics(r) for r in side_runs] for side, side_runs in raw.items()}
    summary = summarize(runs)

    print(
        f"torch {first_v['torch']}, torchvision {first_v['torchvision']}, {first_v['threads']} intra-op threads, "
        f"Python {sys.version.split()[0]}"
    )
    print(
        f"Repeats: {args.repeats} per side (+{args.warmup} warm-up), alternating order, each a fresh process; "
        "clock starts just before `import torch`; RSS from /proc/self/status and ru_maxrss; MiB = 2^20 bytes."
    )
    print(
        f"Same logits: max |vggnets - torchvision| = {diff:.3g} (largest |logit| {scale:.3g}) on a seeded "
        "1x3x224x224 input."
    )
    tv_in_vggnets = any(r["torchvision_imported_by_lib"] for r in raw["vggnets"])
    print(f"`import vggnets` + vgg16(weights=...) imported torchvision: {'yes' if tv_in_vggnets else 'no'}.")
    print()
    print(table(summary))
    print()
    print(
        "Ratios are of medians. Targets from the issue: import-to-ready time <= 0.5x torchvision's, peak RSS <= 0.6x. "
        "vggnets memory-maps the checkpoint, so at 'ready' its weights are not yet paged in; the first forward pass "
        "touches them, which is why the after-forward rows are the fair memory comparison."
    )

    if args.json:
        payload = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": cpu,
            "torch": first_v["torch"],
            "torchvision": first_v["torchvision"],
            "threads": first_v["threads"],
            "python": sys.version.split()[0],
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": args.seed,
            "checkpoint_bytes": size,
            "page_cache_reads_s": [first, second],
            "max_abs_logit_diff": diff,
            "torchvision_imported_by_vggnets": tv_in_vggnets,
            "summary": summary,
            "ratios": {
                key: summary["vggnets"][key]["median"] / summary["torchvision"][key]["median"]
                for key, *_ in ROWS
            },
            "runs": runs,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

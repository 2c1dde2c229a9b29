"""Scale-out: one folder through 1 process and through ``torchrun --nproc-per-node K`` (gloo on the CPU, threads split),
a resumed run after a rank is killed half-way, and the peak memory of ``vggnets features`` at two folder sizes.

    python benchmarks/scale_out.py                                  # 512 images, K=2, memory at 1,000 and 10,000
    python benchmarks/scale_out.py --images 256 --memory-images 500,2000 --json scale_out.json
    python benchmarks/scale_out.py --device cuda --processes 8      # K = number of GPUs

Everything is run as the user runs it, in fresh processes, --repeats times each, round-robin (medians): ``python -m vggnets classify FOLDER -r --format csv -o
OUT`` and ``python -m torch.distributed.run --standalone --nproc-per-node K -m vggnets classify ...`` with the same
options (a seeded random vgg11 at --width, 10 classes, so nothing is downloaded). Times are wall-clock from the
command's start to its exit, so they include starting Python and torch (and torchrun's rendezvous); images/s is
images / wall time; parallel efficiency is (images/s with K) / (K x images/s of one process given one rank's share of
the cores, OMP_NUM_THREADS = cores / K), and the K-process rate is also compared with one process on all the cores
(on a machine with few cores, the fair question is whether K processes lose anything against it). The K-process output is checked
to be byte-for-byte the 1-process output.

Resume: a K-process run is started; once half of the units are committed to OUT.parts, rank 1 is killed with SIGKILL
(torchrun then stops the others); the same command is run again and timed: it redoes only the units that were not
committed. Memory: ``vggnets features`` (relu7 of the same model) on folders of small JPEGs of two sizes, each in a
fresh process that reports its own peak RSS (``ru_maxrss``; decoding workers are separate processes, not counted).
The CPU kind and the load average come first: on a shared machine both change the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_cpu, format_cpu  # noqa: E402

import vggnets  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
#: Runs a command in this process and reports its peak RSS and the median of its RSS sampled every 0.2 s.
PEAK = """\
import resource, statistics, sys, threading, time
samples = []
def sample():
    while True:
        with open("/proc/self/statm") as f:
            samples.append(int(f.read().split()[1]) * resource.getpagesize())
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
from vggnets.cli import main
code = main(sys.argv[1:])
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
print("MEDIAN_RSS_B", statistics.median(samples), file=sys.stderr)
sys.exit(code)
"""


def make_folder(root: Path, count: int, side: int | None = None) -> Path:
    """``count`` images in 4 class folders, cycling through the bundled photos (resized to ``side`` when given)."""
    from PIL import Image

    photos = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    small = {}
    if side is not None:
        for photo in photos:
            image = Image.open(photo).convert("RGB")
            image.thumbnail((side, side))
            small[photo] = image
    for i in range(count):
        photo = photos[i % len(photos)]
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        if side is None:
            shutil.copy(photo, folder / f"img{i:06d}{photo.suffix}")
        else:
            small[photo].save(folder / f"img{i:06d}.jpg", quality=90)
    return root


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done


def torchrun(processes: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]


def worker_with_rank(parent: int, rank: int) -> int | None:
    """The pid of the process below ``parent`` whose environment has RANK=rank (a torchrun worker)."""
    children = {parent}
    for _ in range(3):  # torchrun -> workers (-> loader workers)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) in children:
                    children.add(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
    for pid in sorted(children - {parent}):
        try:
            environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"LOCAL_RANK=" + str(rank).encode() in environ:
            return pid
    return None


def kill_half_way(command: list[str], cwd: Path, env: dict[str, str], parts: Path, units: int) -> dict:
    """Run ``command``; SIGKILL rank 1 once half the units are committed; return what was committed then."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    killed = None
    while process.poll() is None:
        committed = len(list(parts.glob("unit-*"))) if parts.is_dir() else 0
        if killed is None and committed >= units / 2:
            pid = worker_with_rank(process.pid, 1)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = committed
        time.sleep(0.05)
    process.communicate()
    left = len(list(parts.glob("unit-*"))) if parts.is_dir() else 0
    return {"killed_at_units": killed, "committed_after": left, "exit_code": process.returncode}


def throughput(args: argparse.Namespace, work: Path, weights: Path, env: dict[str, str]) -> dict:
    folder = make_folder(work / "photos", args.images)
    common = ["classify", str(folder), "-r", "--model", "vgg11", "--weights", str(weights), "--device", args.device,
              "-q", "-b", str(args.batch_size), "--unit-size", str(args.unit_size), "--format", "csv"]  # fmt: skip
    units = -(-args.images // args.unit_size)
    # one rank's share of the machine: what each of the K processes gets (torchrun splits the cores)
    rank_threads = max(1, (os.cpu_count() or 1) // args.processes)
    rank_env = {**env, "OMP_NUM_THREADS": str(rank_threads)}
    runs_of = (
        ("one", [sys.executable], env),
        ("rank", [sys.executable], rank_env),
        ("many", torchrun(args.processes), env),
    )
    times: dict[str, list[float]] = {name: [] for name, _, _ in runs_of}
    for repeat in range(args.repeats):  # round-robin: a change in the machine's load hits all alike
        for name, launcher, run_env in runs_of:
            seconds, done = timed(
                [*launcher, "-m", "vggnets", *common, "-o", f"{name}{repeat}.csv"], work, run_env
            )
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            times[name].append(seconds)
    one_s, many_s = statistics.median(times["one"]), statistics.median(times["many"])
    rank_s = statistics.median(times["rank"])
    same = all(
        (work / f"many{r}.csv").read_bytes() == (work / "one0.csv").read_bytes() for r in range(args.repeats)
    )
    command = [*torchrun(args.processes), "-m", "vggnets", *common, "-o", "resumed.csv"]
    kill = kill_half_way(command, work, env, work / "resumed.csv.parts", units)
    if kill["killed_at_units"] is None:
        raise SystemExit("rank 1 could not be killed half-way (the run finished first): use more --images.")
    resumed_s, resumed = timed(command, work, env)
    return {
        "images": args.images,
        "units": units,
        "one_process_runs": times["one"],
        "k_process_runs": times["many"],
        "one_process_seconds": one_s,
        "k_process_seconds": many_s,
        "one_process_images_per_second": args.images / one_s,
        "k_process_images_per_second": args.images / many_s,
        "rank_threads": rank_threads,
        "one_rank_runs": times["rank"],
        "one_rank_seconds": rank_s,
        "one_rank_images_per_second": args.images / rank_s,
        "speedup_over_one_process": one_s / many_s,
        "parallel_efficiency": (args.images / many_s) / (args.processes * args.images / rank_s),
        "k_output_equals_one": same,
        "kill": kill,
        "resumed_seconds": resumed_s,
        "resumed_ok": resumed.returncode == 0
        and (work / "resumed.csv").read_bytes() == (work / "one0.csv").read_bytes(),
        "resumed_note": next((ln for ln in resumed.stderr.splitlines() if "resumed:" in ln), ""),
    }


def memory(args: argparse.Namespace, work: Path, weights: Path, env: dict[str, str]) -> list[dict]:
    rows = []
    for count in args.memory_images:
        folder = make_folder(work / f"small{count}", count, side=160)
        command = [sys.executable, "-c", PEAK, "features", str(folder), "-r", "--model", "vgg11", "--weights",
                   str(weights), "--device", args.device, "-q", "-b", str(args.memory_batch), "-o",
                   f"f{count}.npy"]  # fmt: skip
        seconds, done = timed(command, work, env)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        said = dict(
            ln.split()[:2] for ln in done.stderr.splitlines() if ln.startswith(("MAXRSS_KB", "MEDIAN_RSS"))
        )
        rows.append({"images": count, "seconds": seconds, "peak_rss_mib": int(said["MAXRSS_KB"]) / 1024,
                     "median_rss_mib": float(said["MEDIAN_RSS_B"]) / 2**20,
                     "matrix_mib": count * int(4096 * args.width) * 4 / 2**20})  # fmt: skip
    return rows


def runs(seconds: list[float]) -> str:
    return ", ".join(f"{s:.1f}" for s in seconds)


def report(machine: str, load: str, args: argparse.Namespace, result: dict | None, mem: list[dict]) -> str:
    lines = [
        f"CPU: {machine}",
        f"uptime before the runs: {load}",
        f"uptime after the runs: {uptime()}",
        f"model: vgg11 at width {args.width} (seeded random, 10 classes), device {args.device}",
    ]
    if result is not None:
        lines += ["", *throughput_table(args, result)]
    if mem:
        lines += [
            "",
            f"| vggnets features (relu7), 160-pixel JPEGs, batch {args.memory_batch} | seconds (wall) | peak RSS (MiB) "
            "| median RSS (MiB) | the matrix (MiB) |",
            "|---|---|---|---|---|",
            *(
                f"| {m['images']} images | {m['seconds']:.1f} | {m['peak_rss_mib']:.0f} | {m['median_rss_mib']:.0f} "
                f"| {m['matrix_mib']:.1f} |"
                for m in mem
            ),
        ]
    return "\n".join(lines)


def throughput_table(args: argparse.Namespace, result: dict) -> list[str]:
    k = args.processes
    kill = result["kill"]
    return [
        f"classify: {args.images} images, batch {args.batch_size}, units of {args.unit_size}; medians of "
        f"{args.repeats} runs each, round-robin (all runs: 1 process {runs(result['one_process_runs'])} s; "
        f"1 process with {result['rank_threads']} thread(s) {runs(result['one_rank_runs'])} s; "
        f"{k} processes {runs(result['k_process_runs'])} s)",
        "",
        "| run | seconds (wall) | images/s | vs 1 process on all cores | parallel efficiency |",
        "|---|---|---|---|---|",
        f"| 1 process, all cores | {result['one_process_seconds']:.1f} | "
        f"{result['one_process_images_per_second']:.1f} | 1.00x | - |",
        f"| 1 process, one rank's share ({result['rank_threads']} thread(s)) | {result['one_rank_seconds']:.1f} | "
        f"{result['one_rank_images_per_second']:.1f} | "
        f"{result['one_process_seconds'] / result['one_rank_seconds']:.2f}x | (the unit) |",
        f"| torchrun, {k} processes | {result['k_process_seconds']:.1f} | "
        f"{result['k_process_images_per_second']:.1f} | {result['speedup_over_one_process']:.2f}x | "
        f"{100 * result['parallel_efficiency']:.0f}% |",
        f"| torchrun, {k} processes, rerun after rank 1 was killed half-way | {result['resumed_seconds']:.1f} | - | "
        f"- | {result['resumed_seconds'] / result['k_process_seconds']:.2f}x the full run's time |",
        "",
        f"{k}-process output equal to 1 process byte for byte: {result['k_output_equals_one']}; killed when "
        f"{kill['killed_at_units']} of {result['units']} units were committed ({kill['committed_after']} when the "
        f"group stopped); rerun: {result['resumed_note'].strip()}; output equal: {result['resumed_ok']}",
    ]


def lscpu_model() -> str:
    """The CPU's model name and core count as ``lscpu`` gives them."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def uptime() -> str:
    """``uptime``'s line (the load averages), or /proc/loadavg."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        path = Path("/proc/loadavg")
        return path.read_text().strip() if path.exists() else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=512, help="images in the folder (default: 512)")
    parser.add_argument("--processes", type=int, default=2, help="torchrun processes K (default: 2)")
    parser.add_argument("--width", type=float, default=0.25, help="vgg11 channel width (default: 0.25)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--unit-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, round-robin (default: 3)")
    parser.add_argument(
        "--memory-images",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1000, 10000],
        help="folder sizes for the features memory check (default: 1000,10000; empty: skip)",
    )
    parser.add_argument(
        "--memory-batch", type=int, default=8, help="batch size of the features runs (default: 8)"
    )
    parser.add_argument(
        "--only", choices=("throughput", "memory"), default=None, help="run one of the two parts"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    machine, load = lscpu_model(), uptime()
    print(format_cpu(describe_cpu()), flush=True)
    with tempfile.TemporaryDirectory(prefix="scale_out.") as tmp:
        work = Path(tmp)
        torch.manual_seed(11)
        weights = work / "vgg11.pth"
        torch.save(vggnets.vgg11(width=args.width, num_classes=10).state_dict(), weights)
        env = {**os.environ, "TORCH_HOME": str(work / "torch_home")}
        env.pop("OMP_NUM_THREADS", None)  # torchrun's default, which vggnets reads as "share the cores"
        result = throughput(args, work, weights, env) if args.only in (None, "throughput") else None
        mem = memory(args, work, weights, env) if args.memory_images and args.only in (None, "memory") else []
    text = report(machine, load, args, result, mem)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"cpu": machine, "load": load, "classify": result, "features_memory": mem},
                                        indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()

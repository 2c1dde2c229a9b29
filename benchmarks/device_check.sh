#!/usr/bin/env bash
# The GPU check, one script, under 8 minutes on one GPU: every CUDA test (pytest -m cuda), then `vggnets benchmark
# --device cuda` at batch 1, 64 and 256 (fp32 eager baseline vs the engine in fp32 and bf16), and the end-to-end run
# from JPEG files (nvJPEG batch decoding) at batch 256. JSON, logs and a Markdown summary go into one folder:
#
#   bash benchmarks/device_check.sh [RESULTS_DIR]        (default: $OUT when set, else ./device-results)
#
# Without a CUDA device it says so, writes a summary saying it was skipped, and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${1:-${OUT:-device-results}}"
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
status=0

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" 2>/dev/null; then
    echo "device_check: no CUDA device here: skipping the GPU check"
    "$PY" benchmarks/device_summary.py "$RESULTS" --skipped "no CUDA device"
    exit 0
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to RESULTS/NAME.log, remember a failure
    local name=$1 limit=$2
    shift 2
    echo "device_check: $name"
    if ! timeout "$limit" "$@" >"$RESULTS/$name.log" 2>&1; then
        echo "device_check: $name FAILED (see $name.log)"
        status=1
    fi
    tail -n 25 "$RESULTS/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$RESULTS/gpu.csv" 2>&1 || true
step tests 240 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py tests/test_inference_compiled.py \
    --junitxml="$RESULTS/tests.xml"

IMAGES=$(mktemp -d)
"$PY" benchmarks/device_summary.py --make-images "$IMAGES" 512
for batch in 1 64 256; do
    extra=()
    [ "$batch" = 256 ] && extra=(--images "$IMAGES")
    step "bench-b$batch" 150 "$PY" -m vggnets benchmark --device cuda --batch-size "$batch" --precision fp32,bf16 \
        --iterations 20 --latency-iterations 50 --quiet --force --output "$RESULTS/bench-b$batch.json" "${extra[@]}"
done
rm -rf "$IMAGES"

"$PY" benchmarks/device_summary.py "$RESULTS"
exit $status

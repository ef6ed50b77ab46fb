#!/usr/bin/env bash
# gpu-check.sh — the one command to run on a machine with an NVIDIA GPU
# (CUDA + cuDNN in $CUDA, default /usr/local/cuda): builds what it can of
# the cuda backend, runs its tests (and compute-sanitizer memcheck on a short
# run when present), then benchmarks maad against PyTorch on the same GPU,
# same model file and frames, S=256, batches 1, 4 and 32.  Installs nothing
# unless the Debian packages are missing and the network is reachable.
# Everything it writes goes to build/gpu-check/.  Takes under 5 minutes.
#   BENCH_SECONDS (default 2): timed seconds per benchmark row.
set -u
cd "$(dirname "$0")/.."
CUDA=${CUDA:-/usr/local/cuda}
PY=${PYTHON:-python3}
SECS=${BENCH_SECONDS:-2}
OUT=build/gpu-check
mkdir -p "$OUT"
status=0
note() { printf '\n=== %s\n' "$*"; }

note "machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$CUDA/bin/nvcc" --version | tail -n 1 || { echo "no nvcc in $CUDA/bin: cannot build the cuda backend"; exit 1; }
grep -h '#define CUDNN_M[AI][JN]OR ' "$CUDA"/include/cudnn_version*.h 2>/dev/null | head -n 2
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1

note "build"
PKGS="aravis-0.8 libsystemd yaml-0.1 libzmq jansson spng lapacke"
missing=$(for p in $PKGS; do pkg-config --exists "$p" || echo "$p"; done)
if [ -n "$missing" ] && [ -x scripts/install-deps.sh ] && [ "$(id -u)" = 0 ] &&
   timeout 20 apt-get update -qq >/dev/null 2>&1; then
    echo "installing the missing packages ($missing)"
    scripts/install-deps.sh
    missing=$(for p in $PKGS; do pkg-config --exists "$p" || echo "$p"; done)
fi
built=0
if [ -n "$missing" ]; then
    echo "missing pkg-config packages, no network to install them: $missing"
    echo "maad cannot be built here: only the PyTorch rows of the benchmark will run"
elif make -j"$(nproc)" CUDA="$CUDA" build/tests/test_cuda build/bench_cuda >"$OUT/build.log" 2>&1; then
    built=1
    echo "built build/tests/test_cuda build/bench_cuda"
else
    tail -n 30 "$OUT/build.log"
    echo "build failed (full log: $OUT/build.log)"
    status=1
fi

if [ "$built" = 1 ]; then
    note "tests"
    build/tests/test_cuda 2>&1 | tee "$OUT/test_cuda.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    # The PyTorch golden cases (tests/test_golden.py runs them for the CPU
    # backends); helper_golden uses the backend's default precision, f16.
    note "golden cases vs PyTorch float64, backend cuda (f16)"
    if make -j"$(nproc)" CUDA="$CUDA" build/tests/helper_golden >>"$OUT/build.log" 2>&1; then
        for case in small mono default; do
            if "$PY" scripts/golden.py --out "$OUT/golden-$case" --case "$case" >/dev/null 2>&1; then
                build/tests/helper_golden "$OUT/golden-$case/manifest.json" --backend cuda \
                    --maps 2e-2 --fmd 2e-2 --mask 2>&1 | tail -n 4
                [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
            else
                echo "scripts/golden.py --case $case failed here: skipped"
            fi
        done
    else
        echo "helper_golden does not build: skipped"
    fi
    if command -v compute-sanitizer >/dev/null || [ -x "$CUDA/bin/compute-sanitizer" ]; then
        note "compute-sanitizer --tool memcheck (quick tests)"
        san=$(command -v compute-sanitizer || echo "$CUDA/bin/compute-sanitizer")
        timeout 120 "$san" --tool memcheck --error-exitcode 9 build/tests/test_cuda --quick \
            >"$OUT/memcheck.log" 2>&1
        rc=$?
        tail -n 5 "$OUT/memcheck.log"
        [ "$rc" -eq 0 ] || { echo "memcheck exit $rc (log: $OUT/memcheck.log)"; status=1; }
    else
        echo "compute-sanitizer not found: memcheck skipped"
    fi
fi

note "benchmark: S=256, default widths, batches 1 4 32, ${SECS}s per row"
MODEL=$OUT/bench-256.safetensors FRAMES=$OUT/frames-256.u8
if [ -f scripts/export_model.py ] &&
   "$PY" scripts/export_model.py --random --size 256 --out "$MODEL" >/dev/null 2>&1; then
    echo "model: scripts/export_model.py --random --size 256"
elif [ "$built" = 1 ] && build/bench_cuda --write-model "$MODEL" 256; then
    echo "model: test weights of tests/testmodel.h"
else
    echo "cannot make a model file"; exit 1
fi
"$PY" scripts/bench_torch.py --make-frames "$FRAMES" 256 3 64 || { echo "cannot make frames"; exit 1; }
: >"$OUT/results.txt"
if [ "$built" = 1 ]; then
    for prec in f32 f16; do
        for n in 1 4 32; do
            build/bench_cuda "$MODEL" "$FRAMES" cuda "$prec" "$n" "$SECS" 2>&1 |
                tee -a "$OUT/results.txt" | grep -v '^RESULT' || true
        done
    done
fi
"$PY" scripts/bench_torch.py "$MODEL" "$FRAMES" "$SECS" 1 4 32 2>&1 |
    tee -a "$OUT/results.txt" | grep -v '^RESULT' || true

# Table: one row per (pipeline, batch); ratio = frames/s over PyTorch eager f32's.
awk '
/^RESULT/ {
    name = $2; n = $4; sub(":", "", n); ms = $5; fps = $7
    key = name " " n; rows[++k] = key; MS[key] = ms; FPS[key] = fps
    if (name == "torch-eager-f32") base[n] = fps
}
END {
    printf "\n%-18s %5s %12s %12s %10s\n", "pipeline", "batch", "ms/batch", "frames/s", "vs eager"
    for (i = 1; i <= k; i++) {
        split(rows[i], p, " ")
        r = base[p[2]] ? sprintf("%.2fx", FPS[rows[i]] / base[p[2]]) : "-"
        printf "%-18s %5s %12.3f %12.1f %10s\n", p[1], p[2], MS[rows[i]], FPS[rows[i]], r
    }
}' "$OUT/results.txt" | tee "$OUT/table.txt"
grep -q '^RESULT' "$OUT/results.txt" || status=1
exit $status

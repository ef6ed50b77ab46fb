#!/usr/bin/env bash
# gpu-check.sh — the one command to run on a machine with an NVIDIA GPU
# (CUDA + cuDNN in $CUDA, default /usr/local/cuda): builds what it can of
# the cuda backend, runs its tests (and compute-sanitizer memcheck on a short
# run when present), then benchmarks maad against PyTorch on the same GPU,
# same model file and frames, S=256, batches 1, 4 and 32, then on camera
# frames of 1920x1200 that both shrink to 256 on the GPU.  Installs nothing
# unless the Debian packages are missing and the network is reachable; where
# it cannot build (the lent GPU machine has CUDA, cuDNN and PyTorch but none
# of maad's Debian dependencies and no network), it runs the programs of
# build/gpu-bundle.tar.xz, made on the development machine by
# scripts/gpu-bundle.sh and carried along.
# Everything it writes goes to build/gpu-check/.  Took 177 s on the H200
# before the fused cases and rows (MAA_CUDA_FUSED) were added; see
# docs/cuda-backend.md.
#   BENCH_SECONDS (default 2): timed seconds per benchmark row.
#   BUDGET_SECONDS (default 240): the later stages (camera-frame benchmark,
#     golden cases, memcheck, f32 rows) start only while the run is within
#     it; the benchmark of the targets and the tests always run.
set -u
cd "$(dirname "$0")/.." || exit 1
CUDA=${CUDA:-/usr/local/cuda}
PY=${PYTHON:-python3}
SECS=${BENCH_SECONDS:-2}
BUDGET=${BUDGET_SECONDS:-240}
LOG=build/gpu-check
mkdir -p "$LOG"
status=0
note() { printf '\n=== %s\n' "$*"; }
# stage TITLE: note TITLE and succeed while the run is within its budget;
# past it, say the stage is skipped (and the run still counts the rest).
skipped=
stage() {
    note "$1"
    [ "$SECONDS" -le "$BUDGET" ] && return 0
    echo "skipped: gpu-check has run $SECONDS s of its BUDGET_SECONDS=$BUDGET"
    skipped="$skipped; $1"
    return 1
}

note "machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$CUDA/bin/nvcc" --version | tail -n 1 || { echo "no nvcc in $CUDA/bin: cannot build the cuda backend"; exit 1; }
grep -h '#define CUDNN_M[AI][JN]OR ' "$CUDA"/include/cudnn_version*.h 2>/dev/null | head -n 2
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1

note "build"
PKGS="aravis-0.8 libsystemd yaml-0.1 libzmq jansson spng lapacke"
missing=$(for p in $PKGS; do pkg-config --exists "$p" || echo "$p"; done)
if [ -n "$missing" ] && [ ! -f build/gpu-bundle.tar.xz ] && [ -x scripts/install-deps.sh ] &&
   [ "$(id -u)" = 0 ] &&
   timeout 20 apt-get update -qq >/dev/null 2>&1; then
    echo "installing the missing packages ($missing)"
    scripts/install-deps.sh
    missing=$(for p in $PKGS; do pkg-config --exists "$p" || echo "$p"; done)
fi
built=0
if [ -z "$missing" ]; then
    if make -j"$(nproc)" CUDA="$CUDA" build/tests/test_cuda build/tests/test_cudnn_plan \
            build/tests/test_worker build/tests/helper_golden build/bench_cuda \
            >"$LOG/build.log" 2>&1; then
        built=1
        echo "built build/tests/test_cuda build/tests/test_cudnn_plan build/tests/test_worker" \
             "build/tests/helper_golden build/bench_cuda"
    else
        tail -n 30 "$LOG/build.log"
        echo "build failed (full log: $LOG/build.log)"
        status=1
    fi
elif [ -f build/gpu-bundle.tar.xz ]; then
    echo "missing pkg-config packages, no network to install them: $missing"
    tar -xJf build/gpu-bundle.tar.xz
    need=$(cat build/gpu-lib/GLIBC)
    have=$(ldd --version | awk 'NR == 1 { print $NF }')
    if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
        echo "the prebuilt programs need glibc >= $need, this machine has $have"
    else
        # cuDNN: the toolkit's, else the one PyTorch ships.
        dnn=$("$PY" -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null)
        export LD_LIBRARY_PATH="$PWD/build/gpu-lib:$CUDA/lib64${dnn:+:$dnn}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        built=1
        echo "using the programs prebuilt by scripts/gpu-bundle.sh (cuDNN from ${dnn:-$CUDA/lib64})"
    fi
else
    echo "missing pkg-config packages, no network to install them: $missing"
    echo "and no build/gpu-bundle.tar.xz: only the PyTorch rows of the benchmark will run"
fi

note "model and frames for the benchmark and the fused smoke check (S=256)"
MODEL=$LOG/bench-256.safetensors FRAMES=$LOG/frames-256.u8
have_model=0
if [ -f scripts/export_model.py ] &&
   "$PY" scripts/export_model.py --random --size 256 --out "$MODEL" >"$LOG/export.log" 2>&1; then
    echo "model: scripts/export_model.py --random --size 256"
    have_model=1
elif tail -n 3 "$LOG/export.log" && [ "$built" = 1 ] &&
     build/bench_cuda --write-model "$MODEL" 256; then
    echo "model: test weights of tests/testmodel.h"
    have_model=1
else
    echo "cannot make a model file: no smoke check, no benchmark"
    status=1
fi
if [ "$have_model" = 1 ] && ! "$PY" scripts/bench_torch.py --make-frames "$FRAMES" 256 3 64; then
    echo "cannot make frames: no smoke check, no benchmark"
    have_model=0 status=1
fi

fused_ok=0
if [ "$built" = 1 ] && [ "$have_model" = 1 ]; then
    # One engine with MAA_CUDA_FUSED=1 first (plans built, probed, timed
    # against the legacy calls): if it fails, plans fewer than 24 layers,
    # builds its plans one at a time or takes over 60 s, the fused tests and
    # bench rows are skipped (and this run fails), so that the rest fits.
    note "fused cuDNN graphs: smoke check (one engine, batch 4, MAA_CUDA_FUSED=1)"
    t0=$SECONDS
    MAA_CUDA_FUSED=1 MAA_CUDA_PROFILE=1 timeout -k 10 120 build/bench_cuda "$MODEL" "$FRAMES" \
        cuda f16 4 0.5 >"$LOG/fused-smoke.log" 2>&1
    rc=$?
    took=$((SECONDS - t0))
    grep -E '^(RESULT|STAGES|ENGINE)|plan|legacy' "$LOG/fused-smoke.log" | head -n 40
    planned=$(sed -nE 's/^ENGINE .* for ([0-9]+) of [0-9]+ layers.*/\1/p' "$LOG/fused-smoke.log")
    echo "smoke check: exit $rc, ${planned:-no} layers planned, $took s"
    if [ "$rc" -ne 0 ] || [ "${planned:-0}" -lt 24 ] || [ "$took" -gt 60 ]; then
        tail -n 5 "$LOG/fused-smoke.log"
        export MAA_TEST_FUSED_SKIP="gpu-check's fused smoke check failed ($LOG/fused-smoke.log)"
        status=1
    elif grep -qE 'rebuilt on the handle|built one at a time' "$LOG/fused-smoke.log"; then
        # Plans built one at a time take seconds each: the 9 fused engines
        # of test_cuda would not fit the run.
        export MAA_TEST_FUSED_SKIP="plans had to be built one at a time ($LOG/fused-smoke.log)"
        status=1
    else
        fused_ok=1
    fi
elif [ "$built" = 1 ]; then
    export MAA_TEST_FUSED_SKIP="no model or frames for gpu-check's fused smoke check"
fi

# The headline numbers first (the targets are at f16, batches 4 and 32),
# then the tests; the stages after them run while the run is within
# BUDGET_SECONDS.
note "benchmark: S=256, default widths, batches 1 4 32, ${SECS}s per row"
: >"$LOG/results.txt"
bench_rows() {  # PRECISION BATCH...: maad rows into results.txt
    local prec=$1 n
    shift
    for n in "$@"; do
        # Batch 4 also prints the per-layer times (MAA_CUDA_PROFILE).
        MAA_CUDA_PROFILE=$([ "$n" = 4 ] && echo 1 || echo 0) \
        MAA_CUDA_FUSED=$([ "$prec" = f16-fused ] && echo 1 || echo 0) \
        timeout -k 10 90 build/bench_cuda "$MODEL" "$FRAMES" cuda "${prec%-fused}" "$n" "$SECS" 2>&1 |
            tee -a "$LOG/results.txt" || true
    done
}
if [ "$built" = 1 ] && [ "$have_model" = 1 ]; then
    bench_rows f16 1 4 32
    # f16-fused: MAA_CUDA_FUSED=1, each layer on its fused cuDNN graph or
    # its legacy calls, whichever its timing at warm-up found faster; at
    # the batches of the targets only (4 and 32), to keep the run short.
    [ "$fused_ok" = 1 ] && bench_rows f16-fused 4 32
fi
[ "$have_model" = 1 ] && timeout -k 10 150 "$PY" scripts/bench_torch.py "$MODEL" "$FRAMES" "$SECS" 1 4 32 2>&1 |
    tee -a "$LOG/results.txt" || true

if [ "$built" = 1 ]; then
    note "tests"
    # The test_fused_* cases build fused cuDNN graphs: cuDNN compiles their
    # kernels, a large part of this run.
    t0=$SECONDS
    timeout -k 10 300 build/tests/test_cuda 2>&1 | tee "$LOG/test_cuda.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    echo "test_cuda: $((SECONDS - t0)) s"
    # The daemon's worker on the device path: 8-bit frames kept, shrunk and
    # judged on the GPU, published with the host path's scores, and archived
    # from the engine's frame buffers with their own pixels.
    CHECK_ONLY=test_device timeout -k 10 60 build/tests/test_worker 2>&1 |
        tee "$LOG/test_worker.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    # The device's own description, for tests/data/h200-deviceprop.json.
    build/tests/test_cudnn_plan --dump-device "$LOG/deviceprop.json" &&
        echo "cuDNN device properties: $LOG/deviceprop.json"
fi

# Camera frames larger than the model: maad shrinking them on the device
# (maa_engine_opts.frame_bytes) and on the host (maa_preprocess, as without
# it), and PyTorch's fastest way with F.interpolate(mode='area') on the GPU.
GEOM=1920x1200 CAMFRAMES=$LOG/frames-1920x1200.u8
: >"$LOG/results-frames.txt"
if stage "benchmark: 1920x1200 RGB camera frames shrunk to S=256, batch 4, ${SECS}s per row" &&
   [ "$have_model" = 1 ] && "$PY" scripts/bench_torch.py --make-frames "$CAMFRAMES" $GEOM 3 24; then
    for where in $([ "$built" = 1 ] && echo device host); do
        MAA_CUDA_FUSED=0 timeout -k 10 60 build/bench_cuda "$MODEL" "$CAMFRAMES" cuda f16 4 "$SECS" \
            $GEOM $where 2>&1 | tee -a "$LOG/results-frames.txt" || true
    done
    timeout -k 10 90 "$PY" scripts/bench_torch.py "$MODEL" "$CAMFRAMES" "$SECS" 4 --frame $GEOM \
        --modes f16-graph 2>&1 | tee -a "$LOG/results-frames.txt" || true
    rm -f "$CAMFRAMES"
fi

# The PyTorch golden cases (tests/test_golden.py runs them for the CPU
# backends); helper_golden uses the backend's default precision, f16.
if [ "$built" = 1 ] && stage "golden cases vs PyTorch float64, backend cuda (f16)"; then
    for case in small mono default; do
        if timeout -k 10 60 "$PY" scripts/golden.py --out "$LOG/golden-$case" --case "$case" \
                >"$LOG/golden-$case.log" 2>&1; then
            timeout -k 10 60 build/tests/helper_golden "$LOG/golden-$case/manifest.json" --backend cuda \
                --maps 2e-2 --fmd 2e-2 --mask 2>&1 | tee "$LOG/golden-$case-cuda.log"
            [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
        else
            tail -n 5 "$LOG/golden-$case.log"
            echo "scripts/golden.py --case $case failed here"
            status=1
        fi
    done
fi

if [ "$built" = 1 ] && stage "compute-sanitizer --tool memcheck (quick tests)"; then
    if command -v compute-sanitizer >/dev/null || [ -x "$CUDA/bin/compute-sanitizer" ]; then
        san=$(command -v compute-sanitizer || echo "$CUDA/bin/compute-sanitizer")
        timeout -k 10 100 "$san" --tool memcheck --error-exitcode 9 build/tests/test_cuda --quick \
            >"$LOG/memcheck.log" 2>&1
        rc=$?
        tail -n 5 "$LOG/memcheck.log"
        [ "$rc" -eq 0 ] || { echo "memcheck exit $rc (log: $LOG/memcheck.log)"; status=1; }
    else
        echo "compute-sanitizer not found: memcheck skipped"
    fi
fi

# f32: in the issue's table, but far from the targets and measured before.
if [ "$built" = 1 ] && [ "$have_model" = 1 ] && stage "benchmark: maad f32, batches 1 4 32"; then
    bench_rows f32 1 4 32
fi

# Table: one row per (pipeline, batch); the ratios are frames/s over PyTorch
# eager f32's and over the fastest PyTorch variant's at that batch.
table() {
awk '
/^RESULT/ {
    name = $2; n = $4; sub(":", "", n); ms = $5; fps = $7
    key = name " " n; rows[++k] = key; MS[key] = ms; FPS[key] = fps
    if (name == "torch-eager-f32") base[n] = fps
    if (name ~ /^torch/ && fps > best[n]) best[n] = fps
}
END {
    printf "\n%-26s %5s %10s %10s %9s %9s\n", "pipeline", "batch", "ms/batch", "frames/s",
           "vs eager", "vs best"
    for (i = 1; i <= k; i++) {
        split(rows[i], p, " ")
        r = base[p[2]] ? sprintf("%.2fx", FPS[rows[i]] / base[p[2]]) : "-"
        b = best[p[2]] ? sprintf("%.2fx", FPS[rows[i]] / best[p[2]]) : "-"
        printf "%-26s %5s %10.3f %10.1f %9s %9s\n", p[1], p[2], MS[rows[i]], FPS[rows[i]], r, b
    }
}' "$1"
}
table "$LOG/results.txt" | tee "$LOG/table.txt"
table "$LOG/results-frames.txt" | tee "$LOG/table-frames.txt"
grep -q '^RESULT' "$LOG/results.txt" || status=1
"$PY" scripts/plot_gpu_bench.py "$LOG/results.txt" "$LOG/bench.png" 2>&1 | tail -n 1
[ -n "$skipped" ] && echo "skipped over the budget: ${skipped#; }"
echo "gpu-check: ${SECONDS} s, exit $status"
exit $status

#!/usr/bin/env bash
# demo.sh (make demo) — a live inspection line on this machine alone:
# a synthetic surface set (scripts/gen_synth.py), a tiny model trained on CPU
# for about two minutes (scripts/train.py), its calibration (maa calibrate),
# a fake GigE Vision camera serving the test parts (maa fakecam) into maad,
# `maa watch` for about 20 s, and a summary of the run.
#   DEMO_ITERS      training iterations (default 500, about 2 minutes)
#   DEMO_SECONDS    how long the line runs (default 20)
#   DEMO_FPS        camera frame rate (default 20)
#   DEMO_DIR        keep everything there (default: a temporary directory)
set -u
. "$(dirname "$0")/e2e-lib.sh"
iters=${DEMO_ITERS:-500}
secs=${DEMO_SECONDS:-20}
fps=${DEMO_FPS:-20}

die() { echo "demo: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

# Every piece must be there before anything runs.
missing=()
for f in scripts/gen_synth.py scripts/train.py; do
    [ -f "$E2E_ROOT/$f" ] || missing+=("$f")
done
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (not on this branch yet)"
"$PY" -c 'import torch, zmq' 2>/dev/null || die "missing: python3 torch and zmq ($PY)"
make -C "$E2E_ROOT" -j2 all >/dev/null || die "the build failed (make)"
for c in fakecam watch calibrate; do
    "$MAA" "$c" --help >/dev/null 2>&1 || die "missing: 'maa $c' (not in this build)"
done

# A private network namespace keeps the camera and the ports off the real
# network; without permission for one, the loopback of the host serves.
if [ -z "${E2E_NETNS:-}" ] && unshare -n true 2>/dev/null; then
    E2E_NETNS=1 exec unshare -n bash "$0" "$@"
fi
[ -n "${E2E_NETNS:-}" ] && ip link set lo up
if [ -n "${DEMO_DIR:-}" ]; then
    mkdir -p "$DEMO_DIR" && E2E_TMP=$(cd "$DEMO_DIR" && pwd)
else
    E2E_TMP=$(mktemp -d /tmp/maad-demo.XXXXXX)
fi
trap e2e_cleanup EXIT
E2E_KEEP=${DEMO_DIR:-}
cd "$E2E_TMP" || exit 1

step "synthetic surface set (64 x 64, gray)"
"$PY" "$E2E_ROOT/scripts/gen_synth.py" --out data --size 64 --channels 1 \
    --train-good 200 --test-good 30 --test-defect 4 --seed 1 | tail -n 1 ||
    die "gen_synth.py failed"

step "training a tiny model on CPU ($iters iterations)"
"$PY" "$E2E_ROOT/scripts/train.py" --data data --out model.safetensors --size 64 \
    --channels 1 --g-base 2 --d-base 8 --iters "$iters" --batch 16 --device cpu \
    2>&1 | tr '\r' '\n' | grep -E '^train:|iter [0-9]+0{2}/' || true
[ -s model.safetensors ] || die "train.py wrote no model"

backend=ref
probe=(data/test/good/*)
"$MAA" infer --model model.safetensors --backend cpu "${probe[0]}" >/dev/null 2>&1 && backend=cpu
step "calibration on the defect-free training parts (backend $backend)"
"$MAA" calibrate --model model.safetensors --images data/train/good --out calibration.yaml \
    --backend "$backend" --gamma 3 --plot calibration.png 2>&1 | sed 's/^/  /' ||
    die "maa calibrate failed"

# The line: good and defective test parts, shuffled, named in serving order.
mkdir -p line
i=0
for f in $(ls -d data/test/*/* | shuf --random-source=<(yes)); do
    ln -s "$E2E_TMP/$f" "line/$(printf '%04d' $i)-$(basename "$(dirname "$f")").${f##*.}"
    i=$((i + 1))
done

step "fake camera at $fps frames/s, maad, and maa watch for $secs s"
e2e_fakecam line "$fps" DEMO fakecam.log || die "maa fakecam did not start: $(cat fakecam.log.out)"
cat >maad.yaml <<EOC
camera:
  name: demo
  device_id: "$E2E_CAM_ID"
  packet_socket: false
  frame_rate: $fps
model:
  path: model.safetensors
  calibration: calibration.yaml
engine:
  backend: $backend
  batch_max: 4
publish:
  endpoint: tcp://127.0.0.1:5555
log:
  summary_interval_s: 5
EOC
e2e_subscribe tcp://127.0.0.1:5555 verdicts.jsonl
e2e_maad maad.yaml maad.log || die "maad did not start: $(tail -n 3 maad.log)"
t0=$(date +%s.%N)
timeout "$secs" "$MAA" watch tcp://127.0.0.1:5555
e2e_stop "$E2E_MAAD"
t1=$(date +%s.%N)
e2e_stop "$E2E_CAM" 10
e2e_stop "$E2E_SUB" 10

step "summary"
grep -E 'summary:|final:' maad.log | sed 's/^/  /'
"$PY" - verdicts.jsonl "$t0" "$t1" "$(ls line | wc -l)" "$(ls line | grep -vc -- '-good\.')" <<'EOF'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
secs = float(sys.argv[3]) - float(sys.argv[2])
kinds = {k: sum(m["verdict"] == k for m in v) for k in ("pass", "reject", "uninspected")}
lat = sorted((m["t_publish_ns"] - m["t_capture_ns"]) / 1e6 for m in v)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
print("  frames %d, passes %d, rejects %d, uninspected %d" %
      (len(v), kinds["pass"], kinds["reject"], kinds["uninspected"]))
print("  %.1f frames/s over %.1f s, latency p50 %.1f ms, p99 %.1f ms" %
      (len(v) / secs, secs, q(0.5), q(0.99)))
n, bad = int(sys.argv[4]), int(sys.argv[5])
print("  the camera looped over %d parts, %d of them defective (%.0f%%). A model trained\n"
      "  for two minutes on a CPU shows the line at work, not the detector's quality:\n"
      "  expect few rejects or none (docs/quality.md measures longer training)." %
      (n, bad, 100.0 * bad / n if n else 0))
EOF
if [ -n "$E2E_KEEP" ]; then
    echo "  files kept in $E2E_TMP"
fi

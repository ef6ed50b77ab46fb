#!/usr/bin/env bash
# demo.sh (make demo) — a live inspection line on this machine alone: the
# model shipped in models/groove (trained by scripts/train.py on the
# synthetic groove view, calibrated on good parts it never saw), a line of
# 50 unseen parts of that view (30 good, 20 defective; scripts/gen_synth.py)
# served by a fake GigE Vision camera (maa fakecam) into maad, `maa watch`
# for about 20 s, and a summary: which defective parts were rejected and
# which good parts passed.
#   DEMO_SECONDS    how long the line runs (default 20)
#   DEMO_FPS        camera frame rate (default 10)
#   DEMO_DIR        keep everything there (default: a temporary directory,
#                   removed at the end)
#   DEMO_TRAIN=1    instead of the shipped model, train a tiny one on the
#                   spot (64 x 64 gray, DEMO_ITERS iterations, default 500,
#                   about two minutes): it shows the workflow, not the
#                   detector's quality
set -u
. "$(dirname "$0")/e2e-lib.sh"
secs=${DEMO_SECONDS:-20}
fps=${DEMO_FPS:-10}
train=${DEMO_TRAIN:-0}
iters=${DEMO_ITERS:-500}
shipped=$E2E_ROOT/models/groove

die() { echo "demo: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

# Every piece must be there before anything runs.
missing=()
for f in scripts/gen_synth.py scripts/train.py models/groove/model.safetensors \
    models/groove/calibration.yaml models/groove/SHA256SUMS; do
    [ -f "$E2E_ROOT/$f" ] || missing+=("$f")
done
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (not on this branch yet)"
"$PY" -c 'import torch, zmq' 2>/dev/null || die "missing: python3 torch and zmq ($PY)"
make -C "$E2E_ROOT" -j2 all >/dev/null || die "the build failed (make)"
for c in fakecam watch calibrate infer; do
    "$MAA" "$c" --help >/dev/null 2>&1 || die "missing: 'maa $c' (not in this build)"
done
(cd "$shipped" && sha256sum --quiet -c SHA256SUMS) ||
    die "models/groove does not match its SHA256SUMS (a damaged checkout?)"

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

backend=ref
if [ "$train" = 1 ]; then
    step "synthetic surface set (64 x 64, gray) and a tiny model trained on CPU ($iters iterations)"
    "$PY" "$E2E_ROOT/scripts/gen_synth.py" --out data --size 64 --channels 1 \
        --train-good 200 --test-good 30 --test-defect 4 --seed 1 | tail -n 1 ||
        die "gen_synth.py failed"
    "$PY" "$E2E_ROOT/scripts/train.py" --data data --out model.safetensors --size 64 \
        --channels 1 --g-base 2 --d-base 8 --iters "$iters" --batch 16 --device cpu \
        2>&1 | tr '\r' '\n' | grep -E '^train:|iter [0-9]+0{2}/' || true
    [ -s model.safetensors ] || die "train.py wrote no model"
    probe=(data/test/good/*)
    "$MAA" infer --model model.safetensors --backend cpu "${probe[0]}" >/dev/null 2>&1 && backend=cpu
    step "calibration on the 40 good parts train.py held out (backend $backend)"
    "$MAA" calibrate --model model.safetensors --out calibration.yaml --backend "$backend" \
        --gamma 3 --plot calibration.png 2>&1 | sed 's/^/  /' || die "maa calibrate failed"
    pixfmt=Mono8
else
    step "the shipped model: models/groove (S=128, trained on the groove view; models/groove/README.md)"
    cp "$shipped/model.safetensors" "$shipped/calibration.yaml" .
    "$MAA" model-info model.safetensors | sed -n 's/^\(sha256\|dtype\|input\):/  &/p'
    sed -n 's/^\(n\|threshold\|pixel_threshold\|min_region_area\): /  calibration &/p' \
        calibration.yaml
    step "50 parts of the groove view it never saw (30 good, 20 defective)"
    "$PY" "$E2E_ROOT/scripts/gen_synth.py" --out data --view groove --train-good 0 \
        --test-good 30 --test-defect 4 --seed 0 | tail -n 1 || die "gen_synth.py failed"
    probe=(data/test/good/*)
    "$MAA" infer --model model.safetensors --backend cpu "${probe[0]}" >/dev/null 2>&1 && backend=cpu
    pixfmt=RGB8
fi

# The line: good and defective test parts, shuffled, named in serving order.
mkdir -p line
i=0
for f in $(ls -d data/test/*/* | shuf --random-source=<(yes)); do
    ln -s "$E2E_TMP/$f" "line/$(printf '%04d' $i)-$(basename "$(dirname "$f")").${f##*.}"
    i=$((i + 1))
done
# Each part judged once offline, for the summary: a verdict is matched to
# its part by its score, which maad computes with the same numbers.
"$MAA" infer --model model.safetensors --calibration calibration.yaml --backend "$backend" \
    line/* >parts.jsonl 2>infer.err || die "maa infer failed: $(tail -n 3 infer.err)"

step "fake camera ($pixfmt) at $fps frames/s, maad, and maa watch for $secs s"
e2e_fakecam line "$fps" DEMO fakecam.log --pixel-format "$pixfmt" ||
    die "maa fakecam did not start: $(cat fakecam.log.out)"
cat >maad.yaml <<EOC
camera:
  name: demo
  device_id: "$E2E_CAM_ID"
  pixel_format: $pixfmt
  packet_socket: false
  frame_rate: $fps
model:
  path: model.safetensors
  calibration: calibration.yaml
  rule: either
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
timeout "$secs" "$MAA" watch tcp://127.0.0.1:5555 --passes count
e2e_stop "$E2E_MAAD"
t1=$(date +%s.%N)
e2e_stop "$E2E_CAM" 10
e2e_stop_sub verdicts.jsonl maad.log

step "summary"
grep -E 'summary:|final:' maad.log | sed 's/^/  /'
"$PY" - verdicts.jsonl parts.jsonl "$t0" "$t1" <<'EOF'
import json, os, sys
v = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
parts = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
secs = float(sys.argv[4]) - float(sys.argv[3])
kinds = {k: sum(m["verdict"] == k for m in v) for k in ("pass", "reject", "uninspected")}
lat = sorted((m["t_publish_ns"] - m["t_capture_ns"]) / 1e6 for m in v)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
print("  frames %d, passes %d, rejects %d, uninspected %d" %
      (len(v), kinds["pass"], kinds["reject"], kinds["uninspected"]))
print("  %.1f frames/s over %.1f s, latency p50 %.1f ms, p99 %.1f ms (maad waits up to a\n"
      "  frame period to fill a batch of 4, so latencies alternate between short and long)" %
      (len(v) / secs, secs, q(0.5), q(0.99)))
# Which part each frame showed: the one maa infer gave the same score.
kind = {}
for p in parts:
    kind[p["image"]] = os.path.basename(p["image"]).split("-", 1)[1].rsplit(".", 1)[0]
seen, unmatched = {}, 0
for m in v:
    if m["verdict"] == "uninspected":
        continue
    best = min(parts, key=lambda p: abs(p["score"] - m["score"]))
    if abs(best["score"] - m["score"]) > 1e-6 * max(1.0, abs(m["score"])):
        unmatched += 1
        continue
    seen.setdefault(best["image"], []).append(m)
bad = [i for i in seen if kind[i] != "good"]
good = [i for i in seen if kind[i] == "good"]
rej_bad = [i for i in bad if all(m["verdict"] == "reject" for m in seen[i])]
pass_good = [i for i in good if all(m["verdict"] == "pass" for m in seen[i])]
by = {}
for i in rej_bad:
    e = " and ".join(seen[i][0]["evidence"])
    by[e] = by.get(e, 0) + 1
n_parts = len(parts)
n_bad = sum(kind[p["image"]] != "good" for p in parts)
print("  the camera looped over %d parts, %d of them defective; %d parts were seen" %
      (n_parts, n_bad, len(seen)) + (", %d frames matched no part" % unmatched if unmatched else ""))
print("  DEFECTIVE parts rejected: %d of %d seen (evidence: %s)" %
      (len(rej_bad), len(bad), ", ".join("%s %d" % kv for kv in sorted(by.items())) or "none"))
print("  (a part counts as rejected when every frame of it was; the other defective\n"
      "   parts are listed with why they passed)")
for i in sorted(set(bad) - set(rej_bad)):
    print("    passed: %s (%s)" % (os.path.basename(i), seen[i][0]["reason"]))
print("  GOOD parts passed: %d of %d seen" % (len(pass_good), len(good)))
for i in sorted(set(good) - set(pass_good)):
    print("    rejected: %s (%s)" % (os.path.basename(i), seen[i][0]["reason"]))
EOF
if [ "$train" = 1 ]; then
    echo "  (DEMO_TRAIN=1: a model trained for two minutes on a CPU shows the workflow, not"
    echo "   the detector's quality; docs/quality.md measures the shipped one)"
fi
if [ -n "$E2E_KEEP" ]; then
    echo "  files kept in $E2E_TMP"
else
    echo "  (DEMO_DIR=DIR keeps the model, calibration, images, verdicts and logs)"
fi

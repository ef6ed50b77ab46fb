#!/usr/bin/env bash
# Sustained-rate run (issue 6): a fake GigE Vision camera at 33 frames/s into
# maad for 10 minutes on a model of a realistic shape, in a private network
# namespace; counts every frame, checks seq is gap-free and nothing was lost,
# and draws the latency histogram (capture -> publish).  Not part of make test.
#
#   scripts/bench-sustained.sh [OUTDIR]
#   env: SECONDS_RUN (600), FPS (33), SIZE (128), GBASE (8), DBASE (16),
#        BACKEND (cpu), BATCH (4)
. "$(dirname "$0")/e2e-lib.sh"
out=$(mkdir -p "${1:-build/sustained}" && cd "${1:-build/sustained}" && pwd)
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP" || exit 1
run=${SECONDS_RUN:-600} fps=${FPS:-33}
size=${SIZE:-128} gb=${GBASE:-8} db=${DBASE:-16}
backend=${BACKEND:-cpu} batch=${BATCH:-4}

"$PY" "$E2E_ROOT/scripts/export_model.py" --random --size "$size" --channels 1 --g-base "$gb" \
    --d-base "$db" --seed 3 --out model.safetensors >/dev/null
e2e_images good 40 1 0 640 480
e2e_images line 60 2 5 640 480
"$MAA" calibrate --model model.safetensors --images good --out cal.yaml --backend "$backend" >cal.log
e2e_fakecam line "$fps" SUST fakecam.log || { echo "maa fakecam failed: $(cat fakecam.log.out)"; exit 1; }
cat >maad.yaml <<EOC
camera:
  name: sustained
  device_id: "$E2E_CAM_ID"
  packet_socket: false
  frame_rate: $fps
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: $backend
  batch_max: $batch
publish:
  endpoint: tcp://127.0.0.1:5557
  heartbeat_ms: 500
log:
  summary_interval_s: 60
EOC
e2e_subscribe tcp://127.0.0.1:5557 verdicts.jsonl
e2e_maad maad.yaml maad.log || { echo "maad did not start: $(tail -n 3 maad.log)"; exit 1; }
echo "running $run s at $fps frames/s: S=$size C=1 g_base=$gb d_base=$db, backend $backend, batch $batch"
sleep "$run"
# maad first: SIGTERM drains what it captured; stopping the camera first
# would add a camera-error verdict at the end.
e2e_stop "$E2E_MAAD" 30
e2e_stop "$E2E_CAM" 20
e2e_stop "$E2E_SUB" 10
grep -E 'final:' maad.log
"$PY" - verdicts.jsonl "$out" "$run" "$fps" "$size" "$gb" "$db" "$backend" <<'PYEOF'
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
path, out, run, fps, size, gb, db, backend = sys.argv[1:]
v = [json.loads(l) for l in open(path) if l.strip()]
seq = [m["seq"] for m in v]
gaps = sum(1 for a, b in zip(seq, seq[1:]) if b != a + 1)
kinds = {k: sum(m["verdict"] == k for m in v) for k in ("pass", "reject", "uninspected")}
ids = [m["frame_id"] for m in v if m["frame_id"] is not None]
# GigE frame ids are 16-bit and skip 0 when they wrap.
missing = sum((b - a) % 65535 - 1 for a, b in zip(ids, ids[1:]) if (b - a) % 65535 != 1)
lat = np.array([(m["t_publish_ns"] - m["t_capture_ns"]) / 1e6 for m in v if m["verdict"] != "uninspected"])
span = (v[-1]["t_capture_ns"] - v[0]["t_capture_ns"]) / 1e9 if len(v) > 1 else 0
p = {q: float(np.percentile(lat, q)) for q in (50, 90, 99, 99.9)} if len(lat) else {}
summary = {"frames": len(v), "seq_gaps": gaps, "frame_id_gaps": missing, **kinds, "duration_s": span,
           "fps": len(v) / span if span else 0, "latency_ms": p, "max_latency_ms": float(lat.max()) if len(lat) else None}
print(json.dumps(summary, indent=1))
json.dump(summary, open(f"{out}/sustained.json", "w"), indent=1)
fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
ax.hist(lat, bins=np.linspace(0, max(lat.max(), 1) * 1.02, 80), color="#2e86c1")
for q, c in ((50, "k"), (99, "#c0392b")):
    ax.axvline(p[q], color=c, ls="--", lw=1, label=f"p{q} {p[q]:.1f} ms")
ax.set_yscale("log")
ax.set_xlabel("latency capture -> verdict published (ms)")
ax.set_ylabel("frames")
ax.set_title(f"maad, {len(v)} frames in {span/60:.1f} min at {fps} fps, S={size} g{gb}/d{db}, {backend}")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(f"{out}/latency-histogram.png")
PYEOF

#!/usr/bin/env bash
# The model swap's cost to the line: a fake GigE Vision camera (640 x 480
# Mono8) at 33 frames/s into maad on the cpu backend with a model of a
# realistic shape, in a private network namespace; every INTERVAL_S
# seconds SIGHUP swaps in the other of two models (same shape, other
# seeds, each with its calibration), SWAPS times.  Prints the latency from
# capture to publish (the subscriber's t_publish_ns - t_capture_ns) in
# steady state and around the swaps: from each SIGHUP until the first two
# batches of the new model are published (its engine is made and
# self-tested on this machine's cores while the old one judges).  Also
# checks that every frame got one verdict, seq gap-free, and that the
# models' verdicts follow the seqs the log names.  Not part of make test.
#
#   scripts/bench-swap.sh [OUTDIR]
#   env: SWAPS (6), INTERVAL_S (15), WARMUP_S (5), FPS (33), SIZE (128),
#        GBASE (8), DBASE (16), BACKEND (cpu), BATCH (4)
. "$(dirname "$0")/e2e-lib.sh"
out=$(mkdir -p "${1:-build/bench-swap}" && cd "${1:-build/bench-swap}" && pwd)
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP" || exit 1
swaps=${SWAPS:-6} interval=${INTERVAL_S:-15} warmup=${WARMUP_S:-5} fps=${FPS:-33}
size=${SIZE:-128} gb=${GBASE:-8} db=${DBASE:-16}
backend=${BACKEND:-cpu} batch=${BATCH:-4}

e2e_images good 40 1 0 640 480
e2e_images line 60 2 5 640 480
for m in a b; do
    "$PY" "$E2E_ROOT/scripts/export_model.py" --random --size "$size" --channels 1 \
        --g-base "$gb" --d-base "$db" --seed $([ $m = a ] && echo 3 || echo 4) \
        --out $m.safetensors >/dev/null &&
        "$MAA" calibrate --model $m.safetensors --images good --out $m.yaml --backend "$backend" \
            --plot $m.png >$m.cal.log 2>&1 || { echo "model $m: $(tail -n 3 $m.cal.log)"; exit 1; }
done
e2e_fakecam line "$fps" SWAP fakecam.log || { echo "maa fakecam failed: $(cat fakecam.log.out)"; exit 1; }

# write_config MODEL: model MODEL.safetensors with its calibration MODEL.yaml
write_config()
{
    cat >maad.yaml <<EOC
camera:
  name: swap
  device_id: "$E2E_CAM_ID"
  packet_socket: false
  frame_rate: $fps
model:
  path: $1.safetensors
  calibration: $1.yaml
engine:
  backend: $backend
  batch_max: $batch
publish:
  endpoint: tcp://127.0.0.1:5558
log:
  summary_interval_s: 60
EOC
}
write_config a
e2e_subscribe tcp://127.0.0.1:5558 verdicts.jsonl
e2e_maad maad.yaml maad.log || { echo "maad did not start: $(tail -n 3 maad.log)"; exit 1; }
echo "$swaps swaps, $interval s apart, at $fps frames/s: S=$size C=1 g_base=$gb d_base=$db," \
    "backend $backend, batch $batch; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
: >hups
sleep "$warmup"
model=a
for i in $(seq "$swaps"); do
    sleep "$interval"
    model=$([ $model = a ] && echo b || echo a)
    write_config $model
    date +%s%N >>hups
    kill -HUP "$E2E_MAAD"
    e2e_wait_count maad.log 'swapped in' "$i" 120 || { echo "swap $i: $(tail -n 3 maad.log)"; break; }
done
sleep "$interval"
e2e_stop "$E2E_MAAD" 60
e2e_stop "$E2E_CAM" 20
e2e_stop_sub verdicts.jsonl maad.log
grep -E 'final:' maad.log
"$PY" - verdicts.jsonl maad.log hups "$batch" "$warmup" "$out" "$(sha256sum a.safetensors)" <<'PYEOF'
import datetime, json, re, sys
import numpy as np
vpath, log, hups, batch, warmup, out, first_sha = sys.argv[1:]
batch, warmup = int(batch), float(warmup)
v = [json.loads(l) for l in open(vpath) if l.strip()]
hup = [int(l) for l in open(hups) if l.strip()]
swap = []
for line in open(log):
    m = re.search(r"^(\S+)Z .*SIGHUP: model .* \(sha256 ([0-9a-f]+)\) swapped in from the next "
                  r"batch, seq (\d+) on: .*engine made in ([0-9.]+) s .*self-test score \S+ in "
                  r"([0-9.]+) ms", line)
    if m:
        t = datetime.datetime.fromisoformat(m[1]).replace(tzinfo=datetime.timezone.utc)
        swap.append({"t_ns": int(t.timestamp() * 1e9), "sha": m[2], "seq": int(m[3]),
                     "made_s": float(m[4]), "test_ms": float(m[5])})
errs = []
if len(swap) != len(hup):
    errs.append("%d SIGHUPs, %d swaps logged" % (len(hup), len(swap)))
if [m["seq"] for m in v] != list(range(len(v))):
    errs.append("seq not gap-free")
# Each verdict's model: the one swapped in last at or before its seq, or
# the first.
for m in v:
    k = sum(s["seq"] <= m["seq"] for s in swap)
    want = swap[k - 1]["sha"] if k else first_sha[:12]
    if not m["model"].startswith(want):
        errs.append("seq %d: model %.12s, expected %s" % (m["seq"], m["model"], want))
        break
lat = np.array([(m["t_publish_ns"] - m["t_capture_ns"]) / 1e6 for m in v])
pub = np.array([m["t_publish_ns"] for m in v])
# Around a swap: published from its SIGHUP until the new model's second
# batch is out.
around = np.zeros(len(v), bool)
for h, s in zip(hup, swap):
    end = pub[min(s["seq"] + 2 * batch - 1, len(v) - 1)]
    around |= (pub >= h) & (pub <= end)
steady = ~around & (pub >= pub[0] + warmup * 1e9)


def stats(x):
    return {"n": int(len(x)), "p50": float(np.percentile(x, 50)), "p99": float(np.percentile(x, 99)),
            "max": float(x.max())} if len(x) else {"n": 0}


res = {"frames": len(v), "uninspected": sum(m["verdict"] == "uninspected" for m in v),
       "steady_ms": stats(lat[steady]), "around_swaps_ms": stats(lat[around]),
       "swaps": [{"sighup_to_swapped_s": (s["t_ns"] - h) / 1e9, "engine_made_s": s["made_s"],
                  "self_test_ms": s["test_ms"],
                  "max_latency_ms": float(lat[(pub >= h) & (pub <= pub[min(s["seq"] + 2 * batch - 1,
                                                                             len(v) - 1)])].max())}
                 for h, s in zip(hup, swap)], "errors": errs}
json.dump(res, open(out + "/bench-swap.json", "w"), indent=1)
print("| latency capture -> publish | verdicts | p50 ms | p99 ms | max ms |")
print("|---|---|---|---|---|")
for name, k in (("steady state", "steady_ms"), ("around the swaps", "around_swaps_ms")):
    s = res[k]
    print("| %s | %d | %.1f | %.1f | %.1f |" % (name, s["n"], s.get("p50", 0), s.get("p99", 0),
                                              s.get("max", 0)))
print()
print("| swap | SIGHUP to swapped in s | engine made s | self-test ms | max latency ms |")
print("|---|---|---|---|---|")
for i, s in enumerate(res["swaps"], 1):
    print("| %d | %.2f | %.2f | %.0f | %.1f |" % (i, s["sighup_to_swapped_s"], s["engine_made_s"],
                                                 s["self_test_ms"], s["max_latency_ms"]))
print("\n%d verdicts, %d uninspected; %s" % (res["frames"], res["uninspected"],
                                            "; ".join(errs) if errs else "seq gap-free, "
                                            "every verdict under the model the log names"))
sys.exit(1 if errs else 0)
PYEOF

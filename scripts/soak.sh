#!/usr/bin/env bash
# soak.sh — maad for an hour under the abuse of a line: a fake camera at 33
# frames/s that is killed and started again every CAMERA_EVERY seconds,
# subscribers that connect and disconnect hundreds of times (some never
# reading a message), SIGHUP every HUP_EVERY seconds.  Samples maad's RSS and
# open file descriptors every 10 s; at the end checks every captured frame
# has one verdict, seq gap-free, and that RSS and descriptors stay flat
# (the growth from the first tenth of the run to the last, and a fitted
# slope), and draws the curve.  A benchmark of endurance, not a test.
#
#   scripts/soak.sh [OUT_DIR]      SOAK_SECONDS (3600), CAMERA_EVERY (180),
#                                  HUP_EVERY (60), FPS (33)
#   MAAD=build/san/maad MAA=build/san/maa SOAK_SECONDS=600 scripts/soak.sh
#                                  the same on the sanitizer build (make san):
#                                  0 sanitizer reports wanted in maad.log
#                                  (and no leak at exit); RSS is not judged
#                                  there (ASan's quarantine keeps freed memory)
#   CURVE=1 ...                    the verdict socket with CURVE: every
#                                  subscriber with a key, one in six a key
#                                  maad does not allow (refused); SIGHUP also
#                                  rereads the allowed keys
# OUT_DIR (default build/soak) keeps the log, samples.csv, soak.png.
set -u
. "$(dirname "$0")/e2e-lib.sh"
OUT=$(mkdir -p "${1:-$E2E_ROOT/build/soak}" && cd "${1:-$E2E_ROOT/build/soak}" && pwd)
e2e_isolate "$OUT"
e2e_need_build
cd "$E2E_TMP"
SECS=${SOAK_SECONDS:-3600} CAM_EVERY=${CAMERA_EVERY:-180} HUP_EVERY=${HUP_EVERY:-60}
FPS=${FPS:-33}

e2e_fixture || { echo "soak: fixture failed"; exit 1; }
curve_conf="" sub_keys=()
if [ -n "${CURVE:-}" ]; then
    mkdir -p keys clients
    for k in maad reader stranger; do "$MAA" keygen "$k" --dir keys >/dev/null; done
    cp keys/reader.key clients/
    curve_conf="  curve_secret_key: keys/maad.key_secret
  curve_clients: clients"
    sub_keys=(keys/maad.key keys/reader.key_secret)
fi
# ASan's quarantine holds freed memory: RSS says nothing about leaks there
# (LeakSanitizer does, at maad's exit).
sanitized=$(ldd "$MAAD" | grep -c 'lib[at]san')
e2e_fakecam good "$FPS" SOAK fakecam.log || { echo "soak: maa fakecam failed"; exit 1; }
cat >maad.yaml <<EOC
camera:
  name: soak
  device_id: "$E2E_CAM_ID"
  packet_socket: false
  frame_rate: $FPS
  timeout_ms: 500
  reconnect_min_ms: 200
  reconnect_max_ms: 1000
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
  threads: 1
publish:
  endpoint: tcp://127.0.0.1:5699
  sndhwm: 100
$curve_conf
log:
  summary_interval_s: 60
EOC
e2e_subscribe tcp://127.0.0.1:5699 verdicts.jsonl "${sub_keys[@]}"
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} e2e_maad_up maad.yaml maad.log
e2e_wait_file verdicts.jsonl.ready 10 || echo "soak: no heartbeat yet"

# Subscriber churn: a new one every 0.2-2 s, each staying 0.1-5 s; a third
# of them never read (maad keeps at most publish.sndhwm messages for each).
"$PY" - tcp://127.0.0.1:5699 "$SECS" "${CURVE:-}" >churn.log 2>&1 <<'EOF' &
import random, sys, time, zmq, zmq.auth
ep, secs, curve = sys.argv[1], float(sys.argv[2]), sys.argv[3]
ctx = zmq.Context()
random.seed(1)
end = time.time() + secs
n = reading = refused = 0
while time.time() < end:
    s = ctx.socket(zmq.SUB)
    if curve:
        stranger = random.random() < 1 / 6
        refused += stranger
        s.curve_serverkey = zmq.auth.load_certificate("keys/maad.key")[0]
        s.curve_publickey, s.curve_secretkey = zmq.auth.load_certificate(
            "keys/stranger.key_secret" if stranger else "keys/reader.key_secret")
    s.setsockopt(zmq.SUBSCRIBE, b"maad.")
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ep)
    read = random.random() > 1 / 3
    stay = time.time() + random.uniform(0.1, 5)
    while time.time() < stay:
        if read and s.poll(50):
            s.recv_multipart()
        elif not read:
            time.sleep(0.05)
    s.close()
    n += 1
    reading += read
    time.sleep(random.uniform(0.2, 2))
print(f"churn: {n} subscribers, {reading} reading, {n - reading} never reading" +
      (f", {refused} with a key maad refuses" if curve else ""))
EOF
E2E_PIDS+=($!)

echo "t_s,rss_kib,fds,verdicts" >samples.csv
start=$SECONDS next_cam=$CAM_EVERY next_hup=$HUP_EVERY next_sample=0 kills=0 hups=0
while [ $((SECONDS - start)) -lt "$SECS" ]; do
    t=$((SECONDS - start))
    if [ "$t" -ge "$next_sample" ]; then
        rss=$(awk '/^VmRSS:/ {print $2}' /proc/"$E2E_MAAD"/status 2>/dev/null)
        fds=$(ls /proc/"$E2E_MAAD"/fd 2>/dev/null | wc -l)
        echo "$t,${rss:-0},$fds,$(wc -l <verdicts.jsonl)" >>samples.csv
        next_sample=$((next_sample + 10))
    fi
    if [ "$t" -ge "$next_hup" ]; then
        kill -HUP "$E2E_MAAD" && hups=$((hups + 1))
        next_hup=$((next_hup + HUP_EVERY))
    fi
    if [ "$t" -ge "$next_cam" ]; then
        e2e_stop "$E2E_CAM" 10
        sleep 5
        e2e_fakecam good "$FPS" SOAK "fakecam$kills.log" || echo "soak: fake camera restart failed"
        kills=$((kills + 1))
        next_cam=$((next_cam + CAM_EVERY))
    fi
    kill -0 "$E2E_MAAD" 2>/dev/null || { echo "soak: maad died"; break; }
    sleep 1
done

e2e_stop "$E2E_MAAD"
rc=$?
e2e_stop "$E2E_CAM" 10
e2e_stop_sub verdicts.jsonl maad.log
wait 2>/dev/null
cp maad.log samples.csv churn.log "$OUT"/
echo "soak: $((SECONDS - start)) s, camera killed $kills times, $hups SIGHUPs, maad exit $rc"
cat churn.log
e2e_final maad.log || echo "soak: no final line"
check "every captured frame one verdict, seq gap-free" e2e_verdicts verdicts.jsonl \
    "${F_captured:-0}" restarts
check "no sanitizer report" bash -c "! grep -qE 'ERROR: [A-Za-z]+Sanitizer|runtime error:' maad.log"
[ -n "${CURVE:-}" ] && echo "maad: $(grep -c 'connected with key' maad.log) subscribers allowed," \
    "$(grep -c 'refused subscriber' maad.log) refusal lines logged"
flat=$("$PY" - samples.csv "$OUT/soak.png" 2>&1 <<'EOF'
import csv, sys
import numpy as np
rows = list(csv.DictReader(open(sys.argv[1])))
t = np.array([float(r["t_s"]) for r in rows])
rss = np.array([float(r["rss_kib"]) for r in rows]) / 1024
fds = np.array([float(r["fds"]) for r in rows])
k = max(1, len(t) // 10)
# After the first tenth (start-up, first reconnections): growth from the
# second tenth to the last, and the fitted slope per hour.
a, b = slice(k, 2 * k), slice(len(t) - k, len(t))
grow = rss[b].mean() - rss[a].mean()
slope = np.polyfit(t[k:], rss[k:], 1)[0] * 3600 if len(t) > 2 * k else 0
fgrow = fds[b].mean() - fds[a].mean()
print(f"RSS {rss[a].mean():.1f} -> {rss[b].mean():.1f} MiB ({grow:+.2f} MiB; "
      f"slope {slope:+.2f} MiB/h), max {rss.max():.1f} MiB; fds {fds[a].mean():.1f} -> "
      f"{fds[b].mean():.1f} (max {fds.max():.0f})")
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.plot(t / 60, rss, label="RSS (MiB)")
ax.set_xlabel("minutes"); ax.set_ylabel("MiB")
ax2 = ax.twinx(); ax2.plot(t / 60, fds, color="tab:orange", label="open fds")
ax2.set_ylabel("file descriptors")
fig.legend(loc="lower right"); fig.tight_layout(); fig.savefig(sys.argv[2], dpi=80)
# Flat: less than 2 MiB (or 2%) and one descriptor of growth after start-up.
sys.exit(0 if grow < max(2, 0.02 * rss[a].mean()) and fgrow < 1 else 1)
EOF
)
flat_rc=$?
if [ "$sanitized" -gt 0 ]; then
    echo "     RSS not judged on the sanitizer build: $flat"
elif [ "$flat_rc" -eq 0 ]; then
    ok "RSS and descriptors flat: $flat"
else
    fail "RSS or descriptors grow" "$flat"
fi
e2e_summary

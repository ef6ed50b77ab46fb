#!/usr/bin/env bash
# e2e_maad_drift — the drift alarm (docs/operations.md, "Drift alarm") on
# replays: a line whose lighting brightens by degrees until the scores of
# the parts that still pass have drifted up raises the alarm (a warning
# line, the heartbeat's drift_alarm, the metrics), and it clears (a notice,
# drift_alarm 0) once good parts come again; a stationary line, fresh
# images like the calibration's, raises nothing although the alarm judges
# it all along.  The alarm's defaults but for a window of 40 parts (so
# that a replay of a few seconds fills it); the scores are checked first
# with `maa infer`: most drifted parts still pass.  The drifting replay once
# more under "systemd" (INVOCATION_ID set, a journald socket of the test's
# own): the journal records carry the MAAD_DRIFT fields.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
# The journal's records are read from a socket of the test's own at
# journald's path, in a mount namespace (unshare -m); without one that part
# is skipped.
if [ -z "${E2E_MNTNS:-}" ]; then
    if unshare -m true 2>/dev/null; then
        E2E_MNTNS=1 exec unshare -m bash "$0" "$@"
    fi
    E2E_MNTNS=none
fi
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

# The calibration of 60 good images: its mu is the mean of good parts
# within a few percent, as a line's commissioning makes it.
e2e_model model.safetensors && e2e_images good 60 1 &&
    e2e_calibrate model.safetensors good cal.yaml ||
    { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }

# lit DIR SEED N OFFSETS...: N images like e2e_images' good ones, the i-th
# brightened by the i-th offset (the last one repeated).
lit()
{
    "$PY" - "$@" <<'EOF'
import os, sys
import numpy as np
d, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
off = [float(a) for a in sys.argv[4:]]
os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(seed)
w, h = 128, 96
y, x = np.mgrid[0:h, 0:w]
for i in range(n):
    img = 128 + off[min(i, len(off) - 1)] + 40 * np.sin(x / 7.0 + rng.uniform(0, 6.3)) * \
        np.cos(y / 9.0) + rng.normal(0, 6, (h, w))
    with open(os.path.join(d, "img%04d.pgm" % i), "wb") as f:
        f.write(b"P5 %d %d 255\n" % (w, h) + img.clip(0, 255).astype(np.uint8).tobytes())
EOF
}
# Drifting: 40 good parts, the light up by 70 grey levels over 30 parts and
# held for 40, then the 60 good images of the calibration (named after).
lit drifting 21 110 $(for i in $(seq 40); do echo 0; done) \
    $(for i in $(seq 30); do echo $((70 * i / 30)); done)
for f in good/*.pgm; do cp "$f" "drifting/z-${f#good/}"; done
lit stationary 11 100 0
nd=$(ls drifting | wc -l) ns=$(ls stationary | wc -l)

check "maa infer: the drifted parts score higher, most of them still pass" \
    "$PY" - "$MAA" <<'PYEOF'
import json, subprocess, sys
def infer(files):
    out = subprocess.run([sys.argv[1], "infer", "--model", "model.safetensors",
                          "--calibration", "cal.yaml", "--backend", "ref", "--rule", "score"]
                         + files, capture_output=True, text=True, check=True).stdout
    return [json.loads(l) for l in out.splitlines()]
import glob
good = infer(sorted(glob.glob("drifting/img00[0-3]*.pgm")))
lit = infer(sorted(glob.glob("drifting/img0*.pgm"))[70:110])
mg = sum(m["score"] for m in good) / len(good)
ml = sum(m["score"] for m in lit) / len(lit)
passed = sum(m["verdict"] == "pass" for m in lit)
assert ml > mg * 1.25, "mean score %.4g lit, %.4g before" % (ml, mg)
assert passed >= 0.8 * len(lit), "%d of %d lit parts pass" % (passed, len(lit))
print("mean score %.4g before, %.4g lit; %d of %d lit parts pass" % (mg, ml, passed, len(lit)))
PYEOF

# run NAME DIR N PORT: maad on the replay of DIR until its N verdicts are
# out, /metrics read at the end into NAME.metrics, then stopped.
run()
{
    cat >"$1.yaml" <<EOC
camera:
  name: $1
  source: replay
replay:
  dir: $2
  fps: 30
  loop: false
model:
  path: model.safetensors
  calibration: cal.yaml
  rule: score
engine:
  backend: ref
  # Every part judged, however slow the build: the alarm sees them all.
  max_age_ms: 0
publish:
  endpoint: tcp://127.0.0.1:$4
  heartbeat_ms: 100
metrics:
  listen: 127.0.0.1:$(($4 + 1))
drift:
  window_frames: 40
  min_frames: 20
EOC
    e2e_subscribe "tcp://127.0.0.1:$4" "$1.jsonl"
    # An operator's view too: maa watch notes the alarm from the heartbeats.
    e2e_bg "$1.watch" "$MAA" watch "tcp://127.0.0.1:$4" --passes count
    local watcher=$E2E_BG
    e2e_maad_up "$1.yaml" "$1.log"
    e2e_wait_file "$1.jsonl.ready" 10 || fail "$1: no heartbeat"
    e2e_wait_count "$1.jsonl" . "$3" 60 || fail "$1: fewer than $3 verdicts in 60 s"
    # A heartbeat after the last verdict: it carries the final state.
    sleep 0.3
    "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
        "http://127.0.0.1:$(($4 + 1))/metrics" >"$1.metrics" || fail "$1: /metrics"
    e2e_stop "$E2E_MAAD"
    local rc=$?
    e2e_stop_sub "$1.jsonl" "$1.log"
    e2e_stop "$watcher" 10
    [ "$rc" -eq 0 ] && ok "$1: maad exits 0" || fail "$1: maad exit $rc" "$(tail -3 "$1.log")"
    check "$1: one verdict per image, every one judged" "$PY" - "$1.jsonl" "$3" <<'PYEOF'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(v) == int(sys.argv[2]), "%d verdicts" % len(v)
assert all(m["verdict"] in ("pass", "reject") for m in v), "a part not judged"
PYEOF
}

run drifting drifting "$nd" 5631
check "--check-config names the band the calibration gives the alarm" \
    "$PY" - "$MAAD" drifting.yaml <<'PYEOF'
import re, subprocess, sys, yaml
out = subprocess.run([sys.argv[1], "--check-config", sys.argv[2]], capture_output=True,
                     text=True, check=True).stdout
c = yaml.safe_load(open("cal.yaml"))
m = re.search(r"^# drift alarm: watching the last 40 judged parts of at most 600 s, from 20 of "
              r"them: the passes' mean score within (\S+)\.\.(\S+) \(mu", out, re.M)
assert m, out
band = 0.3 * (c["threshold"] - c["mu"])
lo, hi = map(float, m.groups())
assert abs(lo - (c["mu"] - band)) < 1e-3 * band and abs(hi - (c["mu"] + band)) < 1e-3 * band, \
    (lo, hi, c["mu"], band)
PYEOF
sed 's/^drift:$/drift:\n  enabled: false/' drifting.yaml >off.yaml
"$MAAD" --check-config off.yaml 2>&1 | grep -q "^# drift alarm: off (drift.enabled false)$" &&
    ok "--check-config: the alarm off" || fail "drift off" "$("$MAAD" --check-config off.yaml 2>&1 | tail -3)"
grep -q "info: drift alarm: watching the last 40 judged parts of at most 600 s, from 20 of them" \
    drifting.log && ok "the start names what the alarm watches" ||
    fail "no start line" "$(grep -i drift drifting.log)"
check "drifting: the alarm raised on the mean (a warning) and cleared (a notice), in order" \
    "$PY" - drifting.log drifting.jsonl <<'PYEOF'
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
up = [i for i, l in enumerate(lines) if ": warning: drift alarm: the mean score of the last" in l]
down = [i for i, l in enumerate(lines) if ": notice: drift alarm over: the mean score" in l]
assert len(up) == 1 and len(down) == 1 and up[0] < down[0], "raised %s, cleared %s" % (up, down)
m = re.search(r"passes, ([0-9.e-]+), is above ([0-9.e-]+) \(mu ([0-9.e-]+) \+ 0.3 of the way "
              r"to the threshold ([0-9.e-]+)\)", lines[up[0]])
assert m, lines[up[0]]
mean, high, mu, t = map(float, m.groups())
assert mean > high and abs(high - (mu + 0.3 * (t - mu))) < 1e-3 * t, lines[up[0]]
# Every alarm raised, whatever its cause, is cleared by the good parts.
raised = sum(": warning: drift alarm:" in l for l in lines)
over = sum(": notice: drift alarm over:" in l for l in lines)
assert raised == over, "%d raised, %d cleared" % (raised, over)
print(lines[up[0]].split(": warning: ")[1][:120])
PYEOF
check "drifting: the heartbeats carry the alarm while it is raised, then 0" \
    "$PY" - drifting.jsonl.hb <<'PYEOF'
import json, sys
hb = [json.loads(l)["stats"] for l in open(sys.argv[1]) if l.strip()]
states = [s["drift_alarm"] for s in hb]
first = next(i for i, a in enumerate(states) if a & 1)
assert any(a == 0 for a in states[first:]), "never back to 0: %s" % states
assert states[-1] == 0 and isinstance(hb[-1]["drift_mean"], float), hb[-1]
assert all(a in (0, 1, 2, 3) for a in states), states
PYEOF
check "drifting: maa watch notes the alarm raised on the mean, then over" \
    "$PY" - drifting.watch <<'PYEOF'
import sys
notes = [l for l in open(sys.argv[1]).read().splitlines() if l.startswith("# drifting: drift")]
assert notes and notes[0].startswith(
    "# drifting: drift alarm: the passes' mean score has drifted") and \
    notes[-1] == "# drifting: drift alarm over", notes
PYEOF
check "drifting: /metrics counts one mean alarm, none raised now" \
    grep -qzE 'maad_drift_alarm\{camera="drifting",cause="mean"\} 0
.*maad_drift_alarms_total\{camera="drifting",cause="mean"\} 1
.*maad_drift_window_frames\{camera="drifting"\} 40
' drifting.metrics

run stationary stationary "$ns" 5633
! grep -q "drift alarm:" <(grep -v "info: drift alarm: watching" stationary.log) &&
    ok "stationary: no alarm in the log" || fail "stationary: alarm" "$(grep 'drift alarm' stationary.log)"
# (It connects while maad starts: it may miss the first parts.)
! grep -q "drift" stationary.watch && grep -qE "^# summary: [1-9][0-9]* frames" stationary.watch &&
    ok "stationary: maa watch saw the parts and no alarm" ||
    fail "stationary: maa watch" "$(tail -3 stationary.watch)"
check "stationary: every heartbeat drift_alarm 0; the alarm judged a full window" \
    "$PY" - stationary.jsonl.hb stationary.metrics <<'PYEOF'
import json, re, sys
hb = [json.loads(l)["stats"] for l in open(sys.argv[1]) if l.strip()]
assert hb and all(s["drift_alarm"] == 0 for s in hb), [s["drift_alarm"] for s in hb]
assert isinstance(hb[-1]["drift_mean"], float), hb[-1]
m = open(sys.argv[2]).read()
def val(name, labels=""):
    return float(re.search(r"^%s\{camera=\"stationary\"%s\} (\S+)$" % (name, labels), m, re.M)[1])
assert val("maad_drift_window_frames") == 40, m
assert val("maad_drift_alarms_total", ',cause="mean"') == 0
assert val("maad_drift_alarms_total", ',cause="reject_rate"') == 0
low, high = val("maad_drift_pass_score_mean_low"), val("maad_drift_pass_score_mean_high")
assert low < val("maad_drift_pass_score_mean") < high
PYEOF

if [ "$E2E_MNTNS" = none ]; then
    skip "the journal's fields" "no mount namespace (unshare -m)"
    e2e_summary
    exit
fi
# journald's socket, in this namespace only (a tmpfs over /run): each record
# as a JSON object a line.
mount -t tmpfs -o size=1m tmpfs /run && mkdir -p /run/systemd/journal ||
    { fail "a tmpfs over /run"; e2e_summary; exit 1; }
"$PY" - /run/systemd/journal/socket journal.jsonl >journal.err 2>&1 <<'PYEOF' &
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "w") as f:
    while True:
        d, rec = s.recv(1 << 16), {}
        while d:
            line, _, rest = d.partition(b"\n")
            if b"=" in line:
                k, _, v = line.partition(b"=")
                d = rest
            else:   # KEY\n, a 64-bit little-endian size, the value, \n
                k, (n,) = line, struct.unpack("<Q", rest[:8])
                v, d = rest[8:8 + n], rest[9 + n:]
            rec[k.decode()] = v.decode()
        f.write(json.dumps(rec) + "\n")
        f.flush()
PYEOF
E2E_PIDS+=($!)
e2e_wait_file /run/systemd/journal/socket 10
sed 's/^  name: drifting$/  name: journal/; s/5631/5635/; s/5632/5636/' drifting.yaml >journal.yaml
e2e_subscribe tcp://127.0.0.1:5635 journal.jsonl.v
e2e_bg journal.log env INVOCATION_ID=e2e-drift "$MAAD" --config journal.yaml
jm=$E2E_BG
e2e_wait_count journal.jsonl.v . "$nd" 60 || fail "journal: fewer than $nd verdicts in 60 s"
e2e_stop "$jm"
rc=$?
e2e_stop_sub journal.jsonl.v journal.jsonl
[ "$rc" -eq 0 ] && ok "journal: maad exits 0" || fail "journal: maad exit $rc" "$(tail -3 journal.log)"
check "journal: the mean raised at warning and cleared at notice, with their fields" \
    "$PY" - journal.jsonl <<'PYEOF'
import json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert any(r.get("MESSAGE", "").startswith("ready: camera journal") for r in recs), \
    "no ready record: %d records" % len(recs)
mean = [r for r in recs if r.get("MAAD_DRIFT") == "mean"]
assert [r["MAAD_DRIFT_ALARM"] for r in mean] == ["1", "0"], mean
up, down = mean
assert up["PRIORITY"] == "4" and down["PRIORITY"] == "5", (up["PRIORITY"], down["PRIORITY"])
assert up["MESSAGE"].startswith("drift alarm: the mean score") and \
    down["MESSAGE"].startswith("drift alarm over:"), (up["MESSAGE"], down["MESSAGE"])
for r in mean:
    assert r["MAAD_CAMERA"] == "journal" and re.fullmatch("[0-9a-f]{64}", r["MAAD_MODEL"]), r
    assert float(r["MAAD_THRESHOLD"]) > 0 and int(r["MAAD_DRIFT_FRAMES"]) >= 20, r
assert float(up["MAAD_DRIFT_VALUE"]) > float(up["MAAD_DRIFT_LIMIT"]), up
assert float(down["MAAD_DRIFT_VALUE"]) <= float(down["MAAD_DRIFT_LIMIT"]), down
assert float(down["MAAD_DRIFT_LIMIT"]) < float(up["MAAD_DRIFT_LIMIT"]), "no hysteresis"
PYEOF
umount -l /run
e2e_summary

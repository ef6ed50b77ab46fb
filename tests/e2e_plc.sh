#!/usr/bin/env bash
# e2e_plc — the PLC bridge end to end: three fake GigE Vision cameras at one
# frame rate (so they act as if triggered by one index pulse), three maad
# instances, maa-plc, and a simulated PLC (scripts/plc-sim.py, a pymodbus
# Modbus TCP server running the handshake of the register map).
#
# Every camera and its maad live in a network namespace of their own inside
# the test's (Aravis fake cameras do not share a loopback); each maad
# publishes on an ipc:// socket in the test's directory, which maa-plc, the
# test's subscribers and a relay reach from the test's namespace.  Cameras:
# groove@0, cylinder@1 (through a relay that can lose one verdict; its maad
# runs with a low model.gamma, so it rejects some parts), hook@2.
#
# The test works out, independently (tests/plc_expect.py), the decision of
# every part from the three verdict streams its own subscribers received and
# compares it with what the PLC's registers received, in order, part by
# part.  Cases: a part one camera rejects is rejected; a verdict lost on the
# way rejects its part and shifts no later part; maa-plc started before its
# PLC is reachable logs it, keeps running and delivers everything once the
# PLC is up; kill -9 of one maad drops the healthy coil within one second
# and rejects the parts in the gap, its restart brings the coil back; the
# PLC stopped for a few seconds and started again loses no result (one in
# flight may come twice, with the same part number); malformed messages on a
# camera's socket are each logged, crash nothing, and reject that camera's
# parts; bad configurations exit 1 with FILE:LINE:COL.
#
# MAA_PLC names the bridge (default build/maa-plc); E2E_KEEP=1 keeps the
# directory with every log.  About 30 s on 2 cores.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
MAA_PLC=${MAA_PLC:-$E2E_ROOT/build/maa-plc}
SIM=$E2E_ROOT/scripts/plc-sim.py
if [ ! -x "$MAA_PLC" ]; then
    fail "build" "$MAA_PLC missing: run make"
    e2e_summary
    exit 1
fi
cd "$E2E_TMP"
FPS=20
PORT=1502          # the PLC of the line
JPORT=1503         # the PLC of the bridge that gets malformed messages
MAILBOX=100 HEALTHY=5 REJECT=6
T_START=$SECONDS
now_ns() { date +%s%N; }

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }

# ---- stations: a camera and its maad in a network namespace of their own ---

declare -A NETNS MAADPID SUBPID
RT=
chrt -f 10 true 2>/dev/null && RT="chrt -f 10"
# station NAME SERIAL [GAMMA]
station()
{
    local name=$1 gamma=${3:-} n=50
    mkdir -p "$name"
    unshare -n sleep 1000000 &
    NETNS[$name]=$!
    E2E_PIDS+=("$!")
    # until unshare has made the namespace and become sleep
    while [ "$(readlink "/proc/${NETNS[$name]}/ns/net")" = "$(readlink /proc/self/ns/net)" ] &&
        [ "$n" -gt 0 ]; do
        sleep 0.02
        n=$((n - 1))
    done
    nsenter -t "${NETNS[$name]}" -n ip link set lo up || return 1
    # SCHED_FIFO where permitted: a fake camera that falls behind skips a
    # frame period without using a frame id, which no real triggered camera
    # does and which would shift its parts for the bridge (docs/plc.md).
    e2e_bg "$name/fakecam.out" nsenter -t "${NETNS[$name]}" -n $RT \
        "$MAA" fakecam --images good --fps "$FPS" --serial "$2"
    e2e_wait_for "$name/fakecam.out" '^Aravis-' 10 "$E2E_BG" || return 1
    cat >"$name/maad.yaml" <<EOC
camera:
  name: $name
  device_id: "$(grep -m1 '^Aravis-' "$name/fakecam.out")"
  packet_socket: false
  frame_rate: $FPS
model:
  path: ../model.safetensors
  calibration: ../cal.yaml
${gamma:+  gamma: $gamma}
engine:
  backend: ref
  threads: 1
  batch_max: 4
publish:
  endpoint: ipc://$E2E_TMP/$name.ipc
  heartbeat_ms: 200
log:
  summary_interval_s: 10
EOC
    e2e_subscribe "ipc://$E2E_TMP/$name.ipc" "$name/verdicts.jsonl"
    SUBPID[$name]=$E2E_SUB
    start_maad "$name" "$name/maad.log"
}

# start_maad NAME LOG: NAME's maad in NAME's namespace, until it is ready.
start_maad()
{
    e2e_bg "$2" nsenter -t "${NETNS[$1]}" -n "$MAAD" --config "$1/maad.yaml"
    MAADPID[$1]=$E2E_BG
    e2e_wait_for "$2" 'ready: camera' 30 "$E2E_BG"
}

# The relay between cylinder's maad and maa-plc: forwards every message,
# except that after SIGUSR1 it drops the next passing verdict (appended to
# OUT, the one line it writes).
relay()
{
    "$PY" - "$@" >relay.log 2>&1 <<'EOF' &
import signal, sys, zmq
src, dst, out = sys.argv[1:4]
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.RCVHWM, 0)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(src)
pub = ctx.socket(zmq.PUB)
pub.setsockopt(zmq.SNDHWM, 0)
pub.bind(dst)
drop, stop = [], []
signal.signal(signal.SIGUSR1, lambda *a: drop.append(1))
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
with open(out, "a") as f:
    while not stop:
        if not sub.poll(100):
            continue
        parts = sub.recv_multipart()
        if drop and not parts[0].endswith(b".heartbeat") and b'"verdict":"pass"' in parts[1]:
            drop.clear()
            f.write(parts[1].decode() + "\n")
            f.flush()
            continue
        pub.send_multipart(parts)
EOF
    RELAY=$!
    E2E_PIDS+=("$RELAY")
}

# start_sim DIR PORT LOG: plc-sim on 127.0.0.1:PORT, recording into DIR,
# until it listens; pid in SIMPID.
start_sim()
{
    e2e_bg "$3" "$PY" "$SIM" --port "$2" --out "$1" --mailbox "$MAILBOX" \
        --healthy-coil "$HEALTHY" --reject-coil "$REJECT" --quiet
    SIMPID=$E2E_BG
    e2e_wait_for "$3" "^listening on 127.0.0.1:$2\$" 10 "$SIMPID"
}

# plc_config FILE PORT CAMERAS...: maa-plc's configuration; a camera is
# NAME@OFFSET@ENDPOINT.
plc_config()
{
    local f=$1 port=$2 c
    shift 2
    cat >"$f" <<EOC
line:
  name: e2e
  deadline_ms: 2000
  sync_tolerance_ms: 20
  heartbeat_timeout_ms: 800   # the default: the coil must drop within 1 s
plc:
  address: "127.0.0.1"
  port: $port
  unit_id: 1
  mailbox_register: $MAILBOX
  healthy_coil: $HEALTHY
  reject_coil: $REJECT
  response_timeout_ms: 200
  health_period_ms: 100
  reconnect_min_ms: 100
  reconnect_max_ms: 500
cameras:
EOC
    for c in "$@"; do
        IFS=@ read -r name off ep <<<"$c"
        printf '  - name: %s\n    endpoint: "%s"\n    offset: %s\n' "$name" "$ep" "$off" >>"$f"
    done
    printf 'log:\n  summary_interval_s: 5\n  level: info\n' >>"$f"
}

# said NAME COMMAND...: check, and on success the command's last line of
# output (a number worth seeing) joins the ok line.
said()
{
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name: $(tail -n 1 <<<"$out")"; else fail "$name" "$out"; fi
}

# coil_count DIR VALUE: healthy coil changes to VALUE the PLC recorded.
coil_count()
{
    grep -c "\"coil\":\"healthy\",\"address\":$HEALTHY,\"value\":$2" "$1/events.jsonl" 2>/dev/null
}

# wait_coil DIR VALUE N SECONDS: until the PLC recorded N changes to VALUE.
wait_coil()
{
    local n=$(($4 * 10))
    while [ "$(coil_count "$1" "$2")" -lt "$3" ]; do
        [ "$n" -gt 0 ] || return 1
        sleep 0.1
        n=$((n - 1))
    done
}

# ---- bad configurations (no daemon needed) ------------------------------------

# bad_config NAME POSITION: bad/NAME.yaml (already written) refused by
# --check-config and --config with exit 1 and "bad/NAME.yaml:LINE:COL: ...";
# POSITION LINE:COL when the position is known, else "".
bad_config()
{
    local f=bad/$1.yaml out rc pat
    pat="(^|: )${f//./\\.}:${2:-[0-9]+:[0-9]+}: [^ ]"
    out=$("$MAA_PLC" --check-config "$f" 2>&1)
    rc=$?
    if [ "$rc" -eq 1 ] && grep -qE "$pat" <<<"$out"; then
        ok "bad config, $1: --check-config exits 1: $(grep -E "$pat" <<<"$out" | head -1)"
    else
        fail "bad config, $1: --check-config exit $rc, want 1 and $f:${2:-LINE:COL}: ..." "$out"
    fi
    out=$(timeout 5 "$MAA_PLC" --config "$f" 2>&1)
    rc=$?
    if [ "$rc" -eq 1 ] && grep -qE "$pat" <<<"$out" && ! grep -q 'ready:' <<<"$out"; then
        ok "bad config, $1: --config exits 1 before it is ready"
    else
        fail "bad config, $1: --config exit $rc, want 1 and $f:${2:-LINE:COL}: ..." "$out"
    fi
}

mkdir -p bad
plc_config good.yaml "$PORT" "groove@0@ipc://$E2E_TMP/groove.ipc" \
    "cylinder@1@ipc://$E2E_TMP/cylinder-relay.ipc" "hook@2@ipc://$E2E_TMP/hook.ipc"
out=$("$MAA_PLC" --check-config good.yaml 2>&1)
rc=$?
[ "$rc" -eq 0 ] && grep -q hook <<<"$out" && grep -q "$MAILBOX" <<<"$out" &&
    ok "--check-config of a good file exits 0 and prints the configuration" ||
    fail "--check-config good.yaml: exit $rc" "$out"
# unknown key (position: the key)
sed 's/^  mailbox_register:/  mailbox_registr:/' good.yaml >bad/unknown-key.yaml
bad_config unknown-key "$(grep -n mailbox_registr bad/unknown-key.yaml | cut -d: -f1):3"
# out of range (position: the value)
sed "s/^  port: $PORT/  port: 70000/" good.yaml >bad/port-range.yaml
bad_config port-range "$(grep -n 'port: 70000' bad/port-range.yaml | cut -d: -f1):9"
# a quoted number
sed 's/^  unit_id: 1/  unit_id: "1"/' good.yaml >bad/quoted.yaml
bad_config quoted "$(grep -n 'unit_id' bad/quoted.yaml | cut -d: -f1):12"
# required key missing
grep -v '^  address:' good.yaml >bad/no-address.yaml
bad_config no-address ""
# the same coil twice, with reject pulses
sed -e "s/^  reject_coil: $REJECT/  reject_coil: $HEALTHY/" \
    -e 's/^  reconnect_max_ms: 500/&\n  pulse_delay_ms: 100/' good.yaml >bad/same-coil.yaml
bad_config same-coil ""
# two cameras of one name
sed 's/name: hook/name: groove/' good.yaml >bad/dup-camera.yaml
bad_config dup-camera ""
# no camera at offset 0
sed 's/offset: 0/offset: 3/' good.yaml >bad/no-offset-0.yaml
bad_config no-offset-0 ""
# a camera name that is no identifier (position: the value)
sed 's/name: cylinder/name: "cyl inder"/' good.yaml >bad/camera-name.yaml
bad_config camera-name "$(grep -n 'cyl inder' bad/camera-name.yaml | cut -d: -f1):11"
# cameras not a sequence
sed '/^cameras:/,/^log:/{/^cameras:/!{/^log:/!d}}' good.yaml |
    sed 's/^cameras:/cameras: groove/' >bad/cameras-scalar.yaml
bad_config cameras-scalar ""
# YAML syntax
sed 's/^  deadline_ms: 2000/  deadline_ms: [2000/' good.yaml >bad/syntax.yaml
bad_config syntax ""
"$MAA_PLC" >usage.out 2>&1
rc=$?
[ "$rc" -eq 2 ] && ok "no arguments: exit 2 (usage)" || fail "no arguments: exit $rc, want 2" "$(cat usage.out)"

# ---- the line -------------------------------------------------------------------

station groove CAM0 || { fail "station groove" "$(cat groove/*.out groove/maad.log)"; e2e_summary; exit 1; }
# cylinder's maad rejects some parts: its threshold at the calibration's mean
station cylinder CAM1 0 || { fail "station cylinder" "$(cat cylinder/*.out cylinder/maad.log)"; e2e_summary; exit 1; }
station hook CAM2 || { fail "station hook" "$(cat hook/*.out hook/maad.log)"; e2e_summary; exit 1; }
relay "ipc://$E2E_TMP/cylinder.ipc" "ipc://$E2E_TMP/cylinder-relay.ipc" dropped.jsonl
# Aravis's fake camera sends its first frame at once when acquisition
# starts, off the frame period's grid, then one per period on it: a frame
# no trigger pulse made.  A bridge that placed a camera by it would be one
# step off for the whole run (the line model has no such frame), so
# maa-plc starts once every camera has sent a few.
for c in groove cylinder hook; do
    e2e_wait_file "$c/verdicts.jsonl.ready" 10 || fail "subscriber of $c gets no heartbeat"
    e2e_wait_count "$c/verdicts.jsonl" . 5 10 || fail "no verdicts from $c"
done
ok "three stations up ($((SECONDS - T_START)) s)"

# maa-plc first, its PLC not there yet.
e2e_bg plc.log "$MAA_PLC" --config good.yaml
PLC=$E2E_BG
if e2e_wait_for plc.log 'ready: line e2e, 3 cameras \(groove@0, cylinder@1, hook@2\), PLC 127\.0\.0\.1:1502 unit 1' 10 "$PLC"; then
    ok "maa-plc ready: $(grep -m1 -o 'ready: .*' plc.log)"
else
    fail "maa-plc not ready" "$(tail -20 plc.log)"
    e2e_summary
    exit 1
fi
e2e_wait_for plc.log "PLC 127\.0\.0\.1:$PORT: unreachable: .+; retrying in [0-9]+ ms" 10 "$PLC" &&
    ok "unreachable PLC at start logged: $(grep -m1 -o 'PLC 127.*unreachable.*' plc.log)" ||
    fail "no 'PLC 127.0.0.1:$PORT: unreachable: ...; retrying in X ms' line" "$(tail -20 plc.log)"
sleep 2
kill -0 "$PLC" 2>/dev/null && ok "maa-plc keeps running without its PLC" ||
    fail "maa-plc exited without its PLC" "$(tail -20 plc.log)"
start_sim sim "$PORT" sim.log || fail "plc-sim" "$(cat sim.log)"
MSIM=$SIMPID
e2e_wait_for plc.log "PLC 127\.0\.0\.1:$PORT: connected" 10 "$PLC" &&
    ok "maa-plc connects once the PLC is there" ||
    fail "no 'PLC 127.0.0.1:$PORT: connected'" "$(tail -20 plc.log)"
e2e_wait_count sim/results.jsonl . 60 15 &&
    ok "results reach the PLC ($(wc -l <sim/results.jsonl) so far)" ||
    fail "results do not reach the PLC" "$(tail -20 plc.log)"
wait_coil sim 1 1 10 && ok "healthy coil set" ||
    fail "the healthy coil never came on" "$(grep -E 'camera|healthy' plc.log | tail)"

# One verdict of cylinder lost on the way.
sleep 1
kill -USR1 "$RELAY"
e2e_wait_count dropped.jsonl . 1 5 && ok "the relay lost one verdict of cylinder" ||
    fail "the relay dropped nothing" "$(cat relay.log)"

# ---- malformed messages on a camera's socket: a second bridge, groove and
# "junk", whose endpoint is a Python publisher sending what maad never sends.
"$PY" - "ipc://$E2E_TMP/junk.ipc" junk.sent >junk.log 2>&1 <<'EOF' &
import json, signal, sys, time, zmq
ep, out = sys.argv[1:3]
ctx = zmq.Context()
x = ctx.socket(zmq.XPUB)
x.bind(ep)
if not x.poll(30000):
    sys.exit("nobody subscribed")
print("subscription", x.recv(), flush=True)
time.sleep(0.3)
now = time.time_ns()
good = {"v": 2, "camera": "junk", "seq": 0, "frame_id": 1, "t_capture_ns": now,
        "t_publish_ns": now, "verdict": "pass", "reason": "score at or below threshold",
        "score": 0.1, "threshold": 0.2, "rule": "either", "evidence": [], "mask_peak": 0.0,
        "mask_threshold": 0.1, "defects": [], "mask": {"format": "none", "width": 0, "height": 0}}
def v(**kw):
    m = dict(good, **kw)
    for k, val in kw.items():
        if val is KeyError:
            del m[k]
    return [b"maad.junk", json.dumps(m).encode()]
hb = {"v": 2, "camera": "junk", "t_ns": now, "stats": {}}
# (what is wrong, the message, what the bridge's reason must name; None:
# not malformed but another camera's, which a prefix subscription lets in)
cases = [
    ("one part only", [b"maad.junk"], "one part"),
    ("not JSON", [b"maad.junk", b'{"v": 2, "camera": "junk", "seq": '], "not JSON"),
    ("JSON not an object", [b"maad.junk", b"[1, 2, 3]"], "expected a JSON object"),
    ("empty JSON part", [b"maad.junk", b""], "not JSON"),
    ("invalid UTF-8", [b"maad.junk", b'{"v": 2, "camera": "\xff\xfe"}'], "not JSON"),
    ("no seq", v(seq=KeyError), "'seq'"),
    ("seq a string", v(seq="7"), "'seq'"),
    ("verdict unknown", v(verdict="maybe"), "'maybe'"),
    ("frame_id a string", v(frame_id="12"), "'frame_id'"),
    ("t_capture_ns a float", v(t_capture_ns=1.5e18), "'t_capture_ns'"),
    ("no verdict", v(verdict=KeyError), "'verdict'"),
    ("camera field not the topic's", v(camera="groove"), "does not match the topic"),
    ("heartbeat without seq_next", [b"maad.junk.heartbeat", json.dumps(hb).encode()],
     "'seq_next'"),
    ("another camera's verdict", [b"maad.junkyard",
                                  json.dumps(dict(good, camera="junkyard")).encode()], None),
]
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
with open(out, "w") as f:
    for name, parts, why in cases:
        x.send_multipart(parts)
        f.write(json.dumps([name, why]) + "\n")
        f.flush()
        time.sleep(0.15)
    f.write("done\n")
while not stop:
    time.sleep(0.1)
EOF
JUNK=$!
E2E_PIDS+=("$JUNK")
start_sim simj "$JPORT" simj.log || fail "plc-sim for junk" "$(cat simj.log)"
JSIM=$SIMPID
plc_config junk.yaml "$JPORT" "groove@0@ipc://$E2E_TMP/groove.ipc" "junk@1@ipc://$E2E_TMP/junk.ipc"
e2e_bg plcj.log "$MAA_PLC" --config junk.yaml
PLCJ=$E2E_BG
e2e_wait_for junk.sent '^done$' 20 "$JUNK" || fail "the junk publisher did not finish" "$(cat junk.log)"
sleep 1.5
nbad=$(grep -c '", "' junk.sent)
if kill -0 "$PLCJ" 2>/dev/null; then
    ok "maa-plc survives $nbad malformed messages"
else
    fail "maa-plc died on malformed messages" "$(tail -20 plcj.log)"
fi
e2e_stop "$PLCJ" 20
rc=$?
[ "$rc" -eq 0 ] && ok "that maa-plc exits 0 on SIGTERM" || fail "that maa-plc exit status $rc" "$(tail -5 plcj.log)"
e2e_stop "$JUNK" 5
e2e_stop "$JSIM" 5
grep -q "final: .*, refused $nbad, " plcj.log &&
    ok "every malformed message refused and counted (refused $nbad), another camera's ignored" ||
    fail "refused count, want $nbad" "$(grep -o 'final: .*' plcj.log)"
check "each malformed message logged with its problem" "$PY" - junk.sent plcj.log <<'EOF'
import json, sys
sent = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("[")]
logged = [l.split("message refused: ", 1)[1].strip() for l in open(sys.argv[2])
          if "camera junk: message refused: " in l]
missing, i = [], 0
for name, why in sent:
    if why is None:
        continue
    if i < len(logged) and why in logged[i]:
        i += 1
    else:
        missing.append(name)
print("  logged: %s" % logged)
assert not missing, "%d of %d malformed messages not logged with their problem: %s" % (
    len(missing), len(sent) - 1, ", ".join(missing))
EOF
check "junk's parts all rejected for it (missing or down), the healthy coil never on" \
    "$PY" - simj <<'EOF'
import json, sys
res = [json.loads(l) for l in open(sys.argv[1] + "/results.jsonl")]
ev = [json.loads(l) for l in open(sys.argv[1] + "/events.jsonl")]
assert len(res) >= 20, "only %d results" % len(res)
bad = [r for r in res if r["decision"] != 2 or not r["cameras"] & 2 or not r["reasons"] & 12]
assert not bad, "%d of %d results not rejected for junk, first %s" % (len(bad), len(res), bad[0])
on = [e for e in ev if e["kind"] == "coil" and e["coil"] == "healthy" and e["value"] == 1]
assert not on, "healthy coil on: %s" % on[0]
EOF

# ---- kill -9 one maad: the healthy coil drops within a second ----------------
sleep 1
before=$(coil_count sim 0)
T_KILL=$(now_ns)
{ kill -KILL "${MAADPID[hook]}"; wait "${MAADPID[hook]}"; } 2>/dev/null
wait_coil sim 0 $((before + 1)) 5 || fail "the healthy coil did not drop after kill -9 of hook's maad" "$(tail plc.log)"
sleep 2.5
before=$(coil_count sim 1)
T_RESTART=$(now_ns)
start_maad hook hook/maad2.log || fail "hook's maad restart" "$(tail hook/maad2.log)"
wait_coil sim 1 $((before + 1)) 15 && ok "the healthy coil comes back after hook's maad restarted" ||
    fail "the healthy coil stays off after hook's maad restarted" "$(grep -E 'hook|healthy' plc.log | tail)"
sleep 2

# ---- the PLC away for a few seconds ------------------------------------------------
T_PLCKILL=$(now_ns)
n_before=$(wc -l <sim/results.jsonl)
{ kill -KILL "$MSIM"; wait "$MSIM"; } 2>/dev/null
sleep 3
start_sim sim "$PORT" sim2.log || fail "plc-sim restart" "$(cat sim2.log)"
MSIM=$SIMPID
e2e_wait_count plc.log "PLC 127\.0\.0\.1:$PORT: connected" 2 10 &&
    ok "maa-plc reconnects to the restarted PLC" ||
    fail "no second 'connected'" "$(grep PLC plc.log | tail)"
e2e_wait_count sim/results.jsonl . $((n_before + 100)) 15 ||
    fail "results do not resume after the PLC came back" "$(tail plc.log)"
sleep 2

# ---- stop, and compare ---------------------------------------------------------------
T_STOP=$(now_ns)
e2e_stop "$PLC" 20
rc=$?
[ "$rc" -eq 0 ] && ok "maa-plc exits 0 on SIGTERM" || fail "maa-plc exit status $rc" "$(tail -5 plc.log)"
final=$(grep -o 'final: .*' plc.log | tail -1)
echo "  $final"
if [[ "$final" =~ undelivered\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -eq 0 ] &&
    [[ "$final" =~ ,\ late\ ([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -eq 0 ]; then
    ok "final line: nothing late, nothing undelivered"
else
    fail "final line" "${final:-none}"
fi
for c in groove cylinder hook; do
    e2e_stop "${MAADPID[$c]}" 20 >/dev/null
done
sleep 0.5
for c in groove cylinder hook; do
    e2e_stop "${SUBPID[$c]}" 5
done
e2e_stop "$RELAY" 5
e2e_stop "$MSIM" 5

cat >expect.json <<EOC
{"fps": $FPS,
 "cameras": [{"name": "groove", "offset": 0, "verdicts": "groove/verdicts.jsonl"},
             {"name": "cylinder", "offset": 1, "verdicts": "cylinder/verdicts.jsonl",
              "dropped": "dropped.jsonl"},
             {"name": "hook", "offset": 2, "verdicts": "hook/verdicts.jsonl"}],
 "results": "sim/results.jsonl", "log": "plc.log", "stop_ns": $T_STOP, "settle_ms": 1000}
EOC
"$PY" "$E2E_ROOT/tests/plc_expect.py" expect.json >expect.out 2>&1
rc=$?
grep -v '^{' expect.out
facts=$(grep '^{' expect.out | tail -1)
[ "$rc" -eq 0 ] && ok "every part's decision reached the PLC in order, as the verdicts make it" ||
    fail "decisions at the PLC differ from the verdicts' (above)"

said "a part cylinder rejects is rejected; the part of the lost verdict is rejected, later parts not shifted" \
    "$PY" - "$facts" <<'EOF'
import json, sys
f = json.loads(sys.argv[1])
cyl = f["cylinder"]
assert cyl["rejected_by"], "cylinder rejected no compared part"
assert set(cyl["rejected_by"]) <= set(f["reject_parts"]) | set(f["missing_parts"])
d = cyl["dropped_parts"]
assert len(d) == 1, "dropped parts %s" % d
assert d[0] in f["missing_parts"], "the lost verdict's part %d was not compared as missing" % d[0]
print("cylinder rejected %d parts; lost verdict: part %d" % (len(cyl["rejected_by"]), d[0]))
EOF
said "the parts in hook's gap are rejected" "$PY" - "$facts" <<'EOF'
import json, sys
f = json.loads(sys.argv[1])
gap = f["hook"]["missing_in"]
assert len(gap) >= 40, "only %d parts compared as missing hook's verdict" % len(gap)
assert set(gap) <= set(f["missing_parts"])
print("%d parts, %d..%d" % (len(gap), min(gap), max(gap)))
EOF
said "the healthy coil drops within one second of kill -9" "$PY" - sim "$T_KILL" "$T_RESTART" <<'EOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/events.jsonl")]
kill, restart = int(sys.argv[2]), int(sys.argv[3])
coil = [e for e in ev if e["kind"] == "coil" and e["coil"] == "healthy"]
before = [e for e in coil if e["t_ns"] < kill]
assert before and before[-1]["value"] == 1, "the coil was not on before the kill"
drop = [e for e in coil if e["t_ns"] >= kill and e["value"] == 0]
assert drop, "no drop"
dt = (drop[0]["t_ns"] - kill) / 1e6
assert dt <= 1000, "dropped %.0f ms after kill -9" % dt
up = [e for e in coil if e["t_ns"] > drop[0]["t_ns"] and e["value"] == 1]
assert up and up[0]["t_ns"] > restart, "the coil came back before the restart"
print("%.0f ms" % dt)
EOF
said "PLC restart: every result delivered, at most the one in flight twice" "$PY" - sim "$T_PLCKILL" "$facts" <<'EOF'
import json, sys
res = [json.loads(l) for l in open(sys.argv[1] + "/results.jsonl")]
runs = []
for r in res:
    if not runs or runs[-1] != r["run"]:
        runs.append(r["run"])
assert len(runs) == 2, "%d PLC runs in the results" % len(runs)
a = [r for r in res if r["run"] == runs[0]]
b = [r for r in res if r["run"] == runs[1]]
assert b[0]["part"] in (a[-1]["part"], a[-1]["part"] + 1), \
    "first part after the restart %d, last before %d" % (b[0]["part"], a[-1]["part"])
assert b[0]["counter"] == 1, "counter after the restart %d" % b[0]["counter"]
f = json.loads(sys.argv[3])
print("%d results before the PLC restart, %d after; twice: %s" % (len(a), len(b), f["duplicates"] or "none"))
EOF
check "the health word (R+7 of mailbox $MAILBOX) advances" "$PY" - sim <<'EOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/events.jsonl")]
h = [e for e in ev if e["kind"] == "health"]
assert len(h) >= 20, "%d health word changes" % len(h)
for a, b in zip(h, h[1:]):
    if a["run"] == b["run"]:
        assert 0 < (b["word"] - a["word"]) % 65536 < 100, "health word %d then %d" % (a["word"], b["word"])
EOF
echo "  $((SECONDS - T_START)) s"
e2e_summary

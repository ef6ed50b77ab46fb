# e2e-lib.sh — helpers shared by the end-to-end tests (tests/e2e_*.sh) and
# scripts/demo.sh.  Source it from bash:  . "$ROOT/scripts/e2e-lib.sh"
#
# A test calls e2e_isolate "$@" first: it re-runs the script inside a private
# network namespace (unshare -n, loopback up), so the daemon's ports and the
# fake camera's GigE Vision traffic never leave the test; where that is not
# permitted the test reports itself skipped.  Every process a helper starts
# in the background is killed (by its pid) when the script exits.

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAA=${MAA:-$E2E_ROOT/build/maa}
MAAD=${MAAD:-$E2E_ROOT/build/maad}
PY=${PYTHON:-/usr/bin/python3}
E2E_PASS=0 E2E_FAIL=0 E2E_SKIP=0
E2E_PIDS=()

e2e_isolate()
{
    if [ -z "${E2E_NETNS:-}" ]; then
        local how
        for how in "unshare -n" "unshare -rn"; do
            if $how true 2>/dev/null; then
                E2E_NETNS=1 exec $how bash "$0" "$@"
            fi
        done
        echo "  SKIP: cannot create a network namespace (unshare -n)"
        echo "0 passed, 0 failed, 1 skipped"
        exit 0
    fi
    if ! ip link set lo up 2>/dev/null; then
        echo "  SKIP: cannot bring the namespace's loopback up"
        echo "0 passed, 0 failed, 1 skipped"
        exit 0
    fi
    E2E_TMP=$(mktemp -d /tmp/e2e.XXXXXX)
    trap e2e_cleanup EXIT
}

e2e_cleanup()
{
    local p
    for p in "${E2E_PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    wait 2>/dev/null
    [ -n "${E2E_KEEP:-}" ] && echo "kept $E2E_TMP" || rm -rf "$E2E_TMP"
}

ok() { E2E_PASS=$((E2E_PASS + 1)); echo "ok   $1"; }
fail() { E2E_FAIL=$((E2E_FAIL + 1)); echo "FAIL $1${2:+: $2}"; }
skip() { E2E_SKIP=$((E2E_SKIP + 1)); echo "skip $1${2:+: $2}"; }
# check NAME COMMAND...: ok when the command succeeds, else fail with its output.
check()
{
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else fail "$name" "$out"; fi
}

e2e_summary()
{
    if [ "$E2E_SKIP" -gt 0 ]; then
        echo "$E2E_PASS passed, $E2E_FAIL failed, $E2E_SKIP skipped"
    else
        echo "$E2E_PASS passed, $E2E_FAIL failed"
    fi
    [ "$E2E_FAIL" -eq 0 ]
}

# Ends the test (as failed) when the programs are not built.
e2e_need_build()
{
    local f
    for f in "$MAA" "$MAAD"; do
        if [ ! -x "$f" ]; then
            fail "build" "$f missing: run make"
            e2e_summary
            exit 1
        fi
    done
}

# e2e_model OUT [G_BASE D_BASE]: a random model, S=64, one channel.  g_base 1
# and d_base 2 judge a frame in a few ms on the reference backend.
e2e_model()
{
    "$PY" "$E2E_ROOT/scripts/export_model.py" --random --size 64 --channels 1 \
        --g-base "${2:-1}" --d-base "${3:-2}" --out "$1" >/dev/null
}

# e2e_images DIR N [SEED [DEFECT_EVERY [W H]]]: N gray PGM images of a smooth
# textured surface with noise; with DEFECT_EVERY k, every k-th image gets a
# dark scratch.  Names sort in generation order.
e2e_images()
{
    "$PY" - "$@" <<'EOF'
import os, sys
import numpy as np
d, n = sys.argv[1], int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
every = int(sys.argv[4]) if len(sys.argv) > 4 else 0
w = int(sys.argv[5]) if len(sys.argv) > 5 else 128
h = int(sys.argv[6]) if len(sys.argv) > 6 else 96
os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(seed)
y, x = np.mgrid[0:h, 0:w]
for i in range(n):
    img = 128 + 40 * np.sin(x / 7.0 + rng.uniform(0, 6.3)) * np.cos(y / 9.0) \
        + rng.normal(0, 6, (h, w))
    if every and i % every == every - 1:
        r = int(rng.integers(h // 4, 3 * h // 4))
        img[r:r + 3, w // 5: 4 * w // 5] = 10
    img = img.clip(0, 255).astype(np.uint8)
    with open(os.path.join(d, "img%04d.pgm" % i), "wb") as f:
        f.write(b"P5 %d %d 255\n" % (w, h) + img.tobytes())
EOF
}

# e2e_calibrate MODEL IMAGES OUT: maa calibrate on the reference backend.
e2e_calibrate()
{
    "$MAA" calibrate --model "$1" --images "$2" --out "$3" --backend ref \
        --threads 1 --gamma 3 --plot "$E2E_TMP/calibration.png" >/dev/null 2>&1
}

# e2e_bg LOG COMMAND...: run in the background, stdout and stderr to LOG;
# the pid is in E2E_BG.
e2e_bg()
{
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    E2E_BG=$!
    E2E_PIDS+=("$E2E_BG")
}

# e2e_wait_for FILE PATTERN SECONDS [PID]: until FILE has a line matching
# PATTERN; fails early when PID (if given) has exited.
e2e_wait_for()
{
    local file=$1 pat=$2 n=$(($3 * 10)) pid=${4:-}
    while [ "$n" -gt 0 ]; do
        grep -qE "$pat" "$file" 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            grep -qE "$pat" "$file" 2>/dev/null
            return
        fi
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

# e2e_wait_count FILE PATTERN N SECONDS: until FILE has at least N lines
# matching PATTERN.
e2e_wait_count()
{
    local n=$(($4 * 10)) c
    while :; do
        c=$(grep -cE "$2" "$1" 2>/dev/null)
        [ "${c:-0}" -ge "$3" ] && return 0
        [ "$n" -gt 0 ] || return 1
        sleep 0.1
        n=$((n - 1))
    done
}

# e2e_wait_file FILE SECONDS: until FILE exists.
e2e_wait_file()
{
    local n=$(($2 * 10))
    while [ ! -e "$1" ] && [ "$n" -gt 0 ]; do
        sleep 0.1
        n=$((n - 1))
    done
    [ -e "$1" ]
}

# e2e_subscribe ENDPOINT OUT: a ZeroMQ subscriber in the background writing
# every verdict's JSON to OUT, one per line, the size in bytes of each
# one's mask part (0: none) to OUT.mask, line for line, and every
# heartbeat's JSON to OUT.hb; it writes OUT.ready once the first heartbeat
# came (from then on nothing published is missed) and quits on SIGTERM.
# With SERVER_KEY and CLIENT_SECRET (e2e_subscribe EP OUT SERVER_KEY
# CLIENT_SECRET) it is a CURVE client, reading the certificates with pyzmq's
# own zmq.auth.load_certificate.  Pid in E2E_SUB.
e2e_subscribe()
{
    : >"$2"
    : >"$2.mask"
    rm -f "$2.ready"
    "$PY" - "$@" >"$2.log" 2>&1 <<'EOF' &
import signal, sys, zmq, zmq.auth
ep, out = sys.argv[1], sys.argv[2]
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
if len(sys.argv) > 4:
    s.curve_serverkey = zmq.auth.load_certificate(sys.argv[3])[0]
    s.curve_publickey, s.curve_secretkey = zmq.auth.load_certificate(sys.argv[4])
s.setsockopt(zmq.RCVHWM, 0)
s.setsockopt(zmq.RECONNECT_IVL, 10)
s.setsockopt(zmq.SUBSCRIBE, b"maad.")
s.connect(ep)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
ready = False
with open(out, "a") as f, open(out + ".mask", "a") as mask, open(out + ".hb", "w") as hb:
    while not stop:
        if not s.poll(100):
            continue
        parts = s.recv_multipart()
        if parts[0].endswith(b".heartbeat"):
            hb.write(parts[1].decode() + "\n")
            hb.flush()
            if not ready:
                open(out + ".ready", "w").close()
                ready = True
        else:
            # The mask first: a reader that sees a verdict finds its size.
            mask.write("%d\n" % (len(parts[2]) if len(parts) > 2 else 0))
            mask.flush()
            f.write(parts[1].decode() + "\n")
            f.flush()
EOF
    E2E_SUB=$!
    E2E_PIDS+=("$E2E_SUB")
}

# e2e_stop PID [SECONDS]: SIGTERM, then wait for it (SIGKILL after SECONDS,
# default 30); returns its exit status (137 when it had to be killed).
e2e_stop()
{
    local pid=$1 n=$((${2:-30} * 10))
    kill -TERM "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null && [ "$n" -gt 0 ]; do
        sleep 0.1
        n=$((n - 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 137
    fi
    wait "$pid"
}

# e2e_stop_sub OUT LOG: after maad (its log LOG) has exited, waits (up to
# 10 s) until the subscriber has written as many verdicts to OUT as maad's
# final stats line says it published, then stops it: a subscriber stopped
# at once may not have read the last ones yet.
e2e_stop_sub()
{
    local want
    want=$(sed -nE 's/.*final: captured [0-9]+, published ([0-9]+) .*/\1/p' "$2" | tail -n 1)
    [ -n "$want" ] && e2e_wait_count "$1" . "$want" 10
    e2e_stop "$E2E_SUB" 10
}

# e2e_final LOG: the numbers of maad's final stats line as shell variables
# F_captured, F_published, F_pass, F_reject, F_uninspected, F_overflow,
# F_too_old, F_camera_errors, F_engine_errors, F_send_dropped, and the line
# printed for the test's output; fails without the line, or when it does
# not read as expected.
e2e_final()
{
    local line vars
    line=$(grep -E 'final: captured [0-9]+' "$1" | tail -n 1)
    [ -n "$line" ] || return 1
    echo "  ${line#*final: }"
    # sed numbers at most 9 groups: the line in two halves.
    vars=$(sed -nE 's/.*final: captured ([0-9]+), published ([0-9]+) \(pass ([0-9]+), reject ([0-9]+), uninspected ([0-9]+)\), (.*)/F_captured=\1 F_published=\2 F_pass=\3 F_reject=\4 F_uninspected=\5 \6/p' <<<"$line" |
        sed -nE 's/ overflow ([0-9]+), too_old ([0-9]+), camera errors ([0-9]+), engine errors ([0-9]+), send_dropped ([0-9]+)$/ F_overflow=\1 F_too_old=\2 F_camera_errors=\3 F_engine_errors=\4 F_send_dropped=\5/p')
    [ -n "$vars" ] || return 1
    eval "$vars"
}

# e2e_verdicts OUT CAPTURED [restarts]: the subscriber's verdicts are exactly
# CAPTURED messages, seq 0..CAPTURED-1 in order, frame ids never repeated
# (unless a 16-bit GigE id wrapped, or with "restarts": a camera that
# restarts counts from 1 again).  Prints what is wrong.
e2e_verdicts()
{
    "$PY" - "$1" "$2" "${3:-}" <<'EOF'
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
want = int(sys.argv[2])
errs = []
if len(msgs) != want:
    errs.append("%d verdicts for %d captured frames" % (len(msgs), want))
bad = [i for i, m in enumerate(msgs) if m["seq"] != i]
if bad:
    errs.append("seq not 0..n-1 in order from message %d (seq %d)" % (bad[0], msgs[bad[0]]["seq"]))
ids = [m["frame_id"] for m in msgs if m["frame_id"] is not None]
if sys.argv[3] != "restarts" and ids and max(ids) < 65535 and len(set(ids)) != len(ids):
    errs.append("a frame id published twice")
for m in msgs:
    if m["verdict"] not in ("pass", "reject", "uninspected"):
        errs.append("verdict %r" % m["verdict"])
        break
print("; ".join(errs))
sys.exit(1 if errs else 0)
EOF
}

# e2e_judged OUT: every verdict in OUT agrees with what it carries
# (docs/protocol.md).  Judged: "score" evidence exactly when score >
# threshold, "mask" evidence exactly when defects is not empty (and then
# mask_peak > mask_threshold), reject exactly when the evidence holds what
# its rule counts.  Uninspected: no score, rule or evidence.  Either way,
# the SHA-256 of a model.  A verdict judged under one calibration and
# published with another fails here.  Prints the first verdict that does
# not agree; fails on no verdict at all.
e2e_judged()
{
    "$PY" - "$1" <<'EOF'
import json, re, sys
counts = {"either": {"score", "mask"}, "score": {"score"}, "mask": {"mask"}}
msgs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not msgs:
    sys.exit("no verdict to check")
for m in msgs:
    ev, s, t = set(m["evidence"]), m["score"], m["threshold"]
    if not re.fullmatch("[0-9a-f]{64}", str(m.get("model"))):
        ok = False
    elif m["verdict"] == "uninspected":
        ok = s is None and m["rule"] is None and not ev
    else:
        # score and threshold are published to 15 digits: equal ones may
        # have been either way round.
        ok = (m["verdict"] in ("pass", "reject") and m["rule"] in counts and
              s is not None and (s == t or ("score" in ev) == (s > t)) and
              ("mask" in ev) == bool(m["defects"]) and
              ("mask" not in ev or m["mask_peak"] >= m["mask_threshold"]) and
              ev <= {"score", "mask"} and
              (m["verdict"] == "reject") == bool(ev & counts[m["rule"]]))
    if not ok:
        print("verdict disagrees with what it carries:", json.dumps(
            {k: m.get(k) for k in ("seq", "frame_id", "model", "verdict", "reason", "rule",
                                   "evidence", "score", "threshold", "mask_peak",
                                   "mask_threshold")}),
              "defects", len(m["defects"]))
        sys.exit(1)
EOF
}

# e2e_fixture: in the current directory, model.safetensors (S=64, mono),
# good/ (20 defect-free images) and cal.yaml (its calibration, gamma 3).
e2e_fixture()
{
    e2e_model model.safetensors && e2e_images good 20 1 &&
        e2e_calibrate model.safetensors good cal.yaml
}

# e2e_overflowing MODEL CAL OUT OUTCAL: OUT, MODEL with every convolution's
# weights times 1e10, so that its Markov maps overflow float32 and no FMD
# exists (the engine fails every batch), and OUTCAL, CAL re-addressed to
# it (no calibration of such a model can be made).
e2e_overflowing()
{
    "$PY" - "$E2E_ROOT/scripts" "$@" <<'EOF'
import hashlib, re, sys
sys.path.insert(0, sys.argv[1])
import maa_io
model, cal, out, outcal = sys.argv[2:6]
t, meta, _ = maa_io.read_safetensors(model)
for k, v in t.items():
    if v.ndim == 4:
        t[k] = v * 1e10
maa_io.write_safetensors(out, t, meta)
sha = hashlib.sha256(open(out, "rb").read()).hexdigest()
open(outcal, "w").write(re.sub(r"(model_sha256:\s*)\S+", r"\g<1>" + sha, open(cal).read()))
EOF
}

# e2e_notify_listen SOCKET LOG: a systemd notify socket at SOCKET in the
# background, writing each notification (READY=1, STATUS=...) to LOG as a
# line; for maad started with NOTIFY_SOCKET=SOCKET.
e2e_notify_listen()
{
    "$PY" - "$1" "$2" >"$2.err" 2>&1 <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "w") as f:
    while True:
        for line in s.recv(4096).decode().splitlines():
            f.write(line + "\n")
            f.flush()
EOF
    E2E_PIDS+=($!)
    e2e_wait_file "$1" 10
}

# e2e_fakecam IMAGES FPS SERIAL LOG [ARGS...]: `maa fakecam` in the background
# (ARGS are more of its options); the device id to open is in E2E_CAM_ID and
# the pid in E2E_CAM once it serves.
e2e_fakecam()
{
    e2e_bg "$4.out" "$MAA" fakecam --images "$1" --fps "$2" --serial "$3" "${@:5}"
    E2E_CAM=$E2E_BG
    E2E_CAM_ID=
    e2e_wait_for "$4.out" '^Aravis-' 10 "$E2E_CAM" || return 1
    E2E_CAM_ID=$(grep -m1 '^Aravis-' "$4.out")
}

# e2e_maad CONFIG LOG: maad in the background (pid in E2E_MAAD), waiting
# until it logged "ready".
e2e_maad()
{
    e2e_bg "$2" "$MAAD" --config "$1"
    E2E_MAAD=$E2E_BG
    e2e_wait_for "$2" 'ready: camera' 30 "$E2E_MAAD"
}

# e2e_maad_up CONFIG LOG: e2e_maad, or the test ends here, failed, with
# maad's log.
e2e_maad_up()
{
    e2e_maad "$1" "$2" && return 0
    fail "maad start" "$(cat "$2")"
    e2e_summary
    exit 1
}

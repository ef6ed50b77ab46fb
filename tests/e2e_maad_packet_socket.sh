#!/usr/bin/env bash
# e2e_maad_packet_socket — maad receives the fake camera's stream on the
# namespace's loopback through Aravis's packet socket (camera.packet_socket:
# true, the default): maad holds an AF_PACKET socket while it streams (so the
# frames came that way, not through Aravis's silent fallback to UDP), and
# 300 frames come, every one judged, none incomplete or missed, frame ids
# consecutive.  docs/camera.md says what was observed and where it would
# not be used.  Where Aravis fell back to UDP (no CAP_NET_RAW) the test is
# skipped, saying so.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"
want=300

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
e2e_fakecam good 33 PKT fakecam.log || { fail "maa fakecam" "$(cat fakecam.log.out)"; e2e_summary; exit 1; }
cat >maad.yaml <<EOC
camera:
  name: packet
  device_id: "$E2E_CAM_ID"
  packet_socket: true
  frame_rate: 33
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
publish:
  endpoint: tcp://127.0.0.1:5609
EOC
e2e_subscribe tcp://127.0.0.1:5609 verdicts.jsonl
e2e_maad_up maad.yaml maad.log
e2e_wait_file verdicts.jsonl.ready 10 || fail "no heartbeat"
e2e_wait_count verdicts.jsonl . 1 10 || fail "no verdict in 10 s" "$(tail -3 maad.log)"

# The namespace's packet sockets (/proc/net/packet, one per line after the
# header, inode last) that are maad's open files.
packet=0
for inode in $(awk 'NR > 1 { print $9 }' /proc/net/packet); do
    ls -l "/proc/$E2E_MAAD/fd" 2>/dev/null | grep -q "socket:\[$inode\]" && packet=$((packet + 1))
done

e2e_wait_count verdicts.jsonl . "$want" 60 || fail "fewer than $want verdicts in 60 s"
e2e_stop "$E2E_MAAD"
rc=$?
e2e_stop "$E2E_CAM" 10
e2e_stop_sub verdicts.jsonl maad.log
if [ "$packet" -eq 0 ]; then
    skip "packet socket" "maad held no AF_PACKET socket: Aravis received on its UDP socket (no CAP_NET_RAW?)"
    e2e_summary
    exit 0
fi
ok "maad received through an AF_PACKET socket"
[ "$rc" -eq 0 ] && ok "maad exits 0" || fail "maad exit $rc" "$(tail -3 maad.log)"
if e2e_final maad.log; then
    check "one verdict per captured frame, seq gap-free" e2e_verdicts verdicts.jsonl "$F_captured"
    [ "$F_camera_errors" -eq 0 ] && [ "$F_uninspected" -eq 0 ] &&
        ok "every frame whole and judged" ||
        fail "camera errors $F_camera_errors, uninspected $F_uninspected" \
            "$(grep -m1 'camera error' maad.log)"
else
    fail "no final stats line" "$(tail -5 maad.log)"
fi
check "frame ids consecutive" "$PY" - verdicts.jsonl <<'PYEOF'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1])]
first = v[0]["frame_id"]
# GigE Vision ids run 1..65535 and wrap; the fake camera's start at 65401.
bad = [(i, m["frame_id"]) for i, m in enumerate(v) if m["frame_id"] != (first - 1 + i) % 65535 + 1]
assert not bad, "verdict %d has frame id %s" % bad[0]
PYEOF
e2e_summary

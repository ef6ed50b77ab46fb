#!/usr/bin/env bash
# e2e_maad_rates — frames at the configured rate, without camera errors,
# where the camera does not free-run at a fast rate:
# - camera.trigger: software — maad triggers the fake camera itself,
#   camera.frame_rate times a second, and every frame is judged;
# - a free run at 0.8 frames/s with camera.timeout_ms left at its default
#   (derived from the frame rate): no frame is taken for a lost camera.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
e2e_fakecam good 25 RATE fakecam.log || { fail "maa fakecam" "$(cat fakecam.log.out)"; e2e_summary; exit 1; }

# run NAME TRIGGER FRAME_RATE VERDICTS SECONDS: maad until the subscriber
# has VERDICTS verdicts (at most SECONDS), then stopped; its log in
# NAME.log, the verdicts in NAME.jsonl.
run()
{
    cat >"$1.yaml" <<EOC
camera:
  name: $1
  device_id: "$E2E_CAM_ID"
  packet_socket: false
  trigger: $2
  frame_rate: $3
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
publish:
  endpoint: tcp://127.0.0.1:5607
EOC
    e2e_subscribe tcp://127.0.0.1:5607 "$1.jsonl"
    e2e_maad_up "$1.yaml" "$1.log"
    e2e_wait_file "$1.jsonl.ready" 10 || fail "$1: no heartbeat"
    local n=$(($5 * 10))
    while [ "$(wc -l <"$1.jsonl")" -lt "$4" ] && [ "$n" -gt 0 ]; do
        sleep 0.1
        n=$((n - 1))
    done
    e2e_stop "$E2E_MAAD" || fail "$1: maad exit status $?" "$(tail -3 "$1.log")"
    e2e_stop "$E2E_SUB" 10
}

# verdicts NAME N: at least N verdicts, all judged, none a camera error.
verdicts()
{
    "$PY" - "$1.jsonl" "$2" <<'PYEOF'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = [m["reason"] for m in v if m["verdict"] == "uninspected"]
assert not bad, "%d uninspected, first: %s" % (len(bad), bad[0])
assert len(v) >= int(sys.argv[2]), "%d verdicts, wanted %s" % (len(v), sys.argv[2])
PYEOF
}

run soft software 10 20 15
check "software trigger at camera.frame_rate: frames come and are judged" verdicts soft 20
if e2e_final soft.log; then
    [ "$F_camera_errors" -eq 0 ] && ok "software trigger: no camera error" ||
        fail "software trigger: $F_camera_errors camera errors" "$(grep -m1 'camera error' soft.log)"
else
    fail "software trigger: no final stats line" "$(tail -5 soft.log)"
fi

run slow free 0.8 3 15
check "free run at 0.8 frames/s: frames judged, none a camera error" verdicts slow 3
if e2e_final slow.log; then
    [ "$F_camera_errors" -eq 0 ] && ok "0.8 frames/s: no camera error (timeout derived)" ||
        fail "0.8 frames/s: $F_camera_errors camera errors" "$(grep -m1 'camera error' slow.log)"
else
    fail "0.8 frames/s: no final stats line" "$(tail -5 slow.log)"
fi
e2e_stop "$E2E_CAM" 10
e2e_summary

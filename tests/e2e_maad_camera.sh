#!/usr/bin/env bash
# e2e_maad_camera — the fake camera stopped mid-run and started again: maad
# publishes uninspected verdicts with a "camera error" reason while the
# camera is gone (the line sees the inspector is blind), reconnects by
# itself, and judges frames again; seq stays gap-free throughout.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
e2e_fakecam good 25 RST fakecam1.log || { fail "maa fakecam" "$(cat fakecam1.log.out)"; e2e_summary; exit 1; }
cat >maad.yaml <<EOC
camera:
  name: flaky
  device_id: "$E2E_CAM_ID"
  packet_socket: false
  frame_rate: 25
  timeout_ms: 400
  reconnect_min_ms: 200
  reconnect_max_ms: 400
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
publish:
  endpoint: tcp://127.0.0.1:5604
EOC
e2e_subscribe tcp://127.0.0.1:5604 verdicts.jsonl
e2e_maad_up maad.yaml maad.log
e2e_wait_file verdicts.jsonl.ready 10 || fail "no heartbeat"
# The last check wants 25 passes before the camera goes.
e2e_wait_count verdicts.jsonl '"verdict":"pass"' 25 30 || fail "fewer than 25 passes in 30 s"
e2e_stop "$E2E_CAM" 10
# Gone until maad has tried to reconnect and failed.
e2e_wait_for verdicts.jsonl 'reconnect attempt [0-9]+ failed' 20 ||
    fail "no failed reconnect attempt in 20 s" "$(tail -3 maad.log)"
e2e_fakecam good 25 RST fakecam2.log || fail "second maa fakecam" "$(cat fakecam2.log.out)"
# Judged frames again after the restart: wait for them (up to 20 s).
k=200
until "$PY" - verdicts.jsonl <<'PYEOF' 2>/dev/null; do
import json, sys
v = [json.loads(l) for l in open(sys.argv[1])]
last_err = max(i for i, m in enumerate(v) if m["reason"].startswith("camera error"))
sys.exit(0 if sum(m["verdict"] == "pass" for m in v[last_err:]) >= 25 else 1)
PYEOF
    k=$((k - 1))
    [ "$k" -gt 0 ] || break
    sleep 0.1
done
e2e_stop "$E2E_MAAD"
rc=$?
e2e_stop "$E2E_CAM" 10
e2e_stop_sub verdicts.jsonl maad.log
[ "$rc" -eq 0 ] && ok "maad exits 0" || fail "maad exit $rc" "$(tail -3 maad.log)"

if e2e_final maad.log; then
    check "one verdict per captured frame or camera event, seq gap-free" \
        e2e_verdicts verdicts.jsonl "$F_captured" restarts
    [ "$F_camera_errors" -gt 0 ] && ok "camera errors counted ($F_camera_errors)" ||
        fail "no camera error counted"
else
    fail "no final stats line" "$(tail -5 maad.log)"
fi
check "every verdict agrees with the score, threshold and evidence it carries" \
    e2e_judged verdicts.jsonl
check "passes, then camera-error uninspected verdicts, then passes again" \
    "$PY" - verdicts.jsonl <<'PYEOF'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1])]
err = [i for i, m in enumerate(v) if m["reason"].startswith("camera error")]
assert err, "no camera-error verdict"
assert all(v[i]["verdict"] == "uninspected" and v[i]["score"] is None for i in err)
assert sum(m["verdict"] == "pass" for m in v[:err[0]]) >= 25, "too few passes before the loss"
assert sum(m["verdict"] == "pass" for m in v[err[-1]:]) >= 25, "no reconnection: too few passes after"
PYEOF
grep -q "camera error" maad.log && ok "camera errors logged" || fail "camera errors not logged"
grep -qE "notice: camera Aravis-Fake-RST reconnected at attempt [0-9]+, [0-9.]+ s after it was lost" maad.log &&
    ok "reconnection logged" || fail "reconnection not logged" "$(grep -i reconnect maad.log | tail -3)"
e2e_summary

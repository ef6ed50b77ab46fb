#!/usr/bin/env bash
# e2e_maad_overflow — an engine made slow with engine.test_delay_ms (100 ms a
# batch of one) behind a 4-slot ring, fed by the fake camera at 50 frames/s:
# the frames that find the ring full are published as uninspected ("ring
# overflow") in their place and counted; the capture never stalls (no frame
# id missing, no camera error); every frame id is accounted for exactly once
# and in order.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
e2e_fakecam good 50 OVF fakecam.log || { fail "maa fakecam" "$(cat fakecam.log.out)"; e2e_summary; exit 1; }
cat >maad.yaml <<EOC
camera:
  name: slow
  device_id: "$E2E_CAM_ID"
  packet_socket: false
  frame_rate: 50
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
  batch_max: 1
  ring_slots: 4
  test_delay_ms: 100
publish:
  endpoint: tcp://127.0.0.1:5603
EOC
e2e_subscribe tcp://127.0.0.1:5603 verdicts.jsonl
e2e_maad_up maad.yaml maad.log
e2e_wait_file verdicts.jsonl.ready 10 || fail "no heartbeat"
# Until the ring has overflowed a few times and frames were judged between.
e2e_wait_count verdicts.jsonl '"reason":"ring overflow"' 50 60 &&
    e2e_wait_count verdicts.jsonl '"verdict":"pass"' 10 60 ||
    fail "fewer than 50 overflow verdicts or 10 passes in 60 s"
e2e_stop "$E2E_MAAD"
rc=$?
e2e_stop "$E2E_CAM" 10
e2e_stop_sub verdicts.jsonl maad.log
[ "$rc" -eq 0 ] && ok "maad exits 0" || fail "maad exit $rc" "$(tail -3 maad.log)"

if e2e_final maad.log; then
    check "one verdict per captured frame, seq gap-free" e2e_verdicts verdicts.jsonl "$F_captured"
    [ "$F_overflow" -gt 0 ] && ok "the ring overflowed ($F_overflow frames)" ||
        fail "no overflow: the test did not test it"
    [ "$F_camera_errors" -eq 0 ] && ok "capture never stalled: no camera error" ||
        fail "$F_camera_errors camera errors (missed or incomplete frames)"
    [ "$F_uninspected" -eq "$F_overflow" ] && ok "uninspected = overflow" ||
        fail "uninspected $F_uninspected, overflow $F_overflow"
    check "frame ids consecutive, each once; overflow verdicts counted" \
        "$PY" - verdicts.jsonl "$F_overflow" <<'PYEOF'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1])]
# GigE Vision ids run 1..65535 and wrap; the fake camera's may wrap here.
# Inside an overflow run across the wrap the ring knows only the ends
# (daemon.h), so a middle id may be null there.
first = v[0]["frame_id"]
for i, m in enumerate(v):
    want = (first - 1 + i) % 65535 + 1
    assert m["frame_id"] == want or (m["frame_id"] is None and m["reason"] == "ring overflow"), \
        "verdict %d has frame id %s, wanted %d" % (i, m["frame_id"], want)
ov = [m for m in v if m["verdict"] == "uninspected"]
assert all(m["reason"] == "ring overflow" and m["score"] is None for m in ov), "odd uninspected"
assert len(ov) == int(sys.argv[2]), "%d overflow verdicts, stats say %s" % (len(ov), sys.argv[2])
assert sum(m["verdict"] != "uninspected" for m in v) > 0, "nothing judged"
PYEOF
else
    fail "no final stats line" "$(tail -5 maad.log)"
fi
check "every verdict agrees with the score, threshold and evidence it carries" \
    e2e_judged verdicts.jsonl
e2e_summary

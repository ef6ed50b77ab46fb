#!/usr/bin/env bash
# e2e_maad_live — a fake GigE Vision camera (maa fakecam) at 33 frames/s for
# 30 s into maad on a small model: every frame the daemon captured gets
# exactly one verdict, seq gap-free, nothing dropped, and the subscriber's
# count equals maad's final stats line.  Half-way, model.gamma is changed and
# SIGHUP reloads the calibration: the verdicts switch to rejects without a
# frame lost.  E2E_SECONDS shortens or lengthens the run (default 30).  The
# rate a machine sustains is a benchmark's (scripts/bench-sustained.sh), not
# this test's.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"
secs=${E2E_SECONDS:-30}

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
e2e_fakecam good 33 LIVE fakecam.log || { fail "maa fakecam" "$(cat fakecam.log.out)"; e2e_summary; exit 1; }

write_config()
{
    cat >maad.yaml <<EOC
camera:
  name: line1
  device_id: "$E2E_CAM_ID"
  packet_socket: false
  frame_rate: 33
model:
  path: model.safetensors
  calibration: cal.yaml
  gamma: $1
engine:
  backend: ref
  threads: 1
  batch_max: 4
publish:
  endpoint: tcp://127.0.0.1:5601
log:
  summary_interval_s: 5
EOC
}
write_config 3
e2e_subscribe tcp://127.0.0.1:5601 verdicts.jsonl
e2e_maad_up maad.yaml maad.log
e2e_wait_file verdicts.jsonl.ready 10 && ok "subscriber gets heartbeats" || fail "no heartbeat"

sleep $((secs / 2))
write_config -10
kill -HUP "$E2E_MAAD"
sleep $((secs - secs / 2))

e2e_stop "$E2E_MAAD"
rc=$?
[ "$rc" -eq 0 ] && ok "maad exits 0 on SIGTERM" || fail "maad exit status $rc" "$(tail -5 maad.log)"
e2e_stop "$E2E_CAM" 10
e2e_stop_sub verdicts.jsonl maad.log

if e2e_final maad.log; then
    ok "final stats line"
    check "every captured frame has one verdict, seq gap-free" e2e_verdicts verdicts.jsonl "$F_captured"
    [ "$F_published" -eq "$F_captured" ] && ok "published = captured" ||
        fail "published $F_published of $F_captured"
    [ "$F_uninspected" -eq 0 ] && [ "$F_overflow" -eq 0 ] && [ "$F_send_dropped" -eq 0 ] &&
        ok "no frame dropped or uninspected" ||
        fail "drops" "uninspected $F_uninspected, overflow $F_overflow, send_dropped $F_send_dropped"
else
    fail "no final stats line" "$(tail -5 maad.log)"
fi
check "every verdict agrees with the score, threshold and evidence it carries" \
    e2e_judged verdicts.jsonl
grep -q 'SIGHUP: calibration .* reloaded' maad.log && ok "SIGHUP reloads the calibration" ||
    fail "SIGHUP reload not logged" "$(grep -i sighup maad.log)"
check "passes before the reload, then only rejects" "$PY" - verdicts.jsonl <<'PYEOF'
import json, sys
v = [json.loads(l)["verdict"] for l in open(sys.argv[1])]
first_reject = v.index("reject") if "reject" in v else len(v)
assert v[:first_reject].count("pass") > 100, "too few passes before the reload"
assert set(v[first_reject:]) == {"reject"}, "a pass after the first reject"
assert len(v) - first_reject > 100, "too few rejects after the reload"
PYEOF
grep -q 'summary: fps' maad.log && ok "summary line logged" || fail "no summary line"
e2e_summary

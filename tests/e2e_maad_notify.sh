#!/usr/bin/env bash
# e2e_maad_notify — maad under a test NOTIFY_SOCKET (what systemd's
# Type=notify unit sees): READY=1 after start-up, STATUS= summaries,
# WATCHDOG=1 pings while verdicts and heartbeats flow, STOPPING=1 on SIGTERM;
# then exit 0 with every frame in flight at the signal published.  On the
# way, SIGHUP with a broken calibration file keeps the old calibration.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
cat >maad.yaml <<EOC
camera:
  name: notified
  source: replay
replay:
  dir: good
  fps: 30
  loop: true
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
  batch_max: 4
  batch_timeout_ms: 2000
  test_delay_ms: 150
  # Frames in flight at SIGTERM are judged however long they waited: the
  # drain is what this test counts, not their age.
  max_age_ms: 0
publish:
  endpoint: tcp://127.0.0.1:5605
log:
  summary_interval_s: 1
EOC

e2e_notify_listen "$E2E_TMP/notify.sock" notify.log || fail "notify listener"

e2e_subscribe tcp://127.0.0.1:5605 verdicts.jsonl
NOTIFY_SOCKET=$E2E_TMP/notify.sock WATCHDOG_USEC=1000000 \
    e2e_bg maad.log bash -c 'export WATCHDOG_PID=$$; exec "$0" --config maad.yaml' "$MAAD"
maad=$E2E_BG
e2e_wait_for notify.log '^READY=1$' 30 "$maad" && ok "READY=1" || fail "no READY=1" "$(cat maad.log)"
# While the unit is activating, `systemctl status` names each start-up step
# (the worker's pings and summaries may come in between).
sha=$(sha256sum model.safetensors | cut -c1-12)
inspecting="STATUS=inspecting camera notified with model $PWD/model.safetensors (sha256 $sha)"
e2e_wait_for notify.log '^STATUS=inspecting camera notified with model ' 10
grep -E '^(READY=1|STATUS=starting: |STATUS=inspecting )' notify.log | tr '\n' '|' |
    grep -qxF "STATUS=starting: opening camera notified|STATUS=starting: making the engine (backend ref, batch 4)|READY=1|$inspecting|" &&
    ok "STATUS= names each start-up step, then inspecting" ||
    fail "start-up STATUS" "$(grep -v '^WATCHDOG=' notify.log | head -n 6)"
e2e_wait_for notify.log "^STATUS=fps [0-9.]+, passes [0-9]+, rejects [0-9]+, uninspected [0-9]+, overflow [0-9]+, too_old [0-9]+, send_dropped [0-9]+, latency p50 [0-9.]+ ms p99 [0-9.]+ ms, model $sha\$" 10 &&
    ok "STATUS= summary" || fail "no STATUS" "$(cat notify.log)"
e2e_wait_for notify.log '^WATCHDOG=1$' 10 && ok "WATCHDOG=1 pings" || fail "no WATCHDOG=1"
e2e_wait_file verdicts.jsonl.ready 10 || fail "no heartbeat"
# A broken calibration on SIGHUP is refused and the old one kept.
cp cal.yaml cal.good
echo "mu: [broken" >cal.yaml
kill -HUP "$maad"
e2e_wait_for maad.log 'SIGHUP: calibration not reloaded, keeping threshold' 10 &&
    ok "a broken calibration is refused on SIGHUP, the old one kept" ||
    fail "bad calibration on SIGHUP" "$(grep -i sighup maad.log)"
cp cal.good cal.yaml
n=$(grep -c . verdicts.jsonl)
e2e_wait_count verdicts.jsonl . $((n + 8)) 20 && ok "verdicts go on after the refused reload" ||
    fail "no verdict for 20 s after the refused reload"
t_term=$(date +%s%N)
e2e_stop "$maad"
rc=$?
e2e_stop_sub verdicts.jsonl maad.log
[ "$rc" -eq 0 ] && ok "exit 0 on SIGTERM" || fail "exit $rc" "$(tail -3 maad.log)"
e2e_wait_for notify.log '^STOPPING=1$' 5 && ok "STOPPING=1" || fail "no STOPPING=1"
grep -n '' notify.log | grep -E 'READY=1|STOPPING=1' | head -2 | tr '\n' ' ' |
    grep -qE '^[0-9]+:READY=1 [0-9]+:STOPPING=1' && ok "READY before STOPPING" ||
    fail "notification order" "$(cat notify.log)"

if e2e_final maad.log; then
    check "every captured frame published, seq gap-free" e2e_verdicts verdicts.jsonl "$F_captured"
    [ "$F_uninspected" -eq 0 ] && ok "nothing uninspected" || fail "$F_uninspected uninspected"
    late=$("$PY" -c "
import json, sys
print(sum(json.loads(l)['t_publish_ns'] > $t_term for l in open('verdicts.jsonl')))")
    [ "$late" -gt 0 ] && ok "$late frames in flight at SIGTERM were judged and published" ||
        fail "nothing was in flight at SIGTERM: the drain was not tested"
else
    fail "no final stats line" "$(tail -5 maad.log)"
fi
check "every verdict agrees with the score, threshold and evidence it carries" \
    e2e_judged verdicts.jsonl
e2e_summary

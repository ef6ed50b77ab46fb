#!/usr/bin/env bash
# e2e_maad_engine_failure — an engine that fails every batch (a model whose
# weights overflow float32, so every Markov map is NaN and no FMD exists):
# after engine.max_failed_batches (3) failed batches in a row maad stops by
# itself, still publishing a verdict for every frame it captured
# (uninspected, "engine error: ..."), says why, and exits with status 1, so
# that systemd's Restart=on-failure starts it afresh.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
e2e_overflowing model.safetensors cal.yaml broken.safetensors broken.yaml ||
    { fail "broken model"; e2e_summary; exit 1; }
cat >maad.yaml <<EOC
camera:
  name: broken
  source: replay
replay:
  dir: good
  fps: 50
  loop: true
model:
  path: broken.safetensors
  calibration: broken.yaml
engine:
  backend: ref
  batch_max: 1
  max_failed_batches: 3
publish:
  endpoint: tcp://127.0.0.1:5604
EOC
e2e_subscribe tcp://127.0.0.1:5604 verdicts.jsonl
e2e_maad_up maad.yaml maad.log
# It stops without being told to: wait for it, SIGKILL after 20 s.
n=200
while kill -0 "$E2E_MAAD" 2>/dev/null && [ "$n" -gt 0 ]; do
    sleep 0.1
    n=$((n - 1))
done
e2e_stop "$E2E_MAAD" 1
rc=$?
e2e_stop_sub verdicts.jsonl maad.log
[ "$n" -gt 0 ] && ok "maad stopped by itself" || fail "maad still ran after 20 s"
[ "$rc" -eq 1 ] && ok "exit status 1" || fail "exit status $rc" "$(tail -3 maad.log)"
grep -q 'engine failed 3 batches in a row (last: fmd: f(x) has a non-finite value' maad.log &&
    ok "the log says why" || fail "no 'engine failed 3 batches in a row' line" "$(tail -5 maad.log)"
if e2e_final maad.log; then
    check "one verdict per captured frame, seq gap-free" e2e_verdicts verdicts.jsonl "$F_captured"
    [ "$F_engine_errors" -ge 3 ] && [ "$F_uninspected" -eq "$F_captured" ] &&
        ok "every frame uninspected as an engine error ($F_engine_errors)" ||
        fail "engine errors $F_engine_errors, uninspected $F_uninspected of $F_captured"
    check "every verdict carries the engine's reason" "$PY" - verdicts.jsonl <<'PYEOF'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1])]
bad = [m for m in v if m["verdict"] != "uninspected" or
       not m["reason"].startswith("engine error: fmd: f(x) has a non-finite value")]
print(bad[:1])
sys.exit(1 if bad or not v else 0)
PYEOF
else
    fail "no final stats line" "$(tail -3 maad.log)"
fi
check "every verdict agrees with the score, threshold and evidence it carries" \
    e2e_judged verdicts.jsonl
e2e_summary

#!/usr/bin/env bash
# e2e_maad_model_swap — the model swapped while the line runs: a fake GigE
# Vision camera (maa fakecam, RGB8) at 25 frames/s into maad on the ref
# backend, with 3-channel models.  Mid-run, a second model (another seed,
# and S = 48 instead of 64) is moved into place at model.path, as an update
# is deployed, the configuration names its calibration, and SIGHUP swaps it
# in: every frame gets exactly one verdict, seq gap-free, none uninspected;
# the verdicts up to the seq the swap's log line names carry the first
# model's SHA-256 and mask size, those from there on the second's.  Then
# four broken candidates, one after the other: a truncated model file, a
# calibration made for another model, a mono model for the colour camera,
# and one whose engine computes nothing finite (its self-test fails).  Each
# is refused with its reason in the log and in STATUS=, and the second
# model goes on judging.  Last, a SIGTERM that comes while a candidate is
# being made and tested waits for it, and maad stops as it should: exit 0,
# every frame published (a signal that a library's thread, started before
# main, took would have ended maad at once).
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

export_model()
{
    "$PY" "$E2E_ROOT/scripts/export_model.py" --random --g-base 1 --d-base 2 "$@" >/dev/null
}

# The models are calibrated on gray images, which feed a 3-channel model
# replicated (contract §1), as the camera's RGB8 frames of them do.
{
    e2e_images good 20 1 &&
        export_model --seed 10 --size 64 --channels 3 --out model.safetensors &&
        e2e_calibrate model.safetensors good cal.yaml &&
        export_model --seed 11 --size 48 --channels 3 --out model2.safetensors &&
        e2e_calibrate model2.safetensors good cal2.yaml &&
        head -c 100000 model2.safetensors >truncated.safetensors &&
        export_model --seed 12 --size 64 --channels 3 --out foreign.safetensors &&
        e2e_model mono.safetensors && e2e_calibrate mono.safetensors good mono.yaml &&
        e2e_overflowing model2.safetensors cal2.yaml overflowing.safetensors overflowing.yaml &&
        export_model --seed 14 --size 1024 --channels 3 --out big.safetensors &&
        e2e_overflowing big.safetensors cal2.yaml slow.safetensors slow.yaml
} || { fail "fixture (models, images, calibrations)"; e2e_summary; exit 1; }
cp model.safetensors line.safetensors
sha1=$(sha256sum model.safetensors | cut -d' ' -f1)
sha2=$(sha256sum model2.safetensors | cut -d' ' -f1)
e2e_fakecam good 25 SWAP fakecam.log --pixel-format RGB8 || { fail "maa fakecam" "$(cat fakecam.log.out)"; e2e_summary; exit 1; }

# write_config MODEL CALIBRATION
write_config()
{
    cat >maad.yaml <<EOC
camera:
  name: line1
  device_id: "$E2E_CAM_ID"
  pixel_format: RGB8
  packet_socket: false
  frame_rate: 25
model:
  path: $1
  calibration: $2
engine:
  backend: ref
  threads: 1
  batch_max: 4
publish:
  endpoint: tcp://127.0.0.1:5609
EOC
}

# more N: until N more verdicts than now have come (20 s at most).
more()
{
    e2e_wait_count verdicts.jsonl . $(($(grep -c . verdicts.jsonl) + $1)) 20
}

write_config line.safetensors cal.yaml
e2e_notify_listen "$E2E_TMP/notify.sock" notify.log || fail "notify listener"
e2e_subscribe tcp://127.0.0.1:5609 verdicts.jsonl
NOTIFY_SOCKET=$E2E_TMP/notify.sock e2e_maad_up maad.yaml maad.log
e2e_wait_file verdicts.jsonl.ready 10 || fail "no heartbeat"
more 40 || fail "no verdicts from the first model" "$(tail -3 maad.log)"

# The same path, new content: a new model, told apart by its SHA-256.
cp model2.safetensors line.safetensors.new && mv line.safetensors.new line.safetensors
write_config line.safetensors cal2.yaml
kill -HUP "$E2E_MAAD"
if e2e_wait_for maad.log "SIGHUP: model $PWD/line\.safetensors \(sha256 ${sha2:0:12}\) swapped in" 20 \
    "$E2E_MAAD"; then
    ok "the second model swapped in"
    grep 'swapped in' maad.log | sed 's/^[^ ]* /  /'
else
    fail "no swap" "$(grep SIGHUP maad.log)"
fi
grep -qxF "STATUS=inspecting camera line1 with model $PWD/line.safetensors (sha256 ${sha2:0:12})" \
    notify.log && ok "STATUS= names the second model" ||
    fail "STATUS= after the swap" "$(grep '^STATUS=inspecting' notify.log)"
first=$(sed -nE 's/.*SIGHUP: model .* swapped in from the next batch, seq ([0-9]+) on:.*/\1/p' maad.log)
more 40 || fail "no verdicts from the second model" "$(tail -3 maad.log)"

# refused NAME MODEL CALIBRATION REASON: a candidate SIGHUP must refuse for
# REASON (a regular expression), the second model judging on.
k=0
refused()
{
    k=$((k + 1))
    write_config "$2" "$3"
    kill -HUP "$E2E_MAAD"
    local line status
    e2e_wait_count maad.log 'not swapped in' "$k" 20
    line=$(grep 'not swapped in' maad.log | sed -n "${k}p")
    status=$(grep -F "STATUS=inspecting camera line1 with model $PWD/line.safetensors (sha256 ${sha2:0:12}); SIGHUP: model $PWD/$2" notify.log)
    if grep -qE "SIGHUP: model $PWD/$2( \(sha256 [0-9a-f]{12}\))? not swapped in, keeping $PWD/line\.safetensors \(sha256 ${sha2:0:12}\): $4" <<<"$line" &&
        [ -n "$status" ]; then
        ok "$1: refused, logged and in STATUS="
        echo "  ${line#*: }"
    else
        fail "$1" "log: ${line:-none}; STATUS: ${status:-none}"
    fi
    more 10 || fail "$1: no verdict after the refusal" "$(tail -3 maad.log)"
}
refused "a truncated model file" truncated.safetensors cal2.yaml \
    "$PWD/truncated\.safetensors: .*truncated file"
refused "a calibration made for another model" foreign.safetensors cal2.yaml \
    "model\.calibration: calibration was made for the model with sha256 $sha2, but .*foreign\.safetensors has sha256"
refused "a mono model for the RGB8 camera" mono.safetensors mono.yaml \
    "camera\.pixel_format RGB8 gives colour frames, but the model .*mono\.safetensors is mono \(1 channel\)"
refused "a model whose engine computes nothing finite" overflowing.safetensors overflowing.yaml \
    "self-test: .*non-finite"

# S = 1024: its engine and self-test take the main thread about a second.
write_config slow.safetensors slow.yaml
kill -HUP "$E2E_MAAD"
sleep 0.3
t_term=$(date +%s%N)
e2e_stop "$E2E_MAAD"
rc=$?
[ "$rc" -eq 0 ] && ok "maad exits 0 on a SIGTERM during a swap" ||
    fail "maad exit status $rc" "$(tail -5 maad.log)"
line=$(grep -n 'slow.safetensors .* not swapped in' maad.log)
stop=$(grep -n 'stopping: draining' maad.log | cut -d: -f1)
t_refused=$(date -d "$(sed -E 's/^[0-9]+:([^ ]+) .*/\1/' <<<"$line")" +%s%N 2>/dev/null)
[ -n "$line" ] && [ "${line%%:*}" -lt "${stop:-0}" ] && [ "${t_refused:-0}" -gt "$t_term" ] &&
    ok "the SIGTERM waited for the swap it came during" ||
    fail "SIGTERM during a swap" "SIGTERM at $t_term ns, refusal at ${t_refused:-never}: $(grep -E 'slow|stopping' maad.log)"
e2e_stop "$E2E_CAM" 10
e2e_stop_sub verdicts.jsonl maad.log

if e2e_final maad.log; then
    check "every captured frame has one verdict, seq gap-free" e2e_verdicts verdicts.jsonl "$F_captured"
    [ "$F_uninspected" -eq 0 ] && [ "$F_send_dropped" -eq 0 ] &&
        ok "no frame skipped (uninspected) or dropped" ||
        fail "uninspected $F_uninspected (overflow $F_overflow), send_dropped $F_send_dropped"
else
    fail "no final stats line" "$(tail -5 maad.log)"
fi
check "every verdict agrees with the score, threshold and evidence it carries" \
    e2e_judged verdicts.jsonl
check "the first model's verdicts up to seq ${first:-?}, the second's from there on" \
    "$PY" - verdicts.jsonl "${first:--1}" "$sha1" "$sha2" <<'PYEOF'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
first, sha1, sha2 = int(sys.argv[2]), sys.argv[3], sys.argv[4]
assert first > 0, "no seq in the swap's log line"
# (model, mask size) of each verdict: every frame judged by one of the two
# (an uninspected one has no mask)
for m in v:
    want = (sha1, 64) if m["seq"] < first else (sha2, 48)
    if m["verdict"] == "uninspected":
        want = (want[0], 0)
    got = (m["model"], m["mask"]["width"])
    assert got == want, "seq %d: model %.12s, mask %d; expected %.12s, %d" % (
        m["seq"], got[0], got[1], want[0][:12], want[1])
old = sum(m["seq"] < first for m in v)
assert old >= 40 and len(v) - old >= 80, "%d verdicts of the first model, %d of the second" % (
    old, len(v) - old)
print("%d verdicts by the first model, %d by the second" % (old, len(v) - old))
PYEOF
e2e_summary

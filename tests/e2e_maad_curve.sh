#!/usr/bin/env bash
# e2e_maad_curve — the verdict socket with CURVE (docs/operations.md,
# "Securing the verdict socket"): keys from maa keygen and from pyzmq work
# together; an allowed subscriber (pyzmq, maa watch) gets every verdict, a
# key not allowed and a plain subscriber get none and are told why, maad
# logs the refusal; SIGHUP allows a key added to the directory and maa
# watch, refused before, then follows; a secret key others can read, half
# of CURVE, and a plain socket beyond loopback are caught by
# --check-config (the last one as a warning); maa-plc subscribes with its
# own key, and is told and logs it when maad refuses the key.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
MAA_PLC=${MAA_PLC:-$E2E_ROOT/build/maa-plc}
cd "$E2E_TMP"
EP=tcp://127.0.0.1:5610

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
mkdir -p keys clients
"$MAA" keygen maad --dir keys >keygen.out 2>&1 &&
    "$MAA" keygen watcher --dir keys >>keygen.out 2>&1 &&
    "$MAA" keygen stranger --dir keys >>keygen.out 2>&1 &&
    ok "maa keygen makes three key pairs" || fail "maa keygen" "$(cat keygen.out)"
check "the secret file is 0600, the public one holds no secret" \
    bash -c '[ "$(stat -c %a keys/maad.key_secret)" = 600 ] && ! grep -q secret-key keys/maad.key &&
             grep -q secret-key keys/maad.key_secret'
"$MAA" keygen maad --dir keys >again.out 2>&1
[ $? -ne 0 ] && grep -q "exists already" again.out && ok "maa keygen never replaces a key" ||
    fail "maa keygen over an existing key" "$(cat again.out)"
# A client certificate made by pyzmq, as a bridge written in Python would.
"$PY" -c 'import zmq.auth, sys; zmq.auth.create_certificates(sys.argv[1], "pyclient")' keys &&
    cp keys/watcher.key keys/pyclient.key clients/ &&
    ok "pyzmq makes a client certificate" || fail "pyzmq create_certificates"

e2e_images replay 12 7
conf()
{
    cat <<EOC
camera:
  name: cam
  source: replay
replay:
  dir: replay
  fps: 25
  loop: true
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
publish:
  endpoint: $1
EOC
    [ -n "${2:-}" ] && printf '  curve_secret_key: %s\n  curve_clients: clients\n' "$2"
}

# --check-config: plain beyond loopback is a warning, not an error.
conf "tcp://*:5610" >wide.yaml
"$MAAD" --check-config wide.yaml >wide.out 2>wide.err
[ $? -eq 0 ] && grep -q "warning: publish.endpoint tcp://\*:5610 listens beyond this host without CURVE" wide.err &&
    ok "--check-config warns of a plain socket beyond loopback" ||
    fail "--check-config, plain on *" "$(cat wide.err)"
conf $EP >local.yaml
"$MAAD" --check-config local.yaml >local.out 2>local.err
[ $? -eq 0 ] && ! grep -q warning local.err && ok "no warning for plain on loopback" ||
    fail "--check-config, plain on loopback" "$(cat local.err)"
conf "tcp://*:5610" keys/maad.key_secret >curve-wide.yaml
"$MAAD" --check-config curve-wide.yaml >cw.out 2>cw.err
[ $? -eq 0 ] && ! grep -q warning cw.err && ok "no warning with CURVE on every interface" ||
    fail "--check-config, CURVE on *" "$(cat cw.err)"
conf $EP keys/maad.key_secret | grep -v curve_clients >half.yaml
"$MAAD" --check-config half.yaml >half.out 2>half.err
[ $? -ne 0 ] && grep -q "half.yaml:.*curve_secret_key and publish.curve_clients go together" half.err &&
    ok "half of CURVE is refused with FILE:LINE" || fail "half CURVE" "$(cat half.err)"
cp keys/stranger.key_secret leaky.key_secret && chmod 644 leaky.key_secret
conf $EP leaky.key_secret >leaky.yaml
"$MAAD" --config leaky.yaml >leaky.log 2>&1
[ $? -ne 0 ] && grep -q "leaky.key_secret: the secret key is readable by others (mode 0644)" leaky.log &&
    ok "a secret key others can read stops the start" || fail "leaky key" "$(tail -3 leaky.log)"

conf $EP keys/maad.key_secret >maad.yaml
e2e_subscribe $EP verdicts.jsonl keys/maad.key keys/pyclient.key_secret
e2e_maad_up maad.yaml maad.log
grep -q "CURVE: 2 subscriber keys allowed" maad.log && ok "maad names the keys it allows" ||
    fail "start line" "$(grep publish: maad.log)"
e2e_wait_file verdicts.jsonl.ready 10 && ok "pyzmq subscriber with its own key gets heartbeats" ||
    fail "pyzmq CURVE subscriber" "$(cat verdicts.jsonl.log)"

"$MAA" watch $EP --server-key keys/maad.key --key keys/watcher.key_secret --count 5 \
    --timeout 15 >watch.out 2>&1
[ $? -eq 0 ] && [ "$(grep -cE '^[0-9:.]+ cam seq ' watch.out)" -eq 5 ] &&
    ok "maa watch with an allowed key gets verdicts" || fail "maa watch allowed" "$(cat watch.out)"

"$MAA" watch $EP --server-key keys/maad.key --key keys/stranger.key_secret --timeout 3 \
    >stranger.out 2>&1
! grep -qE '^[0-9:.]+ cam seq ' stranger.out && grep -q "maad refused this subscriber's key" stranger.out &&
    ok "a key not allowed gets nothing and is told why" || fail "stranger" "$(cat stranger.out)"
grep -q "refused subscriber .*public key $(sed -nE 's/.*public-key = "(.*)"/\1/p' keys/stranger.key | sed 's/[][\.*^$/]/\\&/g') is not in publish.curve_clients" maad.log &&
    ok "maad logs the refused key" || fail "refusal log" "$(grep -i refus maad.log)"
"$MAA" watch $EP --timeout 3 >plain.out 2>&1
! grep -qE '^[0-9:.]+ cam seq ' plain.out && grep -q "security mismatch" plain.out &&
    ok "a plain subscriber gets nothing and is told why" || fail "plain" "$(cat plain.out)"
"$MAA" watch $EP --server-key keys/stranger.key --key keys/watcher.key_secret --timeout 3 \
    >wrongserver.out 2>&1
! grep -qE "^[0-9:.]+ cam seq " wrongserver.out && grep -q "is the server key given the public key" wrongserver.out && ok "a wrong server key gets nothing and is asked about it" ||
    fail "wrong server key" "$(cat wrongserver.out)"

# maa watch refused at first follows once the key is allowed (SIGHUP).
e2e_bg late.out "$MAA" watch $EP --server-key keys/maad.key --key keys/stranger.key_secret \
    --count 3 --timeout 20
late=$E2E_BG
e2e_wait_for late.out "refused this subscriber's key" 10 "$late" || fail "no refusal before SIGHUP"
cp keys/stranger.key clients/
kill -HUP "$E2E_MAAD"
e2e_wait_for maad.log "SIGHUP: 3 subscriber keys allowed" 10 "$E2E_MAAD" &&
    ok "SIGHUP rereads the allowed keys" || fail "SIGHUP keys" "$(grep SIGHUP maad.log)"
wait "$late"
[ $? -eq 0 ] && [ "$(grep -cE '^[0-9:.]+ cam seq ' late.out)" -eq 3 ] &&
    ok "the refused maa watch follows once its key is allowed" || fail "late watch" "$(cat late.out)"

# maa-plc as a CURVE subscriber (dry run: decisions logged, no PLC): with
# its key allowed it decides parts; the stranger's key is refused, logged as
# an error naming the camera, and the camera is down.
"$MAA" keygen maa-plc --dir keys >/dev/null && cp keys/maa-plc.key clients/ &&
    kill -HUP "$E2E_MAAD" && e2e_wait_for maad.log "SIGHUP: 4 subscriber keys allowed" 10 "$E2E_MAAD"
plc_conf()
{
    cat <<EOC
line:
  curve_key: $1
  heartbeat_timeout_ms: 500
plc:
  address: 127.0.0.1
  dry_run: true
cameras:
  - name: cam
    endpoint: $EP
    server_key: keys/maad.key
log:
  summary_interval_s: 1
EOC
}
plc_conf keys/maa-plc.key_secret >plc.yaml
plc_conf "" >plc-nokey.yaml
"$MAA_PLC" --check-config plc-nokey.yaml >plc-nokey.out 2>&1
[ $? -ne 0 ] && grep -q "plc-nokey.yaml:.*camera cam has a server_key (CURVE) but line.curve_key" plc-nokey.out &&
    ok "maa-plc: a server_key without its own key is refused" || fail "plc no key" "$(cat plc-nokey.out)"
e2e_bg plc.log "$MAA_PLC" --config plc.yaml
plc=$E2E_BG
e2e_wait_for plc.log "dry run: part [0-9]+: (pass|reject)" 15 "$plc" &&
    ok "maa-plc with an allowed key decides parts" || fail "maa-plc CURVE" "$(tail -5 plc.log)"
e2e_stop "$plc" 10
plc_conf keys/stranger.key_secret >plc-stranger.yaml
rm -f clients/stranger.key
kill -HUP "$E2E_MAAD"
e2e_wait_for maad.log "SIGHUP: 3 subscriber keys allowed" 10 "$E2E_MAAD"
e2e_bg plc2.log "$MAA_PLC" --config plc-stranger.yaml
plc=$E2E_BG
e2e_wait_for plc2.log "error: camera cam: .*maad refused this subscriber's key" 10 "$plc" &&
    ok "maa-plc with a key no longer allowed logs the refusal" || fail "maa-plc refused" "$(tail -5 plc2.log)"
! grep -q "dry run: part" plc2.log && ok "... and decides no part from that camera" ||
    fail "maa-plc refused but decided" "$(grep -m3 'dry run' plc2.log)"
e2e_stop "$plc" 10

echo "curve_clients broken" >clients/broken.key
kill -HUP "$E2E_MAAD"
e2e_wait_for maad.log "subscriber keys not reloaded, keeping the ones allowed: .*broken.key" 10 \
    "$E2E_MAAD" && ok "a broken certificate keeps the allowed keys" ||
    fail "broken key reload" "$(grep SIGHUP maad.log)"

e2e_stop "$E2E_MAAD"
rc=$?
e2e_stop_sub verdicts.jsonl maad.log
[ "$rc" -eq 0 ] && ok "maad exits 0" || fail "maad exit $rc" "$(tail -3 maad.log)"
if e2e_final maad.log; then
    check "the CURVE subscriber got every verdict, seq gap-free" \
        e2e_verdicts verdicts.jsonl "$F_captured"
else
    fail "no final stats line" "$(tail -5 maad.log)"
fi
e2e_summary

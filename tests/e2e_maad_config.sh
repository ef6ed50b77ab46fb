#!/usr/bin/env bash
# e2e_maad_config — maad --check-config and maad --config on good and bad
# files: configuration errors carry FILE:LINE:COL, a calibration made for
# another model is refused, and a daemon with a bad file exits non-zero
# without starting.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

e2e_model model.safetensors
"$PY" "$E2E_ROOT/scripts/export_model.py" --random --seed 7 --size 64 --channels 1 \
    --g-base 1 --d-base 2 --out other.safetensors >/dev/null
e2e_images good 20 1
e2e_calibrate model.safetensors good cal.yaml
e2e_calibrate other.safetensors good other.yaml

good_body='camera:
  name: cam0
  source: replay
replay:
  dir: good
model:
  path: model.safetensors
  calibration: cal.yaml
publish:
  endpoint: tcp://127.0.0.1:5555
engine:
  backend: ref'
echo "$good_body" >good.yaml

# expect_error NAME FILE PATTERN: --check-config fails, stderr matches.
expect_error()
{
    local name=$1 file=$2 pat=$3 out rc
    out=$("$MAAD" --check-config "$file" 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" -ne 0 ] && grep -qE -- "$pat" <<<"$out"; then
        ok "$name"
    else
        fail "$name" "exit $rc, stderr: $out (wanted /$pat/)"
    fi
}

out=$("$MAAD" --check-config good.yaml 2>&1)
if [ $? -eq 0 ] && grep -q 'camera.name = "cam0"' <<<"$out" &&
    grep -q 'engine.batch_max = 4' <<<"$out" && grep -q 'configuration OK' <<<"$out"; then
    ok "good file: effective configuration printed, exit 0"
else
    fail "good file" "$out"
fi

printf '%s\n' "$good_body" "  batch_maxx: 4" >unknown.yaml
expect_error "unknown key at its line and column" unknown.yaml \
    "^maad: unknown.yaml:13:3: unknown key 'engine.batch_maxx' \(did you mean 'engine.batch_max'\?\)"

printf '%s\n' "$good_body" "  ring_slots: 100" >slots.yaml
expect_error "bad value at the value's column" slots.yaml "^maad: slots.yaml:13:15: .*power of two"

printf '%s\n' "$good_body" "  batch_max: 0" >range.yaml
expect_error "out-of-range value" range.yaml "^maad: range.yaml:13:14: "

printf 'camera:\n  name: [cam0\nmodel:\n' >syntax.yaml
expect_error "YAML syntax error with line and column" syntax.yaml "^maad: syntax.yaml:3:[0-9]+: YAML syntax error"

printf 'camera:\n  source: replay\nmodel:\n  path: model.safetensors\n  calibration: cal.yaml\n' >noname.yaml
expect_error "missing required key" noname.yaml "^maad: noname.yaml:[0-9]+:[0-9]+: .*camera.name"

sed 's/model.safetensors/missing.safetensors/' good.yaml >nomodel.yaml
expect_error "missing model file" nomodel.yaml "model.path: .*missing.safetensors"

sed 's/cal.yaml/other.yaml/' good.yaml >othercal.yaml
expect_error "calibration of another model refused" othercal.yaml \
    "model.calibration: .*calibrate again for this model"

# A colour camera cannot feed the mono model: refused, not every frame
# published uninspected after READY.
sed 's/^  source: replay$/  source: replay\n  pixel_format: RGB8/' good.yaml >colour.yaml
expect_error "colour camera with a mono model refused" colour.yaml \
    "camera.pixel_format RGB8 gives colour frames, but the model .* is mono"

echo "not: [a calibration" >broken.yaml
sed 's/cal.yaml/broken.yaml/' good.yaml >brokencal.yaml
expect_error "unreadable calibration refused" brokencal.yaml "model.calibration: "

# The daemon itself refuses the same file before READY, without hanging.
timeout 20 "$MAAD" --config othercal.yaml >run.log 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "calibrate again" run.log &&
    ! grep -q "ready" run.log; then
    ok "maad --config exits non-zero before ready"
else
    fail "maad --config with a bad calibration" "exit $rc: $(cat run.log)"
fi

check "--version" bash -c "'$MAAD' --version | grep -qE '^maad [0-9]'"
check "--help" bash -c "'$MAAD' --help | grep -q -- '--check-config'"
"$MAAD" --bogus >/dev/null 2>&1
[ $? -eq 2 ] && ok "unknown option: usage, exit 2" || fail "unknown option"

e2e_summary

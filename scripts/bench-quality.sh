#!/usr/bin/env bash
# Quality benchmark (issue 3): the default synthetic set, a model trained on
# its good parts, calibrated at gamma = 3, evaluated (the report also gives
# gamma = 0).  On a GPU the paper's setting (S=256, default widths); on a CPU
# a smaller model that fits a time budget.  Not part of `make test`.
#
#   scripts/bench-quality.sh [OUTDIR]
#   env: VIEW (groove), ITERS, SIZE, GBASE, DBASE, BATCH, PIXEL_L1, AUGMENT, DEVICE
set -eu
cd "$(dirname "$0")/.."
out=${1:-build/quality}
PY=${PYTHON:-/usr/bin/python3}
device=${DEVICE:-$($PY -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
if [ "$device" = cuda ]; then
    : "${SIZE:=256}" "${GBASE:=16}" "${DBASE:=64}" "${BATCH:=32}" "${ITERS:=3000}"
else
    : "${SIZE:=64}" "${GBASE:=8}" "${DBASE:=16}" "${BATCH:=16}" "${ITERS:=3000}"
fi
: "${VIEW:=groove}" "${PIXEL_L1:=1}" "${AUGMENT:=d4}"
mkdir -p "$out"
make --no-print-directory all >/dev/null
echo "== data: gen_synth.py --view $VIEW (defaults: 200 train good, 50 test good, 10 per defect type, 256 px)"
[ -d "$out/data" ] || $PY scripts/gen_synth.py --out "$out/data" --view "$VIEW" --seed 0 >/dev/null
echo "== train: S=$SIZE g_base=$GBASE d_base=$DBASE batch=$BATCH iters=$ITERS pixel_l1=$PIXEL_L1 augment=$AUGMENT on $device"
start=$(date +%s)
$PY scripts/train.py --data "$out/data" --out "$out/model.safetensors" --size "$SIZE" \
    --g-base "$GBASE" --d-base "$DBASE" --batch "$BATCH" --iters "$ITERS" --pixel-l1 "$PIXEL_L1" --augment "$AUGMENT" \
    --device "$device" --workdir "$out/train" --ckpt-every 500 2>"$out/train.log"
echo "   training took $(( $(date +%s) - start )) s"
echo "== calibrate on train/good, gamma 3"
build/maa calibrate --model "$out/model.safetensors" --images "$out/data/train/good" \
    --out "$out/calibration.yaml" --gamma 3
echo "== eval on test/"
build/maa eval --model "$out/model.safetensors" --calibration "$out/calibration.yaml" \
    --data "$out/data" --json "$out/report.json" --plots "$out/plots"

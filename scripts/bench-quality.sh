#!/usr/bin/env bash
# Quality benchmark (docs/quality.md): a synthetic view (scripts/gen_synth.py),
# a model trained on its good training parts with train.py's defaults (a
# fifth of them held out), calibrated on the held-out parts, evaluated on
# the unseen test parts.  Prints each decision rule beside the paper's
# (score alone) and the issue's targets, met or missed.  Not part of
# `make test`.  An existing OUTDIR/model.safetensors is evaluated again
# without training.
#
#   scripts/bench-quality.sh [OUTDIR]
#   env: VIEW (groove|cylinder|hook), ITERS, SIZE, GBASE, DBASE, BATCH,
#        AUGMENT, GAMMA (3), DEVICE, SEED (data, 0), TRAIN_ARGS (more
#        train.py options, e.g. "--paper" for the paper's literal loss)
set -eu
cd "$(dirname "$0")/.."
out=${1:-build/quality}
PY=${PYTHON:-/usr/bin/python3}
device=${DEVICE:-$($PY -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
if [ "$device" = cuda ]; then
    : "${SIZE:=256}" "${GBASE:=16}" "${DBASE:=64}" "${BATCH:=32}" "${ITERS:=3000}"
else
    : "${SIZE:=128}" "${GBASE:=8}" "${DBASE:=16}" "${BATCH:=16}" "${ITERS:=2500}"
fi
: "${VIEW:=groove}" "${AUGMENT:=d4}" "${GAMMA:=3}" "${SEED:=0}" "${TRAIN_ARGS:=}"
mkdir -p "$out"
make --no-print-directory all >/dev/null
echo "== data: gen_synth.py --view $VIEW --seed $SEED (200 train good, 50 test good, 10 per defect type, 256 px)"
[ -d "$out/data" ] || $PY scripts/gen_synth.py --out "$out/data" --view "$VIEW" --seed "$SEED" >/dev/null
collapsed=no
if [ -s "$out/model.safetensors" ]; then
    echo "== train: $out/model.safetensors exists; evaluating it again"
else
    echo "== train: S=$SIZE g_base=$GBASE d_base=$DBASE batch=$BATCH iters=$ITERS augment=$AUGMENT $TRAIN_ARGS on $device"
    start=$(date +%s)
    rc=0
    # shellcheck disable=SC2086 # TRAIN_ARGS is a list of options
    $PY scripts/train.py --data "$out/data" --out "$out/model.safetensors" --size "$SIZE" \
        --g-base "$GBASE" --d-base "$DBASE" --batch "$BATCH" --iters "$ITERS" \
        --augment "$AUGMENT" --device "$device" $TRAIN_ARGS \
        --workdir "$out/train" --ckpt-every 500 2>"$out/train.log" || rc=$?
    echo "   training took $(( $(date +%s) - start )) s"
    if [ "$rc" -eq 3 ]; then
        collapsed=yes
        grep 'WARNING' "$out/train.log" | sed 's/^/   /'
    elif [ "$rc" -ne 0 ]; then
        tail -n 3 "$out/train.log" >&2
        exit "$rc"
    fi
fi
grep -q COLLAPSE "$out/train.log" 2>/dev/null && collapsed=yes
echo "== calibrate on the held-out good parts, gamma $GAMMA"
build/maa calibrate --model "$out/model.safetensors" --out "$out/calibration.yaml" --gamma "$GAMMA"
echo "== eval on test/ (unseen good and defective parts)"
build/maa eval --model "$out/model.safetensors" --calibration "$out/calibration.yaml" \
    --data "$out/data" --json "$out/report.json" --plots "$out/plots"
echo "== targets"
$PY - "$out/report.json" "$collapsed" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
e, s = r["rules"]["either"], r["rules"]["score"]
rows = [("rule either: image AUROC >= 0.98", e["image_auroc"], e["image_auroc"] >= 0.98),
        ("rule either: recall >= 0.95", e["recall"], e["recall"] >= 0.95),
        ("rule either: good rejected <= 1%", e["false_reject_rate"], e["false_reject_rate"] <= 0.01),
        ("mask: pixel AUROC >= 0.97", r["pixel_auroc"], r["pixel_auroc"] >= 0.97),
        ("mask: AUPRO (0.3) >= 0.90", r["aupro"], r["aupro"] >= 0.90),
        ("no collapse warning", sys.argv[2], sys.argv[2] == "no")]
for what, v, ok in rows:
    print(f"  {'met   ' if ok else 'MISSED'} {what}: {v if isinstance(v, str) else round(v, 4)}")
ratio = f"{e['recall'] / s['recall']:.2f}" if s["recall"] else "n/a (score rejects none)"
print(f"  the paper's rule (score alone) beside it: AUROC {s['image_auroc']:.4f}, "
      f"recall {s['recall']:.4f}, good rejected {100 * s['false_reject_rate']:.1f}%; "
      f"recall ratio either/score {ratio}")
PYEOF

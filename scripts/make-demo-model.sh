#!/usr/bin/env bash
# Makes models/groove, the model `make demo` ships with, from a
# scripts/bench-quality.sh run on the groove view: the trained model as F16,
# its split, a calibration on the held-out good parts, the `maa eval` report
# on the unseen test parts, and SHA256SUMS.  Not part of `make test`
# (training takes about 40 minutes on two cores); tests/test_shipped_model.py
# checks what it made.
#
#   scripts/make-demo-model.sh [BENCH_OUTDIR]   (default build/q2-groove)
set -eu
cd "$(dirname "$0")/.."
src=${1:-build/q2-groove}
dst=models/groove
PY=${PYTHON:-/usr/bin/python3}
[ -s "$src/model.safetensors" ] || VIEW=groove scripts/bench-quality.sh "$src"
mkdir -p "$dst"
$PY scripts/export_model.py --ckpt "$src/train/ckpt.pt" --out "$dst/model.safetensors" --dtype f16
# The split names the images by content; its folder is where
# tests/test_shipped_model.py and the README regenerate them.
$PY - "$src/model.split.json" "$dst/model.split.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
s["images"] = "data/train/good"
json.dump(s, open(sys.argv[2], "w"), indent=1)
open(sys.argv[2], "a").write("\n")
EOF
cp "$src/train/train.json" "$dst/train.json"
# Calibrated on the held-out parts: the split's images are those of the
# bench run's data folder.
mkdir -p "$src/held-out"
$PY - "$dst/model.split.json" "$src/data/train/good" "$src/held-out" <<'EOF'
import json, os, shutil, sys
for e in json.load(open(sys.argv[1]))["held_out"]:
    shutil.copy(os.path.join(sys.argv[2], e["file"]), sys.argv[3])
EOF
build/maa calibrate --model "$dst/model.safetensors" --split "$dst/model.split.json" \
    --images "$src/held-out" --out "$dst/calibration.yaml" --plot "$dst/calibration.png" \
    --backend cpu --gamma 3 | tee "$dst/calibrate.txt"
build/maa eval --model "$dst/model.safetensors" --calibration "$dst/calibration.yaml" \
    --data "$src/data" --backend cpu --json "$dst/report.json" | tee "$dst/eval.txt"
(cd "$dst" && sha256sum model.safetensors calibration.yaml model.split.json >SHA256SUMS)
ls -l "$dst"

#!/usr/bin/env bash
# The line engineer's workflow end to end, tiny: generate a synthetic set ->
# train (S=64, small widths, 200 iterations) -> calibrate -> eval -> infer with
# the calibration; every step must produce well-formed output, and the
# calibration must bind to its model.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
MAA=build/maa
tmp=$(mktemp -d /tmp/maa-e2e-pipeline-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

$PY scripts/gen_synth.py --out "$tmp/data" --size 64 --train-good 40 --test-good 10 \
    --test-defect 3 --seed 5 >"$tmp/gen.log" 2>&1
check "generate: MVTec layout" test -d "$tmp/data/train/good" -a -d "$tmp/data/test/good" \
    -a -d "$tmp/data/ground_truth"

$PY scripts/train.py --data "$tmp/data" --out "$tmp/m.safetensors" --size 64 --g-base 4 --d-base 8 \
    --iters 200 --batch 8 --device cpu --workdir "$tmp/work" >"$tmp/train.log" 2>&1
check "train: model, loss CSV and curve" test -s "$tmp/m.safetensors" -a -s "$tmp/work/loss.csv" \
    -a -s "$tmp/work/loss.png"
check "train: the model loads in C" $MAA model-info "$tmp/m.safetensors"

$MAA calibrate --model "$tmp/m.safetensors" --images "$tmp/data/train/good" --out "$tmp/c.yaml" \
    --backend auto >"$tmp/cal.log" 2>&1
check "calibrate: file written" grep -q '^threshold:' "$tmp/c.yaml"

$MAA eval --model "$tmp/m.safetensors" --calibration "$tmp/c.yaml" --data "$tmp/data" \
    --json "$tmp/report.json" --plots "$tmp/plots" >"$tmp/eval.log" 2>&1
check "eval: report with the paper's metrics" $PY - "$tmp/report.json" <<'PYEOF'
import json, math, sys
r = json.load(open(sys.argv[1]))
keys = ("image_auroc", "pixel_auroc", "accuracy", "recall", "precision", "f1", "per_type")
assert all(k in r for k in keys), r.keys()
assert 0 <= r["image_auroc"] <= 1 and 0 <= r["pixel_auroc"] <= 1
assert len(r["per_type"]) == 6, r["per_type"].keys()   # good + 5 defect types
assert r["n_good"] == 10 and r["n_defective"] == 15
PYEOF
check "eval: Table III distances (L1, Markov+L1) as PyTorch computes them, and their AUROCs" \
    $PY - "$tmp/report.json" "$tmp/m.safetensors" <<'PYEOF'
import json, sys
sys.path.insert(0, "scripts")
import numpy as np, torch
from sklearn.metrics import roc_auc_score
import maa_io, train
r = json.load(open(sys.argv[1]))
model = maa_io.load_model(sys.argv[2]).double()
cfg = model.config
imgs = r["images"]
x = torch.from_numpy(np.stack([train.load_image(i["image"], cfg["image_size"], cfg["channels"])
                               for i in imgs])).double()
with torch.no_grad():
    rec, fx, fr = model(x)
l1 = (x - rec).abs().flatten(1).mean(1).numpy()
ml1 = (fx - fr).abs().flatten(1).mean(1).numpy()
got_l1 = np.array([i["l1"] for i in imgs])
got_ml1 = np.array([i["markov_l1"] for i in imgs])
assert np.allclose(got_l1, l1, rtol=1e-4, atol=1e-6), abs(got_l1 - l1).max()
assert np.allclose(got_ml1, ml1, rtol=1e-4, atol=1e-6), abs(got_ml1 - ml1).max()
lab = np.array([i["defective"] for i in imgs])
by = r["image_auroc_by_distance"]
# maa eval ranks the distances as float32, as it does the scores.
want = [roc_auc_score(lab, v.astype(np.float32)) for v in (got_l1, got_ml1)]
assert abs(by["l1"] - want[0]) < 1e-9 and abs(by["markov_l1"] - want[1]) < 1e-9, (by, want)
assert by["fmd"] == r["image_auroc"], by
PYEOF
check "eval: plots" test -s "$tmp/plots/roc.png" -a -s "$tmp/plots/scores.png" -a -s "$tmp/plots/worst.png"

$MAA infer --model "$tmp/m.safetensors" --calibration "$tmp/c.yaml" "$tmp"/data/test/*/*.png \
    >"$tmp/infer.jsonl" 2>"$tmp/infer.err"
check "infer: one verdict per test image" $PY - "$tmp/infer.jsonl" 25 <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == int(sys.argv[2]), len(rows)
for r in rows:
    assert r["verdict"] in ("pass", "reject") and (r["verdict"] == "reject") == (r["score"] > r["threshold"])
PYEOF
check "infer and eval agree on the scores" $PY - "$tmp/infer.jsonl" "$tmp/report.json" <<'PYEOF'
import json, sys
inf = {json.loads(l)["image"].split("/data/")[1]: json.loads(l)["score"] for l in open(sys.argv[1])}
ev = {i["image"].split("/data/")[1]: i["score"] for i in json.load(open(sys.argv[2]))["images"]}
assert inf.keys() == ev.keys()
assert all(abs(inf[k] - ev[k]) <= 1e-9 * max(1, abs(ev[k])) for k in inf), "scores differ"
PYEOF

$PY scripts/export_model.py --random --size 64 --g-base 4 --d-base 8 --out "$tmp/other.safetensors" \
    >/dev/null 2>&1
$MAA infer --model "$tmp/other.safetensors" --calibration "$tmp/c.yaml" "$tmp"/data/test/good/*.png \
    >/dev/null 2>"$tmp/other.err"
check "a calibration for another model is refused" grep -q "calibration was made for the model" "$tmp/other.err"

if [ "$fail" -gt 0 ]; then
    for log in "$tmp"/*.log "$tmp"/*.err; do
        [ -s "$log" ] && { echo "--- $log"; tail -n 5 "$log"; }
    done
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# The line engineer's workflow end to end, tiny: generate a synthetic set ->
# train (S=64, small widths, 200 iterations, a fifth of the good parts held
# out) -> calibrate on the held-out parts -> eval -> infer with the
# calibration under each decision rule; every step must produce well-formed
# output, and the calibration must bind to its model.
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

$PY scripts/gen_synth.py --out "$tmp/data" --size 64 --train-good 110 --test-good 10 \
    --test-defect 3 --seed 5 >"$tmp/gen.log" 2>&1
check "generate: MVTec layout" test -d "$tmp/data/train/good" -a -d "$tmp/data/test/good" \
    -a -d "$tmp/data/ground_truth"

$PY scripts/train.py --data "$tmp/data" --out "$tmp/m.safetensors" --size 64 --g-base 4 --d-base 8 \
    --iters 200 --batch 8 --device cpu --workdir "$tmp/work" >"$tmp/train.log" 2>&1
check "train: model, loss CSV and curve" test -s "$tmp/m.safetensors" -a -s "$tmp/work/loss.csv" \
    -a -s "$tmp/work/loss.png"
check "train: the model loads in C" $MAA model-info "$tmp/m.safetensors"

check "train: the split holds out 22 of the 110 good parts, each named once" \
    $PY - "$tmp/m.split.json" "$tmp/data/train/good" <<'PYEOF'
import json, os, sys
s = json.load(open(sys.argv[1]))
held = [e["file"] for e in s["held_out"]]
trained = [e["file"] for e in s["trained"]]
assert len(held) == 22 and not set(held) & set(trained), (len(held), set(held) & set(trained))
assert sorted(held + trained) == sorted(os.listdir(sys.argv[2]))
assert os.path.samefile(s["images"], sys.argv[2])
PYEOF

$MAA calibrate --model "$tmp/m.safetensors" --out "$tmp/c.yaml" --backend auto >"$tmp/cal.log" 2>&1
check "calibrate: file written from the 22 held-out parts, no warning" \
    grep -q "on 22 good images (the held-out images of $tmp/m.split.json)" "$tmp/cal.log"
check "calibrate on held-out parts: no trained-on warning" eval '! grep -q "used to train" "$tmp/cal.log"'
$MAA calibrate --model "$tmp/m.safetensors" --images "$tmp/data/train/good" \
    --out "$tmp/c-trained.yaml" --backend auto >"$tmp/cal-trained.log" 2>&1
check "calibrate on the training images warns that 88 of them were trained on" \
    grep -q "warning: 88 of the 110 images .* were used to train this model" "$tmp/cal-trained.log"

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
for name, rule in r["rules"].items():
    assert name in ("either", "score", "mask") and 0 <= rule["image_auroc"] <= 1, (name, rule)
    assert rule["recall"] == rule["defective_rejected"] / 15, rule
    assert rule["false_reject_rate"] == rule["good_rejected"] / 10, rule
assert r["rules"]["score"]["image_auroc"] == r["image_auroc"]
# Per image: the verdict of the report's rule is its evidence, and the mask
# evidence is exactly a region score above T_pix.
for i in r["images"]:
    assert ("mask" in i["evidence"]) == (i["mask_score"] > r["pixel_threshold"]), i
    assert ("score" in i["evidence"]) == (i["score"] > r["threshold"]), i
    assert (i["verdict"] == "reject") == bool(i["evidence"]), i
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
check "infer: one verdict per test image, rejected exactly on either evidence" \
    $PY - "$tmp/infer.jsonl" 25 <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == int(sys.argv[2]), len(rows)
for r in rows:
    assert r["rule"] == "either" and r["verdict"] in ("pass", "reject")
    score, mask = r["score"] > r["threshold"], r["defects_total"] > 0
    assert (r["verdict"] == "reject") == (score or mask), r
    assert r["evidence"] == [e for e, on in (("score", score), ("mask", mask)) if on], r
PYEOF
$MAA infer --model "$tmp/m.safetensors" --calibration "$tmp/c.yaml" --rule score \
    "$tmp"/data/test/*/*.png >"$tmp/infer-score.jsonl" 2>>"$tmp/infer.err"
check "infer --rule score: the paper's verdicts (reject exactly when score > T)" \
    $PY - "$tmp/infer-score.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 25
assert all((r["verdict"] == "reject") == (r["score"] > r["threshold"]) for r in rows)
PYEOF
# A constructed case: T above every score, T_pix at 0, so that every part
# holds a mask region while its FMD is below T.
$PY - "$tmp/c.yaml" "$tmp/c-mask.yaml" <<'PYEOF'
import sys
lines = open(sys.argv[1]).read().splitlines()
val = {l.split(":")[0]: l.split(": ", 1)[1] for l in lines if l and not l.startswith("#")}
mu, sigma = float(val["mu"]), float(val["sigma"])
set_ = {"gamma": "1000000", "threshold": repr(mu + 1e6 * sigma), "pixel_threshold": "0"}
out = [l.split(":")[0] + ": " + set_[l.split(":")[0]] if l.split(":")[0] in set_ else l
       for l in lines]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PYEOF
for rule in either score mask; do
    $MAA infer --model "$tmp/m.safetensors" --calibration "$tmp/c-mask.yaml" --rule $rule \
        "$tmp"/data/test/*/*.png >"$tmp/infer-mask-$rule.jsonl" 2>>"$tmp/infer.err"
done
check "rule either rejects a part with a mask region and its score below T; score passes it" \
    $PY - "$tmp" <<'PYEOF'
import json, sys
rows = {k: [json.loads(l) for l in open(f"{sys.argv[1]}/infer-mask-{k}.jsonl")]
        for k in ("either", "score", "mask")}
for e, s, m in zip(rows["either"], rows["score"], rows["mask"]):
    assert e["score"] < e["threshold"] and e["defects_total"] > 0 and e["evidence"] == ["mask"], e
    assert e["verdict"] == "reject" and e["reason"] == "defect region in the mask", e
    assert m["verdict"] == "reject" and s["verdict"] == "pass", (m, s)
    assert "ignores the mask region" in s["reason"], s
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

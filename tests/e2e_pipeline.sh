#!/usr/bin/env bash
# The line engineer's workflow end to end, tiny: generate a synthetic set ->
# train (S=64, small widths, 200 iterations, a fifth of the good parts held
# out) -> calibrate on the held-out parts -> eval -> infer with the
# calibration under each decision rule; every step must produce well-formed
# output, and the calibration must bind to its model.  Then the retraining
# loop's deployment check: a candidate trained briefly, `maa compare` against
# the first model (its numbers are maa eval's, its status the criterion's)
# and its refusals.
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

# A mono model: for this refusal any other model does; maa compare's camera
# check below needs a mono one.
$PY scripts/export_model.py --random --size 64 --channels 1 --g-base 4 --d-base 8 \
    --out "$tmp/other.safetensors" >/dev/null 2>&1
$MAA infer --model "$tmp/other.safetensors" --calibration "$tmp/c.yaml" "$tmp"/data/test/good/*.png \
    >/dev/null 2>"$tmp/other.err"
check "a calibration for another model is refused" grep -q "calibration was made for the model" "$tmp/other.err"

# maa compare: the model above runs; a candidate retrained briefly (another
# seed, so another split) is calibrated on its own held-out parts.
$PY scripts/train.py --data "$tmp/data" --out "$tmp/cand.safetensors" --size 64 --g-base 4 \
    --d-base 8 --iters 30 --batch 8 --device cpu --seed 1 --workdir "$tmp/work-cand" \
    >"$tmp/train-cand.log" 2>&1
$MAA calibrate --model "$tmp/cand.safetensors" --out "$tmp/cc.yaml" >"$tmp/cal-cand.log" 2>&1
$MAA eval --model "$tmp/cand.safetensors" --calibration "$tmp/cc.yaml" --data "$tmp/data" \
    --json "$tmp/report-cand.json" >"$tmp/eval-cand.log" 2>&1
# The line's camera: Mono8 gray frames, which a 3-channel model takes; its
# configuration names the running model, calibration and rule.
printf 'camera:\n  name: cam0\nmodel:\n  path: m.safetensors\n  calibration: c.yaml\n' \
    >"$tmp/mono.yaml"
compare() { # OUT_PREFIX ARGS...: runs maa compare, keeps its stdout, stderr and status
    local out=$1; shift
    $MAA compare "$@" >"$out.out" 2>"$out.err"
    echo $? >"$out.rc"
}
run=(--model "$tmp/m.safetensors" --calibration "$tmp/c.yaml")
cand=(--candidate "$tmp/cand.safetensors" --candidate-calibration "$tmp/cc.yaml")
compare "$tmp/cmp" --camera "$tmp/mono.yaml" "${cand[@]}" --data "$tmp/data" \
    --json "$tmp/cmp.json" --plots "$tmp/cmp-plots"
check "compare: both models' numbers are maa eval's on each alone, the status the default criterion's" \
    $PY - "$tmp" <<'PYEOF'
import json, sys
t = sys.argv[1]
run, cand = (json.load(open(f"{t}/{f}")) for f in ("report.json", "report-cand.json"))
cmp = json.load(open(f"{t}/cmp.json"))
rc, out = int(open(f"{t}/cmp.rc").read()), open(f"{t}/cmp.out").read().splitlines()
assert cmp["rule"] == "either" and cmp["n_good"] == 10 and cmp["n_defective"] == 15, cmp["rule"]
assert cmp["running"]["rules"] == run["rules"], (cmp["running"]["rules"], run["rules"])
assert cmp["candidate"]["rules"] == cand["rules"], (cmp["candidate"]["rules"], cand["rules"])
assert cmp["running"]["model"].endswith("/m.safetensors"), cmp["running"]  # from --camera
r, c = run["rules"]["either"], cand["rules"]["either"]
more_rejected = c["good_rejected"] > r["good_rejected"]
fewer_found = c["defective_rejected"] < r["defective_rejected"]
want = 1 if more_rejected or fewer_found else 0
assert rc == want, (rc, want, r, c)
assert cmp["recommendation"] == ("keep" if want else "deploy") and len(cmp["reasons"]) == \
    more_rejected + fewer_found, cmp["reasons"]
assert out[-1].startswith("recommendation: " + ("keep the running model: " if want else
                                                "deploy the candidate: ")), out[-1]
# The disagreements are the parts whose verdicts differ in the two eval reports.
verdict = lambda rep: {i["image"]: i["verdict"] for i in rep["images"]}
vr, vc = verdict(run), verdict(cand)
differ = {k for k in vr if vr[k] != vc[k]}
assert {d["image"] for d in cmp["disagreements"]} == differ, (cmp["disagreements"], differ)
for d in cmp["disagreements"]:
    assert d["right"] == ("candidate" if (vc[d["image"]] == "reject") == d["defective"]
                          else "running"), d
print(f"running either: {r['good_rejected']}/10 good rejected, {r['defective_rejected']}/15 found;"
      f" candidate {c['good_rejected']}/10, {c['defective_rejected']}/15; "
      f"{len(differ)} disagreements; exit {rc}")
PYEOF
check "compare: the table, then the recommendation line" \
    grep -q "^  good rejected .*%.*%.*pts.*at most +0.00 pts" "$tmp/cmp.out"
check "compare --plots: score distributions and the contact sheet of the disagreements" \
    eval 'test -s "$tmp/cmp-plots/scores.png" && { ! grep -q "disagree on" "$tmp/cmp.out" ||
        test -s "$tmp/cmp-plots/disagreements.png"; }'

# The criterion both ways, at its boundary: the candidate's changes exactly
# allowed deploy it; half a part less allowed keeps the running model, for
# each criterion alone.
read -r dgood dgood_less drecall drecall_more < <($PY - "$tmp" <<'PYEOF'
import json, sys
t = sys.argv[1]
r, c = (json.load(open(f"{t}/{f}"))["rules"]["either"] for f in ("report.json", "report-cand.json"))
dg = (c["good_rejected"] - r["good_rejected"]) / 10
dr = (c["defective_rejected"] - r["defective_rejected"]) / 15
print(dg, dg - 0.5 / 10, dr, dr + 0.5 / 15)
PYEOF
)
compare "$tmp/cmp-at" "${run[@]}" "${cand[@]}" --data "$tmp/data" \
    --max-good-rejected-increase "$dgood" \
    --min-recall-change "$drecall"
check "compare: changes exactly at the criterion deploy the candidate (exit 0)" \
    eval '[ "$(cat "$tmp/cmp-at.rc")" = 0 ] && tail -n 1 "$tmp/cmp-at.out" | grep -q "^recommendation: deploy the candidate: it rejects .* of the 10 good parts"'
compare "$tmp/cmp-frr" "${run[@]}" "${cand[@]}" --data "$tmp/data" \
    --max-good-rejected-increase "$dgood_less" \
    --min-recall-change "$drecall"
check "compare: one good part too many rejected keeps the running model (exit 1), saying why" \
    eval '[ "$(cat "$tmp/cmp-frr.rc")" = 1 ] && tail -n 1 "$tmp/cmp-frr.out" | grep -q "^recommendation: keep the running model: the candidate rejects .* of the 10 good parts (.* pts; at most .* allowed)$"'
compare "$tmp/cmp-recall" "${run[@]}" "${cand[@]}" --data "$tmp/data" \
    --max-good-rejected-increase "$dgood" \
    --min-recall-change "$drecall_more"
check "compare: one defective part too few found keeps the running model (exit 1), saying why" \
    eval '[ "$(cat "$tmp/cmp-recall.rc")" = 1 ] && tail -n 1 "$tmp/cmp-recall.out" | grep -q "^recommendation: keep the running model: the candidate finds .* of the 15 defective parts (recall .*; at least .* required)$"'

# Refusals (exit 2, nothing judged).
compare "$tmp/cmp-foreign" "${run[@]}" --candidate "$tmp/cand.safetensors" \
    --candidate-calibration "$tmp/c.yaml" --data "$tmp/data"
check "compare refuses a candidate with the running model's calibration" \
    eval '[ "$(cat "$tmp/cmp-foreign.rc")" = 2 ] && grep -q "c.yaml: calibration was made for the model with sha256 .*, but .*cand.safetensors has sha256" "$tmp/cmp-foreign.err" && grep -q "^maa compare: refused: the candidate model .*cand.safetensors with calibration .*c.yaml" "$tmp/cmp-foreign.err"'
$PY - "$tmp/c.yaml" "$tmp/other.safetensors" "$tmp/other.yaml" <<'PYEOF'
import hashlib, re, sys
sha = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
text = re.sub(r"(?m)^model_sha256: .*$", "model_sha256: " + sha, open(sys.argv[1]).read())
open(sys.argv[3], "w").write(text)
PYEOF
sed 's/^  name: cam0$/  name: cam0\n  pixel_format: RGB8/' "$tmp/mono.yaml" >"$tmp/rgb.yaml"
compare "$tmp/cmp-mono" --camera "$tmp/rgb.yaml" --candidate "$tmp/other.safetensors" \
    --candidate-calibration "$tmp/other.yaml" --data "$tmp/data"
check "compare refuses a mono candidate for an RGB8 camera (--camera), in maad's words" \
    eval '[ "$(cat "$tmp/cmp-mono.rc")" = 2 ] && grep -q "^maa compare: refused: camera.pixel_format RGB8 gives colour frames, but the model .*other.safetensors is mono (1 channel); use Mono8 or a 3-channel model (--camera .*rgb.yaml)$" "$tmp/cmp-mono.err"'
# A set whose good parts include three the candidate trained on, and one
# whose good parts include two it held out.
$PY - "$tmp" <<'PYEOF'
import json, os, shutil, sys
t = sys.argv[1]
split = json.load(open(f"{t}/cand.split.json"))
for name, key, k in (("seen", "trained", 3), ("held", "held_out", 2)):
    shutil.copytree(f"{t}/data/test", f"{t}/{name}/test")
    for e in split[key][:k]:
        shutil.copy(os.path.join(split["images"], e["file"]), f"{t}/{name}/test/good/x{e['file']}")
PYEOF
compare "$tmp/cmp-seen" "${run[@]}" "${cand[@]}" --data "$tmp/seen"
check "compare refuses a candidate trained on some of the good parts, by content (its split file)" \
    eval '[ "$(cat "$tmp/cmp-seen.rc")" = 2 ] && grep -q "^maa compare: refused: the candidate .*cand.safetensors was trained on 3 of the 28 parts (e.g. .*/seen/test/good/x.*; .*cand.split.json)" "$tmp/cmp-seen.err" && [ ! -s "$tmp/cmp-seen.out" ]'
compare "$tmp/cmp-held" "${run[@]}" "${cand[@]}" --data "$tmp/held"
check "compare judges parts the candidate held out, with a warning" \
    eval 'grep -q "^maa compare: warning: 2 of the parts (e.g. .*/held/test/good/x.*) are ones the candidate held out" "$tmp/cmp-held.err" && grep -q "^recommendation: " "$tmp/cmp-held.out"'

if [ "$fail" -gt 0 ]; then
    for log in "$tmp"/*.log "$tmp"/*.err; do
        [ -s "$log" ] && { echo "--- $log"; tail -n 5 "$log"; }
    done
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

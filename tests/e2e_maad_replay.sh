#!/usr/bin/env bash
# e2e_maad_replay — the replay source over a small labelled synthetic set
# (every third image with a scratch) gives, frame by frame, the score,
# verdict, rule, evidence, reason and defect regions that `maa infer` gives
# for the same files, each verdict agrees with the evidence it carries
# (e2e_judged), and the regions' camera-pixel boxes are the model-pixel boxes
# scaled to the frame (128 x 96 frames, S = 64).
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
e2e_images labelled 18 5 3
n=18
cat >maad.yaml <<EOC
camera:
  name: replay
  source: replay
replay:
  dir: labelled
  fps: 30
  loop: false
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
  batch_max: 3
publish:
  endpoint: tcp://127.0.0.1:5602
EOC
"$MAA" infer --model model.safetensors --calibration cal.yaml --backend ref \
    labelled/*.pgm >infer.jsonl 2>infer.err
[ "$(wc -l <infer.jsonl)" -eq "$n" ] && ok "maa infer scores the set" ||
    fail "maa infer" "$(cat infer.err)"

e2e_subscribe tcp://127.0.0.1:5602 verdicts.jsonl
e2e_maad_up maad.yaml maad.log
e2e_wait_file verdicts.jsonl.ready 10 || fail "no heartbeat"
k=300
while [ "$(wc -l <verdicts.jsonl)" -lt "$n" ] && [ "$k" -gt 0 ]; do
    sleep 0.1
    k=$((k - 1))
done
e2e_stop "$E2E_MAAD"
rc=$?
e2e_stop_sub verdicts.jsonl maad.log
[ "$rc" -eq 0 ] && ok "maad exits 0" || fail "maad exit $rc" "$(tail -3 maad.log)"
if e2e_final maad.log; then
    [ "$F_captured" -eq "$n" ] && ok "maad captured the $n images" ||
        fail "maad captured $F_captured of $n images"
    check "one verdict per replayed image" e2e_verdicts verdicts.jsonl "$n"
else
    fail "no final stats line" "$(tail -5 maad.log)"
fi

check "scores, verdicts and regions equal maa infer's; camera boxes scaled" \
    "$PY" - infer.jsonl verdicts.jsonl <<'PYEOF'
import json, math, sys
inf = [json.loads(l) for l in open(sys.argv[1])]
ver = [json.loads(l) for l in open(sys.argv[2])]
assert len(ver) == len(inf), "%d verdicts, %d images" % (len(ver), len(inf))
S, W, H = 64, 128, 96
regions = 0
for i, (a, b) in enumerate(zip(inf, ver)):
    assert b["frame_id"] == i + 1, "frame %d has id %s" % (i, b["frame_id"])
    assert math.isclose(a["score"], b["score"], rel_tol=1e-9, abs_tol=1e-12), \
        "%s: score %r vs maad %r" % (a["image"], a["score"], b["score"])
    assert a["verdict"] == b["verdict"], "%s: verdict %s vs %s" % (a["image"], a["verdict"], b["verdict"])
    assert abs(a["threshold"] - b["threshold"]) <= 1e-12 * abs(a["threshold"])
    for k in ("rule", "evidence", "reason"):
        assert a[k] == b[k], "%s: %s %s vs maad %s" % (a["image"], k, a[k], b[k])
    assert math.isclose(a["mask_peak"], b["mask_peak"], rel_tol=1e-9, abs_tol=1e-12)
    assert a["mask_threshold"] == b["mask_threshold"]
    ra = [(r["x"], r["y"], r["w"], r["h"], r["area"]) for r in a["defects"]]
    rb = [(r["x"], r["y"], r["w"], r["h"], r["area"]) for r in b["defects"]]
    assert ra == rb, "%s: regions %s vs %s" % (a["image"], ra, rb)
    for r in b["defects"]:
        regions += 1
        assert r["cx"] == r["x"] * W // S and r["cy"] == r["y"] * H // S, r
        assert r["cx"] + r["cw"] == -(-(r["x"] + r["w"]) * W // S), r
        assert r["cy"] + r["ch"] == -(-(r["y"] + r["h"]) * H // S), r
    assert b["mask"]["format"] == "png" and b["mask"]["width"] == S
assert regions > 0, "no defect region in the set: the box check checked nothing"
PYEOF
check "every verdict agrees with the score, threshold and evidence it carries" \
    e2e_judged verdicts.jsonl
e2e_summary

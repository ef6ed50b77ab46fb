#!/usr/bin/env bash
# e2e_maad_protocol — docs/protocol.md's examples are messages maad sends.
# maad inspects the fake camera serving a set with scratches, behind an
# engine made slow (engine.test_delay_ms) with a short engine.max_age_ms, so
# that one run publishes judged rejects with defect regions and masks,
# passes, frames too old to judge, and heartbeats.  Then every JSON example
# in docs/protocol.md must have exactly the keys (recursively) and value
# types of a real message of its kind (a judged verdict, an uninspected one,
# a heartbeat), the doc must show all three, and its field tables must name
# exactly the fields maad sends (and every heartbeat counter).  The
# messages captured are left in build/tests/protocol-examples.md, in the
# doc's format, to copy over when the protocol changes.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
# Every third image with a scratch, as e2e_maad_replay: the model finds
# defect regions in some.
e2e_images labelled 18 5 3
e2e_fakecam labelled 25 DOC fakecam.log || { fail "maa fakecam" "$(cat fakecam.log.out)"; e2e_summary; exit 1; }
cat >maad.yaml <<EOC
camera:
  name: line1
  device_id: "$E2E_CAM_ID"
  packet_socket: false
  frame_rate: 25
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
  batch_max: 4
  # Each batch takes 300 ms longer: frames that wait for it longer than
  # 250 ms are published as too old, the younger ones are judged.
  test_delay_ms: 300
  max_age_ms: 250
publish:
  endpoint: tcp://127.0.0.1:5608
EOC
e2e_subscribe tcp://127.0.0.1:5608 verdicts.jsonl
e2e_maad_up maad.yaml maad.log
e2e_wait_file verdicts.jsonl.ready 10 || fail "no heartbeat"

# have: a reject with a defect region and its mask, a pass, a frame too old
# to judge, and three heartbeats.
have()
{
    "$PY" - verdicts.jsonl <<'PYEOF'
import json, sys
v = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
hb = [l for l in open(sys.argv[1] + ".hb") if l.strip()]
sys.exit(0 if any(m["verdict"] == "reject" and m["defects"] for m in v) and
         any(m["verdict"] == "pass" for m in v) and
         any(m["reason"].startswith("too old: ") for m in v) and len(hb) >= 3 else 1)
PYEOF
}
k=600
until have; do
    k=$((k - 1))
    [ "$k" -gt 0 ] || break
    sleep 0.1
done
[ "$k" -gt 0 ] && ok "a reject with a defect, a pass, a frame too old and heartbeats" ||
    fail "no reject with a defect, pass, frame too old and 3 heartbeats in 60 s" "$(tail -3 maad.log)"
e2e_stop "$E2E_MAAD"
rc=$?
e2e_stop "$E2E_CAM" 10
e2e_stop_sub verdicts.jsonl maad.log
[ "$rc" -eq 0 ] && ok "maad exits 0" || fail "maad exit $rc" "$(tail -3 maad.log)"
if e2e_final maad.log; then
    check "one verdict per captured frame, seq gap-free" e2e_verdicts verdicts.jsonl "$F_captured"
    [ "$F_too_old" -gt 0 ] && [ "$F_uninspected" -eq "$((F_too_old + F_overflow))" ] &&
        ok "frames too old counted ($F_too_old)" ||
        fail "too_old $F_too_old, overflow $F_overflow, uninspected $F_uninspected"
else
    fail "no final stats line" "$(tail -5 maad.log)"
fi
check "every verdict agrees with the score, threshold and evidence it carries" \
    e2e_judged verdicts.jsonl

mkdir -p "$E2E_ROOT/build/tests"
check "docs/protocol.md's examples and field tables are what maad sends" \
    "$PY" - verdicts.jsonl "$E2E_ROOT/docs/protocol.md" "$E2E_ROOT/build/tests/protocol-examples.md" <<'PYEOF'
import json, re, sys

verdicts = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
masks = [int(l) for l in open(sys.argv[1] + ".mask") if l.strip()]
beats = [json.loads(l) for l in open(sys.argv[1] + ".hb") if l.strip()]
doc = open(sys.argv[2]).read()
fresh = sys.argv[3]


def kind(m):
    if "t_ns" in m:
        return "heartbeat"
    return "uninspected verdict" if m.get("verdict") == "uninspected" else "judged verdict"


def shape(x):
    """The keys (recursively) and value types of x: what an example must
    share with a real message."""
    if isinstance(x, dict):
        return ("object", tuple(sorted((k, shape(v)) for k, v in x.items())))
    if isinstance(x, list):
        return ("array", tuple(sorted(set(shape(e) for e in x), key=repr)))
    return type(x).__name__


def differences(ex, m, path=""):
    """Where ex's shape differs from m's: keys on one side only, other
    types."""
    if isinstance(ex, dict) and isinstance(m, dict):
        out = ["%s%s only in the doc" % (path, k) for k in ex if k not in m]
        out += ["%s%s missing from the doc" % (path, k) for k in m if k not in ex]
        for k in ex:
            if k in m:
                out += differences(ex[k], m[k], path + k + ".")
        return out
    if isinstance(ex, list) and isinstance(m, list):
        return [] if shape(ex) == shape(m) else ["%s: another array" % path.rstrip(".")]
    if shape(ex) != shape(m):
        return ["%s is %s, maad sends %s" % (path.rstrip("."), shape(ex), shape(m))]
    return []


def pretty(m):
    """One field a line, values compact: what the doc shows."""
    return "{\n" + ",\n".join("  %s: %s" % (json.dumps(k), json.dumps(v, separators=(", ", ": ")))
                              for k, v in m.items()) + "\n}"


real = {}
for m in verdicts + beats:
    real.setdefault(kind(m), []).append(m)

# The messages to show, in the doc's format.
reject = min((m for m in verdicts if m["verdict"] == "reject" and m["defects"]),
             key=lambda m: (len(m["defects"]), m["seq"]))
old = next(m for m in verdicts if m["reason"].startswith("too old: "))
beat = beats[-1]
mask_bytes = masks[verdicts.index(reject)] if len(masks) == len(verdicts) else 0
with open(fresh, "w") as f:
    f.write("A rejected part:\n\n```\npart 1: maad.%s\npart 2: the JSON below\n"
            "part 3: %d bytes, \\x89PNG\\r\\n\\x1a\\n...\n```\n```json\n%s\n```\n\n"
            % (reject["camera"], mask_bytes, pretty(reject)))
    f.write("A frame that was not judged:\n\n```json\n%s\n```\n\n" % pretty(old))
    f.write("A heartbeat:\n\n```json\n%s\n```\n" % pretty(beat))

errs = []
examples = []
# A JSON block, or a message written on one line after "part 2: ".
for block in re.findall(r"```json\n(.*?)```", doc, re.S) + re.findall(r"^part 2: (\{.*\})$", doc, re.M):
    try:
        examples.append(json.loads(block))
    except ValueError as e:
        errs.append("an example is not JSON (%s): %s" % (e, block[:60]))
shown = set()
for ex in examples:
    k = kind(ex)
    shown.add(k)
    if not any(shape(ex) == shape(m) for m in real.get(k, [])):
        diff = min((differences(ex, m) for m in real.get(k, [{}])), key=len)
        errs.append("the %s example %s has keys or types no real one has: %s" % (
            k, "seq_next %s" % ex.get("seq_next") if k == "heartbeat" else "seq %s" % ex.get("seq"),
            "; ".join(diff)))
for k in ("judged verdict", "uninspected verdict", "heartbeat"):
    if k not in shown:
        errs.append("no %s among the examples" % k)
for ex in examples:
    if kind(ex) == "judged verdict" and not (
            ex.get("v") == reject["v"] and
            all(ex.get(f) is not None for f in ("rule", "mask_peak", "mask_threshold")) and
            ex.get("evidence") and ex.get("defects")):
        errs.append("the judged example is not a v %d reject with rule, evidence, mask_peak, "
                    "mask_threshold and a defect" % reject["v"])


def table_fields(heading):
    """The fields a section's table names: its rows' first cells."""
    part = doc.split(heading, 1)[1].split("\n## ", 1)[0]
    return {r: line for line in part.splitlines()
            for r in re.findall(r"^\| `([a-z_]+)` \|", line)}


vt, ht = table_fields("## Verdict message"), table_fields("## Heartbeat")
if set(vt) != set(reject):
    errs.append("the verdict table names %s, maad sends %s" % (sorted(vt), sorted(reject)))
if set(ht) != set(beat):
    errs.append("the heartbeat table names %s, maad sends %s" % (sorted(ht), sorted(beat)))
missing = [c for c in beat["stats"] if "`%s`" % c not in ht.get("stats", "")]
if missing:
    errs.append("the heartbeat table's stats row does not name %s" % missing)
if ("| `v` | int | `%d` |" % beat["v"]) not in doc.split("## Heartbeat", 1)[1]:
    errs.append("the heartbeat table does not give v as %d" % beat["v"])
if errs:
    errs.append("maad's messages in the doc's format: %s" % fresh)
print("\n".join(errs))
sys.exit(1 if errs else 0)
PYEOF
e2e_summary

#!/usr/bin/env bash
# e2e_review — the operator's side of maad's archive, on an archive maad
# writes from a replay (so that the writer and the readers are tested
# against each other): `maa review` makes a page that chromium opens from
# disk and a contact sheet, each showing the rejects' masks in red (and no
# red where no mask is), its filters take fewer records, the page's script
# gives the command that marks the ticked cards; `maa archive mark` marks a
# part good and a pass defective, `maa archive export` copies the sampled
# passes and the part marked good into the MVTec layout (--test, --defective
# the test parts), scripts/train.py trains a tiny model on it and maa
# calibrate calibrates it on the held-out frames.  Broken records (bad
# JSON, a missing frame, a mask of the wrong shape, a frame that claims a
# huge size, a bad name) are named and left out; torn records and
# temporaries are not records at all.  REVIEW_SHOT=PNG keeps the
# screenshot of the rejects (docs/img/review.png).
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

# The archive, written by maad: the replay of 72 frames of 128 x 96, every
# fourth with a dark scratch, judged by a random model (S = 64) calibrated
# on defect-free ones, keeping every pass (sample_passes 1).
e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
N=72
e2e_images frames "$N" 3 4
cat >maad.yaml <<EOC
camera:
  name: cam0
  source: replay
replay:
  dir: frames
  fps: 40
  loop: false
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
  batch_max: 4
publish:
  endpoint: tcp://127.0.0.1:5613
archive:
  dir: arc
  sample_passes: 1
EOC
e2e_subscribe tcp://127.0.0.1:5613 verdicts.jsonl
e2e_maad_up maad.yaml maad.log
e2e_wait_file verdicts.jsonl.ready 10 || fail "no heartbeat"
e2e_wait_count verdicts.jsonl . "$N" 30
e2e_stop "$E2E_MAAD"
rc=$?
e2e_stop_sub verdicts.jsonl maad.log
# maad writes what is queued before it exits: the archive is whole now.
check "maad archived every frame, each record the verdict it published" \
    "$PY" - verdicts.jsonl arc "$rc" "$N" <<'PYEOF'
import json, os, sys
ver = [json.loads(l) for l in open(sys.argv[1])]
d = sys.argv[2]
assert sys.argv[3] == "0", "maad exit " + sys.argv[3]
assert len(ver) == int(sys.argv[4]), "%d verdicts" % len(ver)
recs = {f[:-5]: json.load(open(os.path.join(d, f))) for f in os.listdir(d) if f.endswith(".json")}
assert len(recs) == len(ver), "%d records for %d verdicts" % (len(recs), len(ver))
by_seq = {r["seq"]: r for r in recs.values()}
for v in ver:
    r = dict(by_seq[v["seq"]])
    assert r.pop("archive")["why"] == v["verdict"], v["seq"]
    assert r == v, "seq %d: the record is not the verdict published" % v["seq"]
PYEOF
nrec=$(ls arc/*.json | wc -l)
nrej=$(ls arc/*-reject.json | wc -l)
npass=$(ls arc/*-pass.json | wc -l)
nuni=$(ls arc/*-uninspected.json 2>/dev/null | wc -l)
nmask=$(grep -lE '"mask" *\]' arc/*-reject.json | wc -l)
[ "$nrej" -ge 6 ] && [ "$nmask" -ge 4 ] && [ "$npass" -ge 40 ] &&
    ok "archive of $nrec records: $nrej rejects ($nmask on a mask region), $npass passes, $nuni uninspected" ||
    fail "archive" "$nrec records, $nrej rejects ($nmask on a mask region), $npass passes"

# A window of one second in the middle of the run, and what it holds by
# the records' names (maad's capture times): "SINCE UNTIL RECORDS"; and the
# second before the first record.
read -r since until nwin before < <("$PY" - arc <<'PYEOF'
import datetime, os, sys
stems = sorted(f[:-5] for f in os.listdir(sys.argv[1]) if f.endswith(".json"))
time = lambda s: datetime.datetime.strptime(s[:15], "%Y%m%dT%H%M%S")
t = time(stems[len(stems) // 2])
u = t + datetime.timedelta(seconds=1)
a, b = t.strftime("%Y%m%dT%H%M%S"), u.strftime("%Y%m%dT%H%M%S")
print(t.strftime("%Y-%m-%dT%H:%M:%S"), u.strftime("%Y-%m-%dT%H:%M:%S"),
      sum(a <= s[:15] < b for s in stems),
      (time(stems[0]) - datetime.timedelta(seconds=1)).strftime("%Y%m%dT%H%M%S"))
PYEOF
)

# Broken records beside maad's, each a copy of a pass made wrong, named so
# that they sort before (are older than) every real record.
base=$(ls arc/*-pass.json | head -n 1)
base=${base%.json}
mk()
{
    local stem=arc/$before.00000$1Z-cam0-00000000000$1-$2
    cp "$base.png" "$stem.png"
    cp "$base.mask.png" "$stem.mask.png"
    "$PY" - "$base.json" "$stem.json" "$2" <<'PYEOF'
import json, os, sys
r = json.load(open(sys.argv[1]))
stem = os.path.basename(sys.argv[2])[:-5]
r["archive"] = {"frame": stem + ".png", "mask": stem + ".mask.png", "why": sys.argv[3]}
json.dump(r, open(sys.argv[2], "w"))
PYEOF
    echo "$stem"
}
b1=$(mk 1 pass); echo '{"v": 2, "camera": ' >"$b1.json"            # broken JSON
b2=$(mk 2 pass); rm "$b2.png"                                      # frame missing
b3=$(mk 3 reject); "$PY" -c "
import struct, zlib, sys
def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b))
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 10, 7, 8, 0, 0, 0, 0))
    + chunk(b'IDAT', zlib.compress(b'\0' * 77)) + chunk(b'IEND', b''))" "$b3.mask.png"   # mask 10 x 7
b4=$(mk 4 pass); "$PY" -c "
import struct, zlib, sys
def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b))
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 30000, 30000, 8, 0, 0, 0, 0))
    + chunk(b'IDAT', zlib.compress(b'\0' * 1000)) + chunk(b'IEND', b''))" "$b4.png"    # huge frame
b5=$(mk 5 uninspected); rm "$b5.png" "$b5.mask.png"                # a frame that never came
"$PY" - "$b5.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(verdict="uninspected", reason="camera error: frame missed", score=None, rule=None,
         evidence=[], defects=[], archive={"frame": None, "mask": None, "why": "uninspected"})
json.dump(r, open(sys.argv[1], "w"))
PYEOF
echo '{}' >arc/notes.json                                          # not a record's name
cp "$base.png" arc/$before.000009Z-cam0-000000000009-pass.png  # torn: no .json
cp "$base.json" "arc/.${base#arc/}.json.tmp"                        # a temporary
all=$((nrec + 4))   # b3 reads (shown without its mask), b2, b4 and b5 without a frame

"$MAA" archive ls arc >ls.out 2>ls.err
check "archive ls: every readable record, newest first, and the count" "$PY" - ls.out "$all" <<'PYEOF'
import sys
lines = open(sys.argv[1]).read().splitlines()
recs, summary = lines[:-1], lines[-1]
assert len(recs) == int(sys.argv[2]), (len(recs), sys.argv[2])
names = [l.split()[0] for l in recs]
assert names == sorted(names, reverse=True), "not newest first"
assert summary.startswith("%s records, " % sys.argv[2]) and "2 unreadable" in summary, summary
PYEOF
check "archive ls: the broken JSON and the bad name are named on stderr; torn records unseen" \
    eval "grep -q '${b1#arc/}.json: line [0-9]*: ' ls.err && grep -q 'notes.json: not an archive record' ls.err && [ \$(wc -l <ls.err) -eq 2 ]"

# ---- review: the page -----------------------------------------------------
"$MAA" review arc -o page.html >review.out 2>review.err
rc=$?
cards() { grep -c '<div class="card ' "$1"; }
check "review: page written, every readable record a card" \
    eval "[ $rc -eq 0 ] && [ \$(cards page.html) -eq $all ]"
check "review: each bad record named on stderr" eval "grep -q '${b1#arc/}.json: line [0-9]' review.err &&
    grep -q '${b2#arc/}.png: cannot open' review.err && grep -q '${b3#arc/}.mask.png: a 10x7 image' review.err &&
    grep -q '${b4#arc/}.png: .*30000' review.err"
check "review: a record without a frame is a card that says so" \
    eval "grep -q 'no frame: it never arrived</div><span class=\"why\">uninspected</span>' page.html"
check "review: the page is one file (no address outside it)" \
    eval "! grep -qE '(src|href)=\"(https?:|file:|/)' page.html"
nscore=$(grep -l 'score above threshold' arc/*.json | wc -l)
"$MAA" review arc -o rejects.html --why reject >/dev/null 2>&1
"$MAA" review arc -o reason.html --reason "SCORE ABOVE" >/dev/null 2>&1
"$MAA" review arc -o limit.html --limit 5 >/dev/null 2>&1
"$MAA" review arc -o since.html --since "$since" --until "$until" >/dev/null 2>&1
"$MAA" review arc -o ago.html --since 1h >/dev/null 2>&1
"$MAA" review arc -o none.html --until 1h >/dev/null 2>&1
check "review filters: --why reject, --reason, --limit, --since/--until take fewer cards" \
    eval "[ \$(cards rejects.html) -eq $((nrej + 1)) ] && [ \$(cards reason.html) -eq $nscore ] &&
          [ \$(cards limit.html) -eq 5 ] && [ \$(cards since.html) -eq $nwin ] &&
          [ $nwin -gt 0 ] && [ $nwin -lt $nrec ] && [ \$(cards ago.html) -eq $all ] &&
          [ \$(cards none.html) -eq 0 ] && grep -q 'the newest 5 of the $all records taken' limit.html"
"$MAA" review arc --why maybe >bad.out 2>bad.err
rc=$?
check "review: a bad --why is refused, exit 2" \
    eval "[ $rc -eq 2 ] && grep -q 'is not reject, uninspected or pass' bad.err"

# The page in a browser, filtered in the page to the rejects and to the
# passes: the mask's red (a gray pixel under 55 % red: R - G = 140, G = B)
# is on the first, not on the second.
shot()
{
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1000 \
        --screenshot="$2" "file://$E2E_TMP/page.html#why=$1" >"$2.log" 2>&1
}
if command -v chromium >/dev/null; then
    shot reject rejects.png
    # the picture in docs/operations.md
    [ -n "${REVIEW_SHOT:-}" ] && cp rejects.png "$REVIEW_SHOT"
    shot pass passes.png
    check "review page in chromium: red masks over the rejects, none over the passes" \
        "$PY" - rejects.png passes.png <<'PYEOF'
import sys
import matplotlib.image as mpimg
import numpy as np
def red(path):
    a = (mpimg.imread(path)[..., :3] * 255).round().astype(int)
    assert a.shape[0] >= 900 and a.std() > 20, "%s: blank (%s, sd %.1f)" % (path, a.shape, a.std())
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return int(((abs(r - g - 140) <= 2) & (abs(g - b) <= 1)).sum())
rej, pas = red(sys.argv[1]), red(sys.argv[2])
assert rej > 500 and pas == 0, "mask pixels: %d with the rejects, %d with the passes" % (rej, pas)
print(rej, pas)
PYEOF
    # The page's script, run by chromium: two cards ticked, "defective"
    # chosen, give the command that marks them (the directory quoted for
    # the shell), which does; the address's #why=reject filters the cards.
    ln -s arc "my arc"
    "$MAA" review "my arc" -o ticked.html >/dev/null 2>&1
    sed -i 's#</body>#<script>var p=document.querySelectorAll(".pick");p[1].checked=p[2].checked=true;document.getElementById("as").value="defective";picked()</script></body>#' ticked.html
    chromium --headless --no-sandbox --disable-gpu --dump-dom \
        "file://$E2E_TMP/ticked.html#why=reject" >ticked.dom 2>ticked.log
    cmd=$(sed -n 's#.*<div id="cmd">\([^<]*\)</div>.*#\1#p' ticked.dom)
    want="maa archive mark 'my arc' $(grep -o 'class="pick" value="[^"]*"' ticked.html |
        sed -n '2,3s/.*value="\([^"]*\)"/\1/p' | tr '\n' ' ')--defective"
    [ "$cmd" = "$want" ] && eval "\"$MAA\" ${cmd#maa }" >/dev/null 2>&1
    rc=$?
    check "review page in chromium: the ticked cards' command, which marks them; #why=reject filters" \
        eval "[ $rc -eq 0 ] && [ \$(grep -c '\"review\"' arc/*.json | grep -c ':1$') -eq 2 ] &&
              grep -q '<span id=\"shown\">$((nrej + 1))</span>' ticked.dom ||
              { echo \"got: $cmd\"; echo \"want: $want\"; false; }"
    "$MAA" archive mark arc $(sed -n '2,3s/.*value="\([^"]*\)"/\1/p' \
        <(grep -o 'class="pick" value="[^"]*"' ticked.html)) --clear >/dev/null
else
    skip "review page in chromium" "no chromium"
fi

# ---- review: the sheet ----------------------------------------------------
"$MAA" review arc --png sheet.png --why reject >sheet.out 2>sheet.err
rc1=$?
"$MAA" review arc --png sheet-pass.png --why pass --limit 12 >/dev/null 2>&1
check "review --png: the sheet shows the masks in red over the rejects, none over the passes" \
    "$PY" - sheet.png sheet-pass.png "$rc1" <<'PYEOF'
import sys
import matplotlib.image as mpimg
assert sys.argv[3] == "0", "exit %s" % sys.argv[3]
def red(path):
    a = (mpimg.imread(path)[..., :3] * 255).round().astype(int)
    assert a.std() > 20, "%s: blank" % path
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    # resampled by the plot: about the overlay's colour
    return int(((r - g > 110) & (abs(g - b) <= 6)).sum())
rej, pas = red(sys.argv[1]), red(sys.argv[2])
assert rej > 300 and pas == 0, "mask pixels: %d on the rejects' sheet, %d on the passes'" % (rej, pas)
PYEOF

# ---- mark -----------------------------------------------------------------
good=$(ls arc/*-reject.json | tail -n 1)
good=${good%.json}
escaped=$(ls arc/*-pass.json | tail -n 1)
escaped=${escaped%.json}
cp "$good.json" before.json
chmod 640 "$good.json"
"$MAA" archive mark arc "${good#arc/}" --good >mark.out 2>mark.err &&
    "$MAA" archive mark arc "$escaped.png" --defective >>mark.out 2>>mark.err
rc=$?
check "archive mark: the mark added, the verdict and the file's mode kept" \
    "$PY" - before.json "$good.json" "$rc" <<'PYEOF'
import json, os, re, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert sys.argv[3] == "0", "exit " + sys.argv[3]
rev = b.pop("review")
assert rev["label"] == "good" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rev["t"]), rev
assert a == b, "the verdict changed"
assert oct(os.stat(sys.argv[2]).st_mode & 0o777) == "0o640"
PYEOF
check "archive mark: no temporary left, ls and the page show the marks" \
    eval "[ \$(ls -A arc | grep -c '^\.') -eq 1 ] &&
          \"$MAA\" archive ls arc 2>/dev/null | grep -q '${good#arc/}  .*marked good' &&
          \"$MAA\" review arc -o marked.html 2>/dev/null >/dev/null &&
          grep -q 'marked good' marked.html && grep -q 'marked defective' marked.html"
"$MAA" archive mark arc 20261204T000000.000000Z-cam0-000000000999-reject --good >nomark.out 2>nomark.err
rc=$?
check "archive mark: a record that is not there is named, exit 1" \
    eval "[ $rc -eq 1 ] && grep -q '000000000999-reject.json: cannot open' nomark.err"

# ---- export -> train.py -> maa calibrate ----------------------------------
"$MAA" archive export arc data --include-marked-good >export.out 2>export.err
rc=$?
want=$((npass - 1 + 1))   # the passes but the one marked defective, and the good reject
check "archive export: the passes and the part marked good, byte for byte, in train/good" \
    "$PY" - data/train/good arc "$want" "$rc" export.out <<'PYEOF'
import filecmp, os, sys
d, arc, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
assert sys.argv[4] == "0", "exit " + sys.argv[4]
got = sorted(os.listdir(d))
assert len(got) == want, (len(got), want)
assert sum(f.endswith("-reject.png") for f in got) == 1, got
assert all(filecmp.cmp(os.path.join(d, f), os.path.join(arc, f), shallow=False) for f in got)
out = open(sys.argv[5]).read()
assert "%d frames written (%d sampled passes, 1 marked good)" % (want, want - 1) in out, out
assert "1 pass marked defective left out" in out and "4 records left out" in out, out
PYEOF
check "archive export: the unreadable passes are named" \
    eval "grep -q '${b2#arc/}.json: no frame\|${b2#arc/}.png: cannot open' export.err &&
          grep -q '${b4#arc/}.png: not a readable image' export.err"
"$MAA" archive export arc data --include-marked-good >export2.out 2>/dev/null
rc=$?
check "archive export again: nothing overwritten, every file kept" \
    eval "[ $rc -eq 0 ] && grep -q '0 frames written .* $want already there and kept' export2.out"

"$MAA" archive export arc data --defective >export-d.out 2>/dev/null &&
    "$MAA" archive export arc data --test --since "$since" --until "$until" >export-t.out 2>/dev/null
rc=$?
check "archive export --defective: the pass marked defective in test/defective; --test: the window's other passes in test/good" \
    "$PY" - data arc "$since" "$until" "${escaped#arc/}" "$rc" export-d.out <<'PYEOF'
import json, os, sys
data, arc, since, until, escaped = sys.argv[1:6]
assert sys.argv[6] == "0", "exit " + sys.argv[6]
assert os.listdir(data + "/test/defective") == [escaped + ".png"], os.listdir(data + "/test/defective")
a, b = since.replace("-", "").replace(":", ""), until.replace("-", "").replace(":", "")
want = sorted(f[:-5] + ".png" for f in os.listdir(arc) if f.endswith("-pass.json")
              and a <= f[:15] < b and "review" not in json.load(open(os.path.join(arc, f))))
assert sorted(os.listdir(data + "/test/good")) == want, (os.listdir(data + "/test/good"), want)
assert "1 frame written, 0 already there" in open(sys.argv[7]).read()
PYEOF

"$PY" "$E2E_ROOT/scripts/train.py" --data data --out m.safetensors --size 64 --channels 1 \
    --g-base 4 --d-base 8 --iters 30 --batch 8 --holdout 0.5 --device cpu --workdir work \
    >train.log 2>&1
rc=$?
check "train.py trains on the export" eval "[ $rc -eq 0 -o $rc -eq 3 ] && [ -s m.safetensors ] &&
    grep -q 'train: $want good images' train.log"
"$MAA" calibrate --model m.safetensors --out c.yaml --backend ref --threads 1 >cal.log 2>&1
check "maa calibrate on the export's held-out frames" \
    eval "[ -s c.yaml ] && grep -q 'good images (the held-out images of' cal.log"
# ---- reading while maad writes --------------------------------------------
# maad loops the replay into a budget of 10 records (30 files), deleting the
# oldest all the time, while maa lists, reviews and exports the directory
# over and over: every run ends well, and what it could not read (a record
# deleted under it) it names and leaves out.
cat >live.yaml <<EOC
camera:
  name: cam0
  source: replay
replay:
  dir: frames
  fps: 60
  loop: true
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
  batch_max: 4
publish:
  endpoint: tcp://127.0.0.1:5614
archive:
  dir: live
  max_files: 30
  sample_passes: 1
EOC
e2e_maad_up live.yaml live.log
e2e_wait_count live.log 'archive: written [1-9]' 1 5 2>/dev/null
runs=0 bad=0
for i in 1 2 3 4 5 6 7 8; do
    "$MAA" archive ls live >/dev/null 2>>live.err || bad=$((bad + 1))
    "$MAA" review live -o live.html >/dev/null 2>>live.err || bad=$((bad + 1))
    "$MAA" review live --png live.png --limit 6 >/dev/null 2>>live.err || bad=$((bad + 1))
    "$MAA" archive export live live-data >/dev/null 2>>live.err || bad=$((bad + 1))
    runs=$((runs + 4))
done
e2e_stop "$E2E_MAAD"
rc=$?
check "$runs runs of ls, review and export while maad writes and deletes: each ends well" \
    eval "[ $rc -eq 0 ] && [ $bad -eq 0 ] && grep -q 'deleted [1-9]' live.log &&
          [ \$(ls live-data/train/good | wc -l) -gt 0 ]"
check "while maad writes: each record not read is named (left out or without a picture)" \
    eval "! grep -vE '^maa (review|archive (ls|export)): live/[^ ]+: .*(; left out|; shown without (a picture|its mask))\$' live.err"
check "while maad writes: a record deleted under a reader is named as deleted" \
    eval "! grep -v 'deleted while it was read (maad keeps the archive within its budget)' live.err"
echo "  $(wc -l <live.err) records deleted under the readers"

e2e_summary

#!/usr/bin/env bash
# e2e_review — the operator's side of maad's archive: `maa review` makes a
# page that chromium opens from disk and a contact sheet, each showing the
# rejects' masks in red (and no red where no mask is), its filters take
# fewer records; `maa archive mark` marks a part good, `maa archive export`
# copies the sampled passes and the part marked good into the MVTec layout,
# scripts/train.py trains a tiny model on it and maa calibrate calibrates
# it on the held-out frames.  Broken records (bad JSON, a missing frame, a
# mask of the wrong shape, a frame that claims a huge size, a bad name) are
# named and left out; torn records and temporaries are not records at all.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"

# The archive: 60 frames of 128 x 96, every fourth with a dark scratch.
N=60
"$PY" - arc "$N" <<'PYEOF'
import datetime, json, os, struct, sys, zlib
import numpy as np
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
def png(path, a):
    h, w = a.shape
    raw = b"".join(b"\0" + a[y].tobytes() for y in range(h))
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
rng = np.random.default_rng(3)
y, x = np.mgrid[0:96, 0:128]
t0 = 1796378483200166000
for i in range(n):
    why = "reject" if i % 4 == 3 else "uninspected" if i == 10 else "pass"
    img = (128 + 40 * np.sin(x / 7.0 + rng.uniform(0, 6.3)) * np.cos(y / 9.0)
           + rng.normal(0, 6, (96, 128))).clip(0, 255).astype(np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    if why == "reject":
        r = int(rng.integers(24, 72))
        img[r:r + 3, 25:102] = 10
        mask[r * 2 // 3:r * 2 // 3 + 2, 12:51] = 255
    t = t0 + i * 10**9
    stem = "%s.%06dZ-cam0-%012d-%s" % (datetime.datetime.utcfromtimestamp(t // 10**9)
                                       .strftime("%Y%m%dT%H%M%S"), t // 1000 % 10**6, i, why)
    png(f"{d}/{stem}.png", img)
    judged = why != "uninspected"
    if judged:
        png(f"{d}/{stem}.mask.png", mask)
    m = {"v": 2, "camera": "cam0", "seq": i, "frame_id": i + 1, "t_capture_ns": t,
         "t_publish_ns": t + 5 * 10**7, "model": "c09a" * 16, "verdict": why,
         "reason": {"reject": "score above threshold and defect region in the mask",
                    "pass": "score at or below threshold, no defect region in the mask",
                    "uninspected": "too old: 300 ms after capture, max_age_ms 250"}[why],
         "score": (0.0088 if why == "reject" else 0.005) if judged else None,
         "threshold": 0.0075, "rule": "either" if judged else None,
         "evidence": ["score", "mask"] if why == "reject" else [],
         "mask_peak": 0.03 if judged else None, "mask_threshold": 0.0003 if judged else None,
         "defects": [{"x": 12, "y": r * 2 // 3, "w": 39, "h": 2, "area": 78, "cx": 24,
                      "cy": r, "cw": 78, "ch": 3}] if why == "reject" else [],
         "mask": {"format": "png", "width": 64, "height": 64} if judged else
                 {"format": "none", "width": 0, "height": 0},
         "archive": {"frame": stem + ".png", "mask": stem + ".mask.png" if judged else None,
                     "why": why}}
    with open(f"{d}/{stem}.json", "w") as f:
        json.dump(m, f)
PYEOF
nrec=$(ls arc/*.json | wc -l)
nrej=$(ls arc/*-reject.json | wc -l)
npass=$(ls arc/*-pass.json | wc -l)
[ "$nrec" -eq "$N" ] && [ "$nrej" -gt 3 ] && [ "$npass" -ge 40 ] &&
    ok "archive of $nrec records: $nrej rejects, $npass sampled passes" ||
    fail "archive" "$nrec records, $nrej rejects, $npass passes"

# Broken records beside the good ones, each a copy of a pass made wrong,
# named so that they sort before (are older than) every real record.
base=$(ls arc/*-pass.json | head -n 1)
base=${base%.json}
mk()
{
    local stem=arc/20200101T00000$1.000000Z-cam0-00000000000$1-$2
    cp "$base.png" "$stem.png"
    cp "$base.mask.png" "$stem.mask.png"
    sed "s/${base#arc/}/${stem#arc/}/g" "$base.json" >"$stem.json"
    echo "$stem"
}
b1=$(mk 1 pass); echo '{"v": 2, "camera": ' >"$b1.json"            # broken JSON
b2=$(mk 2 pass); rm "$b2.png"                                      # frame missing
b3=$(mk 3 reject); "$PY" -c "
import struct, zlib, sys
def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b))
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 10, 7, 8, 0, 0, 0, 0))
    + chunk(b'IDAT', zlib.compress(b'\0' * 77)) + chunk(b'IEND', b''))" "$b3.mask.png"   # mask 10 x 7
sed -i 's/"why": "pass"/"why": "reject"/' "$b3.json"
b4=$(mk 4 pass); "$PY" -c "
import struct, zlib, sys
def chunk(t, b): return struct.pack('>I', len(b)) + t + b + struct.pack('>I', zlib.crc32(t + b))
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 30000, 30000, 8, 0, 0, 0, 0))
    + chunk(b'IDAT', zlib.compress(b'\0' * 1000)) + chunk(b'IEND', b''))" "$b4.png"    # huge frame
echo '{}' >arc/notes.json                                          # not a record's name
cp "$base.png" arc/20200101T000009.000000Z-cam0-000000000009-pass.png  # torn: no .json
cp "$base.json" "arc/.${base#arc/}.json.tmp"                        # a temporary
all=$((nrec + 3))   # b3 reads (shown without its mask), b2 and b4 without a frame

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
check "review: the page is one file (no address outside it)" \
    eval "! grep -qE '(src|href)=\"(https?:|file:|/)' page.html"
"$MAA" review arc -o rejects.html --why reject >/dev/null 2>&1
"$MAA" review arc -o reason.html --reason "TOO OLD" >/dev/null 2>&1
"$MAA" review arc -o limit.html --limit 5 >/dev/null 2>&1
"$MAA" review arc -o since.html --since 2026-12-04T10:01:40 --until 2026-12-04T10:01:50 \
    >/dev/null 2>&1
check "review filters: --why reject, --reason, --limit, --since/--until take fewer cards" \
    eval "[ \$(cards rejects.html) -eq $((nrej + 1)) ] && [ \$(cards reason.html) -eq 1 ] &&
          [ \$(cards limit.html) -eq 5 ] && [ \$(cards since.html) -eq 10 ] &&
          grep -q 'the newest 5 of the $all records taken' limit.html"
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
    "$MAA" archive export arc data --test --since 2026-12-04T10:02:13 >export-t.out 2>/dev/null
rc=$?
check "archive export --defective: the pass marked defective in test/defective; --test: the period's other passes in test/good" \
    eval "[ $rc -eq 0 ] && [ \"\$(ls data/test/defective)\" = '${escaped#arc/}.png' ] &&
          [ \$(ls data/test/good | wc -l) -eq \$((\$(ls arc/*-pass.json | grep -c 'T10021[3-9]\|T1002[2-9]') - 1)) ] &&
          grep -q '1 frame written, 0 already there' export-d.out"

"$PY" "$E2E_ROOT/scripts/train.py" --data data --out m.safetensors --size 64 --channels 1 \
    --g-base 4 --d-base 8 --iters 30 --batch 8 --holdout 0.5 --device cpu --workdir work \
    >train.log 2>&1
rc=$?
check "train.py trains on the export" eval "[ $rc -eq 0 -o $rc -eq 3 ] && [ -s m.safetensors ] &&
    grep -q 'train: $want good images' train.log"
"$MAA" calibrate --model m.safetensors --out c.yaml --backend ref --threads 1 >cal.log 2>&1
check "maa calibrate on the export's held-out frames" \
    eval "[ -s c.yaml ] && grep -q 'good images (the held-out images of' cal.log"
e2e_summary

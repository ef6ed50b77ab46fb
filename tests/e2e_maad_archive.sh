#!/usr/bin/env bash
# e2e_maad_archive — the reject archive (docs/operations.md, "Reject
# archive") on the replay source, every third image a scratch:
# - a long replay into a small budget: an inotify watcher sees every
#   creation, rename and deletion in the directory, and at no moment do the
#   files or their bytes exceed archive.max_files and archive.max_bytes,
#   which the run fills; what is left is the newest records (rejects and
#   one pass in 4), each JSON the verdict as published plus its "archive"
#   object, each frame at camera resolution;
# - a restart takes up the records where they were, with a smaller budget
#   of files that holds from its start and then at every moment;
# - a directory that maad cannot write at start-up fails --check-config and
#   the start with a message naming it;
# - a full file system (a small tmpfs) and one remounted read-only while
#   maad runs: the records that cannot be written are counted (failed) and
#   logged once per run of failures (a notice when writing works again),
#   while every frame still gets exactly one verdict, seq without a gap, none
#   too old and no ring overflow.
# The file systems need a mount namespace (unshare -m): without one those
# parts are skipped.
. "$(dirname "$0")/../scripts/e2e-lib.sh"
if [ -z "${E2E_MNTNS:-}" ]; then
    if unshare -m true 2>/dev/null; then
        E2E_MNTNS=1 exec unshare -m bash "$0" "$@"
    fi
    E2E_MNTNS=none
fi
e2e_isolate "$@"
e2e_need_build
cd "$E2E_TMP"
# Mounts are the namespace's, but their mount points are in $E2E_TMP: let
# them go before e2e_cleanup removes it.
trap 'umount -l "$E2E_TMP"/fs 2>/dev/null; e2e_cleanup' EXIT

e2e_fixture || { fail "fixture (model, images, calibration)"; e2e_summary; exit 1; }
e2e_images labelled 24 5 3

# conf FILE DIR MAX_BYTES MAX_FILES: maad on the replay, looping, 40 frames/s.
conf()
{
    cat >"$1" <<EOC
camera:
  name: arc
  source: replay
replay:
  dir: labelled
  fps: 40
  loop: true
model:
  path: model.safetensors
  calibration: cal.yaml
engine:
  backend: ref
  batch_max: 2
publish:
  endpoint: tcp://127.0.0.1:5611
log:
  summary_interval_s: 1
archive:
  dir: $2
  max_bytes: $3
  max_files: $4
  sample_passes: 4
EOC
}

# watch_budget DIR OUT: in the background until SIGTERM, then OUT holds
# "MAX_FILES MAX_BYTES EVENTS": the most files and bytes DIR held at any
# one moment, by inotify (each file's size as read when its event is taken:
# never more than the size it ends with, which the budget counts).
watch_budget()
{
    "$PY" - "$1" "$2" <<'EOF' &
import ctypes, os, select, signal, struct, sys
d, out = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
MODIFY, CLOSE_WRITE, MOVED_FROM, MOVED_TO, CREATE, DELETE = 0x2, 0x8, 0x40, 0x80, 0x100, 0x200
OVERFLOW = 0x4000
fd = libc.inotify_init1(os.O_NONBLOCK)
if fd < 0 or libc.inotify_add_watch(fd, d.encode(), MODIFY | CLOSE_WRITE | MOVED_FROM |
                                    MOVED_TO | CREATE | DELETE) < 0:
    open(out, "w").write("error inotify\n")
    sys.exit(1)
files = {}
for n in os.listdir(d):
    # maad may delete it between the listing and the stat (a restart's
    # budget, or the run under way): its DELETE event comes all the same.
    try:
        files[n] = os.stat(os.path.join(d, n)).st_size
    except FileNotFoundError:
        pass
moving = {}
most_files, most_bytes, events, lost = len(files), sum(files.values()), 0, 0
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
open(out + ".ready", "w").close()

def size(n):
    try:
        return os.stat(os.path.join(d, n)).st_size
    except OSError:
        return files.get(n, 0)

while True:
    r, _, _ = select.select([fd], [], [], 0.1)
    if not r:
        if stop:
            break
        continue
    try:
        buf = os.read(fd, 65536)
    except BlockingIOError:
        continue
    i = 0
    while i < len(buf):
        wd, mask, cookie, ln = struct.unpack_from("iIII", buf, i)
        name = buf[i + 16:i + 16 + ln].rstrip(b"\0").decode()
        i += 16 + ln
        events += 1
        if mask & OVERFLOW:
            lost = 1
        elif mask & (CREATE | MODIFY | CLOSE_WRITE):
            files[name] = max(files.get(name, 0), size(name))
        elif mask & DELETE:
            files.pop(name, None)
        elif mask & MOVED_FROM:
            moving[cookie] = files.pop(name, 0)
        elif mask & MOVED_TO:
            files[name] = max(moving.pop(cookie, 0), size(name))
        most_files = max(most_files, len(files))
        most_bytes = max(most_bytes, sum(files.values()))
open(out, "w").write("%s %d %d %d\n" % ("lost" if lost else "ok", most_files, most_bytes,
                                        events))
EOF
    E2E_WATCH=$!
    E2E_PIDS+=("$E2E_WATCH")
    e2e_wait_file "$2.ready" 10
}

# run CONFIG NAME SECONDS [MIDDLE]: maad with its subscriber for SECONDS
# (MIDDLE, a command, run halfway; $AFTER_READY, one run once maad is
# ready), stopped; NAME.jsonl the verdicts,
# NAME.log its log; the final line's numbers as F_* (e2e_final), and
# A_written, A_failed, A_dropped, A_refused, A_deleted, A_records, A_files
# from its final archive line.
run()
{
    local half
    half=$(awk "BEGIN {print $3 / 2}")
    e2e_subscribe tcp://127.0.0.1:5611 "$2.jsonl"
    e2e_maad_up "$1" "$2.log"
    ${AFTER_READY:-}
    e2e_wait_file "$2.jsonl.ready" 10 || fail "$2: no heartbeat"
    sleep "$half"
    [ -n "${4:-}" ] && $4
    sleep "$half"
    e2e_stop "$E2E_MAAD"
    local rc=$?
    e2e_stop_sub "$2.jsonl" "$2.log"
    [ "$rc" -eq 0 ] || fail "$2: maad exit $rc" "$(tail -3 "$2.log")"
    e2e_final "$2.log" || { fail "$2: no final line" "$(tail -5 "$2.log")"; return 1; }
    local a
    a=$(grep -E 'final archive: ' "$2.log" | tail -n 1)
    echo "  ${a#*final }"
    eval "$(sed -nE 's/.*written ([0-9]+) .*holds ([0-9]+) records \(.*, ([0-9]+) of [0-9]+ files\), dropped ([0-9]+), failed ([0-9]+), refused ([0-9]+), deleted ([0-9]+)$/A_written=\1 A_records=\2 A_files=\3 A_dropped=\4 A_failed=\5 A_refused=\6 A_deleted=\7/p' <<<"$a")"
    [ -n "${A_written:-}" ] || { fail "$2: no final archive line" "$(tail -5 "$2.log")"; return 1; }
}

# on_time NAME: every captured frame one verdict, seq 0..n-1, and none of
# them late: not too old, no ring overflow.
on_time()
{
    check "$1: one verdict per frame, seq without a gap" e2e_verdicts "$1.jsonl" "$F_captured"
    [ "$F_too_old" -eq 0 ] && [ "$F_overflow" -eq 0 ] && [ "$F_captured" -gt 20 ] &&
        ok "$1: $F_captured frames, none too old, no overflow" ||
        fail "$1: captured $F_captured, too old $F_too_old, overflow $F_overflow"
}

# budget NAME OUT MAX_FILES MAX_BYTES: the watcher's OUT within the budget,
# and the budget full at some moment (within a record's bytes).
budget()
{
    local how most_files most_bytes events
    read -r how most_files most_bytes events <"$2"
    [ "$how" = ok ] && [ "$most_files" -le "$3" ] && [ "$most_bytes" -le "$4" ] &&
        ok "$1: the budget held at every moment ($events events; at most $most_files files, $most_bytes bytes)" ||
        fail "$1: budget of $3 files, $4 bytes" "watcher: $(cat "$2")"
    [ "$most_files" -eq "$3" ] || [ "$most_bytes" -gt $(($4 - 15000)) ] &&
        ok "$1: the run filled the budget" || fail "$1: the budget was never full: $(cat "$2")"
}

# ---- a long replay into a small budget, then a restart -----------------------
# About 14 kB a record with its frame (3 files): 14 records fill the bytes.
MAXB=200000
mkdir arch
conf long.yaml arch "$MAXB" 60
watch_budget arch watch.out
run long.yaml long 6
kill -TERM "$E2E_WATCH"
wait "$E2E_WATCH"
budget long watch.out 60 "$MAXB"
on_time long
[ "$A_written" -gt 40 ] && [ "$A_deleted" -gt 20 ] && [ "$A_dropped" -eq 0 ] &&
    [ "$A_failed" -eq 0 ] && ok "long: $A_written records written, $A_deleted deleted" ||
    fail "long: written $A_written, deleted $A_deleted, dropped $A_dropped, failed $A_failed"

check "long: the records left are the newest, each the verdict as published" \
    "$PY" - arch long.jsonl "$A_records" <<'PYEOF'
import json, os, struct, sys
d, ver, want = sys.argv[1], [json.loads(l) for l in open(sys.argv[2])], int(sys.argv[3])
names = sorted(os.listdir(d))
stems = [n[:-5] for n in names if n.endswith(".json")]
assert len(stems) == want, "%d records, the final line says %d" % (len(stems), want)
# What the archive keeps: rejects, uninspected, one pass in 4 from the first.
kept, passes = [], 0
for m in ver:
    if m["verdict"] != "pass" or passes % 4 == 0:
        kept.append(m)
    passes += m["verdict"] == "pass"
newest = kept[-len(stems):]
assert [int(s.split("-")[2]) for s in stems] == [m["seq"] for m in newest], \
    "kept %s, newest %s" % ([s.split("-")[2] for s in stems], [m["seq"] for m in newest])
files = set(names)
for s, m in zip(stems, newest):
    rec = json.load(open(os.path.join(d, s + ".json")))
    ar = rec.pop("archive")
    assert rec == m, "%s: %s vs published %s" % (s, rec, m)
    assert ar["why"] == m["verdict"] == s.rsplit("-", 1)[1], (s, ar)
    assert ar["frame"] == s + ".png" and ar["mask"] == s + ".mask.png", ar
    assert {s + ".png", s + ".mask.png"} <= files, s
    w, h = struct.unpack(">II", open(os.path.join(d, ar["frame"]), "rb").read()[16:24])
    assert (w, h) == (128, 96), "%s is %dx%d" % (ar["frame"], w, h)
assert len(names) == 3 * len(stems), "%d files for %d records" % (len(names), len(stems))
whys = {s.rsplit("-", 1)[1] for s in stems}
assert whys == {"reject", "pass"}, whys
PYEOF

# Restarted with room for 8 records of 3 files: the oldest go before READY.
left=$(ls arch | grep -c '\.json$')
conf restart.yaml arch "$MAXB" 24
AFTER_READY="watch_budget arch watch2.out" run restart.yaml restart 3
kill -TERM "$E2E_WATCH"
wait "$E2E_WATCH"
grep -qE "archive: .*/arch holds 8 records of camera arc .*, 24 of 24 files\); removed at start: 0 torn records, 0 temporaries, $((left - 8)) records over the budget" restart.log &&
    ok "restart: maad takes up the $left records it left, the oldest $((left - 8)) over its new budget" ||
    fail "restart: not $left records at the start" "$(grep 'archive: ' restart.log | head -2)"
budget restart watch2.out 24 "$MAXB"
on_time restart

# ---- a directory maad cannot write at start-up ----------------------------------
conf nodir.yaml no/such/dir 1e6 100
"$MAAD" --check-config nodir.yaml >nodir.out 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -q "archive.dir $E2E_TMP/no/such/dir does not exist, nor does its parent" nodir.out &&
    ok "--check-config names an archive.dir without a parent" ||
    fail "--check-config exit $rc" "$(cat nodir.out)"

if [ "$E2E_MNTNS" = none ]; then
    skip "full and read-only file systems" "no mount namespace (unshare -m)"
    e2e_summary
    exit
fi

mkdir fs
mount -t tmpfs -o size=1m,mode=0755 tmpfs fs && mount -o remount,ro fs ||
    { fail "mount a tmpfs"; e2e_summary; exit 1; }
conf ro.yaml fs 1e6 100
"$MAAD" --check-config ro.yaml >ro.out 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -q "archive.dir $E2E_TMP/fs: not writable: Read-only file system" ro.out &&
    ok "--check-config names a read-only archive.dir" || fail "--check-config exit $rc" "$(cat ro.out)"
"$MAAD" --config ro.yaml >ro-start.log 2>&1
rc=$?
[ "$rc" -eq 1 ] && grep -q "archive.dir $E2E_TMP/fs: not writable" ro-start.log &&
    ok "maad does not start on a read-only archive.dir" || fail "maad exit $rc" "$(tail -2 ro-start.log)"
umount fs

# ---- a full file system -------------------------------------------------------------
# 64 kB: a few records, then no space left; the budget is larger than the disk.
mount -t tmpfs -o size=64k tmpfs fs || { fail "mount a 64 kB tmpfs"; e2e_summary; exit 1; }
conf full.yaml fs 10e6 1000
run full.yaml full 3
umount fs
on_time full
n=$(grep -c 'warning: archive: cannot write .*: No space left on device' full.log)
[ "$A_failed" -gt 5 ] && [ "$A_written" -gt 0 ] && [ "$n" -eq 1 ] &&
    ok "full: $A_failed records failed, logged once; $A_written written" ||
    fail "full: written $A_written, failed $A_failed, logged $n times" "$(grep archive full.log | tail -3)"

# ---- read-only while maad runs, and writable again ------------------------------
mount -t tmpfs -o size=4m tmpfs fs || { fail "mount a tmpfs"; e2e_summary; exit 1; }
ro_and_back()
{
    mount -o remount,ro "$E2E_TMP/fs"
    sleep 1.5
    mount -o remount,rw "$E2E_TMP/fs"
}
conf rw.yaml fs 10e6 1000
run rw.yaml ro 5 ro_and_back
umount fs
on_time ro
n=$(grep -c 'warning: archive: cannot .*: Read-only file system' ro.log)
again=$(grep -c 'notice: archive: writing to .* works again; [0-9]* records failed' ro.log)
[ "$A_failed" -gt 3 ] && [ "$n" -eq 1 ] && [ "$again" -eq 1 ] &&
    ok "read-only: $A_failed records failed, logged once, and a notice when it was writable again" ||
    fail "read-only: failed $A_failed, warned $n times, $again notices" "$(grep archive ro.log | tail -4)"
e2e_summary

#!/usr/bin/env bash
# maa review's cost (docs/operations.md, "Reviewing a shift"): the page of
# the newest LIMIT records and the contact sheet of the newest SHEET of an
# archive maad wrote, their size and the time and memory maa review took,
# and how long chromium takes to open the page.  The archive is
# DIR, or one that scripts/bench-archive.sh makes (W x H Mono8 frames,
# SECONDS_RUN seconds at FPS frames/s, every frame kept).  Not part of make
# test.
#
#   scripts/bench-review.sh
#   env: DIR (an archive to review), W (1280), H (1024), FPS (30),
#        SECONDS_RUN (10), LIMIT (200), SHEET (48), THUMB (256)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
maa=${MAA:-$root/build/maa}
limit=${LIMIT:-200} sheet=${SHEET:-48} thumb=${THUMB:-256}
tmp=$(mktemp -d /tmp/bench-review.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
arch=${DIR:-}
if [ -z "$arch" ]; then
    arch=$tmp/arch
    DIR=$arch SECONDS_RUN=${SECONDS_RUN:-10} "$root/scripts/bench-archive.sh" >"$tmp/archive.log" 2>&1 ||
        { cat "$tmp/archive.log"; exit 1; }
    grep -E '^records' "$tmp/archive.log"
fi
frame=$(ls "$arch"/*.png 2>/dev/null | grep -v '\.mask\.png$' | tail -n 1)
[ -n "$frame" ] || { echo "$arch: no frames"; exit 1; }
echo "archive $arch: $(ls "$arch" | grep -c '\.json$') records, frames of$(file -b "$frame" | cut -d, -f2-3)"
run()
{
    local what=$1 n=$2 out=$3
    shift 3
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$maa" review "$arch" --limit "$n" --thumb "$thumb" \
        "$@" >/dev/null 2>"$tmp/err" || { echo "maa review $*: failed: $(tail -n 3 "$tmp/err")"; exit 1; }
    # the numbers through awk: printf does no arithmetic
    awk -v what="$what" -v n="$n" -v bytes="$(stat -c %s "$out")" \
        '{ printf "%-5s of %d records: %.1f MB (%.1f KB a record), %.1f s (%.0f ms a record), max RSS %.0f MB\n",
           what, n, bytes / 1e6, bytes / 1e3 / n, $1, 1000 * $1 / n, $2 / 1024 }' "$tmp/time"
}
run page "$limit" "$tmp/page.html" -o "$tmp/page.html"
run sheet "$sheet" "$tmp/sheet.png" --png "$tmp/sheet.png"
# how long a browser takes to open the page: chromium's screenshot of it
if command -v chromium >/dev/null; then
    /usr/bin/time -f "%e" -o "$tmp/time" chromium --headless --no-sandbox --disable-gpu \
        --window-size=1280,1000 --screenshot="$tmp/shot.png" "file://$tmp/page.html" >/dev/null 2>&1
    echo "chromium opens the page and takes a screenshot in $(cat "$tmp/time") s"
fi
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

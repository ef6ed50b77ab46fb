#!/usr/bin/env bash
# Runs every test of the project and ends with the total "N passed, N failed".
# C tests: build/tests/test_*; Python tests: tests/test_*.py (Debian's
# python3 with torch); end-to-end tests: tests/e2e_*.sh.  Each prints its own
# "N passed, N failed[, N skipped]" line, which is summed here.
# TESTS="pattern" limits the run to the tests whose names match.
# A program still running after TEST_TIMEOUT seconds (default 600; the
# whole run takes about 4 minutes on the 2-core development machine) is
# killed, with everything it started, and counted as a failure under its
# name, so that one hung test does not hang the run.  A sanitizer report in a program's output fails it too.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHON
limit=${TEST_TIMEOUT:-600}
pass=0 fail=0 skip=0
for t in build/tests/test_* tests/test_*.py tests/e2e_*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.d|*.o) continue ;; esac
    [ -n "${TESTS:-}" ] && [[ "$t" != *${TESTS}* ]] && continue
    echo "=== $t"
    log=$(mktemp)
    start=$SECONDS
    # timeout signals its whole process group: the test and what it started.
    case "$t" in
        *.py) timeout -k 10 "$limit" "$PYTHON" "$t" 2>&1 | tee "$log" ;;
        *.sh) timeout -k 10 "$limit" bash "$t" 2>&1 | tee "$log" ;;
        *) timeout -k 10 "$limit" "$t" 2>&1 | tee "$log" ;;
    esac
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    sanitizer=$(grep -cE '^(WARNING|ERROR): [A-Za-z]+Sanitizer|: runtime error: ' "$log")
    rm -f "$log"
    if { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && [ $((SECONDS - start)) -ge "$limit" ]; then
        echo "!!! $t still ran after $limit s (TEST_TIMEOUT): killed, counted as one failure"
        fail=$((fail + 1)); continue
    fi
    if [ -z "$line" ]; then
        echo "!!! $t exited $rc without a summary line: counted as one failure"
        fail=$((fail + 1)); continue
    fi
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
    s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
    if [ "$sanitizer" -gt 0 ] && [ "$f" -eq 0 ]; then
        echo "!!! $t: $sanitizer sanitizer reports in its output: counted as one failure"
        fail=$((fail + 1))
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "!!! $t exited $rc: counted as one failure"; fail=$((fail + 1))
    fi
done
echo
if [ "$skip" -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"
else echo "$pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# Runs every test of the project and ends with the total "N passed, N failed".
# C tests: build/tests/test_*; Python tests: tests/test_*.py (Debian's
# python3 with torch); end-to-end tests: tests/e2e_*.sh.  Each prints its own
# "N passed, N failed[, N skipped]" line, which is summed here.
# TESTS="pattern" limits the run to the tests whose names match.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHON
pass=0 fail=0 skip=0
for t in build/tests/test_* tests/test_*.py tests/e2e_*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.d|*.o) continue ;; esac
    [ -n "${TESTS:-}" ] && [[ "$t" != *${TESTS}* ]] && continue
    echo "=== $t"
    log=$(mktemp)
    case "$t" in
        *.py) "$PYTHON" "$t" 2>&1 | tee "$log" ;;
        *.sh) bash "$t" 2>&1 | tee "$log" ;;
        *) "$t" 2>&1 | tee "$log" ;;
    esac
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$line" ]; then
        echo "!!! $t exited $rc without a summary line: counted as one failure"
        fail=$((fail + 1)); continue
    fi
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
    s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "!!! $t exited $rc: counted as one failure"; fail=$((fail + 1))
    fi
done
echo
if [ "$skip" -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"
else echo "$pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# Runs every test of the project and ends with the total "N passed, N failed".
# C tests: build/tests/test_*; Python tests: tests/test_*.py (Debian's
# python3 with torch); end-to-end tests: tests/e2e_*.sh.  Each prints its own
# "N passed, N failed[, N skipped]" line, which is summed here.
# Then the sanitizer passes, when their builds are there (make test builds
# them: make san tsan): the C tests and the daemons' end-to-end tests again on
# the AddressSanitizer + UndefinedBehaviorSanitizer build (build/san/), and
# the threaded modules' tests on the ThreadSanitizer build (build/tsan/).
# TESTS="pattern" limits the run to the tests whose names match.
# A program still running after TEST_TIMEOUT seconds (default 600) is
# killed, with everything it started, and counted as a failure under its
# name, so that one hung test does not hang the run.  The run time is
# printed before the totals (.ci/run on the 2-core development machine,
# 2026-12-04: 15 min 2 s with the build).  A sanitizer report in a
# program's output fails it too.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHON
limit=${TEST_TIMEOUT:-600}
pass=0 fail=0 skip=0

# run_test LABEL TEST [VAR=value...]: runs TEST (a program, .py or .sh) with
# the environment variables given, and adds its summary line to the totals.
run_test()
{
    local label=$1 t=$2
    shift 2
    [ -n "${TESTS:-}" ] && [[ "$label" != *${TESTS}* ]] && return
    echo "=== $label"
    local log start rc line sanitizer p f s
    log=$(mktemp)
    start=$SECONDS
    # timeout signals its whole process group: the test and what it started.
    case "$t" in
        *.py) env "$@" timeout -k 10 "$limit" "$PYTHON" "$t" 2>&1 | tee "$log" ;;
        *.sh) env "$@" timeout -k 10 "$limit" bash "$t" 2>&1 | tee "$log" ;;
        *) env "$@" timeout -k 10 "$limit" "$t" 2>&1 | tee "$log" ;;
    esac
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    sanitizer=$(grep -cE '^(WARNING|ERROR): [A-Za-z]+Sanitizer|: runtime error: ' "$log")
    rm -f "$log"
    if { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && [ $((SECONDS - start)) -ge "$limit" ]; then
        echo "!!! $label still ran after $limit s (TEST_TIMEOUT): killed, counted as one failure"
        fail=$((fail + 1)); return
    fi
    if [ -z "$line" ]; then
        echo "!!! $label exited $rc without a summary line: counted as one failure"
        fail=$((fail + 1)); return
    fi
    p=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$line")
    s=$(sed -nE 's/.*, ([0-9]+) skipped.*/\1/p' <<<"$line")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
    if [ "$sanitizer" -gt 0 ] && [ "$f" -eq 0 ]; then
        echo "!!! $label: $sanitizer sanitizer reports in its output: counted as one failure"
        fail=$((fail + 1))
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "!!! $label exited $rc: counted as one failure"; fail=$((fail + 1))
    fi
}

for t in build/tests/test_* tests/test_*.py tests/e2e_*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.d|*.o) continue ;; esac # the TSan ring test's dependency file
    run_test "$t" "$t"
done

# ASan + UBSan: leaks are reported (LeakSanitizer) and fail the test too.
if [ -d build/san/tests ]; then
    for t in build/san/tests/test_*; do
        run_test "$t" "$t" ASAN_OPTIONS=detect_leaks=1
    done
    for t in tests/e2e_maad_*.sh tests/e2e_plc.sh; do
        run_test "san: $t" "$t" MAA="$PWD/build/san/maa" MAAD="$PWD/build/san/maad" \
            MAA_PLC="$PWD/build/san/maa-plc" ASAN_OPTIONS=detect_leaks=1
    done
fi
# TSan: OpenMP's thread pool (libgomp) and ZeroMQ's I/O threads are not
# instrumented, so their own synchronisation is invisible to TSan: one
# OpenMP thread, and tests/tsan.supp for ZeroMQ's internals.  The threads
# of maad and maa-plc (capture, worker, keep-alive, bus) are all checked.
if [ -d build/tsan/tests ]; then
    for t in build/tsan/tests/test_*; do
        run_test "$t" "$t" OMP_NUM_THREADS=1 TSAN_OPTIONS=suppressions="$PWD/tests/tsan.supp"
    done
fi

echo
echo "run time: $((SECONDS / 60)) min $((SECONDS % 60)) s"
if [ "$skip" -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"
else echo "$pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]

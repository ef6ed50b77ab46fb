#!/usr/bin/env bash
# e2e_fuzz — the libFuzzer harnesses (tests/fuzz/, docs/fuzzing.md): each
# runs over its seed corpus, tests/fuzz/corpus/NAME/, and goes on fuzzing
# until FUZZ_SECONDS (default 12) have passed; a crash, a leak, a sanitizer
# report or an input slower than FUZZ_INPUT_TIMEOUT seconds (default 10)
# fails it.  Then every input kept under tests/fuzz/crashes/NAME/ runs once
# through its harness: each is a test of its own, failing for as long as
# its bug is there.  `make fuzz` runs this with FUZZ_SECONDS=60.
#
# FUZZ=pattern runs only the harnesses whose names match; FUZZ_WORK keeps
# the inputs each harness finds (FUZZ_WORK/NAME/) for the next run
# (default: a temporary folder, removed).  A crash found is kept as
# build/fuzz/artifacts/NAME-crash-<sha1>, and printed in base64 for a CI
# log.  Skipped where clang, its libFuzzer runtime or its OpenMP are
# missing (scripts/install-deps.sh installs them).
set -u
cd "$(dirname "$0")/.."
. scripts/e2e-lib.sh
cc=${FUZZ_CC:-clang}
seconds=${FUZZ_SECONDS:-12}
input_timeout=${FUZZ_INPUT_TIMEOUT:-10}
# An undefined behaviour is reported with its stack, as the other errors.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# The whole toolchain the harnesses need, tried on an empty harness.
if ! echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' |
    "$cc" -x c -fsanitize=fuzzer,address,undefined -fopenmp -o /dev/null - 2>/dev/null; then
    echo "  SKIP: $cc cannot build a libFuzzer harness with OpenMP (install clang libclang-rt-14-dev libomp-dev)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
if ! out=$(make -s --no-print-directory fuzz-build 2>&1); then
    fail "build the harnesses (make fuzz-build)" "$out"
    e2e_summary
    exit 1
fi

work=${FUZZ_WORK:-$(mktemp -d /tmp/e2e_fuzz.XXXXXX)}
log=$(mktemp)
trap 'rm -f "$log"; [ -n "${FUZZ_WORK:-}" ] || rm -rf "$work"' EXIT
artifacts=build/fuzz/artifacts
mkdir -p "$artifacts"

# What a failed run printed that says why: the sanitizer's or libFuzzer's
# report, from its first line to its summary, without the build ids.
report()
{
    sed -n '/^==[0-9]*== \?ERROR: \|: runtime error: \|^ALARM: /,/^SUMMARY: /p' "$log" |
        sed 's/ (BuildId: [0-9a-f]*)//' | head -n 60
}

for src in tests/fuzz/fuzz_*.c; do
    name=${src#tests/fuzz/fuzz_}
    name=${name%.c}
    h=build/fuzz/fuzz_$name
    [ -n "${FUZZ:-}" ] && [[ "$name" != *${FUZZ}* ]] && continue
    seeds=tests/fuzz/corpus/$name
    if [ ! -d "$seeds" ]; then
        fail "$name" "no seed corpus $seeds"
        continue
    fi
    # The tokens of the harness's input language, which the fuzzer would
    # take long to guess.
    case "$name" in
        watch | plc_msg | model) dict=(-dict=tests/fuzz/dict/json.dict) ;;
        config | plc_config | calibration) dict=(-dict=tests/fuzz/dict/yaml.dict) ;;
        *) dict=() ;;
    esac
    mkdir -p "$work/$name"
    start=$SECONDS
    # New inputs go to the first folder, the work one: the seeds stay as
    # they are.
    "$h" -max_total_time="$seconds" -timeout="$input_timeout" -print_final_stats=1 \
        "${dict[@]}" -artifact_prefix="$artifacts/$name-" "$work/$name" "$seeds" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
        ok "$name: ${runs:-?} inputs in $((SECONDS - start)) s, ${cov:-cov: ?}, $(ls "$seeds" | wc -l) seeds"
        continue
    fi
    fail "$name" "exit $rc after $((SECONDS - start)) s"
    report
    for a in $(sed -n 's/.*Test unit written to //p' "$log"); do
        echo "  input: $a ($(stat -c %s "$a") bytes), base64 (at most 4 KiB):"
        head -c 4096 "$a" | base64 -w 76 | sed 's/^/    /'
    done
done

# Kept crash inputs: regression tests of the bugs they found.
for c in tests/fuzz/crashes/*/*; do
    [ -f "$c" ] || continue
    name=$(basename "$(dirname "$c")")
    [ -n "${FUZZ:-}" ] && [[ "$name" != *${FUZZ}* ]] && continue
    h=build/fuzz/fuzz_$name
    if [ ! -x "$h" ]; then
        fail "$c" "no harness $h"
        continue
    fi
    if "$h" -timeout="$input_timeout" "$c" >"$log" 2>&1; then
        ok "crash input $c"
    else
        fail "crash input $c" "still fails"
        report
    fi
done
e2e_summary

#!/bin/sh
# bad_input.sh — `samebits inspect` and `samebits diff` on every malformed
# checkpoint of tests/test_safetensors.c (written by `test_safetensors
# --write-bad DIR`), plus a missing file and a directory. Each run must exit
# with 2 (not crash: a signal or sanitizer report gives another code), print
# exactly one line on stderr naming the file, and nothing on stdout.
#
# Usage: bad_input.sh CASE SAMEBITS TEST_SAFETENSORS WORKDIR
# Not here: which message each file gets (test_safetensors checks that).
set -u
case_name=$1 samebits=$2 writer=$3 work=$4

rm -rf "$work"
mkdir -p "$work/bad" || exit 1
"$writer" --write-bad "$work/bad" || { echo "cannot write the bad files" >&2; exit 1; }
"$writer" --write-good "$work/good.safetensors" || { echo "cannot write the good file" >&2; exit 1; }
: > "$work/bad/zz_empty_file.safetensors"
mkdir "$work/bad/zz_a_directory.safetensors"

failures=0 runs=0
# expect_2 FILE CMD...: runs CMD, checks exit 2, one stderr line naming FILE, empty stdout
expect_2() {
    file=$1
    shift
    "$@" > "$work/out" 2> "$work/err"
    rc=$?
    runs=$((runs + 1))
    lines=$(wc -l < "$work/err")
    if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || [ -s "$work/out" ] ||
        ! grep -qF "$file" "$work/err"; then
        echo "FAIL: $* -> exit $rc, $lines stderr line(s):" >&2
        cat "$work/err" >&2
        failures=$((failures + 1))
    fi
}

good=$work/good.safetensors
count=0
for f in "$work"/bad/*.safetensors "$work/missing.safetensors"; do
    count=$((count + 1))
    case $case_name in
    inspect_should_exit_2_with_one_line_naming_the_file_for_every_bad_file)
        expect_2 "$f" "$samebits" inspect "$f"
        expect_2 "$f" "$samebits" inspect --json "$f"
        ;;
    diff_should_exit_2_with_one_line_naming_the_file_for_every_bad_file)
        expect_2 "$f" "$samebits" diff "$f" "$good"
        expect_2 "$f" "$samebits" diff "$good" "$f"
        expect_2 "$f" "$samebits" diff --json --ulp 4 "$f" "$good"
        ;;
    *)
        echo "unknown case $case_name" >&2
        exit 2
        ;;
    esac
done

# the good file must pass, or the checks above prove nothing
"$samebits" inspect "$good" > /dev/null || { echo "FAIL: good file rejected" >&2; failures=$((failures + 1)); }
"$samebits" diff "$good" "$good" > /dev/null || { echo "FAIL: good diff failed" >&2; failures=$((failures + 1)); }

if [ "$count" -lt 30 ]; then
    echo "FAIL: only $count bad files were written" >&2
    failures=$((failures + 1))
fi
echo "$runs runs on $count bad files, $failures failure(s)"
[ "$failures" -eq 0 ] && rm -rf "$work"
[ "$failures" -eq 0 ]

#!/usr/bin/env bash
# fuzz_bench.sh: every fuzz target for a longer budget than CI's 20 seconds.
#
# Builds the libFuzzer targets (clang, -DPXY_FUZZ=ON: ASan + UBSan + fuzzer)
# in build-fuzz unless they are there, then runs each target in turn for
# --seconds (default 600) from a copy of its corpus under tests/fuzz/corpus,
# and prints per target: runs, executions per second, coverage (edges and
# features), corpus growth and what it found. An input that crashes, leaks
# or times out is copied to tests/fuzz/regressions/<target>/, where ctest's
# fuzz.<target>.replay replays it from then on (commit it with the fix).
# --merge writes the new interesting inputs back into the corpus (minimised
# with -merge=1). Not a pass/fail test: it exits 0 unless it could not run.
#
#   tests/bench/fuzz_bench.sh [--seconds S] [--targets "tap hs ..."] [--merge]
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SECONDS_EACH=600
TARGETS=$(sed -n 's/^set(PXY_FUZZ_TARGETS \(.*\))$/\1/p' "$REPO/tests/fuzz/CMakeLists.txt")
MERGE=0
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) SECONDS_EACH=$2; shift 2 ;;
	--targets) TARGETS=$2; shift 2 ;;
	--merge) MERGE=1; shift ;;
	-h | --help) sed -n '2,14p' "$0"; exit 0 ;;
	*) echo "fuzz_bench: unknown option $1" >&2; exit 2 ;;
	esac
done
die() { echo "fuzz_bench: $*" >&2; exit 1; }
command -v clang >/dev/null || die "clang is not installed"
B=$REPO/build-fuzz
if [ ! -f "$B/CMakeCache.txt" ]; then
	CC=clang cmake -S "$REPO" -B "$B" -DPXY_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || die "cmake failed"
fi
# shellcheck disable=SC2086
cmake --build "$B" -j2 --target $(for t in $TARGETS; do printf '%s_fuzzer ' "$t"; done) >/tmp/fuzz_bench.build.log 2>&1 ||
	die "build failed: $(tail -n 20 /tmp/fuzz_bench.build.log)"

T=$(mktemp -d /tmp/fuzz_bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
echo "fuzz_bench: ${SECONDS_EACH}s per target, $(clang --version | head -n1)"
printf '%-8s %10s %9s %7s %9s %15s  %s\n' target runs exec/s edges features "corpus" found
found_any=0
for t in $TARGETS; do
	fz=$B/tests/fuzz/${t}_fuzzer
	[ -x "$fz" ] || die "no $fz"
	mkdir -p "$T/$t/corpus" "$T/$t/art"
	cp "$REPO/tests/fuzz/corpus/$t/"* "$T/$t/corpus/" 2>/dev/null
	n0=$(ls "$T/$t/corpus" | wc -l)
	(cd "$T/$t" && "$fz" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$T/$t/art/" "$T/$t/corpus" >"$T/$t/log" 2>&1)
	n1=$(ls "$T/$t/corpus" | wc -l)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/$t/log" | tail -n1)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$T/$t/log" | tail -n1)
	cov=$(grep -o 'cov: [0-9]*' "$T/$t/log" | tail -n1 | sed 's/cov: //')
	ft=$(grep -o 'ft: [0-9]*' "$T/$t/log" | tail -n1 | sed 's/ft: //')
	found="nothing"
	arts=$(ls "$T/$t/art" 2>/dev/null)
	if [ -n "$arts" ]; then
		found_any=1
		mkdir -p "$REPO/tests/fuzz/regressions/$t"
		for a in $arts; do
			cp "$T/$t/art/$a" "$REPO/tests/fuzz/regressions/$t/bench-$a"
		done
		found="$(echo "$arts" | wc -l) input(s) -> tests/fuzz/regressions/$t/bench-*"
	fi
	printf '%-8s %10s %9s %7s %9s %15s  %s\n' "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$n0 -> $n1" "$found"
	if [ -n "$arts" ]; then
		grep -m1 -A12 '==ERROR\|runtime error\|ALARM' "$T/$t/log" | sed 's/^/    /'
	fi
	if [ "$MERGE" = 1 ] && [ "$n1" -gt "$n0" ]; then
		mkdir -p "$T/$t/merged"
		"$fz" -merge=1 -max_len=65536 "$T/$t/merged" "$REPO/tests/fuzz/corpus/$t" "$T/$t/corpus" >/dev/null 2>&1 &&
			cp -n "$T/$t/merged/"* "$REPO/tests/fuzz/corpus/$t/" 2>/dev/null
		echo "    merged: $(ls "$REPO/tests/fuzz/corpus/$t" | wc -l) inputs in tests/fuzz/corpus/$t"
	fi
done
[ "$found_any" = 1 ] && echo "inputs were found: replay them with ctest -R fuzz.<target>.replay, fix, and commit them"
exit 0

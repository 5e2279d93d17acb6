#!/usr/bin/env bash
# workers_bench.sh: proxyssl with --workers 1 and --workers 2 (or the counts
# given), each against a direct connection to the same nginx in the same run
# of tests/bench/bench.sh: bulk throughput (parallel curl downloads) and new
# connections per second (parallel openssl s_time -new clients, a full RSA
# handshake each). Prints each run's medians, then one table with the ratio
# of every worker count to one worker and to direct. Every proxied
# connection must still be decrypted in full (bench.sh checks and prints it).
# Not a pass/fail test.
#
#   tests/bench/workers_bench.sh [--workers "1 2"] [--short] [bench.sh options...]
#
# Defaults passed to bench.sh: --build --paths direct,proxyssl --streams 2 --clients 4
# --nginx-workers 2 (so that neither the clients nor nginx are one process).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COUNTS="1 2"
PASS=()
while [ $# -gt 0 ]; do
	case $1 in
	--workers) COUNTS=$2; shift 2 ;;
	-h | --help) sed -n '2,15p' "$0"; exit 0 ;;
	*) PASS+=("$1"); shift ;;
	esac
done
T=$(mktemp -d /tmp/workers_bench.XXXXXX)
trap 'rm -rf "$T"' EXIT

declare -A VAL
METRICS=()
for n in $COUNTS; do
	echo "== --workers $n"
	"$HERE/bench.sh" --build --paths direct,proxyssl --streams 2 --clients 4 --nginx-workers 2 \
		"${PASS[@]+"${PASS[@]}"}" --proxy-arg "--workers=$n" >"$T/run.$n" 2>&1
	rc=$?
	sed -n '/^-- results/,/^$/p;/^-- decryption kept up/,/^$/p' "$T/run.$n"
	[ $rc = 0 ] || { tail -n 20 "$T/run.$n"; echo "workers_bench: bench.sh failed for --workers $n"; exit 1; }
	# rows: "metric unit | direct | proxyssl | proxyssl/direct"
	while IFS='|' read -r m d p _; do
		m=$(echo "$m" | sed 's/ *$//')
		case $m in bulk* | conns*) ;; *) continue ;; esac
		[ -n "${VAL["$m|seen"]:-}" ] || { METRICS+=("$m"); VAL["$m|seen"]=1; }
		VAL["$m|direct|$n"]=$(echo "$d" | tr -d ' ')
		VAL["$m|$n"]=$(echo "$p" | tr -d ' ')
	done < <(sed -n '/^-- results/,/^$/p' "$T/run.$n" | tail -n +4)
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
first=${COUNTS%% *}
echo "== summary (medians; each count's direct is from its own run)"
hdr=$(printf '%-30s' metric)
for n in $COUNTS; do hdr+=$(printf ' | %9s | %9s' "direct" "$n worker"); done
for n in $COUNTS; do [ "$n" != "$first" ] && hdr+=$(printf ' | %8s' "${n}w/${first}w"); done
for n in $COUNTS; do hdr+=$(printf ' | %9s' "${n}w/dir"); done
echo "$hdr"
echo "$hdr" | sed 's/[^|]/-/g'
for m in "${METRICS[@]}"; do
	row=$(printf '%-30s' "$m")
	for n in $COUNTS; do row+=$(printf ' | %9s | %9s' "${VAL["$m|direct|$n"]:--}" "${VAL["$m|$n"]:--}"); done
	for n in $COUNTS; do
		[ "$n" != "$first" ] && row+=$(printf ' | %8s' "$(ratio "${VAL["$m|$n"]:--}" "${VAL["$m|$first"]:--}")")
	done
	for n in $COUNTS; do row+=$(printf ' | %9s' "$(ratio "${VAL["$m|$n"]:--}" "${VAL["$m|direct|$n"]:--}")"); done
	echo "$row"
done

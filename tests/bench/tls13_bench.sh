#!/usr/bin/env bash
# tls13_bench.sh: bulk throughput and CPU of proxyssl decrypting TLS 1.3 with
# forwarded secrets (--key-source), beside the same download over TLS 1.2
# with RSA key exchange (the RSA key here), and each against the same server
# reached directly, all in one run on 127.0.0.1.
#
# Not a pass/fail test: it prints numbers and ratios. The server is
# `openssl s_server -WWW -keylogfile` serving a file (it writes the key log
# the proxy follows); the client is curl. Each configuration runs --runs
# times, interleaved; the table shows medians. The proxy's CPU comes from
# /proc/PID/stat over each download.
#
#   tests/bench/tls13_bench.sh [--proxy PATH] [--size MiB] [--runs N] [--engine NAME]
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PROXY=$REPO/build/proxyssl
SIZE_MIB=256
RUNS=3
ENGINE=
while [ $# -gt 0 ]; do
	case "$1" in
	--proxy) PROXY=$2; shift ;;
	--size) SIZE_MIB=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--engine) ENGINE=$2; shift ;;
	-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "tls13_bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ -x "$PROXY" ] || { echo "tls13_bench.sh: $PROXY is not built (cmake --build build)" >&2; exit 1; }
for t in openssl curl python3; do command -v $t >/dev/null || { echo "tls13_bench.sh: $t not found" >&2; exit 1; }; done

T=$(mktemp -d "${TMPDIR:-/tmp}/tls13_bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/srv.key" -out "$T/srv.crt" -days 2 -subj /CN=bench.test \
	>/dev/null 2>&1
mkdir "$T/www"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$T/www/big.bin"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# servers: TLS 1.3 (AES-128-GCM) and TLS 1.2 RSA key exchange (AES128-GCM-SHA256), both logging keys
S13=$(free_port)
(cd "$T/www" && exec openssl s_server -accept "127.0.0.1:$S13" -WWW -cert "$T/srv.crt" -key "$T/srv.key" -tls1_3 \
	-ciphersuites TLS_AES_128_GCM_SHA256 -keylogfile "$T/keys.log" -quiet >/dev/null 2>&1) &
PIDS+=($!)
S12=$(free_port)
(cd "$T/www" && exec openssl s_server -accept "127.0.0.1:$S12" -WWW -cert "$T/srv.crt" -key "$T/srv.key" -no_tls1_3 \
	-cipher AES128-GCM-SHA256 -quiet >/dev/null 2>&1) &
PIDS+=($!)
proxy() { # PORT BACKEND: a proxyssl in front of BACKEND; its pid in PXPID
	"$PROXY" --listen "127.0.0.1:$1" --backend "127.0.0.1:$2" --cert "$T/srv.crt" --key "$T/srv.key" \
		--key-source "file:$T/keys.log" ${ENGINE:+--engine "$ENGINE"} --log "$T/px-$1.log" &
	PXPID=$!
	PIDS+=("$PXPID")
}
P13=$(free_port)
proxy "$P13" "$S13"
PX13=$PXPID
P12=$(free_port)
proxy "$P12" "$S12"
PX12=$PXPID
sleep 1

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# run NAME PORT TLSFLAG [PROXYPID]: GB/s, and the proxy's CPU seconds per GB when it is in the path
run() {
	local port=$2 flag=$3 pid=${4:-} c0=0 c1=0 t
	[ -n "$pid" ] && c0=$(cpu_ticks "$pid")
	t=$(curl -sS -k "$flag" --max-time 600 -o /dev/null -w '%{time_total}' \
		--resolve "bench.test:$port:127.0.0.1" "https://bench.test:$port/big.bin") || { echo "0 0"; return; }
	[ -n "$pid" ] && c1=$(cpu_ticks "$pid")
	python3 -c "import sys; b=$SIZE_MIB*1048576; t=float('$t'); c=($c1-$c0)/$(getconf CLK_TCK); print('%.3f %.2f' % (b/t/1e9, c/(b/1e9)))"
}
declare -A R
for ((i = 0; i < RUNS; i++)); do
	R[d13]+="$(run d13 "$S13" --tlsv1.3)"$'\n'
	R[p13]+="$(run p13 "$P13" --tlsv1.3 "$PX13")"$'\n'
	R[d12]+="$(run d12 "$S12" --tlsv1.2)"$'\n'
	R[p12]+="$(run p12 "$P12" --tlsv1.2 "$PX12")"$'\n'
done
med() { printf '%s' "${R[$1]}" | awk -v k="$2" 'NF { print $k }' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
grep -q "keys=forwarded" "$T/px-$P13.log" || echo "tls13_bench.sh: WARNING: the TLS 1.3 path was not decrypted with forwarded keys" >&2
grep "conn id=" "$T/px-$P13.log" | grep -vq "verdict=decrypted" && echo "tls13_bench.sh: WARNING: a TLS 1.3 download was not decrypted" >&2
grep "conn id=" "$T/px-$P12.log" | grep -vq "verdict=decrypted" && echo "tls13_bench.sh: WARNING: a TLS 1.2 download was not decrypted" >&2
printf 'bulk download of %d MiB, %d runs (medians), curl <- [proxyssl] <- openssl s_server -WWW\n' "$SIZE_MIB" "$RUNS"
printf '%-34s %10s %14s %18s\n' "path" "GB/s" "vs direct" "proxy CPU s/GB"
for p in d13 p13 d12 p12; do
	case $p in
	d13) name="TLS 1.3 AES-128-GCM direct" base=d13 ;;
	p13) name="TLS 1.3 through proxyssl (keys fwd)" base=d13 ;;
	d12) name="TLS 1.2 RSA AES-128-GCM direct" base=d12 ;;
	p12) name="TLS 1.2 RSA through proxyssl" base=d12 ;;
	esac
	g=$(med $p 1)
	b=$(med $base 1)
	c=$(med $p 2)
	printf '%-34s %10s %14s %18s\n' "$name" "$g" "$(python3 -c "print('%.2f' % ($g/$b if $b else 0))")" \
		"$([ "${p:0:1}" = p ] && echo "$c" || echo -)"
done

#!/usr/bin/env bash
# A card that fails while connections run: the device engine fails over to
# software and no connection notices. nginx behind the proxy, curl in front;
# each case runs a 4 MiB download and a 4 MiB upload through one proxy while
#  - the emulated card stops after ten kernel runs, mid-transfer (its runs end
#    in ERROR), or
#  - the emulated card hangs (no run finishes within --engine-timeout).
# Every transfer must be exact and fully decrypted (sinks exact, nothing
# dropped), the log must name the failure once (WARN), and SIGUSR1's counters
# must show the device failure and the jobs run in software.
. "$(dirname "$0")/lib.sh"
need_tool curl nginx

N=$((4 * 1024 * 1024))
gen_cert srv
PT="$T/plaintext"
mkdir -p "$T/www"
head -c $N /dev/urandom >"$T/www/down.bin"
head -c $N /dev/urandom >"$T/up.bin"
start_nginx nginx "$T/www" "$T/srv.crt" "$T/srv.key" "AES128-GCM-SHA256:AES256-SHA"

# run_case NAME SUITE ENV MIN_CARD_JOBS -- PROXY_ARGS...
run_case() {
	local name=$1 suite=$2 env=$3 min_card=$4 code
	shift 5
	PX_WRAP="env $env" start_proxy "px-$name" --engine emu --backend "127.0.0.1:$NG_PORT" \
		--cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT" --max-pending 64M "$@"
	local opts=(-sS -k --tlsv1.2 --tls-max 1.2 --ciphers "$suite" --max-time 120
		--resolve "$name.get:$PX_PORT:127.0.0.1" --resolve "$name.put:$PX_PORT:127.0.0.1")

	code=$(curl "${opts[@]}" -o "$T/$name.got" -w '%{http_code}' "https://$name.get:$PX_PORT/down.bin" \
		2>"$T/$name.get.err") || fail "$name: curl GET failed: $(cat "$T/$name.get.err")"
	[ "$code" = 200 ] || fail "$name: GET answered $code"
	same "$T/$name.got" "$T/www/down.bin" "$name: the file curl downloaded"
	get_conn "$PX_LOG" "$name.get"
	expect_fields "$CONN" verdict=decrypted reason=- close=fin
	case $CONN in *dropped_*) fail "$name: records dropped: $CONN" ;; esac
	check_http_sink "$PT/$CONN_ID.s2c" "$T/www/down.bin" "HTTP/1.1 200 OK"

	code=$(curl "${opts[@]}" -H 'Expect:' -T "$T/up.bin" -o /dev/null -w '%{http_code}' \
		"https://$name.put:$PX_PORT/up/$name.bin" 2>"$T/$name.put.err") ||
		fail "$name: curl PUT failed: $(cat "$T/$name.put.err")"
	case $code in 201 | 204) ;; *) fail "$name: PUT answered $code" ;; esac
	same "$T/www/up/$name.bin" "$T/up.bin" "$name: the file nginx stored"
	get_conn "$PX_LOG" "$name.put"
	expect_fields "$CONN" verdict=decrypted reason=- close=fin
	case $CONN in *dropped_*) fail "$name: records dropped: $CONN" ;; esac
	check_http_sink "$PT/$CONN_ID.c2s" "$T/up.bin" "PUT /up/$name.bin HTTP/1.1"

	[ "$(grep -c ' WARN engine emu: device failure' "$PX_LOG")" = 1 ] ||
		fail "$name: expected one 'device failure' WARN line in $PX_LOG"
	kill -USR1 "$PX_PID"
	wait_for 10 grep -q ' stats engine name=emu ' "$PX_LOG" || fail "$name: no engine stats after SIGUSR1"
	local st
	st=$(grep ' stats engine name=emu ' "$PX_LOG" | tail -n1)
	[ "$(field "$st" device_failures)" -ge 1 ] || fail "$name: device_failures not counted: $st"
	[ "$(field "$st" software_jobs)" -gt 0 ] || fail "$name: no jobs ran in software: $st"
	[ "$(field "$st" errors)" = 0 ] || fail "$name: engine errors: $st"
	[ "$(field "$st" batched_jobs)" -ge "$min_card" ] || fail "$name: expected >= $min_card jobs on the card first: $st"
	stop_group "$PX_PID"
	say "$name: 4 MiB down and up exact and decrypted across the failure: $(grep -o 'device failure ([^)]*)' "$PX_LOG"); $(field "$st" batched_jobs) jobs on the card, $(field "$st" software_jobs) in software"
}

run_case card-error AES128-GCM-SHA256 PXY_EMU_FAIL_AFTER=10 10 --
run_case card-hang AES256-SHA PXY_EMU_STALL_MS=2000 1 -- --engine-timeout 300
say "failover ok"

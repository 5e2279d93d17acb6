#!/usr/bin/env bash
# SIGTERM drains: the listener closes at once (new clients are refused), open
# connections go on until they end by themselves, then the proxy exits 0.
# An open TLS session (s_client against gnutls-serv --echo) must keep working
# after the signal, be decrypted to the end and be logged close=fin. When the
# drain time runs out, or at a second signal, what is left is reset and
# logged close=shutdown; --drain-timeout 0 resets at once.
. "$(dirname "$0")/lib.sh"
need_tool gnutls-serv

gen_cert srv srv.test
PT="$T/plaintext"
bg echo gnutls-serv --echo -p 0 --x509certfile "$T/srv.crt" --x509keyfile "$T/srv.key" \
	--priority "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA"
port=$(listen_port_of "$BG_PID") || fail "gnutls-serv did not listen"

# open_client NAME: fifo_client, its stdin on fd 8
open_client() {
	fifo_client "$1"
	exec 8>"$T/$1.in"
}
# echo_ok NAME LINE: LINE goes out and comes back
echo_ok() {
	echo "$2" >&8
	wait_for 10 grep -qx "$2" "$T/$1.out" || fail "$1: '$2' did not come back"
}
proxy_stopped() { ! alive "$PX_PID"; }
refused() { ! "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 2)' "$PX_PORT" 2>/dev/null; }

# 1. drain: the session goes on after SIGTERM; new ones are refused; exit when it ends
start_proxy px1 --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT" \
	--drain-timeout 20000
open_client a
echo_ok a "before the signal"
kill -TERM "$PX_PID"
wait_for 5 grep -q "stopping: listener closed; draining 1 connections for up to 20000 ms" "$PX_LOG" ||
	fail "no drain line: $(grep stopping "$PX_LOG")"
wait_for 5 refused || fail "the listener still accepts after SIGTERM"
echo_ok a "after the signal"
alive "$PX_PID" || fail "the proxy exited with a connection open"
exec 8>&- # the client ends its session
wait_for 10 proxy_stopped || fail "the proxy did not exit once its last connection ended"
wait "$PX_PID"
rc=$?
[ "$rc" = 0 ] || fail "exit status $rc after the drain, expected 0"
get_conn "$PX_LOG" a.test
expect_fields "$CONN" verdict=decrypted close=fin
printf 'before the signal\nafter the signal\n' >"$T/a.sent"
check_sink "$PT" "$CONN_ID" c2s "$T/a.sent"
say "SIGTERM: listener closed, the open session went on and was decrypted to its end, exit 0"

# 2. the drain time runs out: reset, logged close=shutdown
start_proxy px2 --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --drain-timeout 1000
open_client b
echo_ok b "hello"
t0=$(date +%s%N)
kill -TERM "$PX_PID"
wait_for 10 proxy_stopped || fail "the proxy did not stop after its drain time"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -ge 900 ] || fail "stopped after $ms ms, before the 1000 ms drain time"
grep -q "drain time over: resetting 1 connections" "$PX_LOG" || fail "no 'drain time over' line"
get_conn "$PX_LOG" b.test
expect_fields "$CONN" verdict=decrypted close=shutdown
wait_exit "$CLI_PID" 10 || fail "s_client still runs after the reset"
exec 8>&-
say "drain time over after $ms ms: reset, close=shutdown"

# 3. a second signal resets at once; --drain-timeout 0 does at the first
for how in second-signal zero; do
	if [ $how = zero ]; then
		start_proxy "px-$how" --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --drain-timeout 0
	else
		start_proxy "px-$how" --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --drain-timeout 60000
	fi
	open_client "c-$how"
	echo_ok "c-$how" "hi"
	kill -TERM "$PX_PID"
	if [ $how = second-signal ]; then
		wait_for 5 grep -q "draining 1 connections" "$PX_LOG" || fail "$how: no drain line"
		kill -INT "$PX_PID"
	fi
	wait_for 5 proxy_stopped || fail "$how: the proxy did not stop at once"
	get_conn "$PX_LOG" "c-$how.test"
	expect_fields "$CONN" close=shutdown
	exec 8>&-
done
say "a second signal, or --drain-timeout 0: reset at once"

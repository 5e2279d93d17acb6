#!/usr/bin/env bash
# --workers 2: two io_uring loops, each its own listener on one port
# (SO_REUSEPORT), sharing the session cache. A real s_server behind, real
# s_client and curl in front:
#  - both workers take connections (the kernel spreads them by address);
#  - a session made through one worker is resumed through the other (by
#    s_client -sess_in) and decrypted: the cache is shared;
#  - every connection is decrypted, its sinks exact; ids and lines name the
#    worker; /metrics (served by worker 0) counts every worker's connections;
#  - SIGHUP reloads both, SIGTERM stops both (exit 0);
#  - --pcap FILE: each worker writes its own (FILE-w0, FILE-w1), one TCP stream
#    per connection in all (read back with tshark);
#  - with a Redis store (each worker its own local cache in front of it), a
#    session made through one worker is resumed through the other.
. "$(dirname "$0")/lib.sh"
need_tool curl

gen_cert srv srv.test
bg srv openssl s_server -accept 127.0.0.1:0 -www -tls1_2 -cipher AES128-GCM-SHA256:AES256-SHA \
	-cert "$T/srv.crt" -key "$T/srv.key"
sport=$(listen_port_of "$BG_PID") || fail "s_server did not listen"

start_proxy px --backend "127.0.0.1:$sport" --cert "$T/srv.crt" --key "$T/srv.key" --workers 2 \
	--metrics 127.0.0.1:0 --plaintext-dir "$T/pt" --pcap "$T/dec.pcapng"
wait_for 10 grep -q ' INFO 2 workers: w0, w1$' "$PX_LOG" || fail "no '2 workers' line"
[ "$(grep -c " listening on 127.0.0.1:$PX_PORT," "$PX_LOG")" = 2 ] || fail "the workers do not share the port"
MPORT=$(sed -n 's/.* INFO \[w0\] metrics on http:\/\/127\.0\.0\.1:\([0-9]*\)\/metrics$/\1/p' "$PX_LOG")
[ -n "$MPORT" ] || fail "no metrics line from w0"

# conn_of SNI: the one conn line with that SNI, any worker; sets CONN, CONN_ID, WORKER
conn_of() {
	wait_for 20 grep -q " INFO \[w[01]\] conn id=.* sni=$1 " "$PX_LOG" || fail "no conn line with sni=$1"
	CONN=$(grep " INFO \[w[01]\] conn id=.* sni=$1 " "$PX_LOG")
	[ "$(printf '%s\n' "$CONN" | wc -l)" = 1 ] || fail "several conn lines with sni=$1"
	CONN_ID=$(field "$CONN" id)
	WORKER=$(printf '%s\n' "$CONN" | sed 's/.* INFO \[\(w[01]\)\] conn .*/\1/')
	case $CONN_ID in "$PX_PID-$WORKER-"*) ;; *) fail "id $CONN_ID does not name its worker $WORKER" ;; esac
}
# sclient SNI [args]: one GET through the proxy with s_client
sclient() {
	local sni=$1
	shift
	printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername "$sni" \
		-tls1_2 -quiet "$@" >"$T/$sni.out" 2>"$T/$sni.err" || true
	grep -q '^HTTP/1.0 200 ok' "$T/$sni.out" || fail "$sni: no page: $(tail -3 "$T/$sni.err")"
}

# across PREFIX [SINKS]: a full handshake, then resumptions of its session until
# one lands on the other worker, every one decrypted (its plaintext sink exact
# when SINKS is given); sets FIRST, WORKER and other (how many resumptions)
across() {
	local p=$1 sinks=${2:-} i
	rm -f "$T/sess"
	sclient "${p}full.test" -sess_out "$T/sess" -cipher AES128-GCM-SHA256
	conn_of "${p}full.test"
	expect_fields "$CONN" verdict=decrypted reason=- resumed=no
	FIRST=$WORKER
	other=""
	for i in $(seq 1 40); do
		sclient "${p}res$i.test" -sess_in "$T/sess" -cipher AES128-GCM-SHA256
		conn_of "${p}res$i.test"
		expect_fields "$CONN" verdict=decrypted reason=- resumed=yes
		[ -z "$sinks" ] || wait_for 10 cmp -s "$sinks/$CONN_ID.s2c" "$T/${p}res$i.test.out" ||
			fail "${p}res$i: the plaintext sink differs from the page"
		if [ "$WORKER" != "$FIRST" ]; then
			other=$i
			return 0
		fi
	done
	fail "40 resumptions all landed on $FIRST"
}
across "" "$T/pt"
say "a session made through $FIRST was resumed through $WORKER (attempt $other) and decrypted: the cache is shared"

# curl, a full handshake each, until both workers have taken some
for i in $(seq 1 30); do
	curl -sk --max-time 20 --tls-max 1.2 --ciphers AES256-SHA --resolve "c$i.test:$PX_PORT:127.0.0.1" \
		"https://c$i.test:$PX_PORT/" -o "$T/c$i.out" || fail "curl c$i failed"
	conn_of "c$i.test"
	expect_fields "$CONN" verdict=decrypted reason=- suite=TLS_RSA_WITH_AES_256_CBC_SHA
	check_http_sink "$T/pt/$CONN_ID.s2c" "$T/c$i.out" "HTTP/1.0 200"
	[ "$i" -ge 4 ] && grep -q ' INFO \[w0\] conn id=' "$PX_LOG" && grep -q ' INFO \[w1\] conn id=' "$PX_LOG" && break
done
grep -q ' INFO \[w0\] conn id=' "$PX_LOG" && grep -q ' INFO \[w1\] conn id=' "$PX_LOG" ||
	fail "one worker took every connection"
total=$(grep -c ' INFO \[w[01]\] conn id=' "$PX_LOG")
say "both workers took connections ($(grep -c ' INFO \[w0\] conn id=' "$PX_LOG") and $(grep -c ' INFO \[w1\] conn id=' "$PX_LOG")), every one decrypted"

curl -s "http://127.0.0.1:$MPORT/metrics" >"$T/metrics" || fail "no /metrics"
grep -qx "proxyssl_connections_accepted_total $total" "$T/metrics" ||
	fail "/metrics: $(grep '^proxyssl_connections_accepted_total' "$T/metrics") (expected $total, both workers)"
grep -qx "proxyssl_handshakes_total{kind=\"full\"} $((total - other))" "$T/metrics" ||
	fail "/metrics: $(grep 'kind="full"' "$T/metrics") (expected $((total - other)))"
resumed=$(sed -n 's/^proxyssl_handshakes_total{kind="\(session-id\|ticket\)"} //p' "$T/metrics" | awk '{ s += $1 } END { print s + 0 }')
[ "$resumed" = "$other" ] || fail "/metrics: $resumed resumptions (expected $other)"
say "/metrics counts both workers: $total connections, $other resumptions"

# each worker its own decrypted capture: together, one TCP stream per connection
if command -v tshark >/dev/null; then
	streams=0
	for w in w0 w1; do
		f=$T/dec-$w.pcapng
		test -s "$f" || fail "no capture $f"
		n=$(tshark -r "$f" -T fields -e tcp.stream 2>/dev/null | sort -un | wc -l)
		[ "$n" = "$(grep -c " INFO \[$w\] conn id=" "$PX_LOG")" ] || fail "$f: $n TCP streams for $w's connections"
		streams=$((streams + n))
	done
	[ "$streams" = "$total" ] || fail "$streams streams in the two captures, $total connections"
	say "--pcap: each worker its own file (dec-w0.pcapng, dec-w1.pcapng), $streams streams in all, one a connection"
fi

kill -HUP "$PX_PID"
wait_for 10 grep -q ' INFO \[w0\] reloaded: ' "$PX_LOG" && wait_for 10 grep -q ' INFO \[w1\] reloaded: ' "$PX_LOG" ||
	fail "not both workers reloaded"
grep -q ' WARN .*reload: --pcap changed' "$PX_LOG" && fail "a reload took the workers' own capture paths for a change"
kill -TERM "$PX_PID"
wait_exit "$PX_PID" 20 || fail "no exit after SIGTERM"
[ "$EXIT_CODE" = 0 ] || fail "exit status $EXIT_CODE"
grep -q ' INFO \[w0\] stopping: ' "$PX_LOG" && grep -q ' INFO \[w1\] stopping: ' "$PX_LOG" || fail "not both stopped"
say "SIGHUP reloaded both workers; SIGTERM stopped both, exit 0"

# with a shared Redis store: each worker keeps its own local cache in front of
# it, and a session made through one worker is found by the other through Redis
openssl rand -hex 32 >"$T/session.key"
start_redis
start_proxy pxr --backend "127.0.0.1:$sport" --cert "$T/srv.crt" --key "$T/srv.key" --workers 2 \
	--session-cache "redis://127.0.0.1:$RPORT" --session-key "$T/session.key"
across r
say "with Redis: a session made through $FIRST was resumed through $WORKER and decrypted (found through the store)"

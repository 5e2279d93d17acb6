#!/usr/bin/env bash
# TCP behaviour through the proxy, with python raw-socket peers (TLS driven by
# ssl.MemoryBIO over plain sockets, so FIN and RST stay under control):
#  - backend refusing: the client is reset, log says backend-unreachable;
#  - backend not answering (accept queue full, SYNs dropped) with
#    --connect-timeout 300: the client is reset after the timeout;
#  - after a real TLS 1.2 RSA handshake through the proxy: half-close from the
#    client (the server reads to EOF and still answers) and from the server
#    (the client reads to EOF and still answers);
#  - a half-close from the client right after its ClientHello (before the
#    verdict): the server sees EOF, its flight is still judged and released;
#  - a reset on one side resets the other, after the handshake, mid-handshake
#    (after the verdict: the server resets on the ClientKeyExchange, the
#    client resets instead of sending it) and before the verdict, in both
#    directions;
#  - a long connection is undisturbed while another is rejected and a third is
#    reset; its bytes and its plaintext are exact;
#  - --max-conns 1: a second connection is reset at once and counted, the
#    first stays intact.
. "$(dirname "$0")/lib.sh"

gen_cert srv
OUT="$T/peers"
PT="$T/plaintext"
mkdir -p "$OUT"

# json FILE KEY
json() { "$PY" "$PEERS" jget "$1" "$2"; }

# ---- backend refusing -----------------------------------------------------------
bg hold "$PY" "$PEERS" hold-port --port-file "$T/hold.port"
wait_for 10 test -s "$T/hold.port" || fail "hold-port did not start"
HOLD=$(cat "$T/hold.port")
start_proxy px-refused --backend "127.0.0.1:$HOLD" --cert "$T/srv.crt" --key "$T/srv.key"
"$PY" "$PEERS" hello-client --port "$PX_PORT" --no-hello --timeout 10 >"$T/refused1.json" || fail "client failed"
"$PY" "$PEERS" hello-client --port "$PX_PORT" --sni refused.test --timeout 10 >"$T/refused2.json" || fail "client failed"
for f in refused1 refused2; do
	[ "$(json "$T/$f.json" end)" = reset ] || fail "$f: the client connection ended with '$(json "$T/$f.json" end)', expected a reset"
	[ -z "$(json "$T/$f.json" received)" ] || fail "$f: the client received bytes: $(json "$T/$f.json" received)"
done
wait_conns "$PX_LOG" 2
[ "$(grep -c " WARN id=[0-9-]* backend 127.0.0.1:$HOLD unreachable: Connection refused; resetting the client" "$PX_LOG")" = 2 ] ||
	fail "expected two 'backend 127.0.0.1:$HOLD unreachable: Connection refused' lines"
while read -r line; do
	expect_fields "$line" verdict=not-decrypted reason=backend-unreachable close=reset server="127.0.0.1:$HOLD" bytes_c2s=0
done < <(conn_lines "$PX_LOG")
say "backend refusing: client reset, logged backend-unreachable"

# ---- backend not answering --------------------------------------------------------
bg full "$PY" "$PEERS" full-listener --port-file "$T/full.port"
wait_for 10 test -s "$T/full.port" || fail "full-listener did not start"
FULL=$(cat "$T/full.port")
start_proxy px-timeout --backend "127.0.0.1:$FULL" --cert "$T/srv.crt" --key "$T/srv.key" --connect-timeout 300
"$PY" "$PEERS" hello-client --port "$PX_PORT" --sni timeout.test --timeout 10 >"$T/timeout.json" || fail "client failed"
[ "$(json "$T/timeout.json" end)" = reset ] || fail "connect timeout: the client connection ended with '$(json "$T/timeout.json" end)', expected a reset"
secs=$(json "$T/timeout.json" seconds)
awk -v s="$secs" 'BEGIN { exit !(s >= 0.25 && s < 5) }' || fail "connect timeout: the client was reset after ${secs}s, expected about 0.3 s"
# (the proxy reads nothing from the client before the backend answers: no SNI in the log)
wait_conns "$PX_LOG" 1
CONN=$(conn_lines "$PX_LOG")
CONN_ID=$(field "$CONN" id)
expect_fields "$CONN" verdict=not-decrypted reason=backend-unreachable close=reset bytes_c2s=0 bytes_s2c=0
grep -q " WARN id=$CONN_ID backend 127.0.0.1:$FULL unreachable: Connection timed out; resetting the client" "$PX_LOG" ||
	fail "no 'unreachable: Connection timed out' line for $CONN_ID"
kill -USR1 "$PX_PID"
wait_for 10 grep -q 'stats connections .*connect_timeout=1' "$PX_LOG" || fail "the stats do not count connect_timeout=1"
stop_group "$PX_PID"
say "backend not answering: client reset after ${secs}s, logged"

# ---- a TLS backend -------------------------------------------------------------------
bg tls-server "$PY" "$PEERS" tls-server --cert "$T/srv.crt" --key "$T/srv.key" --port-file "$T/tls.port" --out-dir "$OUT" \
	--ciphers "AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
wait_for 10 test -s "$T/tls.port" || fail "the python TLS server did not start"
start_proxy px-tls --backend "127.0.0.1:$(cat "$T/tls.port")" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
TLS_LOG=$PX_LOG
TLS_PORT=$PX_PORT

# client TAG [args]: run the python TLS client scenario TAG through the proxy
client() {
	local tag=$1
	shift
	"$PY" "$PEERS" tls-client --port "$TLS_PORT" --sni "$tag" --out-dir "$OUT" "$@" >"$T/$tag.json" 2>"$T/$tag.err" ||
		fail "$tag: the client failed: $(cat "$T/$tag.json" "$T/$tag.err")"
}
# exact TAG: both peers agree on every byte and the sinks hold exactly those bytes
exact() {
	local tag=$1
	wait_for 15 test -e "$OUT/$tag.server.end" || fail "$tag: the server did not finish"
	same "$OUT/$tag.server.recv" "$OUT/$tag.client.sent" "$tag: what the server received"
	same "$OUT/$tag.client.recv" "$OUT/$tag.server.sent" "$tag: what the client received"
	get_conn "$TLS_LOG" "$tag"
	expect_fields "$CONN" verdict=decrypted reason=- suite=TLS_RSA_WITH_AES_128_GCM_SHA256
	check_sink "$PT" "$CONN_ID" c2s "$OUT/$tag.client.sent"
	check_sink "$PT" "$CONN_ID" s2c "$OUT/$tag.server.sent"
}

# half-close from the client
client hc-c2s.1
[ "$(json "$T/hc-c2s.1.json" end)" = ok ] || fail "hc-c2s: $(cat "$T/hc-c2s.1.json")"
exact hc-c2s.1
expect_field "$CONN" close fin
grep -q '^eof-then-sent:ok' "$OUT/hc-c2s.1.server.end" || fail "hc-c2s: server: $(cat "$OUT/hc-c2s.1.server.end")"
say "half-close client->server: the server saw EOF after 200000 bytes and still answered 150000"

# half-close from the server
client hc-s2c.1
[ "$(json "$T/hc-s2c.1.json" send_after_eof)" = ok ] && [ "$(json "$T/hc-s2c.1.json" end)" = eof ] ||
	fail "hc-s2c: $(cat "$T/hc-s2c.1.json")"
exact hc-s2c.1
expect_field "$CONN" close fin
grep -qx eof "$OUT/hc-s2c.1.server.end" || fail "hc-s2c: server: $(cat "$OUT/hc-s2c.1.server.end")"
say "half-close server->client: the client saw EOF after 200000 bytes and still answered 150000"

# client reset after the handshake -> the server is reset
client rst-c.1
[ "$(json "$T/rst-c.1.json" echo_ok)" = True ] || fail "rst-c: $(cat "$T/rst-c.1.json")"
wait_for 15 test -e "$OUT/rst-c.1.server.end" || fail "rst-c: the server did not report"
grep -qx reset "$OUT/rst-c.1.server.end" || fail "rst-c: the server saw '$(cat "$OUT/rst-c.1.server.end")' instead of a reset"
get_conn "$TLS_LOG" rst-c.1
expect_fields "$CONN" verdict=decrypted close=reset
say "client reset after the handshake: the server got a reset"

# server reset after the handshake -> the client is reset
client rst-s.1
[ "$(json "$T/rst-s.1.json" end)" = reset ] || fail "rst-s: the client saw '$(json "$T/rst-s.1.json" end)' instead of a reset"
[ "$(json "$T/rst-s.1.json" echo_ok)" = True ] || fail "rst-s: the echo before the reset was lost: $(cat "$T/rst-s.1.json")"
get_conn "$TLS_LOG" rst-s.1
expect_fields "$CONN" verdict=decrypted close=reset
say "server reset after the handshake: the client got a reset"

# client reset before the verdict (right after its ClientHello) -> the server is reset
client rst-c-early.1 --pause 0.2
wait_for 15 test -e "$OUT/rst-c-early.1.server.hs" || fail "rst-c-early: the server did not report"
grep -q '^reset' "$OUT/rst-c-early.1.server.hs" || fail "rst-c-early: the server's handshake ended '$(cat "$OUT/rst-c-early.1.server.hs")', expected a reset"
get_conn "$TLS_LOG" rst-c-early.1
expect_fields "$CONN" verdict=not-decrypted reason=incomplete-handshake close=reset
say "client reset before the verdict: the server got a reset"

# server reset on the ClientHello (before the verdict) -> the client is reset
client rst-s-early.1
[ "$(json "$T/rst-s-early.1.json" end)" = reset ] || fail "rst-s-early: the client saw '$(json "$T/rst-s-early.1.json" end)' instead of a reset"
[ "$(json "$T/rst-s-early.1.json" received)" = 0 ] || fail "rst-s-early: the client received bytes"
get_conn "$TLS_LOG" rst-s-early.1
expect_fields "$CONN" verdict=not-decrypted reason=incomplete-handshake close=reset
say "server reset before the verdict: the client got a reset"

# server reset mid-handshake, after the verdict (on the client's ClientKeyExchange) -> the client is reset
client rst-s-mid.1
[ "$(json "$T/rst-s-mid.1.json" handshake)" = reset ] ||
	fail "rst-s-mid: the client's handshake ended '$(json "$T/rst-s-mid.1.json" handshake)' instead of a reset"
wait_for 15 test -e "$OUT/rst-s-mid.1.server.hs" || fail "rst-s-mid: the server did not report"
get_conn "$TLS_LOG" rst-s-mid.1
# the client's Finished proved the keys; the server's never came
expect_fields "$CONN" verdict=decrypted reason=incomplete-handshake close=reset suite=TLS_RSA_WITH_AES_128_GCM_SHA256
say "server reset mid-handshake (after the verdict): the client got a reset"

# client reset mid-handshake: the server's flight reached it, a reset instead of its ClientKeyExchange
client rst-c-mid.1
[ "$(json "$T/rst-c-mid.1.json" result)" = reset-sent ] || fail "rst-c-mid: $(cat "$T/rst-c-mid.1.json")"
wait_for 15 test -e "$OUT/rst-c-mid.1.server.hs" || fail "rst-c-mid: the server did not report"
grep -q '^reset' "$OUT/rst-c-mid.1.server.hs" || fail "rst-c-mid: the server's handshake ended '$(cat "$OUT/rst-c-mid.1.server.hs")', expected a reset"
get_conn "$TLS_LOG" rst-c-mid.1
expect_fields "$CONN" verdict=not-decrypted reason=incomplete-handshake close=reset suite=TLS_RSA_WITH_AES_128_GCM_SHA256
say "client reset mid-handshake (after the verdict): the server got a reset"

# client half-close before the verdict (FIN right after the ClientHello): the half-close
# reaches the server, the server's flight is still judged and released, then the
# server's FIN comes back
client hc-early.1
[ "$(json "$T/hc-early.1.json" end)" = eof ] || fail "hc-early: the client saw '$(json "$T/hc-early.1.json" end)' instead of EOF"
[ "$(json "$T/hc-early.1.json" head)" = 160303 ] && [ "$(json "$T/hc-early.1.json" received)" -gt 100 ] ||
	fail "hc-early: the client did not receive the server's flight: $(cat "$T/hc-early.1.json")"
wait_for 15 test -e "$OUT/hc-early.1.server.hs" || fail "hc-early: the server did not report"
grep -q '^eof' "$OUT/hc-early.1.server.hs" || fail "hc-early: the server's handshake ended '$(cat "$OUT/hc-early.1.server.hs")', expected EOF"
get_conn "$TLS_LOG" hc-early.1
expect_fields "$CONN" verdict=not-decrypted reason=incomplete-handshake close=fin suite=TLS_RSA_WITH_AES_128_GCM_SHA256
say "client half-close before the verdict: the server saw EOF, its flight and FIN reached the client"

# a long connection, undisturbed while another is rejected and a third is reset
bg long "$PY" "$PEERS" tls-client --port "$TLS_PORT" --sni long.1 --out-dir "$OUT" \
	--ready-file "$T/long.ready" --go-file "$T/long.go" --timeout 60
LONG_PID=$BG_PID
wait_for 30 test -s "$T/long.ready" || fail "the long connection did not get through its first round"
"$PY" "$PEERS" hello-client --port "$TLS_PORT" --sni rej.1 --tls12 --ciphers ECDHE-RSA-AES128-GCM-SHA256 \
	>"$T/rej.1.json" || fail "the rejected client failed"
[[ $(json "$T/rej.1.json" received) =~ ^1503(01|02|03)00020228$ ]] && [ "$(json "$T/rej.1.json" end)" = reset ] ||
	fail "the ECDHE client was not rejected with an alert and a reset: $(cat "$T/rej.1.json")"
get_conn "$TLS_LOG" rej.1
expect_fields "$CONN" verdict=rejected reason=non-rsa-kx close=reject
wait_for 15 test -e "$OUT/rej.1.server.end" || fail "rej: the server did not report"
grep -qx reset "$OUT/rej.1.server.end" || fail "rej: the server saw '$(cat "$OUT/rej.1.server.end")' instead of a reset"
client rst-c.2
wait_for 15 test -e "$OUT/rst-c.2.server.end" || fail "rst-c.2: the server did not report"
grep -qx reset "$OUT/rst-c.2.server.end" || fail "rst-c.2: the server saw '$(cat "$OUT/rst-c.2.server.end")'"
alive "$LONG_PID" || fail "the long connection ended early: $(cat "$T/long.out" "$T/long.err")"
has_conn_sni "$TLS_LOG" long.1 && fail "the long connection was closed by the proxy"
touch "$T/long.go"
wait_exit "$LONG_PID" 60 || fail "the long connection did not finish"
[ "$EXIT_CODE" = 0 ] || fail "the long client failed: $(cat "$T/long.out" "$T/long.err")"
cp "$T/long.out" "$T/long.1.json"
[ "$(json "$T/long.1.json" echo_ok)" = True ] && [ "$(json "$T/long.1.json" end)" = ok ] ||
	fail "the long connection lost bytes: $(cat "$T/long.1.json")"
exact long.1
expect_field "$CONN" close fin
say "a long connection stayed intact while another was rejected and a third reset"

# --max-conns 1: a second connection is reset at once and logged; the first goes on
start_proxy px-max --backend "127.0.0.1:$(cat "$T/tls.port")" --cert "$T/srv.crt" --key "$T/srv.key" \
	--plaintext-dir "$PT" --max-conns 1
MAX_LOG=$PX_LOG
bg long2 "$PY" "$PEERS" tls-client --port "$PX_PORT" --sni long.2 --out-dir "$OUT" \
	--ready-file "$T/long2.ready" --go-file "$T/long2.go" --timeout 60
LONG_PID=$BG_PID
wait_for 30 test -s "$T/long2.ready" || fail "max-conns: the first connection did not get through its first round"
"$PY" "$PEERS" hello-client --port "$PX_PORT" --sni over.test --timeout 10 >"$T/over.json" || fail "max-conns: client failed"
[ "$(json "$T/over.json" end)" = reset ] && [ -z "$(json "$T/over.json" received)" ] ||
	fail "max-conns: the connection over the limit was not reset at once: $(cat "$T/over.json")"
wait_for 10 grep -q ' WARN refusing connection: 1 connections open (--max-conns)' "$MAX_LOG" ||
	fail "max-conns: no 'refusing connection' line"
touch "$T/long2.go"
wait_exit "$LONG_PID" 60 || fail "max-conns: the first connection did not finish"
[ "$EXIT_CODE" = 0 ] || fail "max-conns: the first connection failed: $(cat "$T/long2.out" "$T/long2.err")"
cp "$T/long2.out" "$T/long.2.json"
[ "$(json "$T/long.2.json" echo_ok)" = True ] || fail "max-conns: the first connection lost bytes: $(cat "$T/long.2.json")"
TLS_LOG=$MAX_LOG
exact long.2
kill -USR1 "$PX_PID"
wait_for 10 grep -q 'stats connections .*refused_max_conns=1' "$MAX_LOG" || fail "max-conns: refused_max_conns=1 not counted"
say "--max-conns 1: the second connection was reset and counted, the first stayed intact"

#!/usr/bin/env bash
# Keys from remote servers: proxyssl-keyfwd follows a server's key log and
# streams it to the proxy's key listener (--key-listen) over TLS with mutual
# certificate authentication:
#  - TLS 1.3 (s_server -keylogfile) and TLS 1.2 ECDHE (gnutls-serv with
#    SSLKEYLOGFILE) sessions decrypted with the forwarded secrets, sinks exact,
#    with no --key-source at all;
#  - a client without a certificate, and one whose certificate another CA
#    signed, get nothing in: refused, logged, their lines never counted;
#  - the proxy restarts on the same address: the forwarder reconnects (backoff)
#    and sends what the key log gained meanwhile (its backlog); the next
#    session is decrypted again;
#  - a forwarder that cannot verify the proxy's certificate (--ca of another
#    CA) does not send;
#  - /metrics counts the forwarder, its lines and the TLS 1.3 session.
. "$(dirname "$0")/lib.sh"

need_tool gnutls-serv gnutls-cli curl
KEYFWD="$(dirname "$PROXYSSL")/proxyssl-keyfwd"
[ -x "$KEYFWD" ] || fail "proxyssl-keyfwd is not built next to $PROXYSSL"
gen_cert srv srv.test
PT="$T/plaintext"

# a CA for the key channel; the listener's and the forwarder's certificates from it; a rogue one
ca_sign() { # NAME CN
	openssl req -newkey rsa:2048 -nodes -keyout "$T/$1.key" -out "$T/$1.csr" -subj "/CN=$2" >/dev/null 2>&1 &&
		openssl x509 -req -in "$T/$1.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial -days 3 \
			-extfile <(printf 'subjectAltName=DNS:%s\n' "$2") -out "$T/$1.crt" >/dev/null 2>&1 ||
		fail "cannot sign $1"
}
gen_cert ca keys-ca
gen_cert otherca other-ca
ca_sign listener proxy.keys
ca_sign fwd server1.keys
gen_cert rogue rogue.keys

start_relay
KPORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LISTEN=(--key-listen "127.0.0.1:$KPORT" --key-listen-cert "$T/listener.crt" --key-listen-key "$T/listener.key"
	--key-listen-ca "$T/ca.crt")
start_proxy px --backend "127.0.0.1:$RELAY_PORT" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT" \
	--key-wait 3000 "${LISTEN[@]}"
grep -q "key listener on 127.0.0.1:$KPORT" "$PX_LOG" || fail "no line saying the key listener listens"

KEYLOG="$T/keys.log"
: >"$KEYLOG"
bg keyfwd "$KEYFWD" "$KEYLOG" --to "127.0.0.1:$KPORT" --cert "$T/fwd.crt" --key "$T/fwd.key" --ca "$T/ca.crt" \
	--server-name proxy.keys --retry-max 500 --poll 50
FWD_PID=$BG_PID

# t13 TAG: one exact TLS 1.3 session to a fresh s_server logging into KEYLOG
t13() {
	FWD_EXPECT=version=TLS1.3 fwd_case "$1" -cert "$T/srv.crt" -key "$T/srv.key" -tls1_3 -keylogfile "$KEYLOG" -- -tls1_3
	say "$1: TLS 1.3 decrypted with secrets streamed by proxyssl-keyfwd (waited $(field "$CONN" key_wait_ms) ms)"
}

t13 remote13
wait_for 10 grep -q "key listener: forwarder 127.0.0.1:[0-9]* connected (subject=/CN=server1.keys" "$PX_LOG" ||
	fail "the forwarder's connection is not logged"

# TLS 1.2 ECDHE from gnutls-serv (SSLKEYLOGFILE) through the same forwarder
gnutls_fwd_case remote12.test 'NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA:-CIPHER-ALL:+AES-128-GCM' \
	'NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA' TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
say "remote12: TLS 1.2 ECDHE decrypted with the CLIENT_RANDOM gnutls-serv logged, streamed"

# clients that may not send keys: no certificate, and one another CA signed
kstat() { kill -USR1 "$PX_PID"; sleep 0.3; grep "stats keys " "$PX_LOG" | tail -n1 | grep -o 'lines=[0-9]*'; }
before=$(kstat)
LINE="CLIENT_RANDOM $(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') $(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$LINE" | timeout 10 openssl s_client -connect "127.0.0.1:$KPORT" -quiet >"$T/nocert.out" 2>&1 || true
echo "$LINE" | timeout 10 openssl s_client -connect "127.0.0.1:$KPORT" -quiet -cert "$T/rogue.crt" -key "$T/rogue.key" \
	>"$T/rogue.out" 2>&1 || true
wait_for 10 test "$(grep -c 'key listener: refused 127.0.0.1' "$PX_LOG")" -ge 2 || fail "the refused clients are not logged"
grep -q "key listener: refused .*certificate" "$PX_LOG" || fail "the refusal does not say why"
after=$(kstat)
[ "$before" = "$after" ] || fail "a refused client's line was taken ($before -> $after)"
say "unauthorised clients (no certificate, another CA's): refused and logged, nothing taken ($after)"

# a forwarder that cannot verify the proxy (another CA) sends nothing
bg badfwd "$KEYFWD" "$KEYLOG" --to "127.0.0.1:$KPORT" --cert "$T/fwd.crt" --key "$T/fwd.key" --ca "$T/otherca.crt" \
	--retry-max 500 --poll 50 --log "$T/badfwd.log"
wait_for 10 grep -q "TLS with 127.0.0.1:$KPORT failed" "$T/badfwd.log" || fail "keyfwd with the wrong CA did not refuse the proxy"
stop_group "$BG_PID"
say "a forwarder that cannot verify the proxy's certificate does not send"

# the proxy restarts on the same address: the forwarder reconnects and sends its backlog
stop_group "$PX_PID"
echo "CLIENT_RANDOM $(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') $(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')" >>"$KEYLOG"
sleep 0.5
start_proxy px2 --backend "127.0.0.1:$RELAY_PORT" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT" \
	--key-wait 3000 "${LISTEN[@]}" --metrics 127.0.0.1:0
wait_for 10 grep -q "key listener: forwarder 127.0.0.1:[0-9]* connected" "$PX_LOG" || fail "the forwarder did not reconnect"
backlog_in() { [ "$(kstat | cut -d= -f2)" -ge 1 ]; }
wait_for 10 backlog_in || fail "the backlog did not reach the new proxy"
t13 after-restart
kill -USR1 "$FWD_PID"
wait_for 10 grep -q "keyfwd stats read=.* reconnects=" "$T/keyfwd.err" || fail "keyfwd did not report its counters"
grep "keyfwd stats" "$T/keyfwd.err" | tail -n1 | grep -q "dropped=0" || fail "keyfwd dropped lines"
MPORT=$(sed -n 's|.* metrics on http://127\.0\.0\.1:\([0-9]*\)/metrics$|\1|p' "$PX_LOG" | head -n1)
curl -sS "http://127.0.0.1:$MPORT/metrics" >"$T/metrics.txt" || fail "no /metrics"
grep -q '^proxyssl_key_listener_connections_total{result="accepted"} 1$' "$T/metrics.txt" || fail "/metrics: $(grep key_listener "$T/metrics.txt")"
grep -q '^proxyssl_key_listener_forwarders 1$' "$T/metrics.txt" || fail "/metrics does not count the forwarder"
grep -q '^proxyssl_tls13_sessions_total 1$' "$T/metrics.txt" || fail "/metrics does not count the TLS 1.3 session"
say "the proxy restarted: keyfwd reconnected, its backlog arrived, the next session decrypted"
say "ok"

#!/usr/bin/env bash
# Several certificate/key pairs: one openssl s_server picks its certificate by
# SNI (RSA-2048 for a.test, RSA-3072 for b.test); one proxy holds both
# (--cert a,b --key a,b) and decrypts each session with the key of the
# certificate the server actually sent. A proxy that holds only the first
# rejects b.test's as cert-mismatch. The SNI is a hint: when the proxy holds
# a different certificate for b.test (one renewed on one side only), the reject
# line names that one as expected.
. "$(dirname "$0")/lib.sh"
need_tool curl

gen_cert a a.test rsa:2048
gen_cert b b.test rsa:3072
gen_cert b2 b.test rsa:2048 # b.test's certificate renewed, but only on the proxy
PT="$T/plaintext"

bg www openssl s_server -accept 127.0.0.1:0 -www -no_tls1_3 -cipher AES128-GCM-SHA256 \
	-cert "$T/a.crt" -key "$T/a.key" -servername b.test -cert2 "$T/b.crt" -key2 "$T/b.key"
port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"

get() { # HOST: one GET through the proxy, SNI = HOST
	curl -sS -k --max-time 30 --tlsv1.2 --tls-max 1.2 --ciphers AES128-GCM-SHA256 \
		--resolve "$1:$PX_PORT:127.0.0.1" "https://$1:$PX_PORT/" >"$T/$1.out" 2>"$T/$1.err"
}

start_proxy px-both --backend "127.0.0.1:$port" --cert "$T/a.crt,$T/b.crt" --key "$T/a.key,$T/b.key" --plaintext-dir "$PT"
grep -q 'listening on .* RSA-2048,RSA-3072 keys' "$PX_LOG" || fail "the start line does not name both keys"
[ "$(grep -c 'expecting server certificate' "$PX_LOG")" = 2 ] || fail "expected two 'expecting server certificate' lines"
for host in a.test b.test; do
	get "$host" || fail "$host: curl failed: $(cat "$T/$host.err")"
	grep -q 's_server' "$T/$host.out" || fail "$host: not s_server's page"
	get_conn "$PX_LOG" "$host"
	expect_fields "$CONN" verdict=decrypted reason=- close=fin
	wait_size "$PT/$CONN_ID.s2c" "$(field "$CONN" decrypted_s2c)" 10 || fail "$host: s2c sink short"
	grep -q 's_server' "$PT/$CONN_ID.s2c" || fail "$host: the s2c sink is not the page"
	say "$host: decrypted with the key of the certificate the server sent"
done
stop_group "$PX_PID"

start_proxy px-a --backend "127.0.0.1:$port" --cert "$T/a.crt" --key "$T/a.key"
get a.test || fail "a.test through the one-key proxy failed"
get b.test && fail "b.test: curl succeeded through a proxy without its certificate"
get_conn "$PX_LOG" b.test
expect_fields "$CONN" verdict=rejected reason=cert-mismatch
grep "WARN reject id=$(field "$CONN" id) " "$PX_LOG" | grep -q "received_serial=$(cert_serial "$T/b.crt")" ||
	fail "b.test: the reject line does not name b's certificate"
stop_group "$PX_PID"
say "b.test: rejected as cert-mismatch by a proxy holding only a.test's key"

start_proxy px-renewed --backend "127.0.0.1:$port" --cert "$T/a.crt,$T/b2.crt" --key "$T/a.key,$T/b2.key"
get a.test || fail "a.test through the a+b2 proxy failed"
get b.test && fail "b.test: curl succeeded though the proxy holds another certificate for it"
get_conn "$PX_LOG" b.test
expect_fields "$CONN" verdict=rejected reason=cert-mismatch
line=$(grep "WARN reject id=$(field "$CONN" id) " "$PX_LOG")
printf '%s\n' "$line" | grep -q "expected_serial=$(cert_serial "$T/b2.crt") expected_sha256=$(cert_sha256 "$T/b2.crt") " ||
	fail "b.test: the reject line should expect the certificate the SNI names (b2): $line"
printf '%s\n' "$line" | grep -q "received_serial=$(cert_serial "$T/b.crt")" || fail "b.test: received is not b: $line"
stop_group "$PX_PID"
say "b.test: rejected, and the reject line expects the configured certificate for that name"

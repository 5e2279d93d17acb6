#!/usr/bin/env bash
# --passthrough: sessions the policy would reject are forwarded untouched
# instead, with real peers. curl fetches from openssl s_server -www through the
# proxy when the server
#  - chooses ECDHE (non-rsa-kx), and
#  - presents another certificate (cert-mismatch),
#  - speaks TLS 1.3 (tls13),
# with --passthrough naming the reason (and once with `all`): the page arrives,
# the conn line says verdict=passthrough and the reason, nothing is decrypted,
# no reject line is written, and the plaintext sink stays empty. A reason not
# named is still rejected.
. "$(dirname "$0")/lib.sh"
need_tool curl

gen_cert srv
gen_cert other other.example
PT="$T/plaintext"

# fetch NAME PASSTHROUGH S_SERVER-ARGS... : one GET through a fresh proxy
fetch() {
	local name=$1 pass=$2
	shift 2
	bg "www-$name" openssl s_server -accept 127.0.0.1:0 -www "$@"
	port=$(listen_port_of "$BG_PID") || fail "$name: s_server did not listen"
	start_proxy "px-$name" --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" \
		--plaintext-dir "$PT" --passthrough "$pass"
	curl -sS -k --max-time 30 --resolve "$name.test:$PX_PORT:127.0.0.1" "https://$name.test:$PX_PORT/" \
		>"$T/$name.out" 2>"$T/$name.err"
	CURL_RC=$?
	get_conn "$PX_LOG" "$name.test"
	stop_group "$PX_PID"
	stop_group "$BG_PID"
}

# passes NAME REASON PASSTHROUGH S_SERVER-ARGS...
passes() {
	local name=$1 reason=$2
	shift 2
	fetch "$name" "$@"
	[ "$CURL_RC" = 0 ] || fail "$name: curl failed through the passthrough: $(cat "$T/$name.err")"
	grep -q 's_server' "$T/$name.out" || fail "$name: not s_server's status page: $(head -c 200 "$T/$name.out")"
	expect_fields "$CONN" verdict=passthrough reason="$reason" decrypted_c2s=0 decrypted_s2c=0 close=fin
	grep -q ' WARN reject ' "$PX_LOG" && fail "$name: a reject line for a passed-through session"
	[ ! -e "$PT/$(field "$CONN" id).c2s" ] || fail "$name: a plaintext file for a passed-through session"
	say "$name: forwarded untouched (verdict=passthrough reason=$reason)"
}

passes ecdhe non-rsa-kx non-rsa-kx -cert "$T/srv.crt" -key "$T/srv.key" -cipher ECDHE-RSA-AES128-GCM-SHA256 -no_tls1_3
passes cert cert-mismatch cert-mismatch,tls13 -cert "$T/other.crt" -key "$T/other.key" -cipher AES128-GCM-SHA256 -no_tls1_3
passes tls13 tls13 all -cert "$T/srv.crt" -key "$T/srv.key" -tls1_3

# not named: rejected as before
fetch still-rejected tls13 -cert "$T/srv.crt" -key "$T/srv.key" -cipher ECDHE-RSA-AES128-GCM-SHA256 -no_tls1_3
[ "$CURL_RC" != 0 ] || fail "still-rejected: curl succeeded although non-rsa-kx is not passed through"
expect_fields "$CONN" verdict=rejected reason=non-rsa-kx
say "still-rejected: non-rsa-kx rejected while only tls13 passes"

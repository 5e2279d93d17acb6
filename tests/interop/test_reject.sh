#!/usr/bin/env bash
# Policy rejections with real servers: an ECDHE-only server (non-rsa-kx), a
# TLS 1.3 server (tls13) and a server with another certificate
# (cert-mismatch). (TLS 1.0/1.1 are decrypted; unsupported-version is left for
# SSL 3.0, which no peer here can speak; and every RSA suite these peers
# negotiate is decrypted, so unsupported-suite is provoked by a hand-made
# ServerHello in unit.tap.)
#
# Path: client -> proxy -> relay (python, records the proxy side) -> s_server.
# For each server, two connections:
#  1. openssl s_client: it reports alert 40 (handshake failure);
#  2. a python client sending a real ClientHello (ssl.MemoryBIO): it receives
#     exactly one alert record handshake_failure, then a TCP reset.
# And for both: the relay saw the ClientHello, then an alert record
# handshake_failure, then a reset; s_server reports the alert 40 it received;
# the proxy logs a reject line (reason, alert, expected and received
# certificate fingerprints) and a conn line (verdict=rejected, close=reject).
# Last, a server that refuses by itself (server-alert): its own alert reaches the
# client unchanged and nobody is reset.
. "$(dirname "$0")/lib.sh"

gen_cert srv localhost
gen_cert other other.example
SRV_SERIAL=$(cert_serial "$T/srv.crt")
SRV_SHA=$(cert_sha256 "$T/srv.crt")
OTHER_SERIAL=$(cert_serial "$T/other.crt")
OTHER_SHA=$(cert_sha256 "$T/other.crt")
ALERT_RE='^1503(01|02|03)00020228$'

# alert_ok HEX: one alert record, fatal handshake_failure
alert_ok() { [[ $1 =~ $ALERT_RE ]]; }

# run_case NAME REASON RECEIVED(srv|other|none|srv-or-none) SERVER-ARGS | CLIENT-ARGS | HELLO-ARGS
run_case() {
	local name=$1 reason=$2 recv=$3 sargs cargs hargs n_err hello got
	IFS='|' read -r sargs cargs hargs <<<"$4"
	# shellcheck disable=SC2086
	bg "srv-$name" openssl s_server -accept 127.0.0.1:0 -www $sargs
	local sport
	sport=$(listen_port_of "$BG_PID") || fail "$name: s_server did not listen"
	bg "relay-$name" "$PY" "$PEERS" relay --to "$sport" --port-file "$T/relay-$name.port" --report "$T/relay-$name"
	wait_for 10 test -s "$T/relay-$name.port" || fail "$name: the relay did not start"
	start_proxy "px-$name" --backend "127.0.0.1:$(cat "$T/relay-$name.port")" --cert "$T/srv.crt" --key "$T/srv.key"

	# 1. s_client
	n_err=$(grep -c . "$T/srv-$name.err")
	# shellcheck disable=SC2086
	timeout 20 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername "$name-1.test" $cargs \
		</dev/null >"$T/$name-cli.out" 2>"$T/$name-cli.err"
	local rc=$?
	[ "$rc" != 0 ] || soft_fail "$name: s_client exited 0 after a rejected handshake"
	grep -q 'alert handshake failure' "$T/$name-cli.err" && grep -q 'SSL alert number 40' "$T/$name-cli.err" ||
		soft_fail "$name: s_client did not report alert 40: $(grep -i error "$T/$name-cli.err" | head -n2)"
	get_conn "$PX_LOG" "$name-1.test"
	check_reject "$name" "$reason" "$recv" "$CONN"
	check_relay "$name" 1 ""
	check_server_alert "$name" "$n_err"

	# 2. python client: the alert bytes, then a reset
	n_err=$(grep -c . "$T/srv-$name.err")
	# shellcheck disable=SC2086
	"$PY" "$PEERS" hello-client --port "$PX_PORT" --sni "$name-2.test" $hargs >"$T/$name-hello.json" 2>"$T/$name-hello.err" ||
		fail "$name: the python client failed: $(cat "$T/$name-hello.err")"
	got=$("$PY" "$PEERS" jget "$T/$name-hello.json" received)
	hello=$("$PY" "$PEERS" jget "$T/$name-hello.json" hello)
	alert_ok "$got" || soft_fail "$name: the client received '$got', expected exactly one alert record 15 03 0x 00 02 02 28"
	[ "$("$PY" "$PEERS" jget "$T/$name-hello.json" end)" = reset ] ||
		soft_fail "$name: the client connection ended with '$("$PY" "$PEERS" jget "$T/$name-hello.json" end)', expected a reset"
	"$PY" "$PEERS" jget "$T/$name-hello.json" tls_error | grep -q HANDSHAKE_FAILURE ||
		soft_fail "$name: python's TLS stack read '$("$PY" "$PEERS" jget "$T/$name-hello.json" tls_error)' from the proxy"
	get_conn "$PX_LOG" "$name-2.test"
	check_reject "$name" "$reason" "$recv" "$CONN"
	check_relay "$name" 2 "$hello"
	check_server_alert "$name" "$n_err"
	say "$name: rejected as $reason; client and server got the alert and a reset"
}

# check_reject NAME REASON RECEIVED CONN-LINE: the reject line and the conn line
check_reject() {
	local name=$1 reason=$2 recv=$3 conn=$4 id rej rs rh
	id=$(field "$conn" id)
	expect_fields "$conn" verdict=rejected reason="$reason" close=reject decrypted_c2s=0 decrypted_s2c=0
	rej=$(reject_by_id "$PX_LOG" "$id")
	[ -n "$rej" ] || fail "$name: no reject line for $id"
	expect_fields "$rej" reason="$reason" alert='handshake_failure(40)' expected_serial="$SRV_SERIAL" expected_sha256="$SRV_SHA"
	rs=$(field "$rej" received_serial)
	rh=$(field "$rej" received_sha256)
	case $recv in
	srv) [ "$rs $rh" = "$SRV_SERIAL $SRV_SHA" ] || fail "$name: received_* should be the server's certificate: $rej" ;;
	other) [ "$rs $rh" = "$OTHER_SERIAL $OTHER_SHA" ] || fail "$name: received_* should be the other certificate: $rej" ;;
	none) [ "$rs $rh" = "- -" ] || fail "$name: received_* should be '-': $rej" ;;
	srv-or-none) [ "$rs $rh" = "- -" ] || [ "$rs $rh" = "$SRV_SERIAL $SRV_SHA" ] ||
		fail "$name: received_* should be '-' or the server's certificate: $rej" ;;
	esac
}

# check_relay NAME N HELLO: the server side saw the ClientHello (HELLO if given), one alert, then a reset
check_relay() {
	local name=$1 n=$2 hello=$3 fp tail f
	f="$T/relay-$name.$n"
	wait_for 15 test -s "$f" || fail "$name: the relay did not report connection $n"
	fp=$("$PY" "$PEERS" jget "$f" from_proxy)
	tail=${fp: -14}
	alert_ok "$tail" || soft_fail "$name: the server side did not end with an alert handshake_failure record: ...${fp: -40}"
	[ -z "$hello" ] || [ "$fp" = "$hello$tail" ] ||
		soft_fail "$name: the server side got other bytes than the ClientHello and the alert (${#fp} hex digits)"
	[ "$("$PY" "$PEERS" jget "$f" proxy_end)" = reset ] ||
		soft_fail "$name: the server-side connection ended with '$("$PY" "$PEERS" jget "$f" proxy_end)', expected a reset"
	RELAY_ALERT=$tail
}

# check_server_alert NAME LINES-BEFORE: s_server printed the alert 40 it received
check_server_alert() {
	local name=$1 before=$2 new
	wait_for 5 eval '[ "$(grep -c . "$T/srv-$name.err")" -gt "$before" ]' || true
	new=$(tail -n +"$((before + 1))" "$T/srv-$name.err")
	printf '%s\n' "$new" | grep -q 'SSL alert number 40' ||
		soft_fail "$name: s_server did not receive alert 40 (the alert record sent to it was $RELAY_ALERT); it said: $(printf '%s' "$new" | grep -i error | head -n1)"
}

run_case ecdhe non-rsa-kx srv-or-none \
	"-cert $T/srv.crt -key $T/srv.key -cipher ECDHE-RSA-AES128-GCM-SHA256 -no_tls1_3|-no_tls1_3|--tls12"
run_case tls13 tls13 none \
	"-cert $T/srv.crt -key $T/srv.key -tls1_3||"
run_case cert cert-mismatch other \
	"-cert $T/other.crt -key $T/other.key -cipher AES128-GCM-SHA256 -no_tls1_3|-no_tls1_3|--tls12"

# A server that refuses by itself (no shared cipher) speaks for itself: its alert
# goes on to the client unchanged, nobody is reset, no reject line.
name=server-alert
bg "srv-$name" openssl s_server -accept 127.0.0.1:0 -www -cert "$T/srv.crt" -key "$T/srv.key" -cipher AES256-GCM-SHA384 -no_tls1_3
sport=$(listen_port_of "$BG_PID") || fail "$name: s_server did not listen"
bg "relay-$name" "$PY" "$PEERS" relay --to "$sport" --port-file "$T/relay-$name.port" --report "$T/relay-$name"
wait_for 10 test -s "$T/relay-$name.port" || fail "$name: the relay did not start"
start_proxy "px-$name" --backend "127.0.0.1:$(cat "$T/relay-$name.port")" --cert "$T/srv.crt" --key "$T/srv.key"
timeout 20 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername "$name-1.test" -no_tls1_3 -cipher AES128-GCM-SHA256 \
	</dev/null >"$T/$name-cli.out" 2>"$T/$name-cli.err"
grep -q 'SSL alert number 40' "$T/$name-cli.err" || soft_fail "$name: s_client did not report the server's alert 40"
"$PY" "$PEERS" hello-client --port "$PX_PORT" --sni "$name-2.test" --tls12 --ciphers AES128-GCM-SHA256 >"$T/$name-hello.json" ||
	fail "$name: the python client failed"
wait_for 15 test -s "$T/relay-$name.2" || fail "$name: the relay did not report"
got=$("$PY" "$PEERS" jget "$T/$name-hello.json" received)
backend=$("$PY" "$PEERS" jget "$T/relay-$name.2" from_backend)
alert_ok "$backend" || fail "$name: the server did not answer with alert 40 (test setup): $backend"
[ "$got" = "$backend" ] || soft_fail "$name: the client received '$got', the server sent '$backend'"
[ "$("$PY" "$PEERS" jget "$T/$name-hello.json" end)" = eof ] ||
	soft_fail "$name: the client connection ended with '$("$PY" "$PEERS" jget "$T/$name-hello.json" end)', expected EOF (no reset)"
[ "$("$PY" "$PEERS" jget "$T/relay-$name.2" proxy_end)" = eof ] ||
	soft_fail "$name: the server-side connection ended with '$("$PY" "$PEERS" jget "$T/relay-$name.2" proxy_end)', expected EOF"
for i in 1 2; do
	get_conn "$PX_LOG" "$name-$i.test"
	expect_fields "$CONN" verdict=not-decrypted reason=server-alert close=fin
	[ -z "$(reject_by_id "$PX_LOG" "$CONN_ID")" ] || soft_fail "$name: a reject line for $CONN_ID"
done
say "$name: the server's own alert reached the client unchanged, no reset"

[ -s "$T/FAILED" ] || say "all rejections ok"

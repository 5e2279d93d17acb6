#!/usr/bin/env bash
# The proxy is invisible to first flights: each case goes to the server
# directly and through the proxy, and the client must see the same thing
# (tests/interop/tlsclient.py: the first answer, an alert's level and code,
# whether a whole handshake completed). Servers: `openssl s_server -www`
# (TLS 1.0 to 1.2, every RSA suite) and `gnutls-serv --http`. Cases: a plain
# hello and an SSLv2-compatible one (whole handshakes, decrypted by the
# proxy), a pure SSL 2.0 hello, 129 and 300 extensions, a truncated and an
# overrunning extension block, a ServerHello as the client's first message,
# and a 75 KiB hello. The proxy's conn line must name what happened: decrypted
# for the whole handshakes, the client's parse error and the server's alert
# where the server refused. Prints a table: case, server, directly, through
# the proxy.
. "$(dirname "$0")/lib.sh"

"$PY" -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is not installed"
need_tool gnutls-serv
gen_cert srv srv.test
CLIENT="$PXY_HERE/tlsclient.py"
CASES="tls sslv2 sslv2-pure exts-129 exts-300 ext-trunc ext-overrun wrong-type big-hello"
TABLE="$T/table"

# differ SERVER-NAME SERVER-PORT VERSION: every case directly, then through a proxy in front of it
differ() {
	local name=$1 port=$2 ver=$3 c direct proxied n=0
	start_proxy "px-$name-$ver" --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" \
		--plaintext-dir "$T/pt-$name-$ver"
	for c in $CASES; do
		direct=$("$PY" "$CLIENT" "$port" "$c" --version "$ver" 2>&1 | tail -n1)
		proxied=$("$PY" "$CLIENT" "$PX_PORT" "$c" --version "$ver" 2>&1 | tail -n1)
		n=$((n + 1))
		printf '| %s | %s TLS%s | %s | %s |\n' "$c" "$name" "$ver" "$direct" "$proxied" >>"$TABLE"
		[ "$direct" = "$proxied" ] || fail "$name TLS$ver $c: directly '$direct', through the proxy '$proxied'"
		# s_server takes both hellos; gnutls-serv the plain one
		case $name-$c in
		*-tls | openssl-sslv2)
			case $direct in *handshake=complete*) ;; *) fail "$name TLS$ver $c: no handshake directly: $direct" ;; esac ;;
		esac
	done
	wait_conns "$PX_LOG" "$n"
	local lines l
	lines=$(conn_lines "$PX_LOG")
	l() { printf '%s\n' "$lines" | sed -n "${1}p"; }
	# the whole handshakes were decrypted, the SSLv2-compatible one included (when the server takes it)
	l 1 | grep -q "verdict=decrypted reason=- .*decrypted_c2s=18 " || fail "$name TLS$ver: tls not decrypted: $(l 1)"
	if grep -q "^| sslv2 | $name TLS$ver | .*handshake=complete" "$TABLE"; then
		l 2 | grep -q "verdict=decrypted reason=- .*decrypted_c2s=18 " || fail "$name TLS$ver: sslv2 not decrypted: $(l 2)"
		kill -USR1 "$PX_PID"
		wait_for 10 grep -q "stats tls .*sslv2_hellos=1" "$PX_LOG" || fail "$name TLS$ver: sslv2_hellos counter"
	fi
	grep -rqF 'GET / HTTP/1.0' "$T/pt-$name-$ver" || fail "$name TLS$ver: no decrypted request in the plaintext sink"
	# where the server refused the flight, the conn line names the client's error and the server's alert
	l 6 | grep -Eq 'reason=client-protocol-error .*error=client:[a-z-]+ alert_server=fatal:' ||
		fail "$name TLS$ver: ext-trunc's conn line: $(l 6)"
	l 8 | grep -Eq 'reason=client-protocol-error .*error=client:unexpected-message' ||
		fail "$name TLS$ver: wrong-type's conn line: $(l 8)"
	stop_group "$PX_PID"
}

for ver in 1.0 1.2; do
	opts=(-tls1_2)
	[ "$ver" = 1.0 ] && opts=(-tls1)
	bg "ossl-$ver" openssl s_server -accept 127.0.0.1:0 -www -cert "$T/srv.crt" -key "$T/srv.key" \
		-cipher 'ALL:@SECLEVEL=0' "${opts[@]}"
	port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
	differ openssl "$port" "$ver"
	stop_group "$BG_PID"
done

bg gnutls gnutls-serv --http -p 0 --x509certfile "$T/srv.crt" --x509keyfile "$T/srv.key" \
	--priority 'NORMAL:+RSA:+VERS-TLS1.0:+VERS-TLS1.1:+CIPHER-ALL:+MAC-ALL'
port=$(listen_port_of "$BG_PID") || fail "gnutls-serv did not listen"
differ gnutls "$port" 1.2
stop_group "$BG_PID"

say "what the client saw:"
printf '| case | server | directly | through the proxy |\n| --- | --- | --- | --- |\n'
cat "$TABLE"
say "ok"

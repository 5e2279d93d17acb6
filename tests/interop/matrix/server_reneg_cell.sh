#!/usr/bin/env bash
# A matrix cell for server-initiated renegotiation (ctest: interop.matrix.<cell>):
#   server_reneg_cell.sh CLIENT VERSION BULK [AUTH]
#     CLIENT   gnutls-cli | pyssl (peers.py lines-client: OpenSSL's libssl through
#              Python, an interactive client like `s_client -quiet` that, unlike
#              s_client, never drops stdin it read while a renegotiation made its
#              write wait; s_client does, with or without a proxy in between)
#     VERSION  1.0 | 1.1 | 1.2
#     BULK     AES-128-GCM | AES-256-GCM | AES-128-CBC | AES-256-CBC (GCM: 1.2 only)
#     AUTH     noauth (default): openssl s_server renegotiates ("r"); OpenSSL's
#                client resumes its session in it (an abbreviated handshake), GnuTLS's not
#              | auth: it renegotiates asking for a client certificate ("R"), the way
#                servers ask for one only for some paths (pyssl only: GnuTLS's
#                client answers that request with an unexpected_message alert, with
#                or without the proxy in between)
# openssl s_server talks interactively: what the client sends shows on its
# stdout, what its stdin holds goes to the client. The exchange: 2 KiB each
# way, the server renegotiates, then (once s_server reports it and the proxy
# has counted it) 2 KiB more each way. Checked: each side got all the other's lines,
# the conn line (decrypted, version, client certificate), renegotiations=1,
# and both plaintext sinks hold exactly the bytes each side sent.
#
# PXY_CELL_DIRECT=1 runs the same exchange with the client straight at the
# server and no proxy: a failure there is not the proxy's.
. "$(dirname "$0")/../lib.sh"
need_tool gnutls-cli

[ $# = 3 ] || [ $# = 4 ] || fail "usage: server_reneg_cell.sh CLIENT VERSION BULK [AUTH]"
client=$1 ver=$2 bulk=$3 auth=${4:-noauth}
[ "$client/$auth" = gnutls-cli/auth ] && fail "gnutls-cli cannot answer a certificate request in a renegotiation"
DIRECT=${PXY_CELL_DIRECT:-0}
gen_cert srv srv.test
gen_cert cli cli.test
PT="$T/plaintext"

case $bulk in
AES-128-GCM) ossl_cipher=AES128-GCM-SHA256 ;; AES-256-GCM) ossl_cipher=AES256-GCM-SHA384 ;;
AES-128-CBC) ossl_cipher=AES128-SHA ;; AES-256-CBC) ossl_cipher=AES256-SHA ;;
*) fail "unknown bulk cipher $bulk" ;;
esac
case $ver in 1.0) ossl_ver=-tls1 ;; 1.1) ossl_ver=-tls1_1 ;; 1.2) ossl_ver=-tls1_2 ;; *) fail "unknown version $ver" ;; esac
cmd=r
[ "$auth" = auth ] && cmd=R

# each side's input: numbered lines that cannot be taken for an s_server command
# (a line starting with Q, q or P is one)
lines() { head -c "$2" /dev/urandom | base64 -w 60 | sed "s/^/$1-/"; }
lines c2s1 1536 >"$T/c2s1.txt"
lines c2s2 1536 >"$T/c2s2.txt"
lines s2c1 1536 >"$T/s2c1.txt"
lines s2c2 1536 >"$T/s2c2.txt"
cat "$T/c2s1.txt" "$T/c2s2.txt" >"$T/c2s.txt"
cat "$T/s2c1.txt" "$T/s2c2.txt" >"$T/s2c.txt"

# stdin from a FIFO whose only writer is this script (opened after the reader, so
# that no child inherits it and the reader sees the end when it is closed)
mkfifo "$T/srv.in" "$T/cli.in"
sopts=()
# asking for a certificate needs a full handshake: OpenSSL's client would
# otherwise resume its session in the renegotiation (as the noauth cells let it)
[ "$auth" = auth ] && sopts+=(-CAfile "$T/cli.crt" -no_resumption_on_reneg)
bg srv bash -c 'in=$1; shift; exec "$@" <"$in"' _ "$T/srv.in" \
	openssl s_server -accept 127.0.0.1:0 -cert "$T/srv.crt" -key "$T/srv.key" "$ossl_ver" \
	-cipher "$ossl_cipher:@SECLEVEL=0" "${sopts[@]}"
exec 7>"$T/srv.in"
port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
if [ "$DIRECT" = 1 ]; then
	PX_PORT=$port
else
	start_proxy px --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
fi

case $client in
gnutls-cli)
	prio="NORMAL:-VERS-ALL:+VERS-TLS$ver:-KX-ALL:+RSA:-CIPHER-ALL:+$bulk:-MAC-ALL:+AEAD:+SHA1"
	bg cli bash -c 'in=$1; shift; exec 7>&- "$@" <"$in"' _ "$T/cli.in" \
		gnutls-cli --insecure -p "$PX_PORT" --sni-hostname srv.test --priority "$prio" \
		--x509certfile "$T/cli.crt" --x509keyfile "$T/cli.key" 127.0.0.1
	;;
pyssl)
	bg cli bash -c 'in=$1; shift; exec 7>&- "$@" <"$in"' _ "$T/cli.in" \
		"$PY" "$PEERS" lines-client --port "$PX_PORT" --sni srv.test --version "$ver" \
		--ciphers "$ossl_cipher:@SECLEVEL=0" --cert "$T/cli.crt" --key "$T/cli.key"
	;;
*) fail "unknown client $client" ;;
esac
CLI_PID=$BG_PID
exec 8>"$T/cli.in"

# got FILE EXPECTED: FILE shows every line of EXPECTED
got() { [ "$(tr -d '\r' <"$1" | grep -cFxf "$2")" -ge "$(wc -l <"$2")" ]; }
renegotiated() {
	if [ "$DIRECT" = 1 ]; then
		grep -q "SSL_do_handshake -> 1" "$T/srv.out"
		return
	fi
	kill -USR1 "$PX_PID"
	sleep 0.1
	grep -q "stats tls .*renegotiations=1" "$PX_LOG"
}

cat "$T/c2s1.txt" >&8
wait_for 20 got "$T/srv.out" "$T/c2s1.txt" || fail "the server did not get the client's first lines"
cat "$T/s2c1.txt" >&7
wait_for 20 got "$T/cli.out" "$T/s2c1.txt" || fail "the client did not get the server's first lines"
# renegotiate; the server's second part goes once s_server has acted on the
# command: it reads its stdin in chunks and takes a chunk that starts with
# "r\n" or "R\n" for the command alone, so lines that came in the same read
# would be dropped (apps/s_server.c; under load the pipe coalesces them).
# s_server renegotiates blocking, so its data never crossed the new handshake
# anyway; the client's second part, after it, crosses nothing either.
echo "$cmd" >&7
wait_for 20 grep -q "SSL_do_handshake -> 1" "$T/srv.out" || fail "s_server did not report its renegotiation"
wait_for 20 renegotiated || fail "the proxy did not count a renegotiation: $(grep 'stats tls' "$PX_LOG" | tail -n1)"
cat "$T/s2c2.txt" >&7
cat "$T/c2s2.txt" >&8
wait_for 20 got "$T/srv.out" "$T/c2s.txt" || fail "the server did not get all the client's lines"
wait_for 20 got "$T/cli.out" "$T/s2c.txt" || fail "the client did not get all the server's lines"
exec 8>&- # the client's stdin ends: it closes the connection
wait_exit "$CLI_PID" 20 || fail "$client did not exit"
grep -q "SSL_do_handshake -> 1" "$T/srv.out" || fail "s_server did not report its renegotiation"
if [ "$DIRECT" = 1 ]; then
	say "s_server renegotiates ($cmd) with $client TLS$ver $bulk $auth, no proxy: every line both ways"
	exit 0
fi
wait_conns "$PX_LOG" 1 20

CONN=$(conn_lines "$PX_LOG" | tail -n1)
CONN_ID=$(field "$CONN" id)
expect_fields "$CONN" verdict=decrypted reason=- version="TLS$ver" resumed=no \
	decrypted_c2s="$(fsize "$T/c2s.txt")" decrypted_s2c="$(fsize "$T/s2c.txt")"
expect_client_cert "$CONN" "$auth" # with auth: the certificate sent in the renegotiation
check_sink "$PT" "$CONN_ID" c2s "$T/c2s.txt"
check_sink "$PT" "$CONN_ID" s2c "$T/s2c.txt"
say "s_server renegotiates ($cmd) with $client TLS$ver $bulk $auth: decrypted across it, sinks exact"

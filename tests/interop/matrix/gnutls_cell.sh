#!/usr/bin/env bash
# One cell of the interop matrix (ctest: interop.matrix.<cell>):
#   gnutls_cell.sh SERVER CLIENT VERSION BULK[/MAC] EMS ETM RESUME [AUTH]
#     SERVER   gnutls-serv (--echo) | s_server (-rev: each line back reversed)
#     CLIENT   gnutls-cli | s_client
#     VERSION  1.0 | 1.1 | 1.2
#     BULK     AES-128-GCM | AES-256-GCM | AES-128-CBC | AES-256-CBC (GCM: 1.2 only)
#     EMS, ETM on | off
#     RESUME   none | ticket | id   (gnutls-cli only: --resume, a second connection)
#              | rehandshake        (gnutls-cli only: a renegotiation right after the handshake)
#     AUTH     noauth (default) | auth: the server requires a client certificate
# The server has an RSA certificate and takes RSA key exchange only, the
# proxy between them. The client sends 4 KiB of random text; checked: the
# client got it back (echoed, or reversed line by line), and for the
# connection that carried it the proxy's conn line (decrypted, version,
# resumed, ems, etm) and both plaintext sinks hold exactly those bytes.
. "$(dirname "$0")/../lib.sh"
need_tool gnutls-serv gnutls-cli

[ $# = 7 ] || [ $# = 8 ] || fail "usage: gnutls_cell.sh SERVER CLIENT VERSION BULK EMS ETM RESUME [AUTH]"
server=$1 client=$2 ver=$3 bulk=$4 ems=$5 etm=$6 resume=$7 auth=${8:-noauth}
gen_cert srv srv.test
gen_cert cli cli.test
PT="$T/plaintext"

# BULK[/MAC]: a GnuTLS cipher name, and the MAC when it is not SHA-1 (or AEAD)
mac=SHA1
case $bulk in */*) mac=${bulk#*/} bulk=${bulk%/*} ;; esac
# GnuTLS keeps RC4 and NULL out of NORMAL: name them, and their MAC, outright
prio="NORMAL:-VERS-ALL:+VERS-TLS$ver:-KX-ALL:+RSA:-CIPHER-ALL:+$bulk:-MAC-ALL:+AEAD:+$mac"
[ "$ems" = off ] && prio="$prio:%NO_SESSION_HASH"
[ "$etm" = off ] && prio="$prio:%NO_ETM"
# the same suite by OpenSSL's name (its libssl has no 3DES, RC4 or Camellia-GCM suites here)
case $bulk/$mac in
AES-128-GCM/*) ossl_cipher=AES128-GCM-SHA256 ;; AES-256-GCM/*) ossl_cipher=AES256-GCM-SHA384 ;;
AES-128-CBC/SHA1) ossl_cipher=AES128-SHA ;; AES-256-CBC/SHA1) ossl_cipher=AES256-SHA ;;
AES-128-CCM/*) ossl_cipher=AES128-CCM ;; AES-256-CCM/*) ossl_cipher=AES256-CCM ;;
AES-128-CCM-8/*) ossl_cipher=AES128-CCM8 ;; AES-256-CCM-8/*) ossl_cipher=AES256-CCM8 ;;
CAMELLIA-128-CBC/SHA1) ossl_cipher=CAMELLIA128-SHA ;; CAMELLIA-256-CBC/SHA1) ossl_cipher=CAMELLIA256-SHA ;;
CAMELLIA-128-CBC/SHA256) ossl_cipher=CAMELLIA128-SHA256 ;; CAMELLIA-256-CBC/SHA256) ossl_cipher=CAMELLIA256-SHA256 ;;
ARIA-128-GCM/*) ossl_cipher=ARIA128-GCM-SHA256 ;; ARIA-256-GCM/*) ossl_cipher=ARIA256-GCM-SHA384 ;;
NULL/SHA1) ossl_cipher=NULL-SHA ;; NULL/SHA256) ossl_cipher=NULL-SHA256 ;; NULL/MD5) ossl_cipher=NULL-MD5 ;;
*) ossl_cipher=none ;;
esac
if [ "$ossl_cipher" = none ] && { [ "$server" = s_server ] || [ "$client" = s_client ]; }; then
	fail "no OpenSSL suite for $bulk/$mac"
fi
case $ver in 1.0) ossl_ver=-tls1 ;; 1.1) ossl_ver=-tls1_1 ;; *) ossl_ver=-tls1_2 ;; esac
openssl_conf_no_ems "$T/noems.cnf"
case $server in
gnutls-serv)
	sopts=()
	[ "$resume" = id ] && sopts+=(--noticket)
	[ "$auth" = auth ] && sopts+=(--require-client-cert)
	bg gnutls-serv gnutls-serv --echo -p 0 --x509certfile "$T/srv.crt" --x509keyfile "$T/srv.key" \
		--priority "$prio" "${sopts[@]}"
	;;
s_server)
	sopts=()
	[ "$resume" = id ] && sopts+=(-no_ticket)
	[ "$etm" = off ] && sopts+=(-no_etm)
	[ "$resume" = rehandshake ] && sopts+=(-client_renegotiation)
	[ "$auth" = auth ] && sopts+=(-Verify 1 -CAfile "$T/cli.crt")
	bg s_server env OPENSSL_CONF="$([ "$ems" = off ] && echo "$T/noems.cnf" || echo /dev/null)" \
		openssl s_server -rev -accept 127.0.0.1:0 -cert "$T/srv.crt" -key "$T/srv.key" "$ossl_ver" \
		-cipher "$ossl_cipher:@SECLEVEL=0" "${sopts[@]}"
	;;
*) fail "unknown server $server" ;;
esac
# the servers do not say their port: ask the kernel
port=$(listen_port_of "$BG_PID") || fail "$server did not listen"
# PXY_CELL_DIRECT=1: the same exchange with the client straight at the server, no proxy in
# between (ctest's interop.direct.<cell>): a failure there is not the proxy's
if [ "${PXY_CELL_DIRECT:-0}" = 1 ]; then
	PX_PORT=$port
else
	start_proxy px --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
fi

head -c 3072 /dev/urandom | base64 -w 64 >"$T/in.txt"
# what comes back: the same, or each line reversed
if [ "$server" = s_server ]; then rev <"$T/in.txt" >"$T/back.txt"; else cp "$T/in.txt" "$T/back.txt"; fi
last=$(tail -n1 "$T/back.txt")
# the client's stdin: the text, then held open until its echo's last line is back (30 s at most)
send_and_hold() {
	cat "$T/in.txt"
	for _ in $(seq 300); do
		grep -qF -- "$last" "$T/cli.out" 2>/dev/null && break
		sleep 0.1
	done
}
case $client in
gnutls-cli)
	copts=()
	[ "$auth" = auth ] && copts+=(--x509certfile "$T/cli.crt" --x509keyfile "$T/cli.key")
	case $resume in
	ticket | id) copts+=(--resume) ;;
	rehandshake) copts+=(--rehandshake) ;;
	esac
	send_and_hold | timeout 40 gnutls-cli --insecure -p "$PX_PORT" --sni-hostname srv.test \
		--priority "$prio" "${copts[@]}" 127.0.0.1 >"$T/cli.out" 2>"$T/cli.err" ||
		fail "gnutls-cli failed: $(tail -n3 "$T/cli.err")"
	want_conns=1
	case $resume in ticket | id) want_conns=2 ;; esac
	;;
s_client)
	[ "$resume" = none ] || fail "s_client cells do not resume"
	c=$ossl_cipher vflag=$ossl_ver
	OSSL_CONF=""
	[ "$ems" = off ] && OSSL_CONF="$T/noems.cnf"
	eopt=()
	[ "$etm" = off ] && eopt=(-no_etm)
	[ "$auth" = auth ] && eopt+=(-cert "$T/cli.crt" -key "$T/cli.key")
	# -no_ign_eof: end at the end of stdin; -nocommands: a line starting with Q, R or K is data
	send_and_hold | env OPENSSL_CONF="${OSSL_CONF:-/dev/null}" timeout 40 openssl s_client \
		-connect "127.0.0.1:$PX_PORT" -servername srv.test -quiet -no_ign_eof -nocommands "$vflag" -cipher "$c:@SECLEVEL=0" "${eopt[@]}" \
		>"$T/cli.out" 2>"$T/cli.err" || true
	want_conns=1
	;;
*) fail "unknown client $client" ;;
esac
if [ "${PXY_CELL_DIRECT:-0}" = 1 ]; then
	say "directly, no proxy: the client got everything"
	exit 0
fi
wait_conns "$PX_LOG" "$want_conns" 20
echoed=$(tr -d '\r' <"$T/cli.out" | grep -cFxf "$T/back.txt" || true)
[ "$echoed" = "$(wc -l <"$T/back.txt")" ] ||
	fail "the client got $echoed of $(wc -l <"$T/back.txt") lines back: $(head -c 300 "$T/cli.out")"
CONN=$(conn_lines "$PX_LOG" | tail -n1)
CONN_ID=$(field "$CONN" id)
want_resumed=no
case $resume in ticket | id) want_resumed=yes ;; esac
# encrypt-then-MAC is for block ciphers (RFC 7366): n/a for AEAD, never with RC4; with NULL,
# s_server still agrees to it (the record is the same either way: no cipher, no padding) and GnuTLS does not
case $server/$bulk in
*GCM | *CCM*) want_etm=n/a ;;
*/ARCFOUR* | gnutls-serv/NULL) want_etm=no ;;
*) want_etm=$([ "$etm" = on ] && echo yes || echo no) ;;
esac
expect_fields "$CONN" verdict=decrypted reason=- version="TLS$ver" resumed="$want_resumed" \
	ems="$([ "$ems" = on ] && echo yes || echo no)" etm="$want_etm" \
	decrypted_c2s="$(fsize "$T/in.txt")" decrypted_s2c="$(fsize "$T/back.txt")"
expect_client_cert "$CONN" "$auth"
check_sink "$PT" "$CONN_ID" c2s "$T/in.txt"
check_sink "$PT" "$CONN_ID" s2c "$T/back.txt"
if [ "$resume" = rehandshake ]; then
	kill -USR1 "$PX_PID"
	wait_for 10 grep -q "stats tls .*renegotiations=1" "$PX_LOG" ||
		fail "the proxy did not count the renegotiation: $(grep 'stats tls' "$PX_LOG" | tail -n1)"
fi
say "$server <- $client TLS$ver $bulk ems=$ems etm=$etm resume=$resume $auth: decrypted, sinks exact"

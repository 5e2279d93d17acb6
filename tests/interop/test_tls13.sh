#!/usr/bin/env bash
# TLS 1.3 sessions decrypted with the traffic secrets their servers forward
# (--key-source file:PATH, RFC 9850 key log):
#  - openssl s_server -keylogfile with every TLS 1.3 suite (AES-128/256-GCM,
#    ChaCha20-Poly1305, AES-128-CCM, AES-128-CCM-8), driven by s_client: each
#    side's bytes exact in the sinks, conn line keys=forwarded, the server's
#    certificate judged inside the encrypted handshake;
#  - an ECDSA server certificate (among --cert);
#  - a HelloRetryRequest (the client's key share is one the server does not take);
#  - KeyUpdate both ways, requested and not (s_client/s_server "k"/"K" commands
#    through peers.py lines-client is not needed: OpenSSL updates on demand);
#  - a client certificate (s_server -Verify), checked in the conn line; a
#    post-handshake client authentication (s_client -enable_pha, s_server "c"),
#    its Finished verified (post_auth=1);
#  - a resumption by PSK (s_client -sess_out / -sess_in), and 0-RTT early data
#    (s_server -early_data, s_client -early_data), decrypted with
#    CLIENT_EARLY_TRAFFIC_SECRET;
#  - gnutls-serv with SSLKEYLOGFILE, gnutls-cli; curl against nginx whose
#    OpenSSL logs keys through SSLKEYLOGFILE is not available (nginx has no key
#    log): curl against s_server -www instead;
#  - TLS 1.2 ECDHE-RSA with ChaCha20-Poly1305;
#  - a certificate that is not the configured one: refused (alert 40 to both);
#  - a server that forwards nothing: forwarded untouched, keys-missing;
#    with --require-keys: refused, both sides get alert 40;
#  - the key log the proxy writes holds the TLS 1.3 secrets and tshark
#    decrypts --pcap-tls with them; --pcap carries the plaintext as TCP streams.
. "$(dirname "$0")/lib.sh"

need_tool gnutls-serv gnutls-cli curl
gen_cert srv srv.test
gen_cert other other.test
openssl ecparam -name prime256v1 -out "$T/p256.param" || fail "cannot make P-256 parameters"
gen_cert ec ec.test "ec:$T/p256.param"
PT="$T/plaintext"

# t13_case TAG [s_server args] -- [s_client args]: one exact session through PX_PORT to a fresh
# s_server that logs its keys; checks the sinks and the conn line, and leaves it in CONN
t13_case() {
	local tag=$1 sargs=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do sargs+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	FWD_EXPECT=version=TLS1.3 fwd_case "$tag" -cert "$T/${OSSL_CERT:-srv}.crt" -key "$T/${OSSL_CERT:-srv}.key" -tls1_3 \
		-keylogfile "$KEYLOG" "${sargs[@]}" -- -tls1_3 "$@"
	say "$tag: $(field "$CONN" suite) decrypted with the forwarded secrets (waited $(field "$CONN" key_wait_ms) ms)"
}

start_relay
KEYLOG="$T/keys.log"
start_proxy px --backend "127.0.0.1:$RELAY_PORT" --cert "$T/srv.crt,$T/ec.crt" --key "$T/srv.key,$T/ec.key" \
	--plaintext-dir "$PT" --key-source "file:$KEYLOG" --key-wait 1500 --keylog "$T/proxy-keys.log" --pcap-tls "$T/tls13.pcapng" \
	--pcap "$T/dec13.pcapng"

t13_case aes128 -ciphersuites TLS_AES_128_GCM_SHA256 --
t13_case aes256 -ciphersuites TLS_AES_256_GCM_SHA384 --
t13_case chacha -ciphersuites TLS_CHACHA20_POLY1305_SHA256 --
t13_case ccm -ciphersuites TLS_AES_128_CCM_SHA256 -- -ciphersuites TLS_AES_128_CCM_SHA256
t13_case ccm8 -ciphersuites TLS_AES_128_CCM_8_SHA256 -- -ciphersuites TLS_AES_128_CCM_8_SHA256
t13_case hrr -groups P-256 -- -groups X25519:P-256
expect_fields "$CONN" hello_retry=yes
OSSL_CERT=ec t13_case ecdsa -ciphersuites TLS_AES_128_GCM_SHA256 --
t13_case clientcert -Verify 1 -CAfile "$T/other.crt" -- -cert "$T/other.crt" -key "$T/other.key"
expect_fields "$CONN" client_cert=yes

# KeyUpdate: s_server and s_client read commands from their input ("K": update and ask the peer to,
# "k": update alone); each command waits until the side reports it (s_server's stdout line-buffered
# for that), since a command line is taken
# alone from a read and what came with it is dropped
lines() { head -c "$2" /dev/urandom | base64 -w 60 | sed "s/^/$1-/"; }
lines c2s1 1200 >"$T/ku.c2s1"; lines c2s2 1200 >"$T/ku.c2s2"; lines c2s3 1200 >"$T/ku.c2s3"
lines s2c1 1200 >"$T/ku.s2c1"; lines s2c2 1200 >"$T/ku.s2c2"; lines s2c3 1200 >"$T/ku.s2c3"
mkfifo "$T/ku-srv.in" "$T/ku-cli.in"
bg ku-srv bash -c 'in=$1; shift; exec "$@" <"$in"' _ "$T/ku-srv.in" \
	stdbuf -oL openssl s_server -accept 127.0.0.1:0 -naccept 1 -cert "$T/srv.crt" -key "$T/srv.key" -tls1_3 -keylogfile "$KEYLOG"
exec 7>"$T/ku-srv.in"
set_backend "$(listen_port_of "$BG_PID")"
bg ku-cli bash -c 'in=$1; shift; exec 7>&- "$@" <"$in"' _ "$T/ku-cli.in" \
	openssl s_client -connect "127.0.0.1:$PX_PORT" -servername keyupdate.test -tls1_3
KU_CLI=$BG_PID
exec 8>"$T/ku-cli.in"
got() { [ "$(tr -d '\r' <"$1" | grep -cFxf "$2")" -ge "$(wc -l <"$2")" ]; }
cat "$T/ku.c2s1" >&8
wait_for 20 got "$T/ku-srv.out" "$T/ku.c2s1" || fail "keyupdate: the server did not get the client's first lines"
cat "$T/ku.s2c1" >&7
wait_for 20 got "$T/ku-cli.out" "$T/ku.s2c1" || fail "keyupdate: the client did not get the server's first lines"
echo K >&7
wait_for 20 grep -q "SSL_do_handshake -> 1" "$T/ku-srv.out" || fail "keyupdate: s_server did not report its KeyUpdate"
cat "$T/ku.s2c2" >&7
cat "$T/ku.c2s2" >&8
wait_for 20 got "$T/ku-cli.out" "$T/ku.s2c2" || fail "keyupdate: the client did not get the server's lines after it"
wait_for 20 got "$T/ku-srv.out" "$T/ku.c2s2" || fail "keyupdate: the server did not get the client's lines after it"
echo k >&8
wait_for 20 grep -q "KEYUPDATE" "$T/ku-cli.err" || fail "keyupdate: s_client did not report its KeyUpdate"
cat "$T/ku.c2s3" >&8
cat "$T/ku.s2c3" >&7
wait_for 20 got "$T/ku-srv.out" "$T/ku.c2s3" || fail "keyupdate: the server did not get the client's last lines"
wait_for 20 got "$T/ku-cli.out" "$T/ku.s2c3" || fail "keyupdate: the client did not get the server's last lines"
exec 8>&-
wait_exit "$KU_CLI" 20 || fail "keyupdate: s_client did not exit"
exec 7>&-
wait_for 10 has_conn_sni "$PX_LOG" keyupdate.test || fail "keyupdate: no conn line"
CONN=$(conn_by_sni "$PX_LOG" keyupdate.test)
expect_fields "$CONN" verdict=decrypted reason=- key_updates_s2c=1 key_updates_c2s=2
CONN_ID=$(field "$CONN" id)
for part in 1 2 3; do
	grep -qFf "$T/ku.c2s$part" "$PT/$CONN_ID.c2s" || fail "keyupdate: the client's part $part is not in the c2s sink"
	grep -qFf "$T/ku.s2c$part" "$PT/$CONN_ID.s2c" || fail "keyupdate: the server's part $part is not in the s2c sink"
done
say "keyupdate: the server's (requested) and the client's KeyUpdates followed, every line decrypted"

# post-handshake client authentication: s_client offers it (-enable_pha), s_server asks for a
# certificate after the handshake ("c"), the client answers in its records; the proxy verifies the
# answer's Finished (post_auth=1) and decrypts on
lines pc1 1200 >"$T/pha.c2s1"; lines pc2 1200 >"$T/pha.c2s2"; lines ps1 1200 >"$T/pha.s2c1"
mkfifo "$T/pha-srv.in" "$T/pha-cli.in"
bg pha-srv bash -c 'in=$1; shift; exec "$@" <"$in"' _ "$T/pha-srv.in" \
	stdbuf -oL openssl s_server -accept 127.0.0.1:0 -naccept 1 -cert "$T/srv.crt" -key "$T/srv.key" -tls1_3 \
	-CAfile "$T/other.crt" -keylogfile "$KEYLOG"
exec 7>"$T/pha-srv.in"
set_backend "$(listen_port_of "$BG_PID")"
bg pha-cli bash -c 'in=$1; shift; exec 7>&- "$@" <"$in"' _ "$T/pha-cli.in" \
	openssl s_client -connect "127.0.0.1:$PX_PORT" -servername pha.test -tls1_3 -enable_pha \
	-cert "$T/other.crt" -key "$T/other.key"
PHA_CLI=$BG_PID
exec 8>"$T/pha-cli.in"
cat "$T/pha.c2s1" >&8
wait_for 20 got "$T/pha-srv.out" "$T/pha.c2s1" || fail "pha: the server did not get the client's first lines"
cat "$T/pha.s2c1" >&7
wait_for 20 got "$T/pha-cli.out" "$T/pha.s2c1" || fail "pha: the client did not get the server's lines"
# (after "c", s_server's own writes stall even with no proxy in between: the server's lines go first)
echo c >&7
wait_for 20 grep -q "SSL_do_handshake -> 1" "$T/pha-srv.out" || fail "pha: s_server did not send its CertificateRequest"
wait_for 20 grep -q "^depth=0 CN = other.test" "$T/pha-srv.err" || fail "pha: s_server did not get the client's certificate"
cat "$T/pha.c2s2" >&8
wait_for 20 got "$T/pha-srv.out" "$T/pha.c2s2" || fail "pha: the server did not get the client's lines after it"
exec 8>&-
wait_exit "$PHA_CLI" 20 || fail "pha: s_client did not exit"
exec 7>&-
wait_for 10 has_conn_sni "$PX_LOG" pha.test || fail "pha: no conn line"
CONN=$(conn_by_sni "$PX_LOG" pha.test)
expect_fields "$CONN" verdict=decrypted reason=- post_auth=1 client_cert=yes
CONN_ID=$(field "$CONN" id)
for part in pha.c2s1 pha.c2s2; do
	grep -qFf "$T/$part" "$PT/$CONN_ID.c2s" || fail "pha: $part is not in the c2s sink"
done
grep -qFf "$T/pha.s2c1" "$PT/$CONN_ID.s2c" || fail "pha: the server's lines are not in the s2c sink"
say "pha: a post-handshake client authentication's Finished verified ($(field "$CONN" client_subject)), every line decrypted"

# resumption by PSK (the ticket from the first session): no certificate in the second
bg resume openssl s_server -accept 127.0.0.1:0 -www -cert "$T/srv.crt" -key "$T/srv.key" -tls1_3 -keylogfile "$KEYLOG"
set_backend "$(listen_port_of "$BG_PID")"
printf 'GET /first HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername psk-1.test \
	-tls1_3 -quiet -sess_out "$T/psk.sess" >"$T/psk-1.page" 2>/dev/null || true
grep -q "HTTP/1.0 200 ok" "$T/psk-1.page" || fail "psk-1: no page"
printf 'GET /second HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername psk-2.test \
	-tls1_3 -quiet -sess_in "$T/psk.sess" >"$T/psk-2.page" 2>/dev/null || true
grep -q "HTTP/1.0 200 ok" "$T/psk-2.page" || fail "psk-2: no page"
wait_for 10 has_conn_sni "$PX_LOG" psk-2.test || fail "psk-2: no conn line"
CONN=$(conn_by_sni "$PX_LOG" psk-2.test)
expect_fields "$CONN" verdict=decrypted reason=- resumed=yes keys=forwarded
grep -q "GET /second" "$PT/$(field "$CONN" id).c2s" || fail "psk-2: the request is not in the c2s sink"
grep -q "HTTP/1.0 200 ok" "$PT/$(field "$CONN" id).s2c" || fail "psk-2: the page is not in the s2c sink"
say "psk: a TLS 1.3 resumption (no certificate) decrypted"

# 0-RTT: gnutls-cli resumes its first session (--resume) and sends early data in the second;
# gnutls-serv (SSLKEYLOGFILE) takes it and logs CLIENT_EARLY_TRAFFIC_SECRET
printf 'GET /early HTTP/1.0\r\n\r\n' >"$T/early.req"
bg early env SSLKEYLOGFILE="$KEYLOG" gnutls-serv --echo --earlydata -p 0 --x509certfile "$T/srv.crt" \
	--x509keyfile "$T/srv.key"
set_backend "$(listen_port_of "$BG_PID")"
echo after-early | timeout 20 gnutls-cli --insecure -p "$PX_PORT" --sni-hostname early.test --resume \
	--earlydata="$T/early.req" 127.0.0.1 >"$T/early.out" 2>"$T/early.err" || true
grep -q "This is a resumed session" "$T/early.out" || fail "early: gnutls-cli did not resume"
wait_for 10 test "$(grep -c 'sni=early.test' "$PX_LOG")" -ge 2 || fail "early: no conn lines"
CONN=$(grep 'sni=early.test' "$PX_LOG" | grep 'resumed=yes' | tail -n1)
[ -n "$CONN" ] || fail "early: no resumed conn line"
expect_fields "$CONN" verdict=decrypted reason=- early_data=accepted
grep -q "GET /early" "$PT/$(field "$CONN" id).c2s" || fail "early: the 0-RTT request is not in the c2s sink"
say "early data: the 0-RTT request decrypted with CLIENT_EARLY_TRAFFIC_SECRET"
# gnutls-serv and gnutls-cli (SSLKEYLOGFILE), and curl
gnutls_fwd_case gnutls13.test 'NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM' 'NORMAL:-VERS-ALL:+VERS-TLS1.3' \
	TLS_AES_128_GCM_SHA256
say "gnutls: TLS 1.3 decrypted with the secrets gnutls-serv logged"
mkdir -p "$T/files"
head -c 50000 /dev/urandom >"$T/files/blob.bin"
bg www bash -c 'cd "$1" && exec openssl s_server -accept 127.0.0.1:0 -cert "$2" -key "$3" -WWW -tls1_3 -keylogfile "$4"' \
	s_server "$T/files" "$T/srv.crt" "$T/srv.key" "$KEYLOG"
set_backend "$(listen_port_of "$BG_PID")"
curl -sS -k --max-time 30 --tlsv1.3 --resolve "curl13.test:$PX_PORT:127.0.0.1" "https://curl13.test:$PX_PORT/blob.bin" \
	-o "$T/curl.out" 2>"$T/curl.err" || fail "curl: $(cat "$T/curl.err")"
cmp -s "$T/curl.out" "$T/files/blob.bin" || fail "curl: the file differs"
wait_for 10 has_conn_sni "$PX_LOG" curl13.test || fail "curl: no conn line"
CONN=$(conn_by_sni "$PX_LOG" curl13.test)
expect_fields "$CONN" verdict=decrypted reason=- keys=forwarded
grep -q "GET /blob.bin" "$PT/$(field "$CONN" id).c2s" || fail "curl: the request is not in the c2s sink"
cmp -s <(tail -c 50000 "$PT/$(field "$CONN" id).s2c") "$T/files/blob.bin" || fail "curl: the file is not at the end of the s2c sink"
say "curl: TLS 1.3 GET decrypted, the file exact in the sink"

# a certificate that is not the configured one: found inside the encrypted handshake, refused
bg othercert openssl s_server -accept 127.0.0.1:0 -www -cert "$T/other.crt" -key "$T/other.key" -tls1_3 -keylogfile "$KEYLOG"
set_backend "$(listen_port_of "$BG_PID")"
timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername mismatch13.test -tls1_3 </dev/null \
	>"$T/mismatch.out" 2>&1 || true
grep -q "alert handshake failure" "$T/mismatch.out" || fail "mismatch: the client did not get alert 40"
wait_for 10 has_conn_sni "$PX_LOG" mismatch13.test || fail "mismatch: no conn line"
expect_fields "$(conn_by_sni "$PX_LOG" mismatch13.test)" verdict=rejected reason=cert-mismatch
grep -q "subject=/CN=other.test" <(grep "mismatch13.test" "$PX_LOG" | grep -v "conn ") || true
say "certificate mismatch inside TLS 1.3: refused, alert 40 to the client"

# a server that forwards nothing: forwarded untouched, keys-missing after --key-wait
bg nokeys openssl s_server -accept 127.0.0.1:0 -www -cert "$T/srv.crt" -key "$T/srv.key" -tls1_3
NOKEYS_PORT=$(listen_port_of "$BG_PID")
set_backend "$NOKEYS_PORT"
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername nokeys13.test \
	-tls1_3 -quiet >"$T/nokeys.page" 2>/dev/null || true
grep -q "HTTP/1.0 200 ok" "$T/nokeys.page" || fail "nokeys: the client did not get its page"
wait_for 10 has_conn_sni "$PX_LOG" nokeys13.test || fail "nokeys: no conn line"
expect_fields "$(conn_by_sni "$PX_LOG" nokeys13.test)" verdict=not-decrypted reason=keys-missing
say "no keys: the session went through untouched, logged keys-missing"
# the application records went to the engine's record kernel (emulated: the card's code), the rest was
# opened in the tap
kill -USR1 "$PX_PID"
wait_for 10 grep -q "stats engine name=emu" "$PX_LOG" || fail "no engine stats"
grep "stats engine name=emu" "$PX_LOG" | tail -n1 | grep -Eq "rec_open=[1-9][0-9]* .*batched_jobs=[1-9]" ||
	fail "TLS 1.3 records did not go to the card's kernel: $(grep 'stats engine' "$PX_LOG" | tail -n1)"
say "TLS 1.3 application records opened by the record kernel: $(grep 'stats engine' "$PX_LOG" | tail -n1 | grep -o 'rec_open=[0-9]* .*batched_jobs=[0-9]*')"
stop_group "$PX_PID"

# the proxy's own key log and the TLS capture: Wireshark's tshark decrypts the sessions with them
grep -q "^SERVER_HANDSHAKE_TRAFFIC_SECRET " "$T/proxy-keys.log" || fail "no TLS 1.3 secrets in --keylog"
grep -q "^CLIENT_TRAFFIC_SECRET_0 " "$T/proxy-keys.log" || fail "no TLS 1.3 application secrets in --keylog"
n=$(tshark -r "$T/tls13.pcapng" -T fields -e tcp.stream 2>/dev/null | sort -un | wc -l)
for ((st = 0; st < n; st++)); do tshark -r "$T/tls13.pcapng" -q -z "follow,tls,ascii,$st" 2>/dev/null; done >"$T/follow.txt"
for want in "GET /first" "GET /second" "GET /early" "GET /blob.bin"; do
	grep -q "$want" "$T/follow.txt" || fail "tshark did not decrypt '$want' from --pcap-tls"
done
say "--keylog has the TLS 1.3 secrets; tshark decrypts --pcap-tls (TLS 1.3, PSK, 0-RTT) unaided"
# the decrypted capture: plain TCP streams carrying the TLS 1.3 sessions' plaintext
n=$(tshark -r "$T/dec13.pcapng" -T fields -e tcp.stream 2>/dev/null | sort -un | wc -l)
[ "$n" -gt 0 ] || fail "--pcap has no TCP stream"
for ((st = 0; st < n; st++)); do tshark -r "$T/dec13.pcapng" -q -z "follow,tcp,ascii,$st" 2>/dev/null; done >"$T/follow-dec.txt"
for want in "GET /first" "GET /second" "GET /early" "GET /blob.bin"; do
	grep -q "$want" "$T/follow-dec.txt" || fail "--pcap lacks the decrypted '$want'"
done
say "--pcap: $n TCP streams carry the TLS 1.3 sessions' plaintext (1-RTT, PSK, 0-RTT)"

# --require-keys: without the keys the session is refused; with them it goes on
start_proxy px2 --backend "127.0.0.1:$RELAY_PORT" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT" \
	--key-source "file:$KEYLOG" --key-wait 500 --require-keys
set_backend "$NOKEYS_PORT"
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername req-nokeys.test \
	-tls1_3 >"$T/req-nokeys.out" 2>&1 || true
grep -q "HTTP/1.0 200 ok" "$T/req-nokeys.out" && fail "require-keys: a session without keys got its page"
grep -q "alert handshake failure" "$T/req-nokeys.out" || fail "require-keys: the client did not get alert 40"
wait_for 10 has_conn_sni "$PX_LOG" req-nokeys.test || fail "require-keys: no conn line"
expect_fields "$(conn_by_sni "$PX_LOG" req-nokeys.test)" verdict=rejected reason=keys-missing
t13_case req-keys -ciphersuites TLS_AES_128_GCM_SHA256 --
bg req12 openssl s_server -accept 127.0.0.1:0 -www -cert "$T/srv.crt" -key "$T/srv.key" -no_tls1_3 \
	-cipher ECDHE-RSA-AES128-GCM-SHA256
set_backend "$(listen_port_of "$BG_PID")"
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername req12-nokeys.test \
	-no_tls1_3 >"$T/req12.out" 2>&1 || true
grep -q "HTTP/1.0 200 ok" "$T/req12.out" && fail "require-keys: a TLS 1.2 ECDHE session without keys got its page"
wait_for 10 has_conn_sni "$PX_LOG" req12-nokeys.test || fail "require-keys 1.2: no conn line"
expect_fields "$(conn_by_sni "$PX_LOG" req12-nokeys.test)" verdict=rejected reason=keys-missing
bg req12k openssl s_server -accept 127.0.0.1:0 -www -cert "$T/srv.crt" -key "$T/srv.key" -no_tls1_3 \
	-cipher ECDHE-RSA-AES128-GCM-SHA256 -keylogfile "$KEYLOG"
set_backend "$(listen_port_of "$BG_PID")"
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername req12-keys.test \
	-no_tls1_3 -quiet >"$T/req12k.out" 2>&1 || true
grep -q "HTTP/1.0 200 ok" "$T/req12k.out" || fail "require-keys: a TLS 1.2 ECDHE session with keys did not get its page"
wait_for 10 has_conn_sni "$PX_LOG" req12-keys.test || fail "require-keys 1.2 keys: no conn line"
expect_fields "$(conn_by_sni "$PX_LOG" req12-keys.test)" verdict=decrypted reason=- keys=forwarded
say "--require-keys: TLS 1.3 and TLS 1.2 ECDHE refused without their keys (alert 40), decrypted with them"
say "ok"

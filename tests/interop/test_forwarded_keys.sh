#!/usr/bin/env bash
# ECDHE and DHE sessions decrypted with the secrets their servers forward
# (--key-source file:PATH, an RFC 9850 key log the server writes on this host):
#  - openssl s_server -keylogfile: ECDHE-RSA with AES-GCM, AES-CBC and
#    ChaCha20-Poly1305, DHE-RSA with AES-CBC, Camellia and ChaCha20-Poly1305,
#    TLS 1.2 and TLS 1.0, driven by s_client; each
#    side's bytes exact in the sinks, the conn line `keys=forwarded`;
#  - an ECDHE session resumed by session ID: from the session cache;
#  - gnutls-serv with SSLKEYLOGFILE, gnutls-cli: ECDHE-RSA AES-256-GCM;
#  - the key log truncated and then replaced (rotated) while the proxy follows
#    it: later sessions still decrypted; a malformed line logged and dropped,
#    the next line taken;
#  - a server that forwards nothing: the session goes through untouched and is
#    logged not-decrypted, keys-missing, after --key-wait;
#  - ECDHE-ECDSA (GCM, CBC, ChaCha20) with an ECDSA certificate among --cert;
#    such a certificate without --key-source is refused at start;
#  - without --key-source an ECDHE session is refused as before (non-rsa-kx).
. "$(dirname "$0")/lib.sh"

need_tool gnutls-serv gnutls-cli
gen_cert srv srv.test
# an ECDSA server certificate: ECDHE-ECDSA sessions are judged by it (its key decrypts nothing)
openssl ecparam -name prime256v1 -out "$T/p256.param" || fail "cannot make P-256 parameters"
gen_cert ec ec.test "ec:$T/p256.param"
PT="$T/plaintext"

# ossl_case TAG CIPHER VERSION-FLAG: one exact session through PX_PORT to a fresh s_server that logs its keys
ossl_case() {
	local tag=$1 cipher=$2 vflag=$3

	fwd_case "$tag" -cert "$T/${OSSL_CERT:-srv}.crt" -key "$T/${OSSL_CERT:-srv}.key" -cipher "$cipher:@SECLEVEL=0" \
		"$vflag" -keylogfile "$KEYLOG" -- -cipher "$cipher:@SECLEVEL=0" "$vflag"
	say "$tag: $(field "$CONN" suite) decrypted with the forwarded secret (waited $(field "$CONN" key_wait_ms) ms)"
}

# the proxy forwards to a relay port whose target each case sets (one proxy follows one key log throughout)
start_relay
KEYLOG="$T/keys.log"
start_proxy px --backend "127.0.0.1:$RELAY_PORT" --cert "$T/srv.crt,$T/ec.crt" --key "$T/srv.key,$T/ec.key" \
	--plaintext-dir "$PT" --key-source "file:$KEYLOG" --key-wait 1500
grep -q "RSA-2048,EC-256" "$PX_LOG" || fail "the start line does not name both keys"
grep -q "key source $KEYLOG: .*(waiting for it)" "$PX_LOG" || fail "no line saying the key log is awaited"

ossl_case ecdhe-gcm ECDHE-RSA-AES128-GCM-SHA256 -tls1_2
ossl_case ecdhe-cbc ECDHE-RSA-AES256-SHA -tls1_2
ossl_case dhe-cbc DHE-RSA-AES128-SHA256 -tls1_2
ossl_case dhe-camellia DHE-RSA-CAMELLIA256-SHA -tls1_2
ossl_case ecdhe-tls10 ECDHE-RSA-AES128-SHA -tls1
ossl_case ecdhe-chacha ECDHE-RSA-CHACHA20-POLY1305 -tls1_2
ossl_case dhe-chacha DHE-RSA-CHACHA20-POLY1305 -tls1_2
# ECDHE-ECDSA: the ECDSA certificate is the one configured (GCM, CBC, ChaCha20-Poly1305)
OSSL_CERT=ec
ossl_case ecdsa-gcm ECDHE-ECDSA-AES128-GCM-SHA256 -tls1_2
ossl_case ecdsa-cbc ECDHE-ECDSA-AES256-SHA384 -tls1_2
ossl_case ecdsa-chacha ECDHE-ECDSA-CHACHA20-POLY1305 -tls1_2
OSSL_CERT=srv

# truncated (a server starting a new log in place), then replaced by another file (rotation)
: >"$KEYLOG"
ossl_case after-truncate ECDHE-RSA-AES128-GCM-SHA256 -tls1_2
mv "$KEYLOG" "$KEYLOG.1"
printf 'CLIENT_RANDOM 00zz this is not a key line\n' >"$KEYLOG"
ossl_case after-rotate ECDHE-RSA-AES256-GCM-SHA384 -tls1_2
wait_for 5 grep -q "key source $KEYLOG: a malformed line dropped" "$PX_LOG" || fail "the malformed line was not logged"

# resumption of an ECDHE session (session ID): from the session cache, as for RSA sessions
bg resume openssl s_server -accept 127.0.0.1:0 -www -cert "$T/srv.crt" -key "$T/srv.key" -cipher ECDHE-RSA-AES128-GCM-SHA256 \
	-no_tls1_3 -no_ticket -keylogfile "$KEYLOG"
set_backend "$(listen_port_of "$BG_PID")"
for k in 1 2; do
	sess=(-sess_out "$T/resume.sess")
	[ $k = 2 ] && sess=(-sess_in "$T/resume.sess")
	printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername "resume-$k.test" \
		-no_tls1_3 -quiet "${sess[@]}" >"$T/resume-$k.page" 2>/dev/null || true
	grep -q "HTTP/1.0 200 ok" "$T/resume-$k.page" || fail "resume-$k: no page"
	wait_for 10 has_conn_sni "$PX_LOG" "resume-$k.test" || fail "resume-$k: no conn line"
done
expect_fields "$(conn_by_sni "$PX_LOG" resume-1.test)" verdict=decrypted resumed=no keys=forwarded
expect_fields "$(conn_by_sni "$PX_LOG" resume-2.test)" verdict=decrypted resumed=yes
say "resumption of an ECDHE session: decrypted from the session cache"

# gnutls-serv writing its keys through SSLKEYLOGFILE
gnutls_fwd_case gnutls.test 'NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA:-CIPHER-ALL:+AES-256-GCM' \
	'NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA:-CIPHER-ALL:+AES-256-GCM' TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
say "gnutls: decrypted with the secret gnutls-serv logged"

# a server that logs no keys: forwarded untouched, not decrypted, keys-missing after --key-wait
bg nokeys openssl s_server -accept 127.0.0.1:0 -www -cert "$T/srv.crt" -key "$T/srv.key" -cipher ECDHE-RSA-AES128-GCM-SHA256 -no_tls1_3
set_backend "$(listen_port_of "$BG_PID")"
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername nokeys.test -quiet \
	-no_tls1_3 >"$T/nokeys.page" 2>/dev/null || true
grep -q "HTTP/1.0 200 ok" "$T/nokeys.page" || fail "nokeys: the client did not get its page"
wait_for 10 has_conn_sni "$PX_LOG" nokeys.test || fail "nokeys: no conn line"
expect_fields "$(conn_by_sni "$PX_LOG" nokeys.test)" verdict=not-decrypted reason=keys-missing
stop_group "$PX_PID"

# an ECDSA certificate without a key source: refused at start, it would decrypt nothing
timeout 10 "$PROXYSSL" --listen 127.0.0.1:0 --backend 127.0.0.1:1 --cert "$T/ec.crt" --key "$T/ec.key" >"$T/ec-only.out" 2>&1 &&
	fail "an ECDSA certificate without --key-source was accepted"
grep -q "RSA key exchange needs an RSA key" "$T/ec-only.out" || fail "no clear error for an ECDSA key without --key-source: $(cat "$T/ec-only.out")"

# without a key source: refused at ServerHello, as before
start_proxy px2 --backend "127.0.0.1:$RELAY_PORT" --cert "$T/srv.crt" --key "$T/srv.key"
timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername plain.test -no_tls1_3 </dev/null >/dev/null 2>&1 || true
wait_for 10 has_conn_sni "$PX_LOG" plain.test || fail "plain: no conn line"
expect_fields "$(conn_by_sni "$PX_LOG" plain.test)" verdict=rejected reason=non-rsa-kx
say "ok"

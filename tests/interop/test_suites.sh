#!/usr/bin/env bash
# Every decryptable suite through the proxy between real `openssl s_server`
# (raw mode) and `openssl s_client`: 6 suites x EMS on/off, and for the four
# CBC suites EtM on/off as well (20 sessions), then TLS 1.0 and 1.1 with two
# CBC suites (4 more). Each side sends 64 KiB of
# random bytes; checked: each side received exactly the other's bytes, the
# plaintext sinks hold exactly what each side sent, the conn line (verdict,
# suite, ems, etm, byte counts) and the proxy's key log line equals the one
# s_client wrote with -keylogfile. Then: client authentication, and
# resumption by session ID and by ticket.
. "$(dirname "$0")/lib.sh"

N=65536
gen_cert srv
openssl_conf_no_ems "$T/noems.cnf"
PT="$T/plaintext"
sessions=0

# run_session SUITE EMS(yes|no) ETM(yes|no) [VERSION(1.0|1.1|1.2)]
run_session() {
	local suite=$1 ems=$2 etm=$3 ver=${4:-1.2} tag opts=() want_etm cipher=$1
	tag=$(echo "s-$suite-ems-$ems-etm-$etm-v$ver" | tr 'A-Z' 'a-z')
	# OpenSSL 3 speaks TLS 1.0/1.1 only at security level 0
	case $ver in
	1.0) opts+=(-tls1); cipher="$suite:@SECLEVEL=0" ;;
	1.1) opts+=(-tls1_1); cipher="$suite:@SECLEVEL=0" ;;
	*) opts+=(-no_tls1_3) ;;
	esac
	head -c $N /dev/urandom >"$T/$tag.c2s"
	head -c $N /dev/urandom >"$T/$tag.s2c"
	[ "$etm" = no ] && opts+=(-no_etm)
	ossl_server "$tag" "$T/$tag.c2s" "$T/$tag.s2c" -cert "$T/srv.crt" -key "$T/srv.key" \
		-cipher "$cipher" "${opts[@]}"
	start_proxy "px-$tag" --backend "127.0.0.1:$SRV_PORT" --cert "$T/srv.crt" --key "$T/srv.key" \
		--plaintext-dir "$PT" --keylog "$T/$tag.proxy-keylog"
	OSSL_CONF=""
	[ "$ems" = no ] && OSSL_CONF="$T/noems.cnf"
	ossl_client "$tag" "$T/$tag.c2s" "$T/$tag.s2c" "$PX_PORT" -servername "$tag" -cipher "$cipher" \
		-keylogfile "$T/$tag.keylog" "${opts[@]}"
	ossl_wait "$tag" "$T/$tag.c2s" "$T/$tag.s2c"
	get_conn "$PX_LOG" "$tag"
	if is_cbc "$suite"; then want_etm=$etm; else want_etm=n/a; fi
	expect_fields "$CONN" verdict=decrypted reason=- version=TLS$ver "suite=${IANA[$suite]}" \
		ems="$ems" etm="$want_etm" decrypted_c2s=$N decrypted_s2c=$N client_cert=no close=fin
	check_sink "$PT" "$CONN_ID" c2s "$T/$tag.c2s"
	check_sink "$PT" "$CONN_ID" s2c "$T/$tag.s2c"
	# key log: one line, the same as the client's own
	local cl pl
	cl=$(grep '^CLIENT_RANDOM ' "$T/$tag.keylog" 2>/dev/null)
	[ -n "$cl" ] || fail "$tag: s_client wrote no CLIENT_RANDOM line"
	wait_for 10 grep -q '^CLIENT_RANDOM ' "$T/$tag.proxy-keylog" || fail "$tag: the proxy wrote no key log line"
	[ "$(wc -l <"$T/$tag.proxy-keylog")" = 1 ] || fail "$tag: the proxy key log should hold one line"
	pl=$(cat "$T/$tag.proxy-keylog")
	[ "$pl" = "$cl" ] || fail "$tag: key log line differs: proxy '$pl' vs s_client '$cl'"
	printf '%s\n' "$pl" | grep -Eq '^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}$' || fail "$tag: key log format: '$pl'"
	stop_group "$PX_PID"
	sessions=$((sessions + 1))
	say "$tag: ok ($CONN_ID, close=$(field "$CONN" close), $(field "$CONN" duration_ms) ms)"
}

for suite in $SUITES; do
	for ems in yes no; do
		if is_cbc "$suite"; then etms="yes no"; else etms=yes; fi
		for etm in $etms; do
			run_session "$suite" "$ems" "$etm"
		done
	done
done
# TLS 1.0 (MD5/SHA-1 PRF, chained CBC IVs) and 1.1 (explicit IVs)
for ver in 1.0 1.1; do
	run_session AES128-SHA yes yes $ver
	run_session AES256-SHA no no $ver
done
[ "$sessions" = 24 ] || fail "ran $sessions sessions, expected 24"
say "all $sessions sessions decrypted exactly"

# ---- client authentication: the server asks for a certificate, the client sends one
gen_cert cli client.example
tag=s-client-auth
head -c $N /dev/urandom >"$T/$tag.c2s"
head -c $N /dev/urandom >"$T/$tag.s2c"
ossl_server "$tag" "$T/$tag.c2s" "$T/$tag.s2c" -cert "$T/srv.crt" -key "$T/srv.key" -cipher AES128-SHA256 -no_tls1_3 \
	-Verify 1 -CAfile "$T/cli.crt"
start_proxy "px-$tag" --backend "127.0.0.1:$SRV_PORT" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
OSSL_CONF=""
ossl_client "$tag" "$T/$tag.c2s" "$T/$tag.s2c" "$PX_PORT" -servername "$tag" -cipher AES128-SHA256 -no_tls1_3 \
	-cert "$T/cli.crt" -key "$T/cli.key"
ossl_wait "$tag" "$T/$tag.c2s" "$T/$tag.s2c"
get_conn "$PX_LOG" "$tag"
expect_fields "$CONN" verdict=decrypted reason=- suite=TLS_RSA_WITH_AES_128_CBC_SHA256 client_cert=yes close=fin \
	client_subject=/CN=client.example "client_serial=$(cert_serial "$T/cli.crt")"
check_sink "$PT" "$CONN_ID" c2s "$T/$tag.c2s"
check_sink "$PT" "$CONN_ID" s2c "$T/$tag.s2c"
stop_group "$PX_PID"
say "$tag: client certificate sent, decrypted exactly"

# ---- resumption (session ID, then ticket): the first session is decrypted and
# its secret kept; the abbreviated handshake that resumes it is decrypted too.
# After a proxy restart (empty cache) a resumption is forwarded intact and
# logged not-decrypted reason=resumption-unknown.
for mode in id ticket; do
	opt=()
	[ "$mode" = id ] && opt=(-no_ticket)
	bg "www-$mode" openssl s_server -accept 127.0.0.1:0 -cert "$T/srv.crt" -key "$T/srv.key" -www -no_tls1_3 \
		-cipher AES128-GCM-SHA256 "${opt[@]}"
	port=$(listen_port_of "$BG_PID") || fail "s_server -www did not listen"
	start_proxy "px-resume-$mode" --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
	for n in 1 2 3 4; do
		tag=s-resume-$mode-$n
		if [ $n = 1 ]; then sess=(-sess_out "$T/sess-$mode"); else sess=(-sess_in "$T/sess-$mode"); fi
		if [ $n = 4 ]; then
			stop_group "$PX_PID"
			start_proxy "px-resume-$mode-restarted" --backend "127.0.0.1:$port" --cert "$T/srv.crt" \
				--key "$T/srv.key" --plaintext-dir "$PT"
		fi
		printf 'GET / HTTP/1.0\r\n\r\n' | timeout 30 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername "$tag" \
			-ign_eof -no_tls1_3 "${opt[@]}" "${sess[@]}" >"$T/$tag.out" 2>"$T/$tag.err" || fail "$tag: s_client failed"
		grep -q '^HTTP/1.0 200 ok' "$T/$tag.out" || fail "$tag: no HTTP response through the proxy"
		want=New resumed=no
		[ $n -gt 1 ] && want=Reused resumed=yes
		grep -q "^$want, TLSv1.2, Cipher is AES128-GCM-SHA256" "$T/$tag.out" ||
			fail "$tag: s_client did not report a $want session: $(grep -E '^(New|Reused),' "$T/$tag.out")"
		get_conn "$PX_LOG" "$tag"
		expect_fields "$CONN" suite=TLS_RSA_WITH_AES_128_GCM_SHA256 close=fin resumed=$resumed
		if [ $n -lt 4 ]; then
			expect_fields "$CONN" verdict=decrypted reason=- decrypted_c2s=18
			# the response s_client printed (after its session report) ends with the page the sink holds
			wait_size "$PT/$CONN_ID.s2c" "$(field "$CONN" decrypted_s2c)" 10 || fail "$tag: sink s2c short"
			head -n1 "$PT/$CONN_ID.s2c" | grep -q '^HTTP/1.0 200 ok' || fail "$tag: the s2c sink is not the response"
		else
			expect_fields "$CONN" verdict=not-decrypted reason=resumption-unknown decrypted_c2s=0 decrypted_s2c=0
		fi
	done
	kill -USR1 "$PX_PID"
	wait_for 10 grep -q "stats sessions" "$PX_LOG" || fail "no stats sessions line"
	grep -q "stats sessions .*resumed_unknown=1" "$PX_LOG" || fail "the restarted proxy did not count the unknown resumption"
	stop_group "$PX_PID"
	grep -h "stats sessions" "$T"/px-resume-"$mode".log* 2>/dev/null | grep -q "hits=2 .*resumed=2 " ||
		fail "the first proxy did not count two resumptions: $(grep -h 'stats sessions' "$T"/px-resume-"$mode".log* | tail -n1)"
	say "resumption by $mode: decrypted twice from the cache; after a restart forwarded as resumption-unknown"
done

#!/usr/bin/env bash
# HTTP clients through the proxy, every decryptable suite:
#  - curl -> openssl s_server -www (the status page): the response curl shows
#    (-i, headers as received) is exactly the s2c sink; the c2s sink is curl's request;
#  - curl -> openssl s_server -WWW (a file): body intact, sinks hold request and response;
#  - gnutls-cli -> s_server -WWW, GnuTLS as the client, with and without the
#    extended master secret (%NO_SESSION_HASH) and encrypt-then-MAC (%NO_ETM);
#  - curl -> nginx with an RSA certificate and only RSA key-exchange suites.
. "$(dirname "$0")/lib.sh"
need_tool curl nginx

gen_cert srv
PT="$T/plaintext"
ALL6="AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256"

# check_request FILE METHOD PATH HOST: the c2s sink is one complete request head from curl
check_request() {
	local f=$1
	wait_for 10 grep -q "^User-Agent: curl/" "$f" || fail "no curl request in $f"
	head -n1 "$f" | grep -q "^$2 $3 HTTP/1.1"$'\r'"\$" || fail "$f: request line '$(head -n1 "$f")'"
	grep -q "^Host: $4"$'\r'"\$" "$f" || fail "$f: no 'Host: $4' header"
	[ "$(tail -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = 0d0a0d0a ] || fail "$f does not end with the end of the request head"
}

curl_tls() {
	local suite=$1
	shift
	curl -sS -k --tlsv1.2 --tls-max 1.2 --ciphers "$suite" --max-time 30 "$@"
}

# ---- 1. s_server -www -------------------------------------------------------------
bg www openssl s_server -accept 127.0.0.1:0 -cert "$T/srv.crt" -key "$T/srv.key" -www -no_tls1_3 -cipher "$ALL6"
www_port=$(listen_port_of "$BG_PID") || fail "s_server -www did not listen"
start_proxy px-www --backend "127.0.0.1:$www_port" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
FD0=$(fd_count "$PX_PID")
for suite in $SUITES; do
	host=www-$(echo "$suite" | tr 'A-Z' 'a-z').test
	curl_tls "$suite" -i --resolve "$host:$PX_PORT:127.0.0.1" -o "$T/$host.resp" "https://$host:$PX_PORT/" \
		2>"$T/$host.err" || fail "curl $suite to s_server -www failed: $(cat "$T/$host.err")"
	head -n1 "$T/$host.resp" | grep -q '^HTTP/1.0 200 ok' || fail "$host: response '$(head -n1 "$T/$host.resp")'"
	grep -q "Cipher is $suite"$'\r'"\?\$" "$T/$host.resp" || grep -q "^$suite\$" "$T/$host.resp" ||
		fail "$host: the status page does not name $suite"
	get_conn "$PX_LOG" "$host"
	expect_fields "$CONN" verdict=decrypted reason=- version=TLS1.2 "suite=${IANA[$suite]}" ems=yes close=fin
	is_cbc "$suite" && expect_field "$CONN" etm yes
	check_sink "$PT" "$CONN_ID" s2c "$T/$host.resp"
	check_request "$PT/$CONN_ID.c2s" GET / "$host:$PX_PORT"
	expect_field "$CONN" decrypted_s2c "$(fsize "$T/$host.resp")"
	expect_field "$CONN" decrypted_c2s "$(fsize "$PT/$CONN_ID.c2s")"
done
# A burst of short connections: s_server -www answers and closes at once, curl
# closes as soon as it has the answer, so the connection often ends while the
# engine still holds the last records. Each one's plaintext must be complete,
# and afterwards the proxy holds no more descriptors than before the first.
BURST=30
for i in $(seq 1 $BURST); do
	host=burst-$i.test
	curl_tls AES128-GCM-SHA256 -i --resolve "$host:$PX_PORT:127.0.0.1" -o "$T/$host.resp" "https://$host:$PX_PORT/" \
		2>"$T/$host.err" || fail "burst $i: curl failed: $(cat "$T/$host.err")"
done
lost=0
for i in $(seq 1 $BURST); do
	host=burst-$i.test
	get_conn "$PX_LOG" "$host"
	if [ "$(field "$CONN" decrypted_s2c)" != "$(fsize "$T/$host.resp")" ]; then
		lost=$((lost + 1))
		[ $lost -gt 3 ] || echo "  lost plaintext: $CONN"
		continue
	fi
	check_sink "$PT" "$CONN_ID" s2c "$T/$host.resp"
done
[ $lost = 0 ] || fail "$lost of $BURST short connections lost (part of) their s2c plaintext (decrypted_s2c short of the response)"
# every connection's sockets and plaintext files are closed once it is over
wait_fds "$PX_PID" "$FD0"
stop_group "$PX_PID"
say "curl -> s_server -www: 6 suites ok, and $BURST short connections complete, no descriptor left open"

# ---- 2. s_server -WWW (files) -------------------------------------------------------
mkdir -p "$T/files"
head -c 100000 /dev/urandom >"$T/files/blob.bin"
bg WWW bash -c 'cd "$1" && exec openssl s_server -accept 127.0.0.1:0 -cert "$2" -key "$3" -WWW -no_tls1_3 -cipher "$4"' \
	s_server "$T/files" "$T/srv.crt" "$T/srv.key" "$ALL6"
WWW_port=$(listen_port_of "$BG_PID") || fail "s_server -WWW did not listen"
start_proxy px-WWW --backend "127.0.0.1:$WWW_port" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
for suite in AES256-GCM-SHA384 AES128-SHA256; do
	host=file-$(echo "$suite" | tr 'A-Z' 'a-z').test
	curl_tls "$suite" --resolve "$host:$PX_PORT:127.0.0.1" -o "$T/$host.got" "https://$host:$PX_PORT/blob.bin" \
		2>"$T/$host.err" || fail "curl $suite to s_server -WWW failed: $(cat "$T/$host.err")"
	same "$T/$host.got" "$T/files/blob.bin" "$host: the file curl downloaded"
	get_conn "$PX_LOG" "$host"
	expect_fields "$CONN" verdict=decrypted reason=- "suite=${IANA[$suite]}"
	check_http_sink "$PT/$CONN_ID.s2c" "$T/files/blob.bin" "HTTP/1.0 200 ok"
	check_request "$PT/$CONN_ID.c2s" GET /blob.bin "$host:$PX_PORT"
done
say "curl -> s_server -WWW ok"

# ---- 3. gnutls-cli -> s_server -WWW ---------------------------------------------------
if command -v gnutls-cli >/dev/null 2>&1; then
	# what s_server -WWW answers for blob.bin
	{ printf 'HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n'; cat "$T/files/blob.bin"; } >"$T/blob.resp"
	base="NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA:-MAC-ALL:+AEAD:+SHA1:+SHA256:-CIPHER-ALL"
	# name|priority|suite|ems|etm
	while IFS='|' read -r name prio suite ems etm; do
		host=gnutls-$name.test
		printf 'GET /blob.bin HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >"$T/$host.req"
		# the request, then stdin stays open until the whole response is in (or 30 s)
		bg "$host" env REQ="$T/$host.req" OUT="$T/$host.out" N="$(fsize "$T/blob.resp")" \
			PORT="$PX_PORT" HOST="$host" PRIO="$base:$prio" LOGF="$T/$host.gnutls-log" bash -c '
			"$PY" "$PEERS" feed "$REQ" --until "$OUT:$N" --timeout 30 |
			exec gnutls-cli --insecure -p "$PORT" --sni-hostname "$HOST" --priority "$PRIO" --logfile "$LOGF" 127.0.0.1'
		wait_exit "$BG_PID" 40 || fail "gnutls-cli ($name) did not finish"
		same "$T/$host.out" "$T/blob.resp" "$host: what gnutls-cli received"
		get_conn "$PX_LOG" "$host"
		expect_fields "$CONN" verdict=decrypted reason=- "suite=${IANA[$suite]}" ems="$ems" etm="$etm"
		check_sink "$PT" "$CONN_ID" c2s "$T/$host.req"
		check_sink "$PT" "$CONN_ID" s2c "$T/blob.resp"
		say "gnutls-cli $name: ok (ems=$ems etm=$etm)"
	done <<-'EOF'
		aes128gcm|+AES-128-GCM|AES128-GCM-SHA256|yes|n/a
		aes256gcm-noems|+AES-256-GCM:%NO_SESSION_HASH|AES256-GCM-SHA384|no|n/a
		aes128cbc|+AES-128-CBC:-MAC-ALL:+SHA1|AES128-SHA|yes|yes
		aes128cbc-noetm|+AES-128-CBC:-MAC-ALL:+SHA1:%NO_ETM|AES128-SHA|yes|no
		aes256cbc-noems-noetm|+AES-256-CBC:-MAC-ALL:+SHA1:%NO_SESSION_HASH:%NO_ETM|AES256-SHA|no|no
		aes256sha256-noems|+AES-256-CBC:-MAC-ALL:+SHA256:%NO_SESSION_HASH|AES256-SHA256|no|yes
	EOF
else
	say "gnutls-cli not installed: GnuTLS client checks skipped"
fi
stop_group "$PX_PID"

# ---- 4. curl -> nginx -----------------------------------------------------------------
mkdir -p "$T/www"
head -c 100000 /dev/urandom >"$T/www/page.bin"
start_nginx nginx "$T/www" "$T/srv.crt" "$T/srv.key" "$ALL6"
start_proxy px-nginx --backend "127.0.0.1:$NG_PORT" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
for suite in $SUITES; do
	host=nginx-$(echo "$suite" | tr 'A-Z' 'a-z').test
	curl_tls "$suite" --resolve "$host:$PX_PORT:127.0.0.1" -o "$T/$host.got" "https://$host:$PX_PORT/page.bin" \
		2>"$T/$host.err" || fail "curl $suite to nginx failed: $(cat "$T/$host.err")"
	same "$T/$host.got" "$T/www/page.bin" "$host: the page curl downloaded"
	get_conn "$PX_LOG" "$host"
	expect_fields "$CONN" verdict=decrypted reason=- version=TLS1.2 "suite=${IANA[$suite]}" ems=yes close=fin
	check_http_sink "$PT/$CONN_ID.s2c" "$T/www/page.bin" "HTTP/1.1 200 OK"
	check_request "$PT/$CONN_ID.c2s" GET /page.bin "$host:$PX_PORT"
done
say "curl -> nginx: 6 suites ok"

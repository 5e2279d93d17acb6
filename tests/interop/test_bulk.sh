#!/usr/bin/env bash
# Bulk transfers through the proxy arrive byte-identical and the plaintext
# sinks hold exactly what each side sent:
#  - openssl s_server <-> s_client, 16 MiB each way at the same time, for a GCM
#    suite and for a CBC suite without encrypt-then-MAC (MAC-then-encrypt);
#  - nginx (WebDAV) and curl, a 16 MiB PUT and a 16 MiB GET, GCM and CBC+EtM;
#  - the same 16 MiB exchange with the default --max-pending and with 64K,
#    where the engine or the plaintext files' writes may fall behind: then the
#    sinks must agree with the conn line's counters (decrypted_* bytes,
#    dropped_* records), be exact when nothing was dropped, and a file whose
#    writes fell behind (logged) holds a prefix of what was sent.
. "$(dirname "$0")/lib.sh"
need_tool curl nginx

N=$((16 * 1024 * 1024))
gen_cert srv
PT="$T/plaintext"
head -c $N /dev/urandom >"$T/big.c2s"
head -c $N /dev/urandom >"$T/big.s2c"

# 1. s_server/s_client, both directions at once. --max-pending above the transfer
# size: no record may go uninspected, so the sinks must be exact.
for spec in "AES256-GCM-SHA384" "AES128-SHA -no_etm"; do
	set -- $spec
	suite=$1
	shift
	tag=bulk-$(echo "$suite" | tr 'A-Z' 'a-z')
	ossl_server "$tag" "$T/big.c2s" "$T/big.s2c" -cert "$T/srv.crt" -key "$T/srv.key" -cipher "$suite" -no_tls1_3 "$@"
	start_proxy "px-$tag" --backend "127.0.0.1:$SRV_PORT" --cert "$T/srv.crt" --key "$T/srv.key" \
		--plaintext-dir "$PT" --max-pending 64M
	# -nbio: s_client keeps reading while its writes wait, so 16 MiB each way cannot deadlock
	ossl_client "$tag" "$T/big.c2s" "$T/big.s2c" "$PX_PORT" -servername "$tag" -cipher "$suite" -no_tls1_3 -nbio "$@"
	ossl_wait "$tag" "$T/big.c2s" "$T/big.s2c" 120
	get_conn "$PX_LOG" "$tag"
	want_etm=n/a
	is_cbc "$suite" && want_etm=no
	expect_fields "$CONN" verdict=decrypted reason=- "suite=${IANA[$suite]}" etm=$want_etm \
		decrypted_c2s=$N decrypted_s2c=$N close=fin
	case $CONN in *dropped_*) fail "$tag: records dropped despite --max-pending 64M: $CONN" ;; esac
	check_sink "$PT" "$CONN_ID" c2s "$T/big.c2s"
	check_sink "$PT" "$CONN_ID" s2c "$T/big.s2c"
	stop_group "$PX_PID"
	say "$tag: 16 MiB each way exact ($(field "$CONN" duration_ms) ms)"
done

# 2. nginx + curl: PUT then GET 16 MiB
mkdir -p "$T/www"
start_nginx nginx "$T/www" "$T/srv.crt" "$T/srv.key" \
	"AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256"
start_proxy px-nginx --backend "127.0.0.1:$NG_PORT" --cert "$T/srv.crt" --key "$T/srv.key" \
	--plaintext-dir "$PT" --max-pending 64M

for suite in AES128-GCM-SHA256 AES256-SHA256; do
	tag=dav-$(echo "$suite" | tr 'A-Z' 'a-z')
	curl_opts=(-sS -k --tlsv1.2 --tls-max 1.2 --ciphers "$suite" --max-time 120
		--resolve "$tag.put:$PX_PORT:127.0.0.1" --resolve "$tag.get:$PX_PORT:127.0.0.1")
	# PUT (no Expect: 100-continue, so the request is one head and the body)
	code=$(curl "${curl_opts[@]}" -H 'Expect:' -T "$T/big.c2s" -o "$T/$tag.put-resp" -w '%{http_code}' \
		"https://$tag.put:$PX_PORT/up/$tag.bin" 2>"$T/$tag.put.err") || fail "$tag: curl PUT failed: $(cat "$T/$tag.put.err")"
	case $code in 201 | 204) ;; *) fail "$tag: PUT answered $code" ;; esac
	same "$T/www/up/$tag.bin" "$T/big.c2s" "$tag: the file nginx stored"
	get_conn "$PX_LOG" "$tag.put"
	expect_fields "$CONN" verdict=decrypted reason=- "suite=${IANA[$suite]}" ems=yes
	check_http_sink "$PT/$CONN_ID.c2s" "$T/big.c2s" "PUT /up/$tag.bin HTTP/1.1"
	# GET the server's payload
	cp "$T/big.s2c" "$T/www/$tag.dl"
	code=$(curl "${curl_opts[@]}" -o "$T/$tag.got" -w '%{http_code}' "https://$tag.get:$PX_PORT/$tag.dl" \
		2>"$T/$tag.get.err") || fail "$tag: curl GET failed: $(cat "$T/$tag.get.err")"
	[ "$code" = 200 ] || fail "$tag: GET answered $code"
	same "$T/$tag.got" "$T/big.s2c" "$tag: the file curl downloaded"
	get_conn "$PX_LOG" "$tag.get"
	expect_fields "$CONN" verdict=decrypted reason=- "suite=${IANA[$suite]}"
	check_http_sink "$PT/$CONN_ID.s2c" "$T/big.s2c" "HTTP/1.1 200 OK"
	head -n1 "$PT/$CONN_ID.c2s" | grep -q "^GET /$tag.dl HTTP/1.1" || fail "$tag: the GET request is not in $PT/$CONN_ID.c2s"
	say "$tag: PUT and GET of 16 MiB exact"
done
stop_group "$PX_PID"

# 3. the default --max-pending, then the smallest (64K): the engine may fall
# behind (records dropped: counted) and the plaintext files may fall behind
# their writes (a file that does stops, logged: it holds a prefix); either way
# the transfer is exact, and the sinks agree with the conn line's counters.
for mp in default 65536; do
	tag=bulk-mp-$mp
	ossl_server "$tag" "$T/big.c2s" "$T/big.s2c" -cert "$T/srv.crt" -key "$T/srv.key" -cipher AES128-GCM-SHA256 -no_tls1_3
	mpo=()
	[ "$mp" = default ] || mpo=(--max-pending "$mp")
	start_proxy "px-$tag" --backend "127.0.0.1:$SRV_PORT" --cert "$T/srv.crt" --key "$T/srv.key" \
		--plaintext-dir "$PT" "${mpo[@]}"
	ossl_client "$tag" "$T/big.c2s" "$T/big.s2c" "$PX_PORT" -servername "$tag" -cipher AES128-GCM-SHA256 -no_tls1_3 -nbio
	ossl_wait "$tag" "$T/big.c2s" "$T/big.s2c" 120
	get_conn "$PX_LOG" "$tag"
	expect_fields "$CONN" verdict=decrypted reason=- close=fin
	for d in c2s s2c; do
		dec=$(field "$CONN" decrypted_$d)
		drop=$(field "$CONN" dropped_$d)
		f="$PT/$CONN_ID.$d"
		if grep -qF "WARN $f: the writes fell " "$PX_LOG"; then
			# the file stopped where its writes fell behind: a prefix of what was sent
			sleep 0.2
			n=$(fsize "$f")
			[ "$n" -lt $N ] || fail "$tag: $f stopped but holds $n bytes"
			cmp -s -n "$n" "$f" "$T/big.$d" || fail "$tag: $f ($n bytes) is not a prefix of what was sent"
			say "$tag: $d: the plaintext file fell behind and stopped at $n bytes (logged), a prefix"
		elif [ -z "$drop" ] || [ "$drop" = 0 ]; then
			[ "$dec" = $N ] || fail "$tag: decrypted_$d=$dec with nothing dropped"
			check_sink "$PT" "$CONN_ID" $d "$T/big.$d"
		else
			[ "$dec" -lt $N ] || fail "$tag: dropped_$d=$drop but decrypted_$d=$dec"
			wait_size "$f" "$dec" 15 || true
			sleep 0.05
			[ "$(fsize "$f")" = "$dec" ] || fail "$tag: sink $d has $(fsize "$f") bytes, decrypted_$d=$dec"
			say "$tag: $d: $drop records left uninspected under load (counted), sink consistent"
		fi
	done
	stop_group "$PX_PID"
done
say "bulk transfers ok"

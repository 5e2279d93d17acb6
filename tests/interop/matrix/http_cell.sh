#!/usr/bin/env bash
# One HTTP cell of the interop matrix (ctest: interop.matrix.<cell>):
#   http_cell.sh SERVER CLIENT VERSION BULK EMS ETM RESUME [AUTH]
#     SERVER   nginx (static files, WebDAV PUT) | s_server (openssl s_server -WWW:
#              GET only, one HTTP/1.0 answer per connection)
#     CLIENT   curl (HTTP/1.1) | s_client | gnutls-cli (a hand-written GET)
#     VERSION  1.0 | 1.1 | 1.2
#     BULK     AES-128-GCM | AES-256-GCM | AES-128-CBC | AES-256-CBC (GCM: 1.2 only)
#     EMS, ETM on | off (nginx: ssl_conf_command Options -ExtendedMasterSecret /
#              -EncryptThenMac; curl: an OPENSSL_CONF with the same Options; s_client,
#              s_server: that OPENSSL_CONF and -no_etm; gnutls-cli: %NO_SESSION_HASH / %NO_ETM)
#     RESUME   none | id | ticket: a second connection resuming the first one's session
#              (id: the server has a session cache and no tickets; ticket: tickets, no cache;
#              curl: id only, it never offers a ticket)
#     AUTH     noauth (default) | auth: the server requires a client certificate
# The server has an RSA certificate and takes RSA key exchange only, the proxy
# between them. What goes over the connections:
#   curl -> nginx   RESUME none: one keep-alive connection carrying GET blob.bin,
#                   PUT up.bin, GET up.bin; otherwise GET blob.bin on the first
#                   connection, PUT + GET up.bin on the second (resumed) one
#   curl -> s_server, s_client, gnutls-cli: GET blob.bin on each connection
#                   (gnutls-cli --resume: its first connection is a bare handshake)
# Checked: every file arrives byte-identical (downloads, and the upload as nginx
# stored it); for every connection the proxy's conn line (decrypted, version,
# resumed, ems, etm, client certificate, decrypted byte counts) and both
# plaintext sinks: c2s exactly the request bytes the client sent (curl: from its
# --trace), s2c exactly the response bytes it received (curl: -i output).
. "$(dirname "$0")/../lib.sh"

[ $# = 7 ] || [ $# = 8 ] || fail "usage: http_cell.sh SERVER CLIENT VERSION BULK EMS ETM RESUME [AUTH]"
server=$1 client=$2 ver=$3 bulk=$4 ems=$5 etm=$6 resume=$7 auth=${8:-noauth}
case $server in nginx) need_tool nginx ;; s_server) ;; *) fail "unknown server $server" ;; esac
case $client in curl | gnutls-cli) need_tool "$client" ;; s_client) ;; *) fail "unknown client $client" ;; esac
case $bulk in
AES-128-GCM) ossl_cipher=AES128-GCM-SHA256 ;; AES-256-GCM) ossl_cipher=AES256-GCM-SHA384 ;;
AES-128-CBC) ossl_cipher=AES128-SHA ;; AES-256-CBC) ossl_cipher=AES256-SHA ;;
*) fail "unknown bulk cipher $bulk" ;;
esac
case $ver in
1.0) ossl_ver=-tls1 ng_ver=TLSv1 ;;
1.1) ossl_ver=-tls1_1 ng_ver=TLSv1.1 ;;
1.2) ossl_ver=-tls1_2 ng_ver=TLSv1.2 ;;
*) fail "unknown version $ver" ;;
esac
case $bulk:$ver in *GCM:1.[01]) fail "$bulk needs TLS 1.2" ;; esac
for v in "ems=$ems" "etm=$etm"; do case ${v#*=} in on | off) ;; *) fail "bad $v" ;; esac; done
case $resume in none | id | ticket) ;; *) fail "unknown resumption $resume" ;; esac
case $auth in noauth | auth) ;; *) fail "unknown auth $auth" ;; esac
# curl's OpenSSL backend sets SSL_OP_NO_TICKET: it never offers a session ticket
[ "$client:$resume" = curl:ticket ] && fail "curl does not resume by ticket (it sends no session_ticket extension)"
# TLS 1.0 and 1.1 sign with MD5+SHA1 / SHA1: OpenSSL 3 allows them at security level 0 only
sec=""
[ "$ver" = 1.2 ] || sec=":@SECLEVEL=0"

gen_cert srv srv.test
gen_cert cli cli.test
PT="$T/plaintext"
HOST=srv.test
mkdir -p "$T/www"
head -c 49152 /dev/urandom >"$T/www/blob.bin"
head -c 36000 /dev/urandom >"$T/up.bin"

# an OPENSSL_CONF for the OpenSSL peers (curl, s_client, s_server) when EMS or EtM is off
opts=()
[ "$ems" = off ] && opts+=(-ExtendedMasterSecret)
[ "$etm" = off ] && opts+=(-EncryptThenMac)
OSSL_CNF=/dev/null
if [ ${#opts[@]} -gt 0 ]; then
	OSSL_CNF="$T/ossl.cnf"
	openssl_conf_no_ems "$OSSL_CNF"
	sed -i "s/^Options = .*/Options = $(
		IFS=,
		echo "${opts[*]}"
	)/" "$OSSL_CNF"
fi

# nginx with this cell's TLS settings (lib.sh's start_nginx, WebDAV PUT on)
start_nginx_cell() {
	local tls=""
	[ "$ems" = off ] && tls+="ssl_conf_command Options -ExtendedMasterSecret; "
	[ "$etm" = off ] && tls+="ssl_conf_command Options -EncryptThenMac; "
	# id: a server-side cache and no tickets; ticket: tickets (the default) and no cache
	[ "$resume" = id ] && tls+="ssl_session_tickets off; ssl_session_cache shared:S:1m; "
	[ "$auth" = auth ] && tls+="ssl_verify_client on; ssl_client_certificate $T/cli.crt; "
	start_nginx nginx "$T/www" "$T/srv.crt" "$T/srv.key" "$ossl_cipher$sec" "$ng_ver" "$tls"
}

case $server in
nginx)
	start_nginx_cell
	port=$NG_PORT
	;;
s_server)
	sopts=()
	[ "$resume" = id ] && sopts+=(-no_ticket)
	[ "$etm" = off ] && sopts+=(-no_etm)
	[ "$auth" = auth ] && sopts+=(-Verify 1 -CAfile "$T/cli.crt")
	bg s_server env OPENSSL_CONF="$OSSL_CNF" bash -c 'cd "$1" && shift && exec openssl s_server "$@"' s_server \
		"$T/www" -WWW -accept 127.0.0.1:0 -cert "$T/srv.crt" -key "$T/srv.key" "$ossl_ver" \
		-cipher "$ossl_cipher$sec" "${sopts[@]}"
	port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
	;;
esac
# PXY_CELL_DIRECT=1: the same exchange with the client straight at the server, no proxy in
# between (ctest's interop.direct.<cell>): a failure there is not the proxy's
if [ "${PXY_CELL_DIRECT:-0}" = 1 ]; then
	PX_PORT=$port
else
	start_proxy px --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
fi

# what each connection k (1, 2) must carry: $T/connK.c2s and $T/connK.s2c
NCONN=1
[ "$resume" = none ] || NCONN=2
for k in $(seq "$NCONN"); do : >"$T/conn$k.c2s" && : >"$T/conn$k.s2c"; done
# the checks on what the client got: "FILE BODY FIRST-LINE" (BODY empty: no body)
GOT=()

# split_trace TRACE PREFIX: curl's --trace -> PREFIX.1, PREFIX.2, ...: the bytes of
# each request as sent (a "Send header" block starts a request, "Send data" blocks
# are its body); prints how many
split_trace() {
	"$PY" - "$1" "$2" <<-'PYEOF'
		import re, sys
		reqs, cur, want, on = [], None, 0, False
		hexline = re.compile(r"^[0-9a-f]{4,}: ")
		def done():
		    if cur is not None and want != len(cur[-1]) - cur[-2]:
		        sys.exit("a trace block has %d bytes, its header says %d" % (len(cur[-1]) - cur[-2], want))
		for line in open(sys.argv[1], encoding="latin-1"):
		    line = line.rstrip("\n")
		    if line.startswith(("=>", "<=", "==")):
		        if on:
		            done()
		        on = False
		        m = re.match(r"=> Send (header|data), (\d+) bytes", line)
		        if m:
		            if m.group(1) == "header":
		                reqs.append(bytearray())
		            elif not reqs:
		                sys.exit("data sent before any request header")
		            cur, want, on = [0, len(reqs[-1]), reqs[-1]], int(m.group(2)), True
		    elif on and hexline.match(line):
		        hexpart = line.split(": ", 1)[1][:48]
		        reqs[-1] += bytes.fromhex(hexpart.replace(" ", ""))
		if on:
		    done()
		for i, r in enumerate(reqs, 1):
		    open("%s.%d" % (sys.argv[2], i), "wb").write(r)
		print(len(reqs))
	PYEOF
}

# run_fed NAME REQ OUT cmd...: run a client with REQ on its stdin, held open until the
# client ends by itself (the server closes: every request says Connection: close)
run_fed() {
	local name=$1 req=$2 out=$3 pid rc
	shift 3
	rm -f "$T/$name.in"
	mkfifo "$T/$name.in"
	timeout 40 "$@" <"$T/$name.in" >"$out" 2>"$T/$name.err" &
	pid=$!
	exec 3>"$T/$name.in"
	cat "$req" >&3
	wait "$pid"
	rc=$?
	exec 3>&-
	return $rc
}

printf 'GET /blob.bin HTTP/1.1\r\nHost: %s\r\nUser-Agent: http_cell\r\nAccept: */*\r\nConnection: close\r\n\r\n' \
	"$HOST" >"$T/get.req"
case $server in nginx) first="HTTP/1.1 200 OK" ;; s_server) first="HTTP/1.0 200 ok" ;; esac

case $client in
curl)
	copts=(-sS -k --http1.1 --max-time 30 "--tlsv$ver" --tls-max "$ver" --ciphers "$ossl_cipher$sec"
		--resolve "$HOST:$PX_PORT:127.0.0.1" -H 'Expect:')
	[ "$auth" = auth ] && copts+=(--cert "$T/cli.crt" --key "$T/cli.key")
	[ "$resume" = none ] && copts+=(--no-sessionid)
	# the requests: METHOD PATH CLOSE(1: Connection: close, the connection ends after it)
	if [ "$server" = nginx ]; then
		if [ "$resume" = none ]; then
			plan=("GET /blob.bin 0" "PUT /up.bin 0" "GET /up.bin 1")
		else
			plan=("GET /blob.bin 1" "PUT /up.bin 0" "GET /up.bin 1")
		fi
	else
		plan=("GET /blob.bin 1")
		[ "$resume" = none ] || plan+=("GET /blob.bin 1")
	fi
	args=()
	i=0
	for p in "${plan[@]}"; do
		read -r method path close <<<"$p"
		i=$((i + 1))
		[ $i = 1 ] || args+=(--next)
		args+=("${copts[@]}" -i -o "$T/resp.$i")
		[ "$close" = 1 ] && args+=(-H 'Connection: close')
		[ "$method" = PUT ] && args+=(-T "$T/up.bin")
		args+=("https://$HOST:$PX_PORT$path")
	done
	env OPENSSL_CONF="$OSSL_CNF" curl --trace "$T/curl.trace" "${args[@]}" 2>"$T/curl.err" ||
		fail "curl failed: $(tail -n3 "$T/curl.err")"
	n=$(split_trace "$T/curl.trace" "$T/req") || fail "cannot read curl's trace"
	[ "$n" = ${#plan[@]} ] || fail "curl's trace shows $n requests, expected ${#plan[@]}"
	# each request and its response to its connection
	i=0 k=1
	for p in "${plan[@]}"; do
		read -r method path close <<<"$p"
		i=$((i + 1))
		cat "$T/req.$i" >>"$T/conn$k.c2s"
		cat "$T/resp.$i" >>"$T/conn$k.s2c"
		head -n1 "$T/req.$i" | grep -q "^$method $path HTTP/1.1"$'\r'"\$" ||
			fail "request $i: '$(head -n1 "$T/req.$i")', expected $method $path"
		case $method:$path in
		GET:/blob.bin) GOT+=("$T/resp.$i $T/www/blob.bin $first") ;;
		GET:/up.bin) GOT+=("$T/resp.$i $T/up.bin $first") ;;
		PUT:*)
			tail -c "$(fsize "$T/up.bin")" "$T/req.$i" | cmp -s - "$T/up.bin" ||
				fail "request $i does not end with up.bin"
			GOT+=("$T/resp.$i - HTTP/1.1 201 Created")
			;;
		esac
		[ "$close" = 1 ] && k=$((k + 1))
	done
	[ "$server" = nginx ] && same "$T/www/up.bin" "$T/up.bin" "the file nginx stored from the PUT"
	;;
s_client)
	sopts=(-connect "127.0.0.1:$PX_PORT" -servername "$HOST" -quiet -nocommands "$ossl_ver" -cipher "$ossl_cipher$sec")
	[ "$etm" = off ] && sopts+=(-no_etm)
	[ "$auth" = auth ] && sopts+=(-cert "$T/cli.crt" -key "$T/cli.key")
	for k in $(seq "$NCONN"); do
		sess=()
		if [ "$resume" != none ]; then
			if [ "$k" = 1 ]; then sess=(-sess_out "$T/sess.pem"); else sess=(-sess_in "$T/sess.pem"); fi
		fi
		run_fed "s_client$k" "$T/get.req" "$T/out.$k" env OPENSSL_CONF="$OSSL_CNF" openssl s_client "${sopts[@]}" "${sess[@]}" ||
			fail "s_client (connection $k) failed: $(tail -n3 "$T/s_client$k.err")"
		cp "$T/get.req" "$T/conn$k.c2s"
		cp "$T/out.$k" "$T/conn$k.s2c"
		GOT+=("$T/out.$k $T/www/blob.bin $first")
	done
	;;
gnutls-cli)
	prio="NORMAL:-VERS-ALL:+VERS-TLS$ver:-KX-ALL:+RSA:-CIPHER-ALL:+$bulk:-MAC-ALL:+AEAD:+SHA1"
	[ "$ems" = off ] && prio="$prio:%NO_SESSION_HASH"
	[ "$etm" = off ] && prio="$prio:%NO_ETM"
	gopts=(--insecure -p "$PX_PORT" --sni-hostname "$HOST" --priority "$prio" --logfile "$T/gnutls.log")
	[ "$auth" = auth ] && gopts+=(--x509certfile "$T/cli.crt" --x509keyfile "$T/cli.key")
	# --resume: a bare handshake, then a second connection resuming it carries the data
	[ "$resume" = none ] || gopts+=(--resume)
	run_fed gnutls-cli "$T/get.req" "$T/out.$NCONN" gnutls-cli "${gopts[@]}" 127.0.0.1 ||
		fail "gnutls-cli failed: $(tail -n3 "$T/gnutls-cli.err" "$T/gnutls.log")"
	cp "$T/get.req" "$T/conn$NCONN.c2s"
	cp "$T/out.$NCONN" "$T/conn$NCONN.s2c"
	GOT+=("$T/out.$NCONN $T/www/blob.bin $first")
	;;
esac

# what the client got: each response, its body byte-identical
for g in "${GOT[@]}"; do
	read -r f body line <<<"$g"
	if [ "$body" = - ]; then
		head -n1 "$f" | grep -q "^$line" || fail "$f starts with '$(head -n1 "$f" | head -c 80)', expected '$line'"
		[ "$(tail -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = 0d0a0d0a ] || fail "$f: not one bodiless response head"
	else
		check_http_sink "$f" "$body" "$line"
	fi
done

if [ "${PXY_CELL_DIRECT:-0}" = 1 ]; then
	say "directly, no proxy: the client got everything"
	exit 0
fi
# the proxy: one conn line per connection, in the order they were accepted
wait_conns "$PX_LOG" "$NCONN" 20
sleep 0.2
[ "$(conn_count "$PX_LOG")" = "$NCONN" ] || fail "$(conn_count "$PX_LOG") conn lines, expected $NCONN"
mapfile -t CONNS < <(conn_lines "$PX_LOG" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^id=/) { split($i, a, "-"); print a[2] "\t" $0 } }' |
	sort -n | cut -f2-)
case $bulk in *GCM) want_etm=n/a ;; *) want_etm=$([ "$etm" = on ] && echo yes || echo no) ;; esac
want_ems=$([ "$ems" = on ] && echo yes || echo no)
for k in $(seq "$NCONN"); do
	CONN=${CONNS[$((k - 1))]}
	CONN_ID=$(field "$CONN" id)
	resumed=no
	[ "$k" = 1 ] || resumed=yes
	expect_fields "$CONN" verdict=decrypted reason=- sni="$HOST" version="TLS$ver" resumed="$resumed" \
		ems="$want_ems" etm="$want_etm" decrypted_c2s="$(fsize "$T/conn$k.c2s")" decrypted_s2c="$(fsize "$T/conn$k.s2c")"
	expect_client_cert "$CONN" "$auth"
	check_sink "$PT" "$CONN_ID" c2s "$T/conn$k.c2s"
	check_sink "$PT" "$CONN_ID" s2c "$T/conn$k.s2c"
done
say "$server <- $client TLS$ver $bulk ems=$ems etm=$etm resume=$resume $auth: $NCONN connection(s) decrypted, files and sinks exact"

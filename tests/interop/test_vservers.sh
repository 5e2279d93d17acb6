#!/usr/bin/env bash
# Several virtual servers in one process ([vserver NAME] sections): web and
# api, each with its own listener, backend (an s_server with its own
# certificate and key), key pair, policy, plaintext directory and key log,
# sharing the [proxy] settings (engine, JSON connection log).
#  - --check-config prints [proxy] and each [vserver] with where each value
#    came from, and reads back; broken files (a duplicate listener, a
#    process-wide setting in a vserver, an unknown section, a bad name, a bad
#    value in one vserver) are refused with file and line, exit 2;
#  - curl through each: decrypted with that vserver's key, its sinks exact,
#    its log lines tagged [web]/[api], ids and the JSON log naming it;
#  - SIGUSR1: counters per vserver; SIGHUP: web's new policy and backend
#    (passthrough of an ECDHE-only server) applies to new web sessions, api
#    goes on as it was; a vserver whose section turns bad keeps running on
#    its old settings (named with file and line) while the other reloads; a
#    new section is named as taking a restart;
#  - SIGTERM: both drain and the process exits 0.
. "$(dirname "$0")/lib.sh"
need_tool curl

gen_cert web web.test
gen_cert api api.test rsa:3072
gen_cert ec ec.test
mkdir -p "$T/www"
head -c 3000 /dev/urandom | base64 -w 76 >"$T/www/page.txt"

bg srv-web bash -c 'cd "$1" && shift && exec "$@"' _ "$T/www" openssl s_server -accept 127.0.0.1:0 -WWW -tls1_2 -cert "$T/web.crt" -key "$T/web.key"
web_port=$(listen_port_of "$BG_PID") || fail "s_server (web) did not listen"
bg srv-api bash -c 'cd "$1" && shift && exec "$@"' _ "$T/www" openssl s_server -accept 127.0.0.1:0 -WWW -tls1_2 -cert "$T/api.crt" -key "$T/api.key"
api_port=$(listen_port_of "$BG_PID") || fail "s_server (api) did not listen"
bg srv-ec bash -c 'cd "$1" && shift && exec "$@"' _ "$T/www" openssl s_server -accept 127.0.0.1:0 -WWW -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256 \
	-cert "$T/ec.crt" -key "$T/ec.key"
ec_port=$(listen_port_of "$BG_PID") || fail "s_server (ec) did not listen"

INI="$T/vs.ini"
write_ini() { # web's backend, web's passthrough, extra lines for api
	cat >"$INI" <<EOF
[proxy]
conn-log = $T/conns.json
handshake-timeout = 5000

[vserver web]
listen = 127.0.0.1:0
backend = 127.0.0.1:$1
cert = $T/web.crt
key = $T/web.key
plaintext-dir = $T/pt-web
keylog = $T/keys-web
passthrough = $2

[vserver api]
listen = 127.0.0.1:0
backend = 127.0.0.1:$api_port
cert = $T/api.crt
key = $T/api.key
plaintext-dir = $T/pt-api
keylog = $T/keys-api
$3
EOF
}

# ---- --check-config ---------------------------------------------------------------
write_ini "$web_port" none ""
(cd "$T" && "$PROXYSSL" --check-config "$INI") >"$T/check.out" 2>"$T/check.err" ||
	fail "--check-config refused a good file: $(cat "$T/check.err")"
grep -q '^\[proxy\]$' "$T/check.out" && grep -q '^\[vserver web\]$' "$T/check.out" &&
	grep -q '^\[vserver api\]$' "$T/check.out" || fail "--check-config: sections missing: $(cat "$T/check.out")"
grep -q "^backend *= 127.0.0.1:$api_port *; $INI:16$" "$T/check.out" ||
	fail "--check-config: api's backend without its origin: $(grep '^backend' "$T/check.out")"
grep -q "^conn-log *= $T/conns.json *; $INI:2$" "$T/check.out" ||
	fail "--check-config: a [proxy] setting without its origin in a vserver"
"$PROXYSSL" --check-config "$T/check.out" >"$T/check2.out" 2>&1 || fail "the printed config does not read back: $(cat "$T/check2.out")"

# check_bad NAME EXPECTED-REGEX: the file must be refused, exit 2, the message matching
check_bad() {
	local out rc
	out=$("$PROXYSSL" --check-config "$T/bad.ini" 2>&1)
	rc=$?
	[ "$rc" = 2 ] || fail "$1: exit $rc (expected 2): $out"
	printf '%s\n' "$out" | grep -Eq "$2" || fail "$1: the message '$out' does not match '$2'"
}
sed "s/^listen = 127.0.0.1:0$/listen = 127.0.0.1:$(free_port)/" "$INI" >"$T/bad.ini"
check_bad "one listener twice" "^proxyssl: $T/bad.ini:15: \[vserver api\]: --listen 127.0.0.1:[0-9]+ is also \[vserver web\]'s"
sed 's/^keylog = .*keys-api$/log = x.log/' "$INI" >"$T/bad.ini"
check_bad "log in a vserver" "^proxyssl: $T/bad.ini:20: 'log' is set for the whole process: put it in \[proxy\]"
sed 's/^\[vserver api\]$/[virtual api]/' "$INI" >"$T/bad.ini"
check_bad "unknown section" "^proxyssl: $T/bad.ini:15: unknown section \[virtual api\]"
sed 's/^\[vserver api\]$/[vserver a.p.i]/' "$INI" >"$T/bad.ini"
check_bad "bad name" "^proxyssl: $T/bad.ini:15: \[vserver a.p.i\]: a virtual server needs a name"
sed "s/^backend = 127.0.0.1:$api_port$/backend = 127.0.0.1:99999/" "$INI" >"$T/bad.ini"
check_bad "bad value in one vserver" "^proxyssl: $T/bad.ini:16: --backend"
say "--check-config: [proxy] and both [vserver]s with origins, read back; five broken files refused with file and line"

# ---- running ------------------------------------------------------------------------
LOG=$T/px.log
: >"$LOG"
# shellcheck disable=SC2086
bg px "$PROXYSSL" --config "$INI" --log "$LOG" ${PXY_PROXY_ARGS:-}
PX_PID=$BG_PID
wait_for 20 grep -q ' INFO 2 virtual servers, 2 io loops: web, api$' "$LOG" || fail "the virtual servers did not start"
port_of() { sed -n "s/.* INFO \[$1\] proxyssl .* listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p" "$LOG" | head -n1; }
WEB=$(port_of web)
API=$(port_of api)
[ -n "$WEB" ] && [ -n "$API" ] && [ "$WEB" != "$API" ] || fail "listeners: web=$WEB api=$API"

# get NAME PORT SNI: curl through a vserver; the page must come back whole
get() {
	curl -sk --max-time 20 --tls-max 1.2 --ciphers AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256 --resolve "$3:$2:127.0.0.1" "https://$3:$2/page.txt" -o "$T/got-$3" ||
		fail "$1: curl failed"
	cmp -s "$T/got-$3" "$T/www/page.txt" || fail "$1: the page came back different"
}
# vconn VSERVER SNI: the one conn line of that vserver with that SNI; sets CONN, CONN_ID
vconn() {
	wait_for 20 grep -q " INFO \[$1\] conn id=.* sni=$2 " "$LOG" || fail "no [$1] conn line with sni=$2"
	CONN=$(grep " INFO \[$1\] conn id=.* sni=$2 " "$LOG")
	[ "$(printf '%s\n' "$CONN" | wc -l)" = 1 ] || fail "several [$1] conn lines with sni=$2"
	CONN_ID=$(field "$CONN" id)
}
get web "$WEB" one.web.test
get api "$API" one.api.test
vconn web one.web.test
expect_fields "$CONN" verdict=decrypted reason=-
case $CONN_ID in "$PX_PID"-web-*) ;; *) fail "web's id $CONN_ID does not name it" ;; esac
check_http_sink "$T/pt-web/$CONN_ID.s2c" "$T/www/page.txt" "HTTP/1.0 200"
grep -q "^GET /page.txt HTTP/1.1" "$T/pt-web/$CONN_ID.c2s" || fail "web: the request sink"
WEB_ID1=$CONN_ID
vconn api one.api.test
expect_fields "$CONN" verdict=decrypted reason=-
case $CONN_ID in "$PX_PID"-api-*) ;; *) fail "api's id $CONN_ID does not name it" ;; esac
check_http_sink "$T/pt-api/$CONN_ID.s2c" "$T/www/page.txt" "HTTP/1.0 200"
grep -q "^GET /page.txt HTTP/1.1" "$T/pt-api/$CONN_ID.c2s" || fail "api: the request sink"
[ "$(wc -l <"$T/keys-web")" = 1 ] && [ "$(wc -l <"$T/keys-api")" = 1 ] || fail "each vserver's key log must hold its one session"
grep -q ' INFO conn id=' "$LOG" && fail "a conn line without its vserver"
wait_for 10 lines_at_least "$T/conns.json" 2 || fail "the JSON connection log misses lines"
"$PY" - "$T/conns.json" "$WEB_ID1" "$CONN_ID" <<'PYEOF' || fail "the JSON connection log does not name the vservers"
import json, sys
objs = {o["id"]: o for o in map(json.loads, open(sys.argv[1]))}
assert objs[sys.argv[2]]["vserver"] == "web" and objs[sys.argv[3]]["vserver"] == "api", objs
PYEOF
say "web and api: each decrypted with its own key, sinks exact, lines, ids and JSON named"

kill -USR1 "$PX_PID"
wait_for 10 grep -q ' INFO \[api\] stats engine ' "$LOG" || fail "no [api] stats"
wait_for 10 grep -q ' INFO \[web\] stats engine ' "$LOG" || fail "no [web] stats"
for v in web api; do
	grep " INFO \[$v\] stats connections " "$LOG" | tail -n1 | grep -q ' accepted=1 ' || fail "[$v]: stats: $(grep "\[$v\] stats connections" "$LOG")"
done
say "SIGUSR1: counters per vserver"

# ---- reload -----------------------------------------------------------------------
# web now goes to an ECDHE-only server with passthrough for it; api unchanged
write_ini "$ec_port" non-rsa-kx ""
kill -HUP "$PX_PID"
wait_for 10 grep -q " INFO \[web\] reloaded $INI: backend 127.0.0.1:$ec_port" "$LOG" || fail "web did not reload"
wait_for 10 grep -q " INFO \[api\] reloaded $INI: backend 127.0.0.1:$api_port" "$LOG" || fail "api did not reload"
get web "$WEB" two.web.test
get api "$API" two.api.test
vconn web two.web.test
expect_fields "$CONN" verdict=passthrough reason=non-rsa-kx
vconn api two.api.test
expect_fields "$CONN" verdict=decrypted reason=-
say "SIGHUP: web's new backend and policy for new sessions (passthrough), api decrypting as before"

# api's section turns bad: api keeps its settings, web reloads; a new section is named
write_ini "$web_port" none "max-handshake = lots
[vserver new]
listen = 127.0.0.1:0
backend = 127.0.0.1:$web_port
cert = $T/web.crt
key = $T/web.key"
kill -HUP "$PX_PID"
wait_for 10 grep -q " ERROR \[api\] reload refused: $INI:[0-9]*: --max-handshake: 'lots'" "$LOG" ||
	fail "api's broken section was not refused with its line"
wait_for 10 grep -q " INFO \[web\] reloaded $INI: backend 127.0.0.1:$web_port" "$LOG" || fail "web did not reload"
wait_for 10 grep -q " WARN reload: \[vserver new\] is new: adding a virtual server takes a restart" "$LOG" ||
	fail "the new section was not named"
get web "$WEB" three.web.test
get api "$API" three.api.test
vconn web three.web.test
expect_fields "$CONN" verdict=decrypted reason=-
vconn api three.api.test
expect_fields "$CONN" verdict=decrypted reason=-
say "a broken [vserver api] is refused with its line while web reloads; a new section takes a restart"

# ---- stop -------------------------------------------------------------------------
kill -TERM "$PX_PID"
wait_exit "$PX_PID" 20 || fail "the process did not exit after SIGTERM"
[ "$EXIT_CODE" = 0 ] || fail "exit status $EXIT_CODE after SIGTERM"
grep -q ' INFO \[web\] stopping: ' "$LOG" && grep -q ' INFO \[api\] stopping: ' "$LOG" || fail "not both stopped"
say "SIGTERM: both stopped, exit 0"

#!/usr/bin/env bash
# SIGHUP reloads the config file and the certificate/key files without
# dropping a connection. One gnutls-serv --echo presents a.test's certificate
# or b.test's by SNI (a.test's for any other name); the proxy starts holding a's only (config file), with a
# TLS session to a.test open through it (s_client, fed through a FIFO).
#  - the config is changed to hold b's certificate only, plus passthrough for
#    cert-mismatch, a key log and a JSON connection log, and SIGHUP: the open
#    a.test session goes on and is decrypted to its end; new b.test sessions
#    are decrypted; new a.test sessions are passed through undecrypted;
#  - once the last a.test session ends, a's key leaves the engine;
#  - a broken config (bad value; unreadable key) is refused with its file and
#    line, and the running configuration stays (b.test still decrypted);
#  - a setting that takes a restart (buffers) is named and kept;
#  - log rotation: the log file renamed, SIGHUP opens a new one.
. "$(dirname "$0")/lib.sh"
need_tool curl gnutls-serv

gen_cert a a.test
gen_cert b b.test rsa:3072
PT="$T/plaintext"
bg echo gnutls-serv --echo -p 0 --x509certfile "$T/a.crt" --x509keyfile "$T/a.key" \
	--x509certfile "$T/b.crt" --x509keyfile "$T/b.key" --priority "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA"
port=$(listen_port_of "$BG_PID") || fail "gnutls-serv did not listen"

INI="$T/proxy.ini"
cat >"$INI" <<EOF
[proxy]
backend = 127.0.0.1:$port
cert = $T/a.crt
key = $T/a.key
plaintext-dir = $PT
pcap-feed = $T/feed
EOF
start_proxy px --config "$INI"
LOG=$PX_LOG

# a TLS session to a.test, open across the reload
mkfifo "$T/a.in"
bg a bash -c 'in=$1; shift; exec "$@" <"$in"' _ "$T/a.in" \
	openssl s_client -connect "127.0.0.1:$PX_PORT" -servername a.test -quiet -no_ign_eof -nocommands -tls1_2
A_PID=$BG_PID
exec 8>"$T/a.in"
echo "line-one" >&8
wait_for 10 grep -qx "line-one" "$T/a.out" || fail "a.test: no answer before the reload"

# count_more PATTERN N: the log has more than N lines with PATTERN (counted anew at each try)
count_more() { [ "$(grep -c "$1" "$LOG")" -gt "$2" ]; }
hup_and_wait() { # PATTERN: SIGHUP, then wait for PATTERN in the log
	local before
	before=$(grep -c "$1" "$LOG")
	kill -HUP "$PX_PID"
	wait_for 10 count_more "$1" "$before" || fail "after SIGHUP: no '$1' in the log"
}

cat >"$INI" <<EOF
[proxy]
backend = 127.0.0.1:$port
cert = $T/b.crt
key = $T/b.key
plaintext-dir = $PT
passthrough = cert-mismatch
keylog = $T/keys.txt
conn-log = $T/conns.jsonl
pcap-feed = $T/feed
EOF
hup_and_wait "INFO reloaded $INI: backend 127.0.0.1:$port, RSA-3072 key, passthrough cert-mismatch"
grep -q "expecting server certificate subject=/CN=b.test" "$LOG" || fail "no 'expecting' line for b after the reload"

get() { # HOST
	curl -sS -k --max-time 30 --tlsv1.2 --tls-max 1.2 --ciphers AES128-GCM-SHA256 \
		--resolve "$1:$PX_PORT:127.0.0.1" "https://$1:$PX_PORT/" -d "hello $1" >"$T/$1.out" 2>"$T/$1.err"
}
# the echo server does not speak HTTP: curl gets its request back and
# complains; what matters is what the proxy saw
get b.test
get_conn "$LOG" b.test
expect_fields "$CONN" verdict=decrypted reason=-
get a.test
get_conn "$LOG" a.test
expect_fields "$CONN" verdict=passthrough reason=cert-mismatch
wait_for 10 grep -q '"sni":"b.test"' "$T/conns.jsonl" || fail "the new --conn-log does not have b.test"
[ "$(wc -l <"$T/keys.txt")" = 1 ] || fail "the new --keylog should hold b.test's session only"
say "after SIGHUP: b.test decrypted with the new key, a.test passed through (new policy), new logs written"

# the a.test session that was open all along
echo "line-two" >&8
wait_for 10 grep -qx "line-two" "$T/a.out" || fail "a.test: the open session stopped answering after the reload"
grep -q "released the key" "$LOG" && fail "a's key was released while a session still used it"
exec 8>&-
wait_exit "$A_PID" 10 || fail "s_client did not end"
wait_for 10 grep -q "INFO conn id=.* sni=a.test .*verdict=decrypted" "$LOG" || fail "no decrypted conn line for the open a.test session"
CONN=$(grep "INFO conn id=.* sni=a.test .*verdict=decrypted" "$LOG")
CONN_ID=$(field "$CONN" id)
printf 'line-one\nline-two\n' >"$T/a.sent"
check_sink "$PT" "$CONN_ID" c2s "$T/a.sent"
wait_for 10 grep -q "released the key of /CN=a.test: no connection uses it any more" "$LOG" ||
	fail "a's key was not released after its last session"
say "the session open across the reload was decrypted to its end; then a's key left the engine"

# broken configs are refused whole; the running one stays
cp "$INI" "$T/good.ini"
sed -i 's/^passthrough = .*/passthrough = sometimes/' "$INI"
hup_and_wait "reload refused"
grep -q "ERROR reload refused: $INI:$(grep -n '^passthrough' "$INI" | cut -d: -f1): --passthrough: 'sometimes' is not one of" "$LOG" ||
	fail "the refusal does not name file, line and problem: $(grep 'reload refused' "$LOG" | tail -n1)"
cp "$T/good.ini" "$INI"
sed -i "s|^key = .*|key = $T/missing.key|" "$INI"
hup_and_wait "reload refused"
grep "reload refused" "$LOG" | tail -n1 | grep -q "cannot read private key $T/missing.key" ||
	fail "no refusal for the missing key: $(grep 'reload refused' "$LOG" | tail -n1)"
get b2.test
get_conn "$LOG" b2.test
# b2.test: the server gives a's certificate (no SNI match) -> still passthrough under the running policy
expect_fields "$CONN" verdict=passthrough reason=cert-mismatch
say "broken configs refused with file, line and problem; the running configuration stayed"

# a restart-only setting, and log rotation
cp "$T/good.ini" "$INI"
echo "buffers = 512" >>"$INI"
mv "$LOG" "$LOG.1"
kill -HUP "$PX_PID"
wait_for 10 test -s "$LOG" || fail "SIGHUP did not open a new log file after rotation"
wait_for 10 grep -q "WARN reload: --buffers changed (256 -> 512): that takes a restart; keeping 256" "$LOG" ||
	fail "no warning about --buffers: $(cat "$LOG")"
grep -q "INFO reloaded" "$LOG" || fail "the reload with a restart-only change was not applied"
get b.test
wait_for 10 grep -q "sni=b.test .*verdict=decrypted" "$LOG" || fail "b.test not decrypted after the last reload"
say "restart-only settings named and kept; a rotated log reopened"

#!/usr/bin/env bash
# Two proxyssl nodes sharing their session cache through a real redis-server
# (--session-cache redis://…, --session-key): the way they run behind an L4
# balancer. Checked:
#  - a full handshake through node 1, then its resumption through node 2 (by
#    ticket, and by session ID): node 2 decrypts it (resumed=yes);
#  - what Redis holds is sealed: the master secret (from node 1's key log)
#    appears in no value, and entries carry a TTL;
#  - forwarded keys (TLS 1.3, ECDHE) one node reads from a key log reach a
#    node that has only the shared store (--key-source shared), sealed;
#  - Redis down: connections still go through and are logged, a resumption
#    node 2 cannot learn about is forwarded as resumption-unknown, the outage
#    is logged and counted (stats redis up=0, dropped); Redis back: sharing
#    resumes without a restart.
. "$(dirname "$0")/lib.sh"
need_tool redis-server redis-cli

gen_cert srv srv.test
openssl rand -hex 32 >"$T/session.key"

start_redis
# dbsize_over N: Redis holds more than N keys (asked anew at each try of wait_for)
dbsize_over() { [ "$(redis-cli -p "$RPORT" dbsize 2>/dev/null || echo 0)" -gt "$1" ]; }

bg www openssl s_server -accept 127.0.0.1:0 -www -no_tls1_3 -cipher AES128-GCM-SHA256 \
	-cert "$T/srv.crt" -key "$T/srv.key"
port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
node() { # NAME: a proxy node sharing the store; sets PORT_<NAME>, LOG_<NAME>, PID_<NAME>
	start_proxy "$1" --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" \
		--session-cache "redis://127.0.0.1:$RPORT" --session-key "$T/session.key" --keylog "$T/$1.keys"
	printf -v "PORT_$1" %s "$PX_PORT"
	printf -v "LOG_$1" %s "$PX_LOG"
	printf -v "PID_$1" %s "$PX_PID"
}
node n1
node n2
grep -q "session cache: 20000 local, shared through redis://127.0.0.1:$RPORT" "$LOG_n1" || fail "no session cache line"

# fetch NODE-PORT NAME SESS-OPTION...: one GET through a node with s_client (session in/out)
fetch() {
	local p=$1 name=$2
	shift 2
	{
		printf 'GET / HTTP/1.0\r\n\r\n'
		for _ in $(seq 100); do
			grep -qs '</HTML>' "$T/$name.out" && break
			sleep 0.1
		done
	} | timeout 30 openssl s_client -connect "127.0.0.1:$p" -servername "$name" -tls1_2 -quiet -no_ign_eof "$@" \
		>"$T/$name.out" 2>"$T/$name.err"
	grep -q '</HTML>' "$T/$name.out" || fail "$name: no page through port $p: $(tail -n2 "$T/$name.err")"
}

for kind in ticket id; do
	opt=()
	[ $kind = id ] && opt=(-no_ticket)
	before=$(redis-cli -p "$RPORT" dbsize)
	fetch "$PORT_n1" "full-$kind.test" -sess_out "$T/$kind.sess" "${opt[@]}"
	get_conn "$LOG_n1" "full-$kind.test"
	expect_fields "$CONN" verdict=decrypted resumed=no
	# the node's SET reaches Redis through its thread: wait for this session's entry
	wait_for 10 dbsize_over "$before" || fail "$kind: nothing new stored in Redis"
	fetch "$PORT_n2" "resume-$kind.test" -sess_in "$T/$kind.sess" "${opt[@]}"
	get_conn "$LOG_n2" "resume-$kind.test"
	expect_fields "$CONN" verdict=decrypted resumed=yes reason=-
	[ "$(field "$CONN" decrypted_s2c)" -gt 0 ] || fail "$kind: nothing decrypted on node 2"
	say "$kind resumption on node 2 of node 1's session: decrypted"
done

# sealed: no master secret in any value; every key has a TTL
redis-cli -p "$RPORT" --scan --pattern 'proxyssl:s:*' >"$T/keys.txt"
[ "$(wc -l <"$T/keys.txt")" -ge 2 ] || fail "expected entries for ticket and ID: $(cat "$T/keys.txt")"
while read -r k; do
	redis-cli -p "$RPORT" --raw GET "$k" | head -c -1 | od -An -tx1 | tr -d ' \n' >>"$T/values.hex"
	ttl=$(redis-cli -p "$RPORT" TTL "$k")
	[ "$ttl" -gt 0 ] && [ "$ttl" -le 7200 ] || fail "$k has TTL $ttl"
done <"$T/keys.txt"
while read -r _ _ ms; do
	grep -qi "$ms" "$T/values.hex" && fail "a master secret is in Redis in clear"
done <"$T/n1.keys"
say "Redis holds sealed sessions with TTLs; no master secret in clear"

# forwarded keys reach every node: node 3 follows the server's key log, node 4 has only the shared
# store (--key-source shared); a TLS 1.3 session and a TLS 1.2 ECDHE one through node 4 are decrypted
bg www13 openssl s_server -accept 127.0.0.1:0 -www -tls1_3 -cert "$T/srv.crt" -key "$T/srv.key" -keylogfile "$T/srv13.log"
port13=$(listen_port_of "$BG_PID") || fail "s_server (TLS 1.3) did not listen"
bg www12 openssl s_server -accept 127.0.0.1:0 -www -no_tls1_3 -cipher ECDHE-RSA-AES128-GCM-SHA256 \
	-cert "$T/srv.crt" -key "$T/srv.key" -keylogfile "$T/srv13.log"
port12=$(listen_port_of "$BG_PID") || fail "s_server (ECDHE) did not listen"
for n in 13 12; do
	eval "p=\$port$n"
	start_proxy "n3-$n" --backend "127.0.0.1:$p" --cert "$T/srv.crt" --key "$T/srv.key" \
		--session-cache "redis://127.0.0.1:$RPORT" --session-key "$T/session.key" --key-source "file:$T/srv13.log"
	start_proxy "n4-$n" --backend "127.0.0.1:$p" --cert "$T/srv.crt" --key "$T/srv.key" \
		--session-cache "redis://127.0.0.1:$RPORT" --session-key "$T/session.key" --key-source shared --key-wait 3000 \
		--plaintext-dir "$T/pt4"
	printf -v "PORT4_$n" %s "$PX_PORT"
	printf -v "LOG4_$n" %s "$PX_LOG"
done
grep -q "key source the shared session store" "$LOG4_13" || fail "node 4 does not say where its keys come from"
printf 'GET /shared13 HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PORT4_13" -servername fwd13.test \
	-tls1_3 -quiet >"$T/fwd13.out" 2>/dev/null || true
grep -q "HTTP/1.0 200 ok" "$T/fwd13.out" || fail "fwd13: no page"
printf 'GET /shared12 HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PORT4_12" -servername fwd12.test \
	-tls1_2 -quiet >"$T/fwd12.out" 2>/dev/null || true
grep -q "HTTP/1.0 200 ok" "$T/fwd12.out" || fail "fwd12: no page"
for n in 13 12; do
	eval "log=\$LOG4_$n"
	wait_for 10 has_conn_sni "$log" "fwd$n.test" || fail "fwd$n: no conn line on node 4"
	get_conn "$log" "fwd$n.test"
	expect_fields "$CONN" verdict=decrypted reason=- keys=forwarded
	grep -q "GET /shared$n" "$T/pt4/$CONN_ID.c2s" || fail "fwd$n: the request is not in node 4's sink"
done
redis-cli -p "$RPORT" --scan --pattern 'proxyssl:s:*' | while read -r k; do
	redis-cli -p "$RPORT" --raw GET "$k" | head -c -1 | od -An -tx1 | tr -d ' \n'
done >"$T/values2.hex"
while read -r _ _ sec; do
	grep -qi "$sec" "$T/values2.hex" && fail "a forwarded secret is in Redis in clear"
done <"$T/srv13.log"
say "forwarded keys through the shared store: node 4 (no key log) decrypted TLS 1.3 and ECDHE; sealed in Redis"

# Redis down
stop_group "$REDIS_PID"
fetch "$PORT_n1" "down-full.test" -sess_out "$T/down.sess"
fetch "$PORT_n2" "down-resume.test" -sess_in "$T/down.sess"
get_conn "$LOG_n2" "down-resume.test"
expect_fields "$CONN" resumed=yes verdict=not-decrypted reason=resumption-unknown
wait_for 10 grep -q "WARN redis 127.0.0.1:$RPORT" "$LOG_n1" || fail "node 1 did not log the outage"
kill -USR1 "$PID_n1"
wait_for 10 grep -Eq "stats redis up=0 .*(errors|dropped)=[1-9]" "$LOG_n1" || fail "node 1 did not count the outage: $(grep 'stats redis' "$LOG_n1" | tail -n1)"
say "Redis down: connections go on, the resumption is forwarded as resumption-unknown, the outage logged and counted"

# Redis back on the same port: sharing resumes
bg redis2 redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no
wait_for 10 redis-cli -p "$RPORT" ping >/dev/null 2>&1 || fail "redis-server did not come back"
sleep 1.1 # the nodes retry at most once a second
fetch "$PORT_n1" "back-warm.test" -sess_out "$T/warm.sess" # reconnects node 1 (this SET may be lost)
sleep 1.1
fetch "$PORT_n1" "back-full.test" -sess_out "$T/back.sess"
wait_for 10 dbsize_over 0 || fail "node 1 stored nothing after Redis came back"
sleep 0.2
fetch "$PORT_n2" "back-resume-warm.test" -sess_in "$T/warm.sess" # reconnects node 2
sleep 1.1
fetch "$PORT_n2" "back-resume.test" -sess_in "$T/back.sess"
get_conn "$LOG_n2" "back-resume.test"
expect_fields "$CONN" verdict=decrypted resumed=yes
say "Redis back: sharing resumed without a restart"

#!/usr/bin/env bash
# Transparent mode (--backend original), the way it is deployed: client,
# proxy and server are three hosts (network namespaces) joined by veth pairs,
# the proxy host routing between them with an iptables REDIRECT of port 443
# to the proxy. The client addresses the servers (two addresses on the server
# host) directly; each connection must reach the server it addressed, be
# decrypted, and be logged with that server; a client that connects to the
# proxy itself is reset and logged (no original destination). Skipped (77)
# where namespaces, veth or iptables cannot be had.
. "$(dirname "$0")/lib.sh"
need_tool gnutls-serv gnutls-cli
command -v ip >/dev/null || skip "ip (iproute2) is not installed"
command -v iptables >/dev/null || skip "iptables is not installed"
[ "$(id -u)" = 0 ] || skip "network namespaces need root"

NS="pxy$$"
C="${NS}c" P="${NS}p" S="${NS}s"
del_ns() {
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_group "${PIDS[$i]}"; done
	PIDS=()
	for n in "$C" "$P" "$S"; do ip netns del "$n" 2>/dev/null; done
}
trap 'rc=$?; del_ns; (exit $rc); cleanup' EXIT
in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

ip netns add "$C" 2>"$T/ns.err" || skip "cannot create network namespaces: $(cat "$T/ns.err")"
ip netns add "$P" && ip netns add "$S" || fail "cannot create the namespaces"
ip link add "${NS}vc" type veth peer name "${NS}vpc" 2>"$T/veth.err" || skip "cannot create veth pairs: $(cat "$T/veth.err")"
ip link add "${NS}vs" type veth peer name "${NS}vps" || fail "cannot create the second veth pair"
ip link set "${NS}vc" netns "$C" && ip link set "${NS}vpc" netns "$P" &&
	ip link set "${NS}vs" netns "$S" && ip link set "${NS}vps" netns "$P" || fail "cannot move the veth ends"
in_ns "$C" ip addr add 10.77.1.2/24 dev "${NS}vc"
in_ns "$P" ip addr add 10.77.1.1/24 dev "${NS}vpc"
in_ns "$P" ip addr add 10.77.2.1/24 dev "${NS}vps"
in_ns "$S" ip addr add 10.77.2.2/24 dev "${NS}vs"
in_ns "$S" ip addr add 10.77.2.3/24 dev "${NS}vs"
for n in "$C" "$P" "$S"; do in_ns "$n" ip link set lo up; done
in_ns "$C" ip link set "${NS}vc" up
in_ns "$P" ip link set "${NS}vpc" up
in_ns "$P" ip link set "${NS}vps" up
in_ns "$S" ip link set "${NS}vs" up
in_ns "$C" ip route add default via 10.77.1.1
in_ns "$S" ip route add default via 10.77.2.1
in_ns "$P" sysctl -qw net.ipv4.ip_forward=1 || fail "cannot enable forwarding on the proxy host"
in_ns "$P" iptables -t nat -A PREROUTING -i "${NS}vpc" -p tcp --dport 443 -j REDIRECT --to-ports 8443 2>"$T/ipt.err" ||
	skip "iptables REDIRECT is not available here: $(cat "$T/ipt.err")"

gen_cert srv srv.test
PT="$T/plaintext"
bg srv ip netns exec "$S" gnutls-serv --echo -p 443 --x509certfile "$T/srv.crt" --x509keyfile "$T/srv.key" \
	--priority "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA"
wait_for 10 bash -c "ip netns exec '$S' ss -ltn | grep -q ':443 '" || fail "gnutls-serv did not listen in the server host"

PX_LOG="$T/px.log"
bg px ip netns exec "$P" "$PROXYSSL" --listen 0.0.0.0:8443 --backend original --cert "$T/srv.crt" \
	--key "$T/srv.key" --plaintext-dir "$PT" --log "$PX_LOG" ${PXY_PROXY_ARGS:-}
PX_PID=$BG_PID
wait_for 20 grep -qs ' listening on 0.0.0.0:8443, backend original destination' "$PX_LOG" ||
	fail "the proxy did not start: $(cat "$T/px.err" "$PX_LOG" 2>/dev/null | tail -n5)"

# talk ADDR NAME: a TLS session from the client host to ADDR:443, 2 KiB each way
talk() {
	local addr=$1 name=$2 last
	head -c 1500 /dev/urandom | base64 -w 64 >"$T/$name.in"
	last=$(tail -n1 "$T/$name.in")
	{
		cat "$T/$name.in"
		for _ in $(seq 100); do
			grep -qF -- "$last" "$T/$name.out" 2>/dev/null && break
			sleep 0.1
		done
	} | timeout 30 ip netns exec "$C" gnutls-cli --insecure -p 443 --sni-hostname "$name" \
		--priority "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA" "$addr" >"$T/$name.out" 2>"$T/$name.err" ||
		fail "$name: gnutls-cli to $addr failed: $(tail -n3 "$T/$name.err")"
	[ "$(grep -cFxf "$T/$name.in" "$T/$name.out")" = "$(wc -l <"$T/$name.in")" ] || fail "$name: the echo is not complete"
}
talk 10.77.2.2 two.test
talk 10.77.2.3 three.test
for pair in two.test:10.77.2.2 three.test:10.77.2.3; do
	name=${pair%%:*} addr=${pair#*:}
	get_conn "$PX_LOG" "$name"
	expect_fields "$CONN" verdict=decrypted reason=- server="$addr:443" close=fin
	[ "$(field "$CONN" client)" = "10.77.1.2:$(field "$CONN" client | sed 's/.*://')" ] ||
		fail "$name: the client is not the client host: $CONN"
	check_sink "$PT" "$CONN_ID" c2s "$T/$name.in"
done
say "REDIRECT: each connection went to the server the client addressed, decrypted"

# straight to the proxy's own port: nowhere to go
ip netns exec "$C" timeout 10 gnutls-cli --insecure -p 8443 --sni-hostname direct.test 10.77.1.1 </dev/null \
	>/dev/null 2>&1 && fail "a direct connection to the proxy got a TLS session"
wait_for 10 grep -q "no original destination" "$PX_LOG" || fail "no 'no original destination' warning"
wait_for 10 grep -q "INFO conn id=.* reason=backend-unreachable .*close=reset" "$PX_LOG" ||
	fail "the direct connection was not logged as reset"
kill -USR1 "$PX_PID"
wait_for 10 grep -q "stats connections .* no_original_dst=1" "$PX_LOG" || fail "no_original_dst not counted"
say "a client connecting to the proxy itself: reset, logged, counted"

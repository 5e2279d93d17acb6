#!/usr/bin/env bash
# --conn-log: the JSON connection log, with real peers. Through one proxy in
# front of openssl s_server -www (session cache on, tickets on):
#  - curl: two connections, the second resuming the first by session ID;
#  - s_client: a connection, then one resuming it by ticket, with a client certificate;
#  - curl asking for an ECDHE suite only: rejected (non-rsa-kx).
# Every line of the file must be one JSON object; there must be one per conn
# line, agreeing with it field by field (id, addresses, SNI, version, suite,
# verdict, reason, byte counts, client certificate), with resumed = no /
# session-id / ticket as it happened, the server certificate's serial, times
# in order, and the engine named on the start line.
. "$(dirname "$0")/lib.sh"
need_tool curl

gen_cert srv srv.test
gen_cert cli cli.test
JL="$T/conns.jsonl"

bg www openssl s_server -accept 127.0.0.1:0 -www -no_tls1_3 -cert "$T/srv.crt" -key "$T/srv.key" \
	-cipher 'AES128-GCM-SHA256:AES256-SHA:ECDHE-RSA-AES128-GCM-SHA256' -verify 1 -CAfile "$T/cli.crt"
port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
start_proxy px --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --conn-log "$JL"
engine=$(sed -n 's/.* engine \([a-z]*\) (.*/\1/p' "$PX_LOG" | head -n1)

curl -sS -k --max-time 30 --tlsv1.2 --tls-max 1.2 --ciphers AES128-GCM-SHA256 \
	--resolve "id.test:$PX_PORT:127.0.0.1" -H 'Connection: close' "https://id.test:$PX_PORT/" \
	--next -sS -k --max-time 30 --tlsv1.2 --tls-max 1.2 --ciphers AES128-GCM-SHA256 \
	--resolve "id.test:$PX_PORT:127.0.0.1" -H 'Connection: close' "https://id.test:$PX_PORT/" \
	>"$T/id.out" 2>"$T/id.err" || fail "curl (session ID) failed: $(cat "$T/id.err")"
# s_client's stdin: the request, held open until the page is back (10 s at most)
request() {
	printf 'GET / HTTP/1.0\r\n\r\n'
	for _ in $(seq 100); do
		grep -qs '</HTML>' "$1" && break
		sleep 0.1
	done
}
for i in 1 2; do
	request "$T/ticket$i.out" | timeout 30 openssl s_client -connect "127.0.0.1:$PX_PORT" -servername ticket.test \
		-tls1_2 -cipher AES256-SHA -cert "$T/cli.crt" -key "$T/cli.key" -quiet -no_ign_eof \
		"$([ $i = 1 ] && echo -sess_out || echo -sess_in)" "$T/sess.pem" >"$T/ticket$i.out" 2>"$T/ticket$i.err" ||
		true
	grep -q "s_server" "$T/ticket$i.out" || fail "s_client $i: no page: $(tail -n2 "$T/ticket$i.err")"
done
curl -sS -k --max-time 30 --tlsv1.2 --tls-max 1.2 --ciphers ECDHE-RSA-AES128-GCM-SHA256 \
	--resolve "ecdhe.test:$PX_PORT:127.0.0.1" "https://ecdhe.test:$PX_PORT/" >/dev/null 2>&1 &&
	fail "curl with ECDHE got through"
wait_conns "$PX_LOG" 5 20
# the file is written through the ring: wait for its five lines
wait_for 10 lines_at_least "$JL" 5 || fail "$JL has $(wc -l <"$JL") lines, expected 5"
conn_lines "$PX_LOG" >"$T/conn.txt"

"$PY" - "$JL" "$T/conn.txt" "$engine" "$(cert_serial "$T/srv.crt")" "$(cert_serial "$T/cli.crt")" <<'PYEOF' ||
import json, sys
jl, conn, engine, srv_serial, cli_serial = sys.argv[1:]
objs = [json.loads(l) for l in open(jl)]          # every line one JSON object
conns = {}
for l in open(conn):
    kv = dict(f.split("=", 1) for f in l.split(" conn ", 1)[1].split() if "=" in f)
    conns[kv["id"]] = kv
assert len(objs) == len(conns) == 5, (len(objs), len(conns))
def dash(v): return "-" if v is None else str(v)
by_sni = {}
for o in objs:
    c = conns[o["id"]]
    for k in ("client", "server", "sni", "version", "suite", "verdict", "reason", "close"):
        assert dash(o[k]) == c[k], (o["id"], k, o[k], c[k])
    for k in ("bytes_c2s", "bytes_s2c", "decrypted_c2s", "decrypted_s2c"):
        assert str(o[k]) == c[k], (o["id"], k, o[k], c[k])
    assert (o["client_cert"] is not None) == (c["client_cert"] == "yes"), o["id"]
    assert o["start"] <= o["end"] and o["duration_ms"] >= 0, o
    assert o["engine"] == engine, (o["engine"], engine)
    by_sni.setdefault(o["sni"], []).append(o)
ids, tickets, ecdhe = by_sni["id.test"], by_sni["ticket.test"], by_sni["ecdhe.test"]
assert [o["resumed"] for o in ids] == ["no", "session-id"], [o["resumed"] for o in ids]
assert [o["resumed"] for o in tickets] == ["no", "ticket"], [o["resumed"] for o in tickets]
for o in ids + tickets:
    assert o["verdict"] == "decrypted" and o["reason"] is None, o
    assert o["decrypted_s2c"] > 0, o
for o in tickets:
    assert o["client_cert"]["serial"] == cli_serial and o["client_cert"]["subject"] == "/CN=cli.test", o
    assert o["suite"] == "TLS_RSA_WITH_AES_256_CBC_SHA" and o["etm"] is True and o["ems"] is True, o
assert ids[0]["etm"] is None, ids[0]                 # AEAD: encrypt-then-MAC means nothing
assert ids[0]["server_cert"]["serial"] == srv_serial, ids[0]
assert ids[1]["server_cert"] is None, ids[1]        # resumed: no certificate sent
assert ecdhe[0]["verdict"] == "rejected" and ecdhe[0]["reason"] == "non-rsa-kx", ecdhe
assert ecdhe[0]["close"] == "reject" and ecdhe[0]["decrypted_c2s"] == 0, ecdhe
print("%d objects agree with the conn lines" % len(objs))
PYEOF
	fail "the JSON connection log does not match (see above)"
say "--conn-log: one JSON object per connection, agreeing with the conn lines; resumed no/session-id/ticket"

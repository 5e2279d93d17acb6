#!/usr/bin/env bash
# Hostile framing and garbage, with real TLS peers:
#  - every byte its own TCP segment, both ways: curl -> splitter -> proxy ->
#    splitter -> openssl s_server -WWW, the splitters writing one byte at a
#    time with TCP_NODELAY (so the ClientHello, the server's flight and every
#    record arrive at the proxy a byte per segment): decrypted, and the
#    plaintext sinks hold exactly the request and the response;
#  - garbage instead of TLS from the server: the client gets a fatal
#    handshake_failure alert and a reset, the conn line says rejected
#    server-protocol-error; from the client: rejected not-tls.
. "$(dirname "$0")/lib.sh"
need_tool curl

gen_cert srv srv.test
PT="$T/plaintext"
mkdir -p "$T/files"
head -c 6000 /dev/urandom >"$T/files/blob.bin"
bg WWW bash -c 'cd "$1" && exec openssl s_server -accept 127.0.0.1:0 -cert "$2" -key "$3" -WWW -no_tls1_3 -cipher AES128-SHA' \
	s_server "$T/files" "$T/srv.crt" "$T/srv.key"
port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"

# split.py TO-PORT PORT-FILE WHICH: relays each connection to TO-PORT; the bytes going
# towards TO-PORT (WHICH=up) or coming back from it (WHICH=down) are written one byte
# per segment (TCP_NODELAY, a pause between bytes)
cat >"$T/split.py" <<'PYEOF'
import os, socket, sys, threading, time
to, portfile, which = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0)); ls.listen(16)
open(portfile + ".tmp", "w").write(str(ls.getsockname()[1])); os.rename(portfile + ".tmp", portfile)
def pump(a, b, bytewise):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                b.shutdown(socket.SHUT_WR)
                return
            if bytewise:
                for i in range(len(d)):
                    b.sendall(d[i:i + 1])
                    time.sleep(0.0005)
            else:
                b.sendall(d)
    except OSError:
        for s in (a, b):
            try: s.close()
            except OSError: pass
while True:
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", to))
    for s in (c, u):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=pump, args=(c, u, which == "up"), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, which == "down"), daemon=True).start()
PYEOF
bg back "$PY" "$T/split.py" "$port" "$T/back.port" down
wait_for 10 test -s "$T/back.port" || fail "the back splitter did not start"
start_proxy px --backend "127.0.0.1:$(cat "$T/back.port")" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT"
bg front "$PY" "$T/split.py" "$PX_PORT" "$T/front.port" up
wait_for 10 test -s "$T/front.port" || fail "the front splitter did not start"

curl -sS -k --max-time 60 --tlsv1.2 --tls-max 1.2 --ciphers AES128-SHA -i \
	--resolve "bytes.test:$(cat "$T/front.port"):127.0.0.1" "https://bytes.test:$(cat "$T/front.port")/blob.bin" \
	-o "$T/bytes.resp" 2>"$T/bytes.err" || fail "curl through the splitters: $(cat "$T/bytes.err")"
get_conn "$PX_LOG" bytes.test 30
expect_fields "$CONN" verdict=decrypted reason=-
check_http_sink "$PT/$CONN_ID.s2c" "$T/files/blob.bin" "HTTP/1.0 200 ok"
check_sink "$PT" "$CONN_ID" s2c "$T/bytes.resp"
[ "$(field "$CONN" bytes_c2s)" -gt 300 ] || fail "too few bytes from the client: $CONN"
say "every byte its own segment both ways: decrypted, sinks exact"

# garbage from the server: a listener that answers any ClientHello with noise
cat >"$T/garbage.py" <<'PYEOF'
import os, socket, sys
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4)
open(sys.argv[1] + ".tmp", "w").write(str(ls.getsockname()[1])); os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    c, _ = ls.accept()
    try:
        c.recv(65536)
        c.sendall(b"\x17\x03\x03\x00\x05hello" + os.urandom(3000))
        c.recv(65536)
    except OSError:
        pass
    c.close()
PYEOF
bg garbage "$PY" "$T/garbage.py" "$T/garbage.port"
wait_for 10 test -s "$T/garbage.port" || fail "the garbage server did not start"
start_proxy px2 --backend "127.0.0.1:$(cat "$T/garbage.port")" --cert "$T/srv.crt" --key "$T/srv.key"
"$PY" "$PEERS" hello-client --port "$PX_PORT" --sni noise.test --ciphers AES128-SHA --tls12 --timeout 10 >"$T/noise.json" ||
	fail "hello-client failed"
"$PY" - "$T/noise.json" <<'PYEOF' || fail "the client did not get one handshake_failure alert and a reset: $(cat "$T/noise.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["received"] in ("15030300020228", "15030100020228"), r["received"]
assert r["end"] == "reset", r["end"]
PYEOF
get_conn "$PX_LOG" noise.test
expect_fields "$CONN" verdict=rejected reason=server-protocol-error close=reject

# garbage from the client, through the first proxy
LOG1="$T/px.log"
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 "$PY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.stdin.buffer.read())
try:
    print(len(s.recv(100)))
except OSError as e:
    print(e.__class__.__name__)' "$(sed -n 's/.* listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$LOG1" | head -n1)" >"$T/plain.out" 2>&1
wait_for 10 grep -q "INFO conn id=.* reason=not-tls " "$LOG1" || fail "the plain-text client was not rejected as not-tls"
say "garbage from the server: one handshake_failure alert and a reset for the client, rejected server-protocol-error; from the client: not-tls"

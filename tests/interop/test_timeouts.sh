#!/usr/bin/env bash
# Timeouts, each closing only its own connection (backend: a concurrent TLS echo server):
#  - --handshake-timeout: a slowloris client dribbling a ClientHello one byte
#    every 200 ms is reset after the timeout (logged, counted), while a
#    normal session through the same proxy goes on and is decrypted;
#  - --idle-timeout: a TLS session that goes quiet is reset after it (its
#    conn line: decrypted, reason=idle-timeout, close=reset), while one that
#    keeps talking is not.
. "$(dirname "$0")/lib.sh"

gen_cert srv srv.test
# the backend: a TLS echo server that serves its connections concurrently (a serial one
# would itself stall behind the slowloris connection and blur what is tested)
cat >"$T/echo.py" <<'PYEOF'
import asyncio, os, ssl, sys
async def echo(r, w):
    try:
        while (d := await r.read(65536)):
            w.write(d)
            await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-GCM-SHA256")
    srv = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=ctx)
    open(sys.argv[3] + ".tmp", "w").write(str(srv.sockets[0].getsockname()[1]))
    os.rename(sys.argv[3] + ".tmp", sys.argv[3])
    await asyncio.Event().wait()
asyncio.run(main())
PYEOF
bg echo "$PY" "$T/echo.py" "$T/srv.crt" "$T/srv.key" "$T/echo.port"
wait_for 10 test -s "$T/echo.port" || fail "the echo server did not start"
port=$(cat "$T/echo.port")
start_proxy px --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" \
	--handshake-timeout 1500 --idle-timeout 2000

# the slowloris client: a ClientHello, one byte every 200 ms; says when and how the proxy ended it
"$PY" - "$PX_PORT" >"$T/slow.out" 2>&1 <<'PYEOF' &
import os, socket, struct, sys, time
body = struct.pack(">H", 0x0303) + os.urandom(32) + b"\x00" + struct.pack(">H", 2) + b"\x00\x9c" + b"\x01\x00"
hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
rec = b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t0 = time.time()
try:
    for b in rec:
        s.send(bytes([b]))
        time.sleep(0.2)
    print("sent it all: not cut off")
except OSError as e:
    print("cut off after %.1f s: %s" % (time.time() - t0, e.__class__.__name__))
PYEOF
SLOW=$!

# meanwhile a normal session, and one that will go quiet
fifo_client busy
exec 8>"$T/busy.in"
fifo_client quiet
exec 9>"$T/quiet.in"
echo "hello" >&9
wait_for 10 grep -qx hello "$T/quiet.out" || fail "quiet: no echo"
for i in $(seq 1 12); do # 3.6 s of traffic, past both timeouts
	echo "line-$i" >&8
	sleep 0.3
done
wait_for 10 grep -qx line-12 "$T/busy.out" || fail "busy: the session did not carry on while the others timed out"
wait "$SLOW"
# cut off at the timeout: not before 1.5 s, and within a few ticks after (a loaded machine is slow)
awk '/^cut off after/ { t = $4 + 0; ok = t >= 1.5 && t < 5 } END { exit !ok }' "$T/slow.out" ||
	fail "the slowloris client was not cut off at the handshake timeout: $(cat "$T/slow.out")"
wait_for 10 grep -q "handshake not finished after 1500 ms" "$PX_LOG" || fail "no handshake timeout warning"
wait_for 10 grep -q "INFO conn id=.* reason=handshake-timeout .*close=reset" "$PX_LOG" ||
	fail "no conn line with reason=handshake-timeout"
say "slowloris: $(cat "$T/slow.out"); logged handshake-timeout; the other sessions carried on"

get_conn "$PX_LOG" quiet.test
expect_fields "$CONN" verdict=decrypted reason=idle-timeout close=reset
wait_exit "$CLI_PID" 5 || fail "the quiet client still runs after its reset"
grep -q "INFO id=.* idle for 2000 ms: resetting both sides" "$PX_LOG" || fail "no idle line"
exec 8>&- 9>&-
wait_conns "$PX_LOG" 3 10
get_conn "$PX_LOG" busy.test
expect_fields "$CONN" verdict=decrypted reason=- close=fin
kill -USR1 "$PX_PID"
wait_for 10 grep -q "stats connections .* handshake_timeouts=1 idle_timeouts=1" "$PX_LOG" ||
	fail "timeouts not counted: $(grep 'stats connections' "$PX_LOG" | tail -n1)"
say "idle: the quiet session was reset after 2 s (decrypted, reason=idle-timeout); the busy one ended normally"

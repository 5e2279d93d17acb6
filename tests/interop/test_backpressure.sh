#!/usr/bin/env bash
# Bounded buffering: nginx sends a 64 MiB file through the proxy to a client
# that stops reading after the first 64 KiB. The proxy must stop reading from
# the server (back-pressure) instead of buffering: its memory stays bounded
# while the transfer is stalled, its counters show the pause, and once the
# client reads again every byte arrives intact and decrypted.
. "$(dirname "$0")/lib.sh"
need_tool nginx

N=$((64 * 1024 * 1024))
gen_cert srv
mkdir -p "$T/www"
head -c $N /dev/urandom >"$T/www/big.bin"
want=$(sha256sum "$T/www/big.bin" | cut -d' ' -f1)
start_nginx nginx "$T/www" "$T/srv.crt" "$T/srv.key" "AES128-GCM-SHA256"
start_proxy px --backend "127.0.0.1:$NG_PORT" --cert "$T/srv.crt" --key "$T/srv.key" --max-queue 256K

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
base=$(rss_kib "$PX_PID")

# the client: GET, read 64 KiB, stall until told to go on (a file appears), read the rest
cat >"$T/client.py" <<'PY'
import hashlib, os, socket, ssl, sys, time
port, go = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.set_ciphers("AES128-GCM-SHA256")  # RSA key exchange: not in Python's defaults
raw = socket.create_connection(("127.0.0.1", port), timeout=60)
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s = ctx.wrap_socket(raw, server_hostname="stall.test")
s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: stall.test\r\nConnection: close\r\n\r\n")
buf = b""
while len(buf) < 65536:
    buf += s.recv(65536)
print("stalled", flush=True)
deadline = time.time() + 60
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
head, _, first = buf.partition(b"\r\n\r\n")
h = hashlib.sha256(first)
n = len(first)
while True:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    h.update(chunk)
    n += len(chunk)
print("body", n, h.hexdigest(), flush=True)
PY
bg client "$PY" "$T/client.py" "$PX_PORT" "$T/go"
CLIENT_PID=$BG_PID

wait_for 20 grep -q stalled "$T/client.out" || fail "the client never received its first 64 KiB"
# give the server every chance to push more than the proxy may hold
sleep 2
peak=0
for _ in 1 2 3 4 5 6 7 8 9 10; do
	r=$(rss_kib "$PX_PID")
	[ "$r" -gt "$peak" ] && peak=$r
	sleep 0.1
done
kill -USR1 "$PX_PID"
wait_for 10 grep -q 'stats bytes' "$PX_LOG" || fail "no stats after SIGUSR1"
stats=$(grep 'stats bytes' "$PX_LOG" | tail -n1)
s2c=$(field "$stats" s2c)
paused=$(field "$stats" recv_paused)
held=$(field "$stats" buffers_held)
held=${held%/*}
growth=$(((peak - base) / 1024))
say "stalled: proxy RSS $((base / 1024)) -> $((peak / 1024)) MiB, s2c so far $((s2c / 1048576)) MiB of 64, recv_paused=$paused, buffers_held=$held"
[ "$paused" -ge 1 ] || fail "the proxy never paused reading from the server (recv_paused=$paused)"
# 256 KiB of whole 16 KiB buffers queued, plus one client->server
[ "$held" -le 17 ] || fail "a stalled connection holds $held ring buffers (--max-queue 256K allows 16, +1)"
[ "$s2c" -lt $((N / 2)) ] || fail "the proxy read $s2c bytes from the server while the client was stalled"
# the ring (4 MiB) plus a 256 KiB queue per direction and the decryption backlog of what was read
[ "$growth" -le 24 ] || fail "proxy memory grew by $growth MiB while the client was stalled"

touch "$T/go"
wait_exit "$CLIENT_PID" 120 || fail "the client did not finish"
got=$(sed -n 's/^body //p' "$T/client.out")
[ "$got" = "$N $want" ] || fail "the client got '$got', want '$N $want'"
wait_conns "$PX_LOG" 1
get_conn "$PX_LOG" stall.test
expect_fields "$CONN" verdict=decrypted reason=-
dec=$(field "$CONN" decrypted_s2c)
[ "$dec" -gt "$N" ] || fail "decrypted_s2c=$dec, want the body ($N) plus the response head"
case $CONN in *dropped_*) fail "records went uninspected: $CONN" ;; esac
say "after the stall: 64 MiB intact, decrypted_s2c=$dec"
exit 0

#!/usr/bin/env bash
# conns_bench.sh: memory per held connection, proxyssl against nginx's stream
# proxy (a plain L4 relay, the peer) in the same run, on 127.0.0.1.
#
# A holder (python, asyncio) accepts and keeps every connection the proxies
# open to it; a client opens N connections through a proxy and leaves them
# idle: first N plain TCP connections (no ClientHello yet: what a flood of
# idle clients costs), then M TLS sessions through proxyssl with a full RSA
# handshake each (what a decrypted idle session costs). The proxy's RSS
# (VmRSS) is read before and after; the growth divided by the count is the
# memory per connection. Not a pass/fail test: it prints numbers and ratios.
#
#   tests/bench/conns_bench.sh [--proxy PATH] [--conns N] [--tls M]
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PROXY=""
N=10000
M=1000
while [ $# -gt 0 ]; do
	case $1 in
	--proxy) PROXY=$2; shift 2 ;;
	--conns) N=$2; shift 2 ;;
	--tls) M=$2; shift 2 ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "conns_bench: unknown option $1" >&2; exit 2 ;;
	esac
done
[ -n "$PROXY" ] || PROXY=$(ls "$REPO"/build*/proxyssl 2>/dev/null | head -n1)
[ -x "$PROXY" ] || { echo "conns_bench: no proxyssl binary (build first, or --proxy PATH)"; exit 2; }
ulimit -Hn 1048576 2>/dev/null
ulimit -n "$(ulimit -Hn)"
# the proxy needs two descriptors a connection (and 64 more): hold what the limit allows
LIMIT=$(ulimit -n)
if [ "$LIMIT" != unlimited ] && [ $((N * 2 + 200)) -gt "$LIMIT" ]; then
	echo "(the descriptor limit is $LIMIT here: $((N)) connections do not fit; holding $(((LIMIT - 200) / 2)))"
	N=$(((LIMIT - 200) / 2))
fi
T=$(mktemp -d /tmp/conns_bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0; sleep 0.05; done; return 1; }

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/srv.key" -out "$T/srv.crt" -days 2 -subj /CN=bench >/dev/null 2>&1

# the holder: plain TCP on one port, TLS (RSA key exchange) on another; keeps everything open
cat >"$T/holder.py" <<'PYEOF'
import asyncio, ssl, sys
tcp, tls, crt, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
held = []
async def hold(r, w):
    held.append(w)
    try:
        await r.read()
    except Exception:
        pass
async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-GCM-SHA256")
    await asyncio.start_server(hold, "127.0.0.1", tcp, backlog=4096)
    await asyncio.start_server(hold, "127.0.0.1", tls, ssl=ctx, backlog=4096)
    await asyncio.Event().wait()
asyncio.run(main())
PYEOF
# the client: N connections to a port, TLS or not, all kept open until stdin closes
cat >"$T/client.py" <<'PYEOF'
import asyncio, ssl, sys
port, n, tls = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "tls"
async def main():
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2; ctx.set_ciphers("AES128-GCM-SHA256")
    conns, failed, sem = [], [], asyncio.Semaphore(64)
    async def one():
        async with sem:
            try:
                conns.append(await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="bench" if tls else None))
            except OSError as e:
                failed.append(e)
    await asyncio.gather(*[one() for _ in range(n)])
    print("open %d failed %d" % (len(conns), len(failed)), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
PYEOF
TCP=$(free_port) TLS=$(free_port)
setsid python3 "$T/holder.py" "$TCP" "$TLS" "$T/srv.crt" "$T/srv.key" &
PIDS+=($!)
wait_port "$TCP" && wait_port "$TLS" || { echo "conns_bench: the holder did not start"; exit 1; }

# measure NAME PID PORT COUNT KIND: RSS growth per connection while COUNT are held open
measure() {
	local name=$1 pid=$2 port=$3 n=$4 kind=$5 before after
	sleep 0.5
	before=$(rss_kb "$pid")
	mkfifo "$T/hold.$name.$kind"
	exec 7<>"$T/hold.$name.$kind"
	python3 "$T/client.py" "$port" "$n" "$kind" <"$T/hold.$name.$kind" >"$T/client.$name.$kind" 2>&1 7>&- &
	local cpid=$!
	for _ in $(seq 600); do grep -q "^open" "$T/client.$name.$kind" && break; sleep 0.1; done
	sleep 1
	after=$(rss_kb "$pid")
	grep -q "^open $n failed 0" "$T/client.$name.$kind" || echo "  ($name $kind: $(tail -n1 "$T/client.$name.$kind"))"
	exec 7>&-
	wait "$cpid" 2>/dev/null
	RESULT=$(((after - before) * 1024 / n))
	printf '  %-22s %6d %-4s connections: RSS %7d -> %7d KiB, %6d bytes per connection\n' "$name" "$n" "$kind" "$before" "$after" "$RESULT"
}

echo "memory per idle connection (RSS growth / connections), $(nproc) CPUs"
P1=$(free_port) P2=$(free_port)
setsid "$PROXY" --listen "127.0.0.1:$P1" --backend "127.0.0.1:$TCP" --cert "$T/srv.crt" --key "$T/srv.key" \
	--handshake-timeout 0 --max-conns 100000 --log "$T/px1.log" &
PX1=$!
PIDS+=($PX1)
setsid "$PROXY" --listen "127.0.0.1:$P2" --backend "127.0.0.1:$TLS" --cert "$T/srv.crt" --key "$T/srv.key" \
	--max-conns 100000 --log "$T/px2.log" &
PX2=$!
PIDS+=($PX2)
wait_port "$P1" && wait_port "$P2" || { echo "conns_bench: proxyssl did not start: $(tail -n2 "$T"/px*.log)"; exit 1; }
measure proxyssl "$PX1" "$P1" "$N" tcp
PXY_TCP=$RESULT
measure proxyssl "$PX2" "$P2" "$M" tls
PXY_TLS=$RESULT

NG=""
if [ -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
	P3=$(free_port)
	mkdir -p "$T/ng"
	cat >"$T/ng/nginx.conf" <<-EOF
		load_module /usr/lib/nginx/modules/ngx_stream_module.so;
		$([ "$(id -u)" = 0 ] && echo "user $(id -un) $(id -gn);")
		worker_processes 1;
		worker_rlimit_nofile 200000;
		daemon off;
		pid $T/ng/nginx.pid;
		error_log $T/ng/error.log;
		events { worker_connections 100000; }
		stream { server { listen 127.0.0.1:$P3 backlog=4096; proxy_pass 127.0.0.1:$TCP; } }
	EOF
	setsid nginx -p "$T/ng" -c "$T/ng/nginx.conf" &
	PIDS+=($!)
	wait_port "$P3" || { echo "nginx stream did not start: $(tail -n2 "$T/ng/error.log")"; }
	worker=$(pgrep -f "nginx: worker process" -P "$(cat "$T/ng/nginx.pid")" | head -n1)
	if [ -n "$worker" ]; then
		measure nginx-stream "$worker" "$P3" "$N" tcp
		NG=$RESULT
	fi
else
	echo "  nginx-stream: the stream module is not installed (libnginx-mod-stream): no peer"
fi
echo
printf 'proxyssl: %d bytes per idle TCP connection, %d bytes per idle decrypted TLS session (target: 16384)\n' "$PXY_TCP" "$PXY_TLS"
[ -n "$NG" ] && [ "$NG" -gt 0 ] && awk -v a="$PXY_TCP" -v b="$NG" 'BEGIN { printf "ratio proxyssl / nginx-stream per idle TCP connection: %.2f\n", a / b }'
exit 0

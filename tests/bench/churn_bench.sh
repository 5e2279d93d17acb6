#!/usr/bin/env bash
# churn_bench.sh: many short TLS connections through proxyssl, looking for
# leaks and growth, on 127.0.0.1, against an nginx backend.
#
# The churn: P client processes open connections one after another; each
# sends a GET and reads the response to the end. Of every 10 connections one
# is a full RSA handshake and eight resume its session (session ID); one in 10
# offers only ECDHE (the proxy rejects it: alert and reset both ways) and one
# in 50 is reset by the client right after its ClientHello. Suites alternate
# between AES128-GCM-SHA256 and AES256-SHA (CBC).
#
#   1. direct: the same churn straight to nginx (the peer; its rate is the
#      reference for the ratio);
#   2. proxyssl (the normal build): a warm-up of 2,000 connections, then N;
#      its RSS and open descriptors after the warm-up and after the churn (and
#      a pause) are compared: growth per 1,000 connections. The session cache
#      is held to 100 entries (--session-cache 100), which the warm-up fills:
#      from then on every new session evicts one, and the cache cannot hide
#      a leak as growth it is allowed. The churn runs in --rounds rounds
#      (default 4) with the RSS read after each: growth that flattens is the
#      allocator settling, growth that goes on is a leak;
#   3. proxyssl built with ASan/UBSan (PXY_SANITIZE): N connections, then
#      SIGTERM; LeakSanitizer runs at exit; every ASan, LSan and UBSan report
#      is counted;
#   4. proxyssl under valgrind memcheck: V connections, then SIGTERM; errors
#      and definitely/indirectly lost bytes are read from its summary.
# Every phase also checks the proxy's own counters: every connection logged,
# none active, no ring buffer held, no pending bytes. Not a pass/fail test:
# it prints numbers and exits 0 (1 only when it could not run).
#
#   tests/bench/churn_bench.sh [--conns N] [--valgrind-conns V] [--procs P] [--rounds R]
#        [--proxy PATH] [--asan PATH] [--engine NAME] [--skip-asan] [--skip-valgrind]
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
N=100000
V=10000
P=2
ROUNDS=4
WARM=2000
PROXY=""
ASAN=""
ENGINE=cpu
SKIP_ASAN=0
SKIP_VG=0
while [ $# -gt 0 ]; do
	case $1 in
	--conns) N=$2; shift 2 ;;
	--valgrind-conns) V=$2; shift 2 ;;
	--procs) P=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--proxy) PROXY=$2; shift 2 ;;
	--asan) ASAN=$2; shift 2 ;;
	--engine) ENGINE=$2; shift 2 ;;
	--skip-asan) SKIP_ASAN=1; shift ;;
	--skip-valgrind) SKIP_VG=1; shift ;;
	-h | --help) sed -n '2,33p' "$0"; exit 0 ;;
	*) echo "churn_bench: unknown option $1" >&2; exit 2 ;;
	esac
done
die() { echo "churn_bench: $*" >&2; exit 1; }
[ -n "$PROXY" ] || for b in build-test build-rel build; do [ -x "$REPO/$b/proxyssl" ] && PROXY=$REPO/$b/proxyssl && break; done
[ -x "$PROXY" ] || die "no proxyssl binary (build first, or --proxy PATH)"
[ -n "$ASAN" ] || ASAN=$REPO/build-asan/proxyssl
if [ "$SKIP_ASAN" = 0 ] && [ ! -x "$ASAN" ]; then
	echo "(no ASan build at $ASAN: cmake -S . -B build-asan -DPXY_SANITIZE=ON; skipping that phase)"
	SKIP_ASAN=1
fi
if [ "$SKIP_VG" = 0 ] && ! command -v valgrind >/dev/null; then
	echo "(valgrind is not installed: skipping that phase)"
	SKIP_VG=1
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is not installed"

T=$(mktemp -d /tmp/churn_bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/srv.key" -out "$T/srv.crt" -days 2 -subj /CN=churn \
	>/dev/null 2>&1 || die "openssl req failed"
mkdir -p "$T/www" "$T/nginx"
head -c 2048 /dev/urandom | base64 >"$T/www/x"

NGINX_PORT=$(free_port)
userline=""
[ "$(id -u)" = 0 ] && userline="user root root;"
cat >"$T/nginx/nginx.conf" <<EOF
$userline
worker_processes 1;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $T/nginx/client_body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $T/srv.crt;
        ssl_certificate_key $T/srv.key;
        ssl_protocols TLSv1.2;
        ssl_ciphers AES128-GCM-SHA256:AES256-SHA:ECDHE-RSA-AES128-GCM-SHA256;
        ssl_session_cache shared:churn:20m;
        ssl_session_tickets off;
        root $T/www;
    }
}
EOF
# in a subshell: not a job of this shell (no "Killed" line at the end)
("$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" >"$T/nginx/stdout" 2>&1 &
	echo $! >"$T/nginx.pid")
PIDS+=("$(cat "$T/nginx.pid")")
wait_port "$NGINX_PORT" || die "nginx did not start: $(cat "$T/nginx/error.log")"

# churn.py PORT COUNT PROCS: prints "ok=.. resumed=.. rejected=.. aborted=.. failed=.. seconds=.."
cat >"$T/churn.py" <<'PYEOF'
import multiprocessing, socket, ssl, struct, sys, time
port, count, procs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
REQ = b"GET /x HTTP/1.1\r\nHost: churn\r\nConnection: close\r\n\r\n"

def ctx(ciphers):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
    c.maximum_version = ssl.TLSVersion.TLSv1_2; c.set_ciphers(ciphers)
    return c

def worker(args):
    first, n = args
    rsa = [ctx("AES128-GCM-SHA256"), ctx("AES256-SHA")]
    ecdhe = ctx("ECDHE-RSA-AES128-GCM-SHA256")
    st = dict(ok=0, resumed=0, ecdhe_refused=0, ecdhe_through=0, aborted=0, failed=0)
    sess = [None, None]
    for i in range(first, first + n):
        s = socket.create_connection(("127.0.0.1", port), 10)
        s.settimeout(10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if i % 50 == 49:
                # a ClientHello, then a reset
                o = ssl.MemoryBIO(); inc = ssl.MemoryBIO()
                obj = rsa[0].wrap_bio(inc, o, server_side=False)
                try: obj.do_handshake()
                except ssl.SSLWantReadError: pass
                s.sendall(o.read())
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                st["aborted"] += 1
                continue
            if i % 10 == 9:
                try:
                    t = ecdhe.wrap_socket(s); t.sendall(REQ); t.recv(1)
                    st["ecdhe_through"] += 1  # straight to nginx; the proxy must refuse it
                except (ssl.SSLError, OSError):
                    st["ecdhe_refused"] += 1
                continue
            k = (i // 10) % 2
            full = i % 10 == 0 or sess[k] is None
            t = rsa[k].wrap_socket(s, session=None if full else sess[k])
            t.sendall(REQ)
            got = b""
            while True:
                d = t.recv(65536)
                if not d: break
                got += d
            if not got.startswith(b"HTTP/1.1 200"):
                st["failed"] += 1; continue
            if t.session_reused: st["resumed"] += 1
            sess[k] = t.session
            st["ok"] += 1
        except (ssl.SSLError, OSError) as e:
            st["failed"] += 1
        finally:
            s.close()
    return st

t0 = time.time()
per = [count // procs + (1 if p < count % procs else 0) for p in range(procs)]
starts = [sum(per[:p]) for p in range(procs)]
with multiprocessing.Pool(procs) as pool:
    res = pool.map(worker, list(zip(starts, per)))
tot = {k: sum(r[k] for r in res) for k in res[0]}
print(" ".join("%s=%d" % kv for kv in tot.items()), "seconds=%.1f" % (time.time() - t0))
PYEOF
churn() { python3 "$T/churn.py" "$1" "$2" "$P"; }
kv() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }
rate() { python3 -c "print('%.0f' % ($1 / max($2, 0.001)))"; }

# run_proxy NAME PREFIX...: starts the proxy (prefixed by a wrapper such as valgrind); sets PX_PID PX_PORT PX_LOG
run_proxy() {
	local name=$1
	shift
	PX_PORT=$(free_port)
	PX_LOG=$T/$name.log
	"$@" --listen "127.0.0.1:$PX_PORT" --backend "127.0.0.1:$NGINX_PORT" --cert "$T/srv.crt" --key "$T/srv.key" \
		--engine "$ENGINE" --session-cache 100 --log "$PX_LOG" >"$T/$name.out" 2>"$T/$name.err" &
	PX_PID=$!
	PIDS+=("$PX_PID")
	wait_port "$PX_PORT" || die "$name did not start: $(tail -3 "$T/$name.err" "$PX_LOG" 2>/dev/null)"
}
# the process proxyssl runs in (valgrind execs it: the same pid)
# stats_check NAME: every connection ended, nothing held; prints the proxy's own view
stats_check() {
	local name=$1 conn="" n
	for _ in $(seq 60); do
		n=$(grep -c "stats engine" "$PX_LOG")
		kill -USR1 "$PX_PID"
		for _ in $(seq 100); do [ "$(grep -c "stats engine" "$PX_LOG")" -gt "$n" ] && break; sleep 0.1; done
		conn=$(grep "stats connections" "$PX_LOG" | tail -1)
		# every connection gone, and every engine job of theirs back
		[ "$(kv "${conn#*connections }" active)" = 0 ] &&
			grep "stats tls" "$PX_LOG" | tail -1 | grep -q ' pending_bytes=0 ' && break
		sleep 0.5
	done
	echo "  $name proxy: accepted=$(kv "${conn#*connections }" accepted) active=$(kv "${conn#*connections }" active)" \
		"$(grep "stats bytes" "$PX_LOG" | tail -1 | grep -o 'buffers_held=[^ ]*')" \
		"$(grep "stats tls" "$PX_LOG" | tail -1 | grep -o 'pending_bytes=[^ ]*')" \
		"$(grep "stats sessions" "$PX_LOG" | tail -1 | grep -o 'entries=[^ ]*')" \
		"conn_lines=$(grep -c ' INFO conn id=' "$PX_LOG")" \
		"rejected=$(grep -c ' WARN reject ' "$PX_LOG")"
}
stop_proxy() {
	kill -TERM "$PX_PID"
	for _ in $(seq 600); do kill -0 "$PX_PID" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$PX_PID" 2>/dev/null && { echo "  (still running 60 s after SIGTERM: killed)"; kill -9 "$PX_PID"; }
	wait "$PX_PID" 2>/dev/null
}

echo "churn_bench: $N connections (1 full handshake, 8 resumptions, 1 ECDHE rejected per 10; 1 in 50 reset after its ClientHello), $P client processes, engine $ENGINE"
echo "backend nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), one worker"

# 1. the peer: straight to nginx
res=$(churn "$NGINX_PORT" "$N")
direct_rate=$(rate "$N" "$(kv "$res" seconds)")
echo "direct     : $res  ($direct_rate conn/s)"

# 2. the normal build: growth
run_proxy normal "$PROXY"
churn "$PX_PORT" "$WARM" >/dev/null
sleep 1
rss0=$(rss_kb "$PX_PID") fd0=$(nfds "$PX_PID")
# in ROUNDS rounds: growth that flattens is caches and the allocator settling; a leak keeps growing
rounds="" secs=0 done_n=0
for r in $(seq "$ROUNDS"); do
	n=$((N / ROUNDS + (r <= N % ROUNDS ? 1 : 0)))
	res=$(churn "$PX_PORT" "$n")
	secs=$(python3 -c "print($secs + $(kv "$res" seconds))")
	done_n=$((done_n + n))
	sleep 1
	rounds="$rounds $(rss_kb "$PX_PID")"
done
sleep 1
rss1=$(rss_kb "$PX_PID") fd1=$(nfds "$PX_PID")
px_rate=$(rate "$N" "$secs")
echo "proxyssl   : $res (last round)  ($px_rate conn/s over all rounds, $(python3 -c "print('%.2f' % ($px_rate / max($direct_rate, 1)))") of direct)"
echo "  RSS after warm-up $rss0 KiB, after each of $ROUNDS rounds (KiB):$rounds;" \
	"$(python3 -c "print('%+.1f KiB per 1000 connections overall' % (($rss1 - $rss0) * 1000 / $N))")"
echo "  open descriptors after warm-up $fd0, after the churn $fd1"
stats_check normal
stop_proxy

# 3. ASan/UBSan
if [ "$SKIP_ASAN" = 0 ]; then
	export ASAN_OPTIONS=detect_leaks=1:halt_on_error=0:exitcode=0 UBSAN_OPTIONS=print_stacktrace=1
	run_proxy asan "$ASAN"
	res=$(churn "$PX_PORT" "$N")
	echo "ASan/UBSan : $res  ($(rate "$N" "$(kv "$res" seconds)") conn/s)"
	stats_check asan
	stop_proxy
	unset ASAN_OPTIONS UBSAN_OPTIONS
	echo "  AddressSanitizer errors: $(grep -c 'ERROR: AddressSanitizer' "$T/asan.err")," \
		"leaks reported at exit: $(grep -c 'ERROR: LeakSanitizer' "$T/asan.err")," \
		"UBSan runtime errors: $(grep -c 'runtime error' "$T/asan.err")"
	grep -m3 -A8 'ERROR: \|runtime error' "$T/asan.err" | sed 's/^/    /'
fi

# 4. valgrind memcheck
if [ "$SKIP_VG" = 0 ]; then
	run_proxy valgrind valgrind --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
		--track-fds=no "$PROXY"
	res=$(churn "$PX_PORT" "$V")
	echo "valgrind   : $res  ($(rate "$V" "$(kv "$res" seconds)") conn/s)"
	stats_check valgrind
	stop_proxy
	echo "  $(grep -o 'ERROR SUMMARY: [0-9,]* errors' "$T/valgrind.err" | tail -1);" \
		"$(grep -o 'definitely lost: [0-9,]* bytes' "$T/valgrind.err" | tail -1 || echo 'definitely lost: 0 bytes')," \
		"$(grep -o 'indirectly lost: [0-9,]* bytes' "$T/valgrind.err" | tail -1 || echo 'indirectly lost: 0 bytes')" \
		"$(grep -q 'All heap blocks were freed' "$T/valgrind.err" && echo '(all heap blocks were freed)')"
	grep -m3 -B2 -A12 'Invalid \|uninitialised\|definitely lost in' "$T/valgrind.err" | sed 's/^/    /'
fi
exit 0

# Shared helpers for the interop tests; sourced by every tests/interop/test_*.sh.
#
# Environment: PROXYSSL (the binary), PXY_TEST_TMP (where temp dirs go),
# PXY_KEEP=1 keeps the temp dir even when the test passes, PXY_PROXY_ARGS adds
# options to every proxy started (e.g. "--engine-threads 0").
# Exit codes: 0 pass, 77 skip, anything else fail.
#
# Every background process is started with `bg NAME cmd...` in its own
# session (setsid), so that its whole process group can be killed at exit.
# Only 127.0.0.1 is used; every port comes from the kernel (port 0) or from
# free_port with a retry.

set -u
set -o pipefail

PXY_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PEERS="$PXY_HERE/peers.py"
PXY_NAME=$(basename "${BASH_SOURCE[1]:-interop}" .sh)
PXY_T0=$(date +%s%N)
PIDS=()

: "${PXY_TEST_TMP:=${TMPDIR:-/tmp}}"
mkdir -p "$PXY_TEST_TMP" || { echo "cannot create $PXY_TEST_TMP"; exit 1; }
T=$(mktemp -d "$PXY_TEST_TMP/$PXY_NAME.XXXXXX") || { echo "mktemp failed"; exit 1; }

say() {
	local ms=$((($(date +%s%N) - PXY_T0) / 1000000))
	printf '[%s %d.%03ds] %s\n' "$PXY_NAME" $((ms / 1000)) $((ms % 1000)) "$*"
}

# A test that cannot run fails and says why (tests/run.sh installs what they need); it is
# skipped (77) only when that was asked for: PXY_ALLOW_SKIP=1.
skip() {
	if [ "${PXY_ALLOW_SKIP:-0}" = 1 ]; then
		echo "SKIP: $*"
		exit 77
	fi
	echo "FAIL: cannot run: $* (tests/run.sh installs what the tests need; PXY_ALLOW_SKIP=1 skips instead)"
	exit 1
}

# need_tool TOOL...: each on PATH, else the Debian package to install is named
need_tool() {
	local t pkg
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 && continue
		case $t in
		gnutls-serv | gnutls-cli) pkg=gnutls-bin ;;
		ip) pkg=iproute2 ;;
		redis-server | redis-cli) pkg=redis-server ;;
		*) pkg=$t ;;
		esac
		skip "$t is not installed (Debian package $pkg)"
	done
}

# start_redis: a throw-away redis-server on 127.0.0.1 (no persistence); sets RPORT and REDIS_PID
start_redis() {
	local _try
	need_tool redis-server redis-cli
	for _try in 1 2 3 4 5; do
		RPORT=$(free_port)
		bg redis redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no
		REDIS_PID=$BG_PID
		wait_for 10 redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0
		stop_group "$REDIS_PID"
	done
	fail "redis-server did not start: $(tail -n3 "$T/redis.out" 2>/dev/null)"
}

# alive PID: the process exists and is not a zombie
alive() {
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# group_alive PGID: some process of the group is still running
group_alive() {
	kill -0 -- "-$1" 2>/dev/null || return 1
	local p
	for p in $(pgrep -g "$1" 2>/dev/null); do
		alive "$p" && return 0
	done
	return 1
}

# bg NAME cmd...: start cmd in the background, in its own session, stdout and
# stderr to $T/NAME.out and $T/NAME.err, stdin from /dev/null. Sets BG_PID.
bg() {
	local name=$1
	shift
	setsid "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null &
	BG_PID=$!
	PIDS+=("$BG_PID")
	printf '%s %s\n' "$BG_PID" "$name" >>"$T/pids"
}

# stop_group PGID [SIGNAL]: signal the whole group, wait (bounded), then SIGKILL
stop_group() {
	local pg=$1 sig=${2:-TERM} i
	kill -"$sig" -- "-$pg" 2>/dev/null || kill -"$sig" "$pg" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		group_alive "$pg" || break
		sleep 0.02
	done
	if group_alive "$pg"; then
		kill -KILL -- "-$pg" 2>/dev/null || kill -KILL "$pg" 2>/dev/null
	fi
	wait "$pg" 2>/dev/null
	return 0
}

# wait_exit PID TIMEOUT: wait (bounded) for a bg process to exit; EXIT_CODE gets its status
wait_exit() {
	local pid=$1 to=$2 end
	end=$(($(date +%s%N) + ${to%.*} * 1000000000))
	while alive "$pid"; do
		[ "$(date +%s%N)" -lt "$end" ] || { EXIT_CODE=timeout; return 1; }
		sleep 0.02
	done
	wait "$pid" 2>/dev/null
	EXIT_CODE=$?
	return 0
}

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	if [ "$rc" = 0 ] && [ -s "$T/FAILED" ]; then
		echo "failed checks:" >&2
		cat "$T/FAILED" >&2
		dump_logs >&2
		rc=1
	fi
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_group "${PIDS[$i]}"
	done
	: >"$T/pids"
	if [ "$rc" = 0 ] || [ "$rc" = 77 ]; then
		[ "${PXY_KEEP:-0}" = 1 ] || rm -rf "$T"
	else
		echo "(files kept in $T)"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A watchdog for the case where this script is killed outright (SIGKILL, e.g. a
# harness timeout) and its EXIT trap never runs: once the script is gone, it
# kills the process groups still listed in $T/pids (cleanup empties the list).
: >"$T/pids"
setsid bash -c 'while kill -0 "$0" 2>/dev/null; do sleep 1; done
	[ -s "$1" ] || exit 0
	while read -r pid name; do kill -KILL -- "-$pid" 2>/dev/null; done <"$1"' "$$" "$T/pids" \
	</dev/null >/dev/null 2>&1 &

# dump the logs that tell what happened
dump_logs() {
	local f
	# the four most recent logs (a test may start many proxies)
	for f in $(ls -t "$T"/*.log 2>/dev/null | head -n 4); do
		[ -f "$f" ] || continue
		echo "---- $f (last 40 lines)"
		tail -n 40 "$f"
	done
	for f in "$T"/*.err; do
		[ -s "$f" ] || continue
		echo "---- $f (last 15 lines)"
		tail -n 15 "$f" | cut -c1-300
	done
}

# fail MESSAGE: print it and the logs, exit 1. Inside $(...) it only ends the
# subshell, so it also leaves $T/FAILED behind, which makes the test fail at exit.
fail() {
	echo "FAIL: $*" >>"$T/FAILED"
	{
		echo "FAIL: $*"
		dump_logs
	} >&2
	exit 1
}

# soft_fail MESSAGE: record a failure and go on (the test fails at exit, listing them all)
soft_fail() {
	echo "FAIL: $*" >>"$T/FAILED"
	echo "FAIL (continuing): $*" >&2
}

# wait_for TIMEOUT cmd...: poll cmd until it succeeds; 1 on timeout
wait_for() {
	local to=$1 end d=0.01
	shift
	end=$(($(date +%s%N) + ${to%.*} * 1000000000))
	while ! "$@"; do
		[ "$(date +%s%N)" -lt "$end" ] || return 1
		sleep "$d"
		case $d in 0.01) d=0.02 ;; 0.02) d=0.05 ;; esac
	done
	return 0
}

fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }
size_at_least() { [ "$(fsize "$1")" -ge "$2" ]; }
# wait_size FILE SIZE TIMEOUT
wait_size() { wait_for "$3" size_at_least "$1" "$2"; }

# free_port: a port nobody listens on right now (use only where port 0 is impossible; retry on clash)
free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# is_listening PORT: something listens on 127.0.0.1:PORT (or 0.0.0.0:PORT)
is_listening() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v p="$hex" 'NR > 1 && $4 == "0A" { split($2, a, ":"); if (a[2] == p && (a[1] == "0100007F" || a[1] == "00000000")) f = 1 } END { exit !f }' /proc/net/tcp
}

# listen_port_of PGID: the port a bg process group listens on (started with port 0)
listen_port_of() {
	"$PY" "$PEERS" listen-port --pgid "$1" --timeout "${2:-20}"
}

# gen_cert NAME [CN] [KEYSPEC]: $T/NAME.crt and $T/NAME.key (self-signed, RSA-2048 by default)
gen_cert() {
	local name=$1 cn=${2:-localhost} spec=${3:-rsa:2048}
	openssl req -x509 -newkey "$spec" -nodes -keyout "$T/$name.key" -out "$T/$name.crt" \
		-days 3 -subj "/CN=$cn" >"$T/gen-$name.txt" 2>&1 || fail "cannot generate the certificate $name"
}

# cert_serial / cert_sha256 FILE: as proxyssl prints them
cert_serial() { openssl x509 -in "$1" -noout -serial | sed 's/^serial=//'; }
cert_sha256() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//'; }

# start_proxy NAME args...: proxyssl on 127.0.0.1:0 logging to $T/NAME.log.
# Sets PX_PID, PX_PORT, PX_LOG.
start_proxy() {
	local name=$1
	shift
	[ -n "${PROXYSSL:-}" ] || fail "PROXYSSL is not set (path to the proxyssl binary)"
	[ -x "$PROXYSSL" ] || fail "PROXYSSL=$PROXYSSL is not executable"
	PX_LOG="$T/$name.log"
	: >"$PX_LOG"
	# PX_WRAP: an optional command prefix (e.g. "taskset -c 0"); PXY_PROXY_ARGS: extra
	# options for every proxy of every test (e.g. "--engine-threads 0" to tell engine
	# timing from the rest)
	# shellcheck disable=SC2086
	bg "$name" ${PX_WRAP:-} "$PROXYSSL" --listen 127.0.0.1:0 --log "$PX_LOG" "$@" ${PXY_PROXY_ARGS:-}
	PX_PID=$BG_PID
	if ! wait_for 20 grep -qs ' listening on ' "$PX_LOG"; then
		alive "$PX_PID" || { wait "$PX_PID"; echo "proxyssl exited with status $?"; }
		fail "proxyssl ($name) did not start listening"
	fi
	PX_PORT=$(sed -n 's/.* listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$PX_LOG" | head -n1)
	[ -n "$PX_PORT" ] && [ "$PX_PORT" != 0 ] || fail "cannot read the proxy port from $PX_LOG"
}

# lines_at_least FILE N: FILE has N lines or more (for wait_for: counted anew at each try)
lines_at_least() { [ "$(wc -l <"$1" 2>/dev/null || echo 0)" -ge "$2" ]; }

# fd_count PID: descriptors the process has open now
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
fds_back_to() { [ "$(fd_count "$1")" -le "$2" ]; }
# wait_fds PID N [TIMEOUT]: once every connection has ended and its files are written,
# the process holds no more descriptors than N (what it had before any connection)
wait_fds() {
	wait_for "${3:-10}" fds_back_to "$1" "$2" ||
		fail "process $1 holds $(fd_count "$1") descriptors, $2 before its connections: $(ls -l "/proc/$1/fd" 2>/dev/null | tail -n 5)"
}

# conn_lines LOG: the per-connection lines
conn_lines() { grep ' INFO conn id=' "$1"; }
conn_count() { conn_lines "$1" | wc -l; }
# wait_conns LOG N [TIMEOUT]: until the log holds N conn lines
has_conns() { [ "$(conn_count "$1")" -ge "$2" ]; }
wait_conns() { wait_for "${3:-20}" has_conns "$1" "$2" || fail "expected $2 conn line(s) in $1, found $(conn_count "$1")"; }
# conn_by_sni LOG SNI: the conn line(s) of the connection(s) with that SNI
conn_by_sni() { conn_lines "$1" | grep -F " sni=$2 "; }
has_conn_sni() { conn_by_sni "$1" "$2" >/dev/null; }
# get_conn LOG SNI [TIMEOUT]: wait for the one conn line with that SNI; sets CONN and CONN_ID
get_conn() {
	CONN="" CONN_ID=""
	wait_for "${3:-20}" has_conn_sni "$1" "$2" || fail "no conn line with sni=$2 in $1"
	local n
	n=$(conn_by_sni "$1" "$2" | wc -l)
	[ "$n" = 1 ] || fail "$n conn lines with sni=$2 in $1"
	CONN=$(conn_by_sni "$1" "$2")
	CONN_ID=$(field "$CONN" id)
}
# reject_by_id LOG ID
reject_by_id() { grep -F " WARN reject id=$2 " "$1"; }
# field LINE KEY: the value of KEY=... in a log line
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }
# expect_field LINE KEY VALUE
expect_field() {
	local v
	v=$(field "$1" "$2")
	[ "$v" = "$3" ] || fail "expected $2=$3, got $2=$v in: $1"
}
# expect_fields LINE KEY=VALUE...
expect_fields() {
	local line=$1 kv
	shift
	for kv in "$@"; do expect_field "$line" "${kv%%=*}" "${kv#*=}"; done
}

# fifo_client NAME: an s_client (TLS 1.2, AES128-GCM-SHA256) to the proxy's $PX_PORT, SNI
# NAME.test, its stdin the FIFO $T/NAME.in (the caller opens it for writing; closing it
# ends the session), its output in $T/NAME.out. Sets CLI_PID.
fifo_client() {
	mkfifo "$T/$1.in"
	bg "$1" bash -c 'in=$1; shift; exec "$@" <"$in"' _ "$T/$1.in" \
		openssl s_client -connect "127.0.0.1:$PX_PORT" -servername "$1.test" -quiet -no_ign_eof -nocommands \
		-tls1_2 -cipher AES128-GCM-SHA256
	CLI_PID=$BG_PID
}

# expect_client_cert LINE AUTH: with AUTH=auth the conn line names the matrix's client
# certificate ($T/cli.crt, CN cli.test), else it says client_cert=no
expect_client_cert() {
	if [ "$2" = auth ]; then
		expect_fields "$1" client_cert=yes client_subject=/CN=cli.test "client_serial=$(cert_serial "$T/cli.crt")"
	else
		expect_fields "$1" client_cert=no
	fi
}

# check_sink DIR ID DIRECTION EXPECTED_FILE: the plaintext file holds exactly EXPECTED_FILE
# (an empty EXPECTED_FILE means: no sink file or an empty one)
check_sink() {
	local dir=$1 id=$2 d=$3 exp=$4 f n
	f="$dir/$id.$d"
	n=$(fsize "$exp")
	if [ "$n" = 0 ]; then
		[ "$(fsize "$f")" = 0 ] || fail "sink $f should be empty, has $(fsize "$f") bytes"
		return 0
	fi
	wait_size "$f" "$n" 15 || fail "sink $f has $(fsize "$f") bytes, expected $n ($exp)"
	# give a straggling write the chance to show up as extra bytes
	sleep 0.05
	cmp -s "$f" "$exp" || fail "sink $f ($(fsize "$f") bytes) differs from $exp ($n bytes): $(cmp "$f" "$exp" 2>&1 | head -n1)"
}

# check_http_sink FILE BODY FIRST-LINE-PREFIX: FILE is one HTTP message head (its first
# line starting with FIRST-LINE-PREFIX) followed by exactly the bytes of BODY
check_http_sink() {
	local f=$1 body=$2 first=$3 n total head
	n=$(fsize "$body")
	wait_size "$f" "$n" 15 || fail "sink $f has $(fsize "$f") bytes, less than the $n-byte body"
	sleep 0.05
	total=$(fsize "$f")
	head=$((total - n))
	[ "$(head -c "$head" "$f" | tail -c 4 | od -An -tx1 | tr -d ' \n')" = 0d0a0d0a ] ||
		fail "sink $f: no end of HTTP header right before the last $n bytes"
	head -n1 "$f" | grep -q "^$first" || fail "sink $f starts with '$(head -n1 "$f" | head -c 80)', expected '$first'"
	tail -c "$n" "$f" | cmp -s - "$body" || fail "sink $f: the body differs from $body"
}

# same FILE1 FILE2 WHAT: byte-identical or fail
same() {
	cmp -s "$1" "$2" || fail "$3: $1 ($(fsize "$1") bytes) differs from $2 ($(fsize "$2") bytes): $(cmp "$1" "$2" 2>&1 | head -n1)"
}

# ---- openssl s_server / s_client exchanging exact payloads -------------------
# Each side sends its payload file, then keeps its stdin open until both sides
# have received everything: s_server ends the session when its stdin ends, and
# s_client -quiet (which implies -ign_eof) ends when the server closes.
# Received bytes: $T/TAG-srv.out (s_server) and $T/TAG-cli.out (s_client).

# ossl_server TAG CFILE SFILE [s_server args...]: sets SRV_PID, SRV_PORT
ossl_server() {
	local tag=$1 cf=$2 sf=$3
	shift 3
	bg "$tag-srv" env "IN=$sf" "SO=$T/$tag-srv.out" "CO=$T/$tag-cli.out" "NC=$(fsize "$cf")" "NS=$(fsize "$sf")" \
		bash -c '"$PY" "$PEERS" feed "$IN" --until "$SO:$NC" --until "$CO:$NS" --timeout 120 |
			exec openssl s_server -accept 127.0.0.1:0 -naccept 1 -quiet "$@"' s_server "$@"
	SRV_PID=$BG_PID
	SRV_PORT=$(listen_port_of "$SRV_PID") || fail "$tag: s_server did not listen"
}

# start_relay: a TCP relay listening on RELAY_PORT whose target port (set_backend PORT; none at first)
# is read at each connection: one proxy, a backend per case
start_relay() {
	echo 0 >"$T/relay.to"
	cat >"$T/relay.py" <<'PYEOF'
import socket, sys, threading
to_file, port_file = sys.argv[1], sys.argv[2]
ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(64)
open(port_file + '.tmp', 'w').write(str(ls.getsockname()[1])); __import__('os').rename(port_file + '.tmp', port_file)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
while True:
    c, _ = ls.accept()
    s = socket.create_connection(('127.0.0.1', int(open(to_file).read())))
    threading.Thread(target=pipe, args=(c, s), daemon=True).start()
    threading.Thread(target=pipe, args=(s, c), daemon=True).start()
PYEOF
	bg relay "$PY" "$T/relay.py" "$T/relay.to" "$T/relay.port"
	wait_for 10 test -s "$T/relay.port" || fail "the relay did not start"
	RELAY_PORT=$(cat "$T/relay.port")
}
set_backend() { echo "$1" >"$T/relay.to"; }

# fwd_case TAG SERVER-ARGS... -- CLIENT-ARGS...: one session decrypted with forwarded keys, through
# PX_PORT to a fresh s_server (its port handed to set_backend: start_relay first), FWD_N random bytes each way;
# both ends get exactly the other's, the conn line says decrypted with keys=forwarded (and FWD_EXPECT's
# fields), the sinks under PT are exact. Leaves CONN and CONN_ID.
fwd_case() {
	local tag=$1 n=${FWD_N:-20000} sargs=() cargs=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do sargs+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	cargs=("$@")
	head -c "$n" /dev/urandom >"$T/$tag.c2s"
	head -c "$n" /dev/urandom >"$T/$tag.s2c"
	ossl_server "$tag" "$T/$tag.c2s" "$T/$tag.s2c" "${sargs[@]}"
	set_backend "$SRV_PORT"
	ossl_client "$tag" "$T/$tag.c2s" "$T/$tag.s2c" "$PX_PORT" -servername "$tag" "${cargs[@]}"
	ossl_wait "$tag" "$T/$tag.c2s" "$T/$tag.s2c"
	wait_for 10 has_conn_sni "$PX_LOG" "$tag" || fail "$tag: no conn line"
	CONN=$(conn_by_sni "$PX_LOG" "$tag")
	# shellcheck disable=SC2086
	expect_fields "$CONN" verdict=decrypted reason=- keys=forwarded decrypted_c2s="$n" decrypted_s2c="$n" ${FWD_EXPECT:-}
	CONN_ID=$(field "$CONN" id)
	check_sink "$PT" "$CONN_ID" c2s "$T/$tag.c2s"
	check_sink "$PT" "$CONN_ID" s2c "$T/$tag.s2c"
}

# gnutls_fwd_case TAG SERVER_PRIORITY CLIENT_PRIORITY SUITE: gnutls-serv --echo (srv.crt), its keys
# logged to $KEYLOG through SSLKEYLOGFILE, becomes the backend (set_backend); gnutls-cli
# sends 4 KiB of lines through the proxy with SNI TAG and waits for their echo. The session must be
# decrypted with the forwarded keys, in SUITE, each sink exactly the lines. Sets CONN.
gnutls_fwd_case() {
	local tag=$1 spri=$2 cpri=$3 suite=$4 in=$T/$1.in out=$T/$1-cli.out last
	head -c 3072 /dev/urandom | base64 -w 64 >"$in"
	bg "$tag-srv" env SSLKEYLOGFILE="$KEYLOG" gnutls-serv --echo -p 0 --x509certfile "$T/srv.crt" \
		--x509keyfile "$T/srv.key" --priority "$spri"
	set_backend "$(listen_port_of "$BG_PID")"
	last=$(tail -n1 "$in")
	{ cat "$in"; for _ in $(seq 100); do grep -qF -- "$last" "$out" 2>/dev/null && break; sleep 0.1; done; } |
		timeout 20 gnutls-cli --insecure -p "$PX_PORT" --sni-hostname "$tag" --priority "$cpri" 127.0.0.1 \
			>"$out" 2>"$T/$tag-cli.err" || true
	wait_for 10 has_conn_sni "$PX_LOG" "$tag" || fail "$tag: no conn line"
	CONN=$(conn_by_sni "$PX_LOG" "$tag")
	expect_fields "$CONN" verdict=decrypted reason=- keys=forwarded suite="$suite"
	check_sink "$PT" "$(field "$CONN" id)" c2s "$in"
	check_sink "$PT" "$(field "$CONN" id)" s2c "$in"
}

# ossl_client TAG CFILE SFILE PORT [s_client args...]: sets CLI_PID; OSSL_CONF, when set,
# becomes the client's OPENSSL_CONF
ossl_client() {
	local tag=$1 cf=$2 sf=$3 port=$4
	shift 4
	bg "$tag-cli" env "IN=$cf" "SO=$T/$tag-srv.out" "CO=$T/$tag-cli.out" "NC=$(fsize "$cf")" "NS=$(fsize "$sf")" \
		"CONF=${OSSL_CONF:-}" "PORT=$port" \
		bash -c '[ -z "$CONF" ] || export OPENSSL_CONF="$CONF"
			"$PY" "$PEERS" feed "$IN" --until "$SO:$NC" --until "$CO:$NS" --timeout 120 |
			exec openssl s_client -connect "127.0.0.1:$PORT" -quiet "$@"' s_client "$@"
	CLI_PID=$BG_PID
}

# ossl_wait TAG CFILE SFILE [TIMEOUT]: both ends finish; each received exactly the other's payload
ossl_wait() {
	local tag=$1 cf=$2 sf=$3 to=${4:-60}
	wait_exit "$CLI_PID" "$to" || fail "$tag: s_client did not finish (it got $(fsize "$T/$tag-cli.out") of $(fsize "$sf") bytes, s_server $(fsize "$T/$tag-srv.out") of $(fsize "$cf"))"
	wait_exit "$SRV_PID" 30 || fail "$tag: s_server did not finish (it got $(fsize "$T/$tag-srv.out") of $(fsize "$cf") bytes)"
	same "$T/$tag-srv.out" "$cf" "$tag: what s_server received"
	same "$T/$tag-cli.out" "$sf" "$tag: what s_client received"
}

# openssl_conf_no_ems FILE: an OPENSSL_CONF that disables the extended master secret
openssl_conf_no_ems() {
	cat >"$1" <<'EOF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Options = -ExtendedMasterSecret
EOF
}

# RSA key-exchange suites the proxy decrypts: OpenSSL name -> IANA name
declare -A IANA=(
	[AES128-GCM-SHA256]=TLS_RSA_WITH_AES_128_GCM_SHA256
	[AES256-GCM-SHA384]=TLS_RSA_WITH_AES_256_GCM_SHA384
	[AES128-SHA]=TLS_RSA_WITH_AES_128_CBC_SHA
	[AES256-SHA]=TLS_RSA_WITH_AES_256_CBC_SHA
	[AES128-SHA256]=TLS_RSA_WITH_AES_128_CBC_SHA256
	[AES256-SHA256]=TLS_RSA_WITH_AES_256_CBC_SHA256
)
SUITES="AES128-GCM-SHA256 AES256-GCM-SHA384 AES128-SHA AES256-SHA AES128-SHA256 AES256-SHA256"
is_cbc() { case $1 in *GCM*) return 1 ;; *) return 0 ;; esac; }

need_tool openssl python3 setsid pgrep
# the real interpreter, not a version-manager shim (those cost ~0.4 s a start)
PY=$(python3 -c 'import sys; print(sys.executable)') || skip "python3 does not run"
export PY

# ---- nginx ----------------------------------------------------------------------
# start_nginx NAME ROOT CERT KEY CIPHERS [PROTOCOLS [DIRECTIVES]]: nginx on 127.0.0.1
# serving ROOT over PROTOCOLS (default TLSv1.2) with only CIPHERS, WebDAV PUT allowed,
# DIRECTIVES (e.g. "ssl_session_tickets off;") added to the server. Sets NG_PID, NG_PORT.
start_nginx() {
	local name=$1 root=$2 crt=$3 key=$4 ciphers=$5 protocols=${6:-TLSv1.2} extra=${7:-} d="$T/$1" _try user=""
	mkdir -p "$d/tmp"
	[ "$(id -u)" = 0 ] && user="user $(id -un) $(id -gn);"
	for _try in 1 2 3 4 5; do
		NG_PORT=$(free_port)
		cat >"$d/nginx.conf" <<-NGINX
			$user
			worker_processes 1;
			daemon off;
			pid $d/nginx.pid;
			error_log $d/error.log info;
			events { worker_connections 256; }
			http {
				access_log $d/access.log;
				client_body_temp_path $d/tmp/body;
				proxy_temp_path $d/tmp/proxy;
				fastcgi_temp_path $d/tmp/fastcgi;
				uwsgi_temp_path $d/tmp/uwsgi;
				scgi_temp_path $d/tmp/scgi;
				client_max_body_size 1g;
				default_type application/octet-stream;
				sendfile on;
				server {
					listen 127.0.0.1:$NG_PORT ssl;
					ssl_certificate $crt;
					ssl_certificate_key $key;
					ssl_protocols $protocols;
					ssl_ciphers $ciphers;
					ssl_prefer_server_ciphers off;
					$extra
					root $root;
					location / {
						dav_methods PUT DELETE;
						create_full_put_path on;
						dav_access user:rw;
					}
				}
			}
		NGINX
		bg "$name" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
		NG_PID=$BG_PID
		# the listener must be our nginx's (the port was free a moment ago, but it may have been taken)
		if [ "$(listen_port_of "$NG_PID" 10 2>/dev/null)" = "$NG_PORT" ]; then
			return 0
		fi
		stop_group "$NG_PID"
		grep -q 'Address already in use' "$d/error.log" "$T/$name.err" 2>/dev/null || break
	done
	fail "nginx did not start: $(tail -n 3 "$d/error.log" "$T/$name.err" 2>/dev/null)"
}

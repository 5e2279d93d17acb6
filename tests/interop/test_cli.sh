#!/usr/bin/env bash
# The command line and the config file:
#  - --help exits 0 and names every option of the README's table (and the
#    README documents every option --help names); --version;
#  - bad invocations (unknown option, missing value, missing --cert,
#    unreadable or non-PEM certificate, a key of another certificate, an ECDSA
#    key, bad --listen/--backend, bad numbers) each print one 'proxyssl: ...'
#    line on stderr and exit 2 without listening;
#  - a port already taken: exit 1;
#  - a valid config file works (a request through it is decrypted into its
#    plaintext-dir), and command-line options override it;
#  - config errors name file:line (unknown setting, unknown section, bad value);
#  - SIGUSR1 logs the counters, SIGTERM stops with exit 0.
. "$(dirname "$0")/lib.sh"
need_tool curl
[ -n "${PROXYSSL:-}" ] && [ -x "$PROXYSSL" ] || fail "PROXYSSL is not set to an executable"
README="$PXY_HERE/../../README.md"

gen_cert srv
gen_cert two two.example
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ec.key" 2>/dev/null || fail "cannot make an EC key"
openssl req -x509 -key "$T/ec.key" -out "$T/ec.crt" -subj /CN=ec -days 3 2>/dev/null || fail "cannot make an EC certificate"
echo "not a certificate" >"$T/garbage.pem"
mkdir -p "$T/adir"

# ---- --help, --version --------------------------------------------------------------
timeout 10 "$PROXYSSL" --help >"$T/help.out" 2>"$T/help.err" || fail "--help exited $?"
[ -s "$T/help.out" ] || fail "--help printed nothing on stdout"
has_opt() { grep -Eq -- "(^|[[:space:],\`])--$2([[:space:]=,\`[]|\$)" "$1"; }
if [ -f "$README" ]; then
	readme_opts=$(grep -E '^\| `--[a-z0-9-]+' "$README" | grep -oE '`--[a-z0-9-]+' | tr -d '`' | sed 's/^--//' | sort -u)
	[ -n "$readme_opts" ] || fail "no options found in the README's table"
	for o in $readme_opts; do
		has_opt "$T/help.out" "$o" || soft_fail "--help does not mention --$o (in the README)"
	done
	for o in $(grep -oE '^ +--[a-z0-9-]+' "$T/help.out" | tr -d ' ' | sed 's/^--//' | sort -u); do
		has_opt "$README" "$o" || soft_fail "the README's options do not document --$o (in --help)"
	done
else
	readme_opts="listen backend cert key engine engine-threads keylog plaintext-dir log log-level connect-timeout max-conns buffers buffer-size max-queue max-handshake max-pending config help version"
	for o in $readme_opts; do has_opt "$T/help.out" "$o" || soft_fail "--help does not mention --$o"; done
fi
timeout 10 "$PROXYSSL" --version >"$T/version.out" 2>&1 || fail "--version exited $?"
grep -Eq '^proxyssl [0-9]+\.[0-9]+' "$T/version.out" || fail "--version printed '$(cat "$T/version.out")'"
say "--help names $(echo $readme_opts | wc -w) documented options; --version: $(cat "$T/version.out")"

# ---- bad invocations: one line on stderr, exit 2, never listening -------------------------
PORT=$(free_port)
BASE=(--listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 --cert "$T/srv.crt" --key "$T/srv.key")
# bad WHAT MUST-MATCH args...: exit 2 with one 'proxyssl: ' line matching MUST-MATCH (a grep -E pattern)
bad() {
	local what=$1 pat=$2 rc n pid
	shift 2
	: >"$T/bad.err"
	bg bad "$PROXYSSL" "$@"
	pid=$BG_PID
	# it should exit at once; if it starts listening instead, stop it
	wait_for 10 bad_done "$pid"
	if alive "$pid"; then
		stop_group "$pid"
		soft_fail "$what: proxyssl $* kept running (it should exit 2): $(grep -m1 'listening on' "$T/bad.err" | cut -d' ' -f3-)"
		return
	fi
	wait "$pid"
	rc=$?
	n=$(wc -l <"$T/bad.err")
	if [ "$rc" != 2 ]; then
		soft_fail "$what: exit status $rc, expected 2 (proxyssl $*): $(head -n2 "$T/bad.err")"
	elif [ "$n" != 1 ] || ! grep -q '^proxyssl: ' "$T/bad.err"; then
		soft_fail "$what: expected one 'proxyssl: ...' line on stderr, got $n: $(head -n3 "$T/bad.err")"
	elif ! grep -Eq -- "$pat" "$T/bad.err"; then
		soft_fail "$what: the message does not name the problem ('$pat'): $(cat "$T/bad.err")"
	elif grep -q 'listening on' "$T/bad.err" "$T/bad.out"; then
		soft_fail "$what: it listened before failing"
	else
		echo "  ok: $what -> $(cat "$T/bad.err")"
	fi
	[ ! -s "$T/bad.out" ] || soft_fail "$what: wrote to stdout: $(head -c 200 "$T/bad.out")"
}
bad_done() { ! alive "$1" || grep -q 'listening on' "$T/bad.err"; }
bad "unknown option" '--bogus' "${BASE[@]}" --bogus
bad "unknown option (first)" '--frobnicate' --frobnicate
bad "missing value" '--listen.*(value|argument)' --listen
bad "missing value (last)" '--key.*(value|argument)' --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 --cert "$T/srv.crt" --key
bad "missing --cert" '--cert' --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 --key "$T/srv.key"
bad "missing --backend" '--backend' --listen "127.0.0.1:$PORT" --cert "$T/srv.crt" --key "$T/srv.key"
bad "more certificates than keys" 'as many files' --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 \
	--cert "$T/srv.crt,$T/srv.crt" --key "$T/srv.key"
bad "the same certificate twice" 'given twice' --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 \
	--cert "$T/srv.crt,$T/srv.crt" --key "$T/srv.key,$T/srv.key"
bad "--passthrough with an unknown reason" "'finished-mismatch' is not one of" "${BASE[@]}" \
	--passthrough tls13,finished-mismatch
bad "--session-cache out of range" '--session-cache' "${BASE[@]}" --session-cache 99999999999
bad "certificate does not exist" "$T/nonexistent.crt" --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 \
	--cert "$T/nonexistent.crt" --key "$T/srv.key"
bad "certificate is a directory" "$T/adir" --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 \
	--cert "$T/adir" --key "$T/srv.key"
bad "certificate is not PEM" "garbage.pem" --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 \
	--cert "$T/garbage.pem" --key "$T/srv.key"
if [ "$(id -u)" != 0 ]; then
	cp "$T/srv.crt" "$T/noread.crt"
	chmod 000 "$T/noread.crt"
	bad "certificate unreadable (mode 000)" "noread.crt" --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 \
		--cert "$T/noread.crt" --key "$T/srv.key"
fi
bad "key does not exist" "nonexistent.key" --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 \
	--cert "$T/srv.crt" --key "$T/nonexistent.key"
bad "key is not PEM" "garbage.pem" --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 \
	--cert "$T/srv.crt" --key "$T/garbage.pem"
bad "key of another certificate" "two.key" --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 \
	--cert "$T/srv.crt" --key "$T/two.key"
bad "ECDSA key" "RSA" --listen "127.0.0.1:$PORT" --backend 127.0.0.1:1 --cert "$T/ec.crt" --key "$T/ec.key"
bad "--listen without a port" "--listen" --listen 127.0.0.1 --backend 127.0.0.1:1 --cert "$T/srv.crt" --key "$T/srv.key"
bad "--listen with an empty port" "--listen" --listen 127.0.0.1: --backend 127.0.0.1:1 --cert "$T/srv.crt" --key "$T/srv.key"
bad "--listen with a non-numeric port" "--listen" --listen 127.0.0.1:http-alt --backend 127.0.0.1:1 --cert "$T/srv.crt" --key "$T/srv.key"
bad "--listen with an unknown host" "--listen" --listen nonexistent.invalid:443 --backend 127.0.0.1:1 --cert "$T/srv.crt" --key "$T/srv.key"
bad "--listen with a port over 65535" "--listen" --listen "127.0.0.1:$((65536 + PORT))" --backend 127.0.0.1:1 --cert "$T/srv.crt" --key "$T/srv.key"
bad "--listen with port 65536" "--listen" --listen 127.0.0.1:65536 --backend 127.0.0.1:1 --cert "$T/srv.crt" --key "$T/srv.key"
bad "--backend with port 70000" "--backend" --listen "127.0.0.1:$PORT" --backend 127.0.0.1:70000 --cert "$T/srv.crt" --key "$T/srv.key"
bad "unknown engine" "--engine" "${BASE[@]}" --engine warpdrive
bad "--xclbin does not exist" "nonexistent.xclbin" "${BASE[@]}" --xclbin "$T/nonexistent.xclbin"
bad "--xclbin is not an xclbin" "not an xclbin" "${BASE[@]}" --xclbin "$T/garbage.pem"
bad "--engine-batch over the kernel's limit" "--engine-batch" "${BASE[@]}" --engine-batch 129
bad "--buffers not a power of two" "--buffers" "${BASE[@]}" --buffers 1000
bad "--connect-timeout not a number" "--connect-timeout" "${BASE[@]}" --connect-timeout soon
bad "--max-queue with a bad unit" "--max-queue" "${BASE[@]}" --max-queue 12Q
bad "--log-level unknown" "--log-level" "${BASE[@]}" --log-level chatty
bad "--config does not exist" "nonexistent.ini" --config "$T/nonexistent.ini"
is_listening "$PORT" && fail "something listens on $PORT after the failed starts"
say "bad invocations checked"

# ---- a port already taken: exit 1 --------------------------------------------------------
bg taken "$PY" -c 'import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(1); open(sys.argv[1],"w").write("%d\n" % s.getsockname()[1]); time.sleep(600)' "$T/taken.port"
wait_for 10 test -s "$T/taken.port" || fail "could not take a port"
TAKEN=$(cat "$T/taken.port")
timeout 10 "$PROXYSSL" --listen "127.0.0.1:$TAKEN" --backend 127.0.0.1:1 --cert "$T/srv.crt" --key "$T/srv.key" >"$T/taken.out" 2>"$T/taken.err"
rc=$?
[ "$rc" = 1 ] || soft_fail "listening on a taken port: exit $rc, expected 1 ($(tail -n2 "$T/taken.err"))"
grep -q "127.0.0.1:$TAKEN" "$T/taken.err" && grep -qi 'in use' "$T/taken.err" ||
	soft_fail "listening on a taken port: the error does not say so: $(tail -n2 "$T/taken.err")"
say "a taken port: exit $rc"

# ---- an engine that cannot start: one clear line, exit 1, never listening ----------------
# no card here: xrt refuses without XRT's environment, and emu with a hardware xclbin
engine_fails() {
	local what=$1 pat=$2 rc
	shift 2
	env -u XILINX_XRT timeout 20 "$PROXYSSL" "${BASE[@]}" "$@" >"$T/eng.out" 2>"$T/eng.err"
	rc=$?
	[ "$rc" = 1 ] || fail "$what: exit $rc, expected 1 ($(tail -n2 "$T/eng.err"))"
	grep -q "cannot start engine" "$T/eng.err" && grep -Eq -- "$pat" "$T/eng.err" ||
		fail "$what: the error does not say why: $(tail -n2 "$T/eng.err")"
	grep -q ' listening on ' "$T/eng.err" && fail "$what: it listened"
	say "  ok: $what -> $(grep 'cannot start engine' "$T/eng.err" | sed 's/.*ERROR //')"
}
engine_fails "--engine xrt without a card" "XILINX_XRT" --engine xrt --xclbin "${PXY_EMU_XCLBIN:?}"
engine_fails "--engine xrt without --xclbin" "--xclbin" --engine xrt
cp "${PXY_EMU_XCLBIN:?}" "$T/hw.xclbin"
"$PY" - "$T/hw.xclbin" <<'PYEOF'
import struct, sys
# turn the emulation xclbin into one that claims a hardware BITSTREAM: the first
# section's payload loses its ELF magic
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack_from("<I", b, 304 + 144)[0]
for i in range(n):
    kind, = struct.unpack_from("<I", b, 456 + 40 * i)
    if kind == 0:
        off, = struct.unpack_from("<Q", b, 456 + 40 * i + 24)
        b[off:off + 4] = b"XLNX"
open(p, "wb").write(b)
PYEOF
engine_fails "--engine emu with a hardware xclbin" "hardware xclbin" --engine emu --xclbin "$T/hw.xclbin"
is_listening "$PORT" && fail "something listens on $PORT after the failed engine starts"

# ---- a config file --------------------------------------------------------------------------
bg www openssl s_server -accept 127.0.0.1:0 -cert "$T/srv.crt" -key "$T/srv.key" -www -no_tls1_3 -cipher AES128-GCM-SHA256
WWW=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
bg hold "$PY" "$PEERS" hold-port --port-file "$T/hold.port"
wait_for 10 test -s "$T/hold.port" || fail "hold-port did not start"
HOLD=$(cat "$T/hold.port")

cat >"$T/good.ini" <<EOF
# a comment
; another comment

[proxy]
listen = 127.0.0.1:0
backend = 127.0.0.1:$WWW
cert = $T/srv.crt
key = $T/srv.key
plaintext-dir = $T/pt-config
keylog = $T/keylog-config
max-queue = 512K
engine = emu
engine-threads = 1
EOF
# through_proxy NAME SNI: one HTTPS request through the proxy started as NAME (log $T/NAME.log)
through_proxy() {
	local log="$T/$1.log" port
	wait_for 20 grep -qs ' listening on ' "$log" || fail "$1: the proxy did not start: $(cat "$T/$1.err" "$log" 2>/dev/null | tail -n3)"
	port=$(sed -n 's/.* listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$log" | head -n1)
	curl -sS -k -i --tls-max 1.2 --ciphers AES128-GCM-SHA256 --max-time 20 --resolve "$2:$port:127.0.0.1" \
		-o "$T/$2.html" "https://$2:$port/" 2>"$T/$2.curl-err" || fail "$1: curl failed: $(cat "$T/$2.curl-err")"
	get_conn "$log" "$2"
}
bg cfg "$PROXYSSL" --config "$T/good.ini" --log "$T/cfg.log"
CFG_PID=$BG_PID
through_proxy cfg cfg.test
expect_fields "$CONN" verdict=decrypted server="127.0.0.1:$WWW"
check_sink "$T/pt-config" "$CONN_ID" s2c "$T/cfg.test.html"
wait_for 10 grep -q '^CLIENT_RANDOM ' "$T/keylog-config" || fail "config: keylog from the file not written"

# SIGUSR1: the counters; SIGTERM: exit 0
kill -USR1 "$CFG_PID"
wait_for 10 grep -q ' stats connections accepted=1 ' "$T/cfg.log" || fail "SIGUSR1: no 'stats connections accepted=1' line"
for k in 'stats bytes ' 'stats tls keys_verified=1 ' 'stats engine name=emu '; do
	grep -q " $k" "$T/cfg.log" || fail "SIGUSR1: no '$k' line"
done
kill -TERM "$CFG_PID"
wait_exit "$CFG_PID" 10 || fail "SIGTERM: the proxy did not stop"
[ "$EXIT_CODE" = 0 ] || fail "SIGTERM: exit status $EXIT_CODE, expected 0"
say "config file: works (decrypted into its plaintext-dir); SIGUSR1 stats; SIGTERM exit 0"

# the command line overrides the file: a file whose backend refuses, a CLI backend that works,
# and a CLI plaintext-dir
sed -e "s|^backend = .*|backend = 127.0.0.1:$HOLD|" "$T/good.ini" >"$T/override.ini"
bg ovr "$PROXYSSL" --config "$T/override.ini" --backend "127.0.0.1:$WWW" --plaintext-dir "$T/pt-cli" --log "$T/ovr.log"
through_proxy ovr ovr.test
expect_fields "$CONN" verdict=decrypted server="127.0.0.1:$WWW"
check_sink "$T/pt-cli" "$CONN_ID" s2c "$T/ovr.test.html"
[ ! -e "$T/pt-config/$CONN_ID.s2c" ] || fail "override: the sink went to the config file's plaintext-dir"
grep -q "backend 127.0.0.1:$WWW" "$T/ovr.log" || fail "override: the start line does not show the CLI backend"
# the same with --backend given before --config: the command line still wins
bg ovr2 "$PROXYSSL" --backend "127.0.0.1:$WWW" --config "$T/override.ini" --log "$T/ovr2.log"
through_proxy ovr2 ovr2.test
say "command-line options override the config file (in either order)"

# ---- config errors name file:line ------------------------------------------------------------------
# cfg_bad WHAT LINE PATTERN: exit 2, one line naming FILE:LINE and matching PATTERN
cfg_bad() {
	local what=$1 line=$2 pat=$3 f="$T/bad-$4.ini" rc pid
	: >"$T/cfg-bad.err"
	bg cfg-bad "$PROXYSSL" --config "$f"
	pid=$BG_PID
	wait_for 10 cfg_bad_done "$pid"
	if alive "$pid"; then
		stop_group "$pid"
		soft_fail "config $what: proxyssl kept running (it should exit 2)"
		return
	fi
	wait "$pid"
	rc=$?
	if [ "$rc" != 2 ]; then
		soft_fail "config $what: exit $rc, expected 2: $(head -n2 "$T/cfg-bad.err")"
	elif [ "$(wc -l <"$T/cfg-bad.err")" != 1 ] || ! grep -q "^proxyssl: $f:$line: " "$T/cfg-bad.err"; then
		soft_fail "config $what: expected one 'proxyssl: $f:$line: ...' line, got: $(head -n3 "$T/cfg-bad.err")"
	elif ! grep -Eq -- "$pat" "$T/cfg-bad.err"; then
		soft_fail "config $what: the message does not name the problem ('$pat'): $(cat "$T/cfg-bad.err")"
	else
		echo "  ok: config $what -> $(cat "$T/cfg-bad.err")"
	fi
}
cfg_bad_done() { ! alive "$1" || grep -q 'listening on' "$T/cfg-bad.err"; }
printf '[proxy]\nlisten = 127.0.0.1:0\nlisten-backlog = 10\nbackend = 127.0.0.1:1\n' >"$T/bad-key.ini"
cfg_bad "unknown setting" 3 "listen-backlog" key
printf '# comment\n[proxy]\nlisten = 127.0.0.1:0\n\n[server]\nbackend = 127.0.0.1:1\n' >"$T/bad-section.ini"
cfg_bad "unknown section" 6 "server" section
# bad values: out of range, and ones only checked after reading (power of two, address, level)
cfg_val() {
	printf '[proxy]\nlisten = 127.0.0.1:0\nbackend = 127.0.0.1:1\ncert = %s\nkey = %s\n%s\n' "$T/srv.crt" "$T/srv.key" "$2" >"$T/bad-$1.ini"
}
cfg_val range "buffers = 5"
cfg_bad "value out of range" 6 "buffers" range
cfg_val pow2 "buffers = 1000"
cfg_bad "buffers not a power of two" 6 "buffers" pow2
cfg_val level "log-level = chatty"
cfg_bad "unknown log level" 6 "log-level|chatty" level
sed -e 's|^listen = .*|listen = 127.0.0.1|' "$T/bad-range.ini" | grep -v '^buffers' >"$T/bad-addr.ini"
cfg_bad "listen address without a port" 2 "listen" addr
printf '[proxy]\nlisten = 127.0.0.1:0\nthis line is not a setting\n' >"$T/bad-syntax.ini"
cfg_bad "syntax error" 3 "." syntax
say "config errors name file:line"

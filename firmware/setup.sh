#!/usr/bin/env bash
# proxyssl setup: install dependencies, build, choose the engine, and
# optionally run the proxy (with a local demo backend when none is given).
#
#   firmware/setup.sh                      install deps (apt-get) and build
#   firmware/setup.sh --run [OPTIONS...]   ... then run proxyssl with OPTIONS
#   firmware/setup.sh --no-deps --run      skip apt-get (dependencies present)
#
# With --run and no --backend among the options, a demo backend is started:
# `openssl s_server -www` on 127.0.0.1:4433 with a freshly generated RSA-2048
# certificate (RSA key exchange only), the proxy listens on 127.0.0.1:8443,
# one request is sent through it, and its decrypted bytes are printed.
# The proxy then keeps running in the foreground until Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
deps=1
run=0
proxy_args=()

while [ $# -gt 0 ]; do
	case "$1" in
	--no-deps) deps=0 ;;
	--build-dir) build=$2; shift ;;
	--run) run=1; shift; proxy_args=("$@"); break ;;
	-h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# ---- dependencies (Debian packages) ---------------------------------------
packages=(build-essential cmake pkg-config libssl-dev liburing-dev libinih-dev libcmocka-dev openssl curl)
if [ "$deps" = 1 ]; then
	missing=()
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		sudo=""
		if [ "$(id -u)" != 0 ]; then
			command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
			sudo=sudo
		fi
		say "installing ${missing[*]}"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		say "dependencies present"
	fi
fi

# ---- build ----------------------------------------------------------------------
say "building in $build"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target proxyssl >/dev/null
proxyssl="$build/proxyssl"
[ -x "$proxyssl" ] || die "build produced no $proxyssl"

# ---- engine -----------------------------------------------------------------------
# This build has the OpenSSL engine only; it is what --engine defaults to.
say "engine: cpu (OpenSSL on worker threads)"

[ "$run" = 1 ] || { say "done: $proxyssl (run with --help for options)"; exit 0; }

# ---- run ------------------------------------------------------------------------
has_opt() { local o; for o in "${proxy_args[@]+"${proxy_args[@]}"}"; do case "$o" in "$1"|"$1"=*) return 0 ;; esac; done; return 1; }

# wait (5 s at most) until something listens on 127.0.0.1:PORT, without connecting to it
wait_listen() {
	local hex; hex=$(printf '%04X' "$1")
	for _ in $(seq 50); do
		grep -q ":$hex 00000000:0000 0A" /proc/net/tcp 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

pids=()
cleanup() { for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if has_opt --backend; then
	exec "$proxyssl" "${proxy_args[@]}"
fi

demo="$build/demo"
mkdir -p "$demo/plaintext"
if [ ! -s "$demo/server.key" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$demo/server.key" -out "$demo/server.crt" \
		-subj "/CN=proxyssl-demo" -days 365 2>/dev/null || die "cannot generate the demo certificate"
fi
say "demo backend: openssl s_server -www on 127.0.0.1:4433 (RSA key exchange, TLS 1.2)"
(cd "$demo" && exec openssl s_server -accept 127.0.0.1:4433 -cert server.crt -key server.key -www -quiet \
	-no_tls1_3 -cipher 'AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA' \
	>"$demo/backend.log" 2>&1) &
pids+=($!)
wait_listen 4433 || die "the demo backend did not start (see $demo/backend.log)"

args=(--backend 127.0.0.1:4433 --cert "$demo/server.crt" --key "$demo/server.key")
has_opt --listen || args+=(--listen 127.0.0.1:8443)
has_opt --plaintext-dir || args+=(--plaintext-dir "$demo/plaintext")
has_opt --keylog || args+=(--keylog "$demo/keys.log")
listen=127.0.0.1:8443
for ((i = 0; i < ${#proxy_args[@]}; i++)); do
	case "${proxy_args[$i]}" in --listen) listen=${proxy_args[$((i + 1))]} ;; --listen=*) listen=${proxy_args[$i]#--listen=} ;; esac
done
say "proxyssl: ${args[*]} ${proxy_args[*]+"${proxy_args[*]}"}"
"$proxyssl" "${args[@]}" "${proxy_args[@]+"${proxy_args[@]}"}" &
pids+=($!)
wait_listen "${listen##*:}" || die "proxyssl did not start listening on $listen"

say "sending one request through the proxy: curl -k https://$listen/"
curl -sk --max-time 10 "https://$listen/" -o /dev/null || say "the demo request failed (see the log above)"
sleep 0.5
latest=$(ls -t "$demo/plaintext"/*.c2s 2>/dev/null | head -1 || true)
if [ -n "$latest" ]; then
	say "decrypted client->server bytes ($latest):"
	sed 's/^/    /' "$latest"
	say "decrypted server->client bytes (${latest%.c2s}.s2c), first lines:"
	head -n 12 "${latest%.c2s}.s2c" | sed 's/^/    /'
	say "key log for Wireshark: $demo/keys.log"
fi
say "proxyssl is running on $listen; try: curl -k https://$listen/   (Ctrl-C stops)"
wait "${pids[1]}"

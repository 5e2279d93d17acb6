#!/usr/bin/env bash
# proxyssl setup: install dependencies, build, choose the engine (an Alveo
# card if one is present and a matching xclbin exists, else the emulated
# kernels), and optionally run the proxy (with a local demo backend when none
# is given).
#
#   firmware/setup.sh [SETUP OPTIONS] [--run [PROXYSSL OPTIONS...]]
#
# Setup options (before --run; everything after --run goes to proxyssl):
#   --no-deps         skip installing Debian packages (apt-get)
#   --no-build        skip the build; use what the build directory holds
#   --build-dir DIR   build directory (default: build/ at the top of the tree)
#   --emu             use the emulated kernels even when a card is present
#   --device BDF      the card to use, as xbutil shows it (0000:3b:00.1 or 3b:00.1);
#                     default: the first card
#   --xclbin FILE     the card's xclbin (default: the firmware/build/hw.*/proxyssl.xclbin
#                     linked for the card's shell; make -C firmware CARD=u250|u55c builds it)
#   --detect-only     only choose the engine (implies --no-deps --no-build): print why on
#                     a "setup:" line and the proxyssl engine options on the last line
#   -h, --help        this text
#
# Engine choice: when XRT is installed (/opt/xilinx/xrt/setup.sh) and
# `xbutil examine` lists a card, the xclbin's platform must match the card's
# shell; the card is then validated (xbutil validate --run quick), programmed
# (xbutil program --user XCLBIN) and the proxy runs with --engine xrt. A card
# without a matching xclbin, or one that fails validation or programming, is
# an error (use --emu to run without it). Without XRT or a card: --engine emu
# with this build's emulation xclbin. --run passes the choice on to proxyssl
# unless its options name --engine themselves.
#
# With --run and no --backend among the options, a demo backend is started:
# `openssl s_server -www` on 127.0.0.1:4433 with a freshly generated RSA-2048
# certificate (RSA key exchange only), the proxy listens on 127.0.0.1:8443,
# one request is sent through it, and its decrypted bytes are printed.
# The proxy then keeps running in the foreground until Ctrl-C.
#
# Environment: PXY_XRT_SETUP (XRT's setup script, default
# /opt/xilinx/xrt/setup.sh), PXY_FW_BUILD (where to look for hw xclbins,
# default firmware/build).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
deps=1
do_build=1
detect_only=0
force_emu=0
want_bdf=""
want_xclbin=""
run=0
proxy_args=()

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--no-deps) deps=0 ;;
	--no-build) do_build=0 ;;
	--build-dir) [ $# -ge 2 ] || { echo "setup.sh: --build-dir needs a directory" >&2; exit 2; }; build=$2; shift ;;
	--emu) force_emu=1 ;;
	--device) [ $# -ge 2 ] || { echo "setup.sh: --device needs a BDF" >&2; exit 2; }; want_bdf=$2; shift ;;
	--xclbin) [ $# -ge 2 ] || { echo "setup.sh: --xclbin needs a file" >&2; exit 2; }; want_xclbin=$2; shift ;;
	--detect-only) detect_only=1; deps=0; do_build=0 ;;
	--run) run=1; shift; proxy_args=("$@"); break ;;
	-h|--help) usage; exit 0 ;;
	*) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

if [ -t 1 ]; then
	say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
else
	say() { printf 'setup: %s\n' "$*"; }
fi
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# ---- dependencies (Debian packages) ---------------------------------------
# clang: the kernels' emulation library and kernel-lint; python3: kernel-lint and
# the firmware checks; libxml2-dev: the device layer reads xclbin metadata;
# libjson-c-dev: the JSON connection log; libhiredis-dev: the shared session cache (Redis).
packages=(build-essential cmake pkg-config libssl-dev liburing-dev libinih-dev libcmocka-dev openssl curl
	clang python3 libxml2-dev libjson-c-dev libhiredis-dev)
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
proxyssl="$build/proxyssl"
xclbin_tool="$build/firmware/pxy-xclbin"
emu_xclbin="$build/firmware/proxyssl_emu.xclbin"
if [ "$do_build" = 1 ]; then
	say "building in $build"
	cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
	cmake --build "$build" -j"$(nproc)" --target proxyssl emu-xclbin pxy-xclbin >/dev/null
fi
if [ "$run" = 1 ]; then
	[ -x "$proxyssl" ] || die "no $proxyssl (build it, or drop --no-build)"
fi

# ---- engine -----------------------------------------------------------------------
engine_args=()
why=""

use_emu() {
	[ -s "$emu_xclbin" ] || die "no emulation xclbin at $emu_xclbin (build the emu-xclbin target, or drop --no-build)"
	engine_args=(--engine emu --xclbin "$emu_xclbin")
	why="engine emu: $1; kernels emulated in software from $emu_xclbin"
}

# A platform and the shell it loads onto a card are spelled differently:
#   xilinx_u250_gen3x16_xdma_4_1_202210_1 (platform)  xilinx_u250_gen3x16_xdma_shell_4_1 (shell)
#   xilinx_u55c_gen3x16_xdma_3_202210_1   (platform)  xilinx_u55c_gen3x16_xdma_base_3   (shell)
# Both reduce to the same key; older platforms carry one name for both.
vbnv_key() { printf '%s\n' "$1" | tr '[:upper:]' '[:lower:]' | sed -E 's/_(shell|base)_/_/; s/_[0-9]{6}_[0-9]+$//'; }

# the CARD= value of firmware/Makefile for a shell, or empty
card_of() { case "$1" in *_u250_*) echo u250 ;; *_u55c_*) echo u55c ;; esac; }

# "BDF SHELL" for every card of `xbutil examine`'s device table, in XRT's device order:
#   [0000:3b:00.1]  :  xilinx_u250_gen3x16_xdma_shell_4_1  <uuid>  user(inst=128)  Yes
list_cards() {
	awk '/^Devices present/ { on = 1; next }
	     on && match($0, /^[ \t]*\[[0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.[0-7]\]/) {
		bdf = substr($0, RSTART, RLENGTH); sub(/^[ \t]*\[/, "", bdf); sub(/\]$/, "", bdf)
		rest = substr($0, RSTART + RLENGTH); sub(/^[ \t]*:[ \t]*/, "", rest); split(rest, f, /[ \t]+/)
		print tolower(bdf), f[1] }'
}

norm_bdf() {
	local b; b=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
	case "$b" in
	????:??:??.?) echo "$b" ;;
	??:??.?) echo "0000:$b" ;;
	*) echo "$b" ;;
	esac
}

# the value of KEY in `pxy-xclbin --info FILE`
xclbin_field() { "$xclbin_tool" --info "$1" 2>/dev/null | sed -n "s/^$2: //p" | head -n 1; }

select_engine() {
	local xrt_setup=${PXY_XRT_SETUP:-/opt/xilinx/xrt/setup.sh}
	local report cards bdf="" shell="" index=0 i=0 b s f key xclbin="" vbnv mode out tried=()

	if [ "$force_emu" = 1 ]; then
		use_emu "--emu given"
		return
	fi
	if [ ! -f "$xrt_setup" ]; then
		[ -z "$want_bdf$want_xclbin" ] || die "--device/--xclbin name a card, but XRT is not installed ($xrt_setup); use --emu"
		use_emu "no XRT installation ($xrt_setup)"
		return
	fi
	# XRT's script reads variables that may be unset, and talks
	set +u
	# shellcheck disable=SC1090
	if ! source "$xrt_setup" >/dev/null 2>&1; then
		set -u
		[ -z "$want_bdf$want_xclbin" ] || die "--device/--xclbin name a card, but $xrt_setup failed"
		use_emu "sourcing $xrt_setup failed"
		return
	fi
	set -u
	if ! command -v xbutil >/dev/null 2>&1; then
		[ -z "$want_bdf$want_xclbin" ] || die "--device/--xclbin name a card, but XRT has no xbutil"
		use_emu "XRT ($xrt_setup) has no xbutil"
		return
	fi
	report=$(xbutil examine 2>&1) || {
		[ -z "$want_bdf$want_xclbin" ] || die "xbutil examine failed: $(printf '%s\n' "$report" | head -n 3)"
		use_emu "xbutil examine failed ($(printf '%s\n' "$report" | head -n 1))"
		return
	}
	cards=$(printf '%s\n' "$report" | list_cards)
	if [ -z "$cards" ]; then
		[ -z "$want_bdf$want_xclbin" ] || die "--device/--xclbin name a card, but xbutil examine lists none"
		use_emu "XRT is installed but xbutil examine lists no card"
		return
	fi
	# the card: --device, else the first; its position is XRT's device index
	while read -r b s; do
		if [ -z "$want_bdf" ] || [ "$b" = "$(norm_bdf "$want_bdf")" ]; then
			bdf=$b shell=$s index=$i
			break
		fi
		i=$((i + 1))
	done <<<"$cards"
	[ -n "$bdf" ] || die "no card $want_bdf; xbutil examine lists: $(printf '%s' "$cards" | tr '\n' ';' | sed 's/;/; /g')"
	key=$(vbnv_key "$shell")

	[ -x "$xclbin_tool" ] || die "no $xclbin_tool to read xclbins with (build the pxy-xclbin target, or drop --no-build)"
	if [ -n "$want_xclbin" ]; then
		[ -f "$want_xclbin" ] || die "--xclbin $want_xclbin: no such file"
		vbnv=$(xclbin_field "$want_xclbin" platform)
		[ -n "$vbnv" ] || die "--xclbin $want_xclbin: not an xclbin ($("$xclbin_tool" --info "$want_xclbin" 2>&1 >/dev/null | head -n 1))"
		if [ "$(vbnv_key "$vbnv")" != "$key" ]; then
			local c; c=$(card_of "$shell")
			die "$want_xclbin was linked for $vbnv, but card $bdf runs shell $shell. Build one for it with Vitis: make -C firmware ${c:+CARD=$c }TARGET=hw, or run without the card: --emu"
		fi
		xclbin=$want_xclbin
	else
		local fw_build=${PXY_FW_BUILD:-$here/firmware/build}
		# newest first
		while IFS= read -r f; do
			vbnv=$(xclbin_field "$f" platform)
			if [ -n "$vbnv" ] && [ "$(vbnv_key "$vbnv")" = "$key" ]; then
				xclbin=$f
				break
			fi
			tried+=("$f for ${vbnv:-an unreadable platform}")
		done < <(ls -t "$fw_build"/hw.*/proxyssl.xclbin 2>/dev/null || true)
		if [ -z "$xclbin" ]; then
			local c; c=$(card_of "$shell")
			die "card $bdf runs shell $shell, and no xclbin in $fw_build/hw.*/ was linked for it${tried[0]+ (found: ${tried[*]})}. Build one with Vitis: make -C firmware ${c:+CARD=$c }TARGET=hw, or give --xclbin FILE, or run without the card: --emu"
		fi
	fi
	mode=$(xclbin_field "$xclbin" mode)
	case "$mode" in
	flat|pr|tandem-stage2|tandem-stage2-pr) ;;
	*) die "$xclbin is a $mode xclbin, not one for a card (link it with TARGET=hw)" ;;
	esac

	# validate first: its tests load the platform's own test xclbins onto the card
	if ! out=$(xbutil validate --device "$bdf" --run quick --batch 2>&1); then
		printf '%s\n' "$out" | sed 's/^/    /' >&2
		die "card $bdf failed validation (xbutil validate --device $bdf --run quick, output above); check it with xbutil examine --device $bdf, or run without it: --emu"
	fi
	if ! out=$(xbutil program --device "$bdf" --user "$xclbin" 2>&1); then
		printf '%s\n' "$out" | sed 's/^/    /' >&2
		die "programming card $bdf with $xclbin failed (xbutil program, output above); rebuild it for shell $shell, or run without the card: --emu"
	fi
	engine_args=(--engine xrt --xclbin "$xclbin" --device "$index")
	why="engine xrt: card $bdf (XRT device $index, shell $shell) validated and programmed with $xclbin"
}

select_engine
say "$why"
if [ "$detect_only" = 1 ]; then
	printf '%s\n' "${engine_args[*]}"
	exit 0
fi

[ "$run" = 1 ] || { say "done: $proxyssl ${engine_args[*]} ... (run with --help for options)"; exit 0; }

# ---- run ------------------------------------------------------------------------
has_opt() { local o; for o in "${proxy_args[@]+"${proxy_args[@]}"}"; do case "$o" in "$1"|"$1"=*) return 0 ;; esac; done; return 1; }

# the engine choice, unless the proxy's own options make it
run_engine=()
if ! has_opt --engine; then
	for ((i = 0; i < ${#engine_args[@]}; i += 2)); do
		has_opt "${engine_args[$i]}" || run_engine+=("${engine_args[$i]}" "${engine_args[$((i + 1))]}")
	done
fi

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
	exec "$proxyssl" "${run_engine[@]+"${run_engine[@]}"}" "${proxy_args[@]}"
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
args+=("${run_engine[@]+"${run_engine[@]}"}")
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

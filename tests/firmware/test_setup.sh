#!/usr/bin/env bash
# firmware/setup.sh --detect-only without a card: a fake XRT (its setup script
# through PXY_XRT_SETUP, putting a fake xbutil on PATH) and xclbins written by
# pxy-xclbin for chosen platforms. The fake xbutil logs every call and prints
# the device table of XRT 2022.x's `xbutil examine`.
#
#   test_setup.sh PXY_XCLBIN     (the built pxy-xclbin)
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
setup="$root/firmware/setup.sh"
tool=${1:-}
[ -n "$tool" ] && [ -x "$tool" ] || { echo "test_setup: needs the pxy-xclbin binary as argument"; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# a build directory holding what --detect-only reads
build="$tmp/build"
mkdir -p "$build/firmware" "$tmp/bin" "$tmp/fw"
ln -s "$(cd "$(dirname "$tool")" && pwd)/$(basename "$tool")" "$build/firmware/pxy-xclbin"
emu="$build/firmware/proxyssl_emu.xclbin"
"$tool" --kernels /dev/null --out "$emu" >/dev/null || { echo "test_setup: pxy-xclbin cannot write"; exit 1; }

# hw xclbins as v++ would leave them under firmware/build/hw.<platform>/
U250_PF=xilinx_u250_gen3x16_xdma_4_1_202210_1
U55C_PF=xilinx_u55c_gen3x16_xdma_3_202210_1
U250_SHELL=xilinx_u250_gen3x16_xdma_shell_4_1
U55C_SHELL=xilinx_u55c_gen3x16_xdma_base_3
mkhw() { # DIR PLATFORM-VBNV [extra pxy-xclbin options]
	mkdir -p "$1"
	"$tool" --kernels /dev/null --out "$1/proxyssl.xclbin" --platform "$2" --rsa-cus 6 --rec-cus 2 "${@:3}" >/dev/null
}

# the fake XRT
cat >"$tmp/bin/xbutil" <<'EOF'
#!/bin/sh
echo "xbutil $*" >>"$FAKE_LOG"
case "$1" in
examine) cat "$FAKE_EXAMINE" ;;
validate) echo "Validation failed"; exit "${FAKE_VALIDATE_RC:-0}" ;;
program) exit "${FAKE_PROGRAM_RC:-0}" ;;
*) exit 2 ;;
esac
EOF
chmod +x "$tmp/bin/xbutil"
printf 'export XILINX_XRT=/opt/xilinx/xrt\nexport PATH=%s:$PATH\necho "XILINX_XRT      : $XILINX_XRT"\n' \
	"$tmp/bin" >"$tmp/xrt_setup.sh"

examine() { # BDF SHELL ... -> an `xbutil examine` host report listing those cards
	cat <<'EOF'
System Configuration
  OS Name              : Linux
  Release              : 5.15.0-56-generic
  Machine              : x86_64

XRT
  Version              : 2.14.354
  Branch               : 2022.2
  XOCL                 : 2.14.354, 3d6bbd8d9e2d8e5f2e4b7a1f2b2d6a1a9f0e3c2b
  XCLMGMT              : 2.14.354, 3d6bbd8d9e2d8e5f2e4b7a1f2b2d6a1a9f0e3c2b

Devices present
EOF
	if [ $# -eq 0 ]; then
		echo "  0 devices found"
		return
	fi
	echo "BDF             :  Shell                               Platform UUID                         Device ID       Device Ready*"
	echo "-------------------------------------------------------------------------------------------------------------------------"
	local n=128
	while [ $# -ge 2 ]; do
		printf '[%s]  :  %-34s  97088961-FEAE-DA91-52A2-1D9DFD63CCEF  user(inst=%d)  Yes\n\n' "$1" "$2" $n
		n=$((n + 1))
		shift 2
	done
	echo "* Devices that are not ready will have reduced functionality when using XRT tools"
}

# run setup.sh --detect-only; sets $rc, $out (stdout+stderr), $args (last stdout line), $log (xbutil calls)
detect() {
	: >"$tmp/log"
	out=$(FAKE_LOG="$tmp/log" FAKE_EXAMINE="$tmp/examine" PXY_FW_BUILD="$tmp/fw" PATH="$tmp/bin:$PATH" \
		bash "$setup" --detect-only --build-dir "$build" "$@" 2>"$tmp/err")
	rc=$?
	args=$(printf '%s\n' "$out" | tail -n 1)
	out="$out
$(cat "$tmp/err")"
	log=$(cat "$tmp/log")
}

check() { # NAME CONDITION...
	local name=$1
	shift
	if "$@"; then
		echo "ok   $name"
	else
		echo "FAIL $name"
		printf '     exit %s\n     output: %s\n     xbutil calls: %s\n' "$rc" "$(printf '%s' "$out" | sed '2,$s/^/             /')" \
			"$(printf '%s' "$log" | sed '2,$s/^/                   /')"
		fails=$((fails + 1))
	fi
}
has() { printf '%s\n' "$1" | grep -qF -- "$2"; }
hasnt() { ! has "$1" "$2"; }

# ---- no XRT: emulation, and xbutil is never asked ----------------------------------
export PXY_XRT_SETUP="$tmp/no-such-xrt/setup.sh"
examine 0000:3b:00.1 "$U250_SHELL" >"$tmp/examine"
detect
check "no XRT: emu" test "$rc" = 0
check "no XRT: emu args" test "$args" = "--engine emu --xclbin $emu"
check "no XRT: says why" has "$out" "setup: engine emu: no XRT installation"
check "no XRT: xbutil untouched" test -z "$log"
detect --device 3b:00.1
check "no XRT but --device: error" test "$rc" != 0
check "no XRT but --device: says so" has "$out" "XRT is not installed"

# ---- XRT installed, no card -------------------------------------------------------
export PXY_XRT_SETUP="$tmp/xrt_setup.sh"
examine >"$tmp/examine"
detect
check "no card: emu" test "$args" = "--engine emu --xclbin $emu"
check "no card: says why" has "$out" "lists no card"

# ---- a U250 and a matching xclbin: validated, programmed, xrt ----------------------------
examine 0000:3b:00.1 "$U250_SHELL" >"$tmp/examine"
mkhw "$tmp/fw/hw.$U55C_PF" "$U55C_PF"
mkhw "$tmp/fw/hw.$U250_PF" "$U250_PF"
hw250="$tmp/fw/hw.$U250_PF/proxyssl.xclbin"
detect
check "card + xclbin: ok" test "$rc" = 0
check "card + xclbin: xrt args" test "$args" = "--engine xrt --xclbin $hw250 --device 0"
check "card + xclbin: examined" has "$log" "xbutil examine"
check "card + xclbin: validated" has "$log" "xbutil validate --device 0000:3b:00.1 --run quick"
check "card + xclbin: programmed" has "$log" "xbutil program --device 0000:3b:00.1 --user $hw250"
check "card + xclbin: validate before program" test "$(printf '%s\n' "$log" | sed -n 's/^xbutil \([a-z]*\).*/\1/p' | tr '\n' ' ')" = "examine validate program "
check "card + xclbin: says why" has "$out" "setup: engine xrt: card 0000:3b:00.1"
# the xclbin header may carry the shell's name rather than the platform's
mkhw "$tmp/fw/hw.$U250_PF" "$U250_SHELL"
detect
check "shell-named xclbin: xrt" test "$args" = "--engine xrt --xclbin $hw250 --device 0"

# ---- --emu wins over a card --------------------------------------------------------
detect --emu
check "--emu: emu args" test "$args" = "--engine emu --xclbin $emu"
check "--emu: xbutil untouched" test -z "$log"

# ---- a U250 but only a U55C xclbin -------------------------------------------------------
rm -r "$tmp/fw/hw.$U250_PF"
detect
check "other platform: error" test "$rc" != 0
check "other platform: names the shell" has "$out" "runs shell $U250_SHELL"
check "other platform: lists what it found" has "$out" "for $U55C_PF"
check "other platform: says how to build" has "$out" "make -C firmware CARD=u250"
check "other platform: suggests --emu" has "$out" "--emu"
check "other platform: not programmed" hasnt "$log" "xbutil program"
check "other platform: no engine args" hasnt "$args" "--engine"
detect --xclbin "$tmp/fw/hw.$U55C_PF/proxyssl.xclbin"
check "--xclbin for another platform: error" test "$rc" != 0
check "--xclbin for another platform: says so" has "$out" "was linked for $U55C_PF, but card 0000:3b:00.1 runs shell $U250_SHELL"
rm -r "$tmp/fw/hw.$U55C_PF"
detect
check "no xclbin at all: error" test "$rc" != 0
check "no xclbin at all: says how to build" has "$out" "make -C firmware CARD=u250 TARGET=hw"

# ---- validation or programming fails ----------------------------------------------
mkhw "$tmp/fw/hw.$U250_PF" "$U250_PF"
FAKE_VALIDATE_RC=1 detect
check "validate fails: error" test "$rc" != 0
check "validate fails: says so" has "$out" "card 0000:3b:00.1 failed validation"
check "validate fails: shows xbutil's output" has "$out" "Validation failed"
check "validate fails: not programmed" hasnt "$log" "xbutil program"
FAKE_PROGRAM_RC=1 detect
check "program fails: error" test "$rc" != 0
check "program fails: says so" has "$out" "programming card 0000:3b:00.1"

# ---- an emulation xclbin is not for a card -------------------------------------------
mkhw "$tmp/emu-named" "$U250_PF" --mode sw_emu
detect --xclbin "$tmp/emu-named/proxyssl.xclbin"
check "sw_emu xclbin for a card: error" test "$rc" != 0
check "sw_emu xclbin for a card: says so" has "$out" "is a sw_emu xclbin"

# ---- two cards: --device picks one, by its short BDF; its index goes to the proxy ----------
examine 0000:3b:00.1 "$U250_SHELL" 0000:d8:00.1 "$U55C_SHELL" >"$tmp/examine"
mkhw "$tmp/fw/hw.$U55C_PF" "$U55C_PF"
detect --device D8:00.1
check "--device: ok" test "$rc" = 0
check "--device: the U55C, index 1" test "$args" = "--engine xrt --xclbin $tmp/fw/hw.$U55C_PF/proxyssl.xclbin --device 1"
check "--device: programs that card" has "$log" "xbutil program --device 0000:d8:00.1 --user $tmp/fw/hw.$U55C_PF/proxyssl.xclbin"
detect
check "two cards, no --device: the first" test "$args" = "--engine xrt --xclbin $hw250 --device 0"
detect --device 0000:af:00.1
check "--device absent: error" test "$rc" != 0
check "--device absent: lists the cards" has "$out" "0000:3b:00.1 $U250_SHELL; 0000:d8:00.1 $U55C_SHELL"

# ---- help -------------------------------------------------------------------------
out=$(bash "$setup" --help)
rc=$?
log=""
check "--help" has "$out" "--detect-only"
check "--help ends with the header" hasnt "$out" "set -euo pipefail"

if [ "$fails" != 0 ]; then
	echo "test_setup: $fails failure(s)"
	exit 1
fi
echo "test_setup: all passed"

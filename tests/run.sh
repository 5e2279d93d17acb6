#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the build and the
# tests need (Debian packages through apt-get; elsewhere it lists them and
# stops), builds, and runs every test. A test that cannot run (a peer not
# installed, no vectors) fails and names what is missing; it is skipped only
# when asked for (--allow-skip, or PXY_ALLOW_SKIP=1), and the last line then
# counts what was skipped.
#
#   tests/run.sh [--build DIR] [--no-deps] [--allow-skip] [-j N] [ctest args...]
#
# .ci/run calls it; README's second command is this.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
deps=1
jobs=2
export PXY_ALLOW_SKIP=${PXY_ALLOW_SKIP:-0}
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--no-deps) deps=0; shift ;;
	--allow-skip) PXY_ALLOW_SKIP=1; shift ;;
	-j) jobs=$2; shift 2 ;;
	-h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
done
say() { printf 'tests: %s\n' "$*"; }

# ---- what the build and the tests need (Debian 12 package names) -----------------
# build: the compilers, CMake and the libraries; clang: the kernels' emulation library and kernel-lint
build_pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev libssl-dev liburing-dev libinih-dev
	libcmocka-dev libxml2-dev libjson-c-dev libhiredis-dev libxrt1 libxrt-dev python3)
# the peers and tools the tests drive: TLS servers and clients, a browser, captures, a store, the network
test_pkgs=(openssl gnutls-bin curl nginx libnginx-mod-stream socat procps iproute2 iptables systemd redis-server
	tshark python3-cryptography chromium)
if [ "$deps" = 1 ]; then
	if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
		say "not a Debian system: install these (or their equivalents) and run again with --no-deps:"
		say "  ${build_pkgs[*]} ${test_pkgs[*]}"
		exit 1
	fi
	missing=()
	for p in "${build_pkgs[@]}" "${test_pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		sudo=""
		if [ "$(id -u)" != 0 ]; then
			command -v sudo >/dev/null || { say "need root or sudo to install: ${missing[*]}"; exit 1; }
			sudo=sudo
		fi
		say "installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		# tshark asks whether non-root users may capture: no
		echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
		$sudo apt-get update -qq
		$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		say "dependencies present"
	fi
fi

# ---- build and run ------------------------------------------------------------------
say "building in $build"
cmake -S "$here" -B "$build" -DPXY_WERROR=ON >/dev/null
cmake --build "$build" -j"$jobs" >/dev/null
say "running the tests ($(ctest --test-dir "$build" -N | sed -n 's/^Total Tests: //p') of them)"
rc=0
ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@" | tee "$build/tests.log" || rc=$?
skipped=$(grep -c '\*\*\*Skipped' "$build/tests.log" || true)
passed=$(grep -c ' Passed ' "$build/tests.log" || true)
failed=$(grep -c '\*\*\*Failed\|\*\*\*Timeout\|\*\*\*Exception' "$build/tests.log" || true)
say "$passed passed, $failed failed, $skipped skipped$([ "$PXY_ALLOW_SKIP" = 1 ] && echo ' (skipping allowed)')"
exit "$rc"

#!/usr/bin/env bash
# The Debian package, built, installed and started (.ci/run; needs root or sudo):
#   1. cpack -G DEB in build-deb (prefix /usr, Release, no tests);
#   2. dpkg -i; `proxyssl --help` and `--version` from /usr/bin;
#   3. the installed example config, with a certificate and key put where it
#      names them, passes `proxyssl --check-config`;
#   4. `systemd-analyze verify` on the installed unit;
#   5. it starts: as the service (systemctl) where systemd runs, else the binary
#      as the proxyssl user with the installed config, its listener and backend
#      moved to 127.0.0.1; one request through it to openssl s_server is
#      decrypted (its conn line), with the installed emulation xclbin.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/build-deb}
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
say() { printf 'deb: %s\n' "$*"; }
die() { printf 'deb: FAIL: %s\n' "$*" >&2; exit 1; }

cmake -S "$here" -B "$build" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j2 >/dev/null
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls "$build"/proxyssl_*_amd64.deb | head -n1)
[ -f "$deb" ] || die "no package built"
say "built $(basename "$deb") ($(stat -c %s "$deb") bytes); depends: $(dpkg-deb -f "$deb" Depends)"

$sudo dpkg -i "$deb" >/dev/null
/usr/bin/proxyssl --help >/dev/null || die "proxyssl --help failed"
say "installed: $(/usr/bin/proxyssl --version)"
man -w proxyssl >/dev/null 2>&1 || [ -f /usr/share/man/man8/proxyssl.8 ] || die "no man page"

# the example config names /etc/proxyssl/server.crt and server.key: the operator's own, here a fresh pair
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${px:-}" ] && kill "$px" 2>/dev/null; [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null; true' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/server.key" -out "$tmp/server.crt" -subj /CN=deb.test \
	-days 2 2>/dev/null
$sudo install -m 0640 -o root -g proxyssl "$tmp/server.key" /etc/proxyssl/server.key
$sudo install -m 0644 "$tmp/server.crt" /etc/proxyssl/server.crt
$sudo /usr/bin/proxyssl --check-config /etc/proxyssl/proxyssl.ini >"$tmp/check.out" || die "--check-config: $(tail -n3 "$tmp/check.out")"
say "the installed example config checks"
if command -v systemd-analyze >/dev/null; then
	$sudo systemd-analyze verify /usr/lib/systemd/system/proxyssl.service || die "systemd-analyze verify"
	say "systemd-analyze verify: the unit is clean"
else
	die "systemd-analyze is not installed (Debian package systemd)"
fi

# start it: a backend on 127.0.0.1, the proxy's listener and backend moved there
openssl s_server -accept 127.0.0.1:0 -www -cert "$tmp/server.crt" -key "$tmp/server.key" -cipher AES128-GCM-SHA256 \
	-no_tls1_3 >"$tmp/srv.out" 2>&1 &
srv=$!
for _ in $(seq 50); do
	sport=$(ss -ltnpH 2>/dev/null | awk -v p="pid=$srv," '$0 ~ p { sub(".*:", "", $4); print $4; exit }')
	[ -n "$sport" ] && break
	sleep 0.1
done
[ -n "${sport:-}" ] || die "s_server did not listen"
lport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
	$sudo mkdir -p /etc/systemd/system/proxyssl.service.d
	printf '[Service]\nExecStart=\nExecStart=/usr/bin/proxyssl --config /etc/proxyssl/proxyssl.ini --listen 127.0.0.1:%s --backend 127.0.0.1:%s\n' \
		"$lport" "$sport" | $sudo tee /etc/systemd/system/proxyssl.service.d/test.conf >/dev/null
	$sudo systemctl daemon-reload
	$sudo systemctl start proxyssl
	how="systemctl start proxyssl"
	log() { $sudo journalctl -u proxyssl --no-pager -o cat; }
else
	$sudo runuser -u proxyssl -- /usr/bin/proxyssl --config /etc/proxyssl/proxyssl.ini --listen "127.0.0.1:$lport" \
		--backend "127.0.0.1:$sport" 2>"$tmp/px.log" &
	px=$!
	how="the binary as user proxyssl (no systemd here)"
	log() { cat "$tmp/px.log"; }
fi
for _ in $(seq 100); do log | grep -q "listening on" && break; sleep 0.1; done
log | grep -q "listening on" || die "it did not start ($how): $(log | tail -n5)"
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$lport" -quiet -no_tls1_3 \
	-cipher AES128-GCM-SHA256 >"$tmp/page" 2>/dev/null || true
grep -q "HTTP/1.0 200 ok" "$tmp/page" || die "no page through the proxy"
for _ in $(seq 50); do log | grep -q " conn id=" && break; sleep 0.1; done
log | grep " conn id=" | grep -q "verdict=decrypted reason=-" || die "the session was not decrypted: $(log | grep ' conn id=' | tail -n1)"
say "started ($how): $(log | grep -m1 'engine auto chose' | sed 's/.*INFO //'); one session decrypted"
if [ -n "${px:-}" ]; then kill "$px"; wait "$px" 2>/dev/null || true; px=""; else $sudo systemctl stop proxyssl; $sudo rm -rf /etc/systemd/system/proxyssl.service.d; fi
say "ok"

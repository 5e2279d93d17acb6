#!/usr/bin/env bash
# --check-config, the example config and the systemd unit:
#  - host/dist/proxyssl.ini (its /etc/proxyssl and /var paths moved into the
#    test's directory) passes --check-config, which prints every setting with
#    the file line it came from, the defaults and the command line's
#    overrides; its output is itself a config that checks to the same values;
#  - broken configs fail with exit 2 and one line naming the file, the line
#    and the problem: a bad value, an unknown setting, a missing certificate,
#    a key of another certificate, an address that does not resolve, an
#    output directory that does not exist, no [proxy] section;
#  - the unit built from host/dist/proxyssl.service.in passes
#    `systemd-analyze verify` (where systemd-analyze exists).
. "$(dirname "$0")/lib.sh"

SRC=$(cd "$(dirname "$0")/../.." && pwd)
gen_cert srv srv.test
gen_cert other other.test
mkdir -p "$T/etc" "$T/var/log/proxyssl" "$T/var/lib/proxyssl"
cp "$T/srv.crt" "$T/etc/server.crt"
cp "$T/srv.key" "$T/etc/server.key"
sed -e "s|/etc/proxyssl/|$T/etc/|g; s|/var/|$T/var/|g" "$SRC/host/dist/proxyssl.ini" >"$T/site.ini"

"$PROXYSSL" --check-config "$T/site.ini" --max-conns 5000 >"$T/eff.ini" 2>"$T/eff.err" ||
	fail "the example config does not check: $(cat "$T/eff.err")"
line_of() { grep -n "^$1 = " "$T/site.ini" | cut -d: -f1; }
for k in listen backend cert key engine passthrough conn-log plaintext-dir metrics connect-timeout max-queue; do
	grep -Eq "^$k +=.*; $T/site.ini:$(line_of "$k")\$" "$T/eff.ini" || fail "the effective config does not show $k from line $(line_of "$k"): $(grep "^$k " "$T/eff.ini")"
done
grep -Eq '^max-queue += 262144 ' "$T/eff.ini" || fail "max-queue = 256K not shown as 262144"
grep -Eq '^max-conns += 5000 +; command line$' "$T/eff.ini" || fail "the command line's max-conns is not shown as such"
grep -Eq '^buffers += 256 +; default$' "$T/eff.ini" || fail "the default buffers is not shown"
grep -Eq '^; keylog +\(not set\)$' "$T/eff.ini" || fail "keylog not shown as not set"
"$PROXYSSL" --check-config "$T/eff.ini" >"$T/eff2.ini" 2>"$T/eff2.err" || fail "the printed config does not check: $(cat "$T/eff2.err")"
diff <(grep -v '^;' "$T/eff.ini" | sed 's/ *;.*//') <(grep -v '^;' "$T/eff2.ini" | sed 's/ *;.*//') >"$T/diff" ||
	fail "the printed config reads back to other values: $(cat "$T/diff")"
say "the example config checks; the effective settings name their origin and read back the same"

# bad NAME EXPECTED-MESSAGE-REGEX: a copy of the example with a change (stdin: sed script) must fail so
bad() {
	local name=$1 want=$2
	sed -f - "$T/site.ini" >"$T/$name.ini"
	"$PROXYSSL" --check-config "$T/$name.ini" >"$T/$name.out" 2>"$T/$name.err"
	local rc=$?
	[ "$rc" = 2 ] || fail "$name: exit $rc, expected 2: $(cat "$T/$name.err")"
	[ "$(wc -l <"$T/$name.err")" = 1 ] || fail "$name: expected one line: $(cat "$T/$name.err")"
	grep -Eq "^proxyssl: $want" "$T/$name.err" || fail "$name: '$(cat "$T/$name.err")' does not match '$want'"
	[ ! -s "$T/$name.out" ] || fail "$name: printed a config although it failed"
	echo "  ok: $name -> $(cat "$T/$name.err")"
}
T_RE=$(printf '%s' "$T" | sed 's/[.[\*^$()+?{|]/\\&/g')
bad bad-value "$T_RE/bad-value.ini:$(line_of max-conns): --max-conns: 'lots' is not a number" <<<'s/^max-conns = .*/max-conns = lots/'
bad unknown "$T_RE/unknown.ini:$(line_of backend): unknown setting 'backend-pool'" <<<'s/^backend = /backend-pool = /'
bad no-cert "$T_RE/no-cert.ini:$(line_of cert): cannot read certificate $T_RE/etc/missing.crt" <<<"s|^cert = .*|cert = $T/etc/missing.crt|"
bad other-key "$T_RE/other-key.ini:$(line_of cert): .* is not the private key of the certificate" <<<"s|^key = .*|key = $T/other.key|"
bad bad-host "$T_RE/bad-host.ini:$(line_of backend): --backend nonexistent.invalid:443: " <<<'s/^backend = .*/backend = nonexistent.invalid:443/'
bad no-dir "$T_RE/no-dir.ini:$(line_of conn-log): --conn-log $T_RE/nowhere/c.jsonl: No such file or directory" <<<"s|^conn-log = .*|conn-log = $T/nowhere/c.jsonl|"
bad no-section "$T_RE/no-section.ini:[0-9]+: 'listen' is outside a section \\(settings go under \\[proxy\\]\\)" <<<'/^\[proxy\]/d'
bad no-listen "$T_RE/no-listen.ini: --listen, --backend, --cert and --key are required" <<<'/^listen = /d'
say "broken configs: exit 2, one line naming file, line and problem"

if command -v systemd-analyze >/dev/null; then
	sed -e "s|@CMAKE_INSTALL_PREFIX@/bin/proxyssl|$PROXYSSL|g; s|@CMAKE_INSTALL_PREFIX@|/usr/local|g" \
		"$SRC/host/dist/proxyssl.service.in" >"$T/proxyssl.service"
	systemd-analyze verify "$T/proxyssl.service" >"$T/verify.txt" 2>&1 || fail "systemd-analyze verify: $(cat "$T/verify.txt")"
	say "the systemd unit verifies"
else
	say "systemd-analyze not installed: the unit was not verified"
fi

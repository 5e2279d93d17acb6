#!/usr/bin/env bash
# unit.manpage: host/dist/proxyssl.8 (help2man's output, checked in) names every
# option `proxyssl --help` lists, and nothing else; regenerate it with:
#   help2man --no-info --section=8 --include=host/dist/proxyssl.h2m \
#     --name="transparent Proxy SSL: decrypts RSA key-exchange TLS for inspection" \
#     --version-string="proxyssl VERSION" -o host/dist/proxyssl.8 build/proxyssl
set -euo pipefail
bin=$1 man=$2
help_opts=$("$bin" --help | grep -oE '^  --[a-z0-9-]+' | sed 's/^ *//' | sort -u)
# (a switch's optional value shows as NAME[=...]: the bracket ends the name)
man_opts=$(grep -oE '^\\fB\\-\\-[a-z0-9\\-]+\[?\\fR' "$man" | sed 's/\\fB//; s/\[\?\\fR//; s/\\-/-/g' | sort -u)
if [ "$help_opts" != "$man_opts" ]; then
	echo "manpage_test: $man is out of date with --help:"
	diff <(printf '%s\n' "$help_opts") <(printf '%s\n' "$man_opts") || true
	exit 1
fi
echo "manpage_test: $(printf '%s\n' "$help_opts" | wc -l) options, the same in --help and the man page"

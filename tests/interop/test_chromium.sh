#!/usr/bin/env bash
# A real browser through the proxy: headless Chromium (Debian's `chromium`)
# fetches a page and the image it links from nginx, which allows RSA key
# exchange only (TLS 1.2, AES128-GCM-SHA256 and AES256-SHA). Chromium still
# offers those suites to a server that allows nothing else. Checked: the page
# Chromium renders is the one nginx serves, directly and through the proxy
# alike; through the proxy every connection is decrypted, both ways (the
# request Chromium sent is in the client's plaintext sink, the page and the
# image in the server's, byte for byte after the HTTP headers).
. "$(dirname "$0")/lib.sh"

need_tool chromium nginx
gen_cert srv www.test
mkdir -p "$T/www"
marker="proxyssl-chromium-$$-$RANDOM"
head -c 30000 /dev/urandom >"$T/www/blob.bin"
cat >"$T/www/index.html" <<EOF
<html><head><title>$marker</title></head><body><p id="m">$marker</p>
<script>fetch('/blob.bin').then(r => r.arrayBuffer()).then(b => {
  document.getElementById('m').textContent = '$marker blob ' + b.byteLength; });</script></body></html>
EOF
start_nginx nginx "$T/www" "$T/srv.crt" "$T/srv.key" "AES128-GCM-SHA256:AES256-SHA"
start_proxy px --backend "127.0.0.1:$NG_PORT" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$T/pt"

# browse PORT OUT: the DOM after the page's script ran (the name www.test maps to 127.0.0.1:PORT)
browse() {
	timeout 60 chromium --headless=new --no-sandbox --disable-gpu --no-first-run --disable-extensions \
		--user-data-dir="$T/profile-$1" --ignore-certificate-errors \
		--host-resolver-rules="MAP www.test 127.0.0.1:$1" --virtual-time-budget=5000 \
		--dump-dom "https://www.test/" >"$2" 2>"$2.err" || fail "chromium failed: $(tail -n3 "$2.err")"
}
browse "$NG_PORT" "$T/direct.html"
browse "$PX_PORT" "$T/proxied.html"
grep -q "$marker blob 30000" "$T/direct.html" || fail "chromium did not render the page directly: $(head -c 300 "$T/direct.html")"
same "$T/proxied.html" "$T/direct.html" "the page through the proxy"

wait_conns "$PX_LOG" 1 20
stop_group "$PX_PID"
n=0
while read -r line; do
	id=$(field "$line" id)
	# Chromium may open a connection it never uses (a preconnect): those end before any application data
	[ "$(field "$line" decrypted_c2s)" = 0 ] && [ "$(field "$line" reason)" = incomplete-handshake ] && continue
	expect_fields "$line" verdict=decrypted reason=- version=TLS1.2
	n=$((n + 1))
	say "$id: $(field "$line" suite) c2s=$(field "$line" decrypted_c2s) s2c=$(field "$line" decrypted_s2c)"
done < <(conn_lines "$PX_LOG")
[ "$n" -ge 1 ] || fail "no decrypted connection"
# both directions, in the sinks: Chromium's requests, nginx's page and the image, exact
c2s=$(cat "$T"/pt/*c2s* 2>/dev/null)
printf '%s' "$c2s" | grep -q '^GET / HTTP/1.1' || fail "no GET / in the client's plaintext"
printf '%s' "$c2s" | grep -q '^GET /blob.bin HTTP/1.1' || fail "no GET /blob.bin in the client's plaintext"
printf '%s' "$c2s" | grep -qi '^user-agent: .*Chrome' || fail "no Chrome user agent in the client's plaintext"
cat "$T"/pt/*s2c* >"$T/s2c.all"
grep -q "$marker" "$T/s2c.all" || fail "the page is not in the server's plaintext"
"$PY" - "$T/s2c.all" "$T/www/blob.bin" <<'PYEOF' || fail "the image is not in the server's plaintext byte for byte"
import sys
data, blob = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read()
sys.exit(0 if blob in data else 1)
PYEOF
say "ok: chromium through the proxy, $n connection(s) decrypted both ways"

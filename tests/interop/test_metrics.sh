#!/usr/bin/env bash
# --metrics: Prometheus metrics over HTTP, scraped with curl. Checked:
#  - every line of /metrics is a comment or a well-formed sample, every family
#    has HELP and TYPE, histograms are cumulative and end in +Inf = _count;
#  - the numbers move: after 3 decrypted curl connections (one of them
#    resuming another by session ID) and 1 ECDHE connection the policy
#    rejects, the connection, handshake, byte, engine and latency counters say
#    exactly that (and the second scrape counts the first);
#  - a scraper that connects and says nothing does not hold up the proxy or
#    the other scrapes; other paths get 404, other methods 405.
. "$(dirname "$0")/lib.sh"
need_tool curl

gen_cert srv srv.test
bg www openssl s_server -accept 127.0.0.1:0 -www -no_tls1_3 -cert "$T/srv.crt" -key "$T/srv.key" \
	-cipher 'AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256'
port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
start_proxy px --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --metrics 127.0.0.1:0
MPORT=$(sed -n 's|.* metrics on http://127\.0\.0\.1:\([0-9]*\)/metrics$|\1|p' "$PX_LOG" | head -n1)
[ -n "$MPORT" ] || fail "no 'metrics on' line in $PX_LOG"
URL="http://127.0.0.1:$MPORT/metrics"

scrape() { curl -sS --max-time 10 -o "$1" -w '%{http_code} %{content_type}' "$URL" >"$1.status" 2>"$1.err"; }
scrape "$T/m0.txt" || fail "first scrape failed: $(cat "$T/m0.txt.err")"
grep -q '^200 text/plain; version=0.0.4' "$T/m0.txt.status" || fail "first scrape: $(cat "$T/m0.txt.status")"

# a scraper that connects and never sends its request
"$PY" -c 'import socket, sys, time; s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); time.sleep(30)' "$MPORT" &
SILENT=$!
PIDS+=("$SILENT")

get() { curl -sS -k --max-time 30 --tlsv1.2 --tls-max 1.2 "$@" >/dev/null 2>"$T/curl.err"; }
get --ciphers AES128-GCM-SHA256 --resolve "a.test:$PX_PORT:127.0.0.1" "https://a.test:$PX_PORT/" ||
	fail "curl a.test: $(cat "$T/curl.err")"
get --ciphers AES128-GCM-SHA256 --resolve "b.test:$PX_PORT:127.0.0.1" -H 'Connection: close' "https://b.test:$PX_PORT/" \
	--next -sS -k --tlsv1.2 --tls-max 1.2 --ciphers AES128-GCM-SHA256 --resolve "b.test:$PX_PORT:127.0.0.1" \
	"https://b.test:$PX_PORT/" || fail "curl b.test: $(cat "$T/curl.err")"
get --ciphers ECDHE-RSA-AES128-GCM-SHA256 --resolve "c.test:$PX_PORT:127.0.0.1" "https://c.test:$PX_PORT/" &&
	fail "curl with ECDHE got through"
wait_conns "$PX_LOG" 4 20
scrape "$T/m1.txt" || fail "second scrape failed (with a silent scraper connected): $(cat "$T/m1.txt.err")"
kill "$SILENT" 2>/dev/null

code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/other")
[ "$code" = 404 ] || fail "/other answered $code, expected 404"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL")
[ "$code" = 405 ] || fail "POST /metrics answered $code, expected 405"

"$PY" - "$T/m0.txt" "$T/m1.txt" <<'PYEOF' || fail "the metrics are wrong (see above)"
import re, sys
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')
def parse(path):
    fams, samples = {}, {}
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, name, rest = line[2:6], line.split()[2], line.split(None, 3)[3]
            fams.setdefault(name, {})[kind] = rest
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample: %r" % line
        samples[line.rsplit(" ", 1)[0]] = float(line.rsplit(" ", 1)[1])
    for name, f in fams.items():
        assert "HELP" in f and "TYPE" in f, name
    for key in samples:
        base = re.sub(r"(_bucket|_sum|_count)$", "", key.split("{")[0])
        assert base in fams or key.split("{")[0] in fams, "no family for " + key
    return fams, samples
f0, m0 = parse(sys.argv[1])
f1, m1 = parse(sys.argv[2])
def v(m, key): return m.get(key, 0.0)
want = {
    'proxyssl_connections_accepted_total': 4,
    'proxyssl_connections_total{verdict="decrypted",reason="none"}': 3,
    'proxyssl_connections_total{verdict="rejected",reason="non-rsa-kx"}': 1,
    'proxyssl_connections_closed_total{how="reject"}': 1,
    'proxyssl_handshakes_total{kind="full"}': 2,
    'proxyssl_handshakes_total{kind="session-id"}': 1,
    'proxyssl_handshakes_total{kind="ticket"}': 0,
    'proxyssl_keys_verified_total': 3,
    'proxyssl_engine_job_latency_seconds_count{op="rsa_decrypt"}': 2,
    'proxyssl_connection_duration_seconds_count': 4,
    'proxyssl_metrics_scrapes_total': 2,      # the first scrape and this one
    'proxyssl_connections_active': 0,
}
for k, n in want.items():
    assert v(m1, k) == n, "%s = %s, expected %s" % (k, v(m1, k), n)
assert v(m0, 'proxyssl_connections_accepted_total') == 0
for k in ('proxyssl_bytes_forwarded_total{direction="c2s"}', 'proxyssl_bytes_forwarded_total{direction="s2c"}',
          'proxyssl_bytes_decrypted_total', 'proxyssl_records_decrypted_total'):
    assert v(m1, k) > v(m0, k), k
assert f1["proxyssl_engine_job_latency_seconds"]["TYPE"] == "histogram"
for op in ("rsa_decrypt", "record_open"):
    buckets = [(k, x) for k, x in m1.items() if k.startswith('proxyssl_engine_job_latency_seconds_bucket{op="%s"' % op)]
    assert len(buckets) == 17, (op, len(buckets))
    vals = [x for _, x in buckets]
    assert vals == sorted(vals), (op, vals)
    assert buckets[-1][0].endswith('le="+Inf"}') and vals[-1] == m1['proxyssl_engine_job_latency_seconds_count{op="%s"}' % op]
assert v(m1, 'proxyssl_engine_ops_total{engine="%s",op="record_open"}' % re.search(r'engine="([a-z]+)"', open(sys.argv[2]).read()).group(1)) > 0
print("%d samples, %d families; the counters moved as expected" % (len(m1), len(f1)))
PYEOF
say "--metrics: well-formed, counts what happened, a silent scraper holds nothing up"

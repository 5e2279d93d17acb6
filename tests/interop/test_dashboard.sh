#!/usr/bin/env bash
# The Grafana dashboard (host/dist/grafana-dashboard.json) queries only metrics
# that exist: a proxy with every optional part that adds metrics (a session
# cache shared through a real redis-server, the emu engine, a key source), after one
# decrypted session, serves /metrics; every metric name in every panel's
# query (a histogram's _bucket series by its family) must be in it, and the
# dashboard must be valid JSON with a unique id per panel.
. "$(dirname "$0")/lib.sh"

need_tool redis-server redis-cli curl
DASH="$PXY_HERE/../../host/dist/grafana-dashboard.json"
gen_cert srv srv.test
openssl rand -hex 32 >"$T/session.key"
start_redis

bg srv openssl s_server -accept 127.0.0.1:0 -www -cert "$T/srv.crt" -key "$T/srv.key" -cipher AES128-GCM-SHA256 -no_tls1_3
port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
start_proxy px --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --engine emu --metrics 127.0.0.1:0 \
	--session-cache "redis://127.0.0.1:$RPORT" --session-key "$T/session.key" --key-source "file:$T/keys.log"
MPORT=$(sed -n 's|.* metrics on http://127\.0\.0\.1:\([0-9]*\)/metrics$|\1|p' "$PX_LOG" | head -n1)
[ -n "$MPORT" ] || fail "no 'metrics on' line in $PX_LOG"
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$PX_PORT" -quiet -no_tls1_3 \
	-cipher AES128-GCM-SHA256 >"$T/page" 2>/dev/null || true
wait_conns "$PX_LOG" 1
curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$T/metrics" || fail "cannot scrape /metrics"

"$PY" - "$DASH" "$T/metrics" <<'PYEOF' || fail "the dashboard queries metrics that /metrics does not have (above)"
import json, re, sys
dash = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
have = set(re.findall(r'^(?:# TYPE )?(proxyssl_[a-z0-9_]+)', text, re.M))
ids = [p['id'] for p in dash['panels']]
assert len(ids) == len(set(ids)), 'panel ids repeat'
missing, used = [], set()
for p in dash['panels']:
    for t in p.get('targets', []):
        for name in re.findall(r'proxyssl_[a-z0-9_]+', t['expr']):
            fam = re.sub(r'_bucket$', '', name)
            used.add(fam)
            if name not in have and fam not in have:
                missing.append(f"{p['title']}: {name}")
for m in missing:
    print('missing:', m)
print(f'{len(used)} metrics queried by {len(ids)} panels; {len(missing)} missing')
sys.exit(1 if missing else 0)
PYEOF
say "ok"

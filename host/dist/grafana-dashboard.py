#!/usr/bin/env python3
# Writes host/dist/grafana-dashboard.json (run from the repository root after changing a panel;
# interop.dashboard checks every metric it queries against a live /metrics).
import json
panels=[]
DS={"type":"prometheus","uid":"${datasource}"}
def ts(title, exprs, unit, x, y, w=12, h=8, desc=""):
    panels.append({"type":"timeseries","title":title,"description":desc,"datasource":DS,
        "gridPos":{"x":x,"y":y,"w":w,"h":h},"fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
        "options":{"legend":{"displayMode":"list","placement":"bottom"},"tooltip":{"mode":"multi"}},
        "targets":[{"refId":chr(65+i),"expr":e,"legendFormat":l} for i,(e,l) in enumerate(exprs)]})
def stat(title, expr, unit, x, y, w=4, h=4):
    panels.append({"type":"stat","title":title,"datasource":DS,"gridPos":{"x":x,"y":y,"w":w,"h":h},
        "fieldConfig":{"defaults":{"unit":unit},"overrides":[]},"options":{"reduceOptions":{"calcs":["lastNotNull"]}},
        "targets":[{"refId":"A","expr":expr}]})
def sel(extra=""):
    return '{job=~"$job"' + ("," + extra if extra else "") + '}'
J=sel(); R='[$__rate_interval]'
HIT=sel('result="hit"'); DEVF=sel('class="device-failure"'); NOTNONE=sel('reason!="none"')
CARD=sel('class=~"device-failure|device-fault|engine|engine-busy"')
stat("Connections open", "sum(proxyssl_connections_active"+J+")", "short", 0, 0)
stat("Accepted /s", "sum(rate(proxyssl_connections_accepted_total"+J+R+"))", "reqps", 4, 0)
stat("Decrypted", "sum(rate(proxyssl_bytes_decrypted_total"+J+R+"))", "Bps", 8, 0)
stat("Session cache hit ratio", "sum(rate(proxyssl_session_cache_lookups_total"+HIT+R+")) / sum(rate(proxyssl_session_cache_lookups_total"+J+R+"))", "percentunit", 12, 0)
stat("Shared store up", "min(proxyssl_session_store_up"+J+")", "bool", 16, 0)
stat("Card failures", "sum(increase(proxyssl_errors_total"+DEVF+"[$__range]))", "short", 20, 0)
ts("Connections by verdict", [("sum by (verdict) (rate(proxyssl_connections_total"+J+R+"))","{{verdict}}")], "reqps", 0, 4,
   desc="connections ended, per second, by verdict (decrypted, passthrough, rejected, not-decrypted)")
ts("Connections by reason", [("sum by (reason) (rate(proxyssl_connections_total"+NOTNONE+R+"))","{{reason}}")], "reqps", 12, 4,
   desc="why a connection was not decrypted, or stopped being inspected (README: Verdicts and reasons)")
ts("Bytes", [("sum by (direction) (rate(proxyssl_bytes_forwarded_total"+J+R+"))","forwarded {{direction}}"),
             ("sum(rate(proxyssl_bytes_decrypted_total"+J+R+"))","decrypted")], "Bps", 0, 12)
ts("Records by cipher and where they ran", [("sum by (cipher, where) (rate(proxyssl_records_by_cipher_total"+J+R+"))","{{cipher}} {{where}}"),
             ("sum(rate(proxyssl_records_dropped_total"+J+R+"))","dropped (engine saturated)")], "ops", 12, 12)
ts("Engine queue", [("sum by (engine) (proxyssl_engine_inflight_jobs"+J+")","in flight {{engine}}"),
             ("sum(proxyssl_pending_bytes"+J+")","pending ciphertext bytes")], "short", 0, 20)
ts("Engine job latency (p50, p99)", [("histogram_quantile(0.5, sum by (le, op) (rate(proxyssl_engine_job_latency_seconds_bucket"+J+R+")))","p50 {{op}}"),
             ("histogram_quantile(0.99, sum by (le, op) (rate(proxyssl_engine_job_latency_seconds_bucket"+J+R+")))","p99 {{op}}")], "s", 12, 20)
ts("Engine: launches, batching, software", [("sum by (engine) (rate(proxyssl_engine_launches_total"+J+R+"))","launches {{engine}}"),
             ("sum by (engine) (rate(proxyssl_engine_batched_jobs_total"+J+R+"))","batched jobs {{engine}}"),
             ("sum by (engine) (rate(proxyssl_engine_software_jobs_total"+J+R+"))","software jobs {{engine}}")], "ops", 0, 28)
ts("Card failures and faults", [("sum by (class) (rate(proxyssl_errors_total"+CARD+R+"))","{{class}}")], "ops", 12, 28,
   desc="runs that failed, timed out or returned uncomputed results (their work went to software); RSA results the fault check withheld")
ts("Handshakes", [("sum by (kind) (rate(proxyssl_handshakes_total"+J+R+"))","{{kind}}")], "ops", 0, 36)
ts("Session cache", [("sum by (result) (rate(proxyssl_session_cache_lookups_total"+J+R+"))","lookups {{result}}"),
             ("sum(proxyssl_session_cache_entries"+J+")","entries")], "short", 12, 36)
ts("Shared session store (Redis)", [("min(proxyssl_session_store_up"+J+")","up"),
             ("sum by (result) (rate(proxyssl_session_store_requests_total"+J+R+"))","{{result}}")], "short", 0, 44)
ts("Errors by class", [("sum by (class) (rate(proxyssl_errors_total"+J+R+"))","{{class}}")], "ops", 12, 44)
ts("Forwarded keys (--key-source)", [("sum by (event) (rate(proxyssl_forwarded_keys_total"+J+R+"))","{{event}}"),
             ("sum(proxyssl_forwarded_keys_held"+J+")","held"),
             ("sum(rate(proxyssl_tls13_sessions_total"+J+R+"))","TLS 1.3 sessions"),
             ("sum(rate(proxyssl_key_updates_total"+J+R+"))","TLS 1.3 KeyUpdates"),
             ("sum(rate(proxyssl_early_data_records_total"+J+R+"))","0-RTT records")], "short", 0, 52,
   desc="secrets from the key log: received, matched to a session, expired unmatched, malformed lines, sessions whose secret went missing; TLS 1.3 sessions followed, KeyUpdates, 0-RTT records")
for i,p in enumerate(panels): p["id"]=i+1
dash={"title":"proxyssl","uid":"proxyssl","tags":["proxyssl","tls"],"timezone":"browser","schemaVersion":38,"version":1,
 "refresh":"30s","time":{"from":"now-1h","to":"now"},
 "description":"proxyssl's Prometheus metrics (README: Metrics). Import it in Grafana (Dashboards, Import) and pick the Prometheus data source that scrapes --metrics.",
 "templating":{"list":[
   {"name":"datasource","type":"datasource","query":"prometheus","label":"Prometheus"},
   {"name":"job","type":"query","datasource":DS,"query":"label_values(proxyssl_build_info, job)","includeAll":True,"multi":True,"label":"job","current":{"text":"All","value":"$__all"}}]},
 "panels":panels}
open('host/dist/grafana-dashboard.json','w').write(json.dumps(dash,indent=1)+"\n")
print(len(panels), "panels")

#include "io/keylisten.h"
#include "io/loop_int.h"
#include "tls/keystore.h"
#include "tls/suites.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sink/metrics.h"
#include "util/log.h"

/* ---- /metrics (Prometheus text format over HTTP/1.x) ------------------------ */

void mhttp_arm_accept(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe = loop_get_sqe(l);

	io_uring_prep_accept(sqe, l->metrics_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(OP_MACCEPT, 0, LOOP_SLOT));
}

static void metrics_arm_recv(struct pxy_loop *l, unsigned i)
{
	struct mconn *m = &l->mc[i];
	struct io_uring_sqe *sqe = loop_get_sqe(l);

	io_uring_prep_recv(sqe, m->fd, m->req + m->got, METRICS_REQ_MAX - 1 - m->got, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_MRECV, 0, i));
}

static void metrics_arm_send(struct pxy_loop *l, unsigned i)
{
	struct mconn *m = &l->mc[i];
	struct io_uring_sqe *sqe = loop_get_sqe(l);

	io_uring_prep_send(sqe, m->fd, m->resp + m->sent, m->resp_len - m->sent, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_MSEND, 0, i));
}

static void metrics_close(struct pxy_loop *l, unsigned i)
{
	struct mconn *m = &l->mc[i];

	close(m->fd);
	free(m->resp);
	memset(m, 0, sizeof(*m));
	m->fd = -1;
}

#define FAM(n, t, h) pxy_prom_family(p, n, t, h)
#define VAL(n, v) pxy_prom_sample(p, n, NULL, (double)(v))
#define LVAL(n, k, lv, v)                                \
	do {                                             \
		const char *lb_[] = { k, lv, NULL };     \
		pxy_prom_sample(p, n, lb_, (double)(v)); \
	} while (0)

/* Everything this loop counts, in the Prometheus text format (README "Metrics"). */
/* What /metrics shows: one loop's counters, or the sum over the workers of a virtual server. */
struct mview {
	struct pxy_loop_stats st;
	struct pxy_tap_counters tc;
	struct pxy_engine_stats es;
	uint64_t outcomes[4][PXY_R__COUNT];
	struct pxy_hist conn_duration;
	uint64_t bufs_held, nbufs, reloads, reloads_refused;
	struct pxy_redis_stats rs;
	struct pxy_keystore_stats ks; /* the loops' key sources, summed */
};

/* dst += src, for structs of uint64_t only (read relaxed: another worker's thread writes src) */
static void add_u64s(void *dst, const void *src, size_t bytes)
{
	uint64_t *d = dst;
	const uint64_t *x = src;

	for (size_t i = 0; i < bytes / sizeof(uint64_t); i++)
		d[i] += __atomic_load_n(&x[i], __ATOMIC_RELAXED);
}

static void mview_add(struct mview *v, struct pxy_loop *w)
{
	add_u64s(&v->st, &w->st, sizeof(v->st));
	add_u64s(&v->tc, &w->tc, sizeof(v->tc));
	add_u64s(&v->es, &w->cfg->tap.engine->stats, sizeof(v->es));
	add_u64s(v->outcomes, w->outcomes, sizeof(v->outcomes));
	add_u64s(&v->conn_duration, &w->conn_duration, sizeof(v->conn_duration));
	v->bufs_held += __atomic_load_n(&w->bufs_held, __ATOMIC_RELAXED);
	v->nbufs += w->nbufs;
	v->reloads += __atomic_load_n(&w->reloads, __ATOMIC_RELAXED);
	v->reloads_refused += __atomic_load_n(&w->reloads_refused, __ATOMIC_RELAXED);
	if (w->tap_cfg.keys) {
		struct pxy_keystore_stats ks;

		pxy_keystore_stats_get(w->tap_cfg.keys, &ks);
		add_u64s(&v->ks, &ks, sizeof(ks));
	}
	if (w->cfg->redis) {
		struct pxy_redis_stats rs;

		pxy_redis_get_stats(w->cfg->redis, &rs);
		add_u64s(&v->rs, &rs, sizeof(rs));
	}
}

static void metrics_render(struct pxy_loop *l, struct pxy_prom *p)
{
	const char *engine = l->cfg->tap.engine->ops->name;
	const char *out_names[4] = { "decrypted", "passthrough", "rejected", "not-decrypted" };
	struct mview *v = calloc(1, sizeof(*v));

	if (!v) {
		p->oom = 1;
		return;
	}
	mview_add(v, l);
	for (unsigned i = 0; i < l->cfg->n_siblings; i++)
		if (l->cfg->siblings[i] && l->cfg->siblings[i] != l)
			mview_add(v, l->cfg->siblings[i]);
#define ES(f) (v->es.f)
	FAM("proxyssl_build_info", "gauge", "the version running, as a label");
	LVAL("proxyssl_build_info", "version", PXY_VERSION, 1);
	FAM("proxyssl_start_time_seconds", "gauge", "when the io loop started (Unix time)");
	VAL("proxyssl_start_time_seconds", (double)(l->started_unix_us / 1000000));

	FAM("proxyssl_connections_accepted_total", "counter", "client connections accepted");
	VAL("proxyssl_connections_accepted_total", v->st.accepted);
	FAM("proxyssl_connections_active", "gauge", "client connections open now");
	VAL("proxyssl_connections_active", v->st.active);
	FAM("proxyssl_connections_refused_total", "counter", "connections reset at once: --max-conns reached");
	VAL("proxyssl_connections_refused_total", v->st.refused_max_conns);
	FAM("proxyssl_connections_total", "counter",
	    "connections ended, by verdict and reason (reason \"none\": nothing went wrong)");
	for (int o = 0; o < 4; o++)
		for (int r = 0; r < PXY_R__COUNT; r++)
			if (v->outcomes[o][r]) {
				const char *lb[] = { "verdict", out_names[o], "reason",
						     r ? pxy_reason_name((enum pxy_reason)r) : "none", NULL };
				pxy_prom_sample(p, "proxyssl_connections_total", lb, (double)v->outcomes[o][r]);
			}
	FAM("proxyssl_connections_closed_total", "counter", "how connections closed");
	LVAL("proxyssl_connections_closed_total", "how", "fin", v->st.closed_fin);
	LVAL("proxyssl_connections_closed_total", "how", "reset", v->st.closed_reset);
	LVAL("proxyssl_connections_closed_total", "how", "reject", v->st.rejected);
	FAM("proxyssl_connection_duration_seconds", "histogram", "accept to the connection's log line");
	pxy_prom_hist(p, "proxyssl_connection_duration_seconds", NULL, &v->conn_duration);

	FAM("proxyssl_handshakes_total", "counter",
	    "handshakes by kind: full (an RSA pre-master decrypted), resumed by session-id or ticket, "
	    "resumption-unknown (forwarded, not decrypted)");
	LVAL("proxyssl_handshakes_total", "kind", "full", v->tc.rsa_jobs);
	LVAL("proxyssl_handshakes_total", "kind", "session-id", v->tc.resumed - v->tc.resumed_ticket);
	LVAL("proxyssl_handshakes_total", "kind", "ticket", v->tc.resumed_ticket);
	LVAL("proxyssl_handshakes_total", "kind", "resumption-unknown", v->tc.resumed_unknown);
	FAM("proxyssl_renegotiations_total", "counter", "renegotiations followed");
	VAL("proxyssl_renegotiations_total", v->tc.renegotiations);
	FAM("proxyssl_keys_verified_total", "counter", "sessions whose recovered keys verified against Finished");
	VAL("proxyssl_keys_verified_total", v->tc.keys_verified);

	FAM("proxyssl_bytes_forwarded_total", "counter", "bytes forwarded, by direction");
	LVAL("proxyssl_bytes_forwarded_total", "direction", "c2s", v->st.bytes[0]);
	LVAL("proxyssl_bytes_forwarded_total", "direction", "s2c", v->st.bytes[1]);
	FAM("proxyssl_bytes_decrypted_total", "counter", "application plaintext bytes recovered");
	VAL("proxyssl_bytes_decrypted_total", v->tc.plaintext_bytes);
	FAM("proxyssl_records_decrypted_total", "counter", "TLS records decrypted and authenticated");
	VAL("proxyssl_records_decrypted_total", v->tc.records_decrypted);
	FAM("proxyssl_records_by_cipher_total", "counter",
	    "records decrypted, by bulk cipher and where they ran (device: the card's kernels, emulated or not)");
	for (uint8_t b = 1; b < PXY_BULK__COUNT; b++)
		for (int w = 0; w < 2; w++)
			if (v->tc.records_by_bulk[b][w]) {
				const char *lb[] = { "cipher", pxy_bulk_desc(b)->name, "where", w ? "device" : "software", NULL };

				pxy_prom_sample(p, "proxyssl_records_by_cipher_total", lb, (double)v->tc.records_by_bulk[b][w]);
			}
	FAM("proxyssl_records_dropped_total", "counter", "records left uninspected: the engine was saturated");
	VAL("proxyssl_records_dropped_total", v->tc.records_dropped);
	FAM("proxyssl_pending_bytes", "gauge", "ciphertext waiting for keys or in the engine");
	VAL("proxyssl_pending_bytes", v->tc.pending_bytes);
	FAM("proxyssl_buffers_held", "gauge", "receive buffers lent out (queued or being sent)");
	VAL("proxyssl_buffers_held", v->bufs_held);
	FAM("proxyssl_buffers", "gauge", "receive buffers in the ring");
	VAL("proxyssl_buffers", v->nbufs);

	FAM("proxyssl_engine_ops_total", "counter", "engine jobs completed, by engine and operation");
	{
		const char *a[] = { "engine", engine, "op", "rsa_decrypt", NULL };
		const char *b[] = { "engine", engine, "op", "record_open", NULL };
		pxy_prom_sample(p, "proxyssl_engine_ops_total", a, (double)ES(rsa_ops));
		pxy_prom_sample(p, "proxyssl_engine_ops_total", b, (double)ES(rec_open));
	}
	FAM("proxyssl_engine_inflight_jobs", "gauge", "jobs in the engine now (queue depth)");
	LVAL("proxyssl_engine_inflight_jobs", "engine", engine, ES(inflight));
	FAM("proxyssl_engine_launches_total", "counter", "kernel runs started (xrt/emu)");
	LVAL("proxyssl_engine_launches_total", "engine", engine, ES(launches));
	FAM("proxyssl_engine_batched_jobs_total", "counter", "jobs carried by kernel runs (xrt/emu)");
	LVAL("proxyssl_engine_batched_jobs_total", "engine", engine, ES(batched_jobs));
	FAM("proxyssl_engine_software_jobs_total", "counter", "jobs run in software by a device engine");
	LVAL("proxyssl_engine_software_jobs_total", "engine", engine, ES(software_jobs));
	FAM("proxyssl_engine_job_latency_seconds", "histogram", "engine job submission to completion, by operation");
	{
		const char *a[] = { "op", "rsa_decrypt", NULL };
		const char *b[] = { "op", "record_open", NULL };
		pxy_prom_hist(p, "proxyssl_engine_job_latency_seconds", a, &v->tc.rsa_latency);
		pxy_prom_hist(p, "proxyssl_engine_job_latency_seconds", b, &v->tc.record_latency);
	}

	if (l->tap_cfg.sessions) {
		struct pxy_sessions_stats sst, *ss = &sst;

		pxy_sessions_stats_get(l->tap_cfg.sessions, &sst);

		FAM("proxyssl_session_cache_entries", "gauge", "sessions in the cache");
		VAL("proxyssl_session_cache_entries", ss->entries);
		FAM("proxyssl_session_cache_lookups_total", "counter", "cache lookups by result");
		LVAL("proxyssl_session_cache_lookups_total", "result", "hit", ss->hits);
		LVAL("proxyssl_session_cache_lookups_total", "result", "miss", ss->misses);
		FAM("proxyssl_session_cache_stored_total", "counter", "sessions stored");
		VAL("proxyssl_session_cache_stored_total", ss->stored);
		FAM("proxyssl_session_cache_removed_total", "counter", "sessions removed, by why");
		LVAL("proxyssl_session_cache_removed_total", "why", "expired", ss->expired);
		LVAL("proxyssl_session_cache_removed_total", "why", "evicted", ss->evicted);
	}

	if (l->cfg->redis) {
		const struct pxy_redis_stats rs = v->rs;

		FAM("proxyssl_session_store_up", "gauge", "1 while the shared session store (Redis) is connected");
		VAL("proxyssl_session_store_up", rs.up);
		FAM("proxyssl_session_store_requests_total", "counter", "shared session store requests, by result");
		LVAL("proxyssl_session_store_requests_total", "result", "get-hit", rs.hits);
		LVAL("proxyssl_session_store_requests_total", "result", "get-miss", rs.misses);
		LVAL("proxyssl_session_store_requests_total", "result", "set", rs.sets);
		LVAL("proxyssl_session_store_requests_total", "result", "error", rs.errors);
		LVAL("proxyssl_session_store_requests_total", "result", "dropped", rs.dropped);
	}
	if (l->tap_cfg.keys) {
		const struct pxy_keystore_stats ks = v->ks;

		FAM("proxyssl_forwarded_keys_total", "counter", "secrets from the key source, by what became of them");
		LVAL("proxyssl_forwarded_keys_total", "event", "received", ks.stored + ks.tls13);
		LVAL("proxyssl_forwarded_keys_total", "event", "matched", ks.matched);
		LVAL("proxyssl_forwarded_keys_total", "event", "expired", ks.expired);
		LVAL("proxyssl_forwarded_keys_total", "event", "malformed", ks.malformed);
		LVAL("proxyssl_forwarded_keys_total", "event", "missing", v->tc.keys_missing);
		FAM("proxyssl_forwarded_keys_held", "gauge", "sessions whose forwarded secrets are held now");
		VAL("proxyssl_forwarded_keys_held", ks.entries);
		FAM("proxyssl_tls13_sessions_total", "counter", "TLS 1.3 sessions followed with forwarded secrets");
		VAL("proxyssl_tls13_sessions_total", v->tc.tls13_sessions);
		FAM("proxyssl_key_updates_total", "counter", "TLS 1.3 KeyUpdate messages followed");
		VAL("proxyssl_key_updates_total", v->tc.key_updates);
		FAM("proxyssl_early_data_records_total", "counter",
		    "TLS 1.3 0-RTT records: decrypted, or skipped as the server skipped them");
		VAL("proxyssl_early_data_records_total", v->tc.early_records);
	}
	if (pxy_keylisten_current()) {
		struct pxy_keylisten_stats kls;

		pxy_keylisten_stats_get(pxy_keylisten_current(), &kls);
		FAM("proxyssl_key_listener_connections_total", "counter",
		    "connections to --key-listen: forwarders that authenticated, clients refused");
		LVAL("proxyssl_key_listener_connections_total", "result", "accepted", kls.accepted);
		LVAL("proxyssl_key_listener_connections_total", "result", "refused", kls.refused);
		FAM("proxyssl_key_listener_forwarders", "gauge", "forwarders connected now");
		VAL("proxyssl_key_listener_forwarders", kls.connected);
		FAM("proxyssl_key_listener_lines_total", "counter",
		    "key log lines received (taken), over 1024 bytes (overlong), or not kept by a full store (dropped)");
		LVAL("proxyssl_key_listener_lines_total", "result", "taken", kls.lines);
		LVAL("proxyssl_key_listener_lines_total", "result", "overlong", kls.overlong);
		LVAL("proxyssl_key_listener_lines_total", "result", "dropped", kls.dropped);
	}
	FAM("proxyssl_errors_total", "counter", "errors by class");
	LVAL("proxyssl_errors_total", "class", "protocol", v->tc.protocol_errors);
	LVAL("proxyssl_errors_total", "class", "finished-mismatch", v->tc.finished_mismatch);
	LVAL("proxyssl_errors_total", "class", "record-auth", v->tc.record_auth_fail);
	LVAL("proxyssl_errors_total", "class", "backend-connect", v->st.connect_failed);
	LVAL("proxyssl_errors_total", "class", "backend-connect-timeout", v->st.connect_timeout);
	LVAL("proxyssl_errors_total", "class", "no-original-destination", v->st.no_original_dst);
	LVAL("proxyssl_errors_total", "class", "handshake-timeout", v->st.handshake_timeouts);
	LVAL("proxyssl_errors_total", "class", "idle-timeout", v->st.idle_timeouts);
	LVAL("proxyssl_errors_total", "class", "engine", ES(errors));
	LVAL("proxyssl_errors_total", "class", "engine-busy", ES(busy_rejects));
	LVAL("proxyssl_errors_total", "class", "device-failure", ES(device_failures));
	LVAL("proxyssl_errors_total", "class", "device-fault", ES(faults));
	LVAL("proxyssl_errors_total", "class", "sink-write", v->st.sink_write_errors);
	LVAL("proxyssl_errors_total", "class", "enobufs", v->st.enobufs);
	if (l->cap_pt || l->cap_ct || l->cfg->pcap_feed) {
		FAM("proxyssl_capture_packets_total", "counter", "packets written to the captures, by capture");
		LVAL("proxyssl_capture_packets_total", "capture", "decrypted", v->st.pcap_packets);
		LVAL("proxyssl_capture_packets_total", "capture", "tls", v->st.tls_packets);
		LVAL("proxyssl_capture_packets_total", "capture", "feed", v->st.feed_packets);
		FAM("proxyssl_capture_feed_dropped_total", "counter", "live feed packets dropped: no reader, or it lagged");
		VAL("proxyssl_capture_feed_dropped_total", v->st.feed_dropped);
	}
	FAM("proxyssl_reloads_total", "counter", "SIGHUP reloads, by result");
	LVAL("proxyssl_reloads_total", "result", "applied", v->reloads);
	LVAL("proxyssl_reloads_total", "result", "refused", v->reloads_refused);
	FAM("proxyssl_metrics_scrapes_total", "counter", "requests served on /metrics");
	VAL("proxyssl_metrics_scrapes_total", l->scrapes);
#undef ES
	free(v);
}

#undef FAM
#undef VAL
#undef LVAL

/* The request head is in: answer it and close (HTTP/1.0 style, Connection: close). */
static void metrics_respond(struct pxy_loop *l, unsigned i)
{
	struct mconn *m = &l->mc[i];
	struct pxy_prom body = { 0 };
	const char *status = "200 OK", *ctype = "text/plain; version=0.0.4; charset=utf-8";
	const char *text = NULL;
	char head[256];
	int head_only = !strncmp(m->req, "HEAD ", 5), n;
	size_t blen;

	if (strncmp(m->req, "GET ", 4) && !head_only) {
		status = "405 Method Not Allowed";
		text = "only GET and HEAD\n";
	} else if (strncmp(m->req + (head_only ? 5 : 4), "/metrics", 8) ||
		   !strchr(" ?", m->req[(head_only ? 5 : 4) + 8])) {
		status = "404 Not Found";
		text = "the metrics are at /metrics\n";
	} else {
		l->scrapes++;
		metrics_render(l, &body);
		if (body.oom) {
			status = "503 Service Unavailable";
			text = "out of memory\n";
		}
	}
	if (text)
		ctype = "text/plain; charset=utf-8";
	blen = text ? strlen(text) : body.len;
	n = snprintf(head, sizeof(head), "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		     status, ctype, blen);
	m->resp_len = (size_t)n + (head_only ? 0 : blen);
	m->resp = malloc(m->resp_len);
	if (!m->resp) {
		pxy_prom_free(&body);
		metrics_close(l, i);
		return;
	}
	memcpy(m->resp, head, (size_t)n);
	if (!head_only)
		memcpy(m->resp + n, text ? text : body.buf, blen);
	pxy_prom_free(&body);
	m->sent = 0;
	metrics_arm_send(l, i);
}

void mhttp_complete(struct pxy_loop *l, unsigned op, uint32_t slot, int res)
{
	struct mconn *m = slot < METRICS_SLOTS ? &l->mc[slot] : NULL;

	if (op == OP_MACCEPT) {
		unsigned i = 0;

		if (res >= 0) {
			while (i < METRICS_SLOTS && l->mc[i].fd >= 0)
				i++;
			if (i == METRICS_SLOTS) {
				close(res); /* METRICS_SLOTS scrapes at once are enough */
			} else {
				l->mc[i].fd = res;
				l->mc[i].got = 0;
				metrics_arm_recv(l, i);
			}
		} else if (res != -EINTR && res != -ECONNABORTED && res != -EAGAIN && res != -EMFILE && res != -ENFILE) {
			pxy_warn("metrics: accept: %s; not serving /metrics any more", strerror(-res));
			return;
		}
		if (!l->stopping)
			mhttp_arm_accept(l);
		return;
	}
	if (!m || m->fd < 0)
		return;
	if (op == OP_MRECV) {
		if (res <= 0) {
			metrics_close(l, slot);
			return;
		}
		KERNEL_WROTE(m->req + m->got, (size_t)res);
		m->got += (size_t)res;
		m->req[m->got] = 0;
		if (strstr(m->req, "\r\n\r\n") || strstr(m->req, "\n\n") || m->got >= METRICS_REQ_MAX - 1)
			metrics_respond(l, slot);
		else
			metrics_arm_recv(l, slot);
		return;
	}
	/* OP_MSEND */
	if (res <= 0) {
		metrics_close(l, slot);
		return;
	}
	m->sent += (size_t)res;
	if (m->sent < m->resp_len)
		metrics_arm_send(l, slot);
	else
		metrics_close(l, slot);
}


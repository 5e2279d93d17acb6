#include "io/loop_int.h"
#include "tls/keystore.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sink/sinks.h"
#include "tls/tap.h"
#include "util/ct.h"
#include "util/log.h"
#include "util/util.h"

/* ---- ring helpers --------------------------------------------------------- */

struct io_uring_sqe *loop_get_sqe(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	while (!sqe) {
		io_uring_submit(&l->ring);
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

/* ---- stats, engine completions, signals and reload ------------------------ */

static void dump_stats(struct pxy_loop *l)
{
	const struct pxy_engine_stats *es = &l->cfg->tap.engine->stats;

	pxy_info("stats connections accepted=%" PRIu64 " active=%" PRIu64 " rejected=%" PRIu64 " closed_fin=%" PRIu64
		 " closed_reset=%" PRIu64 " refused_max_conns=%" PRIu64 " connect_failed=%" PRIu64
		 " connect_timeout=%" PRIu64 " no_original_dst=%" PRIu64 " handshake_timeouts=%" PRIu64
		 " idle_timeouts=%" PRIu64,
		 l->st.accepted, l->st.active, l->st.rejected, l->st.closed_fin, l->st.closed_reset,
		 l->st.refused_max_conns, l->st.connect_failed, l->st.connect_timeout, l->st.no_original_dst,
		 l->st.handshake_timeouts, l->st.idle_timeouts);
	pxy_info("stats bytes c2s=%" PRIu64 " s2c=%" PRIu64 " plaintext=%" PRIu64 " sink_bytes=%" PRIu64
		 " sink_write_errors=%" PRIu64 " enobufs=%" PRIu64 " recv_paused=%" PRIu64 " buffers_held=%u/%u",
		 l->st.bytes[0], l->st.bytes[1], l->tc.plaintext_bytes, l->st.sink_bytes, l->st.sink_write_errors,
		 l->st.enobufs, l->st.recv_paused, l->bufs_held, l->nbufs);
	pxy_info("stats tls keys_verified=%" PRIu64 " finished_mismatch=%" PRIu64 " record_auth_fail=%" PRIu64
		 " rsa_jobs=%" PRIu64 " records_decrypted=%" PRIu64 " records_dropped=%" PRIu64
		 " protocol_errors=%" PRIu64 " pending_bytes=%" PRIu64 " renegotiations=%" PRIu64 " sslv2_hellos=%" PRIu64,
		 l->tc.keys_verified, l->tc.finished_mismatch, l->tc.record_auth_fail, l->tc.rsa_jobs,
		 l->tc.records_decrypted, l->tc.records_dropped, l->tc.protocol_errors, l->tc.pending_bytes,
		 l->tc.renegotiations, l->tc.sslv2_hellos);
	if (l->tap_cfg.keys) {
		struct pxy_keystore_stats ks;

		pxy_keystore_refresh(l->tap_cfg.keys, pxy_now_ns()); /* what came since: counted now */
		pxy_keystore_stats_get(l->tap_cfg.keys, &ks);
		pxy_info("stats keys lines=%" PRIu64 " client_random=%" PRIu64 " tls13_secrets=%" PRIu64 " malformed=%" PRIu64
			 " matched=%" PRIu64 " expired=%" PRIu64 " held=%" PRIu64 " reopened=%" PRIu64 " missing=%" PRIu64
			 " tls13_sessions=%" PRIu64 " key_updates=%" PRIu64 " early_records=%" PRIu64 " dropped=%" PRIu64,
			 ks.lines, ks.stored, ks.tls13, ks.malformed, ks.matched, ks.expired, ks.entries, ks.reopened,
			 l->tc.keys_missing, l->tc.tls13_sessions, l->tc.key_updates, l->tc.early_records, ks.dropped);
	}
	if (l->tap_cfg.sessions) {
		struct pxy_sessions_stats sst, *ss = &sst;

		pxy_sessions_stats_get(l->tap_cfg.sessions, &sst);
		pxy_info("stats sessions entries=%" PRIu64 " stored=%" PRIu64 " hits=%" PRIu64 " misses=%" PRIu64
			 " expired=%" PRIu64 " evicted=%" PRIu64 " resumed=%" PRIu64 " resumed_unknown=%" PRIu64,
			 ss->entries, ss->stored, ss->hits, ss->misses, ss->expired, ss->evicted, l->tc.resumed,
			 l->tc.resumed_unknown);
	} else {
		pxy_info("stats sessions off resumed_unknown=%" PRIu64, l->tc.resumed_unknown);
	}
	if (l->cap_pt || l->cap_ct || l->cfg->pcap_feed)
		pxy_info("stats capture pcap_packets=%" PRIu64 " pcap_rotations=%" PRIu64 " tls_packets=%" PRIu64
			 " tls_rotations=%" PRIu64 " feed_packets=%" PRIu64 " feed_dropped=%" PRIu64 " feed_opens=%" PRIu64,
			 l->st.pcap_packets, l->st.pcap_rotations, l->st.tls_packets, l->st.tls_rotations,
			 l->st.feed_packets, l->st.feed_dropped, l->st.feed_opens);
	if (l->cfg->redis) {
		struct pxy_redis_stats rs;

		pxy_redis_get_stats(l->cfg->redis, &rs);
		pxy_info("stats redis up=%" PRIu64 " gets=%" PRIu64 " hits=%" PRIu64 " misses=%" PRIu64 " sets=%" PRIu64
			 " errors=%" PRIu64 " dropped=%" PRIu64,
			 rs.up, rs.gets, rs.hits, rs.misses, rs.sets, rs.errors, rs.dropped);
	}
#define ES(f) __atomic_load_n(&es->f, __ATOMIC_RELAXED)
	pxy_info("stats engine name=%s rsa_ops=%" PRIu64 " rec_open=%" PRIu64 " rec_bad=%" PRIu64
		 " busy_rejects=%" PRIu64 " errors=%" PRIu64 " launches=%" PRIu64 " batched_jobs=%" PRIu64
		 " software_jobs=%" PRIu64 " device_failures=%" PRIu64 " faults=%" PRIu64,
		 l->cfg->tap.engine->ops->name, ES(rsa_ops), ES(rec_open), ES(rec_bad), ES(busy_rejects), ES(errors),
		 ES(launches), ES(batched_jobs), ES(software_jobs), ES(device_failures), ES(faults));
#undef ES
	for (int r = 1; r < PXY_R__COUNT; r++)
		if (l->tc.reasons[r])
			pxy_info("stats reason %s=%" PRIu64, pxy_reason_name((enum pxy_reason)r), l->tc.reasons[r]);
}

/* Hand finished jobs back to whoever submitted them; ack also reads the eventfd down. */
static void drain_engine(struct pxy_loop *l, int ack)
{
	if (ack)
		pxy_engine_ack(l->cfg->tap.engine);
	pxy_engine_complete(l->cfg->tap.engine);
}

/*
 * The turn is over: the engine launches what it has queued (a device engine
 * batches until here). A synchronous engine signals nothing: its jobs are
 * done when submit or flush returns, and what they complete may submit more.
 * Then the files written this turn get their writes.
 */
static void end_turn(struct pxy_loop *l)
{
	struct pxy_engine *e = l->cfg->tap.engine;

	/* a synchronous engine's work would hold up this turn's sends: they go first */
	if ((e->flags & PXY_ENGINE_F_SYNC) && io_uring_sq_ready(&l->ring) &&
	    __atomic_load_n(&e->stats.inflight, __ATOMIC_RELAXED))
		io_uring_submit(&l->ring);
	pxy_engine_flush(e);
	if (e->flags & PXY_ENGINE_F_SYNC)
		while (pxy_engine_complete(e))
			pxy_engine_flush(e);
	/* verdicts that came from engine results or timers: held flights go, or are refused */
	conn_step_due(l);
	/* the plaintext, captures and logs of this turn: a write per idle file */
	out_flush_writes(l);
}

static void arm_poll(struct pxy_loop *l, int fd, unsigned op)
{
	struct io_uring_sqe *sqe = loop_get_sqe(l);

	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud_make(op, 0, LOOP_SLOT));
}

/* Reset every connection still open (the drain ran out, or a second signal). */
static void reset_all(struct pxy_loop *l)
{
	l->reset_done = 1;
	for (unsigned i = 0; i < l->max_conns; i++) {
		struct conn *c = l->conns[i];

		if (c && c->state != CS_RESETTING) {
			c->close_kind = "shutdown";
			c->state = CS_RESETTING;
			conn_step(l, c);
		}
	}
}

/*
 * SIGTERM/SIGINT: stop accepting, and let the open connections end by
 * themselves for up to --drain-timeout; then (or at a second signal) reset
 * what is left. The loop ends when every connection and its log line is done.
 */
static void begin_stop(struct pxy_loop *l)
{
	if (l->stopping) {
		if (!l->reset_done) {
			pxy_info("stopping now: resetting %" PRIu64 " connections", l->st.active);
			reset_all(l);
		}
		return;
	}
	l->stopping = 1;
	l->drain_deadline = pxy_now_ns() + (uint64_t)l->cfg->drain_timeout_ms * 1000000ull;
	if (l->listen_fd >= 0) {
		shutdown(l->listen_fd, SHUT_RDWR);
		close(l->listen_fd);
		l->listen_fd = -1;
	}
	if (l->cfg->drain_timeout_ms && l->st.active) {
		pxy_info("stopping: listener closed; draining %" PRIu64 " connections for up to %u ms "
			 "(a second signal resets them now)",
			 l->st.active, l->cfg->drain_timeout_ms);
	} else {
		pxy_info("stopping: closing the listener and resetting %" PRIu64 " connections", l->st.active);
		reset_all(l);
	}
}

/* A wfile for a descriptor handed over by a reload (NULL: out of memory; the descriptor is closed). */
static struct wfile *wfile_take(int fd, const char *name)
{
	struct wfile *f = out_wfile_adopt(fd, name);

	close(fd);
	return f;
}

/*
 * SIGHUP: ask for the new configuration and put it in place for new
 * connections; those open keep what they started with (their identities stay
 * referenced until they end). Refused as a whole, nothing changes.
 */
static void reload(struct pxy_loop *l)
{
	struct pxy_loop_cfg next = l->cur;
	struct wfile *kl = NULL, *cl = NULL;
	char *pd = NULL;

	if (!l->cur.reload) {
		pxy_warn("SIGHUP: nothing to reload (no configuration source)");
		return;
	}
	next.keylog_fd = next.connlog_fd = -1;
	if (l->cur.reload(l->cur.reload_ctx, &next) < 0) {
		l->reloads_refused++;
		return;
	}
	if (next.keylog_fd >= 0)
		kl = wfile_take(next.keylog_fd, "key log");
	if (next.connlog_fd >= 0)
		cl = wfile_take(next.connlog_fd, "connection log");
	if (next.plaintext_dir)
		pd = strdup(next.plaintext_dir);
	if ((next.keylog_fd >= 0 && !kl) || (next.connlog_fd >= 0 && !cl) || (next.plaintext_dir && !pd)) {
		out_wfile_put(kl);
		out_wfile_put(cl);
		free(pd);
		pxy_idset_put(next.idset);
		l->reloads_refused++;
		pxy_err_log("reload refused: out of memory; keeping the running configuration");
		return;
	}
	/* what only a restart changes stays as it is (the callee warned) */
	next.listen_addr = l->cur.listen_addr;
	next.listen_len = l->cur.listen_len;
	next.metrics_addr = l->cur.metrics_addr;
	next.metrics_len = l->cur.metrics_len;
	next.buffers = l->cur.buffers;
	next.buffer_size = l->cur.buffer_size;
	next.max_conns = l->cur.max_conns;
	next.max_queue = l->cur.max_queue;
	next.session_cache = l->cur.session_cache;
	next.session_lifetime_s = l->cur.session_lifetime_s;
	next.tap.engine = l->cur.tap.engine;
	next.tap.max_pending_total = l->cur.tap.max_pending_total;
	next.engine_name = l->cur.engine_name;
	next.pcap = l->cur.pcap;
	next.pcap_tls = l->cur.pcap_tls;
	next.pcap_feed = l->cur.pcap_feed;
	next.pcap_rotate = l->cur.pcap_rotate;
	next.redis = l->cur.redis;

	pxy_idset_put(l->cur.idset); /* goes when the last connection under it ends */
	out_wfile_put(l->keylog);
	out_wfile_put(l->connlog);
	free(l->plaintext_dir);
	l->keylog = kl;
	l->connlog = cl;
	l->plaintext_dir = pd;
	l->cur = next;
	l->cur.plaintext_dir = pd;
	l->tap_cfg.identity = next.tap.identity;
	l->tap_cfg.identities = next.tap.identities;
	l->tap_cfg.n_identities = next.tap.n_identities;
	l->tap_cfg.passthrough = next.tap.passthrough;
	l->tap_cfg.max_hs_msg = next.tap.max_hs_msg;
	l->tap_cfg.max_pending = next.tap.max_pending;
	l->reloads++;
}

static void on_signo(struct pxy_loop *l, unsigned signo)
{
	if (signo == SIGUSR1)
		dump_stats(l);
	else if (signo == SIGHUP)
		reload(l);
	else if (signo == SIGINT || signo == SIGTERM)
		begin_stop(l);
}

static void on_signal(struct pxy_loop *l)
{
	struct signalfd_siginfo si;
	uint8_t b[64];
	ssize_t n;

	if (l->ctl) {
		while ((n = read(l->signal_fd, b, sizeof(b))) > 0)
			for (ssize_t i = 0; i < n; i++)
				on_signo(l, b[i]);
		return;
	}
	while (read(l->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		on_signo(l, si.ssi_signo);
}

/* ---- timeouts -------------------------------------------------------------------- */

#define TICK_MS 250
static struct __kernel_timespec tick_ts = { 0, TICK_MS * 1000000ll };

static void arm_tick(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe = loop_get_sqe(l);

	io_uring_prep_timeout(sqe, &tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_TICK, 0, LOOP_SLOT));
}

/*
 * Every TICK_MS: a connection whose handshake has not finished within
 * --handshake-timeout (a slowloris client dribbling its ClientHello, a server
 * that never answers), or that moved no byte for --idle-timeout, is reset
 * on both sides; only that connection, logged with its reason.
 */
static void on_tick(struct pxy_loop *l)
{
	uint64_t now = pxy_now_ns(), hs = (uint64_t)l->cfg->handshake_timeout_ms * 1000000ull,
		 idle = (uint64_t)l->cfg->idle_timeout_ms * 1000000ull;

	if (l->tap_cfg.sessions)
		pxy_sessions_expire(l->tap_cfg.sessions, now, 64);
	if (l->tap_cfg.keys) {
		/* what the key log gained; sessions waiting for their secret look again */
		pxy_keystore_refresh(l->tap_cfg.keys, now);
		for (unsigned i = 0; i < l->max_conns; i++)
			if (l->conns[i] && l->conns[i]->state == CS_OPEN && l->conns[i]->tap)
				pxy_tap_poke(l->conns[i]->tap);
	}
	for (unsigned i = 0; (hs || idle) && i < l->max_conns; i++) {
		struct conn *c = l->conns[i];
		enum pxy_reason r;

		if (!c || c->state != CS_OPEN || !c->tap)
			continue;
		if (hs && now - c->t_start > hs && !pxy_tap_handshake_done(c->tap)) {
			r = PXY_R_HANDSHAKE_TIMEOUT;
			l->st.handshake_timeouts++;
			pxy_warn("id=%s handshake not finished after %u ms (a slow or stalled peer): resetting both sides",
				 c->id, l->cfg->handshake_timeout_ms);
		} else if (idle && now - c->last_active > idle) {
			r = PXY_R_IDLE_TIMEOUT;
			l->st.idle_timeouts++;
			pxy_info("id=%s idle for %u ms: resetting both sides", c->id, l->cfg->idle_timeout_ms);
		} else {
			continue;
		}
		pxy_tap_set_reason(c->tap, r);
		c->state = CS_RESETTING;
		c->close_kind = "reset";
		conn_step(l, c);
	}
}

/* ---- the shared session store ----------------------------------------------- */

static void redis_stored(void *ctx, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s, uint32_t ttl_s)
{
	struct pxy_loop *l = ctx;

	pxy_redis_set(l->cfg->redis, key, s, ttl_s);
}

static void redis_missed(void *ctx, const uint8_t key[PXY_SESSION_KEY_LEN])
{
	struct pxy_loop *l = ctx;

	pxy_redis_get(l->cfg->redis, key);
}

/* a forwarded secret's key in the shared store: the client random and the label, hashed */
static void fwd_key(const uint8_t random[32], enum pxy_key_label label, uint8_t key[PXY_SESSION_KEY_LEN])
{
	uint8_t id[33];

	memcpy(id, random, 32);
	id[32] = (uint8_t)label;
	pxy_session_key(PXY_SESS_FWDKEY, id, sizeof(id), key);
}

/* a secret this node's sources gave: into the shared store, sealed like a session */
static void fwd_published(void *ctx, const uint8_t random[32], enum pxy_key_label label, const uint8_t *secret,
			  size_t len, uint32_t ttl_s)
{
	struct pxy_loop *l = ctx;
	uint8_t key[PXY_SESSION_KEY_LEN];
	struct pxy_session s;

	memset(&s, 0, sizeof(s));
	memcpy(s.ms, secret, len);
	s.version = PXY_SESS_FWD_VERSION;
	s.suite = (uint16_t)((unsigned)label << 8 | len);
	fwd_key(random, label, key);
	pxy_redis_set(l->cfg->redis, key, &s, ttl_s);
	pxy_wipe(&s, sizeof(s));
}

/* a session waits for a secret no source here has: ask the shared store */
static void fwd_wanted(void *ctx, const uint8_t random[32], enum pxy_key_label label)
{
	struct pxy_loop *l = ctx;
	struct fwd_want *w = NULL;
	uint8_t key[PXY_SESSION_KEY_LEN];

	fwd_key(random, label, key);
	for (unsigned i = 0; i < PXY_ARRAY_LEN(l->fwd_want) && !w; i++)
		if (l->fwd_want[i].used && !memcmp(l->fwd_want[i].key, key, sizeof(key)))
			w = &l->fwd_want[i];
	if (!w) {
		w = &l->fwd_want[l->fwd_want_next++ % PXY_ARRAY_LEN(l->fwd_want)];
		memcpy(w->key, key, sizeof(key));
		memcpy(w->random, random, 32);
		w->label = (uint8_t)label;
		w->used = 1;
	}
	pxy_redis_get(l->cfg->redis, key); /* at most every 200 ms per key */
}

static void redis_found(void *ctx, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s, uint32_t ttl_s)
{
	struct pxy_loop *l = ctx;

	if (s->version == PXY_SESS_FWD_VERSION) {
		/* a forwarded secret another node published: for the session that asked */
		for (unsigned i = 0; i < PXY_ARRAY_LEN(l->fwd_want); i++) {
			struct fwd_want *w = &l->fwd_want[i];

			if (w->used && !memcmp(w->key, key, PXY_SESSION_KEY_LEN) && l->tap_cfg.keys &&
			    (s->suite >> 8) == w->label) {
				pxy_keystore_put_secret(l->tap_cfg.keys, w->random, (enum pxy_key_label)w->label, s->ms,
							s->suite & 0xff, pxy_now_ns());
				w->used = 0;
			}
		}
		return;
	}
	if (l->tap_cfg.sessions)
		pxy_sessions_put_shared(l->tap_cfg.sessions, key, s, ttl_s, pxy_now_ns());
}

/* Closed connections waiting for the store look again (and give up after 1 s); each may go. */
static void poke_awaiting(struct pxy_loop *l)
{
	struct conn *c = l->awaiting, *next;

	for (; c; c = next) {
		next = c->awaiting.next;
		pxy_tap_poke(c->tap); /* may free c */
	}
}

/* Sessions came from the store: resumptions waiting for them look again. */
static void on_redis(struct pxy_loop *l)
{
	if (!pxy_redis_poll(l->cfg->redis, redis_found, l))
		return;
	for (unsigned i = 0; i < l->max_conns; i++)
		if (l->conns[i] && l->conns[i]->tap)
			pxy_tap_poke(l->conns[i]->tap);
	poke_awaiting(l);
}

static void handle_cqe(struct pxy_loop *l, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct conn *c;

	if (ud & UD_PTR_BIT) {
		out_on_write(l, (struct wreq *)(uintptr_t)(ud & ~UD_PTR_BIT), cqe->res);
		return;
	}
	switch (ud_op(ud)) {
	case OP_ACCEPT:
		conn_on_accept(l, cqe->res, cqe->flags);
		return;
	case OP_ENGINE:
		drain_engine(l, 1);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_poll(l, l->cfg->tap.engine->event_fd, OP_ENGINE);
		return;
	case OP_SIGNAL:
		on_signal(l);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_poll(l, l->signal_fd, OP_SIGNAL);
		return;
	case OP_TICK:
		on_tick(l);
		if (!l->stopping || !l->reset_done)
			arm_tick(l);
		return;
	case OP_REDIS:
		on_redis(l);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			arm_poll(l, pxy_redis_event_fd(l->cfg->redis), OP_REDIS);
		return;
	case OP_ACCEPT_RETRY:
		l->accept_paused = 0; /* the loop re-arms the accept */
		return;
	case OP_MACCEPT:
	case OP_MRECV:
	case OP_MSEND:
		mhttp_complete(l, ud_op(ud), ud_slot(ud), cqe->res);
		return;
	default:
		if (ud_slot(ud) == LOOP_SLOT)
			return; /* the loop's own cancels */
		break;
	}
	c = ud_slot(ud) < l->max_conns ? l->conns[ud_slot(ud)] : NULL;
	if (!c) {
		/* cannot happen: a slot is freed only when its ops are all complete */
		pxy_err_log("completion for a free slot (op %u)", ud_op(ud));
		if ((cqe->flags & IORING_CQE_F_BUFFER) && cqe->res > 0) {
			l->bufs_held++;
			conn_recycle_buf(l, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		}
		return;
	}
	switch (ud_op(ud)) {
	case OP_CONNECT:
		conn_on_connect(l, c, cqe->res);
		break;
	case OP_CTIMEOUT:
	case OP_CANCEL:
		c->ops--;
		conn_step(l, c);
		break;
	case OP_RECV:
		conn_on_recv(l, c, ud_dir(ud), cqe->res, cqe->flags);
		break;
	case OP_SEND:
		conn_on_send(l, c, ud_dir(ud), cqe->res);
		break;
	default:
		break;
	}
}

int pxy_loop_run(struct pxy_loop *l)
{
	uint64_t stop_deadline = 0;

	/* this thread is the ring's one submitter from now on (liburing 2.3 declares
	 * io_uring_enable_rings but does not export it: the system call itself) */
	if (l->ring_disabled) {
		if (syscall(__NR_io_uring_register, l->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) {
			pxy_err_log("io_uring: cannot enable the ring: %s", strerror(errno));
			return PXY_E_IO;
		}
		l->ring_disabled = 0;
	}
	conn_arm_accept(l);
	if (l->metrics_fd >= 0)
		mhttp_arm_accept(l);
	arm_poll(l, l->cfg->tap.engine->event_fd, OP_ENGINE);
	arm_poll(l, l->signal_fd, OP_SIGNAL);
	if (l->cfg->redis && l->tap_cfg.sessions)
		arm_poll(l, pxy_redis_event_fd(l->cfg->redis), OP_REDIS);
	arm_tick(l); /* always: a reload may turn the timeouts on */
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int r;

		if (l->stopping) {
			if (!l->reset_done && (l->st.active == 0 || pxy_now_ns() > l->drain_deadline)) {
				if (l->st.active)
					pxy_info("drain time over: resetting %" PRIu64 " connections", l->st.active);
				reset_all(l);
			}
			/* then up to 2 s for the engine's last jobs and the log lines */
			if (l->reset_done && !stop_deadline)
				stop_deadline = pxy_now_ns() + 2000000000ull;
			if (l->reset_done && ((l->st.active == 0 && l->finishing == 0 && l->writes_inflight == 0) ||
					      pxy_now_ns() > stop_deadline))
				break;
		}
		if (l->stopping) {
			struct __kernel_timespec ts = { 0, 50000000 };
			r = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
		} else if (__atomic_load_n(&l->cfg->tap.engine->stats.inflight, __ATOMIC_RELAXED) || l->awaiting) {
			/* jobs out: wake at least every 100 ms so the engine's flush can notice a hung card */
			struct __kernel_timespec ts = { 0, 100000000 };
			r = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
		} else {
			r = io_uring_submit_and_wait(&l->ring, 1);
		}
		if (r < 0 && r != -EINTR && r != -ETIME && r != -EBUSY) {
			pxy_err_log("io_uring: %s", strerror(-r));
			return PXY_E_IO;
		}
		io_uring_for_each_cqe(&l->ring, head, cqe) {
			handle_cqe(l, cqe);
			/* collect engine results within long batches too, so that a burst of
			 * records does not fill --max-pending with jobs that are already done */
			if ((++n & 15) == 0)
				drain_engine(l, 0);
		}
		io_uring_cq_advance(&l->ring, n);
		if (l->starved && l->recycled)
			conn_rearm_starved(l);
		if (!l->accept_armed && !l->accept_paused && !l->stopping && l->listen_fd >= 0)
			conn_arm_accept(l);
		if (l->awaiting)
			poke_awaiting(l);
		end_turn(l);
	}
	dump_stats(l);
	return PXY_OK;
}

/* ---- setup ------------------------------------------------------------------ */

static int open_listener(const struct sockaddr_storage *addr, socklen_t len, int transparent, int reuseport)
{
	int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* workers: one listener each on the same address; the kernel spreads the connections */
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	/* TPROXY hands over connections to any address: the listener must accept them (needs
	 * CAP_NET_ADMIN; without it REDIRECT still works) */
	if (transparent &&
	    setsockopt(fd, addr->ss_family == AF_INET6 ? SOL_IPV6 : SOL_IP,
		       addr->ss_family == AF_INET6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, &one, sizeof(one)) < 0)
		pxy_info("--backend original: no IP_TRANSPARENT on the listener (%s): REDIRECT/DNAT works, TPROXY "
			 "does not", strerror(errno));
	if (bind(fd, (const struct sockaddr *)addr, len) < 0 || listen(fd, 4096) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

void pxy_loop_signal_set(sigset_t *mask)
{
	sigemptyset(mask);
	sigaddset(mask, SIGINT);
	sigaddset(mask, SIGTERM);
	sigaddset(mask, SIGUSR1);
	sigaddset(mask, SIGHUP);
}

int pxy_loop_new(const struct pxy_loop_cfg *cfg, struct pxy_loop **out)
{
	struct pxy_loop *l = calloc(1, sizeof(*l));
	struct io_uring_params p;
	struct io_uring_buf_reg reg;
	sigset_t mask;
	void *mem = NULL;
	char addr[64];
	int r;

	*out = NULL;
	if (!l)
		return PXY_E_NOMEM;
	l->cur = *cfg;
	l->cfg = &l->cur;
	pxy_idset_get(l->cur.idset);
	if (cfg->plaintext_dir && !(l->plaintext_dir = strdup(cfg->plaintext_dir))) {
		free(l);
		return PXY_E_NOMEM;
	}
	l->listen_fd = l->signal_fd = l->metrics_fd = l->feed_fd = -1;
	for (unsigned i = 0; i < METRICS_SLOTS; i++)
		l->mc[i].fd = -1;
	l->pid = (unsigned)getpid();
	snprintf(l->name, sizeof(l->name), "%s", cfg->name ? cfg->name : "");
	l->tap_cfg = cfg->tap;
	l->tap_cfg.counters = &l->tc;
	if (cfg->sessions) {
		l->tap_cfg.sessions = cfg->sessions; /* the workers' shared cache: theirs to free */
		l->shared_cache = 1;
	} else if (cfg->session_cache) {
		l->tap_cfg.sessions = pxy_sessions_new(cfg->session_cache, cfg->session_lifetime_s);
		if (!l->tap_cfg.sessions) {
			pxy_idset_put(l->cur.idset);
			free(l->plaintext_dir);
			free(l);
			return PXY_E_NOMEM;
		}
		if (cfg->redis) {
			struct pxy_sessions_remote rm = { .ctx = l, .stored = redis_stored, .missed = redis_missed };
			pxy_sessions_set_remote(l->tap_cfg.sessions, &rm);
			l->tap_cfg.shared_sessions = 1;
		}
	}
	if (cfg->redis && l->tap_cfg.keys) {
		/* forwarded secrets reach every node through the shared store, sealed like sessions */
		struct pxy_keystore_remote kr = { .ctx = l, .published = fwd_published, .wanted = fwd_wanted };

		pxy_keystore_set_remote(l->tap_cfg.keys, &kr);
	}
	l->max_conns = cfg->max_conns;
	l->nbufs = cfg->buffers;
	l->buf_size = cfg->buffer_size;

	/*
	 * One thread submits and reaps (SINGLE_ISSUER), and completions' task
	 * work runs when it waits, in a batch, rather than interrupting it
	 * (DEFER_TASKRUN, Linux 6.1); the ring is enabled by the thread that
	 * runs the loop (R_DISABLED until then). Older kernels: cooperative task
	 * work (5.19), else plain.
	 */
	{
		static const unsigned modes[] = {
			IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
			IORING_SETUP_COOP_TASKRUN,
			0,
		};

		for (size_t i = 0; i < PXY_ARRAY_LEN(modes); i++) {
			memset(&p, 0, sizeof(p));
			p.flags = IORING_SETUP_CQSIZE | modes[i];
			p.cq_entries = 16384;
			r = io_uring_queue_init_params(4096, &l->ring, &p);
			if (r != -EINVAL)
				break;
		}
		l->ring_disabled = r == 0 && (p.flags & IORING_SETUP_R_DISABLED);
	}
	if (r < 0) {
		pxy_err_log("io_uring_queue_init: %s (is io_uring allowed on this system?)", strerror(-r));
		if (!l->shared_cache)
			pxy_sessions_free(l->tap_cfg.sessions);
		pxy_idset_put(l->cur.idset);
		free(l->plaintext_dir);
		free(l);
		return PXY_E_IO;
	}
	if (!(p.features & IORING_FEAT_NODROP))
		pxy_warn("kernel lacks IORING_FEAT_NODROP: completions may be lost under overload");

	/* the provided-buffer ring: buffers are lent to recvs and come back after the send */
	if (posix_memalign(&mem, 4096, (size_t)l->nbufs * sizeof(struct io_uring_buf)) != 0)
		goto nomem;
	l->br = mem;
	if (posix_memalign(&mem, 4096, (size_t)l->nbufs * l->buf_size) != 0)
		goto nomem;
	l->bufs = mem;
	l->q_next = calloc(l->nbufs, sizeof(uint32_t));
	l->q_len = calloc(l->nbufs, sizeof(uint32_t));
	l->q_off = calloc(l->nbufs, sizeof(uint32_t));
	l->conns = calloc(l->max_conns, sizeof(*l->conns));
	l->free_slots = calloc(l->max_conns, sizeof(uint32_t));
	if (!l->q_next || !l->q_len || !l->q_off || !l->conns || !l->free_slots)
		goto nomem;
	for (unsigned i = 0; i < l->max_conns; i++)
		l->free_slots[i] = l->max_conns - 1 - i;
	l->nfree = l->max_conns;
	io_uring_buf_ring_init(l->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)l->br;
	reg.ring_entries = l->nbufs;
	reg.bgid = BGID;
	r = io_uring_register_buf_ring(&l->ring, &reg, 0);
	if (r < 0) {
		pxy_err_log("io_uring_register_buf_ring: %s (kernel 5.19 or later is required)", strerror(-r));
		goto fail;
	}
	l->br_mask = (unsigned)io_uring_buf_ring_mask(l->nbufs);
	for (unsigned i = 0; i < l->nbufs; i++)
		io_uring_buf_ring_add(l->br, buf_addr(l, i), l->buf_size, (unsigned short)i, l->br_mask, (int)i);
	io_uring_buf_ring_advance(l->br, (int)l->nbufs);

	pxy_loop_signal_set(&mask);
	if (cfg->ctl_fd >= 0) {
		l->signal_fd = cfg->ctl_fd;
		l->ctl = 1;
	} else {
		l->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	}
	if (l->signal_fd < 0) {
		pxy_err_log("signalfd: %s", strerror(errno));
		goto fail;
	}
	if ((cfg->keylog_fd >= 0 && !(l->keylog = out_wfile_adopt(cfg->keylog_fd, "key log"))) ||
	    (cfg->connlog_fd >= 0 && !(l->connlog = out_wfile_adopt(cfg->connlog_fd, "connection log"))) ||
	    (cfg->pcap && !(l->cap_pt = out_capture_new(cfg->pcap, cfg->pcap_rotate, &l->st.pcap_packets,
							&l->st.pcap_rotations))) ||
	    (cfg->pcap_tls && !(l->cap_ct = out_capture_new(cfg->pcap_tls, cfg->pcap_rotate, &l->st.tls_packets,
							    &l->st.tls_rotations))))
		goto nomem;
	if (cfg->pcap_feed && !(l->feed_path = strdup(cfg->pcap_feed)))
		goto nomem;
	/* the paths the loop keeps are its own copies: the caller's may go at a reload */
	l->cur.pcap = l->cap_pt ? l->cap_pt->path : NULL;
	l->cur.pcap_tls = l->cap_ct ? l->cap_ct->path : NULL;
	l->cur.pcap_feed = l->feed_path;
	l->listen_fd = open_listener(&cfg->listen_addr, cfg->listen_len, cfg->backend_original, cfg->reuseport);
	if (l->listen_fd < 0) {
		pxy_addr_str((const struct sockaddr *)&cfg->listen_addr, addr, sizeof(addr));
		pxy_err_log("cannot listen on %s: %s", addr, strerror(-l->listen_fd));
		l->listen_fd = -1;
		goto fail;
	}
	{
		socklen_t bl = sizeof(l->listen_bound);
		getsockname(l->listen_fd, (struct sockaddr *)&l->listen_bound, &bl);
	}
	if (cfg->metrics_len) {
		l->metrics_fd = open_listener(&cfg->metrics_addr, cfg->metrics_len, 0, 0);
		if (l->metrics_fd < 0) {
			pxy_addr_str((const struct sockaddr *)&cfg->metrics_addr, addr, sizeof(addr));
			pxy_err_log("cannot listen for --metrics on %s: %s", addr, strerror(-l->metrics_fd));
			l->metrics_fd = -1;
			goto fail;
		}
	}
	l->started_unix_us = pxy_unix_us();
	*out = l;
	return PXY_OK;
nomem:
	pxy_err_log("out of memory setting up %u buffers of %u bytes", l->nbufs, l->buf_size);
fail:
	pxy_loop_free(l);
	return PXY_E_IO;
}

void pxy_loop_listen_addr(const struct pxy_loop *l, struct sockaddr_storage *ss, socklen_t *len)
{
	*len = sizeof(*ss);
	getsockname(l->listen_fd, (struct sockaddr *)ss, len);
}

int pxy_loop_metrics_addr(const struct pxy_loop *l, struct sockaddr_storage *ss, socklen_t *len)
{
	*len = sizeof(*ss);
	return l->metrics_fd >= 0 && getsockname(l->metrics_fd, (struct sockaddr *)ss, len) == 0;
}

void pxy_loop_free(struct pxy_loop *l)
{
	struct pxy_engine *e;

	if (!l)
		return;
	/* collect the jobs of closed connections so that their taps are freed */
	e = l->cfg->tap.engine;
	for (int i = 0; e && i < 500 && __atomic_load_n(&e->stats.inflight, __ATOMIC_RELAXED) > 0; i++) {
		struct pollfd pfd = { .fd = e->event_fd, .events = POLLIN };

		poll(&pfd, 1, 10);
		drain_engine(l, 1);
	}
	/* closed connections still waiting for the shared store: no answer will come now */
	while (l->awaiting) {
		struct conn *c = l->awaiting;

		l->awaiting = c->awaiting.next;
		free(c->ct_hold);
		pxy_tap_close(c->tap);
		out_wfile_put(c->pf[0]);
		out_wfile_put(c->pf[1]);
		pxy_idset_put(c->idset);
		free(c);
	}
	/* anything still open is reset; no completion can arrive after queue_exit */
	for (unsigned i = 0; l->conns && i < l->max_conns; i++) {
		struct conn *c = l->conns[i];

		if (!c)
			continue;
		for (int d = 0; d < 2; d++) {
			if (c->fd[d] >= 0)
				conn_reset_fd(c->fd[d]);
			out_wfile_put(c->pf[d]);
		}
		pxy_tap_close(c->tap);
		pxy_idset_put(c->idset);
		free(c->ct_hold);
		free(c);
	}
	if (l->ring.ring_fd > 0)
		io_uring_queue_exit(&l->ring);
	out_finish_pending(l);
	if (l->listen_fd >= 0)
		close(l->listen_fd);
	if (l->metrics_fd >= 0)
		close(l->metrics_fd);
	for (unsigned i = 0; i < METRICS_SLOTS; i++)
		if (l->mc[i].fd >= 0) {
			close(l->mc[i].fd);
			free(l->mc[i].resp);
		}
	if (l->signal_fd >= 0)
		close(l->signal_fd);
	out_wfile_put(l->keylog);
	out_wfile_put(l->connlog);
	out_capture_free(l->cap_pt);
	out_capture_free(l->cap_ct);
	if (l->feed_fd >= 0)
		close(l->feed_fd);
	free(l->feed_path);
	free(l->br);
	free(l->bufs);
	free(l->q_next);
	free(l->q_len);
	free(l->q_off);
	free(l->conns);
	free(l->free_slots);
	if (!l->shared_cache)
		pxy_sessions_free(l->tap_cfg.sessions);
	pxy_idset_put(l->cur.idset);
	free(l->plaintext_dir);
	free(l);
}

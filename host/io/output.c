#include "io/loop_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sink/pcap.h"
#include "sink/sinks.h"
#include "util/ct.h"
#include "util/log.h"
#include "util/util.h"

/* ---- file sinks ----------------------------------------------------------- */

static struct wfile *wfile_open(const char *path, int append)
{
	struct wfile *f = calloc(1, sizeof(*f));
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);

	if (!f)
		return NULL;
	f->fd = open(path, flags, 0600);
	if (f->fd < 0) {
		pxy_warn("cannot open %s: %s", path, strerror(errno));
		free(f);
		return NULL;
	}
	f->refs = 1;
	f->off = append ? UINT64_MAX : 0;
	f->bounded = 1;
	snprintf(f->path, sizeof(f->path), "%s", path);
	return f;
}

/* A file the caller opened (O_APPEND), written through the ring; the loop keeps its own descriptor. */
struct wfile *out_wfile_adopt(int fd, const char *name)
{
	struct wfile *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->fd = dup(fd);
	if (f->fd < 0) {
		free(f);
		return NULL;
	}
	f->refs = 1;
	f->off = UINT64_MAX;
	snprintf(f->path, sizeof(f->path), "%s", name);
	return f;
}

void out_wfile_put(struct wfile *f)
{
	if (f && --f->refs == 0) {
		close(f->fd);
		free(f);
	}
}

#define SPARE_CHUNKS 32 /* 2 MiB kept by the loop for reuse: no mmap and page faults per chunk */

/* key log lines, secrets blocks and plaintext: nothing of them stays in memory that is reused or freed */
static void chunk_put(struct pxy_loop *l, struct wchunk *c)
{
	pxy_wipe(c->data, c->len);
	c->len = 0;
	if (l->nspare < SPARE_CHUNKS) {
		c->next = l->spare;
		l->spare = c;
		l->nspare++;
		return;
	}
	free(c);
}

static struct wchunk *chunk_get(struct pxy_loop *l)
{
	struct wchunk *c = l->spare;

	if (c) {
		l->spare = c->next;
		l->nspare--;
	} else if (!(c = malloc(sizeof(*c)))) {
		return NULL;
	}
	c->next = NULL;
	c->len = 0;
	return c;
}

static void chunks_put(struct pxy_loop *l, struct wchunk *c)
{
	while (c) {
		struct wchunk *next = c->next;

		chunk_put(l, c);
		c = next;
	}
}

static void wreq_submit(struct pxy_loop *l, struct wreq *w)
{
	struct io_uring_sqe *sqe;
	size_t skip = w->done;
	unsigned i = 0;

	/* after a short write, the iovecs are made to start where it stopped (before the SQE
	 * takes them: the kernel reads them when it is submitted) */
	while (i < w->niov && skip >= w->iov[i].iov_len)
		skip -= w->iov[i++].iov_len;
	if (i) {
		memmove(w->iov, w->iov + i, (w->niov - i) * sizeof(w->iov[0]));
		w->niov -= i;
	}
	w->iov[0].iov_base = (uint8_t *)w->iov[0].iov_base + skip;
	w->iov[0].iov_len -= skip;
	if (w->off != UINT64_MAX)
		w->off += w->done;
	w->len -= w->done;
	w->done = 0;
	sqe = loop_get_sqe(l);
	io_uring_prep_writev(sqe, w->f->fd, w->iov, w->niov, w->off == UINT64_MAX ? (uint64_t)-1 : w->off);
	io_uring_sqe_set_data64(sqe, UD_PTR_BIT | (uint64_t)(uintptr_t)w);
}

static void pend_unlink(struct pxy_loop *l, struct wfile *f)
{
	if (f->pend_prev)
		f->pend_prev->pend_next = f->pend_next;
	else
		l->pending = f->pend_next;
	if (f->pend_next)
		f->pend_next->pend_prev = f->pend_prev;
	f->pend_prev = f->pend_next = NULL;
}

/* Up to WCHUNKS_PER_WRITE pending chunks become the write in flight. */
static void wfile_submit(struct pxy_loop *l, struct wfile *f)
{
	struct wreq *w;
	struct wchunk *c, *last = NULL;

	if (!f->pend_head || f->busy)
		return;
	w = calloc(1, sizeof(*w));
	if (!w)
		return; /* tried again at the end of the next turn */
	w->f = f;
	w->off = f->off == UINT64_MAX ? UINT64_MAX : f->off;
	for (c = f->pend_head; c && w->niov < WCHUNKS_PER_WRITE; c = c->next) {
		w->iov[w->niov].iov_base = c->data;
		w->iov[w->niov++].iov_len = c->len;
		w->len += c->len;
		last = c;
	}
	w->chunks = f->pend_head;
	f->pend_head = last->next;
	last->next = NULL;
	if (f->off != UINT64_MAX)
		f->off += w->len;
	w->total = w->len;
	f->busy = 1;
	if (f->pend_head) {
		/* chunks stay pending: the write takes a reference of its own */
		f->refs++;
		l->writes_inflight++;
	} else {
		/* the pending chunks' reference passes to the write */
		f->pend_tail = NULL;
		pend_unlink(l, f);
	}
	wreq_submit(l, w);
}

/* A file's bytes are written: they leave its backlog. */
static void backlog_done(struct pxy_loop *l, struct wfile *f, uint64_t n)
{
	f->backlog -= n;
	if (f->bounded)
		l->sink_backlog -= n;
}

/* Pending chunks that will never be written (the sink failed, or the loop is going). */
static void pend_drop(struct pxy_loop *l, struct wfile *f)
{
	if (!f->pend_head)
		return;
	for (struct wchunk *c = f->pend_head; c; c = c->next)
		backlog_done(l, f, c->len);
	chunks_put(l, f->pend_head);
	f->pend_head = f->pend_tail = NULL;
	pend_unlink(l, f);
	l->writes_inflight--;
	out_wfile_put(f);
}

static void wfile_write(struct pxy_loop *l, struct wfile *f, const void *p, size_t n)
{
	const uint8_t *src = p;

	if (!f || f->failed || n == 0)
		return;
	/*
	 * A plaintext or capture file whose writes fall behind the traffic by more
	 * than --max-pending (or all of them by --max-pending-total) stops, as
	 * decryption stops taking records past those limits: forwarding never
	 * waits, and memory stays bounded; the file holds a prefix of what was sent.
	 */
	if (f->bounded && (f->backlog + n > l->cfg->tap.max_pending ||
			   (l->cfg->tap.max_pending_total && l->sink_backlog + n > l->cfg->tap.max_pending_total))) {
		pxy_warn("%s: the writes fell %llu bytes behind (--max-pending %llu, --max-pending-total %llu): this "
			 "file stops here",
			 f->path, (unsigned long long)f->backlog, (unsigned long long)l->cfg->tap.max_pending,
			 (unsigned long long)l->cfg->tap.max_pending_total);
		f->failed = 1;
		l->st.sink_write_errors++;
		pend_drop(l, f);
		return;
	}
	if (!f->pend_head) {
		/* the file's pending chunks hold a reference and count as a write until submitted */
		f->refs++;
		l->writes_inflight++;
		f->pend_prev = NULL;
		f->pend_next = l->pending;
		if (l->pending)
			l->pending->pend_prev = f;
		l->pending = f;
	}
	while (n) {
		struct wchunk *c = f->pend_tail;
		size_t take;

		if (!c || c->len == WCHUNK) {
			c = chunk_get(l);
			if (!c) {
				l->st.sink_write_errors++;
				break;
			}
			if (f->pend_tail)
				f->pend_tail->next = c;
			else
				f->pend_head = c;
			f->pend_tail = c;
		}
		take = WCHUNK - c->len < n ? WCHUNK - c->len : n;
		memcpy(c->data + c->len, src, take);
		c->len += take;
		src += take;
		n -= take;
		f->backlog += take;
		if (f->bounded)
			l->sink_backlog += take;
	}
	if (!f->pend_head) { /* nothing could be kept */
		pend_unlink(l, f);
		l->writes_inflight--;
		out_wfile_put(f);
	}
}

void out_flush_writes(struct pxy_loop *l)
{
	struct wfile *f = l->pending, *next;

	for (; f; f = next) {
		next = f->pend_next;
		wfile_submit(l, f); /* a busy file's chunks go when its write ends */
	}
}

void out_finish_pending(struct pxy_loop *l)
{
	while (l->pending) {
		struct wfile *f = l->pending;

		/* the ring is gone: a file with no write in flight gets its last bytes now */
		for (struct wchunk *c = f->pend_head; c && !f->failed && !f->busy; c = c->next) {
			for (size_t done = 0; done < c->len;) {
				ssize_t r = f->off == UINT64_MAX ? write(f->fd, c->data + done, c->len - done)
								 : pwrite(f->fd, c->data + done, c->len - done, (off_t)f->off);

				if (r <= 0) {
					f->failed = 1;
					break;
				}
				done += (size_t)r;
				if (f->off != UINT64_MAX)
					f->off += (uint64_t)r;
			}
		}
		pend_drop(l, f);
	}
	while (l->spare) {
		struct wchunk *c = l->spare;

		l->spare = c->next;
		free(c);
	}
	l->nspare = 0;
}

void out_on_write(struct pxy_loop *l, struct wreq *w, int res)
{
	struct wfile *f = w->f;

	if (res > 0 && w->done + (size_t)res < w->len) {
		w->done += (size_t)res; /* short write: continue from where it stopped */
		wreq_submit(l, w);
		return;
	}
	l->writes_inflight--;
	f->busy = 0;
	backlog_done(l, f, w->total);
	if (res < 0) {
		if (!f->failed)
			pxy_warn("write to %s failed: %s; this sink stops", f->path, strerror(-res));
		f->failed = 1;
		l->st.sink_write_errors++;
		pend_drop(l, f);
	} else {
		l->st.sink_bytes += w->total;
		wfile_submit(l, f); /* what came in the meantime */
	}
	chunks_put(l, w->chunks);
	free(w);
	out_wfile_put(f);
}

/* ---- captures (pcapng) ------------------------------------------------------ */

struct capture *out_capture_new(const char *path, uint64_t rotate, uint64_t *packets, uint64_t *rotated)
{
	struct capture *cp = calloc(1, sizeof(*cp));

	if (!cp || !(cp->path = strdup(path))) {
		free(cp);
		return NULL;
	}
	cp->rotate = rotate;
	cp->packets = packets;
	cp->rotated = rotated;
	return cp;
}

void out_capture_free(struct capture *cp)
{
	if (!cp)
		return;
	out_wfile_put(cp->f);
	free(cp->path);
	free(cp);
}

/* The pcapng block at p + o (its length, 0 past the last whole one); its type in *type. */
static uint32_t pcap_block(const uint8_t *p, size_t n, size_t o, uint32_t *type)
{
	uint32_t len;

	if (o + 8 > n)
		return 0;
	memcpy(type, p + o, 4);
	memcpy(&len, p + o + 4, 4);
	return len >= 12 && len <= n - o ? len : 0;
}

/* Append whole blocks; a new file (rotated, or the first) starts with its headers. */
static void capture_write(struct pxy_loop *l, struct capture *cp, const uint8_t *p, size_t n)
{
	uint8_t head[64];
	size_t hn;
	uint32_t type;

	if (!cp || !n)
		return;
	if (cp->f && cp->rotate && cp->written + n > cp->rotate && cp->written > 64) {
		char to[600];

		snprintf(to, sizeof(to), "%s.%u", cp->path, ++cp->rotations);
		if (rename(cp->path, to) < 0)
			pxy_warn("capture %s: cannot rotate to %s: %s", cp->path, to, strerror(errno));
		out_wfile_put(cp->f); /* writes in flight finish into the renamed file */
		cp->f = NULL;
		(*cp->rotated)++;
	}
	if (!cp->f) {
		cp->f = wfile_open(cp->path, 0);
		if (!cp->f) {
			l->st.sink_write_errors++;
			return;
		}
		hn = pxy_pcap_header(head, sizeof(head));
		wfile_write(l, cp->f, head, hn);
		cp->written = hn;
	}
	wfile_write(l, cp->f, p, n);
	cp->written += n;
	for (size_t o = 0, len; (len = pcap_block(p, n, o, &type)); o += len)
		if (type == 6) /* an Enhanced Packet Block */
			(*cp->packets)++;
}

/*
 * The live feed: whole packet blocks written to a FIFO without ever waiting.
 * A block is under PIPE_BUF, so each write is all or nothing: when the reader
 * lags, the pipe is full and the packet is dropped (counted). Without a
 * reader, the FIFO is tried again once a second; a reader that leaves
 * (EPIPE) is let go.
 */
static void feed_write(struct pxy_loop *l, const uint8_t *p, size_t n)
{
	size_t o = 0, len;
	uint32_t type;

	if (!l->cfg->pcap_feed || !n)
		return;
	if (l->feed_fd < 0) {
		uint64_t now = pxy_now_ns();
		uint8_t head[64];
		size_t hn = pxy_pcap_header(head, sizeof(head));

		if (now - l->feed_last_try < 1000000000ull)
			goto drop;
		l->feed_last_try = now;
		l->feed_fd = open(l->cfg->pcap_feed, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (l->feed_fd < 0)
			goto drop; /* ENXIO: no reader yet */
		if (write(l->feed_fd, head, hn) != (ssize_t)hn) {
			close(l->feed_fd);
			l->feed_fd = -1;
			goto drop;
		}
		l->st.feed_opens++;
	}
	for (; (len = pcap_block(p, n, o, &type)); o += len) {
		ssize_t w = write(l->feed_fd, p + o, len);

		if (w == (ssize_t)len) {
			l->st.feed_packets++;
		} else if (w < 0 && errno == EPIPE) {
			close(l->feed_fd);
			l->feed_fd = -1;
			goto drop;
		} else {
			l->st.feed_dropped++;
		}
	}
	return;
drop:
	/* this block and the rest */
	for (; (len = pcap_block(p, n, o, &type)); o += len)
		l->st.feed_dropped++;
}

/* n bytes of a connection as packets of its flow, to a capture (and the feed) */
void out_capture_data(struct pxy_loop *l, struct conn *c, int tls, enum pxy_dir d, const uint8_t *p, size_t n)
{
	struct pxy_pcap_flow *f = tls ? &c->fl_ct : &c->fl_pt;
	size_t cap = pxy_pcap_data_bound(n), m;
	uint8_t *buf;

	if (!f->family)
		return; /* addresses of different families (or unknown): no flow */
	buf = malloc(cap);
	if (!buf) {
		l->st.sink_write_errors++;
		return;
	}
	m = pxy_pcap_data(f, d, p, n, pxy_unix_us(), buf, cap);
	if (!tls) {
		capture_write(l, l->cap_pt, buf, m);
		feed_write(l, buf, m);
	} else if (c->ct_through) {
		capture_write(l, l->cap_ct, buf, m);
	} else if (c->ct_hold_len + m <= (1u << 20)) {
		uint8_t *nb = realloc(c->ct_hold, c->ct_hold_len + m);

		if (nb) {
			memcpy(nb + c->ct_hold_len, buf, m);
			c->ct_hold = nb;
			c->ct_hold_len += m;
		} else {
			l->st.sink_write_errors++;
		}
	} else {
		/* no secret after 1 MiB: what is held goes out without it */
		capture_write(l, l->cap_ct, c->ct_hold, c->ct_hold_len);
		capture_write(l, l->cap_ct, buf, m);
		free(c->ct_hold);
		c->ct_hold = NULL;
		c->ct_hold_len = 0;
		c->ct_through = 1;
	}
	free(buf);
}

/* The TLS packets held so far go out (after the secret, when there is one). */
static void capture_release(struct pxy_loop *l, struct conn *c)
{
	capture_write(l, l->cap_ct, c->ct_hold, c->ct_hold_len);
	free(c->ct_hold);
	c->ct_hold = NULL;
	c->ct_hold_len = 0;
	c->ct_through = 1;
}

/* The connection is over: both flows close with FINs. */
static void capture_end(struct pxy_loop *l, struct conn *c)
{
	uint8_t buf[3 * 128];
	size_t m;

	if (l->cap_ct) {
		capture_release(l, c);
		m = pxy_pcap_fin(&c->fl_ct, pxy_unix_us(), buf, sizeof(buf));
		capture_write(l, l->cap_ct, buf, m);
	}
	if (l->cap_pt || l->cfg->pcap_feed) {
		m = pxy_pcap_fin(&c->fl_pt, pxy_unix_us(), buf, sizeof(buf));
		capture_write(l, l->cap_pt, buf, m);
		feed_write(l, buf, m);
	}
}

/* tap hooks */
void out_hook_plaintext(void *ctx, enum pxy_dir d, const uint8_t *p, size_t n)
{
	struct conn *c = ctx;
	struct pxy_loop *l = c->l;

	if (l->cap_pt || l->cfg->pcap_feed)
		out_capture_data(l, c, 0, d, p, n);
	if (!l->plaintext_dir)
		return;
	if (!c->pf[d]) {
		char path[512];

		if (pxy_plaintext_path(path, sizeof(path), l->plaintext_dir, c->id, d) < 0)
			return;
		c->pf[d] = wfile_open(path, 0);
		if (!c->pf[d]) {
			l->st.sink_write_errors++;
			return;
		}
	}
	wfile_write(l, c->pf[d], p, n);
}

/* Secrets as key log lines: to the key log, and before the session's held packets into the capture
 * (which go out once every secret they need is there: `complete`). */
static void keylog_out(struct conn *c, const char *lines, size_t n, int complete)
{
	wfile_write(c->l, c->l->keylog, lines, n);
	if (c->l->cap_ct && n) {
		uint8_t dsb[2048];
		size_t m = pxy_pcap_dsb(dsb, sizeof(dsb), lines, n);

		capture_write(c->l, c->l->cap_ct, dsb, m);
		pxy_wipe(dsb, sizeof(dsb));
		if (complete)
			capture_release(c->l, c);
	}
}

void out_hook_keylog(void *ctx, const uint8_t cr[32], const uint8_t ms[48])
{
	char line[256];
	size_t n = pxy_keylog_line(line, sizeof(line), cr, ms);

	keylog_out(ctx, line, n, 1);
	pxy_wipe(line, sizeof(line));
}

void out_hook_keylog13(void *ctx, const char *lines, size_t len, int complete)
{
	keylog_out(ctx, lines, len, complete);
}

/* ---- the connection log ----------------------------------------------------- */

static void conn_log(struct pxy_loop *l, struct conn *c)
{
	char client[64] = "?", server[64] = "?", line[1024];
	struct pxy_conn_summary s;

	pxy_addr_str((const struct sockaddr *)&c->peer, client, sizeof(client));
	pxy_addr_str((const struct sockaddr *)&c->backend, server, sizeof(server));
	memset(&s, 0, sizeof(s));
	s.id = c->id;
	s.vserver = l->name[0] ? l->name : NULL;
	s.client = client;
	s.server = server;
	s.tap = pxy_tap_info(c->tap);
	s.outcome = pxy_tap_outcome(c->tap, &s.reason);
	s.bytes[0] = c->h[0].bytes;
	s.bytes[1] = c->h[1].bytes;
	s.duration_us = ((c->t_end ? c->t_end : pxy_now_ns()) - c->t_start) / 1000;
	s.close = c->close_kind ? c->close_kind : "fin";
	pxy_connlog_format(line, sizeof(line), &s);
	pxy_info("%s", line);
	l->outcomes[s.outcome & 3][s.reason < PXY_R__COUNT ? s.reason : 0]++;
	pxy_hist_observe(&l->conn_duration, s.duration_us * 1000);
	if (l->connlog) {
		char json[2048];
		size_t n;

		s.start_unix_us = c->t_start_unix_us;
		s.engine = l->cfg->engine_name;
		n = pxy_connlog_json(json, sizeof(json), &s);
		if (n)
			wfile_write(l, l->connlog, json, n);
		else
			l->st.sink_write_errors++;
	}
}

/* The tap has finished the connection's last jobs: log it and let it go. */
void out_hook_done(void *ctx)
{
	struct conn *c = ctx;
	struct pxy_loop *l = c->l;

	conn_log(l, c);
	capture_end(l, c);
	conn_list_remove(&l->awaiting, c, AWAITING);
	out_wfile_put(c->pf[0]);
	out_wfile_put(c->pf[1]);
	pxy_idset_put(c->idset);
	l->finishing--;
	free(c);
}


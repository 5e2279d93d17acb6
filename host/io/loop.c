#include "io/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sink/metrics.h"
#include "sink/pcap.h"
#include "util/addr.h"
#include "sink/sinks.h"
#include "tls/record.h"
#include "util/ct.h"
#include "util/log.h"
#include "util/util.h"

/*
 * Bytes the kernel writes through the ring (recv into a provided buffer or a
 * request buffer) are not seen by valgrind's memcheck, which only follows
 * syscalls: tell it they are defined. Free when not run under valgrind.
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define KERNEL_WROTE(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#endif
#endif
#ifndef KERNEL_WROTE
#define KERNEL_WROTE(p, n) ((void)(p), (void)(n))
#endif

/* ---- user_data: {op, dir, connection slot} or a pointer for file writes ---- */

/* linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h: the same value for both */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

enum op {
	OP_ACCEPT = 1,
	OP_CONNECT,
	OP_CTIMEOUT,
	OP_RECV,
	OP_SEND,
	OP_CANCEL,
	OP_ENGINE,
	OP_SIGNAL,
	OP_ACCEPT_RETRY,
	OP_MACCEPT, /* /metrics: accept, recv, send; slot = scrape slot */
	OP_MRECV,
	OP_MSEND,
	OP_REDIS, /* the session store's answers */
	OP_TICK,  /* the timeout sweep */
};

#define UD_PTR_BIT (1ull << 63)
#define LOOP_SLOT 0xffffffu
#define NO_BID UINT32_MAX
#define SEND_IOV 16
#define BGID 1

static inline uint64_t ud_make(unsigned op, unsigned dir, uint32_t slot)
{
	return ((uint64_t)slot << 8) | ((uint64_t)dir << 4) | op;
}
static inline unsigned ud_op(uint64_t ud) { return ud & 15u; }
static inline unsigned ud_dir(uint64_t ud) { return (ud >> 4) & 1u; }
static inline uint32_t ud_slot(uint64_t ud) { return (uint32_t)(ud >> 8); }

/* ---- state ---------------------------------------------------------------- */

/* A file the loop appends to (plaintext per connection and direction, key log). */
struct wfile {
	int fd;
	unsigned refs;  /* owner + writes in flight */
	uint64_t off;   /* next offset; UINT64_MAX: append at the file position */
	uint8_t failed;
	char path[512];
};

struct wreq {
	struct wfile *f;
	size_t len, done;
	uint64_t off;
	uint8_t data[];
};

enum cstate { CS_CONNECTING, CS_OPEN, CS_CLOSING, CS_REJECTING, CS_RESETTING };

struct half {
	uint32_t q_head, q_tail, q_count; /* queued ring buffers (bids) */
	uint64_t queued;                  /* bytes not yet sent */
	uint64_t bytes;                   /* bytes received from the source */
	uint8_t recv_armed, cancel_sent, sending, send_extra;
	uint8_t paused; /* reading stopped until the queue drains to half */
	uint8_t eof, shut, starved, failed;
	uint8_t extra[7]; /* an alert record to send after the queue */
	uint8_t extra_len, extra_off;
	struct iovec iov[SEND_IOV];
	struct msghdr msg;
};

struct conn;

/* a connection's place in one of the loop's lists */
struct clink {
	struct conn *prev, *next;
	uint8_t on;
};

struct conn {
	struct pxy_loop *l;
	uint32_t slot;
	char id[72];
	int fd[2]; /* [PXY_C2S] client (source of c2s), [PXY_S2C] server */
	enum cstate state;
	struct half h[2];
	struct pxy_tap *tap;
	unsigned ops;
	uint8_t reset_started;
	const char *close_kind;
	uint64_t t_start;
	uint64_t t_start_unix_us; /* wall clock at accept, for the JSON log */
	uint64_t last_active;     /* the last byte received either way (for --idle-timeout) */
	struct sockaddr_storage backend; /* where this connection goes (--backend, or its original destination) */
	socklen_t backend_len;
	struct sockaddr_storage peer;
	struct __kernel_timespec cto;
	struct wfile *pf[2];
	struct clink starved; /* waiting for ring buffers */
	uint64_t t_end; /* sockets closed; the tap may still be finishing */
	struct pxy_idset *idset; /* the identities it started under */
	struct clink awaiting; /* closed, its tap waiting for the shared session store */
	/* captures: the plaintext flow and the TLS flow; TLS packets held until the
	 * session's secret is known, so that its Decryption Secrets Block comes first */
	struct pxy_pcap_flow fl_pt, fl_ct;
	uint8_t *ct_hold;
	size_t ct_hold_len;
	uint8_t ct_through; /* write TLS packets at once (secret written, or given up) */
};

/* One /metrics client: its request, then the response being sent. */
#define METRICS_SLOTS 4
#define METRICS_REQ_MAX 4096
struct mconn {
	int fd; /* -1: free */
	size_t got;
	char req[METRICS_REQ_MAX];
	char *resp;
	size_t resp_len, sent;
};

struct pxy_loop {
	struct io_uring ring;
	const struct pxy_loop_cfg *cfg; /* = &cur */
	struct pxy_loop_cfg cur;        /* what runs now (a reload changes it) */
	char *plaintext_dir;            /* owned copy of cur.plaintext_dir */
	uint64_t reloads, reloads_refused;
	struct conn *awaiting; /* closed connections whose resumption waits for the shared store */
	struct capture *cap_pt, *cap_ct; /* --pcap, --pcap-tls */
	int feed_fd;                     /* --pcap-feed, while a reader has it open; -1 otherwise */
	char *feed_path;                 /* owned copy of cur.pcap_feed */
	uint64_t feed_last_try;
	struct sockaddr_storage listen_bound; /* the listener's own address (port 0 resolved) */
	int listen_fd, signal_fd;
	int ctl;                        /* signal_fd is the control pipe (cfg->ctl_fd), not a signalfd */
	int shared_cache;               /* tap_cfg.sessions is cfg->sessions: not this loop's to free */
	char name[40];                  /* the virtual server; "" when it is the only one */
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	unsigned nbufs, buf_size, br_mask;
	uint32_t *q_next, *q_len, *q_off;
	struct conn **conns;
	uint32_t *free_slots;
	unsigned nfree, max_conns;
	struct conn *starved;
	unsigned recycled;
	unsigned bufs_held; /* ring buffers lent out: in queues or being sent */
	uint8_t stopping, accept_armed, accept_paused;
	uint8_t reset_done;      /* stopping: the connections left were reset */
	uint64_t drain_deadline; /* stopping: when the drain ends */
	struct __kernel_timespec accept_backoff;
	uint64_t last_accept_warn;
	struct wfile *keylog;
	struct wfile *connlog; /* --conn-log: JSON lines */
	uint64_t next_id;
	unsigned pid;
	unsigned writes_inflight;
	unsigned finishing; /* closed connections whose taps still have jobs */
	struct pxy_loop_stats st;
	struct pxy_tap_counters tc;
	struct pxy_tap_cfg tap_cfg;
	/* /metrics */
	int metrics_fd;
	struct mconn mc[METRICS_SLOTS];
	uint64_t scrapes;
	uint64_t outcomes[4][PXY_R__COUNT]; /* connections ended, by outcome and reason */
	struct pxy_hist conn_duration;
	uint64_t started_unix_us;
};

static void conn_step(struct pxy_loop *l, struct conn *c);

/* ---- ring helpers --------------------------------------------------------- */

static struct io_uring_sqe *get_sqe(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	while (!sqe) {
		io_uring_submit(&l->ring);
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

static uint8_t *buf_addr(struct pxy_loop *l, uint32_t bid)
{
	return l->bufs + (size_t)bid * l->buf_size;
}

static void recycle(struct pxy_loop *l, uint32_t bid)
{
	io_uring_buf_ring_add(l->br, buf_addr(l, bid), l->buf_size, (unsigned short)bid, l->br_mask, 0);
	io_uring_buf_ring_advance(l->br, 1);
	l->recycled++;
	l->bufs_held--;
}

static void q_push(struct pxy_loop *l, struct half *h, uint32_t bid, uint32_t len)
{
	l->q_next[bid] = NO_BID;
	l->q_len[bid] = len;
	l->q_off[bid] = 0;
	if (h->q_tail == NO_BID)
		h->q_head = bid;
	else
		l->q_next[h->q_tail] = bid;
	h->q_tail = bid;
	h->q_count++;
	h->queued += len;
}

/* A small receive goes into the room left in the queue's last buffer, and its
 * own buffer straight back to the ring: a peer that sends in dribbles then
 * holds about as many buffers as it sent bytes, not one per segment. The last
 * buffer may be in a send already; the send covers only the bytes it had. */
static int q_append_small(struct pxy_loop *l, struct half *h, uint32_t bid, uint32_t len)
{
	uint32_t tail = h->q_tail;

	if (tail == NO_BID || len > l->buf_size / 4 || l->q_len[tail] + len > l->buf_size)
		return 0;
	memcpy(buf_addr(l, tail) + l->q_len[tail], buf_addr(l, bid), len);
	l->q_len[tail] += len;
	h->queued += len;
	recycle(l, bid);
	return 1;
}

static void q_drop(struct pxy_loop *l, struct half *h)
{
	while (h->q_head != NO_BID) {
		uint32_t bid = h->q_head;

		h->q_head = l->q_next[bid];
		recycle(l, bid);
	}
	h->q_tail = NO_BID;
	h->q_count = 0;
	h->queued = 0;
}

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
	snprintf(f->path, sizeof(f->path), "%s", path);
	return f;
}

/* A file the caller opened (O_APPEND), written through the ring; the loop keeps its own descriptor. */
static struct wfile *wfile_adopt(int fd, const char *name)
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

static void wfile_put(struct wfile *f)
{
	if (f && --f->refs == 0) {
		close(f->fd);
		free(f);
	}
}

static void wreq_submit(struct pxy_loop *l, struct wreq *w)
{
	struct io_uring_sqe *sqe = get_sqe(l);

	io_uring_prep_write(sqe, w->f->fd, w->data + w->done, (unsigned)(w->len - w->done),
			    w->off == UINT64_MAX ? (uint64_t)-1 : w->off + w->done);
	io_uring_sqe_set_data64(sqe, UD_PTR_BIT | (uint64_t)(uintptr_t)w);
}

static void wfile_write(struct pxy_loop *l, struct wfile *f, const void *p, size_t n)
{
	struct wreq *w;

	if (!f || f->failed || n == 0)
		return;
	w = malloc(sizeof(*w) + n);
	if (!w) {
		l->st.sink_write_errors++;
		return;
	}
	w->f = f;
	w->len = n;
	w->done = 0;
	w->off = f->off;
	if (f->off != UINT64_MAX)
		f->off += n;
	memcpy(w->data, p, n);
	f->refs++;
	l->writes_inflight++;
	wreq_submit(l, w);
}

static void on_write(struct pxy_loop *l, struct wreq *w, int res)
{
	if (res > 0 && w->done + (size_t)res < w->len) {
		w->done += (size_t)res; /* short write: continue from where it stopped */
		wreq_submit(l, w);
		return;
	}
	l->writes_inflight--;
	if (res < 0) {
		if (!w->f->failed)
			pxy_warn("write to %s failed: %s; this sink stops", w->f->path, strerror(-res));
		w->f->failed = 1;
		l->st.sink_write_errors++;
	} else {
		l->st.sink_bytes += w->len;
	}
	wfile_put(w->f);
	/* key log lines, secrets blocks and plaintext: nothing of them stays in freed memory */
	pxy_wipe(w->data, w->len);
	free(w);
}

/* ---- captures (pcapng) ------------------------------------------------------ */

/* A capture file: FILE, rotated to FILE.1, FILE.2, ... past --pcap-rotate bytes. */
struct capture {
	char *path;
	uint64_t rotate, written;
	unsigned rotations;
	struct wfile *f;
	uint64_t *packets, *rotated; /* the loop's counters */
};

static struct capture *capture_new(const char *path, uint64_t rotate, uint64_t *packets, uint64_t *rotated)
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

static void capture_free(struct capture *cp)
{
	if (!cp)
		return;
	wfile_put(cp->f);
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
		wfile_put(cp->f); /* writes in flight finish into the renamed file */
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
static void capture_data(struct pxy_loop *l, struct conn *c, int tls, enum pxy_dir d, const uint8_t *p, size_t n)
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
static void hook_plaintext(void *ctx, enum pxy_dir d, const uint8_t *p, size_t n)
{
	struct conn *c = ctx;
	struct pxy_loop *l = c->l;

	if (l->cap_pt || l->cfg->pcap_feed)
		capture_data(l, c, 0, d, p, n);
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

static void hook_keylog(void *ctx, const uint8_t cr[32], const uint8_t ms[48])
{
	struct conn *c = ctx;
	char line[256];
	size_t n = pxy_keylog_line(line, sizeof(line), cr, ms);

	wfile_write(c->l, c->l->keylog, line, n);
	if (c->l->cap_ct && n) {
		/* the secret first, then the session's packets held until now */
		uint8_t dsb[300];
		size_t m = pxy_pcap_dsb(dsb, sizeof(dsb), line, n);

		capture_write(c->l, c->l->cap_ct, dsb, m);
		pxy_wipe(dsb, sizeof(dsb));
		capture_release(c->l, c);
	}
	pxy_wipe(line, sizeof(line));
}

/* ---- connections ------------------------------------------------------------ */

/*
 * Intrusive lists of connections (the starved, the awaiting): a link in the
 * connection, the list's head in the loop, the link's offset naming which.
 */
#define CLINK(c, off) ((struct clink *)(void *)((char *)(c) + (off)))

static void clist_add(struct conn **head, struct conn *c, size_t off)
{
	struct clink *k = CLINK(c, off);

	if (k->on)
		return;
	k->prev = NULL;
	k->next = *head;
	if (*head)
		CLINK(*head, off)->prev = c;
	*head = c;
	k->on = 1;
}

static void clist_remove(struct conn **head, struct conn *c, size_t off)
{
	struct clink *k = CLINK(c, off);

	if (!k->on)
		return;
	if (k->prev)
		CLINK(k->prev, off)->next = k->next;
	else
		*head = k->next;
	if (k->next)
		CLINK(k->next, off)->prev = k->prev;
	k->prev = k->next = NULL;
	k->on = 0;
}

#define STARVED offsetof(struct conn, starved)
#define AWAITING offsetof(struct conn, awaiting)

/*
 * One receive at a time per direction, re-armed only while the queue has
 * room: a stalled peer then holds at most --max-queue plus one buffer of the
 * shared ring. (A multishot receive goes on filling buffers until its
 * cancellation lands, which let one stalled connection take the whole ring.)
 */
static void arm_recv(struct pxy_loop *l, struct conn *c, unsigned d)
{
	struct io_uring_sqe *sqe = get_sqe(l);

	io_uring_prep_recv(sqe, c->fd[d], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, ud_make(OP_RECV, d, c->slot));
	c->h[d].recv_armed = 1;
	c->h[d].cancel_sent = 0;
	c->ops++;
}

static void cancel_op(struct pxy_loop *l, struct conn *c, unsigned op, unsigned d)
{
	struct io_uring_sqe *sqe = get_sqe(l);

	io_uring_prep_cancel64(sqe, ud_make(op, d, c->slot), 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CANCEL, d, c->slot));
	c->ops++;
}

static void cancel_recv(struct pxy_loop *l, struct conn *c, unsigned d)
{
	struct half *h = &c->h[d];

	if (h->recv_armed && !h->cancel_sent) {
		h->cancel_sent = 1;
		cancel_op(l, c, OP_RECV, d);
	}
}

/* Send whatever is queued in direction d (then its alert record, if any) to the other fd. */
static void start_send(struct pxy_loop *l, struct conn *c, unsigned d)
{
	struct half *h = &c->h[d];
	struct io_uring_sqe *sqe;
	unsigned n = 0;

	if (h->sending || h->failed)
		return;
	for (uint32_t bid = h->q_head; bid != NO_BID && n < SEND_IOV; bid = l->q_next[bid]) {
		h->iov[n].iov_base = buf_addr(l, bid) + l->q_off[bid];
		h->iov[n].iov_len = l->q_len[bid] - l->q_off[bid];
		n++;
	}
	h->send_extra = 0;
	if (n == 0 && h->extra_off < h->extra_len) {
		h->iov[0].iov_base = h->extra + h->extra_off;
		h->iov[0].iov_len = (size_t)(h->extra_len - h->extra_off);
		h->send_extra = 1;
		n = 1;
	}
	if (n == 0)
		return;
	memset(&h->msg, 0, sizeof(h->msg));
	h->msg.msg_iov = h->iov;
	h->msg.msg_iovlen = n;
	sqe = get_sqe(l);
	io_uring_prep_sendmsg(sqe, c->fd[!d], &h->msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud_make(OP_SEND, d, c->slot));
	h->sending = 1;
	c->ops++;
}

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
static void hook_done(void *ctx)
{
	struct conn *c = ctx;
	struct pxy_loop *l = c->l;

	conn_log(l, c);
	capture_end(l, c);
	clist_remove(&l->awaiting, c, AWAITING);
	wfile_put(c->pf[0]);
	wfile_put(c->pf[1]);
	pxy_idset_put(c->idset);
	l->finishing--;
	free(c);
}

/* Both sockets go now; the record of the connection goes when its tap is done. */
static void conn_free(struct pxy_loop *l, struct conn *c, int rst)
{
	for (int d = 0; d < 2; d++) {
		q_drop(l, &c->h[d]);
		if (c->fd[d] >= 0) {
			if (rst) {
				/* SO_LINGER {1, 0}: close() sends RST instead of FIN */
				struct linger lg = { 1, 0 };
				setsockopt(c->fd[d], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			}
			close(c->fd[d]);
			c->fd[d] = -1;
		}
	}
	if (rst)
		l->st.closed_reset++;
	else
		l->st.closed_fin++;
	clist_remove(&l->starved, c, STARVED);
	l->conns[c->slot] = NULL;
	l->free_slots[l->nfree++] = c->slot;
	l->st.active--;
	l->finishing++;
	c->t_end = pxy_now_ns();
	if (pxy_tap_finish(c->tap)) /* else it may have called hook_done, which frees c */
		clist_add(&l->awaiting, c, AWAITING);
}

static void start_reset(struct conn *c, const char *why)
{
	if (c->state == CS_RESETTING)
		return;
	if (!c->close_kind || !strcmp(c->close_kind, "fin"))
		c->close_kind = why;
	c->state = CS_RESETTING;
}

/* Policy said no: alert handshake_failure to both sides, then reset both. */
static void start_reject(struct pxy_loop *l, struct conn *c)
{
	char line[1024];
	struct half *to_client = &c->h[PXY_S2C], *to_server = &c->h[PXY_C2S];
	const struct pxy_tap_info *ti = pxy_tap_info(c->tap);

	c->state = CS_REJECTING;
	c->close_kind = "reject";
	l->st.rejected++;
	/* expected: the certificate the SNI names, else the first configured */
	pxy_rejectlog_format(line, sizeof(line), c->id, ti, ti->expected ? ti->expected : l->cfg->expected);
	pxy_warn("%s", line);
	cancel_recv(l, c, PXY_C2S);
	cancel_recv(l, c, PXY_S2C);
	/* the held server flight never reaches the client (nothing of it was sent) */
	if (!to_client->sending)
		q_drop(l, to_client);
	pxy_rec_alert(to_client->extra, pxy_tap_alert_version(c->tap, PXY_S2C), 2, PXY_ALERT_HANDSHAKE_FAILURE);
	to_client->extra_len = 7;
	pxy_rec_alert(to_server->extra, pxy_tap_alert_version(c->tap, PXY_C2S), 2, PXY_ALERT_HANDSHAKE_FAILURE);
	to_server->extra_len = 7;
}

/* What a direction's queue holds of the shared ring: whole buffers, however
 * little each received. This is what --max-queue bounds. */
static uint64_t ring_held(const struct pxy_loop *l, const struct half *h)
{
	return (uint64_t)h->q_count * l->buf_size;
}

static void conn_step(struct pxy_loop *l, struct conn *c)
{
	uint64_t maxq = l->cfg->max_queue;

	for (;;) {
		switch (c->state) {
		case CS_CONNECTING:
			return;
		case CS_OPEN: {
			enum pxy_verdict v = pxy_tap_verdict(c->tap);

			/* the server's flight is held until the verdict, but not without bound */
			if (v == PXY_V_PENDING && ring_held(l, &c->h[PXY_S2C]) >= maxq) {
				pxy_tap_hold_overflow(c->tap);
				v = pxy_tap_verdict(c->tap);
			}
			if (v == PXY_V_REJECT) {
				start_reject(l, c);
				continue;
			}
			for (unsigned d = 0; d < 2; d++) {
				struct half *h = &c->h[d];
				int may_send = d == PXY_C2S || v == PXY_V_ALLOW;

				if (may_send)
					start_send(l, c, d);
				if (may_send && h->eof && !h->shut && !h->sending && h->q_count == 0) {
					/* propagate the half-close */
					shutdown(c->fd[!d], SHUT_WR);
					h->shut = 1;
				}
				if (h->eof || h->recv_armed || h->starved)
					continue;
				/* back-pressure: read on only while the other side keeps up */
				if (ring_held(l, h) < maxq && (!h->paused || ring_held(l, h) <= maxq / 2)) {
					h->paused = 0;
					arm_recv(l, c, d);
				} else if (!h->paused) {
					h->paused = 1;
					l->st.recv_paused++;
				}
			}
			if (c->h[0].shut && c->h[1].shut) {
				c->state = CS_CLOSING;
				continue;
			}
			return;
		}
		case CS_CLOSING:
			if (c->ops == 0)
				conn_free(l, c, 0);
			return;
		case CS_REJECTING: {
			int busy = 0;

			for (unsigned d = 0; d < 2; d++) {
				struct half *h = &c->h[d];

				start_send(l, c, d);
				busy |= h->sending || (!h->failed && (h->q_count || h->extra_off < h->extra_len));
			}
			if (busy)
				return;
			c->state = CS_RESETTING;
			continue;
		}
		case CS_RESETTING:
			if (!c->reset_started) {
				c->reset_started = 1;
				for (unsigned d = 0; d < 2; d++) {
					cancel_recv(l, c, d);
					if (c->h[d].sending)
						cancel_op(l, c, OP_SEND, d);
				}
			}
			if (c->ops == 0)
				conn_free(l, c, 1);
			return;
		}
	}
}

/* ---- completions ------------------------------------------------------------ */

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void reset_fd(int fd)
{
	struct linger lg = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void arm_accept(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe = get_sqe(l);

	io_uring_prep_multishot_accept(sqe, l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT, 0, LOOP_SLOT));
	l->accept_armed = 1;
}

/* Stop accepting for 100 ms: errors like EMFILE need time to clear, not a spin. */
static void pause_accept(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe;

	if (l->accept_paused)
		return;
	l->accept_paused = 1;
	l->accept_backoff.tv_sec = 0;
	l->accept_backoff.tv_nsec = 100000000;
	if (l->accept_armed) {
		sqe = get_sqe(l);
		io_uring_prep_cancel64(sqe, ud_make(OP_ACCEPT, 0, LOOP_SLOT), 0);
		io_uring_sqe_set_data64(sqe, ud_make(OP_CANCEL, 0, LOOP_SLOT));
	}
	sqe = get_sqe(l);
	io_uring_prep_timeout(sqe, &l->accept_backoff, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_ACCEPT_RETRY, 0, LOOP_SLOT));
}

/*
 * --backend original: where the client meant to go. After an iptables/nft
 * REDIRECT (or DNAT) the kernel keeps it for SO_ORIGINAL_DST; under TPROXY the
 * accepted socket's own address is it. A destination that is the proxy's own
 * listener (a client connecting to the proxy directly) would loop: refused.
 */
static int original_dst(struct pxy_loop *l, int fd, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_storage self;
	socklen_t slen = sizeof(self);
	int family;

	if (getsockname(fd, (struct sockaddr *)&self, &slen) < 0)
		return -1;
	family = self.ss_family;
	*len = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	if (getsockopt(fd, family == AF_INET6 ? SOL_IPV6 : SOL_IP, family == AF_INET6 ? IP6T_SO_ORIGINAL_DST : SO_ORIGINAL_DST,
		       ss, len) == 0 &&
	    ss->ss_family == family) {
		/* a REDIRECT to the listener itself */
		if (!pxy_addr_equal((struct sockaddr *)ss, (struct sockaddr *)&self))
			return 0;
	}
	/* TPROXY: the socket is bound to the original destination */
	if (!pxy_addr_equal((struct sockaddr *)&self, (struct sockaddr *)&l->listen_bound) &&
	    pxy_addr_port((struct sockaddr *)&self) != pxy_addr_port((struct sockaddr *)&l->listen_bound)) {
		*ss = self;
		*len = slen;
		return 0;
	}
	return -1;
}

static void on_accept(struct pxy_loop *l, int res, unsigned flags)
{
	struct conn *c;
	struct io_uring_sqe *sqe;
	socklen_t plen = sizeof(c->peer);
	int sfd;

	if (!(flags & IORING_CQE_F_MORE))
		l->accept_armed = 0;
	if (res < 0) {
		/* closing the listener at shutdown ends the multishot accept */
		if (res == -ECANCELED || res == -EAGAIN || l->stopping)
			return;
		if (pxy_now_ns() - l->last_accept_warn > 1000000000ull) {
			l->last_accept_warn = pxy_now_ns();
			pxy_warn("accept: %s%s", strerror(-res),
				 res == -EMFILE || res == -ENFILE ? " (out of file descriptors: pausing accepts)" : "");
		}
		if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM)
			pause_accept(l);
		return;
	}
	if (l->stopping) {
		reset_fd(res);
		return;
	}
	if (l->nfree == 0) {
		/* over --max-conns: refuse this one, keep every existing one */
		l->st.refused_max_conns++;
		pxy_warn("refusing connection: %u connections open (--max-conns)", l->max_conns);
		reset_fd(res);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		reset_fd(res);
		return;
	}
	c->l = l;
	c->slot = l->free_slots[--l->nfree];
	l->conns[c->slot] = c;
	l->st.accepted++;
	l->st.active++;
	c->fd[PXY_C2S] = res;
	c->fd[PXY_S2C] = -1;
	c->t_start = pxy_now_ns();
	c->last_active = c->t_start;
	c->t_start_unix_us = pxy_unix_us();
	if (l->name[0])
		snprintf(c->id, sizeof(c->id), "%u-%s-%" PRIu64, l->pid, l->name, ++l->next_id);
	else
		snprintf(c->id, sizeof(c->id), "%u-%" PRIu64, l->pid, ++l->next_id);
	for (int d = 0; d < 2; d++) {
		c->h[d].q_head = c->h[d].q_tail = NO_BID;
	}
	getpeername(res, (struct sockaddr *)&c->peer, &plen);
	set_nodelay(res);
	{
		struct pxy_tap_hooks hooks = { .ctx = c, .plaintext = hook_plaintext, .keylog = hook_keylog,
					       .done = hook_done };
		c->tap = pxy_tap_new(&l->tap_cfg, &hooks);
		if (c->tap)
			c->idset = pxy_idset_get(l->cur.idset);
	}
	sfd = -1;
	if (l->cfg->backend_original) {
		if (original_dst(l, res, &c->backend, &c->backend_len) < 0) {
			char where[64];

			pxy_addr_str((const struct sockaddr *)&c->peer, where, sizeof(where));
			pxy_warn("id=%s client %s: no original destination (it connected to the proxy itself, or "
				 "no REDIRECT/TPROXY rule sent it here); resetting it", c->id, where);
			l->st.no_original_dst++;
			if (c->tap) {
				pxy_tap_set_reason(c->tap, PXY_R_BACKEND_UNREACHABLE);
				c->state = CS_RESETTING;
				c->close_kind = "reset";
				conn_step(l, c);
				return;
			}
		}
	} else {
		c->backend = l->cfg->backend_addr;
		c->backend_len = l->cfg->backend_len;
	}
	if (l->cap_pt || l->cfg->pcap_feed)
		pxy_pcap_flow_init(&c->fl_pt, (struct sockaddr *)&c->peer, (struct sockaddr *)&c->backend);
	if (l->cap_ct)
		pxy_pcap_flow_init(&c->fl_ct, (struct sockaddr *)&c->peer, (struct sockaddr *)&c->backend);
	if (c->tap)
		sfd = socket(c->backend.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!c->tap || sfd < 0) {
		pxy_err_log("id=%s cannot create backend socket: %s", c->id, strerror(errno));
		if (!c->tap) {
			/* without a tap nothing reports the connection: it ends here */
			reset_fd(res);
			if (sfd >= 0)
				close(sfd);
			l->conns[c->slot] = NULL;
			l->free_slots[l->nfree++] = c->slot;
			l->st.active--;
			free(c);
			return;
		}
		pxy_tap_set_reason(c->tap, PXY_R_INTERNAL);
		c->state = CS_RESETTING;
		c->close_kind = "reset";
		conn_step(l, c);
		return;
	}
	set_nodelay(sfd);
	c->fd[PXY_S2C] = sfd;
	c->state = CS_CONNECTING;
	/* connect to the backend at once, before reading a byte from the client */
	sqe = get_sqe(l);
	io_uring_prep_connect(sqe, sfd, (struct sockaddr *)&c->backend, c->backend_len);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CONNECT, 0, c->slot));
	sqe->flags |= IOSQE_IO_LINK;
	c->cto.tv_sec = l->cfg->connect_timeout_ms / 1000;
	c->cto.tv_nsec = (long long)(l->cfg->connect_timeout_ms % 1000) * 1000000;
	sqe = get_sqe(l);
	io_uring_prep_link_timeout(sqe, &c->cto, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_CTIMEOUT, 0, c->slot));
	c->ops += 2; /* c (and the timespec in it) lives until both complete */
}

static void on_connect(struct pxy_loop *l, struct conn *c, int res)
{
	char server[64];

	c->ops--;
	if (c->state != CS_CONNECTING) {
		conn_step(l, c);
		return;
	}
	if (res == 0) {
		c->state = CS_OPEN;
		conn_step(l, c);
		return;
	}
	if (res == -ECANCELED) {
		res = -ETIMEDOUT;
		l->st.connect_timeout++;
	}
	l->st.connect_failed++;
	pxy_addr_str((const struct sockaddr *)&c->backend, server, sizeof(server));
	pxy_warn("id=%s backend %s unreachable: %s; resetting the client", c->id, server, strerror(-res));
	pxy_tap_set_reason(c->tap, PXY_R_BACKEND_UNREACHABLE);
	c->state = CS_RESETTING;
	c->close_kind = "reset";
	conn_step(l, c);
}

static void on_recv(struct pxy_loop *l, struct conn *c, unsigned d, int res, unsigned flags)
{
	struct half *h = &c->h[d];

	if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
		uint32_t bid = flags >> IORING_CQE_BUFFER_SHIFT;

		KERNEL_WROTE(buf_addr(l, bid), (size_t)res);
		l->bufs_held++;
		c->last_active = pxy_now_ns();
		if (c->state == CS_OPEN) {
			/* the tap sees the bytes before they are forwarded; it copies what it keeps */
			pxy_tap_feed(c->tap, (enum pxy_dir)d, buf_addr(l, bid), (size_t)res);
			if (l->cap_ct)
				capture_data(l, c, 1, (enum pxy_dir)d, buf_addr(l, bid), (size_t)res);
			h->bytes += (uint64_t)res;
			l->st.bytes[d] += (uint64_t)res;
			if (!q_append_small(l, h, bid, (uint32_t)res))
				q_push(l, h, bid, (uint32_t)res);
		} else {
			recycle(l, bid);
		}
	}
	h->recv_armed = 0;
	h->cancel_sent = 0;
	c->ops--;
	if (c->state == CS_OPEN) {
		if (res == 0) {
			h->eof = 1;
			pxy_tap_eof(c->tap, (enum pxy_dir)d);
		} else if (res == -ENOBUFS) {
			/* the ring ran dry: re-arm once buffers come back */
			l->st.enobufs++;
			h->starved = 1;
			clist_add(&l->starved, c, STARVED);
		} else if (res < 0 && res != -ECANCELED) {
			/* a reset (or error) on one side resets the other */
			h->eof = 1;
			pxy_tap_eof(c->tap, (enum pxy_dir)d);
			start_reset(c, "reset");
		}
	}
	conn_step(l, c);
}

static void on_send(struct pxy_loop *l, struct conn *c, unsigned d, int res)
{
	struct half *h = &c->h[d];

	c->ops--;
	h->sending = 0;
	if (res < 0) {
		h->failed = 1;
		if (c->state == CS_OPEN)
			start_reset(c, "reset");
		conn_step(l, c);
		return;
	}
	if (h->send_extra) {
		h->extra_off = (uint8_t)(h->extra_off + res);
	} else {
		uint64_t left = (uint64_t)res;

		h->queued -= left;
		while (left && h->q_head != NO_BID) {
			uint32_t bid = h->q_head;
			uint32_t avail = l->q_len[bid] - l->q_off[bid];

			if (left < avail) {
				l->q_off[bid] += (uint32_t)left;
				break;
			}
			left -= avail;
			h->q_head = l->q_next[bid];
			if (h->q_head == NO_BID)
				h->q_tail = NO_BID;
			h->q_count--;
			recycle(l, bid);
		}
	}
	h->send_extra = 0;
	conn_step(l, c);
}

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
		 " protocol_errors=%" PRIu64 " pending_bytes=%" PRIu64 " renegotiations=%" PRIu64,
		 l->tc.keys_verified, l->tc.finished_mismatch, l->tc.record_auth_fail, l->tc.rsa_jobs,
		 l->tc.records_decrypted, l->tc.records_dropped, l->tc.protocol_errors, l->tc.pending_bytes,
		 l->tc.renegotiations);
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
 */
static void end_turn(struct pxy_loop *l)
{
	struct pxy_engine *e = l->cfg->tap.engine;

	pxy_engine_flush(e);
	if (e->flags & PXY_ENGINE_F_SYNC)
		while (pxy_engine_complete(e))
			pxy_engine_flush(e);
}

static void arm_poll(struct pxy_loop *l, int fd, unsigned op)
{
	struct io_uring_sqe *sqe = get_sqe(l);

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
	struct wfile *f = wfile_adopt(fd, name);

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
		wfile_put(kl);
		wfile_put(cl);
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
	wfile_put(l->keylog);
	wfile_put(l->connlog);
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

/* ---- /metrics (Prometheus text format over HTTP/1.x) ------------------------ */

static void metrics_arm_accept(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe = get_sqe(l);

	io_uring_prep_accept(sqe, l->metrics_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_make(OP_MACCEPT, 0, LOOP_SLOT));
}

static void metrics_arm_recv(struct pxy_loop *l, unsigned i)
{
	struct mconn *m = &l->mc[i];
	struct io_uring_sqe *sqe = get_sqe(l);

	io_uring_prep_recv(sqe, m->fd, m->req + m->got, METRICS_REQ_MAX - 1 - m->got, 0);
	io_uring_sqe_set_data64(sqe, ud_make(OP_MRECV, 0, i));
}

static void metrics_arm_send(struct pxy_loop *l, unsigned i)
{
	struct mconn *m = &l->mc[i];
	struct io_uring_sqe *sqe = get_sqe(l);

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

static void on_metrics(struct pxy_loop *l, unsigned op, uint32_t slot, int res)
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
			metrics_arm_accept(l);
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

/* ---- timeouts -------------------------------------------------------------------- */

#define TICK_MS 250
static struct __kernel_timespec tick_ts = { 0, TICK_MS * 1000000ll };

static void arm_tick(struct pxy_loop *l)
{
	struct io_uring_sqe *sqe = get_sqe(l);

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

static void redis_found(void *ctx, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s, uint32_t ttl_s)
{
	struct pxy_loop *l = ctx;

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
		on_write(l, (struct wreq *)(uintptr_t)(ud & ~UD_PTR_BIT), cqe->res);
		return;
	}
	switch (ud_op(ud)) {
	case OP_ACCEPT:
		on_accept(l, cqe->res, cqe->flags);
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
		on_metrics(l, ud_op(ud), ud_slot(ud), cqe->res);
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
			recycle(l, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		}
		return;
	}
	switch (ud_op(ud)) {
	case OP_CONNECT:
		on_connect(l, c, cqe->res);
		break;
	case OP_CTIMEOUT:
	case OP_CANCEL:
		c->ops--;
		conn_step(l, c);
		break;
	case OP_RECV:
		on_recv(l, c, ud_dir(ud), cqe->res, cqe->flags);
		break;
	case OP_SEND:
		on_send(l, c, ud_dir(ud), cqe->res);
		break;
	default:
		break;
	}
}

static void rearm_starved(struct pxy_loop *l)
{
	struct conn *c = l->starved;

	l->recycled = 0;
	while (c) {
		struct conn *next = c->starved.next;

		clist_remove(&l->starved, c, STARVED);
		c->h[0].starved = c->h[1].starved = 0;
		conn_step(l, c);
		c = next;
	}
}

int pxy_loop_run(struct pxy_loop *l)
{
	uint64_t stop_deadline = 0;

	arm_accept(l);
	if (l->metrics_fd >= 0)
		metrics_arm_accept(l);
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
			rearm_starved(l);
		if (!l->accept_armed && !l->accept_paused && !l->stopping && l->listen_fd >= 0)
			arm_accept(l);
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
	l->max_conns = cfg->max_conns;
	l->nbufs = cfg->buffers;
	l->buf_size = cfg->buffer_size;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = 16384;
	r = io_uring_queue_init_params(4096, &l->ring, &p);
	if (r < 0) {
		pxy_err_log("io_uring_queue_init: %s (is io_uring allowed on this system?)", strerror(-r));
		if (!l->shared_cache)
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
	if ((cfg->keylog_fd >= 0 && !(l->keylog = wfile_adopt(cfg->keylog_fd, "key log"))) ||
	    (cfg->connlog_fd >= 0 && !(l->connlog = wfile_adopt(cfg->connlog_fd, "connection log"))) ||
	    (cfg->pcap && !(l->cap_pt = capture_new(cfg->pcap, cfg->pcap_rotate, &l->st.pcap_packets,
						    &l->st.pcap_rotations))) ||
	    (cfg->pcap_tls && !(l->cap_ct = capture_new(cfg->pcap_tls, cfg->pcap_rotate, &l->st.tls_packets,
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
		wfile_put(c->pf[0]);
		wfile_put(c->pf[1]);
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
				reset_fd(c->fd[d]);
			wfile_put(c->pf[d]);
		}
		pxy_tap_close(c->tap);
		pxy_idset_put(c->idset);
		free(c->ct_hold);
		free(c);
	}
	if (l->ring.ring_fd > 0)
		io_uring_queue_exit(&l->ring);
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
	wfile_put(l->keylog);
	wfile_put(l->connlog);
	capture_free(l->cap_pt);
	capture_free(l->cap_ct);
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

/*
 * The io loop's own header, private to host/io/: the state the loop, its
 * connections, its output files and its /metrics server share, the user_data
 * packing of the ring's requests, and what the files of the loop call in each
 * other. loop.c keeps the ring and the dispatch; conn.c forwards the
 * connections; output.c writes files, captures and the connection log;
 * metrics_http.c serves /metrics. Nothing outside host/io/ includes it.
 */
#ifndef PXY_LOOP_INT_H
#define PXY_LOOP_INT_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "io/loop.h"
#include "sink/pcap.h"
#include "util/hist.h"

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

/*
 * A file the loop appends to (plaintext per connection and direction, key
 * log, captures). Bytes are copied into fixed-size chunks; one write per file
 * is in flight (a writev of up to WCHUNKS_PER_WRITE chunks), and chunks
 * filled meanwhile wait, submitted when that write ends or at the end of the
 * loop's turn: a bulk transfer's records reach the file in a few large
 * writes, not one per record, and nothing is copied twice.
 */
#define WCHUNK (64 * 1024)
#define WCHUNKS_PER_WRITE 16

struct wchunk {
	struct wchunk *next;
	size_t len;
	uint8_t data[WCHUNK];
};

struct wfile {
	int fd;
	unsigned refs;  /* owner + the write in flight + pending chunks */
	uint64_t off;   /* next offset; UINT64_MAX: append at the file position */
	uint8_t failed;
	uint8_t busy;   /* a write is in flight */
	uint8_t bounded; /* plaintext or capture: its backlog is bounded (the logs are small) */
	uint64_t backlog; /* bytes accepted and not yet written */
	struct wchunk *pend_head, *pend_tail; /* bytes not yet submitted */
	struct wfile *pend_prev, *pend_next;  /* the loop's list of files with pending chunks */
	char path[512];
};

/* One write in flight: the chunks it covers, from file offset off. */
struct wreq {
	struct wfile *f;
	struct wchunk *chunks;
	size_t len, done; /* what this submission covers, and how much of it is written */
	size_t total;     /* the whole write, for the counters */
	uint64_t off;
	unsigned niov;
	struct iovec iov[WCHUNKS_PER_WRITE];
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
	struct clink due;      /* its verdict came outside a receive (an engine result, a timer): step it */
	/* captures: the plaintext flow and the TLS flow; TLS packets held until the
	 * session's secret is known, so that its Decryption Secrets Block comes first */
	struct pxy_pcap_flow fl_pt, fl_ct;
	uint8_t *ct_hold;
	size_t ct_hold_len;
	uint8_t ct_through; /* write TLS packets at once (secret written, or given up) */
};

/* the loop's lists of connections, named by the offset of their link (conn.c) */
#define STARVED offsetof(struct conn, starved)
#define AWAITING offsetof(struct conn, awaiting)
#define DUE offsetof(struct conn, due)

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
	uint8_t ring_disabled; /* created R_DISABLED: the loop's thread enables it */
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
	struct conn *due; /* verdicts decided this turn outside a receive (conn_step_due) */
	/* forwarded secrets asked of the shared store: its key -> whose secret (a small ring) */
	struct fwd_want {
		uint8_t key[32];
		uint8_t random[32];
		uint8_t label;
		uint8_t used;
	} fwd_want[256];
	unsigned fwd_want_next;
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
	unsigned writes_inflight; /* files with a write in flight or chunks pending */
	struct wfile *pending;    /* files with bytes not yet submitted */
	uint64_t sink_backlog;    /* bytes accepted by bounded files and not yet written */
	struct wchunk *spare;     /* wiped chunks kept for reuse */
	unsigned nspare;
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

/* A capture file: FILE, rotated to FILE.1, FILE.2, ... past --pcap-rotate bytes. */
struct capture {
	char *path;
	uint64_t rotate, written;
	unsigned rotations;
	struct wfile *f;
	uint64_t *packets, *rotated; /* the loop's counters */
};

/* where provided buffer bid lies */
static inline uint8_t *buf_addr(struct pxy_loop *l, uint32_t bid)
{
	return l->bufs + (size_t)bid * l->buf_size;
}

/* ---- what the files of the loop call in each other ------------------------ */

/* loop.c */
struct io_uring_sqe *loop_get_sqe(struct pxy_loop *l);

/* conn.c */
void conn_recycle_buf(struct pxy_loop *l, uint32_t bid);
void conn_list_remove(struct conn **head, struct conn *c, size_t off);
/** The tap decided (an engine result, a timer): the connection is stepped at the end of the turn. */
void out_hook_verdict(void *ctx);
/** Step the connections whose verdict came this turn. */
void conn_step_due(struct pxy_loop *l);
void conn_step(struct pxy_loop *l, struct conn *c);
void conn_reset_fd(int fd);
void conn_arm_accept(struct pxy_loop *l);
void conn_on_accept(struct pxy_loop *l, int res, unsigned flags);
void conn_on_connect(struct pxy_loop *l, struct conn *c, int res);
void conn_on_recv(struct pxy_loop *l, struct conn *c, unsigned d, int res, unsigned flags);
void conn_on_send(struct pxy_loop *l, struct conn *c, unsigned d, int res);
void conn_rearm_starved(struct pxy_loop *l);

/* output.c */
struct wfile *out_wfile_adopt(int fd, const char *name);
void out_wfile_put(struct wfile *f);
void out_on_write(struct pxy_loop *l, struct wreq *w, int res);
/** End of the loop's turn: every idle file's pending bytes go out in one write. */
void out_flush_writes(struct pxy_loop *l);
/** The loop is going (its ring closed): pending bytes are written synchronously, then wiped; spare chunks freed. */
void out_finish_pending(struct pxy_loop *l);
struct capture *out_capture_new(const char *path, uint64_t rotate, uint64_t *packets, uint64_t *rotated);
void out_capture_free(struct capture *cp);
void out_capture_data(struct pxy_loop *l, struct conn *c, int tls, enum pxy_dir d, const uint8_t *p, size_t n);
void out_hook_plaintext(void *ctx, enum pxy_dir d, const uint8_t *p, size_t n);
void out_hook_keylog(void *ctx, const uint8_t cr[32], const uint8_t ms[48]);
void out_hook_keylog13(void *ctx, const char *lines, size_t len, int complete);
void out_hook_done(void *ctx);

/* metrics_http.c */
void mhttp_arm_accept(struct pxy_loop *l);
void mhttp_complete(struct pxy_loop *l, unsigned op, uint32_t slot, int res);

#endif

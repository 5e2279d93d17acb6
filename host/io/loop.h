/*
 * The io_uring loop: one thread, one ring, one listener, every connection
 * pair, the engine's completions and the signals.
 *
 *  - multishot accept on the listener;
 *  - on accept, socket + connect (with a linked timeout) to the backend
 *    before any client byte is read;
 *  - recv with a provided buffer ring in both directions; each buffer is
 *    shown to the tap and queued, then sent from the same buffer (sendmsg
 *    over the queued buffers) and returned to the ring once sent;
 *  - per-direction bound on the ring buffers a queue holds (whole buffers,
 *    however little each received): one recv in flight per direction,
 *    re-armed only while the queue holds under --max-queue; once full,
 *    reading resumes when the queue has drained to half;
 *  - server->client bytes are held while the tap's verdict is pending;
 *  - engine completions arrive through a read on the engine's eventfd;
 *  - plaintext and key-log writes go through the ring too.
 */
#ifndef PXY_LOOP_H
#define PXY_LOOP_H

#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxyssl/engine.h"
#include "io/redis.h"
#include "tls/sessions.h"
#include "tls/tap.h"

struct pxy_loop_cfg {
	struct sockaddr_storage listen_addr;
	socklen_t listen_len;
	struct sockaddr_storage backend_addr;
	socklen_t backend_len;
	int backend_original;       /* --backend original: each client's original destination (REDIRECT, TPROXY) */
	struct sockaddr_storage metrics_addr; /* /metrics over HTTP; metrics_len 0: none */
	socklen_t metrics_len;
	unsigned buffers;           /* provided buffers in the ring (power of two) */
	unsigned buffer_size;       /* bytes per buffer */
	uint64_t max_queue;         /* bytes queued per direction before reading stops */
	unsigned connect_timeout_ms;
	unsigned drain_timeout_ms;  /* SIGTERM: how long open connections may go on (0: reset at once) */
	unsigned handshake_timeout_ms; /* accept to both Finished; 0: none */
	unsigned idle_timeout_ms;   /* no byte either way; 0: none */
	unsigned max_conns;
	unsigned session_cache;       /* cached sessions (0: none) */
	unsigned session_lifetime_s;
	struct pxy_redis *redis;      /* the shared tier of the session cache (NULL: none) */
	struct pxy_tap_cfg tap;     /* identity, engine, limits (counters filled by the loop) */
	struct pxy_idset *idset;    /* where tap.identities point; the loop takes a reference (NULL: none kept) */
	const char *plaintext_dir;  /* NULL: no plaintext sink */
	const char *pcap;           /* decrypted capture (pcapng; NULL: none) */
	const char *pcap_tls;       /* the TLS bytes with their secrets (pcapng; NULL: none) */
	uint64_t pcap_rotate;       /* bytes per capture file before it is rotated (0: never) */
	const char *pcap_feed;      /* a FIFO fed the decrypted capture live (NULL: none) */
	int keylog_fd;              /* -1: no key log; opened O_APPEND */
	int connlog_fd;             /* -1: no JSON connection log; opened O_APPEND */
	const char *engine_name;    /* for the JSON connection log */
	const struct pxy_cert_info *expected; /* for reject lines */
	/*
	 * SIGHUP: fill *next, a copy of the configuration running now, with the
	 * new one. 0: the loop applies it: new connections get the new idset
	 * (whose reference passes to the loop), tap limits, policy, backend,
	 * timeouts and plaintext directory; keylog_fd/connlog_fd >= 0 are new
	 * files handed over to the loop; next->idset is a reference handed over
	 * too (the same set again needs its own pxy_idset_get). <0: refused (the
	 * callee logs why), nothing changes. NULL: SIGHUP is only logged.
	 */
	int (*reload)(void *ctx, struct pxy_loop_cfg *next);
	void *reload_ctx;
	const char *name;           /* the virtual server ([vserver NAME]); NULL: the only one */
	/*
	 * -1: the loop takes SIGINT/SIGTERM/SIGUSR1/SIGHUP through its own
	 * signalfd. Else a pipe's read end (non-blocking, the loop owns it) on
	 * which each byte is one of those signal numbers: a process running
	 * several loops takes the signals once and passes them on.
	 */
	int ctl_fd;
	/* workers of one virtual server */
	int reuseport;              /* SO_REUSEPORT on the listener: the workers listen on one address */
	struct pxy_sessions *sessions; /* a cache shared by the workers (locked); NULL: the loop makes its own */
	struct pxy_loop *const *siblings; /* the other workers: /metrics adds up their counters too */
	unsigned n_siblings;
};

struct pxy_loop_stats {
	uint64_t accepted, active, refused_max_conns, closed_fin, closed_reset, rejected;
	uint64_t connect_failed, connect_timeout;
	uint64_t no_original_dst;   /* --backend original: clients with no original destination */
	uint64_t handshake_timeouts, idle_timeouts;
	uint64_t bytes[2];
	uint64_t enobufs, recv_paused;
	uint64_t sink_write_errors, sink_bytes;
	uint64_t pcap_packets, pcap_rotations, tls_packets, tls_rotations, feed_packets, feed_dropped, feed_opens;
};

struct pxy_loop;

/** Set up listener, ring, buffers. Prints one error line on failure. */
int pxy_loop_new(const struct pxy_loop_cfg *cfg, struct pxy_loop **out);

/** The signals a loop acts on (SIGINT, SIGTERM, SIGUSR1, SIGHUP): the caller blocks them before threads start. */
void pxy_loop_signal_set(sigset_t *mask);

/** Run until SIGINT/SIGTERM and the drain after it (delivered through a signalfd; the caller blocks them). */
int pxy_loop_run(struct pxy_loop *l);

void pxy_loop_free(struct pxy_loop *l);

/** The bound listener address (after port 0 is resolved). */
void pxy_loop_listen_addr(const struct pxy_loop *l, struct sockaddr_storage *ss, socklen_t *len);
/** The bound /metrics address; 0 when there is none. */
int pxy_loop_metrics_addr(const struct pxy_loop *l, struct sockaddr_storage *ss, socklen_t *len);

#endif

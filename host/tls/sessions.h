/*
 * The session cache: what an abbreviated handshake needs to be decrypted.
 *
 * A full handshake the proxy decrypted (both Finished verified) leaves its
 * master secret here under its session ID (RFC 5246 §7.4.1.2) and under the
 * session ticket the server issued (RFC 5077 §3.3); a later ClientHello that
 * offers either, answered by an abbreviated handshake, finds it again.
 * Entries are keyed by SHA-256 of the ID or ticket (tickets are opaque and
 * up to 64 KiB), bounded in number (the least recently used goes first) and
 * in lifetime, and wiped when they leave. One cache per io loop: no locks.
 */
#ifndef PXY_SESSIONS_H
#define PXY_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

#include "tls/cert.h"

#define PXY_SESSION_KEY_LEN 32

enum pxy_session_kind { PXY_SESS_ID = 1, PXY_SESS_TICKET = 2, PXY_SESS_FWDKEY = 3 };

/* A forwarded secret in the shared store travels as a session: ms holds the secret, version this
 * marker, suite (label << 8) | length (key: PXY_SESS_FWDKEY over client random || label) */
#define PXY_SESS_FWD_VERSION 0xFF13

struct pxy_session {
	uint8_t ms[48];
	uint16_t version;
	uint16_t suite;
	uint8_t ems;
	uint8_t has_client; /* the client authenticated with a certificate: */
	struct pxy_cert_info client; /* its leaf, for the resumed connections' log lines */
};

struct pxy_sessions_stats {
	uint64_t entries, stored, hits, misses, expired, evicted;
};

struct pxy_sessions;

/** A cache of at most `max` entries (> 0), each kept at most `lifetime_s` seconds. NULL: out of memory. */
struct pxy_sessions *pxy_sessions_new(size_t max, uint32_t lifetime_s);
/** Wipes every entry. */
void pxy_sessions_free(struct pxy_sessions *c);

/** The lookup key of an ID or ticket. */
void pxy_session_key(enum pxy_session_kind kind, const uint8_t *id, size_t len, uint8_t key[PXY_SESSION_KEY_LEN]);

/**
 * Store (or refresh) a session under `key`, for min(lifetime_s, hint_s)
 * seconds when hint_s > 0 (a ticket's lifetime hint), else lifetime_s.
 */
void pxy_sessions_put(struct pxy_sessions *c, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s,
		      uint32_t hint_s, uint64_t now_ns);
/** Find a live session: 1 (copied to *out, the entry becomes most recent) or 0. */
int pxy_sessions_get(struct pxy_sessions *c, const uint8_t key[PXY_SESSION_KEY_LEN], struct pxy_session *out,
		     uint64_t now_ns);

/**
 * Drop (and wipe) the expired entries among the `max` least recently used:
 * called on a timer, so that a master secret does not outlive its lifetime
 * in memory on a quiet proxy.
 */
void pxy_sessions_expire(struct pxy_sessions *c, uint64_t now_ns, unsigned max);
/** The counters, read in place (one thread using the cache). */
const struct pxy_sessions_stats *pxy_sessions_stats(const struct pxy_sessions *c);
/** The counters, copied under the cache's lock (threads sharing it: every call here is locked). */
void pxy_sessions_stats_get(struct pxy_sessions *c, struct pxy_sessions_stats *out);

/*
 * A second tier shared with other proxies (Redis): told of every session
 * stored here and of every miss. What it finds comes back through
 * pxy_sessions_put_shared, which does not tell it again.
 */
struct pxy_sessions_remote {
	void *ctx;
	void (*stored)(void *ctx, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s, uint32_t ttl_s);
	void (*missed)(void *ctx, const uint8_t key[PXY_SESSION_KEY_LEN]);
};
void pxy_sessions_set_remote(struct pxy_sessions *c, const struct pxy_sessions_remote *r);
/** Store a session the shared tier found, for ttl_s seconds (at most the cache's lifetime). */
void pxy_sessions_put_shared(struct pxy_sessions *c, const uint8_t key[PXY_SESSION_KEY_LEN],
			     const struct pxy_session *s, uint32_t ttl_s, uint64_t now_ns);

#endif

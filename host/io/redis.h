/*
 * The shared tier of the session cache: Redis, so that a resumption that an
 * L4 balancer sends to another proxyssl node still decrypts.
 *
 * Every session the local cache stores is also SET in Redis (with the same
 * lifetime as EX), and a local miss asks Redis (GET); an answer goes into the
 * local cache and the connection waiting for it retries. Values are sealed
 * with AES-256-GCM under a key the nodes share (--session-key), the entry's
 * key as associated data, so Redis never holds a master secret in clear and
 * an entry cannot be moved under another key.
 *
 * One thread talks to Redis with blocking hiredis calls (each bounded by a
 * timeout); the io loop only queues requests and reads answers through an
 * eventfd, so a slow or dead Redis never slows forwarding. While Redis is
 * down the local cache works alone: requests are dropped and counted, and the
 * thread reconnects on the next request, at most once a second.
 */
#ifndef PXY_REDIS_H
#define PXY_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "tls/sessions.h"

#define PXY_REDIS_KEY_LEN 32

struct pxy_redis_stats {
	uint64_t gets, hits, misses, sets, errors, dropped;
	uint64_t up; /* 1 while connected */
};

struct pxy_redis;

/**
 * Parse "redis://HOST:PORT[/DB]" and start the thread (it connects on the
 * first request). On error writes one line to err and returns -1.
 */
int pxy_redis_new(const char *url, const uint8_t key[PXY_REDIS_KEY_LEN], struct pxy_redis **out, char *err,
		  size_t n);
void pxy_redis_free(struct pxy_redis *r);

/** Readable (an eventfd) when answers are waiting for pxy_redis_poll. */
int pxy_redis_event_fd(const struct pxy_redis *r);

/** Ask for the session under key (at most every 200 ms per key: a waiting resumption asks again). */
void pxy_redis_get(struct pxy_redis *r, const uint8_t key[PXY_SESSION_KEY_LEN]);
/** Store a session for ttl_s seconds. */
void pxy_redis_set(struct pxy_redis *r, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s,
		   uint32_t ttl_s);

typedef void (*pxy_redis_found_fn)(void *ctx, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s,
				   uint32_t ttl_s);
/** Hand over the sessions found since the last call; returns how many. */
size_t pxy_redis_poll(struct pxy_redis *r, pxy_redis_found_fn found, void *ctx);

void pxy_redis_get_stats(struct pxy_redis *r, struct pxy_redis_stats *out);

/* The sealed value format (exposed for the unit tests). */
#define PXY_REDIS_VALUE_MAX 1024
/** Seal s under k with key as associated data; returns the value's length, 0 on failure. */
size_t pxy_redis_seal(const uint8_t k[PXY_REDIS_KEY_LEN], const uint8_t key[PXY_SESSION_KEY_LEN],
		      const struct pxy_session *s, uint8_t *out, size_t cap);
/** Open a value; 0 and *s filled, or -1 (wrong key, tampered, truncated, unknown format). */
int pxy_redis_open(const uint8_t k[PXY_REDIS_KEY_LEN], const uint8_t key[PXY_SESSION_KEY_LEN], const uint8_t *v,
		   size_t len, struct pxy_session *s);

/** The session inside a sealed value (its plaintext): write (bytes, 0 if cap is too small) and parse (0, or -1). */
size_t pxy_redis_session_put(const struct pxy_session *s, uint8_t *p, size_t cap);
int pxy_redis_session_parse(const uint8_t *p, size_t n, struct pxy_session *s);

/** Read a 32-byte key written as 64 hex digits (whitespace ignored) from a file. */
int pxy_redis_key_load(const char *path, uint8_t k[PXY_REDIS_KEY_LEN], char *err, size_t n);

#endif

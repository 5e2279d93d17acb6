/*
 * Session secrets that servers forward (RFC 9850, the SSLKEYLOGFILE format):
 * `LABEL <client_random hex> <secret hex>` lines, from a key log a server on
 * this host writes (`--key-source file:PATH`, followed across truncation and
 * rotation), or from remote servers through the key listener (--key-listen,
 * handed in from its thread). A session whose key exchange the proxy cannot undo itself
 * (ECDHE, DHE) is decrypted once its CLIENT_RANDOM line is here.
 *
 * Bounded: at most `max` sessions (each with every secret its lines gave),
 * each kept `ttl` seconds from its first line, wiped when it goes. One store
 * per io loop (not locked).
 */
#ifndef PXY_KEYSTORE_H
#define PXY_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

struct pxy_keystore;

/** RFC 9850's labels, as stored */
enum pxy_key_label {
	PXY_KL_CLIENT_RANDOM = 0,   /* TLS 1.0-1.2: the 48-byte master secret */
	PXY_KL_CLIENT_EARLY = 1,    /* TLS 1.3: client_early_traffic_secret (0-RTT) */
	PXY_KL_CLIENT_HS = 2,       /* client_handshake_traffic_secret */
	PXY_KL_SERVER_HS = 3,       /* server_handshake_traffic_secret */
	PXY_KL_CLIENT_AP0 = 4,      /* client_application_traffic_secret_0 */
	PXY_KL_SERVER_AP0 = 5,      /* server_application_traffic_secret_0 */
	PXY_KL_EXPORTER = 6,        /* exporter_master_secret */
	PXY_KL_EARLY_EXPORTER = 7,  /* early_exporter_master_secret */
	PXY_KL__COUNT
};

const char *pxy_key_label_name(enum pxy_key_label l);

struct pxy_keystore_stats {
	uint64_t lines;      /* lines read */
	uint64_t stored;     /* CLIENT_RANDOM secrets stored */
	uint64_t tls13;      /* TLS 1.3 secrets stored */
	uint64_t malformed;  /* lines dropped as malformed */
	uint64_t matched;    /* lookups that found their secret */
	uint64_t expired;    /* secrets wiped unmatched: their ttl ran out, or the store was full */
	uint64_t entries;    /* sessions held now */
	uint64_t reopened;   /* the followed file was truncated or replaced */
	uint64_t dropped;    /* lines handed in (pxy_keystore_push) and dropped: the inbox was full */
	uint64_t shared;     /* secrets that came from the shared tier */
};

/** A store following `path` (NULL: lines only through pxy_keystore_add_line). NULL on error, with err. */
struct pxy_keystore *pxy_keystore_new(const char *path, uint32_t ttl_s, uint32_t max, char *err, size_t err_len);
void pxy_keystore_free(struct pxy_keystore *ks);

/**
 * One key log line (no newline). 0: taken (or a comment, or a label it does
 * not use); -1: malformed, with why. */
int pxy_keystore_add_line(struct pxy_keystore *ks, const char *line, size_t len, uint64_t now_ns, char *why,
			  size_t why_len);

/**
 * A line from another thread (the key listener): kept (bounded) until the
 * store's own thread next refreshes. 0, or -1 when it was dropped (full).
 */
int pxy_keystore_push(struct pxy_keystore *ks, const char *line, size_t len);

/** Read what the followed file gained since the last call, and the lines handed in; drop expired
 * secrets. Malformed lines are logged (the first few, then a count). */
void pxy_keystore_refresh(struct pxy_keystore *ks, uint64_t now_ns);

/** The secret forwarded under this label for this client random: its length (32 or 48), or 0. */
size_t pxy_keystore_secret(struct pxy_keystore *ks, const uint8_t client_random[32], enum pxy_key_label label,
			   uint8_t out[48]);

/** The TLS 1.0-1.2 master secret forwarded for this client random: 1 and ms, or 0. */
int pxy_keystore_master(struct pxy_keystore *ks, const uint8_t client_random[32], uint8_t ms[48]);

void pxy_keystore_stats_get(const struct pxy_keystore *ks, struct pxy_keystore_stats *out);

/** Parse `--key-source`: "file:PATH" -> the path; "shared" -> NULL (keys from the shared session
 * store only). 0, or -1 with why. */
int pxy_key_source_parse(const char *spec, const char **path, char *why, size_t why_len);

/**
 * A shared tier (the Redis session store): every secret taken from this
 * node's own sources is published; a secret a session waits for and no
 * source here has is asked for (pxy_keystore_want), and an answer comes back
 * through pxy_keystore_put_secret. Called on the store's thread.
 */
struct pxy_keystore_remote {
	void *ctx;
	void (*published)(void *ctx, const uint8_t client_random[32], enum pxy_key_label label, const uint8_t *secret,
			  size_t len, uint32_t ttl_s);
	void (*wanted)(void *ctx, const uint8_t client_random[32], enum pxy_key_label label);
};
void pxy_keystore_set_remote(struct pxy_keystore *ks, const struct pxy_keystore_remote *r);
/** A session waits for this secret and no local source had it: ask the shared tier, if any. */
void pxy_keystore_want(struct pxy_keystore *ks, const uint8_t client_random[32], enum pxy_key_label label);
/** A secret from the shared tier (not published again). 0, or -1 (a length no label has). */
int pxy_keystore_put_secret(struct pxy_keystore *ks, const uint8_t client_random[32], enum pxy_key_label label,
			    const uint8_t *secret, size_t len, uint64_t now_ns);

#endif

/*
 * Test support: generated RSA identities, an in-memory OpenSSL client and
 * server whose bytes can be watched (and altered) on their way, and an
 * inline cpu engine that the tests drain by hand.
 */
#ifndef PXY_TESTUTIL_H
#define PXY_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proxyssl/engine.h"
#include "tls/cert.h"
#include "tls/tap.h"

/** A self-signed RSA certificate and key, in memory and as PEM files. */
struct tu_ident {
	EVP_PKEY *pkey;
	X509 *x509;
	char cert_path[256];
	char key_path[256];
	int borrowed; /* files not ours to delete */
};

int tu_ident_make(struct tu_ident *t, int bits, const char *cn);
/** Load PEM files (the paths are kept, not deleted by tu_ident_free). */
int tu_ident_load(struct tu_ident *t, const char *cert_path, const char *key_path);
/** An ECDSA P-256 identity (for non-RSA servers). */
int tu_ident_make_ec(struct tu_ident *t, const char *cn);
void tu_ident_free(struct tu_ident *t);

/** A cpu engine (threads = 0 unless given) with the identity's key loaded into *id. */
struct pxy_engine *tu_engine(const struct tu_ident *t, struct pxy_identity *id, unsigned threads);
/** Hand every finished job back to its tap; returns how many. */
size_t tu_drain(struct pxy_engine *e);
/** Wait (threads > 0) until the engine has nothing in flight. */
void tu_drain_all(struct pxy_engine *e);

struct tu_pair_opts {
	const char *ciphers;     /* TLS 1.2 cipher list for both sides */
	const char *ciphersuites;/* TLS 1.3 suites, when max_version is TLS 1.3 */
	const char *client_groups, *server_groups; /* key exchange groups, e.g. "X25519:P-256" */
	int min_version, max_version;
	int no_ems, no_etm, no_tickets;
	int client_auth;         /* server asks for a client certificate (client has one) */
	SSL_SESSION *resume;     /* client offers this session */
	const struct tu_ident *server; /* default: the caller must set */
	const struct tu_ident *client_id; /* for client_auth */
};

typedef void (*tu_tap_fn)(void *ctx, enum pxy_dir d, uint8_t *p, size_t n);

struct tu_pair {
	SSL_CTX *sctx, *cctx;
	SSL *s, *c;
	BIO *s_in, *s_out, *c_in, *c_out;
	tu_tap_fn on_bytes; /* sees (and may alter) every byte crossing, in order */
	void *ctx;
	uint8_t *got[2];    /* application bytes each receiver read: [C2S] at the server */
	size_t got_len[2];
	int failed;         /* a side reported a fatal error */
	uint64_t wire[2];   /* bytes crossed per direction */
};

int tu_pair_new(struct tu_pair *p, const struct tu_pair_opts *o);
/**
 * A second pair whose client offers `o->resume` to a server of `first`'s
 * context (which holds the session and the ticket keys): a resumption.
 */
int tu_pair_new_resuming(struct tu_pair *p, const struct tu_pair *first, const struct tu_pair_opts *o);
/** Run until both sides finish the handshake (0) or one fails (-1). */
int tu_pair_handshake(struct tu_pair *p);
/** Write n bytes from the sender of direction d and move everything across. */
int tu_pair_send(struct tu_pair *p, enum pxy_dir d, const uint8_t *data, size_t n);
/** Move pending bytes both ways until nothing moves. */
void tu_pair_pump(struct tu_pair *p);
void tu_pair_free(struct tu_pair *p);

/** Fill with deterministic pseudo-random bytes. */
void tu_fill(uint8_t *p, size_t n, uint32_t seed);

#endif

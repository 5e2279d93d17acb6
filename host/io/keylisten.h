/*
 * The key listener (--key-listen): remote servers stream their key log lines
 * (RFC 9850) to the proxy over TLS with mutual certificate authentication
 * (proxyssl-keyfwd, or anything that writes the lines to such a
 * connection). A client whose certificate does not chain to --key-listen-ca
 * gets nothing in: the handshake fails, and it is logged. Each line goes to
 * every io loop's key store (pxy_keystore_push), which takes it at its next
 * refresh. It runs in a thread of its own.
 */
#ifndef PXY_KEYLISTEN_H
#define PXY_KEYLISTEN_H

#include <stddef.h>
#include <stdint.h>

struct pxy_keystore;
struct pxy_keylisten;

struct pxy_keylisten_stats {
	uint64_t accepted;  /* forwarders that authenticated */
	uint64_t refused;   /* connections whose handshake failed (no certificate, an unknown CA, not TLS) */
	uint64_t lines;     /* lines received and handed to the stores */
	uint64_t overlong;  /* lines over 1024 bytes, dropped */
	uint64_t dropped;   /* lines a store had no room for */
	uint64_t connected; /* forwarders connected now */
};

/**
 * Listen on addr (ADDR:PORT; port 0: any) with the certificate and key given, requiring client
 * certificates from ca; lines go to the n stores. NULL on error, with err.
 */
struct pxy_keylisten *pxy_keylisten_start(const char *addr, const char *cert, const char *key, const char *ca,
					  struct pxy_keystore *const *stores, size_t n, char *err, size_t err_len);
/** The address it listens on ("127.0.0.1:43211"). */
const char *pxy_keylisten_addr(const struct pxy_keylisten *kl);
void pxy_keylisten_stats_get(const struct pxy_keylisten *kl, struct pxy_keylisten_stats *out);
/** Stop the thread, close every connection. */
void pxy_keylisten_stop(struct pxy_keylisten *kl);

/** The process's listener, if one runs (for /metrics); NULL otherwise. */
const struct pxy_keylisten *pxy_keylisten_current(void);

#endif

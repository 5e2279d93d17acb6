/*
 * A reference TLS record layer for the engine cross-check, on OpenSSL's EVP
 * primitives (AES-CBC without padding, AES-GCM, HMAC), written from RFC 5246
 * §6.2.3, RFC 5288 (GCM nonce and AAD) and RFC 7366 (encrypt-then-MAC); not
 * the engines' code. tr_seal builds records with any padding, valid or not;
 * tr_open judges records strictly (not in constant time: it is the judge).
 */
#ifndef PXY_TLS_REF_H
#define PXY_TLS_REF_H

#include <stddef.h>
#include <stdint.h>

#include "proxyssl/engine.h"

int tr_init(void);
void tr_free(void);

int tr_is_gcm(const struct pxy_traffic_keys *k);
/** Explicit nonce (GCM: 8) or IV (CBC, TLS 1.1+: 16) bytes at the start of the fragment. */
size_t tr_explicit_len(const struct pxy_traffic_keys *k);
/** CBC: the plaintext bytes before the padding (data, and for MtE the MAC). */
size_t tr_padded_from(const struct pxy_traffic_keys *k, size_t n);
/** A valid CBC padding length byte for n bytes: the least, or any up to 255. */
unsigned tr_rand_pad(const struct pxy_traffic_keys *k, size_t n, int least);

struct tr_seal_opts {
	uint8_t type;
	const uint8_t *iv; /* CBC: the IV (explicit, or TLS 1.0's chained one); GCM: the explicit nonce */
	unsigned pad;      /* CBC: the padding length byte; pad + 1 bytes of padding */
	int bad_pad;       /* CBC: 1 one padding byte altered, 2 a padding length beyond the record */
};

/** Seal n bytes of pt as record `seq` into rec (header included); returns the record's length. */
size_t tr_seal(const struct pxy_traffic_keys *k, uint64_t seq, const struct tr_seal_opts *o, const uint8_t *pt,
	       size_t n, uint8_t *rec);
/** Open a record (tls10_iv: the chained IV of TLS 1.0); 1 and the plaintext if authentic and well padded. */
int tr_open(const struct pxy_traffic_keys *k, uint64_t seq, const uint8_t *rec, size_t len,
	    const uint8_t tls10_iv[16], uint8_t *pt, size_t *n);

#endif

/*
 * SHA-1, SHA-256 and SHA-384 (FIPS 180-4) compression functions, HMAC
 * (RFC 2104) over them, and the constant-time digest that TLS
 * MAC-then-encrypt records need (RFC 5246 §6.2.3.2, "Lucky Thirteen"): the
 * MAC of a message whose length is secret, computed with a number of
 * compressions that depends on the public maximum only.
 */
#ifndef PXYK_SHA_H
#define PXYK_SHA_H

#include "kernel.h"

enum sha_alg { SHA_1 = 1, SHA_256 = 2, SHA_384 = 3 }; /* the values of enum pxy_mac */

#define SHA_MAX_BLOCK 128
#define SHA_MAX_DIGEST 48

struct sha_ctx {
	int alg;
	uint64_t h[8];        /* SHA-384 state, or 32-bit words of SHA-1/256 in the low halves */
	uint8_t buf[SHA_MAX_BLOCK];
	uint32_t buf_len;
	uint64_t total;       /* bytes absorbed */
};

uint32_t sha_block_len(int alg);
uint32_t sha_digest_len(int alg);

void sha_init(struct sha_ctx *c, int alg);
void sha_update(struct sha_ctx *c, const uint8_t *p, uint32_t n);
void sha_final(struct sha_ctx *c, uint8_t *out);

/** HMAC over hdr (hdr_len bytes, may be 0) then msg. key_len <= block length. */
void hmac(int alg, const uint8_t *key, uint32_t key_len, const uint8_t *hdr, uint32_t hdr_len, const uint8_t *msg,
	  uint32_t msg_len, uint8_t *out);

/**
 * HMAC(key, hdr13 || msg[0..len)) where len is secret and len <= max_len
 * (public): every block up to what max_len needs is compressed, and the
 * state after the block where the message really ends is kept by masks.
 * msg must be readable for max_len bytes.
 */
void hmac_ct(int alg, const uint8_t *key, uint32_t key_len, const uint8_t hdr13[13], const uint8_t *msg,
	     uint32_t len, uint32_t max_len, uint8_t *out);

#endif

/*
 * Record and RSA crypto on OpenSSL, used by the cpu engine's workers.
 * One pxy_cpu_ctx per thread: contexts are reused, never shared.
 */
#ifndef PXY_CPU_CRYPTO_H
#define PXY_CPU_CRYPTO_H

#include "proxyssl/engine.h"

struct pxy_cpu_ctx;

struct pxy_cpu_ctx *pxy_cpu_ctx_new(void);
void pxy_cpu_ctx_free(struct pxy_cpu_ctx *c);
/** Drop the keys the contexts still hold from the last jobs (an idle worker keeps no traffic key). */
void pxy_cpu_ctx_forget(struct pxy_cpu_ctx *c);

/** Open (decrypt + authenticate) j in place; sets pt_off, pt_len and ok. */
int pxy_cpu_record_open(struct pxy_cpu_ctx *c, struct pxy_rec_job *j);
/**
 * Seal: the record holds a header and plaintext of j->rec_len - 5 bytes;
 * writes explicit IV/nonce, ciphertext, MAC/tag and padding up to rec_cap,
 * fixing the header's length. For CBC, the explicit IV is taken from j->iv.
 */
int pxy_cpu_record_seal(struct pxy_cpu_ctx *c, struct pxy_rec_job *j);
/** The bytes a sealed record of pt_len plaintext needs, header included. */
size_t pxy_record_sealed_len(const struct pxy_traffic_keys *k, size_t pt_len);

/*
 * Raw operations on the thread's keyed contexts (the emulation device lends
 * them to the kernels' emulation library). Keys are AES-128/256; HMAC keys
 * up to one block of the hash.
 */
/** AES-GCM with a 12-byte nonce; open: *ok = 1 if the tag verifies (out is wiped if not); seal: writes tag. */
int pxy_cpu_gcm(struct pxy_cpu_ctx *c, int enc, const uint8_t *key, size_t key_len, const uint8_t nonce[12],
		const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n, uint8_t tag[16], uint8_t *out,
		uint32_t *ok);
/** AES-CBC, no padding, n a multiple of 16; out may equal in. */
int pxy_cpu_cbc(struct pxy_cpu_ctx *c, int enc, const uint8_t *key, size_t key_len, const uint8_t iv[16],
		const uint8_t *in, uint8_t *out, size_t n);
/** HMAC(key, hdr || msg) with mac an enum pxy_mac. */
int pxy_cpu_hmac(struct pxy_cpu_ctx *c, uint8_t mac, const uint8_t *key, size_t key_len, const uint8_t *hdr,
		 size_t hdr_len, const uint8_t *msg, size_t msg_len, uint8_t out[48]);
/**
 * HMAC(key, hdr13 || msg[0..len)) where len is secret and max_len public:
 * padded out with dummy compressions to what max_len costs (TLS
 * MAC-then-encrypt, RFC 5246 §6.2.3.2).
 */
int pxy_cpu_hmac_ct(struct pxy_cpu_ctx *c, uint8_t mac, const uint8_t *key, size_t key_len, const uint8_t hdr13[13],
		    const uint8_t *msg, uint32_t len, uint32_t max_len, uint8_t out[48]);

/** Build an EVP_PKEY (returned as void *) from CRT key material. */
void *pxy_cpu_rsa_key(const struct pxy_rsa_priv *k);
void pxy_cpu_rsa_key_free(void *pkey);
/** TLS pre-master decryption with implicit rejection (always fills pms), or PKCS#1 mode. */
int pxy_cpu_rsa_decrypt(void *pkey, struct pxy_rsa_job *j);

/** A raw primitive job (known-answer tests). */
int pxy_cpu_primitive(struct pxy_cpu_ctx *c, struct pxy_prim_job *j);

#endif

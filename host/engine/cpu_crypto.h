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

/** Build an EVP_PKEY (returned as void *) from CRT key material. */
void *pxy_cpu_rsa_key(const struct pxy_rsa_priv *k);
void pxy_cpu_rsa_key_free(void *pkey);
/** TLS pre-master decryption with implicit rejection (always fills pms), or PKCS#1 mode. */
int pxy_cpu_rsa_decrypt(void *pkey, struct pxy_rsa_job *j);

/** A raw primitive job (known-answer tests). */
int pxy_cpu_primitive(struct pxy_cpu_ctx *c, struct pxy_prim_job *j);

#endif

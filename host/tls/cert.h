/*
 * The server identity the proxy holds: the configured certificate (what the
 * server must present) and its RSA private key (what recovers pre-master
 * secrets).
 */
#ifndef PXY_CERT_H
#define PXY_CERT_H

#include <stddef.h>
#include <stdint.h>

#include "proxyssl/engine.h"

#define PXY_SERIAL_MAX 130 /* 64 bytes of hex, ':'-free, NUL */

struct pxy_cert_info {
	uint8_t sha256[32];
	char serial[PXY_SERIAL_MAX]; /* upper-case hex, "?" when unparseable */
	char subject[256];
};

struct pxy_identity {
	void *x509;    /* X509 * */
	void *pkey;    /* EVP_PKEY * */
	uint8_t *der;  /* leaf certificate, DER */
	size_t der_len;
	struct pxy_cert_info info;
	uint32_t bits;   /* RSA modulus size (other keys: their size) */
	uint32_t key_id; /* engine key-table slot (UINT32_MAX: none, a key that is not RSA) */
	uint8_t rsa;     /* an RSA key: RSA key exchange is decrypted with it; another (ECDSA, EdDSA) is
			  * only the certificate servers with forwarded keys (--key-source) must present */
	char key_type[16]; /* "RSA", "EC", "ED25519", ... */
};

#define PXY_MAX_IDENTITIES 64

/*
 * The identities in force: the io loop holds a reference, and so does every
 * connection accepted under them, until its log line. A reload puts a new set
 * in place; the old one goes (release: its keys leave the engine) when the
 * last connection that started under it has ended. One thread only.
 */
struct pxy_idset {
	unsigned refs;
	size_t n;
	void (*release)(struct pxy_idset *s); /* frees it */
	void *owner;
	struct pxy_identity ids[PXY_MAX_IDENTITIES];
};

static inline struct pxy_idset *pxy_idset_get(struct pxy_idset *s)
{
	if (s)
		s->refs++;
	return s;
}

static inline void pxy_idset_put(struct pxy_idset *s)
{
	if (s && --s->refs == 0 && s->release)
		s->release(s);
}

/**
 * Load a PEM certificate and PEM private key and check that the key is the
 * certificate's RSA key. On failure writes one line to err and returns
 * PXY_E_FILE/PXY_E_CONFIG.
 */
int pxy_identity_load(struct pxy_identity *id, const char *cert_path, const char *key_path, char *err,
		      size_t err_len);
void pxy_identity_free(struct pxy_identity *id);

/** Export the RSA private key in CRT form; pxy_rsa_priv_free releases it. */
int pxy_identity_rsa_priv(const struct pxy_identity *id, struct pxy_rsa_priv *out);
/** The same for any OpenSSL RSA key (an EVP_PKEY *); pxy_rsa_priv_free releases it. */
int pxy_rsa_priv_from_pkey(const void *pkey, struct pxy_rsa_priv *out);
void pxy_rsa_priv_free(struct pxy_rsa_priv *k);

/** Whether the identity's certificate is valid for this host name (SAN DNS
 * names, wildcards as RFC 6125 allows, CN when there is no SAN). */
int pxy_identity_names_host(const struct pxy_identity *id, const char *host);

/** Fingerprint, serial and subject of a DER certificate received from a peer. */
void pxy_cert_describe(const uint8_t *der, size_t len, struct pxy_cert_info *out);
/** The SHA-256 of a certificate's DER (what identities are matched by). */
void pxy_cert_sha256(const uint8_t *der, size_t len, uint8_t out[32]);

/** "AB:CD:..." (96 bytes incl. NUL) */
void pxy_cert_fp_str(const struct pxy_cert_info *ci, char out[96]);

#endif

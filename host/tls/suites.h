/*
 * Cipher suites by IANA number: what the policy needs to judge a
 * ServerHello (key exchange), and what the key schedule and engines need to
 * decrypt the RSA key-exchange ones: the bulk cipher's descriptor (sizes,
 * nonce form, where it runs), the MAC and the PRF hash.
 */
#ifndef PXY_SUITES_H
#define PXY_SUITES_H

#include <stdint.h>

#include "proxyssl/engine.h"

enum pxy_kx {
	PXY_KX_UNKNOWN = 0,
	PXY_KX_RSA,
	PXY_KX_DHE_RSA,
	PXY_KX_DHE_DSS,
	PXY_KX_ECDHE_RSA,
	PXY_KX_ECDHE_ECDSA,
	PXY_KX_PSK,
	PXY_KX_RSA_PSK,
	PXY_KX_DHE_PSK,
	PXY_KX_ECDHE_PSK,
	PXY_KX_ANON,
	PXY_KX_SRP,
	PXY_KX_TLS13,
};

enum pxy_prf_hash {
	PXY_PRF_SHA256 = 1,
	PXY_PRF_SHA384 = 2,
	PXY_PRF_MD5_SHA1 = 3, /* TLS 1.0 and 1.1 (RFC 2246 §5, RFC 4346 §5), whatever the suite */
};

/** The PRF a session uses: the suite's from TLS 1.2 on, MD5/SHA-1 before. */
#define PXY_PRF_FOR(suite_prf, version) ((version) < 0x0303 ? PXY_PRF_MD5_SHA1 : (suite_prf))

struct pxy_suite {
	uint16_t id;
	const char *name; /* IANA name */
	uint8_t kx;       /* enum pxy_kx */
	uint8_t bulk;     /* enum pxy_bulk; PXY_BULK_NONE: not decryptable */
	uint8_t mac;      /* enum pxy_mac */
	uint8_t prf;      /* enum pxy_prf_hash (TLS 1.2) */
	uint16_t min_version; /* lowest TLS version that may negotiate it */
};

/** How a bulk cipher protects records (RFC 5246 §6.2.3). */
enum pxy_bulk_kind {
	PXY_BK_AEAD = 1,   /* nonce = fixed (4, key block) || explicit (8, in the record); tag after */
	PXY_BK_CBC = 2,    /* IV (TLS 1.0: chained; later: explicit), MAC-then-encrypt or EtM, padding */
	PXY_BK_STREAM = 3, /* one keystream per direction across records, MAC-then-encrypt */
	PXY_BK_NULL = 4,   /* the MAC only */
};

/**
 * One bulk cipher: everything the key schedule, the record layer and the
 * engines need. Adding a suite is one row in the suite table; adding a
 * cipher, one row here (and, when its kind is new, the code for that kind).
 */
struct pxy_bulk_desc {
	const char *name;     /* "AES-128-GCM": logs and metrics */
	const char *evp;      /* OpenSSL's cipher; NULL for NULL */
	const char *provider; /* NULL: the default provider; "legacy": OpenSSL's legacy provider */
	uint8_t kind;         /* enum pxy_bulk_kind */
	uint8_t key_len;
	uint8_t block;        /* CBC's block size (16, or 8 for 3DES) */
	uint8_t fixed_iv;     /* AEAD: from the key block (4); CBC: the block, under TLS 1.0 */
	uint8_t record_iv;    /* AEAD: the explicit nonce (8); CBC: the block, from TLS 1.1 on */
	uint8_t tag_len;      /* AEAD: 16, or 8 for CCM_8 */
	uint8_t ccm;          /* AEAD in CCM mode (OpenSSL sets its nonce and tag lengths first) */
	uint8_t ghash;        /* GCM built here from the cipher's CTR mode (evp) and GHASH, for a cipher
			       * OpenSSL has no GCM of (Camellia) */
	uint8_t device;       /* the card's kernels take it (the others run in the software engine) */
};

/** The descriptor of a bulk cipher, or NULL for PXY_BULK_NONE and unknown values. */
const struct pxy_bulk_desc *pxy_bulk_desc(uint8_t bulk);

/** 1 if this process's OpenSSL provides the cipher (checked once; the legacy provider is loaded
 * when present). Otherwise 0, and *why (when given) says what is missing. */
int pxy_bulk_available(uint8_t bulk, const char **why);

/** The MAC's hash for OpenSSL ("SHA256"), or NULL for AEAD. */
const char *pxy_mac_md(uint8_t mac);

/** The table entry for id, or NULL. */
const struct pxy_suite *pxy_suite_find(uint16_t id);

/** IANA name, or "0xXXXX" in the caller's 7-byte buffer for unknown ids. */
const char *pxy_suite_name(uint16_t id, char buf[8]);

const char *pxy_kx_name(uint8_t kx);

/** 1 if an engine can decrypt this suite at this version (RSA key exchange, a bulk cipher this
 * process's OpenSSL provides, a version the suite may use). */
int pxy_suite_decryptable(const struct pxy_suite *s, uint16_t version);

/** An ECDHE or DHE suite with a certificate: decryptable with the master secret its server forwards. */
int pxy_suite_forwardable(const struct pxy_suite *s);
/** Such a suite, at this version, with a cipher this OpenSSL provides. */
int pxy_suite_decryptable_forwarded(const struct pxy_suite *s, uint16_t version);

/** Key and MAC sizes (0 for none). */
unsigned pxy_bulk_key_len(uint8_t bulk);
unsigned pxy_mac_len(uint8_t mac);

/** "TLS1.2", "SSL3.0", "0x7f1c" */
const char *pxy_version_name(uint16_t v, char buf[8]);

#define PXY_TLS10 0x0301
#define PXY_TLS11 0x0302
#define PXY_TLS12 0x0303
#define PXY_TLS13 0x0304
#define PXY_SSL30 0x0300

#endif

/*
 * Cipher suites by IANA number: what the policy needs to judge a
 * ServerHello (key exchange), and what the key schedule and engines need to
 * decrypt the ones we support (RSA key exchange with AES-GCM or AES-CBC).
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

/** The table entry for id, or NULL. */
const struct pxy_suite *pxy_suite_find(uint16_t id);

/** IANA name, or "0xXXXX" in the caller's 7-byte buffer for unknown ids. */
const char *pxy_suite_name(uint16_t id, char buf[8]);

const char *pxy_kx_name(uint8_t kx);

/** 1 if an engine can decrypt this suite at this version. */
int pxy_suite_decryptable(const struct pxy_suite *s, uint16_t version);

/** Key, MAC key and MAC/tag sizes for a decryptable suite. */
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

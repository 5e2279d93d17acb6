/*
 * TLS 1.2 key schedule on OpenSSL's KDFs: master secret (RFC 5246 §8.1),
 * extended master secret (RFC 7627 §4), key block (RFC 5246 §6.3) and
 * Finished verify_data (RFC 5246 §7.4.9).
 */
#ifndef PXY_KEYS_H
#define PXY_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "proxyssl/engine.h"
#include "tls/suites.h"

#define PXY_MASTER_LEN 48
#define PXY_MAX_HASH 48

/** Output size of the suite's PRF hash. */
size_t pxy_prf_hash_len(uint8_t prf);

/** P_hash(secret, label || seed1 || seed2) -> out (RFC 5246 §5). */
int pxy_prf(uint8_t prf, const uint8_t *secret, size_t secret_len, const char *label,
	    const uint8_t *seed1, size_t seed1_len, const uint8_t *seed2, size_t seed2_len,
	    uint8_t *out, size_t out_len);

/** Hash of the handshake transcript with the suite's PRF hash. */
int pxy_transcript_hash(uint8_t prf, const uint8_t *msgs, size_t len, uint8_t *out, size_t *out_len);

int pxy_keys_master(uint8_t prf, const uint8_t pms[PXY_PMS_LEN], const uint8_t client_random[32],
		    const uint8_t server_random[32], uint8_t ms[PXY_MASTER_LEN]);

int pxy_keys_master_ems(uint8_t prf, const uint8_t pms[PXY_PMS_LEN], const uint8_t *session_hash,
			size_t hash_len, uint8_t ms[PXY_MASTER_LEN]);

/** Both directions' traffic keys from the master secret. */
int pxy_keys_traffic(const struct pxy_suite *s, uint16_t version, int etm, const uint8_t ms[PXY_MASTER_LEN],
		     const uint8_t client_random[32], const uint8_t server_random[32],
		     struct pxy_traffic_keys *client_write, struct pxy_traffic_keys *server_write);

/** verify_data for the client's (is_client=1) or server's Finished. */
int pxy_keys_finished(uint8_t prf, const uint8_t ms[PXY_MASTER_LEN], int is_client,
		      const uint8_t *transcript_hash, size_t hash_len, uint8_t out[12]);

/* ---- TLS 1.3 (RFC 8446 §7): keys from the traffic secrets a server forwards ---- */

/** HKDF-Expand-Label(Secret, Label, Context, Length) with the suite's hash. */
int pxy_tls13_expand_label(uint8_t prf, const uint8_t *secret, size_t secret_len, const char *label,
			   const uint8_t *context, size_t context_len, uint8_t *out, size_t out_len);

/** A direction's record key and IV from its traffic secret (RFC 8446 §7.3). */
int pxy_tls13_traffic_keys(const struct pxy_suite *s, const uint8_t *secret, size_t secret_len,
			   struct pxy_traffic_keys *k);

/** The Finished verify_data (Hash.length bytes) under a handshake traffic secret (RFC 8446 §4.4.4). */
int pxy_tls13_finished(uint8_t prf, const uint8_t *secret, size_t secret_len, const uint8_t *transcript_hash,
		       uint8_t *out);

/** KeyUpdate: the next application traffic secret, in place (RFC 8446 §7.2). */
int pxy_tls13_next_secret(uint8_t prf, uint8_t *secret, size_t secret_len);

#endif

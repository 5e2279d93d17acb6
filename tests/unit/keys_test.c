/*
 * Key schedule: the PRF against an independent P_hash built from HMAC, and
 * master secret (with and without EMS) and both Finished messages against
 * what libssl itself computed in a real handshake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "engine/cpu_crypto.h"
#include "testutil.h"
#include "tls/hs.h"
#include "tls/keys.h"
#include "tls/record.h"

/* RFC 5246 §5, written out: A(i) = HMAC(secret, A(i-1)); out = HMAC(secret, A(i) + seed) ... */
static void ref_p_hash(const char *md, const uint8_t *secret, size_t slen, const uint8_t *seed, size_t seedlen,
		       uint8_t *out, size_t olen)
{
	uint8_t a[64], tmp[64];
	size_t alen, tlen, done = 0;
	uint8_t *buf = malloc(64 + seedlen);

	alen = 0;
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, secret, slen, seed, seedlen, a, sizeof(a), &alen));
	while (done < olen) {
		memcpy(buf, a, alen);
		memcpy(buf + alen, seed, seedlen);
		assert_non_null(
			EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, secret, slen, buf, alen + seedlen, tmp, sizeof(tmp), &tlen));
		memcpy(out + done, tmp, olen - done < tlen ? olen - done : tlen);
		done += tlen;
		assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, secret, slen, a, alen, a, sizeof(a), &alen));
	}
	free(buf);
}

static void test_prf_reference(void **state)
{
	(void)state;
	for (int i = 0; i < 200; i++) {
		uint8_t secret[48], s1[40], s2[40], seed[200], out[300], ref[300];
		uint8_t prf = (i & 1) ? PXY_PRF_SHA384 : PXY_PRF_SHA256;
		const char *label = (i % 3) ? "key expansion" : "test label";
		size_t olen = 1 + (size_t)(i * 7 % 299), s1l = (size_t)(i % 40), s2l = (size_t)(i * 3 % 40), sl;

		RAND_bytes(secret, sizeof(secret));
		RAND_bytes(s1, sizeof(s1));
		RAND_bytes(s2, sizeof(s2));
		sl = strlen(label);
		memcpy(seed, label, sl);
		memcpy(seed + sl, s1, s1l);
		memcpy(seed + sl + s1l, s2, s2l);
		/* seed1 must not be empty for the KDF; the protocol never passes an empty one */
		if (s1l == 0)
			continue;
		assert_int_equal(pxy_prf(prf, secret, sizeof(secret), label, s1, s1l, s2, s2l, out, olen), PXY_OK);
		ref_p_hash(prf == PXY_PRF_SHA384 ? "SHA384" : "SHA256", secret, sizeof(secret), seed, sl + s1l + s2l,
			   ref, olen);
		assert_memory_equal(out, ref, olen);
	}
}

struct capture {
	uint8_t hs[1 << 16]; /* plaintext handshake messages, in order */
	size_t hs_len;
	size_t cke_end;      /* transcript length through the ClientKeyExchange */
	uint8_t epms[512];
	size_t epms_len;
	uint8_t cr[32], sr[32];
	int ccs_seen[2];
};

/* Collect plaintext handshake records until each side's ChangeCipherSpec. */
static void on_bytes(void *ctx, enum pxy_dir d, uint8_t *p, size_t n)
{
	struct capture *c = ctx;
	size_t i = 0;

	while (i + 5 <= n) {
		size_t len = (size_t)p[i + 3] << 8 | p[i + 4];

		if (p[i] == PXY_CT_CHANGE_CIPHER_SPEC)
			c->ccs_seen[d] = 1;
		else if (p[i] == PXY_CT_HANDSHAKE && !c->ccs_seen[d]) {
			const uint8_t *m = p + i + 5;

			if (m[0] == PXY_HS_CLIENT_HELLO)
				memcpy(c->cr, m + 6, 32);
			if (m[0] == PXY_HS_SERVER_HELLO)
				memcpy(c->sr, m + 6, 32);
			memcpy(c->hs + c->hs_len, m, len);
			c->hs_len += len;
			if (m[0] == PXY_HS_CLIENT_KEY_EXCHANGE) {
				c->cke_end = c->hs_len;
				c->epms_len = (size_t)m[4] << 8 | m[5];
				memcpy(c->epms, m + 6, c->epms_len);
			}
		}
		i += 5 + len;
	}
}

static void check_against_libssl(const char *cipher, int no_ems)
{
	struct tu_ident srv;
	struct tu_pair p;
	struct tu_pair_opts o = { .ciphers = cipher, .no_ems = no_ems, .no_tickets = 1, .server = &srv };
	struct capture *c = calloc(1, sizeof(*c));
	struct pxy_rsa_priv priv;
	struct pxy_identity id;
	struct pxy_rsa_job job;
	uint8_t ms[48], want_ms[48], hash[48], fin[12], want_fin[12], sh[48];
	size_t hlen, shl;
	uint8_t prf = strstr(cipher, "SHA384") ? PXY_PRF_SHA384 : PXY_PRF_SHA256;
	void *pk;
	char err[256];

	assert_int_equal(tu_ident_make(&srv, 2048, "k"), 0);
	assert_int_equal(tu_pair_new(&p, &o), 0);
	p.on_bytes = on_bytes;
	p.ctx = c;
	assert_int_equal(tu_pair_handshake(&p), 0);
	assert_true(c->epms_len > 0);

	/* the pre-master, as the engine recovers it */
	assert_int_equal(pxy_identity_load(&id, srv.cert_path, srv.key_path, err, sizeof(err)), 0);
	assert_int_equal(pxy_identity_rsa_priv(&id, &priv), 0);
	pk = pxy_cpu_rsa_key(&priv);
	assert_non_null(pk);
	memset(&job, 0, sizeof(job));
	job.client_version = 0x0303;
	job.in_len = (uint16_t)c->epms_len;
	memcpy(job.in, c->epms, c->epms_len);
	assert_int_equal(pxy_cpu_rsa_decrypt(pk, &job), PXY_OK);

	if (no_ems) {
		assert_int_equal(pxy_keys_master(prf, job.pms, c->cr, c->sr, ms), PXY_OK);
	} else {
		assert_int_equal(pxy_transcript_hash(prf, c->hs, c->cke_end, sh, &shl), PXY_OK);
		assert_int_equal(pxy_keys_master_ems(prf, job.pms, sh, shl, ms), PXY_OK);
	}
	assert_int_equal(SSL_SESSION_get_master_key(SSL_get_session(p.c), want_ms, 48), 48);
	assert_memory_equal(ms, want_ms, 48);

	/* client Finished covers everything before it; the server's also covers the client's */
	assert_int_equal(pxy_transcript_hash(prf, c->hs, c->hs_len, hash, &hlen), PXY_OK);
	assert_int_equal(pxy_keys_finished(prf, ms, 1, hash, hlen, fin), PXY_OK);
	assert_int_equal(SSL_get_finished(p.c, want_fin, 12), 12);
	assert_memory_equal(fin, want_fin, 12);
	c->hs[c->hs_len++] = PXY_HS_FINISHED;
	c->hs[c->hs_len++] = 0;
	c->hs[c->hs_len++] = 0;
	c->hs[c->hs_len++] = 12;
	memcpy(c->hs + c->hs_len, fin, 12);
	c->hs_len += 12;
	assert_int_equal(pxy_transcript_hash(prf, c->hs, c->hs_len, hash, &hlen), PXY_OK);
	assert_int_equal(pxy_keys_finished(prf, ms, 0, hash, hlen, fin), PXY_OK);
	assert_int_equal(SSL_get_peer_finished(p.c, want_fin, 12), 12);
	assert_memory_equal(fin, want_fin, 12);

	pxy_cpu_rsa_key_free(pk);
	pxy_rsa_priv_free(&priv);
	pxy_identity_free(&id);
	tu_pair_free(&p);
	tu_ident_free(&srv);
	free(c);
}

static void test_master_and_finished_vs_libssl(void **state)
{
	(void)state;
	check_against_libssl("AES128-GCM-SHA256", 0);
	check_against_libssl("AES128-GCM-SHA256", 1);
	check_against_libssl("AES256-GCM-SHA384", 0);
	check_against_libssl("AES256-GCM-SHA384", 1);
	check_against_libssl("AES128-SHA", 1);
}

/* RFC 5246 §6.3: key_block = PRF(master_secret, "key expansion", server_random + client_random) */
static void ref_key_block(const char *md, const uint8_t ms[48], const uint8_t sr[32], const uint8_t cr[32],
			  uint8_t *out, size_t n)
{
	uint8_t seed[13 + 64];

	memcpy(seed, "key expansion", 13);
	memcpy(seed + 13, sr, 32);
	memcpy(seed + 45, cr, 32);
	ref_p_hash(md, ms, 48, seed, sizeof(seed), out, n);
}

static void test_traffic_key_layout(void **state)
{
	const struct pxy_suite *cbc = pxy_suite_find(0x003D), *gcm = pxy_suite_find(0x009D);
	struct pxy_traffic_keys cw, sw;
	uint8_t ms[48], cr[32], sr[32], block[2 * (32 + 32)];

	(void)state;
	RAND_bytes(ms, 48);
	RAND_bytes(cr, 32);
	RAND_bytes(sr, 32);
	/* RFC 5246 §6.3: client MAC, server MAC, client key, server key (TLS 1.2 CBC: no IVs) */
	assert_int_equal(pxy_keys_traffic(cbc, 0x0303, 1, ms, cr, sr, &cw, &sw), PXY_OK);
	ref_key_block("SHA256", ms, sr, cr, block, sizeof(block));
	assert_memory_equal(cw.mac_key, block, 32);
	assert_memory_equal(sw.mac_key, block + 32, 32);
	assert_memory_equal(cw.key, block + 64, 32);
	assert_memory_equal(sw.key, block + 96, 32);
	assert_int_equal(cw.iv_len, 0);
	assert_int_equal(cw.etm, 1);
	/* GCM: keys then the 4-byte salts, SHA-384 PRF */
	assert_int_equal(pxy_keys_traffic(gcm, 0x0303, 1, ms, cr, sr, &cw, &sw), PXY_OK);
	{
		uint8_t b2[72];
		ref_key_block("SHA384", ms, sr, cr, b2, sizeof(b2));
		assert_memory_equal(cw.key, b2, 32);
		assert_memory_equal(sw.key, b2 + 32, 32);
		assert_memory_equal(cw.iv, b2 + 64, 4);
		assert_memory_equal(sw.iv, b2 + 68, 4);
	}
	assert_int_equal(cw.etm, 0);
	assert_int_equal(cw.mac_len, 16);
}

/* RFC 8448 §3 (simple 1-RTT handshake): the server's handshake traffic keys from its secret */
static void test_tls13_rfc8448(void **state)
{
	static const uint8_t secret[32] = { 0xb6, 0x7b, 0x7d, 0x69, 0x0c, 0xc1, 0x6c, 0x4e, 0x75, 0xe5, 0x42,
					    0x13, 0xcb, 0x2d, 0x37, 0xb4, 0xe9, 0xc9, 0x12, 0xbc, 0xde, 0xd9,
					    0x10, 0x5d, 0x42, 0xbe, 0xfd, 0x59, 0xd3, 0x91, 0xad, 0x38 };
	static const uint8_t key[16] = { 0x3f, 0xce, 0x51, 0x60, 0x09, 0xc2, 0x17, 0x27,
					 0xd0, 0xf2, 0xe4, 0xe8, 0x6e, 0xe4, 0x03, 0xbc };
	static const uint8_t iv[12] = { 0x5d, 0x31, 0x3e, 0xb2, 0x67, 0x12, 0x76, 0xee, 0x13, 0x00, 0x0b, 0x30 };
	struct pxy_traffic_keys k;
	uint8_t next[32];

	(void)state;
	assert_int_equal(pxy_tls13_traffic_keys(pxy_suite_find(0x1301), secret, sizeof(secret), &k), PXY_OK);
	assert_memory_equal(k.key, key, 16);
	assert_memory_equal(k.iv, iv, 12);
	assert_int_equal(k.iv_len, 12);
	assert_int_equal(k.version, PXY_TLS13);
	/* a secret of another hash's length is refused */
	assert_int_equal(pxy_tls13_traffic_keys(pxy_suite_find(0x1302), secret, sizeof(secret), &k), PXY_E_STATE);
	/* KeyUpdate: the next secret is HKDF-Expand-Label(secret, "traffic upd", "", 32) */
	memcpy(next, secret, 32);
	assert_int_equal(pxy_tls13_next_secret(PXY_PRF_SHA256, next, 32), PXY_OK);
	{
		uint8_t want[32];

		assert_int_equal(pxy_tls13_expand_label(PXY_PRF_SHA256, secret, 32, "traffic upd", NULL, 0, want, 32),
				 PXY_OK);
		assert_memory_equal(next, want, 32);
		assert_memory_not_equal(next, secret, 32);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prf_reference),
		cmocka_unit_test(test_master_and_finished_vs_libssl),
		cmocka_unit_test(test_traffic_key_layout),
		cmocka_unit_test(test_tls13_rfc8448),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * unit.kernel: the HLS kernels called directly, in their synthesis form
 * (kernels-hls built with PXYK_NO_VECTOR and no host arithmetic: what v++
 * compiles), on what the engine tests cannot reach through an engine:
 *
 *  - rsa_crt_decrypt on one batch that mixes key sizes, keys, modes and
 *    rejects: more jobs of one size than a group holds (two groups), groups
 *    of every size, an empty key slot, a wrong-length ciphertext, a
 *    ciphertext equal to the modulus, bad paddings and versions next to good
 *    ones in the same group (lanes must not leak into each other);
 *  - the fault check: a key entry whose dp or Garner constant is damaged
 *    (a fault in one half, or in the recombination) must be flagged and
 *    release the random secret, not the faulty result, while an intact job
 *    in the same group decrypts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "engine/kkey.h"
#include "proxyssl/kernel_abi.h"
#include "tls/cert.h"

/* the kernels' top functions (kernels-hls/kernel.h, which carries the HLS pragmas) */
void rsa_crt_decrypt(const struct pxy_k_rsa_key *keys, const struct pxy_k_rsa_job *jobs,
		     struct pxy_k_rsa_result *results, uint32_t n_jobs);

static struct pxy_k_rsa_key keys[PXY_K_MAX_KEYS];
static struct pxy_k_rsa_job jobs[PXY_K_RSA_MAX_BATCH];
static struct pxy_k_rsa_result results[PXY_K_RSA_MAX_BATCH];

struct want {
	int valid;          /* the pre-master (or message) decrypts */
	uint8_t pms[48];
	size_t msg_len;     /* PKCS1 mode */
	uint32_t flags;
};
static struct want want[PXY_K_RSA_MAX_BATCH];

static EVP_PKEY *pk2048a, *pk2048b, *pk3072, *pk4096;

static void fill_slot(int slot, EVP_PKEY *pk)
{
	struct pxy_rsa_priv priv;

	assert_int_equal(pxy_rsa_priv_from_pkey(pk, &priv), 0);
	assert_int_equal(pxy_k_rsa_key_fill(&keys[slot], &priv), 0);
	pxy_rsa_priv_free(&priv);
}

static size_t encrypt(EVP_PKEY *pk, const uint8_t *m, size_t n, uint8_t *out)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
	size_t outlen = PXY_K_RSA_MAX_BYTES;

	assert_non_null(c);
	assert_true(EVP_PKEY_encrypt_init(c) > 0);
	assert_true(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) > 0);
	assert_true(EVP_PKEY_encrypt(c, out, &outlen, m, n) > 0);
	EVP_PKEY_CTX_free(c);
	return outlen;
}

/* a TLS job under key slot `slot`; good: a well-formed pre-master with the right version */
static void tls_job(int i, int slot, EVP_PKEY *pk, int good)
{
	struct pxy_k_rsa_job *j = &jobs[i];
	uint8_t pms[48];

	memset(j, 0, sizeof(*j));
	j->key_id = (uint32_t)slot;
	j->mode = PXY_K_RSA_TLS;
	j->client_version = 0x0303;
	assert_int_equal(RAND_bytes(j->random, 48), 1);
	assert_int_equal(RAND_bytes(pms, 48), 1);
	pms[0] = 3;
	pms[1] = good ? 3 : 2; /* a version one bit off decrypts to a random secret too */
	j->in_len = (uint32_t)encrypt(pk, pms, 48, j->in);
	want[i].valid = good;
	memcpy(want[i].pms, good ? pms : j->random, 48);
	want[i].flags = 0;
}

static void check_tls(int i)
{
	const struct pxy_k_rsa_result *r = &results[i];

	assert_int_equal(r->status, PXY_K_DONE);
	if (r->flags != want[i].flags)
		fail_msg("job %d: flags %u, want %u", i, r->flags, want[i].flags);
	assert_int_equal(r->out_len, 48);
	if (memcmp(r->out, want[i].pms, 48) != 0)
		fail_msg("job %d: wrong secret (want the %s one)", i, want[i].valid ? "decrypted" : "random");
}

static int setup(void **state)
{
	(void)state;
	pk2048a = EVP_RSA_gen(2048);
	pk2048b = EVP_RSA_gen(2048);
	pk3072 = EVP_RSA_gen(3072);
	pk4096 = EVP_RSA_gen(4096);
	return pk2048a && pk2048b && pk3072 && pk4096 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(pk2048a);
	EVP_PKEY_free(pk2048b);
	EVP_PKEY_free(pk3072);
	EVP_PKEY_free(pk4096);
	return 0;
}

static void test_rsa_mixed_batch(void **state)
{
	static const uint8_t msg[20] = "a PKCS#1 message....";
	int n = 0;

	(void)state;
	memset(keys, 0, sizeof(keys));
	fill_slot(0, pk2048a);
	fill_slot(1, pk2048b);
	fill_slot(2, pk3072);
	fill_slot(3, pk4096);

	/* 40 RSA-2048 jobs (a full group and a partial one), two keys, some bad */
	for (int i = 0; i < 40; i++, n++)
		tls_job(n, i % 2, i % 2 ? pk2048b : pk2048a, i % 7 != 3);
	for (int i = 0; i < 5; i++, n++)
		tls_job(n, 2, pk3072, i != 2);
	for (int i = 0; i < 3; i++, n++)
		tls_job(n, 3, pk4096, 1);
	/* random bytes below the modulus: a bad padding */
	tls_job(n, 0, pk2048a, 1);
	jobs[n].in[0] = 0x01;
	assert_int_equal(RAND_bytes(jobs[n].in + 1, 255), 1);
	want[n].valid = 0;
	memcpy(want[n].pms, jobs[n].random, 48);
	n++;
	/* PKCS1 mode, a 20-byte message */
	memset(&jobs[n], 0, sizeof(jobs[n]));
	jobs[n].key_id = 1;
	jobs[n].mode = PXY_K_RSA_PKCS1;
	jobs[n].in_len = (uint32_t)encrypt(pk2048b, msg, sizeof(msg), jobs[n].in);
	want[n].msg_len = sizeof(msg);
	int pkcs1 = n++;
	/* an empty key slot, a key id past the table, a ciphertext one byte short, c = n */
	tls_job(n, 0, pk2048a, 1);
	jobs[n].key_id = 5;
	want[n].valid = 0;
	want[n].flags = PXY_K_F_BADKEY;
	memcpy(want[n].pms, jobs[n].random, 48);
	int empty = n++;
	tls_job(n, 0, pk2048a, 1);
	jobs[n].key_id = 99;
	want[n].valid = 0;
	want[n].flags = PXY_K_F_BADKEY;
	memcpy(want[n].pms, jobs[n].random, 48);
	n++;
	tls_job(n, 0, pk2048a, 1);
	jobs[n].in_len = 255;
	want[n].valid = 0;
	memcpy(want[n].pms, jobs[n].random, 48);
	n++;
	tls_job(n, 2, pk3072, 1);
	for (int k = 0; k < 384; k++) /* the modulus, big-endian, from the key entry's limbs */
		jobs[n].in[k] = (uint8_t)(keys[2].n[(383 - k) / 8] >> (8 * ((383 - k) % 8)));
	want[n].valid = 0;
	memcpy(want[n].pms, jobs[n].random, 48);
	n++;
	assert_true(n <= PXY_K_RSA_MAX_BATCH);

	memset(results, 0, sizeof(results));
	rsa_crt_decrypt(keys, jobs, results, (uint32_t)n);

	for (int i = 0; i < n; i++) {
		if (i == pkcs1) {
			assert_int_equal(results[i].status, PXY_K_DONE);
			assert_int_equal(results[i].flags, 0);
			assert_int_equal(results[i].ok, 1);
			assert_int_equal(results[i].out_len, sizeof(msg));
			assert_memory_equal(results[i].out, msg, sizeof(msg));
			continue;
		}
		check_tls(i);
	}
	(void)empty;
	for (int i = n; i < PXY_K_RSA_MAX_BATCH; i++)
		assert_int_equal(results[i].status, 0); /* nothing written past the batch */
}

static void test_rsa_fault(void **state)
{
	int n = 0;

	(void)state;
	memset(keys, 0, sizeof(keys));
	fill_slot(0, pk2048a);
	fill_slot(1, pk2048a);
	fill_slot(2, pk2048a);
	fill_slot(3, pk3072);
	keys[0].dp[3] ^= 1ull << 17;      /* the p half's exponentiation goes wrong */
	keys[1].qinv_m[5] ^= 1ull << 40;  /* Garner's recombination goes wrong */
	keys[3].dq[0] ^= 2;             /* the q half, RSA-3072 */

	for (int slot = 0; slot < 3; slot++, n++)
		tls_job(n, slot, pk2048a, 1);
	tls_job(n++, 3, pk3072, 1);
	for (int i = 0; i < n; i++) {
		if (jobs[i].key_id == 2)
			continue; /* the intact key, in the same group as the damaged ones */
		want[i].valid = 0;
		want[i].flags = PXY_K_F_FAULT;
		memcpy(want[i].pms, jobs[i].random, 48);
	}
	memset(results, 0, sizeof(results));
	rsa_crt_decrypt(keys, jobs, results, (uint32_t)n);
	for (int i = 0; i < n; i++)
		check_tls(i);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsa_mixed_batch),
		cmocka_unit_test(test_rsa_fault),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

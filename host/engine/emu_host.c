/*
 * The host's arithmetic, lent to the kernels' emulation library (kernel_abi.h,
 * struct pxy_k_emu_host): AES-GCM, AES-CBC and HMAC on the cpu engine's keyed
 * OpenSSL contexts, and the CRT exponentiations on OpenSSL's constant-time
 * modular exponentiation (BN_mod_exp_mont_consttime_x2: two 1024-bit halves
 * side by side with AVX-512 IFMA where the CPU has it, MULX/ADX code else).
 *
 * Compute units call these from their own threads (or from the loop's, when
 * runs execute inline): every thread has its own contexts, made on first use
 * and freed when the thread ends. pxy_emu_host_idle() drops the keys a
 * thread's contexts hold (the device calls it when a unit has no work).
 */
#include "engine/emu_host.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "engine/cpu_crypto.h"
#include "util/ct.h"
#include "util/util.h"

#define MONT_CACHE 6 /* Montgomery contexts kept per thread: p, q and n of two keys */

struct mont_entry {
	BN_MONT_CTX *mont;
	uint64_t used; /* LRU stamp; 0: empty */
	uint32_t nl;
	uint64_t mod[PXY_K_N_LIMBS]; /* a prime, or the modulus (the fault check's) */
};

struct host_tls {
	struct pxy_cpu_ctx *cpu;
	BN_CTX *bn;
	struct mont_entry mc[MONT_CACHE];
	uint64_t clock;
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_ok;

static void mont_forget(struct host_tls *t)
{
	for (int i = 0; i < MONT_CACHE; i++) {
		/* the moduli are the key's primes */
		BN_MONT_CTX_free(t->mc[i].mont);
		pxy_wipe(&t->mc[i], sizeof(t->mc[i]));
	}
}

static void tls_free(void *p)
{
	struct host_tls *t = p;

	if (!t)
		return;
	pxy_cpu_ctx_free(t->cpu);
	mont_forget(t);
	BN_CTX_free(t->bn);
	free(t);
}

static void tls_init(void)
{
	tls_ok = pthread_key_create(&tls_key, tls_free) == 0;
}

static struct host_tls *tls_get(void)
{
	struct host_tls *t;

	pthread_once(&tls_once, tls_init);
	if (!tls_ok)
		return NULL;
	t = pthread_getspecific(tls_key);
	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->cpu = pxy_cpu_ctx_new();
	t->bn = BN_CTX_secure_new();
	if (!t->cpu || !t->bn || pthread_setspecific(tls_key, t) != 0) {
		tls_free(t);
		return NULL;
	}
	return t;
}

static int host_gcm(int enc, const uint8_t *key, uint32_t key_len, const uint8_t nonce[12], const uint8_t *aad,
		    uint32_t aad_len, const uint8_t *in, uint32_t n, uint8_t tag[16], uint8_t *out, uint32_t *ok)
{
	struct host_tls *t = tls_get();

	return t && pxy_cpu_gcm(t->cpu, enc, key, key_len, nonce, aad, aad_len, in, n, tag, out, ok) == PXY_OK ? 0 : -1;
}

static int host_cbc(int enc, const uint8_t *key, uint32_t key_len, const uint8_t iv[16], const uint8_t *in,
		    uint8_t *out, uint32_t n)
{
	struct host_tls *t = tls_get();

	return t && pxy_cpu_cbc(t->cpu, enc, key, key_len, iv, in, out, n) == PXY_OK ? 0 : -1;
}

static int host_hmac(int alg, const uint8_t *key, uint32_t key_len, const uint8_t *hdr, uint32_t hdr_len,
		     const uint8_t *msg, uint32_t msg_len, uint8_t *out)
{
	struct host_tls *t = tls_get();

	return t && pxy_cpu_hmac(t->cpu, (uint8_t)alg, key, key_len, hdr, hdr_len, msg, msg_len, out) == PXY_OK ? 0
														: -1;
}

static int host_hmac_ct(int alg, const uint8_t *key, uint32_t key_len, const uint8_t hdr13[13], const uint8_t *msg,
			uint32_t len, uint32_t max_len, uint8_t *out)
{
	struct host_tls *t = tls_get();

	return t && pxy_cpu_hmac_ct(t->cpu, (uint8_t)alg, key, key_len, hdr13, msg, len, max_len, out) == PXY_OK ? 0
														    : -1;
}

/* limbs (little-endian 64-bit words) <-> BIGNUM; x86-64 and the ABI are both little-endian */
static BIGNUM *limbs_bn(BN_CTX *ctx, const uint64_t *v, uint32_t nl)
{
	BIGNUM *b = BN_CTX_get(ctx);

	return b && BN_lebin2bn((const unsigned char *)v, (int)(nl * 8), b) ? b : NULL;
}

/* The Montgomery context of modulus m (nl limbs): cached, else made and cached. */
static BN_MONT_CTX *mont_for(struct host_tls *t, const BIGNUM *m, const uint64_t *mv, uint32_t nl)
{
	struct mont_entry *hit = NULL, *lru = &t->mc[0];

	for (int i = 0; i < MONT_CACHE; i++) {
		struct mont_entry *e = &t->mc[i];

		if (e->used && e->nl == nl && pxy_ct_memeq(e->mod, mv, nl * 8))
			hit = e;
		if (e->used < lru->used)
			lru = e;
	}
	if (!hit) {
		BN_MONT_CTX *mc = BN_MONT_CTX_new();

		if (!mc || !BN_MONT_CTX_set(mc, m, t->bn)) {
			BN_MONT_CTX_free(mc);
			return NULL;
		}
		hit = lru;
		BN_MONT_CTX_free(hit->mont);
		hit->mont = mc;
		hit->nl = nl;
		memcpy(hit->mod, mv, nl * 8);
	}
	hit->used = ++t->clock;
	return hit->mont;
}

static int host_modexp2(uint64_t *r0, uint64_t *r1, const uint64_t *x0, const uint64_t *x1, const uint64_t *e0,
			const uint64_t *e1, const uint64_t *m0, const uint64_t *m1, uint32_t nl)
{
	struct host_tls *t = tls_get();
	BIGNUM *a0, *a1, *p0, *p1, *n0, *n1, *o0 = NULL, *o1 = NULL;
	BN_MONT_CTX *mc0, *mc1;
	int r = -1;

	if (!t || nl == 0 || nl > PXY_K_P_LIMBS)
		return -1;
	BN_CTX_start(t->bn);
	a0 = limbs_bn(t->bn, x0, nl);
	a1 = limbs_bn(t->bn, x1, nl);
	p0 = limbs_bn(t->bn, e0, nl);
	p1 = limbs_bn(t->bn, e1, nl);
	n0 = limbs_bn(t->bn, m0, nl);
	n1 = limbs_bn(t->bn, m1, nl);
	o0 = BN_CTX_get(t->bn);
	o1 = BN_CTX_get(t->bn);
	if (!o1 || !a0 || !a1 || !p0 || !p1 || !n0 || !n1)
		goto out;
	/* the exponents and moduli are the private key's */
	BN_set_flags(p0, BN_FLG_CONSTTIME);
	BN_set_flags(p1, BN_FLG_CONSTTIME);
	BN_set_flags(n0, BN_FLG_CONSTTIME);
	BN_set_flags(n1, BN_FLG_CONSTTIME);
	mc0 = mont_for(t, n0, m0, nl);
	mc1 = mc0 ? mont_for(t, n1, m1, nl) : NULL;
	if (!mc1 || !BN_mod_exp_mont_consttime_x2(o0, a0, p0, n0, mc0, o1, a1, p1, n1, mc1, t->bn) ||
	    BN_bn2lebinpad(o0, (unsigned char *)r0, (int)(nl * 8)) < 0 ||
	    BN_bn2lebinpad(o1, (unsigned char *)r1, (int)(nl * 8)) < 0)
		goto out;
	r = 0;
out:
	/* the context's pool keeps its numbers for the next frame: clear them */
	BN_clear(a0);
	BN_clear(a1);
	BN_clear(p0);
	BN_clear(p1);
	BN_clear(n0);
	BN_clear(n1);
	BN_clear(o0);
	BN_clear(o1);
	BN_CTX_end(t->bn);
	ERR_clear_error();
	return r;
}

static int host_modexp_pub(uint64_t *r, const uint64_t *x, uint32_t e, const uint64_t *m, uint32_t nl)
{
	struct host_tls *t = tls_get();
	BIGNUM *a, *p, *n, *o = NULL;
	BN_MONT_CTX *mc;
	int ret = -1;

	if (!t || nl == 0 || nl > PXY_K_N_LIMBS)
		return -1;
	BN_CTX_start(t->bn);
	a = limbs_bn(t->bn, x, nl);
	n = limbs_bn(t->bn, m, nl);
	p = BN_CTX_get(t->bn);
	o = BN_CTX_get(t->bn);
	/* all public: the modulus, the exponent, and m (checked against the ciphertext) */
	if (!o || !a || !n || !BN_set_word(p, e) || !(mc = mont_for(t, n, m, nl)) ||
	    !BN_mod_exp_mont(o, a, p, n, t->bn, mc) || BN_bn2lebinpad(o, (unsigned char *)r, (int)(nl * 8)) < 0)
		goto out;
	ret = 0;
out:
	/* m is the decrypted message: cleared with the rest */
	BN_clear(a);
	BN_clear(o);
	BN_CTX_end(t->bn);
	ERR_clear_error();
	return ret;
}

static const struct pxy_k_emu_host host = {
	.version = PXY_K_ABI_VERSION,
	.gcm = host_gcm,
	.cbc = host_cbc,
	.hmac = host_hmac,
	.hmac_ct = host_hmac_ct,
	.modexp2 = host_modexp2,
	.modexp_pub = host_modexp_pub,
};

const struct pxy_k_emu_host *pxy_emu_host(void)
{
	return &host;
}

void pxy_emu_host_idle(void)
{
	struct host_tls *t;

	pthread_once(&tls_once, tls_init);
	if (!tls_ok || !(t = pthread_getspecific(tls_key)))
		return;
	pxy_cpu_ctx_forget(t->cpu);
	mont_forget(t);
}

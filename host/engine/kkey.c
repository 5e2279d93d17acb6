#include "engine/kkey.h"

#include <string.h>

#include <openssl/bn.h>

#include "util/ct.h"

/* BIGNUM -> little-endian 64-bit limbs (nl of them); 0 if it does not fit */
static int to_limbs(uint64_t *out, int nl, const BIGNUM *b)
{
	unsigned char buf[PXY_K_RSA_MAX_BYTES];
	int n = nl * 8;

	if (BN_num_bytes(b) > n || BN_bn2lebinpad(b, buf, n) != n)
		return 0;
	for (int i = 0; i < nl; i++) {
		uint64_t v = 0;
		for (int j = 7; j >= 0; j--)
			v = (v << 8) | buf[i * 8 + j];
		out[i] = v;
	}
	pxy_wipe(buf, sizeof(buf));
	return 1;
}

/* -m^-1 mod 2^64 (m odd), by Newton's iteration */
static uint64_t neg_inv64(uint64_t m0)
{
	uint64_t x = m0; /* correct to 3 bits for odd m0 */

	for (int i = 0; i < 6; i++)
		x *= 2 - m0 * x;
	return 0 - x;
}

/* R^2 mod m, R = 2^(64 nl) */
static int rr(uint64_t *out, int nl, const BIGNUM *m, BN_CTX *ctx)
{
	BIGNUM *r = BN_CTX_get(ctx);
	int ok = r && BN_set_bit(r, 2 * 64 * nl) && BN_mod(r, r, m, ctx) && to_limbs(out, nl, r);
	return ok;
}

int pxy_k_rsa_key_fill(struct pxy_k_rsa_key *k, const struct pxy_rsa_priv *priv)
{
	BN_CTX *ctx = BN_CTX_secure_new();
	BIGNUM *n, *e, *p, *q, *dp, *dq, *qinv, *t;
	int np, nn, ok = 0;

	memset(k, 0, sizeof(*k));
	if (!ctx)
		return PXY_E_NOMEM;
	BN_CTX_start(ctx);
	n = BN_CTX_get(ctx);
	e = BN_CTX_get(ctx);
	p = BN_CTX_get(ctx);
	q = BN_CTX_get(ctx);
	dp = BN_CTX_get(ctx);
	dq = BN_CTX_get(ctx);
	qinv = BN_CTX_get(ctx);
	t = BN_CTX_get(ctx);
	if (!t || !BN_bin2bn(priv->n.p, (int)priv->n.len, n) || !BN_bin2bn(priv->e.p, (int)priv->e.len, e) ||
	    !BN_bin2bn(priv->p.p, (int)priv->p.len, p) || !BN_bin2bn(priv->q.p, (int)priv->q.len, q) ||
	    !BN_bin2bn(priv->dp.p, (int)priv->dp.len, dp) || !BN_bin2bn(priv->dq.p, (int)priv->dq.len, dq) ||
	    !BN_bin2bn(priv->qinv.p, (int)priv->qinv.len, qinv))
		goto out;
	/* the reductions modulo p and q below divide by a secret: constant-time BN paths */
	BN_set_flags(p, BN_FLG_CONSTTIME);
	BN_set_flags(q, BN_FLG_CONSTTIME);
	if (priv->bits != 2048 && priv->bits != 3072 && priv->bits != 4096)
		goto out;
	if (BN_num_bits(e) > 32 || !BN_is_odd(p) || !BN_is_odd(q))
		goto out;
	nn = (int)priv->bits / 64;
	np = nn / 2;
	/* the kernel's Garner step assumes q < 2p, and primes that fill their limbs */
	if (BN_num_bits(p) != (int)priv->bits / 2 || BN_num_bits(q) != (int)priv->bits / 2)
		goto out;
	k->bits = priv->bits;
	k->e = (uint32_t)BN_get_word(e);
	if (!to_limbs(k->n, nn, n) || !to_limbs(k->p, np, p) || !to_limbs(k->q, np, q) ||
	    !to_limbs(k->dp, np, dp) || !to_limbs(k->dq, np, dq))
		goto out;
	k->n0inv = neg_inv64(k->n[0]);
	k->p0inv = neg_inv64(k->p[0]);
	k->q0inv = neg_inv64(k->q[0]);
	if (!rr(k->rr_n, nn, n, ctx) || !rr(k->rr_p, np, p, ctx) || !rr(k->rr_q, np, q, ctx))
		goto out;
	/* qinv * R mod p */
	if (!BN_lshift(t, qinv, 64 * np) || !BN_mod(t, t, p, ctx) || !to_limbs(k->qinv_m, np, t))
		goto out;
	ok = 1;
out:
	BN_CTX_end(ctx);
	BN_CTX_free(ctx);
	if (!ok) {
		pxy_k_rsa_key_wipe(k);
		return PXY_E_KEY;
	}
	return PXY_OK;
}

void pxy_k_rsa_key_wipe(struct pxy_k_rsa_key *k)
{
	pxy_wipe(k, sizeof(*k));
}

/*
 * rsa_crt_decrypt: RSA private-key decryption of TLS pre-master secrets, a
 * batch of jobs per launch, keys from a device-resident table.
 *
 *   m1 = c^dp mod p, m2 = c^dq mod q         (Montgomery, fixed 4-bit window)
 *   m  = m2 + q * (qinv * (m1 - m2) mod p)   (Garner)
 *   check m^e mod n == c before releasing m  (a fault must not leak a prime)
 *   unpad PKCS#1 v1.5 type 2 in constant time; in TLS mode a bad padding,
 *   a wrong length or a wrong version yields the host's random secret instead
 *   (RFC 5246 §7.4.7.1), with no observable difference.
 *
 * Work per job depends on the key size only (public). Secret values never
 * choose a branch or an address: exponent windows select table entries by
 * masks, conditional subtractions are masked, the padding is scanned whole.
 */
#include "bn.h"

PXYK_BN_DEFINE(16) /* RSA-2048 primes */
PXYK_BN_DEFINE(24) /* RSA-3072 primes */
PXYK_BN_DEFINE(32) /* RSA-4096 primes, and RSA-2048 moduli */
PXYK_BN_DEFINE(48) /* RSA-3072 moduli */
PXYK_BN_DEFINE(64) /* RSA-4096 moduli */

/* Big-endian bytes (k of them) to little-endian limbs (nl of them). */
static void bytes_to_limbs(limb_t *r, int nl, const uint8_t *b, int k)
{
BYTES_TO_LIMBS:
	for (int i = 0; i < nl; i++) {
		limb_t v = 0;
		for (int j = 0; j < 8; j++) {
			int idx = k - 1 - (i * 8 + j);
			limb_t byte = idx >= 0 ? b[idx] : 0;
			v |= byte << (8 * j);
		}
		r[i] = v;
	}
}

static void limbs_to_bytes(uint8_t *b, int k, const limb_t *r)
{
LIMBS_TO_BYTES:
	for (int i = 0; i < k; i++) {
		int pos = k - 1 - i;
		b[pos] = (uint8_t)(r[i >> 3] >> (8 * (i & 7)));
	}
}

/*
 * In the emulation library, the exponentiations of both halves and the fault
 * check's may run on the host's arithmetic (kernel_abi.h, struct
 * pxy_k_emu_host): 1 if they did.
 */
#ifdef PXYK_HAVE_HOST
#define RSA_HOST_EXP2(mm, cx, ex, mod, np)                                                                \
	(pxyk_host && pxyk_host->modexp2(mm[0], mm[1], cx[0], cx[1], ex[0], ex[1], mod[0], mod[1], np) == 0)
#define RSA_HOST_EXP_PUB(x, m, e, n, nn) (pxyk_host && pxyk_host->modexp_pub(x, m, e, n, nn) == 0)
#else
#define RSA_HOST_EXP2(mm, cx, ex, mod, np) 0
#define RSA_HOST_EXP_PUB(x, m, e, n, nn) 0
#endif

/*
 * The private-key operation for one size: NP limbs per prime, NN = 2*NP per
 * modulus. Writes m (NN limbs) and returns an all-ones mask if c < n and the
 * re-encryption check passed; *in_range is all-ones if c < n.
 */
#define PXYK_RSA_DEFINE(NP, NN)                                                                           \
	static limb_t rsa##NN##_private(limb_t m[NN], const limb_t c[NN], const struct pxy_k_rsa_key *key,   \
					limb_t *in_range)                                                     \
	{                                                                                                 \
		limb_t one[2][NP], one_n[NN], t2[2 * NP + 1], tmp[NN];                                    \
		limb_t mod[2][NP], ex[2][NP], rr[2][NP], cx[2][NP], mr[2][NP], mm[2][NP];                \
		limb_t inv[2] = { key->p0inv, key->q0inv };                                               \
		limb_t h[NP], x[NN], cm[NN];                                                              \
		limb_t borrow, mask;                                                                      \
                                                                                                          \
		for (int j = 0; j < NP; j++) {                                                            \
			one[0][j] = one[1][j] = j == 0;                                                   \
			mod[0][j] = key->p[j];                                                            \
			mod[1][j] = key->q[j];                                                            \
			ex[0][j] = key->dp[j];                                                            \
			ex[1][j] = key->dq[j];                                                            \
			rr[0][j] = key->rr_p[j];                                                          \
			rr[1][j] = key->rr_q[j];                                                          \
		}                                                                                         \
		for (int j = 0; j < NN; j++)                                                              \
			one_n[j] = j == 0;                                                                \
		/* c < n ? (public: the attacker chose c) */                                              \
		*in_range = 0 - pxyk_bn_sub(tmp, c, key->n, NN);                                          \
                                                                                                          \
		/* c mod p: REDC(c) = c/R, then * R^2 / R = c; once more for the Montgomery form */        \
		for (int s = 0; s < 2; s++) {                                                             \
			for (int j = 0; j < 2 * NP; j++)                                                  \
				t2[j] = c[j];                                                             \
			bn##NP##_redc2(cx[s], t2, mod[s], inv[s]);                                        \
		}                                                                                         \
		bn##NP##_mont_mul2(cx, (const limb_t(*)[NP])cx, (const limb_t(*)[NP])rr, (const limb_t(*)[NP])mod, inv); \
		/* cx = c mod p, c mod q; the host's exponentiation takes them as they are */             \
		if (!RSA_HOST_EXP2(mm, cx, ex, mod, NP)) {                                                \
			bn##NP##_mont_mul2(cx, (const limb_t(*)[NP])cx, (const limb_t(*)[NP])rr,          \
					   (const limb_t(*)[NP])mod, inv);                                \
			/* Montgomery one (R mod p, R mod q) = mont(R^2, 1) */                            \
			bn##NP##_mont_mul2(mr, (const limb_t(*)[NP])rr, (const limb_t(*)[NP])one,         \
					   (const limb_t(*)[NP])mod, inv);                                \
			bn##NP##_exp2(mm, (const limb_t(*)[NP])cx, (const limb_t(*)[NP])ex,               \
				      (const limb_t(*)[NP])mod, inv, (const limb_t(*)[NP])mr);            \
			/* out of Montgomery form: m1 = mm[0], m2 = mm[1] */                              \
			bn##NP##_mont_mul2(mm, (const limb_t(*)[NP])mm, (const limb_t(*)[NP])one,         \
					   (const limb_t(*)[NP])mod, inv);                                \
		}                                                                                         \
                                                                                                          \
		/* Garner: m2 < q < 2p, so m2 mod p is at most one subtraction */                         \
		borrow = pxyk_bn_sub(h, mm[1], key->p, NP);                                               \
		pxyk_bn_sel(h, 0 - borrow, mm[1], h, NP);                                                 \
		borrow = pxyk_bn_sub(h, mm[0], h, NP);                                                    \
		{                                                                                         \
			limb_t hp[NP];                                                                    \
			pxyk_bn_add(hp, h, key->p, NP);                                                   \
			pxyk_bn_sel(h, 0 - borrow, hp, h, NP);                                            \
		}                                                                                         \
		bn##NP##_mont_mul(h, h, key->qinv_m, key->p, key->p0inv); /* (m1-m2) * qinv mod p */      \
		/* m = m2 + h * q */                                                                      \
		for (int j = 0; j < NN; j++)                                                              \
			m[j] = j < NP ? mm[1][j] : 0;                                                     \
		for (int i = 0; i < NP; i++) {                                                            \
			limb_t cc = 0, lo, s;                                                             \
			for (int j = 0; j < NP; j++) {                                                    \
				pxyk_mac(h[i], key->q[j], m[i + j], cc, &cc, &lo);                        \
				m[i + j] = lo;                                                            \
			}                                                                                 \
			for (int j = i + NP; j < NN; j++) {                                               \
				s = m[j] + cc;                                                            \
				cc = s < cc;                                                              \
				m[j] = s;                                                                 \
			}                                                                                 \
		}                                                                                         \
                                                                                                          \
		/* fault check: m^e mod n == c (e is public) */                                           \
		if (!RSA_HOST_EXP_PUB(x, m, key->e, key->n, NN)) {                                        \
			bn##NN##_mont_mul(cm, m, key->rr_n, key->n, key->n0inv);                          \
			bn##NN##_mont_mul(x, key->rr_n, one_n, key->n, key->n0inv);                       \
		FAULT_BITS_##NN:                                                                          \
			for (int b = 31; b >= 0; b--) {                                                   \
				bn##NN##_mont_mul(x, x, x, key->n, key->n0inv);                           \
				if ((key->e >> b) & 1)                                                    \
					bn##NN##_mont_mul(x, x, cm, key->n, key->n0inv);                  \
			}                                                                                 \
			bn##NN##_mont_mul(x, x, one_n, key->n, key->n0inv);                               \
		}                                                                                         \
		mask = pxyk_bn_eq(x, c, NN);                                                              \
		return mask & *in_range;                                                                  \
	}

PXYK_RSA_DEFINE(16, 32)
PXYK_RSA_DEFINE(24, 48)
PXYK_RSA_DEFINE(32, 64)

/* Shift em left by s bytes (s secret, < k <= 512) as nine masked power-of-two steps. */
static void ct_shift_left(uint8_t *em, int k, uint32_t s)
{
CT_SHIFT_STEPS:
	for (int step = 0; step < 9; step++) {
		int by = 1 << step;
		uint8_t take = (uint8_t)(0 - ((s >> step) & 1));
	CT_SHIFT_BYTES:
		for (int i = 0; i < PXY_K_RSA_MAX_BYTES; i++) {
			uint8_t next = (i + by < k) ? em[i + by] : 0;
			if (i < k)
				em[i] = (uint8_t)((next & take) | (em[i] & (uint8_t)~take));
		}
	}
}

/*
 * PKCS#1 v1.5 type 2 (RFC 8017 §7.2.2) over em[0..k): 00 02 PS(>= 8 nonzero) 00 M.
 * Returns an all-ones mask if well formed; *msg_at is where M starts.
 */
static uint32_t ct_unpad(const uint8_t *em, int k, uint32_t *msg_at)
{
	uint32_t good = (uint32_t)pxyk_eqmask(em[0], 0) & (uint32_t)pxyk_eqmask(em[1], 2);
	uint32_t looking = 0xffffffffu, zero_at = 0;

UNPAD_SCAN:
	for (int i = 2; i < PXY_K_RSA_MAX_BYTES; i++) {
		uint32_t in = (uint32_t)pxyk_ltmask((uint64_t)i, (uint64_t)k);
		uint32_t is_zero = (uint32_t)pxyk_eqmask(em[i < k ? i : 0], 0) & in;
		uint32_t first = is_zero & looking;

		zero_at |= (uint32_t)i & first;
		looking &= ~is_zero;
	}
	/* a separator was found, after at least 8 padding bytes */
	good &= ~looking & ~(uint32_t)pxyk_ltmask(zero_at, 10);
	*msg_at = zero_at + 1;
	return good;
}

static void rsa_one(const struct pxy_k_rsa_key *key, const struct pxy_k_rsa_job *job, struct pxy_k_rsa_result *res)
{
	limb_t c[PXY_K_N_LIMBS], m[PXY_K_N_LIMBS], in_range = 0, ok = 0;
	uint8_t em[PXY_K_RSA_MAX_BYTES];
	uint32_t bits = key->bits, k = bits / 8, good, msg_at = 0;
	uint32_t tls = job->mode == PXY_K_RSA_TLS;

	res->flags = 0;
	res->ok = 0;
	res->out_len = 0;
	pxyk_zero(res->out, PXY_K_RSA_MAX_BYTES);
	pxyk_zero(em, sizeof(em));
	/* public conditions: an empty slot, a ciphertext of the wrong length */
	if ((bits != 2048 && bits != 3072 && bits != 4096) || job->in_len != k) {
		if (bits != 2048 && bits != 3072 && bits != 4096)
			res->flags |= PXY_K_F_BADKEY;
		good = 0;
	} else {
		bytes_to_limbs(c, (int)(k / 8), job->in, (int)k);
		if (bits == 2048)
			ok = rsa32_private(m, c, key, &in_range);
		else if (bits == 3072)
			ok = rsa48_private(m, c, key, &in_range);
		else
			ok = rsa64_private(m, c, key, &in_range);
		/* a failed check on a valid ciphertext is a fault: release nothing from it */
		if (in_range && !ok)
			res->flags |= PXY_K_F_FAULT;
		limbs_to_bytes(em, (int)k, m);
		good = ct_unpad(em, (int)k, &msg_at) & (uint32_t)ok;
	}

	if (tls) {
		/* TLS: exactly 48 bytes, starting with the ClientHello's version */
		/* public: an empty slot has k = 0; stay inside em[] regardless */
		uint32_t at = k >= PXY_K_PMS_LEN ? k - PXY_K_PMS_LEN : 0;
		uint32_t mlen_ok = (uint32_t)pxyk_eqmask(msg_at, at);
		uint32_t ver_ok = (uint32_t)pxyk_eqmask(em[at], (job->client_version >> 8) & 0xff) &
				  (uint32_t)pxyk_eqmask(em[at + 1], job->client_version & 0xff);
		uint8_t take;

		good &= mlen_ok & ver_ok;
		take = (uint8_t)good;
	TLS_SELECT:
		for (int i = 0; i < PXY_K_PMS_LEN; i++)
			res->out[i] = (uint8_t)((em[at + (uint32_t)i] & take) | (job->random[i] & (uint8_t)~take));
		res->out_len = PXY_K_PMS_LEN;
	} else {
		ct_shift_left(em, (int)k, msg_at);
		for (uint32_t i = 0; i < PXY_K_RSA_MAX_BYTES; i++)
			res->out[i] = (uint8_t)(em[i] & (uint8_t)good);
		res->ok = good & 1;
		res->out_len = (k - msg_at) & good;
	}
	res->status = PXY_K_DONE;
}

void rsa_crt_decrypt(const struct pxy_k_rsa_key *keys, const struct pxy_k_rsa_job *jobs,
		     struct pxy_k_rsa_result *results, uint32_t n_jobs)
{
#pragma HLS INTERFACE m_axi port = keys offset = slave bundle = gmem0 depth = 64
#pragma HLS INTERFACE m_axi port = jobs offset = slave bundle = gmem1 depth = 64
#pragma HLS INTERFACE m_axi port = results offset = slave bundle = gmem2 depth = 64
#pragma HLS INTERFACE s_axilite port = keys
#pragma HLS INTERFACE s_axilite port = jobs
#pragma HLS INTERFACE s_axilite port = results
#pragma HLS INTERFACE s_axilite port = n_jobs
#pragma HLS INTERFACE s_axilite port = return
	struct pxy_k_rsa_key key;
	struct pxy_k_rsa_job job;
	struct pxy_k_rsa_result res;

RSA_BATCH:
	for (uint32_t i = 0; i < PXY_K_RSA_MAX_BATCH; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 64
		if (i >= n_jobs)
			break;
		/* load (burst), compute, store (burst) */
		pxyk_copy_words(&job, &jobs[i], sizeof(job));
		pxyk_copy_words(&key, &keys[job.key_id < PXY_K_MAX_KEYS ? job.key_id : 0], sizeof(key));
		if (job.key_id >= PXY_K_MAX_KEYS)
			key.bits = 0;
		rsa_one(&key, &job, &res);
		pxyk_copy_words(&results[i], &res, sizeof(res));
	}
}

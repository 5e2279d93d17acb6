/*
 * rsa_crt_decrypt: RSA private-key decryption of TLS pre-master secrets, a
 * batch of jobs per launch, keys from a device-resident table.
 *
 *   m1 = c^dp mod p, m2 = c^dq mod q         (Montgomery, fixed 4-bit window)
 *   m  = m2 + q * (qinv * (m1 - m2) mod p)   (Garner)
 *   check m^e == c mod p and mod q           (a fault must not leak a prime)
 *   unpad PKCS#1 v1.5 type 2 in constant time; in TLS mode a bad padding,
 *   a wrong length or a wrong version yields the host's random secret instead
 *   (RFC 5246 §7.4.7.1), with no observable difference.
 *
 * Microarchitecture. The jobs of a batch are sorted by key size (public) into
 * groups of up to RSA_GROUP; a group runs in RSA_LANES lanes in lock step,
 * two lanes per job (the p half and the q half), so that every lane works on
 * numbers of the same size ND = 32-bit digits of a prime. Every operation is
 * a Montgomery product of all lanes at once, issued by a fixed program
 * (rsa_group): the two exponentiations, Garner and the fault check all run on
 * prime-sized operands.
 *
 * A product is ND rows (one digit a_i of A each) of
 *     S <- (S + a_i * B + q_i * M) / 2^32,   q_i = (S_0 + a_i B_0) * (-M^-1) mod 2^32
 * computed by RSA_U multiplier arrays, each covering RSA_W digits of one lane
 * per cycle (one block); a row is ND / RSA_W blocks. S is kept in carry-save
 * form (digits of up to 34 bits: a cell passes its high part to the next
 * digit of the next row instead of propagating a carry along the row), so a
 * block has no carry chain and a cell is two 32x32 products and two adds.
 * The pipeline iterates (row, block, lane group) with the lanes innermost:
 * one lane's consecutive blocks are RSA_LG cycles apart, more than the
 * pipeline's depth, so nothing ever waits on a result (II = 1). After the
 * rows, one pass turns S into 32-bit digits T and T - M, and a second writes
 * the reduced one (T < 2M, so one subtraction suffices) where the program
 * wants it.
 *
 * Constant time. The program depends on the key size and e only (public);
 * lanes never branch: the window value selects a table entry by scanning all
 * 16 under masks (during the first squaring of each window), the final
 * subtraction of every product is a masked select, Garner's modular
 * subtraction and addition likewise. The padding is scanned whole.
 *
 * Every loop carries its trip count (LOOP_TRIPCOUNT: min, max over key sizes,
 * avg for RSA-2048) and, for firmware/perf_model.py, PXYK_TRIP (counted in the
 * instrumented C simulation) and the pragmas its cycle count depends on.
 */
#include "kernel.h"

/* ---- geometry (firmware/perf_model.py reads these) ----------------------------------- */

#define RSA_W 16        /* digits per block: one multiplier array covers RSA_W digits per cycle */
#define RSA_U 4         /* multiplier arrays per compute unit: lanes per cycle */
#define RSA_LG 16       /* lane groups: cycles between two blocks of one lane (>= RSA_ROW_DEPTH) */
#define RSA_ROW_DEPTH 14 /* the row pipeline's depth: a*B_0, q, q*M, the adds */
#define RSA_LANES (RSA_U * RSA_LG)
#define RSA_GROUP (RSA_LANES / 2) /* jobs per group: a p lane and a q lane each */
#define RSA_NB 4        /* blocks of the largest prime (RSA-4096: 2048 bits) */
#define RSA_ND (RSA_NB * RSA_W)
#define RSA_TBL 16      /* 4-bit fixed window */

typedef uint32_t dig_t;

#define LO32(x) ((uint64_t)(uint32_t)(x))

/* operands of a product */
enum { OP_X, OP_BS, OP_RR, OP_MOD, OP_QINV, OP_ONE, OP_C2 };

/* where a product's result goes (a mask) */
enum { TO_X = 1, TO_BS = 2, TO_CM = 4, TO_TBL = 8, TO_C2HI = 16 };

struct mm_op {
	int a, b;     /* operands: A (a digit per row), B */
	int rows;     /* digits of A: ND, or 2 ND for OP_C2 */
	int plain;    /* A * B + c2[0..ND) with no reduction: low digits to c2[0..ND), high digits to TO_C2HI */
	int to, tbl;  /* destinations; the table entry for TO_TBL */
	int gather;   /* >= 0: during rows 0..15, bs = tbl[window `gather` of the exponent] */
	int cond_bit; /* >= 0: write only in lanes whose e has this bit set */
};

/*
 * The group's memory. Lanes are partitioned cyclically by RSA_U (one bank per
 * multiplier array), digits cyclically by RSA_W (one bank per cell); the
 * table adds its 16 entries as the slow dimension of the same banks.
 * sx duplicates bank 0 of s (digit W*b of every block), which the last cell
 * of block b - 1 reads while the first cell of block b reads and writes it.
 */
#define RSA_MEM_PARAMS                                                                                    \
	uint64_t s[RSA_LANES][RSA_ND], uint64_t sx[RSA_LANES][RSA_NB + 1], dig_t x[RSA_LANES][RSA_ND],       \
		dig_t bs[RSA_LANES][RSA_ND], dig_t tbl[RSA_TBL][RSA_LANES][RSA_ND], dig_t mod[RSA_LANES][RSA_ND], \
		dig_t rr[RSA_LANES][RSA_ND], dig_t qinv[RSA_LANES][RSA_ND], dig_t ex[RSA_LANES][RSA_ND],       \
		dig_t cm[RSA_LANES][RSA_ND], dig_t c2[RSA_LANES][2 * RSA_ND], dig_t tt[RSA_LANES][RSA_ND],     \
		dig_t dd[RSA_LANES][RSA_ND], dig_t minv[RSA_LANES], uint32_t e[RSA_LANES]
#define RSA_MEM_ARGS s, sx, x, bs, tbl, mod, rr, qinv, ex, cm, c2, tt, dd, minv, e

/* ---- the product ------------------------------------------------------------------------ */

PXYK_INLINE dig_t op_digit(int op, int l, int k, int nd, const dig_t x[RSA_LANES][RSA_ND],
			   const dig_t bs[RSA_LANES][RSA_ND], const dig_t rr[RSA_LANES][RSA_ND],
			   const dig_t mod[RSA_LANES][RSA_ND], const dig_t qinv[RSA_LANES][RSA_ND],
			   const dig_t c2[RSA_LANES][2 * RSA_ND])
{
	if (op == OP_C2)
		return c2[l][k]; /* k < 2 nd */
	if (k >= nd)
		return 0;
	switch (op) {
	case OP_X:
		return x[l][k];
	case OP_BS:
		return bs[l][k];
	case OP_RR:
		return rr[l][k];
	case OP_MOD:
		return mod[l][k];
	case OP_QINV:
		return qinv[l][k];
	default:
		return k == 0; /* OP_ONE */
	}
}

/*
 * One Montgomery (or plain) product in every active lane. `active` lanes
 * hold jobs; the others compute nothing in the simulation and are don't-care
 * in hardware (their results are never read).
 */
static void mm(RSA_MEM_PARAMS, struct mm_op op, int nd, int nb, int active)
{
	dig_t qv[RSA_LANES];
	uint64_t cyv[RSA_LANES], bwv[RSA_LANES], used[RSA_LANES];
	int i = 0, b = 0, g = 0;
	/* the synthesis form runs every lane group, the pipeline's schedule; on a CPU, groups
	 * without an active lane are skipped (a lone job need not pay for 32) */
#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
	const int lg = RSA_LG;
#else
	const int lg = (active + RSA_U - 1) / RSA_U;
#endif
	int total = op.rows * nb * lg;

#pragma HLS ARRAY_PARTITION variable = qv type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = cyv type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = bwv type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = used type = cyclic factor = 4 dim = 1

	/* rows x blocks x lane groups, flattened into one pipeline */
MM_ROWS:
	for (int it = 0; it < total; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 14
#pragma HLS LOOP_TRIPCOUNT min = 1024 max = 8192 avg = 1024
#pragma HLS DEPENDENCE variable = s type = inter dependent = false
#pragma HLS DEPENDENCE variable = sx type = inter dependent = false
#pragma HLS DEPENDENCE variable = qv type = inter dependent = false
#pragma HLS DEPENDENCE variable = bs type = inter dependent = false
		PXYK_TRIP(MM_ROWS);
	MM_ARRAYS:
		for (int u = 0; u < RSA_U; u++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
			int l = g * RSA_U + u;
			dig_t a, q, lw[RSA_W + 1];
			uint64_t hw[RSA_W];

			if (l >= active)
				continue;
			a = op_digit(op.a, l, i, nd, x, bs, rr, mod, qinv, c2);
		MM_CELLS:
			for (int c = 0; c <= RSA_W; c++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 17 max = 17
				int k = b * RSA_W + c;
				dig_t bk = op_digit(op.b, l, k, nd, x, bs, rr, mod, qinv, c2);
				dig_t mk = k < nd ? mod[l][k] : 0;
				uint64_t sk, p1, p2, lo;

				/* the accumulator: zero, or c2 for a plain product, before the first row */
				if (i == 0)
					sk = op.plain && k < nd ? c2[l][k] : 0;
				else if (c < RSA_W)
					sk = s[l][k];
				else
					sk = k < nd ? sx[l][b + 1] : 0;
				p1 = (uint64_t)a * bk;
				if (c == 0) {
					/* q for this row, at the first block; later blocks reuse it */
					if (b == 0)
						qv[l] = op.plain ? 0 : (dig_t)((dig_t)(sk + p1) * minv[l]);
				}
				q = qv[l];
				p2 = (uint64_t)q * mk;
				if (c == RSA_W) {
					/* only the low digit of the next block's first cell */
					lw[c] = (dig_t)(sk + p1 + p2);
				} else {
					lo = LO32(p1) + LO32(p2) + LO32(sk);
					lw[c] = (dig_t)lo;
					hw[c] = (p1 >> 32) + (p2 >> 32) + (sk >> 32) + (lo >> 32);
				}
			}
			/* a plain product shifts its low digit out; a Montgomery one's is zero */
			if (op.plain && b == 0)
				c2[l][i] = lw[0];
		MM_SHIFT:
			for (int c = 0; c < RSA_W; c++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
				uint64_t v = LO32(lw[c + 1]) + hw[c];

				s[l][b * RSA_W + c] = v;
				if (c == 0)
					sx[l][b] = v;
			}
			/* the exponent's next window value selects the next multiplier, all entries scanned */
			if (op.gather >= 0 && i < RSA_TBL) {
				int bit = 4 * op.gather;
				dig_t w = (ex[l][bit / 32] >> (bit % 32)) & 15;
				dig_t take = (dig_t)pxyk_eqmask(w, (uint64_t)i);

			MM_GATHER:
				for (int c = 0; c < RSA_W; c++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
					int k = b * RSA_W + c;
					dig_t old = i == 0 ? 0 : bs[l][k];

					bs[l][k] = old | (tbl[i][l][k] & take);
				}
			}
		}
		if (++g == lg) {
			g = 0;
			if (++b == nb) {
				b = 0;
				i++;
			}
		}
	}

	/* S -> T = S with carries propagated, D = T - M; the lane's last block decides */
	b = 0;
	g = 0;
MM_CARRY:
	for (int it = 0; it < nb * lg; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 8
#pragma HLS LOOP_TRIPCOUNT min = 32 max = 64 avg = 32
#pragma HLS DEPENDENCE variable = cyv type = inter dependent = false
#pragma HLS DEPENDENCE variable = bwv type = inter dependent = false
		PXYK_TRIP(MM_CARRY);
	MM_CARRY_ARRAYS:
		for (int u = 0; u < RSA_U; u++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
			int l = g * RSA_U + u;
			uint64_t cy, bw;

			if (l >= active)
				continue;
			cy = b == 0 ? 0 : cyv[l];
			bw = b == 0 ? 0 : bwv[l];
		MM_CARRY_DIGITS:
			for (int c = 0; c < RSA_W; c++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
				int k = b * RSA_W + c;
				uint64_t v = s[l][k] + cy, dv;

				tt[l][k] = (dig_t)v;
				cy = v >> 32;
				dv = LO32(v) - mod[l][k] - bw;
				dd[l][k] = (dig_t)dv;
				bw = dv >> 63;
			}
			cyv[l] = cy;
			bwv[l] = bw;
			/* T >= M (a carry out of the top, or no borrow): the result is D */
			if (b == nb - 1)
				used[l] = op.plain ? 0 : pxyk_nzmask(cy | (bw ^ 1));
		}
		if (++g == lg) {
			g = 0;
			b++;
		}
	}

	b = 0;
	g = 0;
MM_STORE:
	for (int it = 0; it < nb * lg; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 3
#pragma HLS LOOP_TRIPCOUNT min = 32 max = 64 avg = 32
		PXYK_TRIP(MM_STORE);
	MM_STORE_ARRAYS:
		for (int u = 0; u < RSA_U; u++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
			int l = g * RSA_U + u;
			/* e is public: a lane whose e lacks this bit keeps its value */
			int wr = op.cond_bit < 0 || ((e[l] >> op.cond_bit) & 1);

			if (l >= active || !wr)
				continue;
		MM_STORE_DIGITS:
			for (int c = 0; c < RSA_W; c++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
				int k = b * RSA_W + c;
				dig_t v = (dig_t)pxyk_sel(used[l], dd[l][k], tt[l][k]);

				if (op.to & TO_X)
					x[l][k] = v;
				if (op.to & TO_BS)
					bs[l][k] = v;
				if (op.to & TO_CM)
					cm[l][k] = v;
				if (op.to & TO_TBL)
					tbl[op.tbl][l][k] = v;
				if (op.to & TO_C2HI)
					c2[l][nd + k] = v;
			}
		}
		if (++g == lg) {
			g = 0;
			b++;
		}
	}
}

PXYK_INLINE struct mm_op mm_make(int a, int b, int rows, int to)
{
	struct mm_op o;

	o.a = a;
	o.b = b;
	o.rows = rows;
	o.plain = 0;
	o.to = to;
	o.tbl = 0;
	o.gather = -1;
	o.cond_bit = -1;
	return o;
}

/* ---- lane-pair steps: Garner, copies, the check -------------------------------------------- */

/*
 * Garner's first step, per job (p lane l, q lane l + 1), on normal-form
 * results: x[l] = m1 - (m2 mod p) mod p (m2 < q < 2p: at most one
 * subtraction), and c2[l + 1] = m2, where the plain product starts from.
 */
static void garner(dig_t x[RSA_LANES][RSA_ND], const dig_t mod[RSA_LANES][RSA_ND], dig_t c2[RSA_LANES][2 * RSA_ND], dig_t tt[RSA_LANES][RSA_ND],
		   dig_t dd[RSA_LANES][RSA_ND], int nd, int jobs)
{
	uint64_t bw = 0;
	int j = 0, k = 0;

GARNER_REDUCE:
	for (int it = 0; it < jobs * nd; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1024 max = 2048 avg = 1024
		PXYK_TRIP(GARNER_REDUCE);
		int l = 2 * j;
		uint64_t dv = LO32(x[l + 1][k]) - mod[l][k] - (k == 0 ? 0 : bw);

		tt[l][k] = (dig_t)dv;
		bw = dv >> 63;
		c2[l + 1][k] = x[l + 1][k];
		if (k == nd - 1)
			dd[l][0] = (dig_t)(0 - bw); /* all-ones: m2 < p, keep m2 */
		if (++k == nd) {
			k = 0;
			j++;
		}
	}
	j = 0;
GARNER_SUB:
	for (int it = 0; it < jobs * nd; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1024 max = 2048 avg = 1024
		PXYK_TRIP(GARNER_SUB);
		int l = 2 * j;
		dig_t t = (dig_t)pxyk_sel(0 - (uint64_t)(dd[l][0] & 1), x[l + 1][k], tt[l][k]);
		uint64_t dv = LO32(x[l][k]) - t - (k == 0 ? 0 : bw);

		x[l][k] = (dig_t)dv;
		bw = dv >> 63;
		if (k == nd - 1)
			dd[l][1] = (dig_t)(0 - bw); /* all-ones: add p back */
		if (++k == nd) {
			k = 0;
			j++;
		}
	}
	j = 0;
GARNER_ADD:
	for (int it = 0; it < jobs * nd; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1024 max = 2048 avg = 1024
		PXYK_TRIP(GARNER_ADD);
		int l = 2 * j;
		uint64_t v = LO32(x[l][k]) + (mod[l][k] & dd[l][1]) + (k == 0 ? 0 : bw);

		x[l][k] = (dig_t)v;
		bw = v >> 32; /* the carry */
		if (++k == nd) {
			k = 0;
			j++;
		}
	}
}

/* q lane <- p lane's x (h = (m1 - m2) qinv mod p), for the plain product m2 + h q */
static void copy_h(dig_t x[RSA_LANES][RSA_ND], int nd, int jobs)
{
	int j = 0, k = 0;

COPY_H:
	for (int it = 0; it < jobs * nd; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1024 max = 2048 avg = 1024
		PXYK_TRIP(COPY_H);
		x[2 * j + 1][k] = x[2 * j][k];
		if (++k == nd) {
			k = 0;
			j++;
		}
	}
}

/* p lane <- q lane's m (2 nd digits), so that both halves check it */
static void copy_m(dig_t c2[RSA_LANES][2 * RSA_ND], int nd, int jobs)
{
	int j = 0, k = 0;

COPY_M:
	for (int it = 0; it < jobs * 2 * nd; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 2048 max = 4096 avg = 2048
		PXYK_TRIP(COPY_M);
		c2[2 * j][k] = c2[2 * j + 1][k];
		if (++k == 2 * nd) {
			k = 0;
			j++;
		}
	}
}

/* all-ones in ok[l] if x[l] == cm[l] (m^e == c mod this lane's prime) */
static void check(const dig_t x[RSA_LANES][RSA_ND], const dig_t cm[RSA_LANES][RSA_ND], int nd, int active, dig_t ok[RSA_LANES])
{
	dig_t acc = 0;
	int l = 0, k = 0;

CHECK_DIGITS:
	for (int it = 0; it < active * nd; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 2048 max = 4096 avg = 2048
		PXYK_TRIP(CHECK_DIGITS);
		acc = (k == 0 ? 0 : acc) | (x[l][k] ^ cm[l][k]);
		if (k == nd - 1)
			ok[l] = (dig_t)pxyk_eqmask(acc, 0);
		if (++k == nd) {
			k = 0;
			l++;
		}
	}
}

/* ---- host arithmetic (emulation only) --------------------------------------------------------- */

#ifdef PXYK_HAVE_HOST
/* digits <-> 64-bit limbs (nd even) */
static void to_limbs(uint64_t *r, const dig_t *d, int nd)
{
HOST_TO_LIMBS:
	for (int k = 0; k < nd / 2; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 32 max = 32
		r[k] = (uint64_t)d[2 * k] | (uint64_t)d[2 * k + 1] << 32;
	}
}

static void from_limbs(dig_t *d, const uint64_t *r, int nd)
{
HOST_FROM_LIMBS:
	for (int k = 0; k < nd / 2; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 32 max = 32
		d[2 * k] = (dig_t)r[k];
		d[2 * k + 1] = (dig_t)(r[k] >> 32);
	}
}

/* x[l] = x[l]^ex[l] mod mod[l] for both lanes of every job (1), or 0 if the host declined */
static int host_exp(dig_t x[RSA_LANES][RSA_ND], const dig_t mod[RSA_LANES][RSA_ND], const dig_t ex[RSA_LANES][RSA_ND], int nd, int jobs)
{
	uint64_t m[2][RSA_ND / 2], xx[2][RSA_ND / 2], ee[2][RSA_ND / 2], r[2][RSA_ND / 2];
	int ok = 1;

HOST_EXP_JOBS:
	for (int j = 0; j < jobs && ok; j++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 32
	HOST_EXP_HALVES:
		for (int h = 0; h < 2; h++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 2
			to_limbs(m[h], mod[2 * j + h], nd);
			to_limbs(xx[h], x[2 * j + h], nd);
			to_limbs(ee[h], ex[2 * j + h], nd);
		}
		ok = pxyk_host->modexp2(r[0], r[1], xx[0], xx[1], ee[0], ee[1], m[0], m[1], (uint32_t)(nd / 2)) == 0;
	HOST_EXP_OUT:
		for (int h = 0; h < 2 && ok; h++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 2
			from_limbs(x[2 * j + h], r[h], nd);
		}
	}
	return ok;
}

/* x[l] = x[l]^e[l] mod mod[l] in every active lane (e public) */
static int host_exp_pub(dig_t x[RSA_LANES][RSA_ND], const dig_t mod[RSA_LANES][RSA_ND], const uint32_t e[RSA_LANES], int nd, int active)
{
	uint64_t m[RSA_ND / 2], xx[RSA_ND / 2], r[RSA_ND / 2];

HOST_EXP_PUB_LANES:
	for (int l = 0; l < active; l++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 64
		to_limbs(m, mod[l], nd);
		to_limbs(xx, x[l], nd);
		if (pxyk_host->modexp_pub(r, xx, e[l], m, (uint32_t)(nd / 2)) != 0)
			return 0;
		from_limbs(x[l], r, nd);
	}
	return 1;
}

#define RSA_HOST_EXP host_exp(x, mod, ex, nd, jobs)
#define RSA_HOST_EXP_PUB host_exp_pub(x, mod, e, nd, active)
#else
#define RSA_HOST_EXP 0
#define RSA_HOST_EXP_PUB 0
#endif

/* ---- one group ------------------------------------------------------------------------------------- */

/* Big-endian bytes (k of them) to little-endian digits (k / 4 of them). */
static void bytes_to_digits(dig_t *r, const uint8_t *b, int k)
{
BYTES_TO_DIGITS:
	for (int i = 0; i < 2 * RSA_ND; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 128 avg = 64
		PXYK_TRIP(BYTES_TO_DIGITS);
		if (i < k / 4)
			r[i] = pxyk_be32(b + k - 4 - 4 * i);
	}
}

/* 64-bit key limbs (nd / 2 of them) to digits */
static void limbs_to_digits(dig_t *r, const uint64_t *v, int nd)
{
LIMBS_TO_DIGITS:
	for (int i = 0; i < RSA_ND; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 32 max = 64 avg = 32
		PXYK_TRIP(LIMBS_TO_DIGITS);
		if (i < nd)
			r[i] = (dig_t)(v[i / 2] >> (32 * (i % 2)));
	}
}

/* Shift em left by s bytes (s secret, < k <= 512) as nine masked power-of-two steps. */
static void ct_shift_left(uint8_t *em, int k, uint32_t s)
{
CT_SHIFT_STEPS:
	for (int step = 0; step < 9; step++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 9 max = 9
		PXYK_TRIP(CT_SHIFT_STEPS);
		int by = 1 << step;
		uint8_t take = (uint8_t)(0 - ((s >> step) & 1));
	CT_SHIFT_BYTES:
		for (int i = 0; i < PXY_K_RSA_MAX_BYTES; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 512 max = 512
			PXYK_TRIP(CT_SHIFT_BYTES);
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
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 510 max = 510
		PXYK_TRIP(UNPAD_SCAN);
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

/* The result of one job from m (2 nd digits) and its check; k = modulus bytes. */
static void rsa_finish(const dig_t *m, uint32_t ok, int k, const struct pxy_k_rsa_job *job, struct pxy_k_rsa_result *res)
{
	uint8_t em[PXY_K_RSA_MAX_BYTES];
	uint32_t good, msg_at = 0;

DIGITS_TO_BYTES:
	for (int i = 0; i < PXY_K_RSA_MAX_BYTES; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 512 max = 512
		PXYK_TRIP(DIGITS_TO_BYTES);
		em[i] = i < k ? (uint8_t)(m[(k - 1 - i) / 4] >> (8 * ((k - 1 - i) % 4))) : 0;
	}
	good = ct_unpad(em, k, &msg_at) & ok;
	res->flags = 0;
	res->ok = 0;
	res->out_len = 0;
	if (job->mode == PXY_K_RSA_TLS) {
		/* TLS: exactly 48 bytes, starting with the ClientHello's version */
		uint32_t at = (uint32_t)k - PXY_K_PMS_LEN;
		uint32_t mlen_ok = (uint32_t)pxyk_eqmask(msg_at, at);
		uint32_t ver_ok = (uint32_t)pxyk_eqmask(em[at], (job->client_version >> 8) & 0xff) &
				  (uint32_t)pxyk_eqmask(em[at + 1], job->client_version & 0xff);
		uint8_t take;

		good &= mlen_ok & ver_ok;
		take = (uint8_t)good;
	TLS_SELECT:
		for (int i = 0; i < PXY_K_RSA_MAX_BYTES; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 512 max = 512
			PXYK_TRIP(TLS_SELECT);
			res->out[i] = i < PXY_K_PMS_LEN ? (uint8_t)((em[at + (uint32_t)i] & take) | (job->random[i] & (uint8_t)~take))
						  : 0;
		}
		res->out_len = PXY_K_PMS_LEN;
	} else {
		ct_shift_left(em, k, msg_at);
	PKCS1_OUT:
		for (int i = 0; i < PXY_K_RSA_MAX_BYTES; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 512 max = 512
			PXYK_TRIP(PKCS1_OUT);
			res->out[i] = (uint8_t)(em[i] & (uint8_t)good);
		}
		res->ok = good & 1;
		res->out_len = ((uint32_t)k - msg_at) & good;
	}
	res->status = PXY_K_DONE;
}

/*
 * The jobs idx[first..first + jobs) of one key size (nd digits per prime), keys valid
 * and ciphertexts of the modulus length (checked by the caller).
 */
static void rsa_group(const struct pxy_k_rsa_key *keys, const struct pxy_k_rsa_job *jobs_in,
		      struct pxy_k_rsa_result *results, const uint8_t idx[PXY_K_RSA_MAX_BATCH], int first, int jobs,
		      int nd)
{
	uint64_t s[RSA_LANES][RSA_ND], sx[RSA_LANES][RSA_NB + 1];
	dig_t x[RSA_LANES][RSA_ND], bs[RSA_LANES][RSA_ND], tbl[RSA_TBL][RSA_LANES][RSA_ND];
	dig_t mod[RSA_LANES][RSA_ND], rr[RSA_LANES][RSA_ND], qinv[RSA_LANES][RSA_ND], ex[RSA_LANES][RSA_ND];
	dig_t cm[RSA_LANES][RSA_ND], c2[RSA_LANES][2 * RSA_ND], tt[RSA_LANES][RSA_ND], dd[RSA_LANES][RSA_ND];
	dig_t minv[RSA_LANES], ok[RSA_LANES], in_range[RSA_GROUP];
	uint32_t e[RSA_LANES], e_any = 0;
	int nb = nd / RSA_W, active = 2 * jobs, host = 0;
	struct pxy_k_rsa_key key;
	struct pxy_k_rsa_job job;
	struct mm_op op;

	/* lanes: bank = lane % RSA_U; digits: bank = digit % RSA_W (one per cell) */
#pragma HLS ARRAY_PARTITION variable = s type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = s type = cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = sx type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = x type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = x type = cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = bs type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = bs type = cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = tbl type = cyclic factor = 4 dim = 2
#pragma HLS ARRAY_PARTITION variable = tbl type = cyclic factor = 16 dim = 3
#pragma HLS ARRAY_PARTITION variable = mod type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = mod type = cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = rr type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = rr type = cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = qinv type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = qinv type = cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = c2 type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = c2 type = cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = tt type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = tt type = cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = dd type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = dd type = cyclic factor = 16 dim = 2
#pragma HLS ARRAY_PARTITION variable = cm type = cyclic factor = 4 dim = 1
#pragma HLS ARRAY_PARTITION variable = cm type = cyclic factor = 16 dim = 2
#pragma HLS BIND_STORAGE variable = tbl type = ram_t2p impl = bram
#pragma HLS ALLOCATION function instances = mm limit = 1

#ifdef PXYK_HAVE_HOST
	host = pxyk_host != NULL;
#endif

	/* load: per job its key entry and ciphertext, into the p lane and the q lane */
RSA_LOAD:
	for (int j = 0; j < jobs; j++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 32 avg = 32
		PXYK_TRIP(RSA_LOAD);
		int p = 2 * j, q = 2 * j + 1;
		uint64_t bw = 0;

		pxyk_copy_words(&job, &jobs_in[idx[first + j]], sizeof(job));
		pxyk_copy_words(&key, &keys[job.key_id], sizeof(key));
		limbs_to_digits(mod[p], key.p, nd);
		limbs_to_digits(mod[q], key.q, nd);
		limbs_to_digits(rr[p], key.rr_p, nd);
		limbs_to_digits(rr[q], key.rr_q, nd);
		limbs_to_digits(ex[p], key.dp, nd);
		limbs_to_digits(ex[q], key.dq, nd);
		limbs_to_digits(qinv[p], key.qinv_m, nd);
		minv[p] = (dig_t)key.p0inv; /* -p^-1 mod 2^32: the low digit of -p^-1 mod 2^64 */
		minv[q] = (dig_t)key.q0inv;
		e[p] = e[q] = key.e;
		e_any |= key.e;
		bytes_to_digits(c2[p], job.in, 8 * nd);
		/* c < n? (public: the attacker chose c) */
	RSA_RANGE:
		for (int k = 0; k < 2 * RSA_ND; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 128 avg = 64
			PXYK_TRIP(RSA_RANGE);
			if (k < 2 * nd) {
				uint64_t dv = LO32(c2[p][k]) - (dig_t)(key.n[k / 2] >> (32 * (k % 2))) - bw;

				c2[q][k] = c2[p][k];
				bw = dv >> 63;
			}
		}
		in_range[j] = (dig_t)(0 - bw);
	}

	/* c mod M (2 nd rows: c R^2 / R^2), kept for the check; then its Montgomery form */
	op = mm_make(OP_C2, OP_RR, 2 * nd, TO_X | TO_CM);
	mm(RSA_MEM_ARGS, op, nd, nb, active);
	if (!host || !RSA_HOST_EXP) {
		op = mm_make(OP_X, OP_RR, nd, TO_X | TO_BS);
		op.to |= TO_TBL;
		op.tbl = 1;
		mm(RSA_MEM_ARGS, op, nd, nb, active);
		/* R mod M: the Montgomery one */
		op = mm_make(OP_ONE, OP_RR, nd, TO_TBL);
		mm(RSA_MEM_ARGS, op, nd, nb, active);
	RSA_TABLE:
		for (int t = 2; t < RSA_TBL; t++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 14 max = 14
			PXYK_TRIP(RSA_TABLE);
			op = mm_make(OP_X, OP_BS, nd, TO_X | TO_TBL);
			op.tbl = t;
			mm(RSA_MEM_ARGS, op, nd, nb, active);
		}
		op = mm_make(OP_ONE, OP_RR, nd, TO_X);
		mm(RSA_MEM_ARGS, op, nd, nb, active);
		/* windows from the top: four squarings (the first gathers the window's entry), one product */
	RSA_WINDOWS:
		for (int w = 8 * nd - 1; w >= 0; w--) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 256 max = 512 avg = 256
			PXYK_TRIP(RSA_WINDOWS);
		RSA_SQUARINGS:
			for (int sq = 0; sq < 4; sq++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
				PXYK_TRIP(RSA_SQUARINGS);
				op = mm_make(OP_X, OP_X, nd, TO_X);
				op.gather = sq == 0 ? w : -1;
				mm(RSA_MEM_ARGS, op, nd, nb, active);
			}
			op = mm_make(OP_X, OP_BS, nd, TO_X);
			mm(RSA_MEM_ARGS, op, nd, nb, active);
		}
		/* out of Montgomery form: m1, m2 */
		op = mm_make(OP_X, OP_ONE, nd, TO_X);
		mm(RSA_MEM_ARGS, op, nd, nb, active);
	}

	/* Garner: x[p] = (m1 - m2) mod p, then * qinv; m = m2 + h q in the q lane */
	garner(x, mod, c2, tt, dd, nd, jobs);
	op = mm_make(OP_X, OP_QINV, nd, TO_X);
	mm(RSA_MEM_ARGS, op, nd, nb, active);
	copy_h(x, nd, jobs);
	op = mm_make(OP_X, OP_MOD, nd, TO_C2HI);
	op.plain = 1;
	mm(RSA_MEM_ARGS, op, nd, nb, active);
	copy_m(c2, nd, jobs);

	/* the check, in both lanes: (m mod M)^e == c mod M */
	op = mm_make(OP_C2, OP_RR, 2 * nd, TO_X);
	mm(RSA_MEM_ARGS, op, nd, nb, active);
	if (!host || !RSA_HOST_EXP_PUB) {
		op = mm_make(OP_X, OP_RR, nd, TO_BS);
		mm(RSA_MEM_ARGS, op, nd, nb, active);
		op = mm_make(OP_ONE, OP_RR, nd, TO_X);
		mm(RSA_MEM_ARGS, op, nd, nb, active);
	RSA_E_BITS:
		for (int bit = 31; bit >= 0; bit--) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 32 max = 32
			PXYK_TRIP(RSA_E_BITS);
			/* e is public: bits above every lane's e are skipped, bits no lane has are not multiplied */
			if ((e_any >> bit) == 0)
				continue;
			op = mm_make(OP_X, OP_X, nd, TO_X);
			mm(RSA_MEM_ARGS, op, nd, nb, active);
			if ((e_any >> bit) & 1) {
				op = mm_make(OP_X, OP_BS, nd, TO_X);
				op.cond_bit = bit;
				mm(RSA_MEM_ARGS, op, nd, nb, active);
			}
		}
		op = mm_make(OP_X, OP_ONE, nd, TO_X);
		mm(RSA_MEM_ARGS, op, nd, nb, active);
	}
	check(x, cm, nd, active, ok);

RSA_OUT:
	for (int j = 0; j < jobs; j++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 32 avg = 32
		PXYK_TRIP(RSA_OUT);
		struct pxy_k_rsa_result res;
		dig_t good = ok[2 * j] & ok[2 * j + 1];

		pxyk_copy_words(&job, &jobs_in[idx[first + j]], sizeof(job));
		rsa_finish(c2[2 * j + 1], good & in_range[j], 8 * nd, &job, &res);
		/* a failed check on a valid ciphertext is a fault: release nothing from it */
		if (in_range[j] && !good)
			res.flags |= PXY_K_F_FAULT;
		pxyk_copy_words(&results[idx[first + j]], &res, sizeof(res));
	}
}

/* ---- the kernel ------------------------------------------------------------------------------------ */

/* A job the kernel cannot compute (an empty key slot, a ciphertext of the wrong length). */
static void rsa_reject(const struct pxy_k_rsa_job *job, uint32_t flags, struct pxy_k_rsa_result *res)
{
REJECT_OUT:
	for (int i = 0; i < PXY_K_RSA_MAX_BYTES; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 512 max = 512
		PXYK_TRIP(REJECT_OUT);
		/* TLS: the host's random secret, as for any bad ciphertext */
		res->out[i] = job->mode == PXY_K_RSA_TLS && i < PXY_K_PMS_LEN ? job->random[i] : 0;
	}
	res->flags = flags;
	res->ok = 0;
	res->out_len = job->mode == PXY_K_RSA_TLS ? PXY_K_PMS_LEN : 0;
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
	uint8_t size_of[PXY_K_RSA_MAX_BATCH], idx[PXY_K_RSA_MAX_BATCH];
	uint32_t n = n_jobs < PXY_K_RSA_MAX_BATCH ? n_jobs : PXY_K_RSA_MAX_BATCH;

	/* sort by key size (public); reject what cannot be computed */
RSA_CLASSIFY:
	for (uint32_t i = 0; i < n; i++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 64 avg = 64
		PXYK_TRIP(RSA_CLASSIFY);
		struct pxy_k_rsa_job job;
		struct pxy_k_rsa_result res;
		uint32_t head[2], bits;

		pxyk_copy_words(&job, &jobs[i], sizeof(job));
		bits = 0;
		if (job.key_id < PXY_K_MAX_KEYS) {
			pxyk_copy_words(head, &keys[job.key_id], sizeof(head));
			bits = head[0];
		}
		size_of[i] = 0;
		if (bits != 2048 && bits != 3072 && bits != 4096) {
			rsa_reject(&job, PXY_K_F_BADKEY, &res);
			pxyk_copy_words(&results[i], &res, sizeof(res));
		} else if (job.in_len != bits / 8) {
			rsa_reject(&job, 0, &res);
			pxyk_copy_words(&results[i], &res, sizeof(res));
		} else {
			size_of[i] = (uint8_t)(bits / 1024); /* 2, 3, 4 */
		}
	}

RSA_SIZES:
	for (int sz = 2; sz <= 4; sz++) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 3 max = 3
		PXYK_TRIP(RSA_SIZES);
		int cnt = 0;

	RSA_GATHER:
		for (uint32_t i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 64 avg = 64
			PXYK_TRIP(RSA_GATHER);
			if (size_of[i] == sz)
				idx[cnt++] = (uint8_t)i;
		}
	RSA_GROUPS:
		for (int g0 = 0; g0 < cnt; g0 += RSA_GROUP) {
#pragma HLS PIPELINE off
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 2 avg = 2
			PXYK_TRIP(RSA_GROUPS);
			rsa_group(keys, jobs, results, idx, g0, cnt - g0 < RSA_GROUP ? cnt - g0 : RSA_GROUP, 16 * sz);
		}
	}
}

#include "aes.h"

/* ---- lane operations: one gate over AES_L words -------------------------------- */

#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
PXYK_INLINE aes_v vx(aes_v a, aes_v b)
{
	aes_v r;
VX_LANES:
	for (int i = 0; i < AES_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
		AES_W(r, i) = AES_W(a, i) ^ AES_W(b, i);
	}
	return r;
}

PXYK_INLINE aes_v va(aes_v a, aes_v b)
{
	aes_v r;
VA_LANES:
	for (int i = 0; i < AES_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
		AES_W(r, i) = AES_W(a, i) & AES_W(b, i);
	}
	return r;
}

PXYK_INLINE aes_v vo(aes_v a, aes_v b)
{
	aes_v r;
VO_LANES:
	for (int i = 0; i < AES_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
		AES_W(r, i) = AES_W(a, i) | AES_W(b, i);
	}
	return r;
}

PXYK_INLINE aes_v vxn(aes_v a, aes_v b) /* ~(a ^ b) */
{
	aes_v r;
VXN_LANES:
	for (int i = 0; i < AES_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
		AES_W(r, i) = ~(AES_W(a, i) ^ AES_W(b, i));
	}
	return r;
}
#else
/* the same gates as whole-vector operations (not left to the loop vectorizer) */
PXYK_INLINE aes_v vx(aes_v a, aes_v b) { return a ^ b; }
PXYK_INLINE aes_v va(aes_v a, aes_v b) { return a & b; }
PXYK_INLINE aes_v vo(aes_v a, aes_v b) { return a | b; }
PXYK_INLINE aes_v vxn(aes_v a, aes_v b) { return ~(a ^ b); }
#endif


/* ---- S-box: linear top, shared non-linear middle, linear bottom -------------------- */

/* The 27 top-layer signals and D that the middle layer takes (index = signal number). */
struct sbox_top {
	aes_v t[28];
	aes_v d;
};

/* Forward top layer. u[0] is the byte's most significant bit. */
static void top_forward(struct sbox_top *s, const aes_v u[8])
{
	aes_v *t = s->t;

	t[1] = vx(u[0], u[3]);
	t[2] = vx(u[0], u[5]);
	t[3] = vx(u[0], u[6]);
	t[4] = vx(u[3], u[5]);
	t[5] = vx(u[4], u[6]);
	t[6] = vx(t[1], t[5]);
	t[7] = vx(u[1], u[2]);
	t[8] = vx(u[7], t[6]);
	t[9] = vx(u[7], t[7]);
	t[10] = vx(t[6], t[7]);
	t[11] = vx(u[1], u[5]);
	t[12] = vx(u[2], u[5]);
	t[13] = vx(t[3], t[4]);
	t[14] = vx(t[6], t[11]);
	t[15] = vx(t[5], t[11]);
	t[16] = vx(t[5], t[12]);
	t[17] = vx(t[9], t[16]);
	t[18] = vx(u[3], u[7]);
	t[19] = vx(t[7], t[18]);
	t[20] = vx(t[1], t[19]);
	t[21] = vx(u[6], u[7]);
	t[22] = vx(t[7], t[21]);
	t[23] = vx(t[2], t[22]);
	t[24] = vx(t[2], t[10]);
	t[25] = vx(t[20], t[17]);
	t[26] = vx(t[3], t[16]);
	t[27] = vx(t[1], t[12]);
	s->d = u[7];
}

/* Inverse top layer: undoes the affine output map, then feeds the same middle. */
static void top_inverse(struct sbox_top *s, const aes_v u[8])
{
	aes_v *t = s->t;
	aes_v r5, r13, r17, r18, r19;

	t[23] = vx(u[0], u[3]);
	t[22] = vxn(u[1], u[3]);
	t[2] = vxn(u[0], u[1]);
	t[1] = vx(u[3], u[4]);
	t[24] = vxn(u[4], u[7]);
	r5 = vx(u[6], u[7]);
	t[8] = vxn(u[1], t[23]);
	t[19] = vx(t[22], r5);
	t[9] = vxn(u[7], t[1]);
	t[10] = vx(t[2], t[24]);
	t[13] = vx(t[2], r5);
	t[3] = vx(t[1], r5);
	t[25] = vxn(u[2], t[1]);
	r13 = vx(u[1], u[6]);
	t[17] = vxn(u[2], t[19]);
	t[20] = vx(t[24], r13);
	t[4] = vx(u[4], t[8]);
	r17 = vxn(u[2], u[5]);
	r18 = vxn(u[5], u[6]);
	r19 = vxn(u[2], u[4]);
	s->d = vx(u[0], r17);
	t[6] = vx(t[22], r17);
	t[16] = vx(r13, r19);
	t[27] = vx(t[1], r18);
	t[15] = vx(t[10], t[27]);
	t[14] = vx(t[10], r18);
	t[26] = vx(t[3], t[16]);
}

/* The shared non-linear middle: inversion in GF(2^8), 32 ANDs. m[k] is signal Mk. */
static void middle(aes_v m[64], const struct sbox_top *s)
{
	const aes_v *t = s->t;
	aes_v d = s->d;

	m[1] = va(t[13], t[6]);
	m[6] = va(t[3], t[16]);
	m[11] = va(t[1], t[15]);
	m[13] = vx(va(t[4], t[27]), m[11]);
	m[15] = vx(va(t[2], t[10]), m[11]);
	m[20] = vx(vx(t[14], m[1]), vx(va(t[23], t[8]), m[13]));
	m[21] = vx(vx(va(t[19], d), m[1]), vx(t[24], m[15]));
	m[22] = vx(vx(t[26], m[6]), vx(va(t[22], t[9]), m[13]));
	m[23] = vx(vx(va(t[20], t[17]), m[6]), vx(m[15], t[25]));
	m[25] = va(m[22], m[20]);
	m[37] = vx(m[21], va(vx(m[20], m[21]), vx(m[23], m[25])));
	m[38] = vx(vx(m[20], m[25]), vo(m[21], va(m[20], m[23])));
	m[39] = vx(m[23], va(vx(m[22], m[23]), vx(m[21], m[25])));
	m[40] = vx(vx(m[22], m[25]), vo(m[23], va(m[21], m[22])));
	m[41] = vx(m[38], m[40]);
	m[42] = vx(m[37], m[39]);
	m[43] = vx(m[37], m[38]);
	m[44] = vx(m[39], m[40]);
	m[45] = vx(m[42], m[41]);
	m[46] = va(m[44], t[6]);
	m[47] = va(m[40], t[8]);
	m[48] = va(m[39], d);
	m[49] = va(m[43], t[16]);
	m[50] = va(m[38], t[9]);
	m[51] = va(m[37], t[17]);
	m[52] = va(m[42], t[15]);
	m[53] = va(m[45], t[27]);
	m[54] = va(m[41], t[10]);
	m[55] = va(m[44], t[13]);
	m[56] = va(m[40], t[23]);
	m[57] = va(m[39], t[19]);
	m[58] = va(m[43], t[3]);
	m[59] = va(m[38], t[22]);
	m[60] = va(m[37], t[20]);
	m[61] = va(m[42], t[1]);
	m[62] = va(m[45], t[4]);
	m[63] = va(m[41], t[2]);
}

/* Forward bottom layer: out[0] is the most significant bit. */
static void bottom_forward(aes_v out[8], const aes_v m[64])
{
	aes_v l[30];

	l[0] = vx(m[61], m[62]);
	l[1] = vx(m[50], m[56]);
	l[2] = vx(m[46], m[48]);
	l[3] = vx(m[47], m[55]);
	l[4] = vx(m[54], m[58]);
	l[5] = vx(m[49], m[61]);
	l[6] = vx(m[62], l[5]);
	l[7] = vx(m[46], l[3]);
	l[8] = vx(m[51], m[59]);
	l[9] = vx(m[52], m[53]);
	l[10] = vx(m[53], l[4]);
	l[11] = vx(m[60], l[2]);
	l[12] = vx(m[48], m[51]);
	l[13] = vx(m[50], l[0]);
	l[14] = vx(m[52], m[61]);
	l[15] = vx(m[55], l[1]);
	l[16] = vx(m[56], l[0]);
	l[17] = vx(m[57], l[1]);
	l[18] = vx(m[58], l[8]);
	l[19] = vx(m[63], l[4]);
	l[20] = vx(l[0], l[1]);
	l[21] = vx(l[1], l[7]);
	l[22] = vx(l[3], l[12]);
	l[23] = vx(l[18], l[2]);
	l[24] = vx(l[15], l[9]);
	l[25] = vx(l[6], l[10]);
	l[26] = vx(l[7], l[9]);
	l[27] = vx(l[8], l[10]);
	l[28] = vx(l[11], l[14]);
	l[29] = vx(l[11], l[17]);
	out[0] = vx(l[6], l[24]);
	out[1] = vxn(l[16], l[26]);
	out[2] = vxn(l[19], l[28]);
	out[3] = vx(l[6], l[21]);
	out[4] = vx(l[20], l[22]);
	out[5] = vx(l[25], l[29]);
	out[6] = vxn(l[13], l[27]);
	out[7] = vxn(l[6], l[23]);
}

/* Inverse bottom layer: the inverse cipher's input affine map folded in. */
static void bottom_inverse(aes_v out[8], const aes_v m[64])
{
	aes_v p[30];

	p[0] = vx(m[52], m[61]);
	p[1] = vx(m[58], m[59]);
	p[2] = vx(m[54], m[62]);
	p[3] = vx(m[47], m[50]);
	p[4] = vx(m[48], m[56]);
	p[5] = vx(m[46], m[51]);
	p[6] = vx(m[49], m[60]);
	p[7] = vx(p[0], p[1]);
	p[8] = vx(m[50], m[53]);
	p[9] = vx(m[55], m[63]);
	p[10] = vx(m[57], p[4]);
	p[11] = vx(p[0], p[3]);
	p[12] = vx(m[46], m[48]);
	p[13] = vx(m[49], m[51]);
	p[14] = vx(m[49], m[62]);
	p[15] = vx(m[54], m[59]);
	p[16] = vx(m[57], m[61]);
	p[17] = vx(m[58], p[2]);
	p[18] = vx(m[63], p[5]);
	p[19] = vx(p[2], p[3]);
	p[20] = vx(p[4], p[6]);
	p[22] = vx(p[2], p[7]);
	p[23] = vx(p[7], p[8]);
	p[24] = vx(p[5], p[7]);
	p[25] = vx(p[6], p[10]);
	p[26] = vx(p[9], p[11]);
	p[27] = vx(p[10], p[18]);
	p[28] = vx(p[11], p[25]);
	p[29] = vx(p[15], p[20]);
	out[0] = vx(p[13], p[22]);
	out[1] = vx(p[26], p[29]);
	out[2] = vx(p[17], p[28]);
	out[3] = vx(p[12], p[22]);
	out[4] = vx(p[23], p[27]);
	out[5] = vx(p[19], p[24]);
	out[6] = vx(p[14], p[23]);
	out[7] = vx(p[9], p[16]);
}

/* SubBytes (or InvSubBytes) on the planes; planes are indexed by bit, the circuit by MSB first. */
static void sub_bytes(aes_state *s, int inverse)
{
	struct sbox_top top;
	aes_v u[8], m[64], o[8];

SUB_BYTES_IN:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		u[i] = s->p[7 - i];
	}
	if (inverse)
		top_inverse(&top, u);
	else
		top_forward(&top, u);
	middle(m, &top);
	if (inverse)
		bottom_inverse(o, m);
	else
		bottom_forward(o, m);
SUB_BYTES_OUT:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		s->p[7 - i] = o[i];
	}
}

/* ---- ShiftRows, MixColumns: byte (row r, column c) of block k is bit 16k + 4c + r ---- */

#define REP16(v) ((uint64_t)(v) * 0x0001000100010001ull)

/* whole-plane shifts and masks: loops for synthesis, vector operations on the host */
#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
PXYK_INLINE aes_v vsm(aes_v x, int right, int n, uint64_t mask)
{
	aes_v r;
VSM_LANES:
	for (int i = 0; i < AES_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
		r.w[i] = (right ? x.w[i] >> n : x.w[i] << n) & mask;
	}
	return r;
}
#else
#define vsm(x, right, n, mask) (((right) ? (x) >> (n) : (x) << (n)) & (uint64_t)(mask))
#endif

#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
PXYK_INLINE aes_v shift_rows_v(aes_v x)
{
	/* row r moves left by r columns, within each block */
	aes_v r0 = vsm(x, 1, 0, REP16(0x1111));
	aes_v r1 = vo(vsm(x, 1, 4, REP16(0x0222)), vsm(x, 0, 12, REP16(0x2000)));
	aes_v r2 = vo(vsm(x, 1, 8, REP16(0x0044)), vsm(x, 0, 8, REP16(0x4400)));
	aes_v r3 = vo(vsm(x, 1, 12, REP16(0x0008)), vsm(x, 0, 4, REP16(0x8880)));
	return vo(vo(r0, r1), vo(r2, r3));
}

PXYK_INLINE aes_v inv_shift_rows_v(aes_v x)
{
	aes_v r0 = vsm(x, 1, 0, REP16(0x1111));
	aes_v r1 = vo(vsm(x, 0, 4, REP16(0x2220)), vsm(x, 1, 12, REP16(0x0002)));
	aes_v r2 = vo(vsm(x, 1, 8, REP16(0x0044)), vsm(x, 0, 8, REP16(0x4400)));
	aes_v r3 = vo(vsm(x, 1, 4, REP16(0x0888)), vsm(x, 0, 12, REP16(0x8000)));
	return vo(vo(r0, r1), vo(r2, r3));
}

#else
/* the same permutation as rotations of each block's 16 bits (one instruction where the ISA has them) */
typedef uint16_t aes_v16 __attribute__((vector_size(8 * AES_L)));

PXYK_INLINE aes_v rotr16(aes_v x, int n)
{
	aes_v16 y = (aes_v16)x;

	return (aes_v)((y >> n) | (y << (16 - n)));
}

PXYK_INLINE aes_v shift_rows_v(aes_v x) /* row r: rotate right by 4r */
{
	return (x & REP16(0x1111)) | (rotr16(x, 4) & REP16(0x2222)) | (rotr16(x, 8) & REP16(0x4444)) |
	       (rotr16(x, 12) & REP16(0x8888));
}

PXYK_INLINE aes_v inv_shift_rows_v(aes_v x)
{
	return (x & REP16(0x1111)) | (rotr16(x, 12) & REP16(0x2222)) | (rotr16(x, 8) & REP16(0x4444)) |
	       (rotr16(x, 4) & REP16(0x8888));
}
#endif

static void shift_rows(aes_state *s, int inverse)
{
SHIFT_ROWS_PLANES:
	for (int b = 0; b < 8; b++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		s->p[b] = inverse ? inv_shift_rows_v(s->p[b]) : shift_rows_v(s->p[b]);
	}
}

/* rotate rows within each column: row r takes row r+1 (rot1) or r+2 (rot2) */
PXYK_INLINE aes_v rot1(aes_v x)
{
	return vo(vsm(x, 1, 1, REP16(0x7777)), vsm(x, 0, 3, REP16(0x8888)));
}

PXYK_INLINE aes_v rot2(aes_v x)
{
	return vo(vsm(x, 1, 2, REP16(0x3333)), vsm(x, 0, 2, REP16(0xcccc)));
}

/* multiply every byte by {02} (mod x^8 + x^4 + x^3 + x + 1), across planes */
static void mul2(aes_v o[8], const aes_v t[8])
{
	aes_v top = t[7];

	o[7] = t[6];
	o[6] = t[5];
	o[5] = t[4];
	o[4] = vx(t[3], top);
	o[3] = vx(t[2], top);
	o[2] = t[1];
	o[1] = vx(t[0], top);
	o[0] = top;
}

/* s'_r = 2 s_r + 3 s_{r+1} + s_{r+2} + s_{r+3} = 2 t_r + (all_r + s_r), t = s + rot1(s), all = t + rot2(t) */
static void mix_columns(aes_state *s)
{
	aes_v t[8], t2[8];

MIX_T:
	for (int b = 0; b < 8; b++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		t[b] = vx(s->p[b], rot1(s->p[b]));
	}
	mul2(t2, t);
MIX_OUT:
	for (int b = 0; b < 8; b++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		s->p[b] = vx(vx(t2[b], s->p[b]), vx(t[b], rot2(t[b])));
	}
}

/* a^-1(x) = a(x) ({04} x^2 + {05}): u_r = s_r + 4 (s_r + s_{r+2}), then MixColumns */
static void inv_mix_columns(aes_state *s)
{
	aes_v t[8], t2[8], t4[8];

INV_MIX_T:
	for (int b = 0; b < 8; b++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		t[b] = vx(s->p[b], rot2(s->p[b]));
	}
	mul2(t2, t);
	mul2(t4, t2);
INV_MIX_OUT:
	for (int b = 0; b < 8; b++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		s->p[b] = vx(s->p[b], t4[b]);
	}
	mix_columns(s);
}

static void add_round_key(aes_state *s, const aes_state *rk)
{
ARK_PLANES:
	for (int b = 0; b < 8; b++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		s->p[b] = vx(s->p[b], rk->p[b]);
	}
}

/* ---- bytes <-> planes ------------------------------------------------------------- */

/*
 * 64 bytes (4 blocks) as 8 little-endian words <-> 8 planes with bit i of
 * plane b = bit b of byte i: an 8x8 bit transpose inside each word, then an
 * 8x8 byte transpose across the words. Both are involutions. Lane g of every
 * vector is its own 64-byte group, so all AES_L groups move at once.
 */
#if defined(__SYNTHESIS__) || defined(PXYK_NO_VECTOR)
PXYK_INLINE void vswapmove(aes_v *a, aes_v *b, int n, uint64_t mask)
{
SWAPMOVE_LANES:
	for (int i = 0; i < AES_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
		uint64_t t = ((a->w[i] >> n) ^ b->w[i]) & mask;
		b->w[i] ^= t;
		a->w[i] ^= t << n;
	}
}

PXYK_INLINE aes_v vdelta(aes_v x, int n, uint64_t mask) /* swap bit pairs n apart within a word */
{
DELTA_LANES:
	for (int i = 0; i < AES_L; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
		uint64_t t = (x.w[i] ^ (x.w[i] >> n)) & mask;
		x.w[i] ^= t ^ (t << n);
	}
	return x;
}
#else
PXYK_INLINE void vswapmove(aes_v *a, aes_v *b, int n, uint64_t mask)
{
	aes_v t = ((*a >> n) ^ *b) & mask;
	*b ^= t;
	*a ^= t << n;
}

PXYK_INLINE aes_v vdelta(aes_v x, int n, uint64_t mask)
{
	aes_v t = (x ^ (x >> n)) & mask;
	return x ^ t ^ (t << n);
}
#endif

static void transpose(aes_v w[8])
{
TR_DELTA:
	for (int k = 0; k < 8; k++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		w[k] = vdelta(w[k], 7, 0x00aa00aa00aa00aaull);
		w[k] = vdelta(w[k], 14, 0x0000cccc0000ccccull);
		w[k] = vdelta(w[k], 28, 0x00000000f0f0f0f0ull);
	}
TR_SWAP32:
	for (int k = 0; k < 4; k++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
		vswapmove(&w[k], &w[k + 4], 32, 0x00000000ffffffffull);
	}
TR_SWAP16:
	for (int k = 0; k < 8; k += 4) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 2
		vswapmove(&w[k], &w[k + 2], 16, 0x0000ffff0000ffffull);
		vswapmove(&w[k + 1], &w[k + 3], 16, 0x0000ffff0000ffffull);
	}
TR_SWAP8:
	for (int k = 0; k < 8; k += 2) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
		vswapmove(&w[k], &w[k + 1], 8, 0x00ff00ff00ff00ffull);
	}
}

/* the inverse: the same steps in the opposite order */
static void untranspose(aes_v w[8])
{
UNTR_SWAP8:
	for (int k = 0; k < 8; k += 2) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
		vswapmove(&w[k], &w[k + 1], 8, 0x00ff00ff00ff00ffull);
	}
UNTR_SWAP16:
	for (int k = 0; k < 8; k += 4) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 2
		vswapmove(&w[k], &w[k + 2], 16, 0x0000ffff0000ffffull);
		vswapmove(&w[k + 1], &w[k + 3], 16, 0x0000ffff0000ffffull);
	}
UNTR_SWAP32:
	for (int k = 0; k < 4; k++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
		vswapmove(&w[k], &w[k + 4], 32, 0x00000000ffffffffull);
	}
UNTR_DELTA:
	for (int k = 0; k < 8; k++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		w[k] = vdelta(w[k], 7, 0x00aa00aa00aa00aaull);
		w[k] = vdelta(w[k], 14, 0x0000cccc0000ccccull);
		w[k] = vdelta(w[k], 28, 0x00000000f0f0f0f0ull);
	}
}

PXYK_INLINE uint64_t load64le(const uint8_t *p)
{
	uint64_t v = 0;

LOAD64_BYTES:
	for (int i = 7; i >= 0; i--) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		v = (v << 8) | p[i];
	}
	return v;
}

PXYK_INLINE void store64le(uint8_t *p, uint64_t v)
{
STORE64_BYTES:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		p[i] = (uint8_t)(v >> (8 * i));
	}
}

static void load_state(aes_state *s, const uint8_t *in)
{
LOAD_STATE_WORDS:
	for (int k = 0; k < 8; k++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
	LOAD_STATE_LANES:
		for (int g = 0; g < AES_L; g++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
			AES_W(s->p[k], g) = load64le(in + 64 * g + 8 * k);
		}
	}
	transpose(s->p);
}

/* the same 64 bytes (4 blocks) in every lane */
static void load_state_rep(aes_state *s, const uint8_t *in)
{
LOAD_REP_WORDS:
	for (int k = 0; k < 8; k++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		uint64_t v = load64le(in + 8 * k);

	LOAD_REP_LANES:
		for (int g = 0; g < AES_L; g++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
			AES_W(s->p[k], g) = v;
		}
	}
	transpose(s->p);
}

static void store_state(uint8_t *out, const aes_state *s)
{
	aes_v w[8];

STORE_STATE_COPY:
	for (int k = 0; k < 8; k++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		w[k] = s->p[k];
	}
	untranspose(w);
STORE_STATE_WORDS:
	for (int k = 0; k < 8; k++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
	STORE_STATE_LANES:
		for (int g = 0; g < AES_L; g++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
			store64le(out + 64 * g + 8 * k, AES_W(w[k], g));
		}
	}
}

/* ---- the cipher ----------------------------------------------------------------------- */

/*
 * Every round unrolled: a pass of AES_BLOCKS blocks goes through 10 or 14
 * rounds of logic, one after the other, and a new pass can enter every
 * cycle. The rounds AES-128 does not use are passed by.
 */
static void encrypt_state(const struct aes_key *k, aes_state *s)
{
	add_round_key(s, &k->rk[0]);
AES_ROUNDS:
	for (int r = 1; r < AES_MAX_ROUNDS; r++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 13 max = 13
		if (r < k->rounds) {
			sub_bytes(s, 0);
			shift_rows(s, 0);
			mix_columns(s);
			add_round_key(s, &k->rk[r]);
		}
	}
	sub_bytes(s, 0);
	shift_rows(s, 0);
	add_round_key(s, &k->rk[k->rounds]);
}

static void decrypt_state(const struct aes_key *k, aes_state *s)
{
	add_round_key(s, &k->rk[k->rounds]);
AES_INV_ROUNDS:
	for (int r = AES_MAX_ROUNDS - 1; r >= 1; r--) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 13 max = 13
		if (r < k->rounds) {
			shift_rows(s, 1);
			sub_bytes(s, 1);
			add_round_key(s, &k->rk[r]);
			inv_mix_columns(s);
		}
	}
	shift_rows(s, 1);
	sub_bytes(s, 1);
	add_round_key(s, &k->rk[0]);
}

void aes_encrypt_blocks(const struct aes_key *k, uint8_t *blocks)
{
	aes_state s;

	load_state(&s, blocks);
	encrypt_state(k, &s);
	store_state(blocks, &s);
}

void aes_decrypt_blocks(const struct aes_key *k, uint8_t *blocks)
{
	aes_state s;

	load_state(&s, blocks);
	decrypt_state(k, &s);
	store_state(blocks, &s);
}

uint8_t aes_sbox_ct(uint8_t x, int inverse)
{
	uint8_t buf[16 * AES_BLOCKS];
	aes_state s;

	pxyk_zero(buf, sizeof(buf));
	buf[0] = x;
	load_state(&s, buf);
	sub_bytes(&s, inverse);
	store_state(buf, &s);
	return buf[0];
}

/* SubWord: the four bytes of w (big-endian) as bits 0..3 of the planes, through the circuit */
static uint32_t sub_word(uint32_t w)
{
	aes_state s;
	uint32_t r = 0;

SUB_WORD_IN:
	for (int b = 0; b < 8; b++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		uint64_t v = 0;

	SUB_WORD_BYTES:
		for (int j = 0; j < 4; j++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
			v |= (uint64_t)((w >> (24 - 8 * j + b)) & 1) << j;
		}
	SUB_WORD_LANES:
		for (int g = 0; g < AES_L; g++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
			AES_W(s.p[b], g) = v;
		}
	}
	sub_bytes(&s, 0);
SUB_WORD_OUT:
	for (int j = 0; j < 4; j++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
	SUB_WORD_OUT_BITS:
		for (int b = 0; b < 8; b++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
			r |= (uint32_t)((AES_W(s.p[b], 0) >> j) & 1) << (24 - 8 * j + b);
		}
	}
	return r;
}

/* Key expansion (FIPS 197 §5.2) in big-endian words; SubWord goes through the circuit too. */
void aes_expand(struct aes_key *k, const uint8_t *key, int key_len)
{
	uint32_t w[4 * (AES_MAX_ROUNDS + 1)];
	uint8_t buf[64];
	int nk = key_len / 4, total, pos = 0;
	uint32_t rcon = 1;

	k->rounds = nk + 6;
	total = 4 * (k->rounds + 1);
KEY_LOAD:
	for (int i = 0; i < 8; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8
		if (i < nk)
			w[i] = pxyk_be32(key + 4 * i);
	}
	/* one word per iteration; SubWord's S-box depth makes it two cycles */
KEY_WORDS:
	for (int i = nk; i < total; i++) {
#pragma HLS PIPELINE II = 2
#pragma HLS LATENCY max = 2
#pragma HLS LOOP_TRIPCOUNT min = 36 max = 52 avg = 36
		PXYK_TRIP(KEY_WORDS);
		uint32_t t = w[i - 1];

		/* pos = i % nk */
		if (pos == 0)
			t = sub_word(t << 8 | t >> 24) ^ rcon << 24;
		else if (nk > 6 && pos == 4)
			t = sub_word(t);
		if (pos == 0)
			rcon = ((rcon << 1) ^ (0x1b & (0 - (rcon >> 7)))) & 0xff;
		w[i] = w[i - nk] ^ t;
		pos = pos + 1 == nk ? 0 : pos + 1;
	}
	/* each round key, in every block position, as planes: four copies, read by every lane */
KEY_PLANES:
	for (int r = 0; r <= AES_MAX_ROUNDS; r++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 3
#pragma HLS LOOP_TRIPCOUNT min = 15 max = 15
		PXYK_TRIP(KEY_PLANES);
	KEY_PLANE_BYTES:
		for (int b = 0; b < 4; b++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
		KEY_PLANE_WORDS:
			for (int j = 0; j < 4; j++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4
				pxyk_put_be32(buf + 16 * b + 4 * j, r <= k->rounds ? w[4 * r + j] : 0);
			}
		}
		load_state_rep(&k->rk[r], buf);
	}
KEY_WIPE:
	for (int i = 0; i < 4 * (AES_MAX_ROUNDS + 1); i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 60 max = 60
		w[i] = 0;
	}
	pxyk_zero(buf, sizeof(buf));
}

void aes_encrypt1(const struct aes_key *k, const uint8_t in[16], uint8_t out[16])
{
	uint8_t buf[16 * AES_BLOCKS];

	pxyk_zero(buf, sizeof(buf));
	pxyk_copy(buf, in, 16);
	aes_encrypt_blocks(k, buf);
	pxyk_copy(out, buf, 16);
}

/* a pass of whole blocks from in to out (16 * AES_BLOCKS bytes) */
void aes_cbc_decrypt(const struct aes_key *k, const uint8_t iv[16], const uint8_t *in, uint8_t *out, uint32_t n)
{
	uint8_t buf[16 * AES_BLOCKS];

	/* P_i = D(C_i) ^ C_{i-1}: every block on its own, AES_BLOCKS per pass */
CBC_DEC_PASSES:
	for (uint32_t off = 0; off < n; off += 16 * AES_BLOCKS) {
#pragma HLS PIPELINE II = 1
#pragma HLS LATENCY max = 40
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 290 avg = 257
		PXYK_TRIP(CBC_DEC_PASSES);
	CBC_DEC_IN:
		for (uint32_t i = 0; i < 16 * AES_BLOCKS; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 512
			buf[i] = off + i < n ? in[off + i] : 0;
		}
		aes_decrypt_blocks(k, buf);
	CBC_DEC_OUT:
		for (uint32_t i = 0; i < 16 * AES_BLOCKS; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 64 max = 512
			uint32_t pos = off + i;

			if (pos < n)
				out[pos] = (uint8_t)(buf[i] ^ (pos < 16 ? iv[pos] : in[pos - 16]));
		}
	}
}

void aes_cbc_encrypt(const struct aes_key *k, const uint8_t iv[16], const uint8_t *in, uint8_t *out, uint32_t n)
{
	uint8_t x[16];

	pxyk_copy(x, iv, 16);
	/* serial: each block waits for the previous one's whole pass through the rounds */
CBC_ENC:
	for (uint32_t off = 0; off < n; off += 16) {
#pragma HLS PIPELINE off
#pragma HLS LATENCY max = 32
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 1153 avg = 1030
		PXYK_TRIP(CBC_ENC);
	CBC_ENC_XOR:
		for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 16
			x[i] ^= in[off + (uint32_t)i];
		}
		aes_encrypt1(k, x, x);
		pxyk_copy(out + off, x, 16);
	}
}

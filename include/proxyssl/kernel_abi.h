/*
 * proxyssl kernel ABI: the one source of truth for the HLS kernels, the
 * host engines that drive them, the emulation xclbin's metadata and the v++
 * connectivity files.
 *
 * Two kernels, each a batch per launch:
 *
 *   rsa_crt_decrypt(keys, jobs, results, n_jobs)
 *   tls_record_crypt(descs, in, out, results, n_descs)
 *
 * Every pointer argument is an AXI master (a buffer object in device
 * memory); n_* are AXI-lite scalars. All integers are little-endian; RSA
 * numbers are arrays of 64-bit limbs, least significant first, except the
 * ciphertext and plaintext bytes, which are big-endian as on the wire.
 *
 * Every result carries PXY_K_DONE in its status, written by the kernel: a
 * result without it was never computed (a hung or absent card, or XRT's
 * no-op emulation), and the host treats the whole batch as failed.
 */
#ifndef PROXYSSL_KERNEL_ABI_H
#define PROXYSSL_KERNEL_ABI_H

#include <stdint.h>

#define PXY_K_ABI_VERSION 1

/* ---- names and argument order (xclbin metadata, xrtPLKernelOpen) ---------- */

#define PXY_K_RSA_NAME "rsa_crt_decrypt"
#define PXY_K_RSA_ARG_KEYS 0
#define PXY_K_RSA_ARG_JOBS 1
#define PXY_K_RSA_ARG_RESULTS 2
#define PXY_K_RSA_ARG_N 3
#define PXY_K_RSA_NARGS 4

#define PXY_K_REC_NAME "tls_record_crypt"
#define PXY_K_REC_ARG_DESCS 0
#define PXY_K_REC_ARG_IN 1
#define PXY_K_REC_ARG_OUT 2
#define PXY_K_REC_ARG_RESULTS 3
#define PXY_K_REC_ARG_N 4
#define PXY_K_REC_NARGS 5

/* ---- limits ----------------------------------------------------------------- */

#define PXY_K_LIMB_BITS 64
#define PXY_K_RSA_MAX_BYTES 512 /* RSA-4096 */
#define PXY_K_N_LIMBS 64        /* modulus, up to 4096 bits */
#define PXY_K_P_LIMBS 32        /* primes, up to 2048 bits */
#define PXY_K_MAX_KEYS 64       /* device-resident key table */
#define PXY_K_RSA_MAX_BATCH 64  /* jobs per launch */
#define PXY_K_PMS_LEN 48

#define PXY_K_REC_MAX_BATCH 128 /* records per launch */
#define PXY_K_REC_MAX_IN 18437  /* a whole TLS record: 5 + 2^14 + 2048 */
#define PXY_K_REC_MAX_OUT 18437
#define PXY_K_REC_SLOT 18560    /* per-record stride in the in/out buffers (128-byte aligned) */
#define PXY_K_MAC_KEY_MAX 128   /* HMAC keys up to one SHA-384 block; longer ones are hashed first */
#define PXY_K_AAD_MAX 2048      /* raw AEAD operations (known-answer tests) */

/* ---- status ----------------------------------------------------------------- */

#define PXY_K_DONE 0x444f4e45u   /* "DONE": the kernel computed this result */
#define PXY_K_STATUS_MASK 0xffffffffu
/* flags in results[].flags */
#define PXY_K_F_FAULT 1u    /* RSA: the re-encryption check failed (a fault, not a bad padding) */
#define PXY_K_F_BADKEY 2u   /* RSA: key slot empty or ciphertext length != modulus length */
#define PXY_K_F_BADDESC 4u  /* record: descriptor out of range (offsets, lengths, op) */

/* ---- rsa_crt_decrypt ------------------------------------------------------- */

/* Key table entry, loaded once per key (host precomputes the Montgomery constants). */
struct pxy_k_rsa_key {
	uint32_t bits;  /* 2048, 3072 or 4096; 0: empty slot */
	uint32_t e;     /* public exponent, for the fault check (< 2^32) */
	uint64_t n0inv, p0inv, q0inv; /* -m^-1 mod 2^64 for n, p, q */
	uint64_t reserved[4];
	uint64_t n[PXY_K_N_LIMBS];
	uint64_t rr_n[PXY_K_N_LIMBS];  /* R^2 mod n, R = 2^(64 * limbs(n)) */
	uint64_t p[PXY_K_P_LIMBS], q[PXY_K_P_LIMBS];
	uint64_t dp[PXY_K_P_LIMBS], dq[PXY_K_P_LIMBS];
	uint64_t rr_p[PXY_K_P_LIMBS], rr_q[PXY_K_P_LIMBS]; /* R^2 mod p, R^2 mod q */
	uint64_t qinv_m[PXY_K_P_LIMBS]; /* q^-1 * R mod p (Garner in the Montgomery domain) */
};

enum pxy_k_rsa_mode {
	PXY_K_RSA_TLS = 0,   /* TLS pre-master: 48 bytes, version check, implicit rejection */
	PXY_K_RSA_PKCS1 = 1, /* RSAES-PKCS1-v1_5 message, any length (known-answer tests) */
};

struct pxy_k_rsa_job {
	uint32_t key_id;
	uint32_t mode;           /* enum pxy_k_rsa_mode */
	uint32_t in_len;         /* ciphertext bytes; must equal the modulus length */
	uint32_t client_version; /* TLS mode: expected first two bytes of the secret */
	uint8_t random[PXY_K_PMS_LEN]; /* TLS mode: the secret to use if anything is wrong */
	uint8_t in[PXY_K_RSA_MAX_BYTES]; /* ciphertext, big-endian, left-aligned */
};

struct pxy_k_rsa_result {
	uint32_t status;  /* PXY_K_DONE */
	uint32_t flags;   /* PXY_K_F_* */
	uint32_t ok;      /* PKCS1 mode: 1 if the padding was valid (TLS mode: always 0) */
	uint32_t out_len; /* TLS: 48; PKCS1: message length when ok */
	uint8_t out[PXY_K_RSA_MAX_BYTES];
};

/* ---- tls_record_crypt ------------------------------------------------------- */

enum pxy_k_rec_op {
	PXY_K_OP_TLS_OPEN = 1, /* decrypt + verify one TLS record (in: header + fragment) */
	PXY_K_OP_TLS_SEAL = 2, /* protect one TLS record (in: header + plaintext; out: record) */
	PXY_K_OP_GCM_OPEN = 3, /* raw AES-GCM open: nonce in iv[0..12], AAD then ciphertext||tag in `in` */
	PXY_K_OP_GCM_SEAL = 4, /* raw AES-GCM seal: AAD then plaintext in `in`; out: ciphertext||tag */
	PXY_K_OP_CBC_DEC = 5,  /* raw AES-CBC decrypt with PKCS#7 unpadding, constant time */
	PXY_K_OP_HMAC = 6,     /* raw HMAC over `in` */
};

/* bulk and mac codes are those of include/proxyssl/engine.h (enum pxy_bulk, enum pxy_mac) */
struct pxy_k_rec_desc {
	uint32_t op;
	uint8_t bulk, mac, etm, mac_key_len;
	uint16_t version;  /* the session's version, 0x0301..0x0304; 0x0304 (TLS 1.3, AES-GCM only): nonce = iv[0..12]
			    * XOR seq, AAD = the record header, no explicit nonce; an opened record's output still
			    * ends with its content type and padding, a sealed one's input does */
	uint16_t aad_len;  /* raw GCM: AAD bytes at the start of `in` */
	uint32_t in_off, in_len;   /* into the in buffer */
	uint32_t out_off, out_cap; /* into the out buffer */
	uint32_t reserved0;
	uint64_t seq;
	uint8_t key[32];
	uint8_t iv[16];    /* GCM TLS 1.2: salt in iv[0..4]; TLS 1.3: the 12-byte IV; raw GCM: 12-byte nonce; CBC: IV
			    * (TLS 1.0, raw) */
	uint8_t mac_key[PXY_K_MAC_KEY_MAX];
	uint8_t reserved[40];
};

struct pxy_k_rec_result {
	uint32_t status;  /* PXY_K_DONE */
	uint32_t flags;   /* PXY_K_F_BADDESC */
	uint32_t ok;      /* authenticated (open), done (seal) */
	uint32_t out_len; /* bytes written at out + out_off */
	uint8_t mac[64];  /* raw HMAC result */
};

/* ---- emulation only: arithmetic the emulation device lends the kernels -------
 *
 * Not part of synthesis, and not seen by a card. The kernels' emulation
 * library (their host build) exports PXY_K_EMU_BIND; the emulation device
 * calls it once after loading the library, with a table of the host's own
 * implementations (OpenSSL: AES-NI, carry-less multiply, SHA extensions,
 * AVX-512 IFMA or MULX bignum code) of the kernels' heavy primitives. The
 * kernels then use those for AES-GCM, AES-CBC, HMAC (plain and the
 * constant-time MAC-then-encrypt form), the two CRT exponentiations and
 * the fault check's re-encryption;
 * everything else runs as written (descriptor checks, record layouts,
 * padding and MAC checks, Garner, the fault check, PKCS#1 unpadding).
 * Unbound (NULL, or a library in the synthesis form), the kernels use their
 * own synthesizable arithmetic.
 *
 * Every function is thread-safe, returns 0, or -1 when it cannot (the kernel
 * then computes the same result with its own arithmetic). Numbers are arrays
 * of nl 64-bit limbs, least significant first, in normal (not Montgomery)
 * form; exponentiation is constant time in the exponent.
 */
#define PXY_K_EMU_BIND "pxyk_emu_bind"

struct pxy_k_emu_host {
	uint32_t version; /* PXY_K_ABI_VERSION */
	/* AES-GCM, 12-byte nonce; enc: out = ciphertext, tag written; else out = plaintext and *ok = 1
	 * if the tag verifies (out zeroed if not) */
	int (*gcm)(int enc, const uint8_t *key, uint32_t key_len, const uint8_t nonce[12], const uint8_t *aad,
		   uint32_t aad_len, const uint8_t *in, uint32_t n, uint8_t tag[16], uint8_t *out, uint32_t *ok);
	/* AES-CBC without padding, n a multiple of 16, out may equal in */
	int (*cbc)(int enc, const uint8_t *key, uint32_t key_len, const uint8_t iv[16], const uint8_t *in,
		   uint8_t *out, uint32_t n);
	/* HMAC(key, hdr || msg), alg an enum pxy_mac */
	int (*hmac)(int alg, const uint8_t *key, uint32_t key_len, const uint8_t *hdr, uint32_t hdr_len,
		    const uint8_t *msg, uint32_t msg_len, uint8_t *out);
	/* HMAC(key, hdr13 || msg[0..len)), len secret: the cost of max_len (public) whatever len is */
	int (*hmac_ct)(int alg, const uint8_t *key, uint32_t key_len, const uint8_t hdr13[13], const uint8_t *msg,
		       uint32_t len, uint32_t max_len, uint8_t *out);
	/* r0 = x0^e0 mod m0 and r1 = x1^e1 mod m1 (x < m, m odd), nl limbs each */
	int (*modexp2)(uint64_t *r0, uint64_t *r1, const uint64_t *x0, const uint64_t *x1, const uint64_t *e0,
		       const uint64_t *e1, const uint64_t *m0, const uint64_t *m1, uint32_t nl);
	/* r = x^e mod m with a public exponent (the fault check's re-encryption), nl limbs */
	int (*modexp_pub)(uint64_t *r, const uint64_t *x, uint32_t e, const uint64_t *m, uint32_t nl);
};

/* ---- sizes, checked: the layouts are shared by C on both ends and by v++ -------- */

#define PXY_K_STATIC_ASSERT(c, m) _Static_assert(c, m)
PXY_K_STATIC_ASSERT(sizeof(struct pxy_k_rsa_key) == 64 + 8 * (2 * PXY_K_N_LIMBS + 7 * PXY_K_P_LIMBS),
		    "pxy_k_rsa_key layout");
PXY_K_STATIC_ASSERT(sizeof(struct pxy_k_rsa_key) % 64 == 0, "key entries are whole 512-bit beats");
PXY_K_STATIC_ASSERT(sizeof(struct pxy_k_rsa_job) == 16 + PXY_K_PMS_LEN + PXY_K_RSA_MAX_BYTES, "pxy_k_rsa_job");
PXY_K_STATIC_ASSERT(sizeof(struct pxy_k_rsa_job) % 64 == 0, "jobs are whole 512-bit beats");
PXY_K_STATIC_ASSERT(sizeof(struct pxy_k_rsa_result) == 16 + PXY_K_RSA_MAX_BYTES, "pxy_k_rsa_result");
PXY_K_STATIC_ASSERT(sizeof(struct pxy_k_rec_desc) == 256, "pxy_k_rec_desc");
PXY_K_STATIC_ASSERT(sizeof(struct pxy_k_rec_result) == 80, "pxy_k_rec_result");
PXY_K_STATIC_ASSERT(PXY_K_REC_SLOT >= PXY_K_REC_MAX_IN + 64 && PXY_K_REC_SLOT % 128 == 0, "record slot");

#endif

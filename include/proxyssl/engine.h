/*
 * proxyssl engine contract.
 *
 * An engine runs the proxy's expensive cryptography off the forwarding path:
 * RSA private-key decryption of the pre-master secret and TLS record
 * open/seal. The caller fills a job, submits it, and later collects it from
 * poll(). Completions are signalled on `event_fd` (an eventfd): the io_uring
 * loop keeps a read armed on it, so a connection waits for a job exactly as
 * it waits for a socket, and one thread per core runs everything.
 *
 * Ownership: a submitted job belongs to the engine until poll() hands it
 * back; the caller must keep everything the job points to (record buffer,
 * traffic keys) alive until then. Jobs may complete in any order; `owner`,
 * `tag` and `done` are for the caller and are never read by the engine:
 * pxy_engine_complete() polls and calls each job's `done`, so the loop that
 * collects needs not know who submitted what.
 *
 * A synchronous engine (PXY_ENGINE_F_SYNC: the cpu engine with no worker
 * threads, the emu engine running its kernels inline) runs its jobs on the
 * caller's thread inside flush(); they are ready for poll() when flush()
 * returns, and nothing is signalled on `event_fd`: the caller flushes and
 * polls (the io loop does at the end of each turn, after its own I/O went
 * out). Everything else signals.
 *
 * Every engine (cpu, emu, xrt) passes the same test suite.
 */
#ifndef PROXYSSL_ENGINE_H
#define PROXYSSL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "proxyssl/error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum pxy_job_type {
	PXY_JOB_RSA_DECRYPT = 1, /**< RSAES-PKCS1-v1_5 pre-master decryption, implicit rejection */
	PXY_JOB_RECORD_OPEN = 2, /**< decrypt and authenticate one TLS record */
	PXY_JOB_RECORD_SEAL = 3, /**< encrypt and protect one TLS record */
	PXY_JOB_PRIMITIVE = 4,   /**< a raw AEAD/CBC/HMAC operation (known-answer tests) */
};

enum pxy_rsa_mode {
	PXY_RSA_TLS = 0,   /**< TLS pre-master: 48 bytes, version check, implicit rejection */
	PXY_RSA_PKCS1 = 1, /**< RSAES-PKCS1-v1_5 message of any length, with a validity flag (tests) */
};

enum pxy_prim_op {
	PXY_PRIM_GCM_OPEN = 1, /**< in = ciphertext || 16-byte tag; out = plaintext if authentic */
	PXY_PRIM_GCM_SEAL = 2, /**< in = plaintext; out = ciphertext || tag */
	PXY_PRIM_CBC_DECRYPT = 3, /**< AES-CBC decryption and PKCS#7 unpadding */
	PXY_PRIM_HMAC = 4,     /**< HMAC with the hash of `mac` */
};

/**
 * Bulk ciphers of the record layer (their sizes, nonce forms and where they
 * run: tls/suites.h, pxy_bulk_desc). 1..4 are also the card kernels' codes
 * (kernel_abi.h); the others run in the software engine.
 */
enum pxy_bulk {
	PXY_BULK_NONE = 0, /**< no engine has it: the suite is not decrypted */
	PXY_BULK_AES_128_GCM = 1,
	PXY_BULK_AES_256_GCM = 2,
	PXY_BULK_AES_128_CBC = 3,
	PXY_BULK_AES_256_CBC = 4,
	PXY_BULK_AES_128_CCM = 5,
	PXY_BULK_AES_256_CCM = 6,
	PXY_BULK_AES_128_CCM_8 = 7,
	PXY_BULK_AES_256_CCM_8 = 8,
	PXY_BULK_CAMELLIA_128_CBC = 9,
	PXY_BULK_CAMELLIA_256_CBC = 10,
	PXY_BULK_CAMELLIA_128_GCM = 11,
	PXY_BULK_CAMELLIA_256_GCM = 12,
	PXY_BULK_ARIA_128_GCM = 13,
	PXY_BULK_ARIA_256_GCM = 14,
	PXY_BULK_ARIA_128_CBC = 15,
	PXY_BULK_ARIA_256_CBC = 16,
	PXY_BULK_SEED_CBC = 17,
	PXY_BULK_3DES_EDE_CBC = 18,
	PXY_BULK_RC4_128 = 19,
	PXY_BULK_NULL = 20, /**< no encryption: the MAC only */
	PXY_BULK_CHACHA20_POLY1305 = 21, /**< RFC 7905 (TLS 1.2), RFC 8446 (TLS 1.3) */
	PXY_BULK__COUNT
};

/** Record MAC; AEAD suites carry PXY_MAC_AEAD. */
enum pxy_mac {
	PXY_MAC_AEAD = 0,
	PXY_MAC_SHA1 = 1,
	PXY_MAC_SHA256 = 2,
	PXY_MAC_SHA384 = 3,
	PXY_MAC_MD5 = 4,
};

#define PXY_TLS_HDR_LEN 5
#define PXY_TLS_MAX_PLAINTEXT 16384u
/* RFC 5246 §6.2.3: TLSCiphertext.length <= 2^14 + 2048 */
#define PXY_TLS_MAX_CIPHERTEXT (16384u + 2048u)
#define PXY_TLS_MAX_RECORD (PXY_TLS_HDR_LEN + PXY_TLS_MAX_CIPHERTEXT)

#define PXY_PMS_LEN 48
#define PXY_RSA_MAX_BYTES 512 /* RSA-4096 */
#define PXY_RSA_MIN_BITS 1024

/** One direction's traffic keys, from the key block (RFC 5246 §6.3). */
struct pxy_traffic_keys {
	uint8_t bulk;        /**< enum pxy_bulk */
	uint8_t mac;         /**< enum pxy_mac */
	uint8_t etm;         /**< 1: encrypt-then-MAC (RFC 7366) */
	uint8_t key_len;     /**< 16, 24 (3DES) or 32; 0 for NULL */
	uint8_t mac_key_len; /**< 0 (AEAD), 16, 20, 32 or 48 */
	uint8_t mac_len;     /**< bytes of MAC or AEAD tag on the wire */
	uint8_t iv_len;      /**< 4 (AEAD salt), 12 (a nonce XORed with the sequence number: ChaCha20-Poly1305,
			      * TLS 1.3), the block (TLS 1.0 CBC), 0 (CBC with explicit IV, stream, NULL) */
	uint8_t pad_;
	uint16_t version; /**< negotiated version, 0x0301..0x0304 (TLS 1.3: nonce and AAD of RFC 8446 §5.2-5.3,
			   * the inner content type and padding after the plaintext) */
	uint8_t key[32];
	uint8_t mac_key[48];
	uint8_t iv[16];
};

struct pxy_rsa_job {
	uint32_t key_id;         /**< from key_load() */
	uint16_t client_version; /**< ClientHello.client_version: the PMS's first two bytes */
	uint16_t in_len;         /**< EncryptedPreMasterSecret length */
	uint32_t mode;           /**< enum pxy_rsa_mode */
	uint8_t in[PXY_RSA_MAX_BYTES];
	/**
	 * Out: always 48 bytes. On a bad padding, a wrong length or a wrong
	 * version the engine writes an unpredictable value instead, in
	 * constant time (RFC 5246 §7.4.7.1), and `status` stays PXY_OK: the
	 * caller cannot tell, and so cannot leak, which happened.
	 */
	uint8_t pms[PXY_PMS_LEN];
	/* PXY_RSA_PKCS1 mode: the message and whether the padding was valid */
	uint8_t msg[PXY_RSA_MAX_BYTES];
	uint16_t msg_len;
	uint32_t ok;
};

/** A raw primitive, for known-answer tests of every engine. Keys: AES-128/256; HMAC keys any length. */
struct pxy_prim_job {
	uint32_t op;   /**< enum pxy_prim_op */
	uint8_t mac;   /**< HMAC: enum pxy_mac */
	const uint8_t *key;
	size_t key_len;
	const uint8_t *iv; /**< GCM: the 12-byte nonce; CBC: the 16-byte IV */
	size_t iv_len;
	const uint8_t *aad;
	size_t aad_len;
	const uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t out_cap;
	/* out */
	size_t out_len;
	uint32_t ok;   /**< authentic (GCM open), well padded (CBC), done (seal, HMAC) */
};

struct pxy_rec_job {
	const struct pxy_traffic_keys *keys;
	uint64_t seq;    /**< record sequence number in this direction */
	uint8_t *rec;    /**< whole record: 5-byte header + fragment; opened in place */
	size_t rec_len;  /**< header + fragment */
	size_t rec_cap;  /**< bytes available at rec (seal grows the record) */
	uint8_t iv[16];  /**< CBC: TLS 1.0 the chained IV for this record; seal from TLS 1.1 on: the explicit IV */
	/**
	 * Open: the caller takes the plaintext before the engine's next flush(),
	 * so a synchronous device engine may leave it where its kernel wrote it
	 * (pt outside rec) instead of copying it into rec.
	 */
	uint8_t pt_borrow;
	/* out */
	size_t pt_off;   /**< plaintext offset in rec */
	size_t pt_len;   /**< plaintext length */
	const uint8_t *pt_ext; /**< pt_borrow: the plaintext in engine memory, valid until its next flush(); else NULL */
	uint32_t ok;     /**< 1: authenticated; 0: forged, corrupt or wrong keys */
	uint8_t on_device; /**< 1: a device's kernel ran it (0: software) */
};

/** Where an opened record's plaintext is (pt_len bytes). */
static inline const uint8_t *pxy_rec_job_plaintext(const struct pxy_rec_job *r)
{
	return r->pt_ext ? r->pt_ext : r->rec + r->pt_off;
}

/**
 * TLS 1.3 (RFC 8446 §5.2): an opened record's plaintext ends with its real
 * content type, then zero padding. The type replaces the outer one (23) in
 * the record's header, pt_len drops both; no type at all leaves 0 there (a
 * protocol error for the caller). Engines call it after a TLS 1.3 open.
 */
static inline void pxy_rec_job_tls13_inner(struct pxy_rec_job *r)
{
	const uint8_t *p = pxy_rec_job_plaintext(r);
	size_t n = r->pt_len;

	while (n && p[n - 1] == 0)
		n--;
	r->rec[0] = n ? p[n - 1] : 0;
	r->pt_len = n ? n - 1 : 0;
}

struct pxy_job {
	struct pxy_job *next; /**< engine-private while submitted */
	void *owner;          /**< caller's; never read by the engine */
	uint64_t tag;         /**< caller's; never read by the engine */
	uint32_t type;        /**< enum pxy_job_type */
	int32_t status;       /**< out: PXY_OK or an engine/internal error */
	/**
	 * Set to 1 by the engine (release order) once the results are final,
	 * before the job reaches poll(). The caller may read it (acquire) to
	 * know that work is done before collecting it; nothing else of the job
	 * may be read until poll() returns it.
	 */
	uint32_t completed;
	uint64_t submit_ns;   /**< set by pxy_engine_submit (latency accounting) */
	/** The caller's completion: called by pxy_engine_complete() (may be NULL for callers that poll). */
	void (*done)(struct pxy_job *job);
	union {
		struct pxy_rsa_job rsa;
		struct pxy_rec_job rec;
		struct pxy_prim_job prim;
	} u;
};

/** A big-endian unsigned integer. */
struct pxy_bn {
	const uint8_t *p;
	size_t len;
};

/** RSA private key in CRT form, as engines load it into their key table. */
struct pxy_rsa_priv {
	uint32_t bits;
	struct pxy_bn n, e, d, p, q, dp, dq, qinv;
};

struct pxy_engine_params {
	unsigned threads;    /**< worker threads; 0: run jobs inline in submit (tests, fuzzing) */
	unsigned max_jobs;   /**< bound on jobs in flight; submit returns PXY_E_BUSY beyond it */
	unsigned batch;      /**< device engines: most jobs per launch (0: the kernel's limit) */
	unsigned run_timeout_ms; /**< device engines: a launch running longer is a card failure (0: 10000) */
	unsigned device;     /**< device engines: device index */
	const char *xclbin;  /**< device engines: the xclbin (NULL: the emulation xclbin of this build) */
	const char *emu_timing; /**< emu: card timing, "u250[:SCALE]", "u55c", or a table file (NULL: none) */
	int shared_event_fd; /**< > 0: signal this eventfd instead of creating one (an engine inside another) */
	char *why;           /**< out, optional: why open failed, or which engine `auto` chose and why */
	size_t why_len;
};

/** emu with card timing (--emu-timing): a kernel's compute units as the model times them */
struct pxy_engine_cu_stats {
	uint64_t runs;      /**< runs held to the model's time */
	uint64_t busy_ns;   /**< summed over the units: each run's start to its modelled end */
	uint64_t model_ns;  /**< summed modelled run times */
	uint64_t late_runs; /**< runs the host took longer to emulate than the model allows */
	uint32_t cus;       /**< compute units */
};

struct pxy_engine_stats {
	uint64_t rsa_ops, rec_open, rec_seal, rec_bad, busy_rejects, errors;
	uint64_t bytes_in;
	uint64_t inflight;
	/* device engines */
	uint64_t launches;       /**< kernel runs started */
	uint64_t batched_jobs;   /**< jobs carried by those runs */
	uint64_t software_jobs;  /**< jobs run in software: shapes the kernels do not take, or after a failover */
	uint64_t device_failures; /**< runs that failed, timed out or returned uncomputed results */
	uint64_t faults;         /**< RSA results withheld by the kernel's re-encryption check */
	struct pxy_engine_cu_stats cu[2]; /**< emu --emu-timing: [0] rsa_crt_decrypt, [1] tls_record_crypt */
};

struct pxy_engine;

struct pxy_engine_ops {
	const char *name;
	int (*open)(const struct pxy_engine_params *p, struct pxy_engine **out);
	/** Load an RSA private key into the engine's key table. */
	int (*key_load)(struct pxy_engine *e, const struct pxy_rsa_priv *k, uint32_t *key_id);
	/** Wipe a key from the table, freeing its slot; no job may use it any more. */
	void (*key_unload)(struct pxy_engine *e, uint32_t key_id);
	/** Queue one job. PXY_E_BUSY when the engine is at max_jobs. */
	int (*submit)(struct pxy_engine *e, struct pxy_job *job);
	/** Start whatever was queued (device engines batch until here; synchronous engines run it). May be NULL. */
	void (*flush)(struct pxy_engine *e);
	/** Collect up to max finished jobs; never blocks. */
	size_t (*poll)(struct pxy_engine *e, struct pxy_job **out, size_t max);
	void (*close)(struct pxy_engine *e);
};

/** pxy_engine.flags */
#define PXY_ENGINE_F_SYNC 1u /**< jobs run inside submit() and are not signalled on event_fd */

struct pxy_engine {
	const struct pxy_engine_ops *ops;
	int event_fd; /**< readable (eventfd counter > 0) when poll() has jobs */
	unsigned flags; /**< PXY_ENGINE_F_* */
	struct pxy_engine_stats stats;
};

/** Look up an engine by name ("cpu", "emu", "xrt", "auto"); NULL when unknown. */
const struct pxy_engine_ops *pxy_engine_find(const char *name);
/** Names of the engines compiled in, space-separated. */
const char *pxy_engine_names(void);

int pxy_engine_open(const char *name, const struct pxy_engine_params *p, struct pxy_engine **out);
int pxy_engine_submit(struct pxy_engine *e, struct pxy_job *job);
void pxy_engine_flush(struct pxy_engine *e);
size_t pxy_engine_poll(struct pxy_engine *e, struct pxy_job **out, size_t max);
/** Collect every finished job and call its `done`; returns how many. */
size_t pxy_engine_complete(struct pxy_engine *e);
/** Drain the eventfd counter (after a read completion or before poll in tests). */
void pxy_engine_ack(struct pxy_engine *e);
void pxy_engine_close(struct pxy_engine *e);

#ifdef __cplusplus
}
#endif

#endif

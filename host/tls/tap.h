/*
 * The TLS tap: one per proxied connection.
 *
 * It sees every byte each way, in order, as it is forwarded; it reassembles
 * records and handshake messages, follows the handshake through a table of
 * allowed message sequences, judges the ServerHello + Certificate (the
 * policy verdict), recovers the keys from the ClientKeyExchange through an
 * engine job, verifies both Finished messages and decrypts the records.
 *
 * It does no I/O: bytes come in through pxy_tap_feed(), engine completions
 * through pxy_tap_job_done(), and plaintext and key material leave through
 * the hooks. The io_uring loop, the unit tests and the fuzzer drive it the
 * same way.
 */
#ifndef PXY_TAP_H
#define PXY_TAP_H

#include <stddef.h>
#include <stdint.h>

#include "proxyssl/engine.h"
#include "tls/cert.h"
#include "tls/hs.h"
#include "tls/sessions.h"
#include "util/hist.h"

enum pxy_dir { PXY_C2S = 0, PXY_S2C = 1 };

/** The forwarding decision. */
enum pxy_verdict {
	PXY_V_PENDING = 0, /* server->client bytes from ServerHello on are held */
	PXY_V_ALLOW = 1,   /* forward both ways */
	PXY_V_REJECT = 2,  /* alert handshake_failure to both sides, then reset both */
};

/** What the connection log says happened; the fixed, documented list. */
enum pxy_outcome {
	PXY_O_DECRYPTED = 0,
	PXY_O_PASSTHROUGH = 1,
	PXY_O_REJECTED = 2,
	PXY_O_NOT_DECRYPTED = 3,
};

/** Why; the fixed, documented list (README "Verdicts and reasons"). */
enum pxy_reason {
	PXY_R_NONE = 0,
	PXY_R_TLS13,                /* server chose TLS 1.3 */
	PXY_R_UNSUPPORTED_VERSION,  /* server chose a version this build does not decrypt */
	PXY_R_NON_RSA_KX,           /* server chose (EC)DHE, PSK, anon, SRP, ... */
	PXY_R_UNSUPPORTED_SUITE,    /* RSA key exchange, but a cipher no engine implements */
	PXY_R_CERT_MISMATCH,        /* server's leaf certificate is not the configured one */
	PXY_R_NOT_TLS,              /* client spoke something other than TLS records (or SSLv2) */
	PXY_R_CLIENT_PROTOCOL,      /* malformed or out-of-order bytes from the client */
	PXY_R_SERVER_PROTOCOL,      /* malformed or out-of-order bytes from the server */
	PXY_R_HANDSHAKE_TOO_LARGE,  /* handshake flight over the hold/message limits */
	PXY_R_SERVER_ALERT,         /* server ended the handshake with an alert */
	PXY_R_CLIENT_ALERT,         /* client ended the handshake with an alert */
	PXY_R_RESUMPTION_UNKNOWN,   /* abbreviated handshake for a session the proxy never saw */
	PXY_R_FINISHED_MISMATCH,    /* recovered keys did not verify (Finished or first record) */
	PXY_R_RECORD_AUTH,          /* a record failed authentication after the keys verified */
	PXY_R_RENEGOTIATION,        /* renegotiation: not followed by this build */
	PXY_R_ENGINE,               /* the engine failed or was saturated */
	PXY_R_INCOMPLETE,           /* connection ended before the handshake finished */
	PXY_R_BACKEND_UNREACHABLE,  /* TCP connect to the backend failed or timed out */
	PXY_R_INTERNAL,             /* out of memory or a resource limit inside the proxy */
	PXY_R_HANDSHAKE_TIMEOUT,    /* the handshake did not finish within --handshake-timeout */
	PXY_R_IDLE_TIMEOUT,         /* no byte either way for --idle-timeout */
	PXY_R_KEYS_MISSING,         /* forwarded keys (--key-source) did not come within --key-wait */
	PXY_R__COUNT
};

const char *pxy_verdict_name(enum pxy_verdict v);
const char *pxy_outcome_name(enum pxy_outcome o);
const char *pxy_reason_name(enum pxy_reason r);

struct pxy_tap_counters;

struct pxy_tap_cfg {
	const struct pxy_identity *identity; /* the configured server certificate and key ... */
	const struct pxy_identity *identities; /* ... or several: the one whose certificate the server sends */
	size_t n_identities;
	struct pxy_engine *engine;
	struct pxy_tap_counters *counters;   /* the owning loop's counters; may be NULL */
	size_t max_hs_msg;   /* largest handshake message accepted (bytes) */
	size_t max_pending;  /* ciphertext bytes per direction waiting for keys or in the engine */
	size_t max_pending_total; /* the same over every tap sharing `counters` (0: no cap) */
	struct pxy_sessions *sessions; /* session cache for abbreviated handshakes; NULL: none */
	uint8_t shared_sessions;       /* the cache has a shared tier that answers later: a resumption
					* not yet known is waited for (up to 1 s) even after the connection ends */
	uint32_t passthrough; /* policy reasons (1u << PXY_R_*) that forward undecrypted instead of rejecting */
	struct pxy_keystore *keys;  /* secrets servers forward (--key-source): ECDHE and DHE decrypted too */
	uint32_t key_wait_ms;       /* how long a session waits for its forwarded secret (--key-wait) */
	uint8_t require_keys;       /* --require-keys: the server's first encrypted flight is held until the
				     * forwarded keys arrive and verify; else alert 40 and a reset both ways */
};

/** The policy reasons a connection may be passed through for instead of rejected. */
#define PXY_PASSTHROUGH_ABLE                                                                            \
	((1u << PXY_R_TLS13) | (1u << PXY_R_UNSUPPORTED_VERSION) | (1u << PXY_R_NON_RSA_KX) |          \
	 (1u << PXY_R_UNSUPPORTED_SUITE) | (1u << PXY_R_CERT_MISMATCH))

/** Parse "tls13,non-rsa-kx,..." or "all" or "none" into a mask; -1 with the bad name in why. */
int pxy_passthrough_parse(const char *list, uint32_t *mask, char *why, size_t why_len);

struct pxy_keystore;

struct pxy_tap_hooks {
	void *ctx;
	/* decrypted application data, in order, per direction */
	void (*plaintext)(void *ctx, enum pxy_dir d, const uint8_t *p, size_t n);
	/* master secret recovered and verified */
	void (*keylog)(void *ctx, const uint8_t client_random[32], const uint8_t ms[48]);
	/* TLS 1.3: the session's secrets, verified by the server's Finished, as RFC 9850 lines (more may
	 * follow: a server logs its client's application secret late); complete: both application
	 * secrets are out, what needs them can go */
	void (*keylog13)(void *ctx, const char *lines, size_t len, int complete);
	/* the verdict was decided (it may come from an engine result or pxy_tap_poke, outside any feed):
	 * the owner lets a held flight go, or refuses, at its next chance; may be NULL */
	void (*verdict)(void *ctx);
	/* after pxy_tap_finish(): every job has come back; the tap is freed when this returns */
	void (*done)(void *ctx);
};

/** What the tap learned; read by the connection log. */
struct pxy_tap_info {
	char sni[PXY_MAX_SNI + 1];
	uint16_t version; /* negotiated, 0 if unknown */
	uint16_t suite;   /* 0 if unknown */
	uint8_t has_suite;
	uint8_t ems, etm, resumed;
	uint8_t resumed_ticket; /* resumed: by the ticket the client offered (else by session ID) */
	uint8_t passthrough; /* forwarded undecrypted by policy (--passthrough) */
	uint8_t client_cert; /* client sent a non-empty Certificate */
	struct pxy_cert_info client; /* its leaf, when client_cert */
	uint8_t fin_ok[2];   /* Finished verified, per direction */
	enum pxy_verdict verdict;
	enum pxy_reason reason; /* first reason recorded */
	int error;              /* first protocol/engine error, 0 if none */
	uint8_t error_dir;
	uint8_t has_received_cert;
	struct pxy_cert_info received; /* server's leaf, when seen */
	const struct pxy_cert_info *expected; /* the configured certificate for this session: the one
					       * the server sent, else the one the SNI names; NULL if neither */
	uint64_t records[2];    /* records seen per direction */
	uint64_t decrypted[2];  /* application plaintext bytes per direction */
	uint64_t dropped[2];    /* records not inspected for lack of engine capacity */
	uint8_t alert[2][2];    /* last alert (level, description) seen per direction, if any */
	uint8_t has_alert[2];
	const char *missing; /* unsupported-suite: the bulk cipher this process lacks (its name), or NULL */
	uint8_t keys_forwarded;  /* the master secret came from the key source (ECDHE, DHE), or the TLS 1.3
				  * traffic secrets did */
	uint64_t key_wait_us;    /* from ClientKeyExchange (TLS 1.3: ServerHello) to the forwarded secret
				  * being there */
	uint8_t early_data;      /* TLS 1.3 0-RTT: 1 offered, 2 taken by the server (decrypted), 3 refused */
	uint8_t hello_retry;     /* TLS 1.3: the server sent a HelloRetryRequest */
	uint32_t key_updates[2]; /* TLS 1.3 KeyUpdate messages followed, per direction */
	uint32_t post_auth;      /* TLS 1.3 post-handshake client authentications, their Finished verified */
};

struct pxy_tap;

struct pxy_tap *pxy_tap_new(const struct pxy_tap_cfg *cfg, const struct pxy_tap_hooks *hooks);

/** Bytes forwarded (or about to be) in direction d. Never fails the connection by itself. */
void pxy_tap_feed(struct pxy_tap *t, enum pxy_dir d, const uint8_t *p, size_t n);

/** Direction d reached EOF (FIN or reset). */
void pxy_tap_eof(struct pxy_tap *t, enum pxy_dir d);

/** The io layer could not hold the server's flight within its limit. */
void pxy_tap_hold_overflow(struct pxy_tap *t);

enum pxy_verdict pxy_tap_verdict(const struct pxy_tap *t);

/** The record version to use for an alert sent towards the peer that receives direction d. */
uint16_t pxy_tap_alert_version(const struct pxy_tap *t, enum pxy_dir d);

const struct pxy_tap_info *pxy_tap_info(const struct pxy_tap *t);
enum pxy_outcome pxy_tap_outcome(const struct pxy_tap *t, enum pxy_reason *reason);

/**
 * The session cache may have learnt something (the shared tier answered), or
 * time passed: a resumption waiting for its session looks again, and gives up
 * after 1 s. A finished tap that was waiting may call hooks.done and go.
 */
void pxy_tap_poke(struct pxy_tap *t);

/** The handshake is over as far as timeouts go: both Finished seen, or the tap stopped looking. */
int pxy_tap_handshake_done(const struct pxy_tap *t);

/** Jobs of this tap still inside the engine. */
unsigned pxy_tap_jobs_inflight(const struct pxy_tap *t);

/** A job of some tap came back from the engine (job->owner is the tap). */
void pxy_tap_job_done(struct pxy_job *job);

/**
 * No more bytes will come (the connection closed): finish the jobs in
 * flight — the last records are still decrypted and the keys still verified
 * — then call hooks.done and free the tap. May call done before returning.
 * Returns 1 when it waits for the shared session tier, or for forwarded
 * secrets still within --key-wait, instead (then done has not been called;
 * the caller pokes it until it goes), else 0.
 */
int pxy_tap_finish(struct pxy_tap *t);

/** Abandon the tap: results still in the engine are discarded; freed when the last returns. */
void pxy_tap_close(struct pxy_tap *t);

/** The calling thread will run no more taps: free its pools of jobs and record buffers. */
void pxy_tap_thread_end(void);

/** Record a reason decided outside the tap (e.g. backend unreachable). */
void pxy_tap_set_reason(struct pxy_tap *t, enum pxy_reason r);

/* Tap counters, one set per io loop (each loop is one thread). */
struct pxy_tap_counters {
	uint64_t keys_verified, finished_mismatch, record_auth_fail, rsa_jobs;
	uint64_t resumed, resumed_unknown; /* abbreviated handshakes followed / not followed */
	uint64_t resumed_ticket;           /* of those followed, by ticket (the rest by session ID) */
	uint64_t renegotiations;           /* renegotiations followed (begun) */
	uint64_t sslv2_hellos;             /* ClientHellos in the SSLv2-compatible form taken */
	uint64_t keys_missing;             /* forwarded secrets that did not come within --key-wait */
	uint64_t tls13_sessions;           /* TLS 1.3 sessions followed with forwarded secrets */
	uint64_t key_updates;              /* TLS 1.3 KeyUpdate messages followed */
	uint64_t early_records;            /* TLS 1.3 0-RTT records: decrypted, or skipped as the server did */
	uint64_t records_by_bulk[PXY_BULK__COUNT][2]; /* records opened, by cipher: [0] software, [1] a device's kernel */
	uint64_t records_decrypted, records_dropped, plaintext_bytes;
	uint64_t protocol_errors;
	uint64_t pending_bytes; /* ciphertext now waiting for keys or in the engine, all taps */
	uint64_t verdicts[3];
	uint64_t reasons[PXY_R__COUNT];
	struct pxy_hist rsa_latency, record_latency; /* engine job submit -> completion */
};

#endif

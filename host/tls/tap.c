#include "tls/tap.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu_crypto.h"
#include "tls/keys.h"
#include "tls/keystore.h"
#include "tls/record.h"
#include "tls/suites.h"
#include "util/ct.h"
#include "util/util.h"

/* ---- names --------------------------------------------------------------- */

const char *pxy_verdict_name(enum pxy_verdict v)
{
	switch (v) {
	case PXY_V_PENDING: return "pending";
	case PXY_V_ALLOW: return "allow";
	case PXY_V_REJECT: return "reject";
	}
	return "?";
}

const char *pxy_outcome_name(enum pxy_outcome o)
{
	switch (o) {
	case PXY_O_DECRYPTED: return "decrypted";
	case PXY_O_PASSTHROUGH: return "passthrough";
	case PXY_O_REJECTED: return "rejected";
	case PXY_O_NOT_DECRYPTED: return "not-decrypted";
	}
	return "?";
}

static const char *const reason_names[PXY_R__COUNT] = {
	[PXY_R_NONE] = "-",
	[PXY_R_TLS13] = "tls13",
	[PXY_R_UNSUPPORTED_VERSION] = "unsupported-version",
	[PXY_R_NON_RSA_KX] = "non-rsa-kx",
	[PXY_R_UNSUPPORTED_SUITE] = "unsupported-suite",
	[PXY_R_CERT_MISMATCH] = "cert-mismatch",
	[PXY_R_NOT_TLS] = "not-tls",
	[PXY_R_CLIENT_PROTOCOL] = "client-protocol-error",
	[PXY_R_SERVER_PROTOCOL] = "server-protocol-error",
	[PXY_R_HANDSHAKE_TOO_LARGE] = "handshake-too-large",
	[PXY_R_SERVER_ALERT] = "server-alert",
	[PXY_R_CLIENT_ALERT] = "client-alert",
	[PXY_R_RESUMPTION_UNKNOWN] = "resumption-unknown",
	[PXY_R_FINISHED_MISMATCH] = "finished-mismatch",
	[PXY_R_RECORD_AUTH] = "record-auth-failed",
	[PXY_R_RENEGOTIATION] = "renegotiation",
	[PXY_R_ENGINE] = "engine-error",
	[PXY_R_INCOMPLETE] = "incomplete-handshake",
	[PXY_R_BACKEND_UNREACHABLE] = "backend-unreachable",
	[PXY_R_INTERNAL] = "internal-error",
	[PXY_R_HANDSHAKE_TIMEOUT] = "handshake-timeout",
	[PXY_R_IDLE_TIMEOUT] = "idle-timeout",
	[PXY_R_KEYS_MISSING] = "keys-missing",
};

const char *pxy_reason_name(enum pxy_reason r)
{
	return (unsigned)r < PXY_R__COUNT && reason_names[r] ? reason_names[r] : "?";
}

/* ---- the handshake as a table (RFC 5246 §7.3, RFC 5077 §3.1) -------------- */

struct hs_step {
	uint8_t dir;
	uint16_t msg;
	uint8_t optional;
};

struct hs_shape {
	const char *name;
	const struct hs_step *steps;
	size_t n;
};

#define C PXY_C2S
#define S PXY_S2C
static const struct hs_step full_steps[] = {
	{ C, PXY_HS_CLIENT_HELLO, 0 },
	{ S, PXY_HS_SERVER_HELLO, 0 },
	{ S, PXY_HS_CERTIFICATE, 0 },
	{ S, PXY_HS_CERTIFICATE_STATUS, 1 },
	{ S, PXY_HS_SERVER_KEY_EXCHANGE, 1 }, /* ECDHE, DHE: followed only with forwarded keys */
	{ S, PXY_HS_CERTIFICATE_REQUEST, 1 },
	{ S, PXY_HS_SERVER_HELLO_DONE, 0 },
	{ C, PXY_HS_CERTIFICATE, 1 },
	{ C, PXY_HS_CLIENT_KEY_EXCHANGE, 0 },
	{ C, PXY_HS_CERTIFICATE_VERIFY, 1 },
	{ C, PXY_HS_CCS, 0 },
	{ C, PXY_HS_FINISHED, 0 },
	{ S, PXY_HS_NEW_SESSION_TICKET, 1 },
	{ S, PXY_HS_CCS, 0 },
	{ S, PXY_HS_FINISHED, 0 },
};
static const struct hs_step resumed_steps[] = {
	{ C, PXY_HS_CLIENT_HELLO, 0 },
	{ S, PXY_HS_SERVER_HELLO, 0 },
	{ S, PXY_HS_NEW_SESSION_TICKET, 1 },
	{ S, PXY_HS_CCS, 0 },
	{ S, PXY_HS_FINISHED, 0 },
	{ C, PXY_HS_CCS, 0 },
	{ C, PXY_HS_FINISHED, 0 },
};
#undef C
#undef S

static const struct hs_shape shape_full = { "full", full_steps, PXY_ARRAY_LEN(full_steps) };
static const struct hs_shape shape_resumed = { "resumed", resumed_steps, PXY_ARRAY_LEN(resumed_steps) };
/* Both shapes start ClientHello, ServerHello; the server's next message picks one. */
#define HS_BRANCH_STEP 2

/* ---- state ---------------------------------------------------------------- */

enum fin_state { FIN_NONE = 0, FIN_RESERVED, FIN_RECEIVED, FIN_DONE };

struct tap_job {
	struct pxy_job job; /* first: the engine hands back &job */
	struct tap_job *next;
	uint8_t dir;
	uint8_t done;
	uint8_t fin; /* carries the direction's Finished */
	uint8_t key_iv; /* TLS 1.0 CBC, first record: its IV is the key block's */
	uint8_t epoch;  /* which keys: 0 the first handshake's, n the n-th renegotiation's */
	uint64_t arr;   /* arrival order over both directions */
	struct tap_job *local_next; /* opened in the tap (stream ciphers), waiting to be applied */
	size_t cost; /* ciphertext bytes counted against max_pending */
	uint8_t t13; /* a TLS 1.3 application record in the engine, under its own copy of the keys: */
	struct pxy_traffic_keys k13; /* a KeyUpdate applied meanwhile changes the direction's, not these */
};

/* key epochs kept: the first handshake and up to three renegotiations */
#define EPOCHS 4

/* TLS 1.3 (RFC 8446): a direction's keys, from the secrets its server forwards */
enum t13_phase { P13_NONE = 0, P13_EARLY, P13_HS, P13_AP };
enum t13_s_step { S13_EE = 0, S13_CERT, S13_CV, S13_FIN, S13_DONE };
enum t13_c_step { C13_START = 0, C13_CV, C13_FIN, C13_DONE };
enum t13_pha_step { PHA_CERT = 0, PHA_CV, PHA_FIN };
#define PHA_MAX_PENDING 8

struct t13_dir {
	uint8_t phase;     /* enum t13_phase: whose keys the records arriving now are under */
	uint8_t ready;     /* keys for the phase are in place */
	uint8_t step;      /* handshake progress: enum t13_s_step (server) or t13_c_step (client) */
	uint8_t skip_early; /* the server refused 0-RTT: records that do not open are its early data, skipped */
	uint8_t post_auth; /* client: post-handshake CertificateRequests not yet answered */
	uint8_t pha_step;  /* client: where its answer to one is (enum t13_pha_step) */
	uint8_t pha_check; /* that answer's Finished is verified (its request is in the transcript) */
	uint8_t slen;
	uint8_t secret[PXY_MAX_HASH]; /* the phase's traffic secret (a KeyUpdate moves it on) */
	uint8_t hs_secret[PXY_MAX_HASH]; /* the handshake traffic secret, kept for the key log */
	struct pxy_traffic_keys keys;
};

struct tap_dir {
	struct pxy_rec_rd rec;
	struct pxy_hs_rd hs;
	uint64_t seq;
	uint16_t last_version;
	uint8_t encrypted; /* ChangeCipherSpec seen */
	uint8_t fin_seen;  /* first encrypted record (the Finished) arrived */
	uint8_t fin_state;
	uint8_t fin_msg[PXY_HS_HDR_LEN + PXY_FINISHED_LEN];
	size_t fin_hole;   /* transcript offset reserved for this direction's Finished */
	size_t fin_prefix; /* transcript bytes that its verify_data covers */
	struct tap_job *wait_head, *wait_tail; /* waiting for keys */
	struct tap_job *fly_head, *fly_tail;   /* in the engine, oldest first */
	size_t queued_bytes;
	uint8_t cbc_iv[16]; /* TLS 1.0 CBC: the last ciphertext block so far (the next record's IV) */
	uint8_t cbc_chained;
	struct pxy_cpu_ctx *stream; /* a stream cipher's context: its keystream, record after record */
	uint8_t epoch;     /* keys of the records arriving now (a ChangeCipherSpec under keys moves it on) */
	uint8_t reneg_fin; /* the next record is a renegotiation's Finished */
};

struct pxy_tap {
	struct pxy_tap_cfg cfg;
	struct pxy_tap_hooks hooks;
	struct pxy_tap_info info;
	struct pxy_tap_counters *cnt;
	struct pxy_tap_counters own_cnt;
	struct tap_dir dir[2];
	const struct hs_shape *shape;
	size_t step;
	struct pxy_client_hello ch;
	struct pxy_server_hello sh;
	const struct pxy_suite *suite;
	const struct pxy_identity *id; /* the identity whose certificate the server sent */
	uint8_t have_ch, have_sh, cert_request;
	uint8_t c2s_unread; /* the client's first flight did not parse: it goes on unread, the server answers */
	uint8_t forwarded;  /* ECDHE/DHE: the master secret comes from the key source, not from RSA */
	uint8_t tls13;      /* a TLS 1.3 session followed with forwarded secrets */
	uint8_t t13_hrr;    /* a HelloRetryRequest went by: the second ClientHello, then the ServerHello */
	uint8_t t13_ch2;    /* that second ClientHello came */
	uint8_t t13_enc[2]; /* an encrypted record came after the ServerHello, per direction */
	uint8_t pass_open;  /* the verdict is still pending, but the server's bytes go on for now (a
			     * HelloRetryRequest; --require-keys in TLS 1.2 until the server's encrypted flight) */
	uint8_t hold_keys;  /* --require-keys: the verdict waits for the keys to verify */
	size_t t13_ch_len;  /* transcript bytes of the first ClientHello */
	uint16_t t13_logged; /* the secrets (1 << label) written to the key log */
	struct t13_dir t13[2];
	uint8_t keys_pending; /* a forwarded secret awaited since keys_since */
	uint64_t keys_since;
	struct tap_job *local_head, *local_tail; /* records opened here (stream ciphers), to apply after feed */
	/* an SSLv2-compatible ClientHello being gathered: its 2-byte header, then the message */
	uint8_t v2_hdr[3];
	uint8_t v2_hdr_len;
	uint8_t c2s_begun; /* the client's first byte has been seen (only it may open an SSLv2 hello) */
	uint8_t *v2;
	size_t v2_len, v2_need;
	uint8_t inspect;    /* still parsing */
	uint8_t decrypting; /* still decrypting */
	uint8_t epochs_ready; /* keys exist for epochs below this (0: none yet) */
	/* renegotiation (RFC 5746): a new handshake inside the encrypted records */
	uint8_t resume_pending; /* an abbreviated handshake whose session is not in the cache yet */
	uint64_t resume_since;
	uint8_t reneg;        /* one is under way */
	uint8_t reneg_epoch;  /* the epoch its keys will be */
	uint8_t reneg_fin_ok[2];
	uint8_t prev_sid[32], prev_sid_len; /* the session in force when the renegotiation began */
	uint16_t prev_suite, prev_version;
	uint8_t prev_ems;
	uint8_t ordered;      /* from the first renegotiation on: apply records in arrival order, both ways */
	uint64_t arr_next;
	uint8_t keylogged;
	uint8_t closed;    /* abandoned: results are discarded */
	uint8_t finishing; /* no more input: finish the jobs, then hooks.done */
	unsigned inflight;
	uint8_t *tr; /* handshake transcript */
	size_t tr_len, tr_cap, tr_max;
	/* TLS 1.3 post-handshake client authentication (RFC 8446 §4.6.2), when the ClientHello offered it:
	 * the transcript is kept through the client's Finished (pha_base bytes), the Handshake Context of
	 * every answer; the server's requests wait in pha_q (raw messages, in order) for their answers */
	size_t pha_base;
	uint8_t *pha_q;
	size_t pha_q_len;
	uint8_t session_hash[PXY_MAX_HASH];
	size_t session_hash_len;
	/* the session cache keys this handshake may be found by, or stored under */
	uint8_t offered_ticket[PXY_SESSION_KEY_LEN]; /* the ClientHello's ticket */
	uint8_t issued_ticket[PXY_SESSION_KEY_LEN];  /* NewSessionTicket's */
	uint32_t issued_lifetime;
	uint8_t has_offered_ticket, has_issued_ticket, cached_sid, cached_ticket;
	uint8_t ms[PXY_MASTER_LEN];
	struct pxy_traffic_keys keys[EPOCHS][2]; /* per epoch: [C2S] client_write, [S2C] server_write */
};

static void set_reason(struct pxy_tap *t, enum pxy_reason r)
{
	if (r != PXY_R_NONE && t->info.reason == PXY_R_NONE) {
		t->info.reason = r;
		t->cnt->reasons[r]++;
	}
}

void pxy_tap_set_reason(struct pxy_tap *t, enum pxy_reason r)
{
	set_reason(t, r);
}

static void set_verdict(struct pxy_tap *t, enum pxy_verdict v)
{
	if (t->info.verdict != PXY_V_PENDING)
		return;
	t->info.verdict = v;
	t->cnt->verdicts[v]++;
	if (t->hooks.verdict && !t->closed)
		t->hooks.verdict(t->hooks.ctx);
}

/*
 * Jobs come from a small per-thread pool: a bulk transfer makes one per
 * record, and a record job needs only its header and record fields set (the
 * union's RSA part is over a kilobyte). Under AddressSanitizer the pool is
 * off, so that every use after free is seen.
 */
#if defined(__SANITIZE_ADDRESS__)
#define JOB_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JOB_POOL 0
#endif
#endif
#ifndef JOB_POOL
#define JOB_POOL 128
#endif

#if JOB_POOL
static _Thread_local struct tap_job *job_pool[JOB_POOL];
static _Thread_local unsigned job_pool_n;
#endif

/* A job of the given type owned by t; the fields a job of that type reads are zero. */
static struct tap_job *job_new(struct pxy_tap *t, uint32_t type)
{
	struct tap_job *j = NULL;

#if JOB_POOL
	if (type == PXY_JOB_RECORD_OPEN && job_pool_n) {
		j = job_pool[--job_pool_n];
		memset(&j->job, 0, offsetof(struct pxy_job, u));
		memset(&j->job.u.rec, 0, sizeof(j->job.u.rec));
		memset((uint8_t *)j + offsetof(struct tap_job, next), 0, sizeof(*j) - offsetof(struct tap_job, next));
	}
#endif
	if (!j && !(j = calloc(1, sizeof(*j))))
		return NULL;
	j->job.type = type;
	j->job.owner = t;
	j->job.done = pxy_tap_job_done;
	return j;
}

void pxy_tap_thread_end(void)
{
#if JOB_POOL
	while (job_pool_n)
		free(job_pool[--job_pool_n]);
#endif
	pxy_recbuf_pool_free();
}

static void free_job(struct tap_job *j)
{
	if (j->job.type == PXY_JOB_RECORD_OPEN) {
		/* a decrypted record: no plaintext left in the pool or the heap (a borrowed plaintext
		 * never came here: the buffer holds ciphertext) */
		if (j->job.u.rec.rec && !j->job.u.rec.pt_ext)
			pxy_wipe(j->job.u.rec.rec, j->job.u.rec.rec_cap);
		pxy_recbuf_put(j->job.u.rec.rec);
		if (j->t13)
			pxy_wipe(&j->k13, sizeof(j->k13));
	}
	else
		pxy_wipe(j->job.u.rsa.pms, sizeof(j->job.u.rsa.pms));
#if JOB_POOL
	if (job_pool_n < JOB_POOL) {
		job_pool[job_pool_n++] = j;
		return;
	}
#endif
	free(j);
}

static void free_waiting(struct pxy_tap *t, struct tap_dir *td)
{
	while (td->wait_head) {
		struct tap_job *j = td->wait_head;
		td->wait_head = j->next;
		td->queued_bytes -= j->cost;
		t->cnt->pending_bytes -= j->cost;
		free_job(j);
	}
	td->wait_tail = NULL;
}

static void free_transcript(struct pxy_tap *t)
{
	free(t->tr);
	t->tr = NULL;
	t->tr_len = t->tr_cap = t->pha_base = 0;
	free(t->pha_q);
	t->pha_q = NULL;
	t->pha_q_len = 0;
}

/* Stop decrypting; forwarding is not affected. Jobs in flight are dropped as they return. */
static void stop_decrypt(struct pxy_tap *t, enum pxy_reason r)
{
	set_reason(t, r);
	/* a verdict that waited for the keys (TLS 1.3's encrypted certificate, --require-keys) is
	 * decided now: with --require-keys no keys means no session, else forwarding goes on */
	if ((t->tls13 || t->hold_keys) && t->info.verdict == PXY_V_PENDING && !t->closed) {
		t->pass_open = 0;
		set_verdict(t, t->cfg.require_keys ? PXY_V_REJECT : PXY_V_ALLOW);
	}
	t->decrypting = 0;
	free_waiting(t, &t->dir[0]);
	free_waiting(t, &t->dir[1]);
}

static void stop_inspect(struct pxy_tap *t, enum pxy_reason r)
{
	stop_decrypt(t, r);
	t->inspect = 0;
	free_transcript(t);
}

/* A Finished did not verify, or a secret does not fit the session: the keys (or the transcript) are not
 * the endpoints'. Counted; decryption stops, forwarding goes on. */
static void keys_wrong(struct pxy_tap *t)
{
	t->cnt->finished_mismatch++;
	stop_decrypt(t, PXY_R_FINISHED_MISMATCH);
}

/* A parse or protocol failure in direction d. Before the verdict the proxy
 * cannot vouch for the session and rejects it; after, it only stops looking. */
static void tap_fail(struct pxy_tap *t, enum pxy_dir d, int err)
{
	enum pxy_reason r;

	if (!t->info.error) {
		t->info.error = err;
		t->info.error_dir = (uint8_t)d;
	}
	t->cnt->protocol_errors++;
	if (err == PXY_E_NOT_TLS && d == PXY_C2S)
		r = PXY_R_NOT_TLS;
	else if (err == PXY_E_HS_TOO_LARGE)
		r = PXY_R_HANDSHAKE_TOO_LARGE;
	else if (pxy_err_class(err) == PXY_EC_INTERNAL)
		r = PXY_R_INTERNAL;
	else
		r = d == PXY_C2S ? PXY_R_CLIENT_PROTOCOL : PXY_R_SERVER_PROTOCOL;
	set_reason(t, r);
	/* Before the server has answered, a first flight the proxy cannot read is the
	 * server's to judge: it goes on unchanged (the loop forwards the client's bytes
	 * whatever the verdict), the proxy stops reading it and waits for the answer
	 * (server_answers) */
	if (d == PXY_C2S && !t->have_sh && t->info.verdict == PXY_V_PENDING && r != PXY_R_INTERNAL) {
		t->c2s_unread = 1;
		stop_decrypt(t, r);
		free_transcript(t);
		return;
	}
	/* the server's answer to such a flight is not TLS the proxy reads (an HTTP error
	 * page, say): it goes to the client as it is */
	if (d == PXY_S2C && t->c2s_unread && t->info.verdict == PXY_V_PENDING) {
		set_verdict(t, PXY_V_ALLOW);
		stop_inspect(t, r);
		return;
	}
	set_verdict(t, PXY_V_REJECT);
	stop_inspect(t, r);
}

/*
 * The server's first record after a client flight the proxy could not read
 * (c2s_unread). An alert goes to the client as it is (on_alert lets it
 * through; the connection keeps the client's error as its reason and logs the
 * server's alert). A handshake means the server went on with a session whose
 * hello the proxy did not understand and so cannot decrypt: rejected as any
 * client protocol error is. Anything else goes through as it is.
 */
static void server_answers(struct pxy_tap *t, const struct pxy_record *r)
{
	struct pxy_cur body = pxy_cur_make(r->buf ? r->buf + PXY_TLS_HDR_LEN : NULL, r->h.len);

	if (r->h.type == PXY_CT_ALERT) {
		uint8_t level, desc;

		if (pxy_cur_u8(&body, &level) == 0 && pxy_cur_u8(&body, &desc) == 0) {
			t->info.alert[PXY_S2C][0] = level;
			t->info.alert[PXY_S2C][1] = desc;
			t->info.has_alert[PXY_S2C] = 1;
		}
		set_verdict(t, PXY_V_ALLOW);
	} else if (r->h.type == PXY_CT_HANDSHAKE) {
		set_verdict(t, PXY_V_REJECT);
	} else {
		set_verdict(t, PXY_V_ALLOW);
	}
	stop_inspect(t, t->info.reason);
}

static int tr_append(struct pxy_tap *t, const uint8_t *p, size_t n)
{
	if (t->tr_len + n > t->tr_max)
		return PXY_E_HS_TOO_LARGE;
	if (t->tr_len + n > t->tr_cap) {
		size_t cap = t->tr_cap ? t->tr_cap : 4096;
		uint8_t *nb;

		while (cap < t->tr_len + n)
			cap *= 2;
		nb = realloc(t->tr, cap);
		if (!nb)
			return PXY_E_NOMEM;
		t->tr = nb;
		t->tr_cap = cap;
	}
	if (p)
		memcpy(t->tr + t->tr_len, p, n);
	else
		memset(t->tr + t->tr_len, 0, n);
	t->tr_len += n;
	return PXY_OK;
}

/* Is message `msg` from `d` allowed now? Advances the table if so. */
static int hs_expect(struct pxy_tap *t, enum pxy_dir d, unsigned msg)
{
	const struct hs_shape *sh = t->shape;

	for (size_t i = t->step; i < sh->n; i++) {
		if (sh->steps[i].dir == d && sh->steps[i].msg == msg) {
			t->step = i + 1;
			return PXY_OK;
		}
		if (!sh->steps[i].optional)
			break;
	}
	/* the abbreviated handshake leaves the full one right after ServerHello */
	if (sh == &shape_full && t->step == HS_BRANCH_STEP && d == PXY_S2C &&
	    (msg == PXY_HS_NEW_SESSION_TICKET || msg == PXY_HS_CCS)) {
		t->shape = &shape_resumed;
		return hs_expect(t, d, msg);
	}
	return PXY_E_UNEXPECTED_MSG;
}

/* ---- the policy verdict -------------------------------------------------- */

/* The configured identity whose certificate is this leaf, matched by SHA-256.
 * Then t->info.received is that identity's description (the same bytes), and
 * the leaf is not parsed at all. Otherwise it is described from its DER for
 * the reject line, and the SNI picks the certificate that line names as
 * expected: the identity whose certificate names that host (SAN or CN). All
 * of it is public data: memcmp is fine. */
static const struct pxy_identity *find_identity(struct pxy_tap *t, const struct pxy_certificate *cert)
{
	const struct pxy_identity *ids = t->cfg.n_identities ? t->cfg.identities : t->cfg.identity;
	size_t n = t->cfg.n_identities ? t->cfg.n_identities : (t->cfg.identity != NULL);

	t->info.expected = NULL;
	if (cert && cert->leaf) {
		uint8_t sha[32];

		pxy_cert_sha256(cert->leaf, cert->leaf_len, sha);
		for (size_t i = 0; i < n; i++)
			if (!memcmp(ids[i].info.sha256, sha, 32)) {
				t->info.received = ids[i].info;
				t->info.has_received_cert = 1;
				t->info.expected = &ids[i].info;
				return &ids[i];
			}
		pxy_cert_describe(cert->leaf, cert->leaf_len, &t->info.received);
		t->info.has_received_cert = 1;
	}
	for (size_t i = 0; i < n && t->ch.sni[0]; i++)
		if (pxy_identity_names_host(&ids[i], t->ch.sni)) {
			t->info.expected = &ids[i].info;
			break;
		}
	return NULL;
}

/*
 * A policy refusal: handshake_failure and a reset both ways, or, with
 * --passthrough naming the reason, the session forwarded untouched (BIG-IP's
 * "proxy SSL passthrough"). After the verdict (TLS 1.3 secrets that came
 * late) it can only stop decryption.
 */
static void refuse(struct pxy_tap *t, enum pxy_reason r)
{
	set_reason(t, r);
	if (t->info.verdict == PXY_V_PENDING) {
		t->pass_open = 0;
		if (t->cfg.passthrough & (1u << r)) {
			t->info.passthrough = 1;
			set_verdict(t, PXY_V_ALLOW);
		} else {
			set_verdict(t, PXY_V_REJECT);
		}
	}
	stop_inspect(t, r);
}

/* RFC 5246 §7.4.2: the server's leaf must be exactly a configured certificate;
 * its key decrypts the session. Checks in order of what the user most needs
 * to hear first. */
static void judge(struct pxy_tap *t, const struct pxy_certificate *cert)
{
	const struct pxy_identity *id;
	const struct pxy_suite *s = pxy_suite_find(t->sh.suite);
	enum pxy_reason r = PXY_R_NONE;

	id = find_identity(t, cert);
	if (t->sh.version == PXY_TLS13 || t->sh.hello_retry)
		r = PXY_R_TLS13;
	else if (!s)
		r = PXY_R_UNSUPPORTED_SUITE;
	else if (s->kx != PXY_KX_RSA && !(t->cfg.keys && pxy_suite_forwardable(s)))
		r = PXY_R_NON_RSA_KX;
	else if (t->sh.version < PXY_TLS10 || t->sh.version > PXY_TLS12)
		r = PXY_R_UNSUPPORTED_VERSION;
	else if (!(s->kx == PXY_KX_RSA ? pxy_suite_decryptable(s, t->sh.version)
				      : pxy_suite_decryptable_forwarded(s, t->sh.version)) ||
		 t->sh.compression != 0) {
		r = PXY_R_UNSUPPORTED_SUITE;
		/* a cipher the table knows but this OpenSSL does not provide: the reject line names it */
		if (s->bulk != PXY_BULK_NONE && !pxy_bulk_available(s->bulk, NULL))
			t->info.missing = pxy_bulk_desc(s->bulk)->name;
	}
	else if (!id)
		r = PXY_R_CERT_MISMATCH;

	if (r != PXY_R_NONE) {
		refuse(t, r);
		return;
	}
	t->suite = s;
	t->id = id;
	t->decrypting = 1;
	t->forwarded = s->kx != PXY_KX_RSA;
	if (t->forwarded && t->cfg.require_keys) {
		/* --require-keys: the handshake goes on, the server's encrypted flight waits for the keys */
		t->hold_keys = 1;
		t->pass_open = 1;
		return;
	}
	set_verdict(t, PXY_V_ALLOW);
}

/* ---- abbreviated handshakes (RFC 5246 §7.3, RFC 5077 §3.1) ------------------- */

/* The session an abbreviated handshake resumes: by the offered ticket, else the echoed ID. */
static int lookup_session(struct pxy_tap *t, struct pxy_session *s)
{
	uint8_t key[PXY_SESSION_KEY_LEN];
	uint64_t now = pxy_now_ns();
	int found = 0, by_ticket;

	if (t->cfg.sessions && t->has_offered_ticket)
		found = pxy_sessions_get(t->cfg.sessions, t->offered_ticket, s, now);
	by_ticket = found;
	if (!found && t->cfg.sessions && t->sh.sid_len && t->sh.sid_len == t->ch.sid_len &&
	    !memcmp(t->sh.sid, t->ch.sid, t->sh.sid_len)) {
		pxy_session_key(PXY_SESS_ID, t->sh.sid, t->sh.sid_len, key);
		found = pxy_sessions_get(t->cfg.sessions, key, s, now);
	}
	/* by the ticket when that found it, or when nothing did and the client offered one */
	t->info.resumed_ticket = by_ticket || (!found && t->has_offered_ticket);
	return found;
}

static void submit_waiting(struct pxy_tap *t, enum pxy_dir d);

/* how long a resumption may wait for the session it resumes to be verified,
 * and with a shared store, for its answer (a round trip to Redis under load) */
#define RESUME_WAIT_NS 1000000000ull
#define RESUME_WAIT_SHARED_NS 3000000000ull

/*
 * Epoch e's keys from the session an abbreviated handshake resumes: the one
 * the cache finds, else *in_force (when that is the session resumed). It must
 * be the same suite, version and EMS setting (RFC 7627 §5.3); the keys come
 * from its master secret and the new randoms. 1 when they are in place.
 */
static int keys_from_session(struct pxy_tap *t, unsigned e, const struct pxy_session *in_force)
{
	struct pxy_session s;
	const struct pxy_suite *suite = pxy_suite_find(t->sh.suite);
	int found = lookup_session(t, &s), ok;

	if (!found && in_force) {
		s = *in_force;
		found = 1;
	}
	ok = found && suite && s.suite == t->sh.suite && s.version == t->sh.version && s.ems == t->sh.ems &&
	     pxy_keys_traffic(suite, t->sh.version, t->sh.etm, s.ms, t->ch.random, t->sh.random,
			      &t->keys[e][PXY_C2S], &t->keys[e][PXY_S2C]) == PXY_OK;
	if (ok) {
		memcpy(t->ms, s.ms, sizeof(t->ms));
		t->suite = suite;
		/* the client certificate of the session (not sent again on resumption) */
		t->info.client_cert = s.has_client;
		if (s.has_client)
			t->info.client = s.client;
	}
	pxy_wipe(&s, sizeof(s));
	return ok;
}

/* Find the resumed session now; 1 when the keys are in place. */
static int resume_keys(struct pxy_tap *t)
{
	if (!keys_from_session(t, 0, NULL))
		return 0;
	t->epochs_ready = 1;
	t->resume_pending = 0;
	t->cnt->resumed++;
	t->cnt->resumed_ticket += t->info.resumed_ticket;
	return 1;
}

/*
 * The session is not (yet) in the cache. A client that resumes at once may be
 * ahead of the proxy still verifying the first connection's keys, so the
 * lookup is tried again as records arrive, for up to a second; meanwhile the
 * records wait for keys. Then (or at the end of the connection) it gives up:
 * forwarded, not decrypted.
 */
static void retry_resume(struct pxy_tap *t, int last)
{
	if (!t->resume_pending || !t->decrypting)
		return;
	if (resume_keys(t)) {
		submit_waiting(t, PXY_C2S);
		submit_waiting(t, PXY_S2C);
	} else if (last || pxy_now_ns() - t->resume_since >
				   (t->cfg.shared_sessions ? RESUME_WAIT_SHARED_NS : RESUME_WAIT_NS)) {
		t->resume_pending = 0;
		t->cnt->resumed_unknown++;
		stop_inspect(t, PXY_R_RESUMPTION_UNKNOWN);
	}
}

/*
 * The server answered with an abbreviated handshake. Find the session by the
 * ticket the client offered, else by the session ID the server echoed; it
 * must be the same suite, version and EMS setting (RFC 7627 §5.3). Then the
 * keys come from the cached master secret and the new randoms, and both
 * Finished messages verify them as in a full handshake. Returns 1 when
 * decrypting, 0 when the session is unknown (forwarded, not decrypted).
 */
static int resume(struct pxy_tap *t)
{
	const struct pxy_suite *suite = pxy_suite_find(t->sh.suite);

	t->info.resumed = 1;
	t->info.resumed_ticket = t->has_offered_ticket; /* until the lookup says how */
	set_verdict(t, PXY_V_ALLOW);
	if (!suite ||
	    !(pxy_suite_decryptable(suite, t->sh.version) ||
	      (t->cfg.keys && pxy_suite_decryptable_forwarded(suite, t->sh.version))) ||
	    !t->cfg.sessions) {
		t->cnt->resumed_unknown++;
		stop_inspect(t, PXY_R_RESUMPTION_UNKNOWN);
		return 0;
	}
	t->suite = suite;
	t->decrypting = 1;
	if (!resume_keys(t)) {
		t->resume_pending = 1;
		t->resume_since = pxy_now_ns();
	}
	return 1;
}

/*
 * A Finished verified the keys: keep the session for the handshakes that
 * resume it, under its session ID, and under its ticket once the server has
 * issued one (NewSessionTicket comes after the client's Finished). Stored as
 * soon as the first Finished verifies: a client may reconnect and resume
 * before the proxy has seen the server's.
 */
static void cache_session(struct pxy_tap *t)
{
	struct pxy_session s;
	uint8_t key[PXY_SESSION_KEY_LEN];
	uint64_t now = pxy_now_ns();

	if (!t->cfg.sessions || !t->decrypting ||
	    ((t->cached_sid || !t->sh.sid_len) && (t->cached_ticket || !t->has_issued_ticket)))
		return;
	memset(&s, 0, sizeof(s));
	memcpy(s.ms, t->ms, sizeof(s.ms));
	s.version = t->sh.version;
	s.suite = t->sh.suite;
	s.ems = t->sh.ems;
	s.has_client = t->info.client_cert;
	if (s.has_client)
		s.client = t->info.client;
	if (t->sh.sid_len && !t->cached_sid) {
		pxy_session_key(PXY_SESS_ID, t->sh.sid, t->sh.sid_len, key);
		pxy_sessions_put(t->cfg.sessions, key, &s, 0, now);
		t->cached_sid = 1;
	}
	if (t->has_issued_ticket && !t->cached_ticket) {
		pxy_sessions_put(t->cfg.sessions, t->issued_ticket, &s, t->issued_lifetime, now);
		t->cached_ticket = 1;
	}
	pxy_wipe(&s, sizeof(s));
}

/* The keys of the handshake now going on were verified by a Finished. */
static int keys_verified(const struct pxy_tap *t)
{
	return t->reneg ? t->reneg_fin_ok[0] | t->reneg_fin_ok[1] : t->info.fin_ok[0] | t->info.fin_ok[1];
}

/*
 * TLS 1.0 CBC chains IVs at arrival, with the record layout of the session in
 * force then; a renegotiation that changes that layout (MAC size, EtM, cipher)
 * under TLS 1.0 is not followed.
 */
static int epoch_compatible(const struct pxy_tap *t, unsigned e)
{
	const struct pxy_traffic_keys *a, *b;

	if (e == 0)
		return 1;
	a = &t->keys[e - 1][PXY_C2S];
	b = &t->keys[e][PXY_C2S];
	return b->version != PXY_TLS10 || a->version != PXY_TLS10 ||
	       (a->bulk == b->bulk && a->mac == b->mac && a->etm == b->etm);
}

/* ---- engine jobs ---------------------------------------------------------- */

static void submit_rec(struct pxy_tap *t, enum pxy_dir d, struct tap_job *j)
{
	struct tap_dir *td = &t->dir[d];
	int r;

	j->job.u.rec.keys = &t->keys[j->epoch][d];
	if (j->key_iv)
		memcpy(j->job.u.rec.iv, t->keys[j->epoch][d].iv, sizeof(j->job.u.rec.iv));
	j->next = NULL;
	if (pxy_bulk_desc(j->job.u.rec.keys->bulk)->kind == PXY_BK_STREAM) {
		/* A stream cipher's keystream runs on across the direction's records: no engine could
		 * take them out of order. Opened here, as they arrive, on the direction's own context;
		 * applied once the feed that brought them is done (as an engine's results are). */
		if (!td->stream && !(td->stream = pxy_cpu_ctx_new())) {
			r = PXY_E_NOMEM;
		} else {
			j->job.submit_ns = pxy_now_ns();
			j->job.status = pxy_cpu_record_open(td->stream, &j->job.u.rec);
			j->job.completed = 1;
			if (t->local_tail)
				t->local_tail->local_next = j;
			else
				t->local_head = j;
			t->local_tail = j;
			r = PXY_OK;
		}
	} else {
		r = pxy_engine_submit(t->cfg.engine, &j->job);
	}
	if (r < 0) {
		/* engine saturated: this record goes uninspected; forwarding is unaffected */
		t->info.dropped[d]++;
		t->cnt->records_dropped++;
		td->queued_bytes -= j->cost;
		t->cnt->pending_bytes -= j->cost;
		if (j->fin)
			stop_decrypt(t, PXY_R_ENGINE);
		free_job(j);
		return;
	}
	t->inflight++;
	if (td->fly_tail)
		td->fly_tail->next = j;
	else
		td->fly_head = j;
	td->fly_tail = j;
}

static void submit_waiting(struct pxy_tap *t, enum pxy_dir d)
{
	struct tap_dir *td = &t->dir[d];

	while (td->wait_head && t->decrypting && td->wait_head->epoch < t->epochs_ready) {
		struct tap_job *j = td->wait_head;
		td->wait_head = j->next;
		if (!td->wait_head)
			td->wait_tail = NULL;
		submit_rec(t, d, j);
	}
}

static void start_rsa(struct pxy_tap *t, const uint8_t *enc, size_t len)
{
	struct tap_job *j;
	int r;

	if (!t->cfg.engine || !t->id || !t->id->rsa) {
		stop_decrypt(t, PXY_R_ENGINE);
		return;
	}
	j = job_new(t, PXY_JOB_RSA_DECRYPT);
	if (!j) {
		stop_decrypt(t, PXY_R_INTERNAL);
		return;
	}
	j->job.u.rsa.key_id = t->id->key_id;
	j->job.u.rsa.client_version = t->ch.version;
	/* A wrong length is public; the engine answers it like a bad padding. */
	if (len <= PXY_RSA_MAX_BYTES) {
		memcpy(j->job.u.rsa.in, enc, len);
		j->job.u.rsa.in_len = (uint16_t)len;
	}
	r = pxy_engine_submit(t->cfg.engine, &j->job);
	if (r < 0) {
		free_job(j);
		stop_decrypt(t, PXY_R_ENGINE);
		return;
	}
	t->cnt->rsa_jobs++;
	t->inflight++;
}

static void on_rsa_done(struct pxy_tap *t, struct tap_job *j)
{
	uint8_t prf, e;
	int r;

	if (t->closed || !t->decrypting)
		return;
	if (j->job.status < 0) {
		stop_decrypt(t, PXY_R_ENGINE);
		return;
	}
	prf = PXY_PRF_FOR(t->suite->prf, t->sh.version);
	/* RFC 7627 §5.2: EMS is in force when the server echoed the extension */
	if (t->sh.ems)
		r = pxy_keys_master_ems(prf, j->job.u.rsa.pms, t->session_hash, t->session_hash_len, t->ms);
	else
		r = pxy_keys_master(prf, j->job.u.rsa.pms, t->ch.random, t->sh.random, t->ms);
	/* a renegotiation's keys are the next epoch's; the records under the old ones go on */
	e = t->reneg ? t->reneg_epoch : 0;
	if (r == PXY_OK)
		r = pxy_keys_traffic(t->suite, t->sh.version, t->sh.etm, t->ms, t->ch.random, t->sh.random,
				     &t->keys[e][PXY_C2S], &t->keys[e][PXY_S2C]);
	if (r < 0) {
		stop_decrypt(t, PXY_R_INTERNAL);
		return;
	}
	if (!epoch_compatible(t, e)) {
		stop_decrypt(t, PXY_R_RENEGOTIATION);
		return;
	}
	t->epochs_ready = (uint8_t)(e + 1);
	submit_waiting(t, PXY_C2S);
	submit_waiting(t, PXY_S2C);
}

/* ---- Finished (RFC 5246 §7.4.9) -------------------------------------------- */

/* Verify each received Finished once every earlier Finished it covers is known. */
static void try_verify(struct pxy_tap *t)
{
	for (int d = 0; d < 2 && t->decrypting; d++) {
		struct tap_dir *td = &t->dir[d], *other = &t->dir[!d];
		uint8_t hash[PXY_MAX_HASH], expect[PXY_FINISHED_LEN];
		size_t hlen;
		uint32_t ok;

		if (td->fin_state != FIN_RECEIVED)
			continue;
		if (other->fin_state == FIN_RESERVED && other->fin_hole < td->fin_prefix)
			continue; /* covers the other Finished, still being decrypted */
		if (pxy_transcript_hash(PXY_PRF_FOR(t->suite->prf, t->sh.version), t->tr, td->fin_prefix, hash,
					&hlen) < 0 ||
		    pxy_keys_finished(PXY_PRF_FOR(t->suite->prf, t->sh.version), t->ms, d == PXY_C2S, hash, hlen,
				      expect) < 0) {
			stop_decrypt(t, PXY_R_INTERNAL);
			return;
		}
		ok = pxy_ct_memeq(expect, td->fin_msg + PXY_HS_HDR_LEN, PXY_FINISHED_LEN);
		pxy_wipe(expect, sizeof(expect));
		td->fin_state = FIN_DONE;
		if (!ok) {
			keys_wrong(t);
			return;
		}
		t->info.fin_ok[d] = 1;
		if (t->hold_keys && t->info.verdict == PXY_V_PENDING) {
			/* --require-keys: the keys verified, the server's encrypted flight goes on */
			t->pass_open = 0;
			set_verdict(t, PXY_V_ALLOW);
		}
		cache_session(t);
		if (!t->keylogged) {
			t->keylogged = 1;
			t->cnt->keys_verified++;
			if (t->hooks.keylog)
				t->hooks.keylog(t->hooks.ctx, t->ch.random, t->ms);
		}
	}
	if (t->dir[0].fin_state == FIN_DONE && t->dir[1].fin_state == FIN_DONE)
		free_transcript(t); /* handshake over: the transcript is no longer needed */
}

/* ---- handshake messages ---------------------------------------------------- */

static void start13(struct pxy_tap *t);
static int hrr13(struct pxy_tap *t);
static int on_client_hello2(struct pxy_tap *t, const struct pxy_hs_msg *m);
static void t13_retry(struct pxy_tap *t, int last);
static void t13_apply(struct pxy_tap *t, enum pxy_dir d, const struct pxy_rec_job *rj);
static void t13_bad_record(struct pxy_tap *t, enum pxy_dir d);
static void t13_pump(struct pxy_tap *t, enum pxy_dir d);

static int on_client_hello(struct pxy_tap *t, struct pxy_cur body)
{
	PXY_TRY(pxy_hs_parse_client_hello(body, &t->ch));
	t->have_ch = 1;
	if (t->ch.ticket_len) {
		pxy_session_key(PXY_SESS_TICKET, t->ch.ticket_data, t->ch.ticket_len, t->offered_ticket);
		t->has_offered_ticket = 1;
	}
	t->ch.ticket_data = NULL; /* it pointed into the message */
	memcpy(t->info.sni, t->ch.sni, sizeof(t->info.sni));
	t->t13_ch_len = t->tr_len; /* a HelloRetryRequest replaces it with its hash */
	t->info.early_data = t->ch.offers_tls13 && t->ch.early_data;
	return PXY_OK;
}

static int on_server_hello(struct pxy_tap *t, struct pxy_cur body)
{
	PXY_TRY(pxy_hs_parse_server_hello(body, &t->sh));
	t->have_sh = 1;
	t->info.version = t->sh.version;
	t->info.suite = t->sh.suite;
	t->info.has_suite = 1;
	t->info.ems = t->sh.ems;
	t->info.etm = t->sh.etm;
	/* 0-RTT records kept for a TLS 1.3 answer that did not come: the server skips them, so do we */
	if (t->info.early_data && !(t->sh.version == PXY_TLS13 && t->cfg.keys)) {
		free_waiting(t, &t->dir[PXY_C2S]);
		t->info.early_data = 3;
	}
	/* RFC 5246 §7.4.1.3: a session ID echoed from the ClientHello means resumption */
	if (t->sh.sid_len && t->sh.sid_len == t->ch.sid_len && !memcmp(t->sh.sid, t->ch.sid, t->sh.sid_len))
		t->shape = &shape_resumed;
	/* TLS 1.3 encrypts the certificate: without forwarded secrets nothing more to wait for; with them,
	 * the session is followed through its encrypted handshake */
	if (t->sh.version == PXY_TLS13 || t->sh.hello_retry) {
		if (!t->cfg.keys || (t->sh.hello_retry && t->sh.version != PXY_TLS13))
			judge(t, NULL);
		else if (t->sh.hello_retry)
			return hrr13(t);
		else
			start13(t);
	} else if (t->t13_hrr) {
		return PXY_E_ILLEGAL_PARAM; /* RFC 8446 §4.1.4: the version may not change after a HelloRetryRequest */
	}
	return PXY_OK;
}

/*
 * ECDHE, DHE: the master secret is the one the server forwarded for this
 * client random (RFC 9850 CLIENT_RANDOM, EMS or not). Then the traffic keys,
 * as after an RSA decryption. 1 when in force, 0 when not there yet.
 */
static int forwarded_keys(struct pxy_tap *t)
{
	uint8_t e = t->reneg ? t->reneg_epoch : 0;
	int r;

	pxy_keystore_refresh(t->cfg.keys, pxy_now_ns());
	if (!pxy_keystore_master(t->cfg.keys, t->ch.random, t->ms)) {
		pxy_keystore_want(t->cfg.keys, t->ch.random, PXY_KL_CLIENT_RANDOM);
		return 0;
	}
	t->keys_pending = 0;
	t->info.keys_forwarded = 1;
	t->info.key_wait_us = (pxy_now_ns() - t->keys_since) / 1000;
	r = pxy_keys_traffic(t->suite, t->sh.version, t->sh.etm, t->ms, t->ch.random, t->sh.random,
			     &t->keys[e][PXY_C2S], &t->keys[e][PXY_S2C]);
	if (r < 0) {
		stop_decrypt(t, PXY_R_INTERNAL);
		return 1;
	}
	if (!epoch_compatible(t, e)) {
		stop_decrypt(t, PXY_R_RENEGOTIATION);
		return 1;
	}
	t->epochs_ready = (uint8_t)(e + 1);
	submit_waiting(t, PXY_C2S);
	submit_waiting(t, PXY_S2C);
	return 1;
}

/* A session waiting for its forwarded secret looks again (records arrived, the loop's tick); past
 * --key-wait it is not decrypted, and forwarding goes on as it always did. */
static void retry_forwarded(struct pxy_tap *t)
{
	if (t->tls13) {
		t13_retry(t, 0);
		return;
	}
	if (!t->keys_pending || !t->decrypting || forwarded_keys(t))
		return;
	if (pxy_now_ns() - t->keys_since > (uint64_t)(t->cfg.key_wait_ms ? t->cfg.key_wait_ms : 5000) * 1000000ull) {
		t->keys_pending = 0;
		t->cnt->keys_missing++;
		stop_inspect(t, PXY_R_KEYS_MISSING);
	}
}

static int on_cke(struct pxy_tap *t, struct pxy_cur body)
{
	const uint8_t *enc;
	size_t len;

	if (t->forwarded) {
		/* the client's public value: nothing to undo here, the server forwards the secret */
		PXY_GUARD(body.left > 0, PXY_E_DECODE);
		if (t->decrypting) {
			t->keys_pending = 1;
			t->keys_since = pxy_now_ns();
			forwarded_keys(t);
		}
		return PXY_OK;
	}
	PXY_TRY(pxy_hs_parse_cke_rsa(body, t->sh.version, &enc, &len));
	if (!t->decrypting)
		return PXY_OK;
	if (t->sh.ems) {
		/* RFC 7627 §3: session_hash = Hash(handshake_messages) up to and
		 * including the ClientKeyExchange (already in the transcript) */
		PXY_TRY(pxy_transcript_hash(PXY_PRF_FOR(t->suite->prf, t->sh.version), t->tr, t->tr_len,
					    t->session_hash, &t->session_hash_len));
	}
	start_rsa(t, enc, len);
	return PXY_OK;
}

static int on_new_session_ticket(struct pxy_tap *t, struct pxy_cur body)
{
	const uint8_t *ticket;
	size_t len;

	/* RFC 5077 §3.2: only when the ServerHello carried the extension */
	PXY_GUARD(t->sh.ticket, PXY_E_UNEXPECTED_MSG);
	PXY_TRY(pxy_hs_parse_new_session_ticket(body, &t->issued_lifetime, &ticket, &len));
	/* RFC 5077 §3.3: an empty ticket means the server will not issue one */
	if (len) {
		pxy_session_key(PXY_SESS_TICKET, ticket, len, t->issued_ticket);
		t->has_issued_ticket = 1;
		t->cached_ticket = 0; /* a renewed ticket is stored too */
		if (keys_verified(t))
			cache_session(t);
	}
	return PXY_OK;
}

/* A plaintext handshake message from d. */
static int on_hs_plain(struct pxy_tap *t, enum pxy_dir d, const struct pxy_hs_msg *m)
{
	struct pxy_certificate cert;

	/* Finished is always encrypted; HelloRequest is not part of a first handshake */
	PXY_GUARD(m->type != PXY_HS_FINISHED && m->type != PXY_HS_HELLO_REQUEST, PXY_E_UNEXPECTED_MSG);
	if (t->t13_hrr && !t->tls13) {
		/* after a HelloRetryRequest: the second ClientHello, then the ServerHello (RFC 8446 §4.1.4) */
		if (d == PXY_C2S && m->type == PXY_HS_CLIENT_HELLO && !t->t13_ch2)
			return on_client_hello2(t, m);
		PXY_GUARD(d == PXY_S2C && m->type == PXY_HS_SERVER_HELLO && t->t13_ch2, PXY_E_UNEXPECTED_MSG);
		PXY_TRY(tr_append(t, m->raw, m->raw_len));
		PXY_TRY(pxy_hs_parse_server_hello(m->body, &t->sh));
		PXY_GUARD(!t->sh.hello_retry, PXY_E_UNEXPECTED_MSG);
		t->info.version = t->sh.version;
		t->info.suite = t->sh.suite;
		if (t->sh.version != PXY_TLS13)
			return PXY_E_ILLEGAL_PARAM;
		start13(t);
		return PXY_OK;
	}
	if (t->info.verdict == PXY_V_PENDING && !t->hold_keys && d == PXY_S2C && t->have_sh &&
	    m->type != PXY_HS_CERTIFICATE) {
		if (m->type == PXY_HS_NEW_SESSION_TICKET) {
			/* an abbreviated handshake: the renewed ticket comes before ChangeCipherSpec */
			PXY_TRY(hs_expect(t, d, m->type));
			if (!resume(t))
				return PXY_OK;
			PXY_TRY(tr_append(t, m->raw, m->raw_len));
			return on_new_session_ticket(t, m->body);
		}
		/* no Certificate after ServerHello: judge on what we have (anon, PSK, ...) */
		judge(t, NULL);
		if (t->info.verdict == PXY_V_REJECT)
			return PXY_OK;
	}
	PXY_TRY(hs_expect(t, d, m->type));
	/* RFC 5246 §7.4.9: every handshake message but HelloRequest is hashed */
	PXY_TRY(tr_append(t, m->raw, m->raw_len));

	switch (m->type) {
	case PXY_HS_CLIENT_HELLO:
		return on_client_hello(t, m->body);
	case PXY_HS_SERVER_HELLO:
		return on_server_hello(t, m->body);
	case PXY_HS_CERTIFICATE:
		PXY_TRY(pxy_hs_parse_certificate(m->body, &cert));
		if (d == PXY_S2C) {
			judge(t, &cert);
		} else {
			/* RFC 5246 §7.4.6: only in answer to a CertificateRequest */
			PXY_GUARD(t->cert_request, PXY_E_UNEXPECTED_MSG);
			t->info.client_cert = cert.count > 0;
			if (cert.leaf)
				pxy_cert_describe(cert.leaf, cert.leaf_len, &t->info.client);
		}
		return PXY_OK;
	case PXY_HS_CERTIFICATE_STATUS:
		PXY_GUARD(t->sh.status_request, PXY_E_UNEXPECTED_MSG);
		return pxy_hs_parse_certificate_status(m->body);
	case PXY_HS_CERTIFICATE_REQUEST:
		t->cert_request = 1;
		return pxy_hs_parse_certificate_request(m->body, t->sh.version);
	case PXY_HS_SERVER_KEY_EXCHANGE:
		/* RFC 5246 §7.4.3: ephemeral key exchanges only (signed parameters: the endpoints' business) */
		PXY_GUARD(t->forwarded && m->body.left > 0, PXY_E_UNEXPECTED_MSG);
		return PXY_OK;
	case PXY_HS_SERVER_HELLO_DONE:
		return pxy_hs_parse_empty(m->body);
	case PXY_HS_CLIENT_KEY_EXCHANGE:
		return on_cke(t, m->body);
	case PXY_HS_CERTIFICATE_VERIFY:
		/* RFC 5246 §7.4.8: only after a client certificate */
		PXY_GUARD(t->info.client_cert, PXY_E_UNEXPECTED_MSG);
		return pxy_hs_parse_certificate_verify(m->body, t->sh.version);
	case PXY_HS_NEW_SESSION_TICKET:
		return on_new_session_ticket(t, m->body);
	default:
		return PXY_E_UNEXPECTED_MSG;
	}
}

/* A new handshake begins: the state of the first one goes, its keys stay in use. */
static void start_reneg(struct pxy_tap *t)
{
	t->reneg = 1;
	t->reneg_epoch = t->epochs_ready;
	memcpy(t->prev_sid, t->sh.sid, sizeof(t->prev_sid));
	t->prev_sid_len = t->sh.sid_len;
	t->prev_suite = t->sh.suite;
	t->prev_version = t->sh.version;
	t->prev_ems = t->sh.ems;
	t->reneg_fin_ok[0] = t->reneg_fin_ok[1] = 0;
	t->shape = &shape_full;
	t->step = 0;
	/* t->ch and t->sh stay until the new hellos replace them: the records still
	 * arriving under the old keys are described by them (TLS 1.0 IV chaining) */
	t->have_ch = t->have_sh = t->cert_request = 0;
	t->has_offered_ticket = t->has_issued_ticket = t->cached_sid = t->cached_ticket = 0;
	t->session_hash_len = 0;
	free_transcript(t);
	t->cnt->renegotiations++;
}

/*
 * An abbreviated renegotiation: the client offered a session (usually the one
 * in force) and the server took it. The new epoch's keys come from that
 * session's master secret and the new randoms.
 */
static void reneg_resume(struct pxy_tap *t)
{
	struct pxy_session in_force;
	int is_in_force = t->prev_sid_len && t->sh.sid_len == t->prev_sid_len &&
			  !memcmp(t->sh.sid, t->prev_sid, t->prev_sid_len);
	int ok;

	/* the session in force (no cache, or not stored): its secret is at hand */
	memset(&in_force, 0, sizeof(in_force));
	memcpy(in_force.ms, t->ms, sizeof(in_force.ms));
	in_force.suite = t->prev_suite;
	in_force.version = t->prev_version;
	in_force.ems = t->prev_ems;
	in_force.has_client = t->info.client_cert;
	if (in_force.has_client)
		in_force.client = t->info.client;
	ok = keys_from_session(t, t->reneg_epoch, is_in_force ? &in_force : NULL);
	pxy_wipe(&in_force, sizeof(in_force));
	if (!ok) {
		stop_decrypt(t, PXY_R_RESUMPTION_UNKNOWN);
		return;
	}
	if (!epoch_compatible(t, t->reneg_epoch)) {
		stop_decrypt(t, PXY_R_RENEGOTIATION);
		return;
	}
	t->epochs_ready = (uint8_t)(t->reneg_epoch + 1);
	submit_waiting(t, PXY_C2S);
	submit_waiting(t, PXY_S2C);
}

/*
 * A message of a renegotiation, in arrival order. Everything but Finished is
 * what a first handshake's plaintext message would be; the Finished messages
 * are verified against the transcript so far (complete, since records are
 * applied in order) with the new master secret.
 */
static int on_reneg_msg(struct pxy_tap *t, enum pxy_dir d, const struct pxy_hs_msg *m)
{
	uint8_t hash[PXY_MAX_HASH], expect[PXY_FINISHED_LEN];
	const uint8_t *vd;
	size_t hlen;
	uint8_t prf;
	uint32_t ok;

	if (m->type != PXY_HS_FINISHED)
		return on_hs_plain(t, d, m);
	PXY_TRY(hs_expect(t, d, m->type));
	PXY_TRY(pxy_hs_parse_finished(m->body, &vd));
	if (!t->decrypting || t->epochs_ready <= t->reneg_epoch)
		return PXY_OK;
	prf = PXY_PRF_FOR(t->suite->prf, t->sh.version);
	if (pxy_transcript_hash(prf, t->tr, t->tr_len, hash, &hlen) < 0 ||
	    pxy_keys_finished(prf, t->ms, d == PXY_C2S, hash, hlen, expect) < 0) {
		stop_decrypt(t, PXY_R_INTERNAL);
		return PXY_OK;
	}
	ok = pxy_ct_memeq(expect, vd, PXY_FINISHED_LEN);
	pxy_wipe(expect, sizeof(expect));
	if (!ok) {
		keys_wrong(t);
		return PXY_OK;
	}
	PXY_TRY(tr_append(t, m->raw, m->raw_len));
	t->reneg_fin_ok[d] = 1;
	cache_session(t);
	if (t->reneg_fin_ok[0] && t->reneg_fin_ok[1]) {
		/* the new session is in force both ways */
		t->reneg = 0;
		if (t->hooks.keylog)
			t->hooks.keylog(t->hooks.ctx, t->ch.random, t->ms);
		free_transcript(t);
	}
	return PXY_OK;
}

/* A decrypted handshake message from d. */
static int on_hs_encrypted(struct pxy_tap *t, enum pxy_dir d, const struct pxy_hs_msg *m)
{
	struct tap_dir *td = &t->dir[d];
	const uint8_t *vd;

	if (td->fin_state == FIN_RESERVED) {
		PXY_GUARD(m->type == PXY_HS_FINISHED, PXY_E_UNEXPECTED_MSG);
		PXY_TRY(pxy_hs_parse_finished(m->body, &vd));
		memcpy(td->fin_msg, m->raw, sizeof(td->fin_msg));
		/* fill the transcript slot reserved when the record arrived */
		if (t->tr)
			memcpy(t->tr + td->fin_hole, m->raw, sizeof(td->fin_msg));
		td->fin_state = FIN_RECEIVED;
		try_verify(t);
		return PXY_OK;
	}
	if (t->reneg)
		return on_reneg_msg(t, d, m);
	/* RFC 5246 §7.4.1.1: HelloRequest asks the client to start one; it is not hashed */
	if (m->type == PXY_HS_HELLO_REQUEST && d == PXY_S2C) {
		PXY_TRY(pxy_hs_parse_empty(m->body));
		return PXY_OK;
	}
	/* a ClientHello after the handshake: a renegotiation (client- or server-initiated) */
	if (m->type == PXY_HS_CLIENT_HELLO && d == PXY_C2S && t->dir[0].fin_state == FIN_DONE &&
	    t->dir[1].fin_state == FIN_DONE && t->decrypting && t->epochs_ready < EPOCHS) {
		start_reneg(t);
		return on_reneg_msg(t, d, m);
	}
	stop_decrypt(t, PXY_R_RENEGOTIATION);
	return PXY_OK;
}

static void drain_hs(struct pxy_tap *t, enum pxy_dir d, int encrypted)
{
	struct tap_dir *td = &t->dir[d];
	struct pxy_hs_msg m;
	int r;

	while (t->inspect && (r = pxy_hs_peek(&td->hs, &m)) != 0) {
		if (r < 0) {
			tap_fail(t, d, r);
			return;
		}
		r = encrypted ? on_hs_encrypted(t, d, &m) : on_hs_plain(t, d, &m);
		if (r < 0) {
			tap_fail(t, d, r);
			return;
		}
		pxy_hs_pop(&td->hs);
	}
}

static void on_alert(struct pxy_tap *t, enum pxy_dir d, struct pxy_cur body)
{
	uint8_t level, desc;

	if (pxy_cur_u8(&body, &level) < 0 || pxy_cur_u8(&body, &desc) < 0 || pxy_cur_end(&body) < 0) {
		tap_fail(t, d, PXY_E_DECODE);
		return;
	}
	t->info.alert[d][0] = level;
	t->info.alert[d][1] = desc;
	t->info.has_alert[d] = 1;
	if (level != 2 && desc != PXY_ALERT_CLOSE_NOTIFY)
		return; /* warnings do not end the handshake */
	if (t->info.verdict == PXY_V_PENDING && d == PXY_S2C) {
		/* the server decided for itself: its alert goes on to the client */
		set_verdict(t, PXY_V_ALLOW);
		stop_inspect(t, PXY_R_SERVER_ALERT);
	} else if (desc == PXY_ALERT_CLOSE_NOTIFY && t->dir[d].fin_seen) {
		/* the orderly end of a session whose Finished may still be under
		 * verification (keys that came late, e.g. from the shared session
		 * store): not a failed handshake; the other direction goes on */
		return;
	} else if (!t->epochs_ready || !(t->info.fin_ok[0] | t->info.fin_ok[1])) {
		stop_inspect(t, d == PXY_S2C ? PXY_R_SERVER_ALERT : PXY_R_CLIENT_ALERT);
	}
}

/* ---- records ---------------------------------------------------------------- */

/* Application plaintext of direction d, in order: counted, and to the sinks. */
static void deliver(struct pxy_tap *t, enum pxy_dir d, const uint8_t *pt, size_t n)
{
	t->info.decrypted[d] += n;
	t->cnt->plaintext_bytes += n;
	if (n && t->hooks.plaintext)
		t->hooks.plaintext(t->hooks.ctx, d, pt, n);
}

static void on_decrypted(struct pxy_tap *t, enum pxy_dir d, struct tap_job *j)
{
	struct tap_dir *td = &t->dir[d];
	const struct pxy_rec_job *rj = &j->job.u.rec;
	const uint8_t *pt;
	int r;

	if (j->job.status < 0) {
		stop_decrypt(t, PXY_R_ENGINE);
		return;
	}
	if (j->t13) {
		/* a TLS 1.3 application record the engine opened, in order */
		if (rj->ok)
			t13_apply(t, d, rj);
		else
			t13_bad_record(t, d);
		return;
	}
	if (!rj->ok) {
		/* Before a Finished verified, a failed record means the keys are wrong;
		 * whether the pre-master was well padded is never looked at. */
		if (!t->info.fin_ok[d]) {
			keys_wrong(t);
		} else {
			t->cnt->record_auth_fail++;
			stop_decrypt(t, PXY_R_RECORD_AUTH);
		}
		return;
	}
	t->cnt->records_decrypted++;
	if (rj->keys && rj->keys->bulk < PXY_BULK__COUNT)
		t->cnt->records_by_bulk[rj->keys->bulk][rj->on_device ? 1 : 0]++;
	pt = pxy_rec_job_plaintext(rj);
	switch (rj->rec[0]) {
	case PXY_CT_HANDSHAKE:
		if (rj->pt_len == 0) {
			tap_fail(t, d, PXY_E_EMPTY_RECORD);
			return;
		}
		r = pxy_hs_feed(&td->hs, pt, rj->pt_len);
		if (r < 0) {
			tap_fail(t, d, r);
			return;
		}
		drain_hs(t, d, 1);
		break;
	case PXY_CT_APPLICATION_DATA:
		deliver(t, d, pt, rj->pt_len);
		break;
	case PXY_CT_ALERT:
		on_alert(t, d, pxy_cur_make(pt, rj->pt_len));
		break;
	case PXY_CT_CHANGE_CIPHER_SPEC:
		/* a renegotiation's: its place in the handshake (the epoch moved when it arrived) */
		if (!t->reneg || rj->pt_len != 1 || pt[0] != 1 || !pxy_hs_empty(&td->hs)) {
			tap_fail(t, d, PXY_E_UNEXPECTED_MSG);
			return;
		}
		r = hs_expect(t, d, PXY_HS_CCS);
		if (r < 0) {
			tap_fail(t, d, r);
			return;
		}
		/* the server's, right after its ServerHello (and ticket): an abbreviated renegotiation */
		if (t->shape != &shape_full && d == PXY_S2C)
			reneg_resume(t);
		break;
	default:
		break; /* heartbeat: nothing to inspect */
	}
}

/* Copy a plaintext the engine lent into the record's own buffer (it has room: pt_off + pt_len <= rec_len). */
static void take_plaintext(struct tap_job *j)
{
	struct pxy_rec_job *rj = &j->job.u.rec;

	if (rj->pt_len)
		memcpy(rj->rec + rj->pt_off, rj->pt_ext, rj->pt_len);
	rj->pt_ext = NULL;
}

/* Hand back finished jobs of direction d in sequence order. */
/* The arrival number of direction d's oldest record not yet applied (UINT64_MAX: none). */
static uint64_t oldest_pending(const struct tap_dir *td)
{
	if (td->fly_head)
		return td->fly_head->arr;
	return td->wait_head ? td->wait_head->arr : UINT64_MAX;
}

static int drain_done(struct pxy_tap *t, enum pxy_dir d)
{
	struct tap_dir *td = &t->dir[d];
	int applied = 0;

	while (td->fly_head && td->fly_head->done) {
		struct tap_job *j = td->fly_head;

		/* in a renegotiation, a record waits for every record that arrived before it */
		if (t->ordered && oldest_pending(&t->dir[!d]) < j->arr)
			break;
		applied = 1;
		td->fly_head = j->next;
		if (!td->fly_head)
			td->fly_tail = NULL;
		td->queued_bytes -= j->cost;
		t->cnt->pending_bytes -= j->cost;
		if (t->decrypting && !t->closed)
			on_decrypted(t, d, j);
		free_job(j);
	}
	return applied;
}

/* Is there room for n more ciphertext bytes? Jobs the engine has finished but
 * the loop has not collected yet do not count against the limits (they hold
 * no engine capacity), as long as memory stays under twice the limits. */
static int room_for(struct pxy_tap *t, struct tap_dir *td, size_t n)
{
	size_t mine = td->queued_bytes, all = t->cnt->pending_bytes;
	size_t max_all = t->cfg.max_pending_total;

	if (mine + n <= t->cfg.max_pending && (!max_all || all + n <= max_all))
		return 1;
	if (mine + n > 2 * t->cfg.max_pending || (max_all && all + n > 2 * max_all))
		return 0;
	for (struct tap_job *j = td->fly_head; j; j = j->next) {
		if (__atomic_load_n(&j->job.completed, __ATOMIC_ACQUIRE)) {
			mine -= j->cost;
			all -= j->cost;
		}
	}
	return mine + n <= t->cfg.max_pending && (!max_all || all + n <= max_all);
}

/* A record-open job for direction d holding r's buffer, its bytes counted against --max-pending. NULL
 * (the buffer released) when there is no room: the record is dropped, and decryption stops where the
 * records after it cannot be followed without it (`must`); or no memory: decryption stops. */
static struct tap_job *record_job(struct pxy_tap *t, enum pxy_dir d, struct pxy_record *r, int must)
{
	struct tap_dir *td = &t->dir[d];
	struct tap_job *j;

	if (!room_for(t, td, r->buf_len)) {
		t->info.dropped[d]++;
		t->cnt->records_dropped++;
		pxy_recbuf_put(r->buf);
		if (must)
			stop_decrypt(t, PXY_R_ENGINE);
		return NULL;
	}
	j = job_new(t, PXY_JOB_RECORD_OPEN);
	if (!j) {
		pxy_recbuf_put(r->buf);
		stop_decrypt(t, PXY_R_INTERNAL);
		return NULL;
	}
	j->job.u.rec.rec = r->buf;
	j->job.u.rec.rec_len = r->buf_len;
	j->job.u.rec.rec_cap = r->buf_len;
	j->dir = (uint8_t)d;
	j->cost = r->buf_len;
	td->queued_bytes += j->cost;
	t->cnt->pending_bytes += j->cost;
	return j;
}

/* j waits at the end of its direction's queue (for keys, or for the records before it). */
static void wait_append(struct tap_dir *td, struct tap_job *j)
{
	if (td->wait_tail)
		td->wait_tail->next = j;
	else
		td->wait_head = j;
	td->wait_tail = j;
}

/*
 * TLS 1.0 CBC (RFC 2246 §6.2.3.2): a record's IV is the last ciphertext block
 * of the record before it in that direction, the key block's IV for the
 * first. Taken as each record arrives, before it is decrypted in place (and
 * also from records dropped for lack of engine capacity).
 */
static int chain_iv(struct pxy_tap *t, struct tap_dir *td, const struct pxy_record *r, uint8_t iv[16])
{
	const uint8_t *frag = r->buf + PXY_TLS_HDR_LEN;
	size_t end = r->h.len, mac = t->sh.etm ? pxy_mac_len(t->suite->mac) : 0;
	size_t bs = pxy_bulk_desc(t->suite->bulk)->block; /* 16, or 8 for 3DES */
	int first = !td->cbc_chained;

	if (!first)
		memcpy(iv, td->cbc_iv, bs);
	if (end >= mac + bs) { /* shorter is malformed: the engine rejects it */
		memcpy(td->cbc_iv, frag + end - mac - bs, bs);
		td->cbc_chained = 1;
	}
	return first;
}

static void on_encrypted_record(struct pxy_tap *t, enum pxy_dir d, struct pxy_record *r)
{
	struct tap_dir *td = &t->dir[d];
	struct tap_job *j;
	uint64_t seq = td->seq++;
	uint8_t epoch = td->epoch;
	int fin = 0, key_iv = 0;
	uint8_t iv[16] = { 0 };

	if (!t->decrypting || !r->buf) {
		pxy_recbuf_put(r->buf);
		return;
	}
	if (t->sh.version == PXY_TLS10 && pxy_bulk_desc(t->suite->bulk)->kind == PXY_BK_CBC)
		key_iv = chain_iv(t, td, r, iv);
	if (td->fin_seen && (r->h.type == PXY_CT_HANDSHAKE || r->h.type == PXY_CT_CHANGE_CIPHER_SPEC)) {
		/*
		 * A handshake inside the encrypted records: a renegotiation. From now on
		 * (for the rest of the connection) records are applied in arrival order
		 * across both directions (its messages alternate), and an encrypted ChangeCipherSpec moves this
		 * direction to the next epoch's keys: the records after it wait for
		 * them, counting from sequence number 0, the first being the Finished.
		 */
		t->ordered = 1;
		if (td->reneg_fin) {
			td->reneg_fin = 0;
			fin = 1;
		}
		if (r->h.type == PXY_CT_CHANGE_CIPHER_SPEC) {
			if (td->epoch + 1 >= EPOCHS) {
				pxy_recbuf_put(r->buf);
				stop_decrypt(t, PXY_R_RENEGOTIATION);
				return;
			}
			td->epoch++;
			td->seq = 0;
			td->cbc_chained = 0;
			td->reneg_fin = 1;
		}
	} else if (td->reneg_fin) {
		td->reneg_fin = 0; /* the Finished must be a handshake record: decryption will say */
		fin = 1;
	}
	if (!td->fin_seen) {
		/* RFC 5246 §7.4.9: the first record after ChangeCipherSpec is the Finished */
		int e = r->h.type == PXY_CT_HANDSHAKE ? hs_expect(t, d, PXY_HS_FINISHED) : PXY_E_UNEXPECTED_MSG;

		if (e == PXY_OK)
			e = tr_append(t, NULL, PXY_HS_HDR_LEN + PXY_FINISHED_LEN);
		if (e < 0) {
			pxy_recbuf_put(r->buf);
			tap_fail(t, d, e);
			return;
		}
		td->fin_seen = 1;
		td->fin_prefix = t->tr_len - (PXY_HS_HDR_LEN + PXY_FINISHED_LEN);
		td->fin_hole = td->fin_prefix;
		td->fin_state = FIN_RESERVED;
		fin = 1;
	}
	j = record_job(t, d, r, fin);
	if (!j)
		return;
	j->job.tag = (uint64_t)d;
	j->job.u.rec.seq = seq;
	/* a synchronous engine's completions are applied before its next flush: it may keep the plaintext */
	j->job.u.rec.pt_borrow = t->cfg.engine && (t->cfg.engine->flags & PXY_ENGINE_F_SYNC);
	memcpy(j->job.u.rec.iv, iv, sizeof(iv));
	j->key_iv = (uint8_t)key_iv;
	j->fin = (uint8_t)fin;
	j->epoch = epoch;
	j->arr = t->arr_next++;
	if (!td->wait_head && epoch < t->epochs_ready)
		submit_rec(t, d, j);
	else
		wait_append(td, j);
}

/* ---- TLS 1.3 with forwarded secrets (RFC 8446, RFC 9850) ------------------------------ */

/*
 * Every record after the ServerHello is encrypted, and where the keys change
 * (handshake to application keys, KeyUpdate) is known only from the plaintext
 * before it. So a TLS 1.3 session's records are opened here, in arrival order,
 * one direction's after another, each as soon as its direction's secret is
 * there; the ones that came before it wait (within --max-pending) in the
 * direction's queue. The server's flight is held from the ServerHello until
 * the decrypted Certificate is judged and its Finished verifies (the keys are
 * right), unless the secrets are not there yet: then forwarding never waits
 * (and a certificate that turns out not to be the configured one is only not
 * decrypted), except with --require-keys.
 */

static const uint8_t t13_labels[2][4] = {
	/* [dir][phase] */
	[PXY_C2S] = { 0, PXY_KL_CLIENT_EARLY, PXY_KL_CLIENT_HS, PXY_KL_CLIENT_AP0 },
	[PXY_S2C] = { 0, 0, PXY_KL_SERVER_HS, PXY_KL_SERVER_AP0 },
};

static void t13_keylog(struct pxy_tap *t, int only_new);

/* Keys for direction d's phase: in place, or from the key store now. 1 when they are. */
static int t13_load(struct pxy_tap *t, enum pxy_dir d)
{
	struct t13_dir *x = &t->t13[d];
	size_t n, hl = pxy_prf_hash_len(t->suite->prf);

	if (x->ready)
		return 1;
	if (x->phase == P13_NONE)
		return 0;
	n = pxy_keystore_secret(t->cfg.keys, t->ch.random, (enum pxy_key_label)t13_labels[d][x->phase], x->secret);
	if (!n) {
		pxy_keystore_refresh(t->cfg.keys, pxy_now_ns());
		n = pxy_keystore_secret(t->cfg.keys, t->ch.random, (enum pxy_key_label)t13_labels[d][x->phase],
					x->secret);
	}
	if (!n) {
		if (!t->keys_pending) {
			t->keys_pending = 1;
			t->keys_since = pxy_now_ns();
		}
		/* another node may have it (the shared store): ask */
		pxy_keystore_want(t->cfg.keys, t->ch.random, (enum pxy_key_label)t13_labels[d][x->phase]);
		return 0;
	}
	if (!t->info.keys_forwarded) {
		t->info.keys_forwarded = 1;
		t->info.key_wait_us = (pxy_now_ns() - t->keys_since) / 1000;
	}
	t->keys_pending = 0;
	/* a secret of another hash's length: the key log is not this session's suite */
	if (n != hl || pxy_tls13_traffic_keys(t->suite, x->secret, n, &x->keys) < 0) {
		keys_wrong(t);
		return 0;
	}
	x->slen = (uint8_t)n;
	if (x->phase == P13_HS)
		memcpy(x->hs_secret, x->secret, n);
	x->ready = 1;
	t->dir[d].seq = 0;
	if (x->phase == P13_AP)
		t13_keylog(t, 1); /* a secret the server logged after its Finished */
	return 1;
}

/* Direction d's next records are under the keys of `phase` (its secret is looked up when one comes). */
static void t13_phase(struct pxy_tap *t, enum pxy_dir d, uint8_t phase)
{
	t->t13[d].phase = phase;
	t->t13[d].ready = 0;
	t->dir[d].seq = 0;
}

static size_t t13_line(char *out, size_t cap, enum pxy_key_label label, const uint8_t cr[32], const uint8_t *sec,
		       size_t n)
{
	char h1[65], h2[2 * PXY_MAX_HASH + 1];
	int k;

	pxy_hex(h1, cr, 32);
	pxy_hex(h2, sec, n);
	k = snprintf(out, cap, "%s %s %s\n", pxy_key_label_name(label), h1, h2);
	pxy_wipe(h2, sizeof(h2));
	return k > 0 && (size_t)k < cap ? (size_t)k : 0;
}

/*
 * The server's Finished verified the secrets: the key log (and the capture's
 * secrets block, which must come before the records it opens) gets every
 * secret of the session the key source holds by now. One a server logs later
 * goes out when it is used (t13_load).
 */
static void t13_keylog(struct pxy_tap *t, int only_new)
{
	static const uint8_t labels[] = { PXY_KL_CLIENT_HS, PXY_KL_SERVER_HS,  PXY_KL_CLIENT_EARLY,
					  PXY_KL_CLIENT_AP0, PXY_KL_SERVER_AP0, PXY_KL_EXPORTER };
	char lines[8 * 200];
	uint8_t sec[PXY_MAX_HASH];
	size_t n = 0, k;

	if (!t->hooks.keylog13 || !t->info.fin_ok[PXY_S2C])
		return;
	if (!only_new)
		pxy_keystore_refresh(t->cfg.keys, pxy_now_ns());
	for (size_t i = 0; i < PXY_ARRAY_LEN(labels); i++) {
		if (t->t13_logged & (1u << labels[i]))
			continue;
		if ((k = pxy_keystore_secret(t->cfg.keys, t->ch.random, (enum pxy_key_label)labels[i], sec)) != 0) {
			n += t13_line(lines + n, sizeof(lines) - n, (enum pxy_key_label)labels[i], t->ch.random, sec, k);
			t->t13_logged |= (uint16_t)(1u << labels[i]);
		}
	}
	pxy_wipe(sec, sizeof(sec));
	if (n)
		t->hooks.keylog13(t->hooks.ctx, lines, n,
				  (t->t13_logged & (1u << PXY_KL_CLIENT_AP0)) && (t->t13_logged & (1u << PXY_KL_SERVER_AP0)));
	pxy_wipe(lines, sizeof(lines));
}

/* The configured identity must be the server's certificate, here inside the encrypted handshake. */
static void judge13(struct pxy_tap *t, const struct pxy_certificate *cert)
{
	const struct pxy_identity *id = find_identity(t, cert);

	if (id) {
		t->id = id;
		return;
	}
	/* refused, or, already forwarded (its keys came late), not decrypted */
	refuse(t, PXY_R_CERT_MISMATCH);
}

/* verify a Finished: HMAC under a key from `base` (the direction's handshake secret; after the
 * handshake, the client's current application secret) over the transcript so far */
static int t13_verify_finished(struct pxy_tap *t, const uint8_t *base, size_t blen, struct pxy_cur body, int *ok)
{
	uint8_t hash[PXY_MAX_HASH], expect[PXY_MAX_HASH];
	const uint8_t *vd;
	size_t hl = pxy_prf_hash_len(t->suite->prf), got;

	PXY_TRY(pxy_hs_parse_finished13(body, hl, &vd));
	PXY_TRY(pxy_transcript_hash(t->suite->prf, t->tr, t->tr_len, hash, &got));
	PXY_TRY(pxy_tls13_finished(t->suite->prf, base, blen, hash, expect));
	*ok = (int)pxy_ct_memeq(expect, vd, hl);
	pxy_wipe(expect, sizeof(expect));
	return PXY_OK;
}

static int t13_key_update(struct pxy_tap *t, enum pxy_dir d, struct pxy_cur body)
{
	struct t13_dir *x = &t->t13[d];
	uint8_t requested;

	PXY_TRY(pxy_hs_parse_key_update(body, &requested));
	/* RFC 8446 §4.6.3: the sender's next records are under the next secret, from sequence 0 */
	PXY_TRY(pxy_tls13_next_secret(t->suite->prf, x->secret, x->slen));
	PXY_TRY(pxy_tls13_traffic_keys(t->suite, x->secret, x->slen, &x->keys));
	t->dir[d].seq = 0;
	t->info.key_updates[d]++;
	t->cnt->key_updates++;
	return PXY_OK;
}

/* Post-handshake client authentication (RFC 8446 §4.6.2). A CertificateRequest from the server: kept
 * (when the ClientHello offered post_handshake_auth) until the client answers it. */
static int pha_request(struct pxy_tap *t, const struct pxy_hs_msg *m)
{
	struct t13_dir *c = &t->t13[PXY_C2S];
	uint8_t *q;

	PXY_TRY(pxy_hs_parse_certificate_request13(m->body, NULL));
	PXY_GUARD(c->post_auth < PHA_MAX_PENDING, PXY_E_UNEXPECTED_MSG);
	c->post_auth++;
	if (!t->ch.post_handshake_auth)
		return PXY_OK; /* not offered: the client refuses it, nothing to verify */
	PXY_GUARD(t->pha_q_len + m->raw_len <= t->tr_max, PXY_E_HS_TOO_LARGE);
	q = realloc(t->pha_q, t->pha_q_len + m->raw_len);
	if (!q)
		return PXY_E_NOMEM;
	memcpy(q + t->pha_q_len, m->raw, m->raw_len);
	t->pha_q = q;
	t->pha_q_len += m->raw_len;
	return PXY_OK;
}

/* The queued request whose certificate_request_context is `ctx`: taken out of the queue and put in
 * the transcript after the Handshake Context. 0 when there is none. */
static int pha_take_request(struct pxy_tap *t, struct pxy_cur ctx)
{
	struct pxy_cur q = pxy_cur_make(t->pha_q, t->pha_q_len);
	uint8_t type;
	struct pxy_cur body, rctx;

	while (pxy_cur_u8(&q, &type) == PXY_OK && pxy_cur_sub_u24(&q, &body) == PXY_OK) {
		const uint8_t *r = body.p - PXY_HS_HDR_LEN;
		size_t len = PXY_HS_HDR_LEN + body.left, off = (size_t)(r - t->pha_q);

		if (pxy_hs_parse_certificate_request13(body, &rctx) != PXY_OK || rctx.left != ctx.left ||
		    memcmp(rctx.p, ctx.p, ctx.left) != 0)
			continue;
		t->tr_len = t->pha_base;
		if (tr_append(t, r, len) != PXY_OK)
			return 0;
		memmove(t->pha_q + off, t->pha_q + off + len, t->pha_q_len - off - len);
		t->pha_q_len -= len;
		return 1;
	}
	return 0;
}

/* The client's answer: Certificate, CertificateVerify (when it sent a certificate), Finished. The
 * Finished is verified under the client's current application secret over the Handshake Context,
 * the request and the answer. */
static int pha_answer(struct pxy_tap *t, const struct pxy_hs_msg *m)
{
	struct t13_dir *c = &t->t13[PXY_C2S];
	struct pxy_certificate cert;
	int ok = 0;

	switch (m->type) {
	case PXY_HS_CERTIFICATE:
		PXY_GUARD(c->pha_step == PHA_CERT, PXY_E_UNEXPECTED_MSG);
		PXY_TRY(pxy_hs_parse_certificate13(m->body, &cert));
		t->info.client_cert = cert.count > 0;
		if (cert.leaf)
			pxy_cert_describe(cert.leaf, cert.leaf_len, &t->info.client);
		c->pha_check = t->tr && t->pha_base && pha_take_request(t, cert.context);
		if (c->pha_check)
			PXY_TRY(tr_append(t, m->raw, m->raw_len));
		c->pha_step = cert.count ? PHA_CV : PHA_FIN;
		return PXY_OK;
	case PXY_HS_CERTIFICATE_VERIFY:
		PXY_GUARD(c->pha_step == PHA_CV, PXY_E_UNEXPECTED_MSG);
		PXY_TRY(pxy_hs_parse_certificate_verify(m->body, PXY_TLS12));
		if (c->pha_check)
			PXY_TRY(tr_append(t, m->raw, m->raw_len));
		c->pha_step = PHA_FIN;
		return PXY_OK;
	default:
		PXY_GUARD(m->type == PXY_HS_FINISHED && c->pha_step == PHA_FIN, PXY_E_UNEXPECTED_MSG);
		c->pha_step = PHA_CERT;
		c->post_auth--;
		if (!c->pha_check)
			return pxy_hs_parse_finished13(m->body, pxy_prf_hash_len(t->suite->prf),
						       &(const uint8_t *){ 0 });
		c->pha_check = 0;
		PXY_TRY(t13_verify_finished(t, c->secret, c->slen, m->body, &ok));
		t->tr_len = t->pha_base;
		if (!ok) {
			keys_wrong(t);
			return PXY_OK;
		}
		t->info.post_auth++;
		return PXY_OK;
	}
}

/* A decrypted handshake message of a TLS 1.3 session, in order. */
static int on_hs13(struct pxy_tap *t, enum pxy_dir d, const struct pxy_hs_msg *m)
{
	struct t13_dir *x = &t->t13[d];
	struct pxy_certificate cert;
	int ok = 0;

	if (x->phase == P13_AP) {
		/* after the handshake (RFC 8446 §4.6) */
		switch (m->type) {
		case PXY_HS_KEY_UPDATE:
			return t13_key_update(t, d, m->body);
		case PXY_HS_NEW_SESSION_TICKET:
			PXY_GUARD(d == PXY_S2C, PXY_E_UNEXPECTED_MSG);
			return pxy_hs_parse_new_session_ticket13(m->body);
		case PXY_HS_CERTIFICATE_REQUEST:
			/* post-handshake client authentication: the client answers in its records */
			PXY_GUARD(d == PXY_S2C, PXY_E_UNEXPECTED_MSG);
			return pha_request(t, m);
		case PXY_HS_CERTIFICATE:
		case PXY_HS_CERTIFICATE_VERIFY:
		case PXY_HS_FINISHED:
			PXY_GUARD(d == PXY_C2S && x->post_auth, PXY_E_UNEXPECTED_MSG);
			return pha_answer(t, m);
		default:
			return PXY_E_UNEXPECTED_MSG;
		}
	}
	if (d == PXY_C2S && x->phase == P13_EARLY) {
		/* RFC 8446 §4.5: the end of 0-RTT data; the handshake keys follow */
		PXY_GUARD(m->type == PXY_HS_END_OF_EARLY_DATA, PXY_E_UNEXPECTED_MSG);
		PXY_TRY(pxy_hs_parse_empty(m->body));
		PXY_TRY(tr_append(t, m->raw, m->raw_len));
		t13_phase(t, d, P13_HS);
		return PXY_OK;
	}
	if (d == PXY_S2C) {
		switch (x->step) {
		case S13_EE: {
			uint8_t early;

			PXY_GUARD(m->type == PXY_HS_ENCRYPTED_EXTENSIONS, PXY_E_UNEXPECTED_MSG);
			PXY_TRY(pxy_hs_parse_encrypted_extensions(m->body, &early));
			PXY_TRY(tr_append(t, m->raw, m->raw_len));
			if (t->info.early_data == 1) {
				/* RFC 8446 §4.2.10: the client's 0-RTT records are under the early secret if the
				 * server took them; if not, the server skips what it cannot open, and so do we */
				t->info.early_data = early ? 2 : 3;
				t13_phase(t, PXY_C2S, early ? P13_EARLY : P13_HS);
				t->t13[PXY_C2S].skip_early = !early;
			}
			x->step = t->sh.psk ? S13_FIN : S13_CERT;
			return PXY_OK;
		}
		case S13_CERT:
			if (m->type == PXY_HS_CERTIFICATE_REQUEST && !t->cert_request) {
				PXY_TRY(pxy_hs_parse_certificate_request13(m->body, NULL));
				PXY_TRY(tr_append(t, m->raw, m->raw_len));
				t->cert_request = 1;
				return PXY_OK;
			}
			PXY_GUARD(m->type == PXY_HS_CERTIFICATE, PXY_E_UNEXPECTED_MSG);
			PXY_TRY(pxy_hs_parse_certificate13(m->body, &cert));
			PXY_TRY(tr_append(t, m->raw, m->raw_len));
			x->step = S13_CV;
			judge13(t, &cert);
			return PXY_OK;
		case S13_CV:
			PXY_GUARD(m->type == PXY_HS_CERTIFICATE_VERIFY, PXY_E_UNEXPECTED_MSG);
			PXY_TRY(pxy_hs_parse_certificate_verify(m->body, PXY_TLS12));
			PXY_TRY(tr_append(t, m->raw, m->raw_len));
			x->step = S13_FIN;
			return PXY_OK;
		case S13_FIN:
			PXY_GUARD(m->type == PXY_HS_FINISHED, PXY_E_UNEXPECTED_MSG);
			PXY_TRY(t13_verify_finished(t, x->hs_secret, x->slen, m->body, &ok));
			if (!ok) {
				keys_wrong(t);
				return PXY_OK;
			}
			PXY_TRY(tr_append(t, m->raw, m->raw_len));
			x->step = S13_DONE;
			t->info.fin_ok[d] = 1;
			t->dir[d].fin_seen = 1;
			t->cnt->keys_verified++;
			t13_phase(t, d, P13_AP);
			t13_keylog(t, 0);
			/* the keys are proven and the certificate is the configured one (or a resumption of a
			 * session with it): the held flight goes on */
			t->pass_open = 0;
			set_verdict(t, PXY_V_ALLOW);
			return PXY_OK;
		default:
			return PXY_E_UNEXPECTED_MSG;
		}
	}
	switch (x->step) {
	case C13_START:
		if (m->type == PXY_HS_CERTIFICATE) {
			PXY_GUARD(t->cert_request, PXY_E_UNEXPECTED_MSG);
			PXY_TRY(pxy_hs_parse_certificate13(m->body, &cert));
			PXY_TRY(tr_append(t, m->raw, m->raw_len));
			t->info.client_cert = cert.count > 0;
			if (cert.leaf)
				pxy_cert_describe(cert.leaf, cert.leaf_len, &t->info.client);
			x->step = cert.count ? C13_CV : C13_FIN;
			return PXY_OK;
		}
		/* no certificate asked for: the Finished */
		__attribute__((fallthrough));
	case C13_FIN:
		PXY_GUARD(m->type == PXY_HS_FINISHED && (x->step == C13_FIN || !t->cert_request), PXY_E_UNEXPECTED_MSG);
		PXY_TRY(t13_verify_finished(t, x->hs_secret, x->slen, m->body, &ok));
		if (!ok) {
			keys_wrong(t);
			return PXY_OK;
		}
		x->step = C13_DONE;
		t->info.fin_ok[d] = 1;
		t->dir[d].fin_seen = 1;
		t13_phase(t, d, P13_AP);
		if (!t->ch.post_handshake_auth) {
			free_transcript(t); /* the handshake is over */
			return PXY_OK;
		}
		/* the server may ask for a certificate later: the transcript through this Finished is the
		 * Handshake Context of the answer */
		PXY_TRY(tr_append(t, m->raw, m->raw_len));
		t->pha_base = t->tr_len;
		return PXY_OK;
	case C13_CV:
		PXY_GUARD(m->type == PXY_HS_CERTIFICATE_VERIFY, PXY_E_UNEXPECTED_MSG);
		PXY_TRY(pxy_hs_parse_certificate_verify(m->body, PXY_TLS12));
		PXY_TRY(tr_append(t, m->raw, m->raw_len));
		x->step = C13_FIN;
		return PXY_OK;
	default:
		return PXY_E_UNEXPECTED_MSG;
	}
}

/* A record's opening failed: the early data the server skipped, or the keys are wrong (before a
 * Finished verified), or a record was tampered with. */
static void t13_bad_record(struct pxy_tap *t, enum pxy_dir d)
{
	if (!t->info.fin_ok[d]) {
		keys_wrong(t);
	} else {
		t->cnt->record_auth_fail++;
		stop_decrypt(t, PXY_R_RECORD_AUTH);
	}
}

/* Open one record of direction d here, under its keys now, and apply what it carries. */
static void t13_open(struct pxy_tap *t, enum pxy_dir d, struct tap_job *j)
{
	struct tap_dir *td = &t->dir[d];
	struct t13_dir *x = &t->t13[d];
	struct pxy_rec_job *rj = &j->job.u.rec;

	if (!td->stream && !(td->stream = pxy_cpu_ctx_new())) {
		stop_decrypt(t, PXY_R_INTERNAL);
		return;
	}
	rj->keys = &x->keys;
	rj->seq = td->seq;
	if (pxy_cpu_record_open(td->stream, rj) < 0) {
		stop_decrypt(t, PXY_R_ENGINE);
		return;
	}
	if (!rj->ok) {
		if (x->skip_early) {
			/* 0-RTT data the server refused: it skips it unread, as we do */
			t->cnt->early_records++;
			return;
		}
		t13_bad_record(t, d);
		return;
	}
	td->seq++;
	x->skip_early = 0;
	if (x->phase == P13_EARLY)
		t->cnt->early_records++;
	t13_apply(t, d, rj);
}

/* What an opened record of direction d carries (opened here, or by the engine), in order. */
static void t13_apply(struct pxy_tap *t, enum pxy_dir d, const struct pxy_rec_job *rj)
{
	struct tap_dir *td = &t->dir[d];
	struct t13_dir *x = &t->t13[d];
	struct pxy_hs_msg m;
	const uint8_t *pt;
	int r;

	t->cnt->records_decrypted++;
	t->cnt->records_by_bulk[rj->keys->bulk][rj->on_device ? 1 : 0]++;
	pt = pxy_rec_job_plaintext(rj);
	switch (rj->rec[0]) {
	case PXY_CT_HANDSHAKE:
		/* RFC 8446 §5.1: no empty handshake fragments; a key change only at a record's end */
		if (rj->pt_len == 0 || (r = pxy_hs_feed(&td->hs, pt, rj->pt_len)) < 0) {
			tap_fail(t, d, rj->pt_len == 0 ? PXY_E_EMPTY_RECORD : r);
			return;
		}
		while (t->inspect && t->decrypting && (r = pxy_hs_peek(&td->hs, &m)) != 0) {
			uint8_t phase = x->phase;
			uint32_t ku = t->info.key_updates[d];

			if (r > 0)
				r = on_hs13(t, d, &m);
			if (r < 0) {
				tap_fail(t, d, r);
				return;
			}
			pxy_hs_pop(&td->hs);
			if ((x->phase != phase || t->info.key_updates[d] != ku) && !pxy_hs_empty(&td->hs)) {
				tap_fail(t, d, PXY_E_UNEXPECTED_MSG); /* RFC 8446 §5.1: keys change at a record boundary */
				return;
			}
		}
		break;
	case PXY_CT_APPLICATION_DATA:
		/* early data, or application data; never inside the handshake's own keys */
		if (x->phase == P13_HS) {
			tap_fail(t, d, PXY_E_UNEXPECTED_MSG);
			return;
		}
		deliver(t, d, pt, rj->pt_len);
		break;
	case PXY_CT_ALERT:
		on_alert(t, d, pxy_cur_make(pt, rj->pt_len));
		break;
	default:
		/* no content type at all (only padding), or one TLS 1.3 does not carry */
		tap_fail(t, d, PXY_E_UNEXPECTED_MSG);
		break;
	}
}

/*
 * Application records from T13_OFFLOAD_MIN bytes on go to the engine (the
 * card's record kernel takes TLS 1.3 AES-GCM; the software engine the other
 * suites), each under a copy of the keys it was sent with. Smaller ones, and
 * everything before the handshake ends, are opened here once the records
 * before them have come back: a KeyUpdate (6 bytes of plaintext unpadded)
 * changes the keys of the record after it, which must not be sent before
 * it is read. A KeyUpdate padded past T13_OFFLOAD_MIN (no common stack pads)
 * goes to the engine like data; the records sent after it then fail, and
 * inspection stops (record-auth-failed).
 */
#define T13_OFFLOAD_MIN 256

static int t13_offload(const struct pxy_tap *t, enum pxy_dir d, const struct tap_job *j)
{
	return t->cfg.engine && t->t13[d].phase == P13_AP && j->job.u.rec.rec_len >= PXY_TLS_HDR_LEN + T13_OFFLOAD_MIN;
}

/* 1: j went to the engine (it left the wait list); 0: the engine is full, open it here; -1: full, and
 * records are out (wait for them) */
static int t13_submit(struct pxy_tap *t, enum pxy_dir d, struct tap_job *j)
{
	struct tap_dir *td = &t->dir[d];

	j->t13 = 1;
	j->k13 = t->t13[d].keys;
	j->job.u.rec.keys = &j->k13;
	j->job.u.rec.seq = td->seq;
	j->job.u.rec.pt_borrow = (t->cfg.engine->flags & PXY_ENGINE_F_SYNC) != 0;
	if (pxy_engine_submit(t->cfg.engine, &j->job) < 0) {
		j->t13 = 0;
		pxy_wipe(&j->k13, sizeof(j->k13));
		return td->fly_head ? -1 : 0;
	}
	td->seq++;
	td->wait_head = j->next;
	if (!td->wait_head)
		td->wait_tail = NULL;
	j->next = NULL;
	j->arr = t->arr_next++;
	t->inflight++;
	if (td->fly_tail)
		td->fly_tail->next = j;
	else
		td->fly_head = j;
	td->fly_tail = j;
	return 1;
}

/* Open what waits in direction d, in order, as far as its keys go. */
static void t13_pump(struct pxy_tap *t, enum pxy_dir d)
{
	struct tap_dir *td = &t->dir[d];

	while (td->wait_head && t->decrypting && t->tls13) {
		struct tap_job *j = td->wait_head;

		/* the client's handshake records are hashed after the server's whole flight */
		if (d == PXY_C2S && t->t13[PXY_C2S].phase != P13_AP && t->t13[PXY_S2C].step != S13_DONE)
			return;
		if (!t13_load(t, d))
			return;
		if (t13_offload(t, d, j)) {
			int r = t13_submit(t, d, j);

			if (r > 0)
				continue; /* in the engine */
			if (r < 0 || td->fly_head)
				return; /* saturated: again when a job comes back */
		} else if (td->fly_head) {
			return; /* applied after the records still in the engine, in order */
		}
		td->wait_head = j->next;
		if (!td->wait_head)
			td->wait_tail = NULL;
		td->queued_bytes -= j->cost;
		t->cnt->pending_bytes -= j->cost;
		t13_open(t, d, j);
		free_job(j);
	}
}

/* A TLS 1.3 ciphertext record (or 0-RTT data before the ServerHello): queued, then opened in order. */
static void t13_record(struct pxy_tap *t, enum pxy_dir d, struct pxy_record *r)
{
	struct tap_job *j;

	if (!t->decrypting || !r->buf) {
		pxy_recbuf_put(r->buf);
		return;
	}
	/* one record missing and the rest cannot be followed (the handshake, the sequence) */
	j = record_job(t, d, r, 1);
	if (!j)
		return;
	wait_append(&t->dir[d], j);
	t13_pump(t, d);
	/* the server's Finished may let the client's records go */
	if (d == PXY_S2C)
		t13_pump(t, PXY_C2S);
}

/* The secrets may have come (a record arrived, the loop's tick): what waits goes on; past --key-wait the
 * session is not decrypted (or, with --require-keys, refused). */
static void t13_retry(struct pxy_tap *t, int last)
{
	if (!t->tls13 || !t->decrypting || !t->keys_pending)
		return;
	t13_pump(t, PXY_S2C);
	t13_pump(t, PXY_C2S);
	if (t->keys_pending && t->decrypting &&
	    (last || pxy_now_ns() - t->keys_since >
			     (uint64_t)(t->cfg.key_wait_ms ? t->cfg.key_wait_ms : 5000) * 1000000ull)) {
		t->keys_pending = 0;
		t->cnt->keys_missing++;
		stop_inspect(t, PXY_R_KEYS_MISSING);
	}
}

/* A record of a TLS 1.3 session after its ServerHello. */
static void on_record13(struct pxy_tap *t, enum pxy_dir d, struct pxy_record *r)
{
	struct pxy_cur body = pxy_cur_make(r->buf ? r->buf + PXY_TLS_HDR_LEN : NULL, r->h.len);
	uint8_t v;
	int e = PXY_OK;

	switch (r->h.type) {
	case PXY_CT_APPLICATION_DATA:
		/* RFC 8446 §5.2: at most 2^14 + 256 bytes of ciphertext */
		if (r->h.len > PXY_TLS_MAX_PLAINTEXT + 256) {
			e = PXY_E_RECORD_OVERFLOW;
			break;
		}
		t->t13_enc[d] = 1;
		t13_record(t, d, r);
		return;
	case PXY_CT_CHANGE_CIPHER_SPEC:
		/* RFC 8446 §5 and D.4: a middlebox-compatibility ChangeCipherSpec, ignored */
		if (pxy_cur_u8(&body, &v) < 0 || v != 1 || body.left)
			e = PXY_E_DECODE;
		break;
	case PXY_CT_ALERT:
		/* in the clear only before that side has keys (a client refusing the ServerHello) */
		if (r->h.len > PXY_TLS_MAX_PLAINTEXT)
			e = PXY_E_RECORD_OVERFLOW;
		else
			on_alert(t, d, body);
		break;
	default:
		e = PXY_E_UNEXPECTED_MSG;
		break;
	}
	pxy_recbuf_put(r->buf);
	if (e < 0)
		tap_fail(t, d, e);
}

/*
 * The ServerHello chose TLS 1.3 and secrets are forwarded: follow it. The
 * suite must be one this process opens; the verdict waits for the encrypted
 * Certificate, unless the server's handshake secret is not there yet and
 * --require-keys is off (forwarding never waits).
 */
static void start13(struct pxy_tap *t)
{
	const struct pxy_suite *s = pxy_suite_find(t->sh.suite);

	t->pass_open = 0; /* after a HelloRetryRequest the hold is in force again */
	if (!s || s->kx != PXY_KX_TLS13 || s->bulk == PXY_BULK_NONE || !pxy_bulk_available(s->bulk, NULL)) {
		if (s && s->bulk != PXY_BULK_NONE && !pxy_bulk_available(s->bulk, NULL))
			t->info.missing = pxy_bulk_desc(s->bulk)->name;
		refuse(t, PXY_R_UNSUPPORTED_SUITE);
		return;
	}
	t->tls13 = 1;
	t->suite = s;
	t->decrypting = 1;
	t->cnt->tls13_sessions++;
	t->info.resumed = t->sh.psk; /* a PSK from an earlier session's ticket: no certificate this time */
	t13_phase(t, PXY_S2C, P13_HS);
	/* the client's records: 0-RTT data first when it offered some (the server's EncryptedExtensions say
	 * whether it took it), else its handshake keys */
	if (t->info.early_data == 1)
		t13_phase(t, PXY_C2S, P13_NONE);
	else
		t13_phase(t, PXY_C2S, P13_HS);
	t->keys_pending = 0;
	t->keys_since = pxy_now_ns();
	if (!t13_load(t, PXY_S2C) && t->decrypting && !t->cfg.require_keys)
		set_verdict(t, PXY_V_ALLOW);
}

/*
 * A HelloRetryRequest: it goes on to the client (which must answer it), the
 * verdict still waits. RFC 8446 §4.4.1: the transcript restarts from the
 * first ClientHello's hash.
 */
static int hrr13(struct pxy_tap *t)
{
	const struct pxy_suite *s = pxy_suite_find(t->sh.suite);
	uint8_t hash[PXY_MAX_HASH], *hrr;
	size_t hl, hrr_len = t->tr_len - t->t13_ch_len;
	int r;

	if (!s || s->kx != PXY_KX_TLS13 || t->t13_hrr || !t->tr)
		return PXY_E_UNEXPECTED_MSG; /* one HelloRetryRequest, for a TLS 1.3 suite */
	PXY_TRY(pxy_transcript_hash(s->prf, t->tr, t->t13_ch_len, hash, &hl));
	hrr = malloc(hrr_len);
	if (!hrr)
		return PXY_E_NOMEM;
	memcpy(hrr, t->tr + t->t13_ch_len, hrr_len);
	t->tr_len = 0;
	r = tr_append(t, (const uint8_t[]){ PXY_HS_MESSAGE_HASH, 0, 0, (uint8_t)hl }, 4);
	if (r == PXY_OK)
		r = tr_append(t, hash, hl);
	if (r == PXY_OK)
		r = tr_append(t, hrr, hrr_len);
	free(hrr);
	t->t13_hrr = 1;
	t->info.hello_retry = 1;
	t->pass_open = 1;
	/* RFC 8446 §4.1.2: no 0-RTT after a HelloRetryRequest; what the client sent is skipped */
	if (t->info.early_data == 1)
		t->info.early_data = 3;
	free_waiting(t, &t->dir[PXY_C2S]);
	return r;
}

/* The second ClientHello (after a HelloRetryRequest): the same client, the same random. */
static int on_client_hello2(struct pxy_tap *t, const struct pxy_hs_msg *m)
{
	struct pxy_client_hello ch2;

	PXY_TRY(pxy_hs_parse_client_hello(m->body, &ch2));
	PXY_GUARD(!memcmp(ch2.random, t->ch.random, 32), PXY_E_ILLEGAL_PARAM);
	ch2.ticket_data = NULL;
	ch2.early_data = 0;
	t->ch = ch2;
	t->t13_ch2 = 1;
	return tr_append(t, m->raw, m->raw_len);
}

static void on_record(struct pxy_tap *t, enum pxy_dir d, struct pxy_record *r)
{
	struct tap_dir *td = &t->dir[d];
	struct pxy_cur body = pxy_cur_make(r->buf ? r->buf + PXY_TLS_HDR_LEN : NULL, r->h.len);
	int e = PXY_OK;

	td->last_version = r->h.version;
	t->info.records[d]++;
	retry_forwarded(t);
	if (d == PXY_S2C && t->c2s_unread) {
		server_answers(t, r);
		pxy_recbuf_put(r->buf);
		return;
	}
	retry_resume(t, 0);
	if (t->tls13) {
		on_record13(t, d, r);
		return;
	}
	if (td->encrypted) {
		on_encrypted_record(t, d, r);
		return;
	}
	if (t->t13_hrr && r->h.type == PXY_CT_CHANGE_CIPHER_SPEC) {
		/* RFC 8446 D.4: the compatibility ChangeCipherSpec around a HelloRetryRequest */
		on_record13(t, d, r);
		return;
	}
	if (d == PXY_C2S && t->have_ch && !t->have_sh && t->ch.offers_tls13 &&
	    (r->h.type == PXY_CT_CHANGE_CIPHER_SPEC || (r->h.type == PXY_CT_APPLICATION_DATA && t->ch.early_data))) {
		/* a TLS 1.3 client's compatibility ChangeCipherSpec, and its 0-RTT data, before the server has
		 * answered: ignored, or (with forwarded secrets) kept until the server says whether it takes it */
		if (r->h.type == PXY_CT_APPLICATION_DATA && t->cfg.keys && t->inspect) {
			t->decrypting = 1;
			t13_record(t, d, r);
			return;
		}
		on_record13(t, d, r);
		return;
	}
	/* RFC 5246 §6.2.1: TLSPlaintext.length <= 2^14, and no empty handshake,
	 * alert or ChangeCipherSpec fragments */
	if (r->h.len > PXY_TLS_MAX_PLAINTEXT) {
		e = PXY_E_RECORD_OVERFLOW;
		goto out;
	}
	if (r->h.len == 0 && r->h.type != PXY_CT_APPLICATION_DATA) {
		e = PXY_E_EMPTY_RECORD;
		goto out;
	}
	/* before a ClientHello only the client's handshake, or a server's alert, makes sense */
	if (!t->have_ch && !(d == PXY_C2S && r->h.type == PXY_CT_HANDSHAKE) &&
	    !(d == PXY_S2C && r->h.type == PXY_CT_ALERT)) {
		e = d == PXY_C2S ? PXY_E_NOT_TLS : PXY_E_UNEXPECTED_MSG;
		goto out;
	}
	switch (r->h.type) {
	case PXY_CT_CHANGE_CIPHER_SPEC: {
		uint8_t v;

		if (pxy_cur_u8(&body, &v) < 0 || v != 1 || body.left) {
			e = PXY_E_DECODE;
			break;
		}
		/* a handshake message may not straddle ChangeCipherSpec */
		if (!pxy_hs_empty(&td->hs)) {
			e = PXY_E_UNEXPECTED_MSG;
			break;
		}
		e = hs_expect(t, d, PXY_HS_CCS);
		if (e < 0)
			break;
		/* --require-keys: the server's encrypted flight starts here; it waits until the keys verify */
		if (t->hold_keys && d == PXY_S2C && t->info.verdict == PXY_V_PENDING)
			t->pass_open = 0;
		/* ChangeCipherSpec right after ServerHello: an abbreviated handshake */
		if (t->info.verdict == PXY_V_PENDING && d == PXY_S2C && !t->hold_keys && !resume(t))
			break;
		td->encrypted = 1;
		td->seq = 0;
		break;
	}
	case PXY_CT_ALERT:
		on_alert(t, d, body);
		break;
	case PXY_CT_HANDSHAKE:
		e = pxy_hs_feed(&td->hs, body.p, body.left);
		if (e == PXY_OK)
			drain_hs(t, d, 0);
		break;
	case PXY_CT_HEARTBEAT:
		break;
	default:
		e = PXY_E_UNEXPECTED_MSG; /* application data before ChangeCipherSpec */
		break;
	}
out:
	pxy_recbuf_put(r->buf);
	if (e < 0)
		tap_fail(t, d, e);
}

/*
 * An SSLv2-compatible ClientHello (RFC 5246 Appendix E.2), the client's first
 * record: a 2-byte header with the high bit set (the length), then msg_type 1.
 * Gathered here (the record reader knows only TLS records); once whole it is
 * the session's ClientHello, hashed into the transcript from msg_type on.
 * 1 when it is whole and taken, 0 for more bytes, or an error.
 */
static int sslv2_feed(struct pxy_tap *t, struct pxy_cur *in)
{
	struct pxy_cur msg;
	int e;

	while (t->v2_hdr_len < 3 && in->left) {
		t->v2_hdr[t->v2_hdr_len++] = in->p[0];
		in->p++;
		in->left--;
	}
	if (t->v2_hdr_len < 3)
		return 0;
	if (!t->v2) {
		size_t len = ((size_t)(t->v2_hdr[0] & 0x7f) << 8) | t->v2_hdr[1];

		/* not a CLIENT-HELLO, or too short to be one: not TLS */
		if (t->v2_hdr[2] != PXY_HS_CLIENT_HELLO || len < 9)
			return PXY_E_NOT_TLS;
		t->v2 = malloc(len);
		if (!t->v2)
			return PXY_E_NOMEM;
		t->v2[0] = t->v2_hdr[2];
		t->v2_len = 1;
		t->v2_need = len;
	}
	while (t->v2_len < t->v2_need && in->left) {
		size_t n = PXY_MIN(in->left, t->v2_need - t->v2_len);

		memcpy(t->v2 + t->v2_len, in->p, n);
		t->v2_len += n;
		in->p += n;
		in->left -= n;
	}
	if (t->v2_len < t->v2_need)
		return 0;
	msg = pxy_cur_make(t->v2, t->v2_len);
	e = pxy_hs_parse_sslv2_client_hello(msg, &t->ch);
	if (e == PXY_OK)
		e = hs_expect(t, PXY_C2S, PXY_HS_CLIENT_HELLO);
	if (e == PXY_OK)
		e = tr_append(t, t->v2, t->v2_len); /* RFC 5246 E.2: the hash covers it from msg_type on */
	free(t->v2);
	t->v2 = NULL;
	if (e < 0)
		return e;
	t->have_ch = 1;
	t->info.records[PXY_C2S]++;
	t->dir[PXY_C2S].last_version = t->ch.version;
	t->cnt->sslv2_hellos++;
	return 1;
}

/* ---- public ---------------------------------------------------------------- */

struct pxy_tap *pxy_tap_new(const struct pxy_tap_cfg *cfg, const struct pxy_tap_hooks *hooks)
{
	struct pxy_tap *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cfg = *cfg;
	if (hooks)
		t->hooks = *hooks;
	t->cnt = cfg->counters ? cfg->counters : &t->own_cnt;
	if (!t->cfg.max_hs_msg)
		t->cfg.max_hs_msg = 256 * 1024;
	if (!t->cfg.max_pending)
		t->cfg.max_pending = 16 * 1024 * 1024;
	t->tr_max = 4 * t->cfg.max_hs_msg + 4096;
	t->shape = &shape_full;
	t->inspect = 1;
	for (int d = 0; d < 2; d++) {
		pxy_rec_init(&t->dir[d].rec);
		pxy_hs_init(&t->dir[d].hs, t->cfg.max_hs_msg);
	}
	return t;
}

static void tap_feed(struct pxy_tap *t, enum pxy_dir d, const uint8_t *p, size_t n);

void pxy_tap_feed(struct pxy_tap *t, enum pxy_dir d, const uint8_t *p, size_t n)
{
	tap_feed(t, d, p, n);
	/* records opened in the tap (stream ciphers) are applied as an engine's results are */
	while (t->local_head) {
		struct tap_job *j = t->local_head;

		t->local_head = j->local_next;
		if (!t->local_head)
			t->local_tail = NULL;
		j->local_next = NULL;
		pxy_tap_job_done(&j->job);
	}
}

static void tap_feed(struct pxy_tap *t, enum pxy_dir d, const uint8_t *p, size_t n)
{
	struct tap_dir *td = &t->dir[d];
	struct pxy_cur in = pxy_cur_make(p, n);
	int first = 0;

	if (d == PXY_C2S && t->c2s_unread)
		return; /* forwarded unread: the server answers it */
	if (d == PXY_C2S && n && !t->c2s_begun) {
		t->c2s_begun = 1;
		first = 1;
	}
	/* the client's first record with the high bit set: an SSLv2-compatible ClientHello */
	if (d == PXY_C2S && t->inspect && !t->have_ch && (t->v2_hdr_len || (first && (in.p[0] & 0x80)))) {
		int e = sslv2_feed(t, &in);

		if (e < 0) {
			tap_fail(t, d, e == PXY_E_RECORD_VERSION || e == PXY_E_DECODE ? PXY_E_NOT_TLS : e);
			return;
		}
		if (e == 0)
			return;
	}
	while (t->inspect) {
		struct pxy_record r;
		int ev = pxy_rec_next(&td->rec, &in, &r);

		if (ev < 0) {
			/* the client's very first bytes are not a TLS record at all */
			if (d == PXY_C2S && t->info.records[PXY_C2S] == 0 && pxy_err_class(ev) == PXY_EC_PROTOCOL)
				ev = PXY_E_NOT_TLS;
			tap_fail(t, d, ev);
			return;
		}
		if (ev == PXY_REC_MORE)
			return;
		if (ev == PXY_REC_HEADER) {
			/* ciphertext we will not decrypt is counted, not copied */
			if (td->encrypted && !t->decrypting)
				pxy_rec_skip(&td->rec);
			continue;
		}
		on_record(t, d, &r);
	}
}

void pxy_tap_eof(struct pxy_tap *t, enum pxy_dir d)
{
	/* with a shared store an answer may still come: the wait goes on past the
	 * end of the connection, as pxy_tap_finish lets it */
	retry_resume(t, !t->cfg.shared_sessions);
	if (t->info.verdict == PXY_V_PENDING && d == PXY_S2C) {
		/* nothing more will come to judge; what is held can go */
		set_verdict(t, PXY_V_ALLOW);
		stop_inspect(t, PXY_R_INCOMPLETE);
	}
}

void pxy_tap_hold_overflow(struct pxy_tap *t)
{
	if (t->info.verdict != PXY_V_PENDING)
		return;
	set_reason(t, PXY_R_HANDSHAKE_TOO_LARGE);
	set_verdict(t, PXY_V_REJECT);
	stop_inspect(t, PXY_R_HANDSHAKE_TOO_LARGE);
}

enum pxy_verdict pxy_tap_verdict(const struct pxy_tap *t)
{
	return t->info.verdict == PXY_V_PENDING && t->pass_open ? PXY_V_ALLOW : t->info.verdict;
}

uint16_t pxy_tap_alert_version(const struct pxy_tap *t, enum pxy_dir d)
{
	/* Once the server has spoken, both peers expect the version it chose in
	 * every record (RFC 5246 appendix E.1; TLS 1.3 keeps 0x0303 in its
	 * ServerHello and records); before that, mirror what the receiving side
	 * last saw. */
	uint16_t v = t->dir[d].last_version;

	if (t->have_sh)
		v = t->sh.legacy_version;
	if ((v >> 8) != 3 || v > PXY_TLS12)
		v = PXY_TLS12;
	return v;
}

const struct pxy_tap_info *pxy_tap_info(const struct pxy_tap *t)
{
	return &t->info;
}

enum pxy_outcome pxy_tap_outcome(const struct pxy_tap *t, enum pxy_reason *reason)
{
	enum pxy_reason r = t->info.reason;

	if (t->info.verdict == PXY_V_REJECT) {
		*reason = r;
		return PXY_O_REJECTED;
	}
	if (t->info.passthrough) {
		*reason = r;
		return PXY_O_PASSTHROUGH;
	}
	if (t->info.fin_ok[0] || t->info.fin_ok[1]) {
		/* the keys are proven; a connection that ended before the other
		 * Finished still did not finish its handshake */
		*reason = r == PXY_R_NONE && !(t->info.fin_ok[0] && t->info.fin_ok[1]) ? PXY_R_INCOMPLETE : r;
		return PXY_O_DECRYPTED;
	}
	*reason = r != PXY_R_NONE ? r : PXY_R_INCOMPLETE;
	return PXY_O_NOT_DECRYPTED;
}

int pxy_passthrough_parse(const char *list, uint32_t *mask, char *why, size_t why_len)
{
	const char *p = list;

	*mask = 0;
	if (!strcmp(list, "none"))
		return 0;
	if (!strcmp(list, "all")) {
		*mask = PXY_PASSTHROUGH_ABLE;
		return 0;
	}
	while (*p) {
		size_t n = strcspn(p, ",");
		int found = 0;

		for (int r = 1; r < PXY_R__COUNT; r++)
			if ((PXY_PASSTHROUGH_ABLE & (1u << r)) && strlen(reason_names[r]) == n &&
			    !strncmp(p, reason_names[r], n)) {
				*mask |= 1u << r;
				found = 1;
			}
		if (!found) {
			snprintf(why, why_len,
				 "'%.*s' is not one of tls13, unsupported-version, non-rsa-kx, unsupported-suite, "
				 "cert-mismatch, all, none",
				 (int)n, p);
			return -1;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

unsigned pxy_tap_jobs_inflight(const struct pxy_tap *t)
{
	return t->inflight;
}

static void tap_free(struct pxy_tap *t)
{
	for (int d = 0; d < 2; d++) {
		struct tap_dir *td = &t->dir[d];

		free_waiting(t, td);
		while (td->fly_head) { /* all done by now (inflight == 0) */
			struct tap_job *j = td->fly_head;
			td->fly_head = j->next;
			free_job(j);
		}
		pxy_rec_free(&td->rec);
		pxy_hs_free(&td->hs);
		pxy_cpu_ctx_free(td->stream);
	}
	free_transcript(t);
	free(t->v2);
	pxy_wipe(t->ms, sizeof(t->ms));
	pxy_wipe(t->keys, sizeof(t->keys));
	pxy_wipe(t->t13, sizeof(t->t13));
	pxy_wipe(t->session_hash, sizeof(t->session_hash));
	free(t);
}

/* After pxy_tap_finish: once nothing is in flight, report and go. */
static void maybe_finish(struct pxy_tap *t)
{
	if (!t->finishing || t->inflight || t->resume_pending || (t->keys_pending && t->decrypting))
		return;
	/* records that waited for keys that will never come */
	free_waiting(t, &t->dir[0]);
	free_waiting(t, &t->dir[1]);
	if (t->hooks.done)
		t->hooks.done(t->hooks.ctx);
	tap_free(t);
}

void pxy_tap_job_done(struct pxy_job *job)
{
	struct tap_job *j = (struct tap_job *)job;
	struct pxy_tap *t = job->owner;

	t->inflight--;
	pxy_hist_observe(job->type == PXY_JOB_RSA_DECRYPT ? &t->cnt->rsa_latency : &t->cnt->record_latency,
			 pxy_now_ns() - job->submit_ns);
	if (job->type == PXY_JOB_RSA_DECRYPT) {
		on_rsa_done(t, j);
		free_job(j);
	} else {
		struct tap_dir *td = &t->dir[j->dir];

		j->done = 1;
		/* a plaintext the engine lent (valid until its next flush) that is not applied now:
		 * an earlier record of its direction, or of the other in arrival order, is still out */
		if (j->job.u.rec.pt_ext &&
		    (td->fly_head != j || (t->ordered && oldest_pending(&t->dir[!j->dir]) < j->arr)))
			take_plaintext(j);
		/* applying one direction may let the other go on (arrival order) */
		for (int d = j->dir, progress = 1; progress;) {
			progress = drain_done(t, (enum pxy_dir)d);
			progress |= drain_done(t, (enum pxy_dir)!d);
		}
		/* TLS 1.3: what waited behind the engine's records goes on */
		if (t->tls13 && !t->closed && t->decrypting) {
			t13_pump(t, PXY_S2C);
			t13_pump(t, PXY_C2S);
		}
	}
	if (t->closed && t->inflight == 0)
		tap_free(t);
	else
		maybe_finish(t);
}

int pxy_tap_handshake_done(const struct pxy_tap *t)
{
	/* TLS 1.3 whose secrets have not come: both sides sent encrypted records, as far as the
	 * handshake timeout can tell it is over */
	return !t->inspect || (t->dir[PXY_C2S].fin_seen && t->dir[PXY_S2C].fin_seen) ||
	       (t->tls13 && t->info.verdict == PXY_V_ALLOW && t->t13_enc[PXY_C2S] && t->t13_enc[PXY_S2C]);
}

void pxy_tap_poke(struct pxy_tap *t)
{
	if (!t || t->closed)
		return;
	retry_resume(t, 0);
	retry_forwarded(t);
	maybe_finish(t);
}

int pxy_tap_finish(struct pxy_tap *t)
{
	/* forwarded secrets may still come after the connection ends (a remote forwarder's lines trail
	 * the session): the wait goes on, up to --key-wait from when it began, as pxy_tap_poke lets it */
	retry_forwarded(t);
	/* a shared tier may still answer: wait for it as a live connection would */
	retry_resume(t, !t->cfg.shared_sessions);
	t->finishing = 1;
	if (t->resume_pending || (t->keys_pending && t->decrypting))
		return 1;
	maybe_finish(t);
	return 0;
}

void pxy_tap_close(struct pxy_tap *t)
{
	if (!t)
		return;
	t->closed = 1;
	stop_inspect(t, PXY_R_NONE);
	if (t->inflight == 0)
		tap_free(t);
}

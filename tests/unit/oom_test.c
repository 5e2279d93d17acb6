/*
 * Allocation failures inside the tap: this program is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, so every allocation the
 * proxy's own code makes (the tap, the handshake reader, the transcript, the
 * session cache, the cpu engine) can be made to fail. A recorded session is
 * replayed once per allocation, failing the k-th one: whatever fails, the tap
 * must not crash or leak (ASan runs this too), must report the connection
 * once, and must either decrypt exactly the bytes sent or stop with
 * internal-error (or engine-error, when the engine's allocation is the one
 * that failed), what it recovered up to there a prefix of the bytes sent. The sweep ends at
 * the first run in which no allocation failed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/cert.h"
#include "tls/sessions.h"
#include "tls/tap.h"
#include "testutil.h"

/* ---- failing allocator ------------------------------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t m, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t m, size_t n);
void *__wrap_realloc(void *p, size_t n);

static long g_countdown = -1; /* allocations left before the one that fails; -1: none fails */
static int g_failed;

static int should_fail(void)
{
	if (g_countdown < 0)
		return 0;
	if (g_countdown-- == 0) {
		g_failed = 1;
		return 1;
	}
	return 0;
}

void *__wrap_malloc(size_t n)
{
	return should_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t m, size_t n)
{
	return should_fail() ? NULL : __real_calloc(m, n);
}

void *__wrap_realloc(void *p, size_t n)
{
	return should_fail() ? NULL : __real_realloc(p, n);
}

/* ---- a recorded session -------------------------------------------------- */

#define MAX_CHUNKS 64

struct recording {
	uint8_t *p[MAX_CHUNKS];
	size_t n[MAX_CHUNKS];
	uint8_t dir[MAX_CHUNKS];
	int count;
	uint8_t sent[2][6000];
	size_t sent_len[2];
};

static void record_chunk(void *ctx, enum pxy_dir d, uint8_t *p, size_t n)
{
	struct recording *r = ctx;

	assert_true(r->count < MAX_CHUNKS);
	r->p[r->count] = malloc(n);
	assert_non_null(r->p[r->count]);
	memcpy(r->p[r->count], p, n);
	r->n[r->count] = n;
	r->dir[r->count++] = (uint8_t)d;
}

static struct tu_ident srv, cli;

static void record(struct recording *r, const char *cipher, int client_auth)
{
	struct tu_pair_opts o = { .ciphers = cipher, .server = &srv, .client_auth = client_auth, .client_id = &cli };
	struct tu_pair p;

	memset(r, 0, sizeof(*r));
	r->sent_len[PXY_C2S] = 3000;
	r->sent_len[PXY_S2C] = sizeof(r->sent[PXY_S2C]);
	tu_fill(r->sent[PXY_C2S], r->sent_len[PXY_C2S], 1);
	tu_fill(r->sent[PXY_S2C], r->sent_len[PXY_S2C], 2);
	assert_int_equal(tu_pair_new(&p, &o), 0);
	p.on_bytes = record_chunk;
	p.ctx = r;
	assert_int_equal(tu_pair_handshake(&p), 0);
	assert_int_equal(tu_pair_send(&p, PXY_C2S, r->sent[PXY_C2S], r->sent_len[PXY_C2S]), 0);
	assert_int_equal(tu_pair_send(&p, PXY_S2C, r->sent[PXY_S2C], r->sent_len[PXY_S2C]), 0);
	tu_pair_free(&p);
}

static void recording_free(struct recording *r)
{
	for (int i = 0; i < r->count; i++)
		free(r->p[i]);
}

/* ---- one replay ---------------------------------------------------------- */

struct run {
	struct pxy_tap *t;
	uint8_t *pt[2];
	size_t pt_len[2];
	int done;
	enum pxy_outcome outcome;
	enum pxy_reason reason;
};

static void on_plain(void *ctx, enum pxy_dir d, const uint8_t *p, size_t n)
{
	struct run *w = ctx;
	uint8_t *nb = __real_realloc(w->pt[d], w->pt_len[d] + n); /* the test's own: never fails */

	assert_non_null(nb);
	w->pt[d] = nb;
	memcpy(w->pt[d] + w->pt_len[d], p, n);
	w->pt_len[d] += n;
}

static void on_done(void *ctx)
{
	struct run *w = ctx;

	w->done++;
	w->outcome = pxy_tap_outcome(w->t, &w->reason);
}

/* Replay r through a new tap with the k-th allocation failing; 1 when one failed. */
static int replay(const struct recording *r, struct pxy_engine *e, const struct pxy_identity *id,
		  struct pxy_sessions *sessions, long k, int *saw_internal)
{
	struct pxy_tap_cfg cfg = { .identity = id, .engine = e, .max_hs_msg = 65536, .max_pending = 1 << 22,
				   .sessions = sessions };
	struct run w;
	struct pxy_tap_hooks hooks = { .ctx = &w, .plaintext = on_plain, .done = on_done };
	int failed;

	memset(&w, 0, sizeof(w));
	g_failed = 0;
	g_countdown = k;
	w.t = pxy_tap_new(&cfg, &hooks);
	if (!w.t) {
		/* no tap, no connection: the io loop resets the client and logs it */
		g_countdown = -1;
		assert_true(g_failed);
		return 1;
	}
	for (int i = 0; i < r->count; i++) {
		pxy_tap_feed(w.t, r->dir[i], r->p[i], r->n[i]);
		tu_drain(e);
	}
	pxy_tap_eof(w.t, PXY_C2S);
	pxy_tap_eof(w.t, PXY_S2C);
	pxy_tap_finish(w.t); /* as the io loop ends a connection: report once every job is back */
	tu_drain_all(e);
	failed = g_failed;
	g_countdown = -1;

	assert_int_equal(w.done, 1);
	for (int d = 0; d < 2; d++) {
		assert_true(w.pt_len[d] <= r->sent_len[d]);
		if (w.pt_len[d])
			assert_memory_equal(w.pt[d], r->sent[d], w.pt_len[d]);
	}
	if (getenv("OOM_DEBUG"))
		print_message("k=%ld failed=%d outcome=%s reason=%s pt=%zu/%zu\n", k, failed, pxy_outcome_name(w.outcome),
			      pxy_reason_name(w.reason), w.pt_len[0], w.pt_len[1]);
	if (w.reason == PXY_R_NONE) {
		/* a failure that cost nothing (e.g. the session not cached) */
		assert_int_equal(w.outcome, PXY_O_DECRYPTED);
		assert_int_equal(w.pt_len[PXY_C2S], r->sent_len[PXY_C2S]);
		assert_int_equal(w.pt_len[PXY_S2C], r->sent_len[PXY_S2C]);
	} else {
		/* rejected before the verdict, not-decrypted before the keys were
		 * verified, decrypted (up to there) after */
		assert_true(failed);
		if (w.reason != PXY_R_ENGINE)
			assert_int_equal(w.reason, PXY_R_INTERNAL);
		*saw_internal |= w.reason == PXY_R_INTERNAL;
	}
	free(w.pt[0]);
	free(w.pt[1]);
	return failed;
}

static void sweep(const char *cipher, int client_auth)
{
	struct recording r;
	struct pxy_identity id;
	struct pxy_engine *e = tu_engine(&srv, &id, 0);
	struct pxy_sessions *sessions = pxy_sessions_new(16, 60);
	int saw_internal = 0;
	long k;

	assert_non_null(e);
	assert_non_null(sessions);
	record(&r, cipher, client_auth);
	for (k = 0; k < 5000; k++)
		if (!replay(&r, e, &id, sessions, k, &saw_internal))
			break;
	print_message("%s%s: %ld allocations failed one at a time\n", cipher, client_auth ? " client-auth" : "", k);
	assert_true(k > 0 && k < 5000);
	assert_true(saw_internal);
	recording_free(&r);
	pxy_sessions_free(sessions);
	pxy_engine_close(e);
	pxy_identity_free(&id);
}

static void test_oom_gcm(void **state)
{
	(void)state;
	sweep("AES128-GCM-SHA256", 0);
}

static void test_oom_cbc_client_auth(void **state)
{
	(void)state;
	sweep("AES256-SHA", 1);
}

static int setup(void **state)
{
	(void)state;
	return tu_ident_make(&srv, 2048, "server") || tu_ident_make(&cli, 2048, "client") ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_ident_free(&srv);
	tu_ident_free(&cli);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oom_gcm),
		cmocka_unit_test(test_oom_cbc_client_auth),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * TLS 1.3 through the tap with forwarded secrets, against real OpenSSL peers
 * (in memory): the server's key log callback feeds the key store line by
 * line (as --key-source would read them), every byte the peers exchange goes
 * to the tap in the order the proxy would see it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "testutil.h"
#include "tls/keystore.h"
#include "tls/tap.h"
#include "util/util.h"

static struct tu_ident srv, other, cli;

/* what the server logs goes here (the callback has no context of its own) */
static struct pxy_keystore *g_ks;
static int g_hold_keys;   /* keep the lines in g_held instead (keys that come late) */
static int g_corrupt;     /* flip a bit of every SERVER_HANDSHAKE_TRAFFIC_SECRET */
static char g_held[16][256];
static int g_n_held;

static void keylog_cb(const SSL *ssl, const char *line)
{
	char why[200], copy[256];
	size_t n = strlen(line);

	(void)ssl;
	assert_true(n < sizeof(copy));
	memcpy(copy, line, n + 1);
	if (g_corrupt && !strncmp(copy, "SERVER_HANDSHAKE_TRAFFIC_SECRET ", 32))
		copy[n - 1] = copy[n - 1] == '0' ? '1' : '0';
	if (g_hold_keys) {
		assert_true(g_n_held < 16);
		memcpy(g_held[g_n_held++], copy, n + 1);
		return;
	}
	assert_int_equal(pxy_keystore_add_line(g_ks, copy, n, pxy_now_ns(), why, sizeof(why)), 0);
}

static void release_held(void)
{
	char why[200];

	for (int i = 0; i < g_n_held; i++)
		assert_int_equal(pxy_keystore_add_line(g_ks, g_held[i], strlen(g_held[i]), pxy_now_ns(), why, sizeof(why)), 0);
	g_n_held = 0;
	g_hold_keys = 0;
}

struct w13 {
	struct pxy_tap *t;
	struct pxy_engine *e;
	uint8_t *pt[2];
	size_t pt_len[2];
	char keylog[4096];
	size_t keylog_len;
	int complete;
	int done;
	enum pxy_outcome outcome;
	enum pxy_reason reason;
	struct pxy_tap_info final;
	int byte_by_byte;
};

static void on_plain(void *ctx, enum pxy_dir d, const uint8_t *p, size_t n)
{
	struct w13 *w = ctx;

	w->pt[d] = realloc(w->pt[d], w->pt_len[d] + n);
	memcpy(w->pt[d] + w->pt_len[d], p, n);
	w->pt_len[d] += n;
}

static void on_keylog13(void *ctx, const char *lines, size_t len, int complete)
{
	struct w13 *w = ctx;

	assert_true(w->keylog_len + len < sizeof(w->keylog));
	memcpy(w->keylog + w->keylog_len, lines, len);
	w->keylog_len += len;
	w->keylog[w->keylog_len] = '\0';
	w->complete |= complete;
}

static void on_done(void *ctx)
{
	struct w13 *w = ctx;

	w->done++;
	w->outcome = pxy_tap_outcome(w->t, &w->reason);
	w->final = *pxy_tap_info(w->t);
	w->t = NULL;
}

static void on_bytes(void *ctx, enum pxy_dir d, uint8_t *p, size_t n)
{
	struct w13 *w = ctx;

	if (!w->t)
		return;
	for (size_t i = 0; i < n; i += w->byte_by_byte ? 1 : n) {
		pxy_tap_feed(w->t, d, p + i, w->byte_by_byte ? 1 : n);
		tu_drain(w->e);
	}
}

struct f13 {
	struct pxy_identity id;
	struct pxy_engine *e;
	struct pxy_tap_counters cnt;
	struct w13 w;
	struct tu_pair p;
};

static void f13_tap(struct f13 *f, int require_keys)
{
	struct pxy_tap_cfg cfg = { .identity = &f->id, .engine = f->e, .counters = &f->cnt, .max_pending = 1 << 22,
				   .keys = g_ks, .key_wait_ms = 100, .require_keys = (uint8_t)require_keys };
	struct pxy_tap_hooks hooks = { .ctx = &f->w, .plaintext = on_plain, .keylog13 = on_keylog13, .done = on_done };

	free(f->w.pt[0]); /* a connection before this one */
	free(f->w.pt[1]);
	memset(&f->w, 0, sizeof(f->w));
	f->w.e = f->e;
	f->w.t = pxy_tap_new(&cfg, &hooks);
	assert_non_null(f->w.t);
}

static void f13_open(struct f13 *f, const struct tu_ident *expect, const struct tu_pair_opts *o, int require_keys)
{
	char err[200];

	memset(f, 0, sizeof(*f));
	g_ks = pxy_keystore_new(NULL, 60, 64, err, sizeof(err));
	assert_non_null(g_ks);
	f->e = tu_engine(expect, &f->id, 0);
	assert_non_null(f->e);
	f13_tap(f, require_keys);
	assert_int_equal(tu_pair_new(&f->p, o), 0);
	SSL_CTX_set_keylog_callback(f->p.sctx, keylog_cb);
	f->p.on_bytes = on_bytes;
	f->p.ctx = &f->w;
}

/* the connection ends: the tap finishes (and reports through on_done), after waiting up to
 * --key-wait for secrets that have not come (the loop pokes it meanwhile) */
static void f13_finish(struct f13 *f)
{
	if (f->w.t && pxy_tap_finish(f->w.t)) {
		for (int i = 0; i < 100 && !f->w.done; i++) {
			struct timespec ts = { 0, 5000000 };

			nanosleep(&ts, NULL);
			pxy_tap_poke(f->w.t);
		}
	}
	tu_drain_all(f->e);
	assert_int_equal(f->w.done, 1);
}

static void f13_close(struct f13 *f)
{
	if (f->w.t)
		pxy_tap_close(f->w.t);
	tu_drain_all(f->e);
	tu_pair_free(&f->p);
	free(f->w.pt[0]);
	free(f->w.pt[1]);
	pxy_engine_close(f->e);
	pxy_identity_free(&f->id);
	pxy_keystore_free(g_ks);
	g_ks = NULL;
	g_hold_keys = g_corrupt = g_n_held = 0;
}

static struct tu_pair_opts opts13(const char *suite)
{
	struct tu_pair_opts o = { .min_version = TLS1_3_VERSION, .max_version = TLS1_3_VERSION, .ciphersuites = suite,
				  .server = &srv };
	return o;
}

/* data both ways, several records each, and the tap's plaintext is exactly it */
static void exchange(struct f13 *f, uint32_t seed)
{
	static uint8_t a[40000], b[70000];

	tu_fill(a, sizeof(a), seed);
	tu_fill(b, sizeof(b), seed + 1);
	assert_int_equal(tu_pair_send(&f->p, PXY_C2S, a, sizeof(a)), 0);
	assert_int_equal(tu_pair_send(&f->p, PXY_S2C, b, sizeof(b)), 0);
	assert_int_equal(f->w.pt_len[PXY_C2S], sizeof(a));
	assert_int_equal(f->w.pt_len[PXY_S2C], sizeof(b));
	assert_memory_equal(f->w.pt[PXY_C2S], a, sizeof(a));
	assert_memory_equal(f->w.pt[PXY_S2C], b, sizeof(b));
}

static void expect_decrypted(struct f13 *f)
{
	f13_finish(f);
	assert_int_equal(f->w.outcome, PXY_O_DECRYPTED);
	assert_int_equal(f->w.reason, PXY_R_NONE);
	assert_int_equal(f->w.final.version, 0x0304);
	assert_true(f->w.final.keys_forwarded);
	assert_true(f->w.final.fin_ok[0] && f->w.final.fin_ok[1]);
	assert_int_equal(f->w.final.verdict, PXY_V_ALLOW);
}

static void test_every_suite(void **state)
{
	static const char *const suites[] = { "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
					      "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256",
					      "TLS_AES_128_CCM_8_SHA256" };

	(void)state;
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		struct tu_pair_opts o = opts13(suites[i]);
		struct f13 f;

		f13_open(&f, &srv, &o, 0);
		assert_int_equal(tu_pair_handshake(&f.p), 0);
		/* the server's flight went on once its Finished verified */
		assert_int_equal(pxy_tap_verdict(f.w.t), PXY_V_ALLOW);
		exchange(&f, (uint32_t)i);
		/* the key log got the session's secrets, both application ones included */
		assert_non_null(strstr(f.w.keylog, "SERVER_HANDSHAKE_TRAFFIC_SECRET "));
		assert_non_null(strstr(f.w.keylog, "CLIENT_TRAFFIC_SECRET_0 "));
		assert_true(f.w.complete);
		expect_decrypted(&f);
		assert_int_equal(f.cnt.tls13_sessions, 1);
		/* the application records (16 KiB) went to the engine, the handshake's were opened in the tap */
		assert_true(f.e->stats.rec_open >= 6);
		f13_close(&f);
	}
}

static void test_byte_by_byte(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_256_GCM_SHA384");
	struct f13 f;

	(void)state;
	f13_open(&f, &srv, &o, 0);
	f.w.byte_by_byte = 1;
	assert_int_equal(tu_pair_handshake(&f.p), 0);
	exchange(&f, 7);
	expect_decrypted(&f);
	f13_close(&f);
}

static void test_hello_retry(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_128_GCM_SHA256");
	struct f13 f;

	(void)state;
	o.client_groups = "X25519:P-256";
	o.server_groups = "P-256";
	f13_open(&f, &srv, &o, 0);
	assert_int_equal(tu_pair_handshake(&f.p), 0);
	exchange(&f, 11);
	expect_decrypted(&f);
	assert_true(f.w.final.hello_retry);
	f13_close(&f);
}

static void test_key_update(void **state)
{
	struct tu_pair_opts o = opts13("TLS_CHACHA20_POLY1305_SHA256");
	struct f13 f;
	uint8_t m[5000];

	(void)state;
	f13_open(&f, &srv, &o, 0);
	assert_int_equal(tu_pair_handshake(&f.p), 0);
	exchange(&f, 3);
	/* the client updates and asks the server to: both directions move to new keys */
	assert_int_equal(SSL_key_update(f.p.c, SSL_KEY_UPDATE_REQUESTED), 1);
	tu_fill(m, sizeof(m), 5);
	assert_int_equal(tu_pair_send(&f.p, PXY_C2S, m, sizeof(m)), 0);
	assert_int_equal(tu_pair_send(&f.p, PXY_S2C, m, sizeof(m)), 0);
	/* and the server once more, unasked */
	assert_int_equal(SSL_key_update(f.p.s, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
	assert_int_equal(tu_pair_send(&f.p, PXY_S2C, m, sizeof(m)), 0);
	assert_int_equal(f.w.pt_len[PXY_C2S], 40000 + sizeof(m));
	assert_int_equal(f.w.pt_len[PXY_S2C], 70000 + 2 * sizeof(m));
	assert_memory_equal(f.w.pt[PXY_S2C] + 70000 + sizeof(m), m, sizeof(m));
	expect_decrypted(&f);
	assert_int_equal(f.w.final.key_updates[PXY_C2S], 1);
	assert_int_equal(f.w.final.key_updates[PXY_S2C], 2);
	f13_close(&f);
}

static void test_client_auth(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_128_GCM_SHA256");
	struct f13 f;

	(void)state;
	o.client_auth = 1;
	o.client_id = &cli;
	f13_open(&f, &srv, &o, 0);
	assert_int_equal(tu_pair_handshake(&f.p), 0);
	exchange(&f, 13);
	expect_decrypted(&f);
	assert_true(f.w.final.client_cert);
	f13_close(&f);
}

static int accept_any(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

/* post-handshake client authentication (RFC 8446 §4.6.2), twice, after a KeyUpdate of the client's:
 * each answer's Finished verifies under the client's current application secret */
static void test_post_handshake_auth(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_256_GCM_SHA384");
	struct f13 f;
	uint8_t m[3000];
	X509 *peer;

	(void)state;
	f13_open(&f, &srv, &o, 0);
	SSL_set_post_handshake_auth(f.p.c, 1);
	assert_int_equal(SSL_use_certificate(f.p.c, cli.x509), 1);
	assert_int_equal(SSL_use_PrivateKey(f.p.c, cli.pkey), 1);
	SSL_set_verify(f.p.s, SSL_VERIFY_PEER | SSL_VERIFY_POST_HANDSHAKE, accept_any);
	assert_int_equal(tu_pair_handshake(&f.p), 0);
	assert_null(SSL_get0_peer_certificate(f.p.s)); /* none asked for in the handshake */
	exchange(&f, 21);
	assert_int_equal(SSL_key_update(f.p.c, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
	tu_fill(m, sizeof(m), 22);
	assert_int_equal(tu_pair_send(&f.p, PXY_C2S, m, sizeof(m)), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(SSL_verify_client_post_handshake(f.p.s), 1);
		assert_int_equal(SSL_do_handshake(f.p.s), 1); /* sends the CertificateRequest */
		tu_pair_pump(&f.p);                            /* the client answers, the server reads it */
		assert_int_equal(tu_pair_send(&f.p, PXY_S2C, m, sizeof(m)), 0);
		assert_int_equal(tu_pair_send(&f.p, PXY_C2S, m, sizeof(m)), 0);
	}
	peer = SSL_get1_peer_certificate(f.p.s);
	assert_non_null(peer);
	X509_free(peer);
	assert_int_equal(f.w.pt_len[PXY_C2S], 40000 + 3 * sizeof(m));
	assert_int_equal(f.w.pt_len[PXY_S2C], 70000 + 2 * sizeof(m));
	assert_memory_equal(f.w.pt[PXY_C2S] + 40000 + 2 * sizeof(m), m, sizeof(m));
	expect_decrypted(&f);
	assert_int_equal(f.w.final.post_auth, 2);
	assert_true(f.w.final.client_cert);
	assert_int_equal(f.cnt.finished_mismatch, 0);
	f13_close(&f);
}

static void test_psk_resumption(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_128_GCM_SHA256");
	struct f13 f;
	struct tu_pair p2;
	SSL_SESSION *sess;
	uint8_t m[3000];

	(void)state;
	f13_open(&f, &srv, &o, 0);
	assert_int_equal(tu_pair_handshake(&f.p), 0);
	exchange(&f, 17); /* the tickets come with the server's first records */
	expect_decrypted(&f);
	sess = SSL_get1_session(f.p.c);
	assert_non_null(sess);
	assert_true(SSL_SESSION_is_resumable(sess));
	/* the next connection resumes it: no certificate, the keys from the PSK */
	f13_tap(&f, 0);
	o.resume = sess;
	assert_int_equal(tu_pair_new_resuming(&p2, &f.p, &o), 0);
	p2.on_bytes = on_bytes;
	p2.ctx = &f.w;
	assert_int_equal(tu_pair_handshake(&p2), 0);
	assert_true(SSL_session_reused(p2.c));
	tu_fill(m, sizeof(m), 19);
	assert_int_equal(tu_pair_send(&p2, PXY_C2S, m, sizeof(m)), 0);
	assert_int_equal(f.w.pt_len[PXY_C2S], sizeof(m));
	assert_memory_equal(f.w.pt[PXY_C2S], m, sizeof(m));
	expect_decrypted(&f);
	assert_true(f.w.final.resumed);
	tu_pair_free(&p2);
	SSL_SESSION_free(sess);
	f13_close(&f);
}

/* the server logs nothing: forwarding never waits, the session is not decrypted */
static void test_keys_missing(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_128_GCM_SHA256");
	struct f13 f;

	(void)state;
	f13_open(&f, &srv, &o, 0);
	g_hold_keys = 1;
	assert_int_equal(tu_pair_handshake(&f.p), 0);
	assert_int_equal(pxy_tap_verdict(f.w.t), PXY_V_ALLOW);
	{
		static uint8_t a[30000];

		/* the peers are not held up */
		tu_fill(a, sizeof(a), 23);
		assert_int_equal(tu_pair_send(&f.p, PXY_C2S, a, sizeof(a)), 0);
		assert_int_equal(tu_pair_send(&f.p, PXY_S2C, a, sizeof(a)), 0);
		assert_int_equal(f.p.got_len[PXY_C2S], sizeof(a));
	}
	f13_finish(&f);
	assert_int_equal(f.w.outcome, PXY_O_NOT_DECRYPTED);
	assert_int_equal(f.w.reason, PXY_R_KEYS_MISSING);
	assert_int_equal(f.cnt.keys_missing, 1);
	assert_int_equal(f.w.pt_len[0] + f.w.pt_len[1], 0);
	f13_close(&f);
}

/* the secrets come after the records: what waited is decrypted, in order */
static void test_keys_late(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_256_GCM_SHA384");
	struct f13 f;

	(void)state;
	f13_open(&f, &srv, &o, 0);
	g_hold_keys = 1;
	assert_int_equal(tu_pair_handshake(&f.p), 0);

	{
		static uint8_t a[20000];

		tu_fill(a, sizeof(a), 29);
		assert_int_equal(tu_pair_send(&f.p, PXY_C2S, a, sizeof(a)), 0);
		assert_int_equal(tu_pair_send(&f.p, PXY_S2C, a, sizeof(a)), 0);
		assert_int_equal(f.w.pt_len[0] + f.w.pt_len[1], 0);
		release_held();
		pxy_tap_poke(f.w.t);
		tu_drain_all(f.e); /* the application records went to the engine */
		assert_int_equal(f.w.pt_len[PXY_C2S], sizeof(a));
		assert_int_equal(f.w.pt_len[PXY_S2C], sizeof(a));
		assert_memory_equal(f.w.pt[PXY_C2S], a, sizeof(a));
		assert_memory_equal(f.w.pt[PXY_S2C], a, sizeof(a));
	}
	expect_decrypted(&f);
	f13_close(&f);
}

/* --require-keys: without the keys the server's flight stays held, and the session is refused */
static void test_require_keys(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_128_GCM_SHA256");
	struct f13 f;

	(void)state;
	f13_open(&f, &srv, &o, 1);
	g_hold_keys = 1;
	tu_pair_handshake(&f.p);
	assert_int_equal(pxy_tap_verdict(f.w.t), PXY_V_PENDING);
	f13_finish(&f);
	assert_int_equal(f.w.final.verdict, PXY_V_REJECT);
	assert_int_equal(f.w.reason, PXY_R_KEYS_MISSING);
	f13_close(&f);

	/* with them, it goes on as always */
	f13_open(&f, &srv, &o, 1);
	assert_int_equal(tu_pair_handshake(&f.p), 0);
	assert_int_equal(pxy_tap_verdict(f.w.t), PXY_V_ALLOW);
	exchange(&f, 31);
	expect_decrypted(&f);
	f13_close(&f);
}

/* a wrong secret: nothing opens, forwarding goes on (and with --require-keys it is refused) */
static void test_wrong_secret(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_128_GCM_SHA256");
	struct f13 f;

	(void)state;
	for (int req = 0; req < 2; req++) {
		f13_open(&f, &srv, &o, req);
		g_corrupt = 1;
		tu_pair_handshake(&f.p);
		assert_int_equal(pxy_tap_verdict(f.w.t), req ? PXY_V_REJECT : PXY_V_ALLOW);
		f13_finish(&f);
		assert_int_equal(f.w.reason, PXY_R_FINISHED_MISMATCH);
		assert_int_equal(f.w.pt_len[0] + f.w.pt_len[1], 0);
		f13_close(&f);
	}
}

/* the certificate inside the encrypted handshake is not the configured one: refused before the client sees it */
static void test_cert_mismatch(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_128_GCM_SHA256");
	struct f13 f;

	(void)state;
	o.server = &other;
	f13_open(&f, &srv, &o, 0);
	tu_pair_handshake(&f.p);
	assert_int_equal(pxy_tap_verdict(f.w.t), PXY_V_REJECT);
	f13_finish(&f);
	assert_int_equal(f.w.outcome, PXY_O_REJECTED);
	assert_int_equal(f.w.reason, PXY_R_CERT_MISMATCH);
	f13_close(&f);
}

/* without a key source TLS 1.3 is refused at ServerHello, as always */
static void test_no_key_source(void **state)
{
	struct tu_pair_opts o = opts13("TLS_AES_128_GCM_SHA256");
	struct f13 f;
	struct pxy_tap_cfg cfg;

	(void)state;
	f13_open(&f, &srv, &o, 0);
	pxy_tap_close(f.w.t);
	memset(&cfg, 0, sizeof(cfg));
	cfg.identity = &f.id;
	cfg.engine = f.e;
	memset(&f.w, 0, sizeof(f.w));
	f.w.e = f.e;
	{
		struct pxy_tap_hooks hooks = { .ctx = &f.w, .plaintext = on_plain, .done = on_done };

		f.w.t = pxy_tap_new(&cfg, &hooks);
	}
	tu_pair_handshake(&f.p);
	assert_int_equal(pxy_tap_verdict(f.w.t), PXY_V_REJECT);
	f13_finish(&f);
	assert_int_equal(f.w.reason, PXY_R_TLS13);
	f13_close(&f);
}

static int setup(void **state)
{
	(void)state;
	if (tu_ident_make(&srv, 2048, "srv13") < 0 || tu_ident_make(&other, 2048, "other13") < 0 ||
	    tu_ident_make(&cli, 2048, "client13") < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_ident_free(&srv);
	tu_ident_free(&other);
	tu_ident_free(&cli);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_suite),    cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_hello_retry),    cmocka_unit_test(test_key_update),
		cmocka_unit_test(test_client_auth),    cmocka_unit_test(test_psk_resumption),
		cmocka_unit_test(test_keys_missing),   cmocka_unit_test(test_keys_late),
		cmocka_unit_test(test_require_keys),   cmocka_unit_test(test_wrong_secret),
		cmocka_unit_test(test_cert_mismatch),  cmocka_unit_test(test_no_key_source),
		cmocka_unit_test(test_post_handshake_auth),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

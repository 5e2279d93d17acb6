/*
 * Writes the seed corpora: real sessions between in-memory OpenSSL peers
 * (the server holds tests/fuzz/keys/fuzz.key, the key the tap fuzzer is
 * configured with), recorded as tap frames; the client streams for the
 * record reader; the handshake messages for the parsers.
 *
 *   gen_corpus KEYDIR OUTDIR   (creates OUTDIR/{tap,tap13,record,hs}; tap13: TLS 1.3 and ECDHE
 *   sessions with the key log lines their server wrote)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "testutil.h"
#include "tls/record.h"

struct rec {
	uint8_t *buf;
	size_t len;
	uint8_t *c2s;
	size_t c2s_len;
	FILE *hs_dir_marker;
	const char *out;
	const char *name;
	unsigned hs_count;
};

static void put(struct rec *r, const void *p, size_t n)
{
	r->buf = realloc(r->buf, r->len + n);
	memcpy(r->buf + r->len, p, n);
	r->len += n;
}

static void write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[1024];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "wb");
	if (!fp) {
		perror(path);
		exit(1);
	}
	fwrite(p, 1, n, fp);
	fclose(fp);
}

/* Save each plaintext handshake message, prefixed with a version selector byte. */
static void save_hs(struct rec *r, const uint8_t *p, size_t n)
{
	size_t i = 0;
	char dir[1024], name[256];

	snprintf(dir, sizeof(dir), "%s/hs", r->out);
	while (i + 5 <= n) {
		size_t len = (size_t)p[i + 3] << 8 | p[i + 4];

		if (i + 5 + len > n)
			break;
		if (p[i] == PXY_CT_HANDSHAKE && len > 4 && r->hs_count < 64) {
			uint8_t *m = malloc(len - 3);
			m[0] = 3; /* TLS 1.2 */
			memcpy(m + 1, p + i + 9, len - 4);
			snprintf(name, sizeof(name), "%s-%02u-type%u", r->name, r->hs_count++, p[i + 5]);
			write_file(dir, name, m, len - 3);
			free(m);
		}
		i += 5 + len;
	}
}

static void on_bytes(void *ctx, enum pxy_dir d, uint8_t *p, size_t n)
{
	struct rec *r = ctx;

	while (n) {
		size_t k = n > 65535 ? 65535 : n;
		uint8_t h[3] = { (uint8_t)d, (uint8_t)(k >> 8), (uint8_t)k };

		put(r, h, 3);
		put(r, p, k);
		if (d == PXY_C2S) {
			r->c2s = realloc(r->c2s, r->c2s_len + k);
			memcpy(r->c2s + r->c2s_len, p, k);
			r->c2s_len += k;
		}
		save_hs(r, p, k);
		p += k;
		n -= k;
	}
}

/* Peers whose bytes are recorded into r (first = NULL), or peers resuming first's session. */
static void recorded_pair(struct tu_pair *p, const struct tu_pair *first, const struct tu_pair_opts *o, struct rec *r)
{
	if ((first ? tu_pair_new_resuming(p, first, o) : tu_pair_new(p, o)) < 0) {
		fprintf(stderr, "%s: cannot set up peers\n", r->name);
		exit(1);
	}
	p->on_bytes = on_bytes;
	p->ctx = r;
}

/* The recorded tap input, as OUT/tap/NAME. */
static void write_tap(const struct rec *r)
{
	char dir[1024];

	snprintf(dir, sizeof(dir), "%s/tap", r->out);
	write_file(dir, r->name, r->buf, r->len);
}

/* A full session, then (as the next connection of the same input) one that resumes it. */
static void resumed_session(const char *out, const char *name, struct tu_pair_opts *o)
{
	struct tu_pair p1, p2;
	struct rec r = { .out = out, .name = name };
	uint8_t msg[500], next[3] = { FUZZ_OP_NEXT_CONN | FUZZ_OP_C2S, 0, 0 };
	SSL_SESSION *sess;

	tu_fill(msg, sizeof(msg), 2);
	recorded_pair(&p1, NULL, o, &r);
	tu_pair_handshake(&p1);
	tu_pair_send(&p1, PXY_C2S, msg, 100);
	sess = SSL_get1_session(p1.c);
	put(&r, next, sizeof(next));
	o->resume = sess;
	recorded_pair(&p2, &p1, o, &r);
	tu_pair_handshake(&p2);
	tu_pair_send(&p2, PXY_C2S, msg, 200);
	tu_pair_send(&p2, PXY_S2C, msg, sizeof(msg));
	write_tap(&r);
	SSL_SESSION_free(sess);
	o->resume = NULL;
	free(r.buf);
	free(r.c2s);
	tu_pair_free(&p2);
	tu_pair_free(&p1);
}

/* A session the client renegotiates (RFC 5746) in the middle of its data. */
static void renegotiated_session(const char *out, const char *name, struct tu_pair_opts *o)
{
	struct tu_pair p;
	struct rec r = { .out = out, .name = name };
	uint8_t msg[700];

	tu_fill(msg, sizeof(msg), 3);
	recorded_pair(&p, NULL, o, &r);
	/* OpenSSL 3 servers refuse client-initiated renegotiation unless allowed */
	SSL_set_options(p.s, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	tu_pair_handshake(&p);
	tu_pair_send(&p, PXY_C2S, msg, 300);
	if (SSL_renegotiate(p.c) != 1) {
		fprintf(stderr, "%s: cannot renegotiate\n", name);
		exit(1);
	}
	/* the peers only read once their handshake is done: drive both to its end */
	for (int k = 0; k < 20 && SSL_renegotiate_pending(p.c); k++) {
		SSL_do_handshake(p.c);
		SSL_do_handshake(p.s);
		tu_pair_pump(&p);
	}
	tu_pair_send(&p, PXY_S2C, msg, sizeof(msg));
	tu_pair_send(&p, PXY_C2S, msg, 100);
	write_tap(&r);
	free(r.buf);
	free(r.c2s);
	tu_pair_free(&p);
}

static void session(const char *out, const char *name, struct tu_pair_opts *o, int data, int close_both)
{
	struct tu_pair p;
	struct rec r = { .out = out, .name = name };
	uint8_t msg[3000];
	char dir[1024];

	recorded_pair(&p, NULL, o, &r);
	tu_pair_handshake(&p);
	if (data) {
		tu_fill(msg, sizeof(msg), 1);
		tu_pair_send(&p, PXY_C2S, msg, 200);
		tu_pair_send(&p, PXY_S2C, msg, sizeof(msg));
	}
	if (close_both) {
		SSL_shutdown(p.c);
		tu_pair_pump(&p);
		uint8_t eof[6] = { FUZZ_OP_EOF_C2S, 0, 0, FUZZ_OP_EOF_S2C, 0, 0 };
		put(&r, eof, sizeof(eof));
	}
	write_tap(&r);
	snprintf(dir, sizeof(dir), "%s/record", out);
	if (r.c2s_len) {
		uint8_t *rb = malloc(r.c2s_len + 1);
		rb[0] = 5; /* split step selector */
		memcpy(rb + 1, r.c2s, r.c2s_len);
		write_file(dir, name, rb, r.c2s_len + 1);
		free(rb);
	}
	free(r.buf);
	free(r.c2s);
	tu_pair_free(&p);
}

/* ---- TLS 1.3 with the server's secrets (the tap13 target) ---------------------- */

static char g_keylog[8192];
static size_t g_keylog_len;

static void keylog_cb(const SSL *ssl, const char *line)
{
	size_t n = strlen(line);

	(void)ssl;
	if (g_keylog_len + n + 1 < sizeof(g_keylog)) {
		memcpy(g_keylog + g_keylog_len, line, n);
		g_keylog_len += n;
		g_keylog[g_keylog_len++] = '\n';
	}
}

/* OUT/tap13/NAME: [flags|L][L bytes of key log][the frames] */
static void write_tap13(const struct rec *r, int require_keys, int drop_keys)
{
	char dir[1024];
	size_t kl = drop_keys ? 0 : g_keylog_len;
	uint8_t *b = malloc(2 + kl + r->len);

	b[0] = (uint8_t)((require_keys ? 0x80 : 0) | (kl >> 8));
	b[1] = (uint8_t)kl;
	memcpy(b + 2, g_keylog, kl);
	memcpy(b + 2 + kl, r->buf, r->len);
	snprintf(dir, sizeof(dir), "%s/tap13", r->out);
	write_file(dir, r->name, b, 2 + kl + r->len);
	free(b);
}

enum s13 { S13_PLAIN, S13_KEYUPDATE, S13_RESUME, S13_POST_AUTH };

static int accept_any(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

static void session13(const char *out, const char *name, struct tu_pair_opts *o, enum s13 kind, int require_keys,
		      int drop_keys)
{
	struct tu_pair p, p2;
	struct rec r = { .out = out, .name = name };
	uint8_t msg[2500], next[3] = { FUZZ_OP_NEXT_CONN | FUZZ_OP_C2S, 0, 0 };

	g_keylog_len = 0;
	tu_fill(msg, sizeof(msg), 13);
	recorded_pair(&p, NULL, o, &r);
	SSL_CTX_set_keylog_callback(p.sctx, keylog_cb);
	if (kind == S13_POST_AUTH) {
		/* the client offers post-handshake authentication (o->client_id is its certificate) */
		SSL_set_post_handshake_auth(p.c, 1);
		SSL_use_certificate(p.c, o->client_id->x509);
		SSL_use_PrivateKey(p.c, o->client_id->pkey);
		SSL_set_verify(p.s, SSL_VERIFY_PEER | SSL_VERIFY_POST_HANDSHAKE, accept_any);
	}
	tu_pair_handshake(&p);
	tu_pair_send(&p, PXY_C2S, msg, 300);
	tu_pair_send(&p, PXY_S2C, msg, sizeof(msg));
	if (kind == S13_KEYUPDATE) {
		SSL_key_update(p.c, SSL_KEY_UPDATE_REQUESTED);
		tu_pair_send(&p, PXY_C2S, msg, 200);
		tu_pair_send(&p, PXY_S2C, msg, 200);
	}
	if (kind == S13_POST_AUTH) {
		SSL_verify_client_post_handshake(p.s);
		SSL_do_handshake(p.s);
		tu_pair_pump(&p);
		tu_pair_send(&p, PXY_C2S, msg, 200);
	}
	if (kind == S13_RESUME) {
		SSL_SESSION *sess = SSL_get1_session(p.c);

		put(&r, next, sizeof(next));
		o->resume = sess;
		recorded_pair(&p2, &p, o, &r);
		tu_pair_handshake(&p2);
		tu_pair_send(&p2, PXY_C2S, msg, 100);
		tu_pair_free(&p2);
		o->resume = NULL;
		SSL_SESSION_free(sess);
	}
	write_tap13(&r, require_keys, drop_keys);
	free(r.buf);
	free(r.c2s);
	tu_pair_free(&p);
}

static void corpus13(const char *out, struct tu_ident *srv, struct tu_ident *other, struct tu_ident *cli)
{
	static const char *const suites[] = { "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
					      "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256",
					      "TLS_AES_128_CCM_8_SHA256" };
	char d[1024];

	snprintf(d, sizeof(d), "%s/tap13", out);
	mkdir(d, 0755);
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		struct tu_pair_opts o = { .min_version = TLS1_3_VERSION, .max_version = TLS1_3_VERSION,
					  .ciphersuites = suites[i], .server = srv };

		session13(out, suites[i], &o, S13_PLAIN, 0, 0);
	}
	{
		struct tu_pair_opts o = { .min_version = TLS1_3_VERSION, .max_version = TLS1_3_VERSION,
					  .ciphersuites = "TLS_AES_128_GCM_SHA256", .server = srv };

		session13(out, "tls13-keyupdate", &o, S13_KEYUPDATE, 0, 0);
		session13(out, "tls13-resume-psk", &o, S13_RESUME, 0, 0);
		session13(out, "tls13-no-keys", &o, S13_PLAIN, 0, 1);
		session13(out, "tls13-require-no-keys", &o, S13_PLAIN, 1, 1);
		session13(out, "tls13-require-keys", &o, S13_PLAIN, 1, 0);
		o.client_groups = "X25519:P-256";
		o.server_groups = "P-256";
		session13(out, "tls13-hello-retry", &o, S13_PLAIN, 0, 0);
		o.client_groups = o.server_groups = NULL;
		o.client_auth = 1;
		o.client_id = cli;
		session13(out, "tls13-client-auth", &o, S13_PLAIN, 0, 0);
		o.client_auth = 0;
		o.ciphersuites = "TLS_AES_256_GCM_SHA384";
		session13(out, "tls13-post-handshake-auth", &o, S13_POST_AUTH, 0, 0);
		o.ciphersuites = "TLS_AES_128_GCM_SHA256";
		o.client_auth = 0;
		o.server = other;
		session13(out, "tls13-cert-mismatch", &o, S13_PLAIN, 0, 0);
	}
	{
		/* TLS 1.2 ECDHE with its CLIENT_RANDOM line */
		struct tu_pair_opts o = { .ciphers = "ECDHE-RSA-CHACHA20-POLY1305", .max_version = TLS1_2_VERSION,
					  .server = srv };

		session13(out, "tls12-ecdhe-chacha", &o, S13_PLAIN, 0, 0);
		o.ciphers = "ECDHE-RSA-AES128-SHA256";
		session13(out, "tls12-ecdhe-require", &o, S13_PLAIN, 1, 0);
	}
}

int main(int argc, char **argv)
{
	struct tu_ident srv, other, cli;
	char cert[512], key[512], d[1024];
	static const char *const suites[] = { "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA",
					      "AES256-SHA",        "AES128-SHA256",     "AES256-SHA256" };

	if (argc != 3) {
		fprintf(stderr, "usage: gen_corpus KEYDIR OUTDIR\n");
		return 2;
	}
	snprintf(cert, sizeof(cert), "%s/fuzz.crt", argv[1]);
	snprintf(key, sizeof(key), "%s/fuzz.key", argv[1]);
	if (tu_ident_load(&srv, cert, key) < 0 || tu_ident_make(&other, 2048, "other") < 0 ||
	    tu_ident_make(&cli, 2048, "client") < 0) {
		fprintf(stderr, "gen_corpus: cannot load %s\n", cert);
		return 1;
	}
	mkdir(argv[2], 0755);
	snprintf(d, sizeof(d), "%s/tap", argv[2]);
	mkdir(d, 0755);
	snprintf(d, sizeof(d), "%s/record", argv[2]);
	mkdir(d, 0755);
	snprintf(d, sizeof(d), "%s/hs", argv[2]);
	mkdir(d, 0755);

	for (int i = 0; i < 6; i++)
		for (int v = 0; v < 2; v++) {
			struct tu_pair_opts o = { .ciphers = suites[i], .no_ems = v, .no_etm = v, .no_tickets = v,
						  .server = &srv };
			char name[64];
			snprintf(name, sizeof(name), "%s-%s", suites[i], v ? "noems-noetm" : "ems-etm");
			session(argv[2], name, &o, 1, 1);
		}
	{
		struct tu_pair_opts o = { .ciphers = "AES256-GCM-SHA384", .client_auth = 1, .client_id = &cli,
					  .server = &srv };
		session(argv[2], "client-auth", &o, 1, 0);
	}
	{
		struct tu_pair_opts o = { .ciphers = "ECDHE-RSA-AES128-GCM-SHA256", .server = &srv };
		session(argv[2], "reject-ecdhe", &o, 0, 0);
	}
	{
		struct tu_pair_opts o = { .min_version = TLS1_3_VERSION, .max_version = TLS1_3_VERSION, .server = &srv };
		session(argv[2], "reject-tls13", &o, 0, 0);
	}
	{
		struct tu_pair_opts o = { .ciphers = "AES128-GCM-SHA256", .server = &other };
		session(argv[2], "reject-cert", &o, 0, 0);
	}
	/* TLS 1.0 and 1.1 (OpenSSL 3 speaks them at security level 0 only) */
	{
		struct tu_pair_opts o = { .ciphers = "AES128-SHA:@SECLEVEL=0", .min_version = TLS1_VERSION,
					  .max_version = TLS1_VERSION, .server = &srv };
		session(argv[2], "tls10-AES128-SHA", &o, 1, 1);
		o.min_version = o.max_version = TLS1_1_VERSION;
		o.ciphers = "AES256-SHA:@SECLEVEL=0";
		o.no_etm = 1;
		session(argv[2], "tls11-AES256-SHA-noetm", &o, 1, 1);
	}
	/* resumption by session ID and by ticket, then a renegotiation */
	{
		struct tu_pair_opts o = { .ciphers = "AES128-GCM-SHA256", .no_tickets = 1, .server = &srv };
		resumed_session(argv[2], "resume-id", &o);
		o.no_tickets = 0;
		o.ciphers = "AES128-SHA256";
		resumed_session(argv[2], "resume-ticket", &o);
		o.ciphers = "AES256-GCM-SHA384";
		o.no_tickets = 1;
		renegotiated_session(argv[2], "renegotiate", &o);
	}
	corpus13(argv[2], &srv, &other, &cli);
	tu_ident_free(&srv);
	tu_ident_free(&other);
	tu_ident_free(&cli);
	return 0;
}

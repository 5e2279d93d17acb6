#include "testutil.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

static int write_pem(struct tu_ident *t)
{
	char dir[] = "/tmp/pxytest.XXXXXX";
	FILE *fp;

	if (!mkdtemp(dir))
		return -1;
	snprintf(t->cert_path, sizeof(t->cert_path), "%s/cert.pem", dir);
	snprintf(t->key_path, sizeof(t->key_path), "%s/key.pem", dir);
	fp = fopen(t->cert_path, "w");
	if (!fp || !PEM_write_X509(fp, t->x509))
		return -1;
	fclose(fp);
	fp = fopen(t->key_path, "w");
	if (!fp || !PEM_write_PrivateKey(fp, t->pkey, NULL, NULL, 0, NULL, NULL))
		return -1;
	fclose(fp);
	return 0;
}

static int self_sign(struct tu_ident *t, const char *cn)
{
	X509_NAME *name;

	t->x509 = X509_new();
	if (!t->x509)
		return -1;
	X509_set_version(t->x509, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(t->x509), (long)(random() & 0x7fffffff));
	X509_gmtime_adj(X509_getm_notBefore(t->x509), -3600);
	X509_gmtime_adj(X509_getm_notAfter(t->x509), 86400);
	X509_set_pubkey(t->x509, t->pkey);
	name = X509_get_subject_name(t->x509);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(t->x509, name);
	if (!X509_sign(t->x509, t->pkey, EVP_sha256()))
		return -1;
	return write_pem(t);
}

int tu_ident_make(struct tu_ident *t, int bits, const char *cn)
{
	memset(t, 0, sizeof(*t));
	t->pkey = EVP_RSA_gen((unsigned)bits);
	if (!t->pkey)
		return -1;
	return self_sign(t, cn);
}

int tu_ident_load(struct tu_ident *t, const char *cert_path, const char *key_path)
{
	FILE *fp;

	memset(t, 0, sizeof(*t));
	t->borrowed = 1;
	snprintf(t->cert_path, sizeof(t->cert_path), "%s", cert_path);
	snprintf(t->key_path, sizeof(t->key_path), "%s", key_path);
	fp = fopen(cert_path, "r");
	if (!fp)
		return -1;
	t->x509 = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	fp = fopen(key_path, "r");
	if (!fp)
		return -1;
	t->pkey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	return t->x509 && t->pkey ? 0 : -1;
}

int tu_ident_make_ec(struct tu_ident *t, const char *cn)
{
	memset(t, 0, sizeof(*t));
	t->pkey = EVP_EC_gen("P-256");
	if (!t->pkey)
		return -1;
	return self_sign(t, cn);
}

void tu_ident_free(struct tu_ident *t)
{
	char dir[256];

	if (t->cert_path[0] && !t->borrowed) {
		unlink(t->cert_path);
		unlink(t->key_path);
		snprintf(dir, sizeof(dir), "%s", t->cert_path);
		*strrchr(dir, '/') = '\0';
		rmdir(dir);
	}
	X509_free(t->x509);
	EVP_PKEY_free(t->pkey);
	memset(t, 0, sizeof(*t));
}

struct pxy_engine *tu_engine(const struct tu_ident *t, struct pxy_identity *id, unsigned threads)
{
	struct pxy_engine_params ep = { .threads = threads, .max_jobs = 4096 };
	struct pxy_engine *e = NULL;
	struct pxy_rsa_priv priv;
	char err[512];

	if (pxy_identity_load(id, t->cert_path, t->key_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "identity: %s\n", err);
		return NULL;
	}
	if (pxy_engine_open("cpu", &ep, &e) < 0)
		return NULL;
	if (pxy_identity_rsa_priv(id, &priv) < 0 || e->ops->key_load(e, &priv, &id->key_id) < 0) {
		pxy_engine_close(e);
		return NULL;
	}
	pxy_rsa_priv_free(&priv);
	return e;
}

size_t tu_drain(struct pxy_engine *e)
{
	struct pxy_job *jobs[64];
	size_t n, total = 0;

	pxy_engine_ack(e);
	pxy_engine_flush(e); /* a synchronous engine runs its jobs here */
	while ((n = pxy_engine_poll(e, jobs, 64)) > 0) {
		for (size_t i = 0; i < n; i++)
			pxy_tap_job_done(jobs[i]);
		total += n;
		pxy_engine_flush(e); /* what the completions submitted */
	}
	return total;
}

void tu_drain_all(struct pxy_engine *e)
{
	for (int i = 0; i < 2000; i++) {
		struct pollfd pfd = { .fd = e->event_fd, .events = POLLIN };

		tu_drain(e);
		if (__atomic_load_n(&e->stats.inflight, __ATOMIC_RELAXED) == 0)
			return;
		poll(&pfd, 1, 5);
	}
}

void tu_fill(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static int client_cert_cb(int ok, X509_STORE_CTX *ctx)
{
	(void)ok;
	(void)ctx;
	return 1; /* self-signed test certificates */
}

int tu_pair_new(struct tu_pair *p, const struct tu_pair_opts *o)
{
	memset(p, 0, sizeof(*p));
	p->sctx = SSL_CTX_new(TLS_server_method());
	p->cctx = SSL_CTX_new(TLS_client_method());
	if (!p->sctx || !p->cctx)
		return -1;
	for (int i = 0; i < 2; i++) {
		SSL_CTX *ctx = i ? p->cctx : p->sctx;
		uint64_t opts = 0;

		SSL_CTX_set_min_proto_version(ctx, o->min_version ? o->min_version : TLS1_2_VERSION);
		SSL_CTX_set_max_proto_version(ctx, o->max_version ? o->max_version : TLS1_2_VERSION);
		/* lower the security level so that TLS 1.0/1.1 and SHA-1 suites can be tried */
		SSL_CTX_set_security_level(ctx, 0);
		if (o->ciphers && !SSL_CTX_set_cipher_list(ctx, o->ciphers))
			return -1;
		if (o->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, o->ciphersuites))
			return -1;
		if (o->no_ems)
			opts |= SSL_OP_NO_EXTENDED_MASTER_SECRET;
		if (o->no_etm)
			opts |= SSL_OP_NO_ENCRYPT_THEN_MAC;
		if (o->no_tickets)
			opts |= SSL_OP_NO_TICKET;
		SSL_CTX_set_options(ctx, opts);
	}
	/* TLS 1.3: a server group the client sent no key share for makes a HelloRetryRequest */
	if ((o->client_groups && !SSL_CTX_set1_groups_list(p->cctx, o->client_groups)) ||
	    (o->server_groups && !SSL_CTX_set1_groups_list(p->sctx, o->server_groups)))
		return -1;
	SSL_CTX_set_dh_auto(p->sctx, 1);
	SSL_CTX_set_session_cache_mode(p->sctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(p->sctx, (const unsigned char *)"pxy", 3);
	if (SSL_CTX_use_certificate(p->sctx, o->server->x509) != 1 ||
	    SSL_CTX_use_PrivateKey(p->sctx, o->server->pkey) != 1)
		return -1;
	if (o->client_auth && o->client_id) {
		SSL_CTX_set_verify(p->sctx, SSL_VERIFY_PEER, client_cert_cb);
		if (SSL_CTX_use_certificate(p->cctx, o->client_id->x509) != 1 ||
		    SSL_CTX_use_PrivateKey(p->cctx, o->client_id->pkey) != 1)
			return -1;
	}
	p->s = SSL_new(p->sctx);
	p->c = SSL_new(p->cctx);
	p->s_in = BIO_new(BIO_s_mem());
	p->s_out = BIO_new(BIO_s_mem());
	p->c_in = BIO_new(BIO_s_mem());
	p->c_out = BIO_new(BIO_s_mem());
	if (!p->s || !p->c || !p->s_in || !p->s_out || !p->c_in || !p->c_out)
		return -1;
	SSL_set_bio(p->s, p->s_in, p->s_out);
	SSL_set_bio(p->c, p->c_in, p->c_out);
	SSL_set_accept_state(p->s);
	SSL_set_connect_state(p->c);
	if (o->resume)
		SSL_set_session(p->c, o->resume);
	return 0;
}

/* Move what one side wrote to the other, through the watcher. */
static int move(struct tu_pair *p, enum pxy_dir d)
{
	BIO *from = d == PXY_C2S ? p->c_out : p->s_out;
	BIO *to = d == PXY_C2S ? p->s_in : p->c_in;
	uint8_t buf[20000];
	int n, moved = 0;

	while ((n = BIO_read(from, buf, sizeof(buf))) > 0) {
		if (p->on_bytes)
			p->on_bytes(p->ctx, d, buf, (size_t)n);
		p->wire[d] += (uint64_t)n;
		BIO_write(to, buf, n);
		moved = 1;
	}
	return moved;
}

static void read_app(struct tu_pair *p, enum pxy_dir d)
{
	SSL *ssl = d == PXY_C2S ? p->s : p->c;
	uint8_t buf[16384];
	int n;

	if (!SSL_is_init_finished(ssl))
		return;
	while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
		p->got[d] = realloc(p->got[d], p->got_len[d] + (size_t)n);
		memcpy(p->got[d] + p->got_len[d], buf, (size_t)n);
		p->got_len[d] += (size_t)n;
	}
	if (n <= 0) {
		int e = SSL_get_error(ssl, n);
		if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL)
			p->failed = 1;
	}
	ERR_clear_error();
}

void tu_pair_pump(struct tu_pair *p)
{
	for (int i = 0; i < 1000; i++) {
		int moved = move(p, PXY_C2S) | move(p, PXY_S2C);

		read_app(p, PXY_C2S);
		read_app(p, PXY_S2C);
		moved |= move(p, PXY_C2S) | move(p, PXY_S2C);
		if (!moved)
			return;
	}
}

int tu_pair_new_resuming(struct tu_pair *p, const struct tu_pair *first, const struct tu_pair_opts *o)
{
	if (tu_pair_new(p, o) < 0)
		return -1;
	SSL_free(p->s);
	p->s = SSL_new(first->sctx);
	if (!p->s)
		return -1;
	p->s_in = BIO_new(BIO_s_mem());
	p->s_out = BIO_new(BIO_s_mem());
	SSL_set_bio(p->s, p->s_in, p->s_out);
	SSL_set_accept_state(p->s);
	return 0;
}

int tu_pair_handshake(struct tu_pair *p)
{
	for (int i = 0; i < 100; i++) {
		int rc = SSL_do_handshake(p->c), rs = SSL_do_handshake(p->s);

		if (rc <= 0 && SSL_get_error(p->c, rc) == SSL_ERROR_SSL)
			p->failed = 1;
		if (rs <= 0 && SSL_get_error(p->s, rs) == SSL_ERROR_SSL)
			p->failed = 1;
		move(p, PXY_C2S);
		move(p, PXY_S2C);
		if (p->failed) {
			/* deliver the alert the failing side wrote */
			move(p, PXY_C2S);
			move(p, PXY_S2C);
			ERR_clear_error();
			return -1;
		}
		if (rc == 1 && rs == 1) {
			tu_pair_pump(p); /* TLS 1.3 tickets and the like */
			return 0;
		}
	}
	ERR_clear_error();
	return -1;
}

int tu_pair_send(struct tu_pair *p, enum pxy_dir d, const uint8_t *data, size_t n)
{
	SSL *ssl = d == PXY_C2S ? p->c : p->s;
	size_t off = 0;

	while (off < n) {
		size_t chunk = n - off > 65536 ? 65536 : n - off;
		int w = SSL_write(ssl, data + off, (int)chunk);

		if (w <= 0)
			return -1;
		off += (size_t)w;
		tu_pair_pump(p);
	}
	tu_pair_pump(p);
	return 0;
}

void tu_pair_free(struct tu_pair *p)
{
	SSL_free(p->s);
	SSL_free(p->c);
	SSL_CTX_free(p->sctx);
	SSL_CTX_free(p->cctx);
	free(p->got[0]);
	free(p->got[1]);
	memset(p, 0, sizeof(*p));
}

#include "io/keylisten.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sink/sinks.h"
#include "tls/keystore.h"
#include "util/addr.h"
#include "util/ct.h"
#include "util/log.h"
#include "util/util.h"

#define MAX_FORWARDERS 64
#define LINE_MAX_LEN 1024
#define HANDSHAKE_MS 10000 /* a client that does not finish its handshake in this time goes */

struct fwd {
	int fd;
	SSL *ssl;
	uint8_t ready; /* handshake done */
	uint64_t since;
	char peer[64];
	char line[LINE_MAX_LEN];
	size_t len;
	uint8_t overlong;
};

struct pxy_keylisten {
	pthread_t th;
	int lfd, stop_pipe[2];
	SSL_CTX *ctx;
	struct pxy_keystore **stores;
	size_t n_stores;
	char addr[80];
	struct fwd fwd[MAX_FORWARDERS];
	struct pxy_keylisten_stats st; /* written by its thread, read by others (relaxed) */
};

static const struct pxy_keylisten *current;

const struct pxy_keylisten *pxy_keylisten_current(void)
{
	return current;
}

static void bump(uint64_t *c, int64_t by)
{
	__atomic_add_fetch(c, (uint64_t)by, __ATOMIC_RELAXED);
}

/* The first OpenSSL error (or the certificate verification result) as text, for the log. */
static void ssl_why(SSL *ssl, char *out, size_t n)
{
	unsigned long e = ERR_peek_error();
	long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

	if (v != X509_V_OK)
		snprintf(out, n, "certificate: %s", X509_verify_cert_error_string(v));
	else if (e)
		snprintf(out, n, "%s", ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "TLS error");
	else
		snprintf(out, n, "closed during the handshake");
	ERR_clear_error();
}

static void fwd_close(struct pxy_keylisten *kl, struct fwd *f)
{
	if (f->ready)
		bump(&kl->st.connected, -1);
	SSL_free(f->ssl);
	close(f->fd);
	pxy_wipe(f->line, sizeof(f->line));
	memset(f, 0, sizeof(*f));
	f->fd = -1;
}

static void take_line(struct pxy_keylisten *kl, const char *l, size_t n)
{
	for (size_t i = 0; i < kl->n_stores; i++)
		if (pxy_keystore_push(kl->stores[i], l, n) < 0)
			bump(&kl->st.dropped, 1);
	bump(&kl->st.lines, 1);
}

/* Lines from an authenticated forwarder; split, each handed to every store. */
static void on_data(struct pxy_keylisten *kl, struct fwd *f, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n') {
			if (f->len < sizeof(f->line))
				f->line[f->len++] = p[i];
			else
				f->overlong = 1;
			continue;
		}
		if (f->overlong) {
			bump(&kl->st.overlong, 1);
			pxy_warn("key listener: %s: a line over %d bytes dropped", f->peer, LINE_MAX_LEN);
		} else {
			take_line(kl, f->line, f->len);
		}
		f->len = 0;
		f->overlong = 0;
	}
}

/* Progress on one forwarder: its handshake, then what it sent. 0 to keep it, -1 to close it. */
static int fwd_step(struct pxy_keylisten *kl, struct fwd *f)
{
	char buf[16384], why[256];
	int r;

	if (!f->ready) {
		r = SSL_accept(f->ssl);
		if (r != 1) {
			int e = SSL_get_error(f->ssl, r);

			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return 0;
			ssl_why(f->ssl, why, sizeof(why));
			bump(&kl->st.refused, 1);
			pxy_warn("key listener: refused %s: %s (a forwarder needs a certificate from --key-listen-ca)",
				 f->peer, why);
			return -1;
		}
		{
			X509 *cert = SSL_get1_peer_certificate(f->ssl);
			char subj[256] = "?";

			if (cert)
				X509_NAME_oneline(X509_get_subject_name(cert), subj, sizeof(subj));
			X509_free(cert);
			pxy_info("key listener: forwarder %s connected (subject=%s, %s)", f->peer, subj,
				 SSL_get_version(f->ssl));
		}
		f->ready = 1;
		bump(&kl->st.accepted, 1);
		bump(&kl->st.connected, 1);
	}
	for (;;) {
		r = SSL_read(f->ssl, buf, sizeof(buf));
		if (r > 0) {
			on_data(kl, f, buf, (size_t)r);
			continue;
		}
		pxy_wipe(buf, sizeof(buf));
		r = SSL_get_error(f->ssl, r);
		if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
			return 0;
		if (r == SSL_ERROR_ZERO_RETURN || r == SSL_ERROR_SYSCALL)
			pxy_info("key listener: forwarder %s closed", f->peer);
		else {
			ssl_why(f->ssl, why, sizeof(why));
			pxy_warn("key listener: forwarder %s: %s; closed", f->peer, why);
		}
		return -1;
	}
}

static void on_accept(struct pxy_keylisten *kl)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept4(kl->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct fwd *f = NULL;

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_FORWARDERS && !f; i++)
		if (kl->fwd[i].fd < 0)
			f = &kl->fwd[i];
	if (!f) {
		bump(&kl->st.refused, 1);
		pxy_warn("key listener: %d forwarders already connected: a new one is refused", MAX_FORWARDERS);
		close(fd);
		return;
	}
	memset(f, 0, sizeof(*f));
	f->fd = fd;
	f->since = pxy_now_ns();
	pxy_addr_str((struct sockaddr *)&ss, f->peer, sizeof(f->peer));
	f->ssl = SSL_new(kl->ctx);
	if (!f->ssl || SSL_set_fd(f->ssl, fd) != 1) {
		fwd_close(kl, f);
		return;
	}
	if (fwd_step(kl, f) < 0)
		fwd_close(kl, f);
}

static void *run(void *arg)
{
	struct pxy_keylisten *kl = arg;
	struct pollfd pfd[MAX_FORWARDERS + 2];
	int who[MAX_FORWARDERS + 2];

	for (;;) {
		nfds_t n = 0;
		uint64_t now = pxy_now_ns();

		pfd[n] = (struct pollfd){ .fd = kl->stop_pipe[0], .events = POLLIN };
		who[n++] = -2;
		pfd[n] = (struct pollfd){ .fd = kl->lfd, .events = POLLIN };
		who[n++] = -1;
		for (int i = 0; i < MAX_FORWARDERS; i++) {
			struct fwd *f = &kl->fwd[i];

			if (f->fd < 0)
				continue;
			if (!f->ready && now - f->since > (uint64_t)HANDSHAKE_MS * 1000000ull) {
				bump(&kl->st.refused, 1);
				pxy_warn("key listener: refused %s: no handshake within %d ms", f->peer, HANDSHAKE_MS);
				fwd_close(kl, f);
				continue;
			}
			pfd[n] = (struct pollfd){ .fd = f->fd,
						  .events = (short)(POLLIN | (SSL_want_write(f->ssl) ? POLLOUT : 0)) };
			who[n++] = i;
		}
		if (poll(pfd, n, 1000) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		for (nfds_t k = 1; k < n; k++) {
			if (!pfd[k].revents)
				continue;
			if (who[k] == -1)
				on_accept(kl);
			else if (fwd_step(kl, &kl->fwd[who[k]]) < 0)
				fwd_close(kl, &kl->fwd[who[k]]);
		}
	}
	for (int i = 0; i < MAX_FORWARDERS; i++)
		if (kl->fwd[i].fd >= 0)
			fwd_close(kl, &kl->fwd[i]);
	return NULL;
}

static int setup_tls(struct pxy_keylisten *kl, const char *cert, const char *key, const char *ca, char *err,
		     size_t n)
{
	STACK_OF(X509_NAME) *names;

	kl->ctx = SSL_CTX_new(TLS_server_method());
	if (!kl->ctx) {
		snprintf(err, n, "out of memory");
		return -1;
	}
	SSL_CTX_set_min_proto_version(kl->ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(kl->ctx, cert) != 1) {
		snprintf(err, n, "--key-listen-cert %s: not a PEM certificate (chain) that can be read", cert);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(kl->ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(kl->ctx) != 1) {
		snprintf(err, n, "--key-listen-key %s: not the private key of %s", key, cert);
		return -1;
	}
	if (SSL_CTX_load_verify_locations(kl->ctx, ca, NULL) != 1 || !(names = SSL_load_client_CA_file(ca))) {
		snprintf(err, n, "--key-listen-ca %s: no PEM certificates to trust in it", ca);
		return -1;
	}
	SSL_CTX_set_client_CA_list(kl->ctx, names);
	/* mutual authentication: no certificate, or one the CA did not sign, and the handshake fails */
	SSL_CTX_set_verify(kl->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_session_cache_mode(kl->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(kl->ctx, 0);
	return 0;
}

struct pxy_keylisten *pxy_keylisten_start(const char *addr, const char *cert, const char *key, const char *ca,
					  struct pxy_keystore *const *stores, size_t n, char *err, size_t err_len)
{
	struct pxy_keylisten *kl = calloc(1, sizeof(*kl));
	struct sockaddr_storage ss;
	socklen_t sl;
	char why[256];
	int one = 1;

	if (!kl || !(kl->stores = calloc(n ? n : 1, sizeof(*kl->stores)))) {
		snprintf(err, err_len, "out of memory");
		free(kl);
		return NULL;
	}
	kl->lfd = kl->stop_pipe[0] = kl->stop_pipe[1] = -1;
	for (int i = 0; i < MAX_FORWARDERS; i++)
		kl->fwd[i].fd = -1;
	memcpy(kl->stores, stores, n * sizeof(*stores));
	kl->n_stores = n;
	ERR_clear_error();
	if (setup_tls(kl, cert, key, ca, err, err_len) < 0)
		goto fail;
	if (pxy_addr_resolve(addr, 0, &ss, &sl, why, sizeof(why)) < 0) {
		snprintf(err, err_len, "--key-listen %s", why);
		goto fail;
	}
	kl->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (kl->lfd < 0 || setsockopt(kl->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(kl->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(kl->lfd, 64) < 0) {
		snprintf(err, err_len, "--key-listen %s: %s", addr, strerror(errno));
		goto fail;
	}
	sl = sizeof(ss);
	getsockname(kl->lfd, (struct sockaddr *)&ss, &sl);
	pxy_addr_str((struct sockaddr *)&ss, kl->addr, sizeof(kl->addr));
	if (pipe2(kl->stop_pipe, O_CLOEXEC) < 0 || pthread_create(&kl->th, NULL, run, kl) != 0) {
		snprintf(err, err_len, "key listener: cannot start its thread");
		goto fail;
	}
	current = kl;
	return kl;
fail:
	ERR_clear_error();
	if (kl->lfd >= 0)
		close(kl->lfd);
	for (int i = 0; i < 2; i++)
		if (kl->stop_pipe[i] >= 0)
			close(kl->stop_pipe[i]);
	SSL_CTX_free(kl->ctx);
	free(kl->stores);
	free(kl);
	return NULL;
}

const char *pxy_keylisten_addr(const struct pxy_keylisten *kl)
{
	return kl->addr;
}

void pxy_keylisten_stats_get(const struct pxy_keylisten *kl, struct pxy_keylisten_stats *out)
{
	const uint64_t *src = (const uint64_t *)&kl->st;
	uint64_t *dst = (uint64_t *)out;

	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void pxy_keylisten_stop(struct pxy_keylisten *kl)
{
	if (!kl)
		return;
	if (current == kl)
		current = NULL;
	if (write(kl->stop_pipe[1], "x", 1) == 1)
		pthread_join(kl->th, NULL);
	close(kl->stop_pipe[0]);
	close(kl->stop_pipe[1]);
	close(kl->lfd);
	SSL_CTX_free(kl->ctx);
	free(kl->stores);
	free(kl);
}

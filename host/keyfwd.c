/*
 * proxyssl-keyfwd: follows a server's key log (RFC 9850, as `openssl s_server
 * -keylogfile` or SSLKEYLOGFILE write it) and forwards each line to a
 * proxyssl key listener (--key-listen) over TLS with mutual certificate
 * authentication. The file is followed across truncation and rotation; lines
 * wait in a bounded backlog while the proxy cannot be reached, and the
 * connection is retried with exponential backoff.
 *
 *   proxyssl-keyfwd FILE --to ADDR:PORT --cert FILE --key FILE --ca FILE
 *                   [--server-name NAME] [--backlog N] [--retry-max MS] [--poll MS]
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "util/addr.h"
#include "util/ct.h"
#include "util/follow.h"
#include "util/log.h"
#include "util/util.h"

struct opts {
	const char *file, *to, *cert, *key, *ca, *server_name;
	uint64_t backlog, retry_max_ms, poll_ms;
};

/* lines waiting to be sent, oldest first (a ring of at most `backlog`) */
struct backlog {
	char **line;
	size_t *len;
	size_t cap, head, n;
	uint64_t dropped;
};

struct fwd {
	struct opts o;
	struct pxy_follow follow;
	struct backlog q;
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
	uint64_t retry_at, backoff_ms;
	uint64_t read, sent, reconnects, overlong;
};

static volatile sig_atomic_t stop, report;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		report = 1;
	else
		stop = 1;
}

static void q_push(struct fwd *f, const char *l, size_t n)
{
	struct backlog *q = &f->q;
	size_t at;
	char *copy = malloc(n ? n : 1);

	if (!copy)
		return;
	memcpy(copy, l, n);
	if (q->n == q->cap) {
		/* full: the oldest goes (its session is the likeliest to be over) */
		pxy_wipe(q->line[q->head], q->len[q->head]);
		free(q->line[q->head]);
		q->head = (q->head + 1) % q->cap;
		q->n--;
		if (q->dropped++ == 0)
			pxy_warn("keyfwd: the backlog is full (%zu lines): the oldest lines are dropped", q->cap);
	}
	at = (q->head + q->n) % q->cap;
	q->line[at] = copy;
	q->len[at] = n;
	q->n++;
}

static void q_pop(struct fwd *f)
{
	struct backlog *q = &f->q;

	pxy_wipe(q->line[q->head], q->len[q->head]);
	free(q->line[q->head]);
	q->head = (q->head + 1) % q->cap;
	q->n--;
}

static void on_line(void *ctx, const char *line, size_t len, int overlong)
{
	struct fwd *f = ctx;

	if (overlong) {
		f->overlong++;
		pxy_warn("keyfwd %s: a line over %d bytes dropped", f->o.file, PXY_FOLLOW_LINE_MAX);
		return;
	}
	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (len == 0 || line[0] == '#')
		return;
	f->read++;
	q_push(f, line, len);
}

static void disconnect(struct fwd *f, const char *why)
{
	if (f->ssl) {
		pxy_warn("keyfwd: connection to %s lost (%s): %zu lines wait; retrying", f->o.to, why, f->q.n);
		SSL_free(f->ssl);
		f->ssl = NULL;
	}
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	f->retry_at = pxy_now_ns() + f->backoff_ms * 1000000ull;
	f->backoff_ms = f->backoff_ms * 2 > f->o.retry_max_ms ? f->o.retry_max_ms : f->backoff_ms * 2;
}

static const char *ssl_err(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();

	snprintf(buf, sizeof(buf), "%s", e && ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "closed");
	ERR_clear_error();
	return buf;
}

/* Connect (a blocking connect with a 5 s limit, then the TLS handshake); 0, or -1 and a retry later. */
static int connect_to(struct fwd *f)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char why[256];
	struct timeval tv = { 5, 0 };
	long v;

	if (pxy_addr_resolve(f->o.to, 1, &ss, &sl, why, sizeof(why)) < 0) {
		pxy_warn("keyfwd: --to %s", why);
		disconnect(f, "no address");
		return -1;
	}
	f->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->fd < 0 || setsockopt(f->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(f->fd, (struct sockaddr *)&ss, sl) < 0) {
		if (f->reconnects == 0 || f->backoff_ms >= f->o.retry_max_ms)
			pxy_info("keyfwd: cannot reach %s: %s (retrying, at most every %llu ms)", f->o.to, strerror(errno),
				 (unsigned long long)f->o.retry_max_ms);
		f->reconnects++;
		disconnect(f, "connect");
		return -1;
	}
	f->ssl = SSL_new(f->ctx);
	if (!f->ssl || SSL_set_fd(f->ssl, f->fd) != 1) {
		disconnect(f, "out of memory");
		return -1;
	}
	if (f->o.server_name) {
		SSL_set_tlsext_host_name(f->ssl, f->o.server_name);
		SSL_set1_host(f->ssl, f->o.server_name);
	}
	if (SSL_connect(f->ssl) != 1) {
		v = SSL_get_verify_result(f->ssl);
		pxy_warn("keyfwd: TLS with %s failed: %s", f->o.to,
			 v != X509_V_OK ? X509_verify_cert_error_string(v) : ssl_err());
		SSL_free(f->ssl);
		f->ssl = NULL;
		f->reconnects++;
		disconnect(f, "handshake");
		return -1;
	}
	pxy_info("keyfwd: connected to %s (%s); %zu lines to send", f->o.to, SSL_get_version(f->ssl), f->q.n);
	f->backoff_ms = 100;
	return 0;
}

/* The listener never writes: a readable socket means it closed or failed. */
static int peer_gone(struct fwd *f)
{
	struct pollfd p = { .fd = f->fd, .events = POLLIN };
	char b[64];

	if (poll(&p, 1, 0) <= 0)
		return 0;
	return SSL_read(f->ssl, b, sizeof(b)) <= 0;
}

/* Send what waits, in batches; a line leaves the backlog once written. */
static void flush(struct fwd *f)
{
	char buf[16384];

	while (f->ssl && f->q.n) {
		size_t n = 0, k = 0;

		if (peer_gone(f)) {
			disconnect(f, "closed by the proxy");
			break;
		}
		while (k < f->q.n) {
			size_t i = (f->q.head + k) % f->q.cap, l = f->q.len[i];

			if (n + l + 1 > sizeof(buf))
				break;
			memcpy(buf + n, f->q.line[i], l);
			buf[n + l] = '\n';
			n += l + 1;
			k++;
		}
		if (SSL_write(f->ssl, buf, (int)n) != (int)n) {
			pxy_wipe(buf, sizeof(buf));
			disconnect(f, ssl_err());
			break;
		}
		for (size_t j = 0; j < k; j++)
			q_pop(f);
		f->sent += k;
	}
	pxy_wipe(buf, sizeof(buf));
}

static void stats(const struct fwd *f)
{
	pxy_info("keyfwd stats read=%llu sent=%llu waiting=%zu dropped=%llu overlong=%llu reconnects=%llu reopened=%llu",
		 (unsigned long long)f->read, (unsigned long long)f->sent, f->q.n, (unsigned long long)f->q.dropped,
		 (unsigned long long)f->overlong, (unsigned long long)f->reconnects,
		 (unsigned long long)f->follow.reopened);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: proxyssl-keyfwd FILE --to ADDR:PORT --cert FILE --key FILE --ca FILE [options]\n\n"
		"Follows FILE, a key log a TLS server writes (openssl s_server -keylogfile, SSLKEYLOGFILE), across\n"
		"truncation and rotation, and forwards its lines to a proxyssl key listener (--key-listen) over TLS\n"
		"with mutual certificate authentication.\n\n"
		"  --to ADDR:PORT       the proxy's --key-listen address (required)\n"
		"  --cert FILE          this forwarder's certificate, PEM, signed by the proxy's --key-listen-ca\n"
		"  --key FILE           its private key, PEM\n"
		"  --ca FILE            the CA the proxy's --key-listen-cert must chain to, PEM\n"
		"  --server-name NAME   also require the proxy's certificate to name NAME (default: the chain only)\n"
		"  --backlog N          lines kept while the proxy cannot be reached; then the oldest go (default 100000)\n"
		"  --retry-max MS       longest wait between connection attempts (doubling from 100 ms) (default 5000)\n"
		"  --poll MS            how often FILE is read (default 100)\n"
		"  --log FILE           log here instead of stderr\n"
		"  --help               this text\n\n"
		"SIGUSR1 logs the counters (read, sent, waiting, dropped, reconnects); SIGTERM and SIGINT stop it.\n");
}

static int parse(int argc, char **argv, struct opts *o, const char **log)
{
	static const struct option lo[] = {
		{ "to", required_argument, NULL, 't' },      { "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },     { "ca", required_argument, NULL, 'a' },
		{ "server-name", required_argument, NULL, 's' }, { "backlog", required_argument, NULL, 'b' },
		{ "retry-max", required_argument, NULL, 'r' }, { "poll", required_argument, NULL, 'p' },
		{ "log", required_argument, NULL, 'l' },     { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	o->backlog = 100000;
	o->retry_max_ms = 5000;
	o->poll_ms = 100;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 't': o->to = optarg; break;
		case 'c': o->cert = optarg; break;
		case 'k': o->key = optarg; break;
		case 'a': o->ca = optarg; break;
		case 's': o->server_name = optarg; break;
		case 'l': *log = optarg; break;
		case 'b':
			if (pxy_parse_u64(optarg, 1, 10000000, &o->backlog)) {
				fprintf(stderr, "proxyssl-keyfwd: --backlog: '%s' is not a number between 1 and 10000000\n", optarg);
				return -1;
			}
			break;
		case 'r':
			if (pxy_parse_u64(optarg, 100, 3600000, &o->retry_max_ms)) {
				fprintf(stderr, "proxyssl-keyfwd: --retry-max: '%s' is not a number between 100 and 3600000\n", optarg);
				return -1;
			}
			break;
		case 'p':
			if (pxy_parse_u64(optarg, 10, 60000, &o->poll_ms)) {
				fprintf(stderr, "proxyssl-keyfwd: --poll: '%s' is not a number between 10 and 60000\n", optarg);
				return -1;
			}
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc - 1 || !o->to || !o->cert || !o->key || !o->ca) {
		fprintf(stderr, "proxyssl-keyfwd: FILE, --to, --cert, --key and --ca are required\n");
		usage(stderr);
		return -1;
	}
	o->file = argv[optind];
	return 0;
}

int main(int argc, char **argv)
{
	struct fwd f;
	const char *log = NULL;
	char why[256];
	struct sigaction sa;

	memset(&f, 0, sizeof(f));
	f.fd = -1;
	if (parse(argc, argv, &f.o, &log) < 0)
		return 2;
	if (log && pxy_log_open(log) < 0) {
		fprintf(stderr, "proxyssl-keyfwd: cannot open --log %s: %s\n", log, strerror(errno));
		return 2;
	}
	if (pxy_addr_resolve(f.o.to, 1, &(struct sockaddr_storage){ 0 }, &(socklen_t){ 0 }, why, sizeof(why)) < 0) {
		fprintf(stderr, "proxyssl-keyfwd: --to %s\n", why);
		return 2;
	}
	f.ctx = SSL_CTX_new(TLS_client_method());
	if (!f.ctx || SSL_CTX_set_min_proto_version(f.ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(f.ctx, f.o.cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(f.ctx, f.o.key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(f.ctx) != 1) {
		fprintf(stderr, "proxyssl-keyfwd: --cert %s / --key %s: cannot be read, or not a pair (%s)\n", f.o.cert,
			f.o.key, ssl_err());
		return 2;
	}
	if (SSL_CTX_load_verify_locations(f.ctx, f.o.ca, NULL) != 1) {
		fprintf(stderr, "proxyssl-keyfwd: --ca %s: no PEM certificates to trust in it\n", f.o.ca);
		return 2;
	}
	/* the proxy must prove itself too: its certificate chains to --ca */
	SSL_CTX_set_verify(f.ctx, SSL_VERIFY_PEER, NULL);
	f.q.cap = (size_t)f.o.backlog;
	f.q.line = calloc(f.q.cap, sizeof(*f.q.line));
	f.q.len = calloc(f.q.cap, sizeof(*f.q.len));
	if (!f.q.line || !f.q.len || pxy_follow_init(&f.follow, f.o.file, "keyfwd") < 0) {
		fprintf(stderr, "proxyssl-keyfwd: out of memory\n");
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	f.backoff_ms = 100;
	pxy_info("keyfwd: following %s, forwarding to %s", f.o.file, f.o.to);
	while (!stop) {
		pxy_follow_read(&f.follow, on_line, &f);
		if (!f.ssl && f.q.n && pxy_now_ns() >= f.retry_at)
			connect_to(&f);
		flush(&f);
		if (report) {
			report = 0;
			stats(&f);
		}
		{
			struct timespec ts = { (time_t)(f.o.poll_ms / 1000), (long)(f.o.poll_ms % 1000) * 1000000L };

			nanosleep(&ts, NULL);
		}
	}
	/* what was read goes out before the end, if the proxy is there */
	pxy_follow_read(&f.follow, on_line, &f);
	flush(&f);
	stats(&f);
	if (f.ssl) {
		SSL_shutdown(f.ssl);
		SSL_free(f.ssl);
	}
	if (f.fd >= 0)
		close(f.fd);
	while (f.q.n)
		q_pop(&f);
	free(f.q.line);
	free(f.q.len);
	pxy_follow_free(&f.follow);
	SSL_CTX_free(f.ctx);
	pxy_log_close();
	return 0;
}

#include "io/redis.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "proxyssl/error.h"
#include "util/ct.h"
#include "util/log.h"
#include "util/util.h"

#define QUEUE_MAX 4096
#define TIMEOUT_MS 500
#define RETRY_NS 1000000000ull
#define RECENT 256 /* GETs remembered, so that a resumption's retries ask again at most every ASK_NS */
#define ASK_NS 200000000ull /* a miss may be a SET from another node still on its way: ask again after this */

static const uint8_t MAGIC[4] = { 'P', 'X', 'S', '1' };
#define NONCE_LEN 12
#define TAG_LEN 16

enum req_kind { REQ_GET, REQ_SET };

struct req {
	struct req *next;
	enum req_kind kind;
	uint8_t key[PXY_SESSION_KEY_LEN];
	uint32_t ttl_s;
	size_t vlen;
	uint8_t v[PXY_REDIS_VALUE_MAX];
};

struct found {
	struct found *next;
	uint8_t key[PXY_SESSION_KEY_LEN];
	struct pxy_session s;
	uint32_t ttl_s;
};

struct pxy_redis {
	char host[256];
	int port, db;
	uint8_t k[PXY_REDIS_KEY_LEN];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct req *q_head, *q_tail;
	unsigned q_len;
	struct found *f_head; /* answers for the loop (under mu) */
	int stop;
	int event_fd;
	struct pxy_redis_stats st; /* atomics */
	/* the loop's side: recent GETs */
	uint8_t recent_key[RECENT][PXY_SESSION_KEY_LEN];
	uint64_t recent_at[RECENT];
	unsigned recent_next;
};

#define ADD(r, f, n) __atomic_fetch_add(&(r)->st.f, (n), __ATOMIC_RELAXED)

/* ---- the sealed value -------------------------------------------------- */

size_t pxy_redis_session_put(const struct pxy_session *s, uint8_t *p, size_t cap)
{
	size_t serial = strnlen(s->client.serial, sizeof(s->client.serial) - 1);
	size_t subject = strnlen(s->client.subject, sizeof(s->client.subject) - 1);
	size_t n = 2 + 2 + 1 + 1 + 48 + 32 + 1 + serial + 2 + subject;

	if (n > cap)
		return 0;
	p[0] = (uint8_t)(s->version >> 8);
	p[1] = (uint8_t)s->version;
	p[2] = (uint8_t)(s->suite >> 8);
	p[3] = (uint8_t)s->suite;
	p[4] = s->ems;
	p[5] = s->has_client;
	memcpy(p + 6, s->ms, 48);
	memcpy(p + 54, s->client.sha256, 32);
	p[86] = (uint8_t)serial;
	memcpy(p + 87, s->client.serial, serial);
	p[87 + serial] = (uint8_t)(subject >> 8);
	p[88 + serial] = (uint8_t)subject;
	memcpy(p + 89 + serial, s->client.subject, subject);
	return n;
}

int pxy_redis_session_parse(const uint8_t *p, size_t n, struct pxy_session *s)
{
	size_t serial, subject;

	memset(s, 0, sizeof(*s));
	if (n < 89)
		return -1;
	serial = p[86];
	if (serial >= sizeof(s->client.serial) || n < 89 + serial)
		return -1;
	subject = (size_t)p[87 + serial] << 8 | p[88 + serial];
	if (subject >= sizeof(s->client.subject) || n != 89 + serial + subject)
		return -1;
	/* flags are 0 or 1, and the names are strings: anything else was not written by us */
	if (p[4] > 1 || p[5] > 1 || memchr(p + 87, 0, serial) || memchr(p + 89 + serial, 0, subject))
		return -1;
	s->version = (uint16_t)(p[0] << 8 | p[1]);
	s->suite = (uint16_t)(p[2] << 8 | p[3]);
	s->ems = p[4];
	s->has_client = p[5];
	memcpy(s->ms, p + 6, 48);
	memcpy(s->client.sha256, p + 54, 32);
	memcpy(s->client.serial, p + 87, serial);
	memcpy(s->client.subject, p + 89 + serial, subject);
	return 0;
}

size_t pxy_redis_seal(const uint8_t k[PXY_REDIS_KEY_LEN], const uint8_t key[PXY_SESSION_KEY_LEN],
		      const struct pxy_session *s, uint8_t *out, size_t cap)
{
	uint8_t pt[PXY_REDIS_VALUE_MAX];
	size_t n = pxy_redis_session_put(s, pt, sizeof(pt)), ret = 0;
	EVP_CIPHER_CTX *c = NULL;
	int len;

	if (!n || cap < sizeof(MAGIC) + NONCE_LEN + n + TAG_LEN)
		goto out;
	memcpy(out, MAGIC, sizeof(MAGIC));
	if (RAND_bytes(out + 4, NONCE_LEN) != 1 || !(c = EVP_CIPHER_CTX_new()) ||
	    EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, out + 4) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &len, key, PXY_SESSION_KEY_LEN) != 1 ||
	    EVP_EncryptUpdate(c, out + 4 + NONCE_LEN, &len, pt, (int)n) != 1 ||
	    EVP_EncryptFinal_ex(c, out + 4 + NONCE_LEN + n, &len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + 4 + NONCE_LEN + n) != 1)
		goto out;
	ret = 4 + NONCE_LEN + n + TAG_LEN;
out:
	EVP_CIPHER_CTX_free(c);
	pxy_wipe(pt, sizeof(pt));
	return ret;
}

int pxy_redis_open(const uint8_t k[PXY_REDIS_KEY_LEN], const uint8_t key[PXY_SESSION_KEY_LEN], const uint8_t *v,
		   size_t len, struct pxy_session *s)
{
	uint8_t pt[PXY_REDIS_VALUE_MAX];
	EVP_CIPHER_CTX *c = NULL;
	size_t n;
	int l, r = -1;

	if (len < 4 + NONCE_LEN + TAG_LEN || len > sizeof(pt) || memcmp(v, MAGIC, 4))
		return -1;
	n = len - 4 - NONCE_LEN - TAG_LEN;
	if (!(c = EVP_CIPHER_CTX_new()) || EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, k, v + 4) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &l, key, PXY_SESSION_KEY_LEN) != 1 ||
	    EVP_DecryptUpdate(c, pt, &l, v + 4 + NONCE_LEN, (int)n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(v + 4 + NONCE_LEN + n)) != 1 ||
	    EVP_DecryptFinal_ex(c, pt + n, &l) != 1)
		goto out;
	r = pxy_redis_session_parse(pt, n, s);
out:
	EVP_CIPHER_CTX_free(c);
	pxy_wipe(pt, sizeof(pt));
	return r;
}

int pxy_redis_key_load(const char *path, uint8_t k[PXY_REDIS_KEY_LEN], char *err, size_t n)
{
	FILE *f = fopen(path, "re");
	int ch, digits = 0, bad = 0;

	if (!f) {
		snprintf(err, n, "--session-key %s: %s", path, strerror(errno));
		return -1;
	}
	/* unbuffered: no stdio buffer keeps the key's digits after the file is closed */
	setvbuf(f, NULL, _IONBF, 0);
	memset(k, 0, PXY_REDIS_KEY_LEN);
	while ((ch = fgetc(f)) != EOF) {
		if (isspace(ch))
			continue;
		if (!isxdigit(ch) || digits == 2 * PXY_REDIS_KEY_LEN) {
			bad = 1;
			break;
		}
		k[digits / 2] = (uint8_t)(k[digits / 2] << 4 | (isdigit(ch) ? ch - '0' : (tolower(ch) - 'a' + 10)));
		digits++;
	}
	fclose(f);
	if (bad || digits != 2 * PXY_REDIS_KEY_LEN) {
		pxy_wipe(k, PXY_REDIS_KEY_LEN);
		snprintf(err, n, "--session-key %s: expected 64 hex digits (a 256-bit key; e.g. openssl rand -hex 32)", path);
		return -1;
	}
	return 0;
}

/* ---- the thread ------------------------------------------------------------ */

static void rkey(char out[80], const uint8_t key[PXY_SESSION_KEY_LEN])
{
	memcpy(out, "proxyssl:s:", 11);
	pxy_hex(out + 11, key, PXY_SESSION_KEY_LEN);
}

static redisContext *connect_redis(struct pxy_redis *r, int *was_up)
{
	struct timeval tv = { TIMEOUT_MS / 1000, (TIMEOUT_MS % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
	redisReply *rep;

	if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK) {
		if (r->db) {
			rep = redisCommand(c, "SELECT %d", r->db);
			if (!rep || rep->type == REDIS_REPLY_ERROR) {
				pxy_warn("redis %s:%d: SELECT %d failed: %s", r->host, r->port, r->db,
					 rep ? rep->str : c->errstr);
				freeReplyObject(rep);
				redisFree(c);
				return NULL;
			}
			freeReplyObject(rep);
		}
		pxy_info("redis %s:%d: connected; sessions are shared", r->host, r->port);
		*was_up = 1;
		__atomic_store_n(&r->st.up, 1, __ATOMIC_RELAXED);
		return c;
	}
	if (*was_up != 0)
		pxy_warn("redis %s:%d unreachable: %s; the local session cache works alone (retrying once a second)",
			 r->host, r->port, c ? c->errstr : "out of memory");
	*was_up = 0;
	redisFree(c);
	return NULL;
}

static void push_found(struct pxy_redis *r, const uint8_t *key, const struct pxy_session *s, uint32_t ttl)
{
	struct found *f = calloc(1, sizeof(*f));
	uint64_t one = 1;

	if (!f)
		return;
	memcpy(f->key, key, PXY_SESSION_KEY_LEN);
	f->s = *s;
	f->ttl_s = ttl;
	pthread_mutex_lock(&r->mu);
	f->next = r->f_head;
	r->f_head = f;
	pthread_mutex_unlock(&r->mu);
	if (write(r->event_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: the loop has plenty to read already */
	}
}

/* One request; 0, or -1 when the connection broke. */
static int run(struct pxy_redis *r, redisContext *c, struct req *q)
{
	char k[80];
	redisReply *rep = NULL, *ttl = NULL;

	rkey(k, q->key);
	if (q->kind == REQ_SET) {
		rep = redisCommand(c, "SET %b %b EX %u", k, (size_t)(11 + 64), q->v, q->vlen, q->ttl_s ? q->ttl_s : 1);
		if (!rep)
			return -1;
		if (rep->type == REDIS_REPLY_ERROR)
			ADD(r, errors, 1);
		else
			ADD(r, sets, 1);
		freeReplyObject(rep);
		return 0;
	}
	redisAppendCommand(c, "GET %b", k, (size_t)(11 + 64));
	redisAppendCommand(c, "TTL %b", k, (size_t)(11 + 64));
	if (redisGetReply(c, (void **)&rep) != REDIS_OK || redisGetReply(c, (void **)&ttl) != REDIS_OK) {
		freeReplyObject(rep);
		return -1;
	}
	ADD(r, gets, 1);
	if (rep->type == REDIS_REPLY_STRING) {
		struct pxy_session s;

		if (pxy_redis_open(r->k, q->key, (const uint8_t *)rep->str, rep->len, &s) == 0) {
			ADD(r, hits, 1);
			push_found(r, q->key, &s,
				   ttl->type == REDIS_REPLY_INTEGER && ttl->integer > 0 ? (uint32_t)ttl->integer : 1);
			pxy_wipe(&s, sizeof(s));
		} else {
			/* another key, or tampered: as good as absent */
			ADD(r, errors, 1);
		}
	} else {
		ADD(r, misses, 1);
	}
	freeReplyObject(rep);
	freeReplyObject(ttl);
	return 0;
}

static void *thread_main(void *arg)
{
	struct pxy_redis *r = arg;
	redisContext *c = NULL;
	uint64_t last_try = pxy_now_ns();
	int was_up = -1; /* unknown: the first failure is logged */

	/* connect at once, so that the first lookups do not wait for it */
	c = connect_redis(r, &was_up);
	for (;;) {
		struct req *batch;

		pthread_mutex_lock(&r->mu);
		while (!r->stop && !r->q_head)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->stop) {
			pthread_mutex_unlock(&r->mu);
			break;
		}
		batch = r->q_head;
		r->q_head = r->q_tail = NULL;
		r->q_len = 0;
		pthread_mutex_unlock(&r->mu);

		if (!c && pxy_now_ns() - last_try >= RETRY_NS) {
			last_try = pxy_now_ns();
			c = connect_redis(r, &was_up);
		}
		while (batch) {
			struct req *q = batch;

			batch = q->next;
			if (c && run(r, c, q) < 0) {
				/* the connection broke (Redis restarted?): one new connection at once,
				 * then at most one attempt a second while it fails */
				pxy_warn("redis %s:%d: %s; reconnecting", r->host, r->port,
					 c->errstr[0] ? c->errstr : "connection lost");
				__atomic_store_n(&r->st.up, 0, __ATOMIC_RELAXED);
				redisFree(c);
				c = NULL;
				if (pxy_now_ns() - last_try >= RETRY_NS) {
					last_try = pxy_now_ns();
					c = connect_redis(r, &was_up);
				}
				if (!c || run(r, c, q) < 0)
					ADD(r, errors, 1);
			} else if (!c) {
				ADD(r, dropped, 1);
			}
			pxy_wipe(q, sizeof(*q));
			free(q);
		}
	}
	redisFree(c);
	return NULL;
}

/* ---- the loop's side ------------------------------------------------------- */

static void enqueue(struct pxy_redis *r, struct req *q)
{
	pthread_mutex_lock(&r->mu);
	if (r->q_len >= QUEUE_MAX) {
		pthread_mutex_unlock(&r->mu);
		ADD(r, dropped, 1);
		pxy_wipe(q, sizeof(*q));
		free(q);
		return;
	}
	if (r->q_tail)
		r->q_tail->next = q;
	else
		r->q_head = q;
	r->q_tail = q;
	r->q_len++;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void pxy_redis_get(struct pxy_redis *r, const uint8_t key[PXY_SESSION_KEY_LEN])
{
	uint64_t now = pxy_now_ns();
	struct req *q;

	for (unsigned i = 0; i < RECENT; i++)
		if (r->recent_at[i] && now - r->recent_at[i] < ASK_NS && !memcmp(r->recent_key[i], key, PXY_SESSION_KEY_LEN))
			return;
	memcpy(r->recent_key[r->recent_next], key, PXY_SESSION_KEY_LEN);
	r->recent_at[r->recent_next] = now;
	r->recent_next = (r->recent_next + 1) % RECENT;
	q = calloc(1, sizeof(*q));
	if (!q) {
		ADD(r, dropped, 1);
		return;
	}
	q->kind = REQ_GET;
	memcpy(q->key, key, PXY_SESSION_KEY_LEN);
	enqueue(r, q);
}

void pxy_redis_set(struct pxy_redis *r, const uint8_t key[PXY_SESSION_KEY_LEN], const struct pxy_session *s,
		   uint32_t ttl_s)
{
	struct req *q = calloc(1, sizeof(*q));

	if (!q) {
		ADD(r, dropped, 1);
		return;
	}
	q->kind = REQ_SET;
	memcpy(q->key, key, PXY_SESSION_KEY_LEN);
	q->ttl_s = ttl_s;
	q->vlen = pxy_redis_seal(r->k, key, s, q->v, sizeof(q->v));
	if (!q->vlen) {
		ADD(r, errors, 1);
		free(q);
		return;
	}
	enqueue(r, q);
}

size_t pxy_redis_poll(struct pxy_redis *r, pxy_redis_found_fn found, void *ctx)
{
	struct found *f, *next;
	uint64_t v;
	size_t n = 0;

	if (read(r->event_fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing signalled; the list is read all the same */
	}
	pthread_mutex_lock(&r->mu);
	f = r->f_head;
	r->f_head = NULL;
	pthread_mutex_unlock(&r->mu);
	for (; f; f = next) {
		next = f->next;
		found(ctx, f->key, &f->s, f->ttl_s);
		pxy_wipe(f, sizeof(*f));
		free(f);
		n++;
	}
	return n;
}

int pxy_redis_event_fd(const struct pxy_redis *r)
{
	return r->event_fd;
}

void pxy_redis_get_stats(struct pxy_redis *r, struct pxy_redis_stats *out)
{
	out->gets = __atomic_load_n(&r->st.gets, __ATOMIC_RELAXED);
	out->hits = __atomic_load_n(&r->st.hits, __ATOMIC_RELAXED);
	out->misses = __atomic_load_n(&r->st.misses, __ATOMIC_RELAXED);
	out->sets = __atomic_load_n(&r->st.sets, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&r->st.errors, __ATOMIC_RELAXED);
	out->dropped = __atomic_load_n(&r->st.dropped, __ATOMIC_RELAXED);
	out->up = __atomic_load_n(&r->st.up, __ATOMIC_RELAXED);
}

int pxy_redis_new(const char *url, const uint8_t key[PXY_REDIS_KEY_LEN], struct pxy_redis **out, char *err, size_t n)
{
	struct pxy_redis *r;
	const char *p, *colon, *slash;
	char *end;
	long port = 6379, db = 0;
	sigset_t all, old;
	int started;

	*out = NULL;
	if (strncmp(url, "redis://", 8)) {
		snprintf(err, n, "'%s' is not redis://HOST[:PORT][/DB]", url);
		return -1;
	}
	p = url + 8;
	slash = strchr(p, '/');
	colon = memchr(p, ':', slash ? (size_t)(slash - p) : strlen(p));
	if ((colon ? colon : slash ? slash : p + strlen(p)) == p ||
	    (size_t)((colon ? colon : slash ? slash : p + strlen(p)) - p) >= 256) {
		snprintf(err, n, "'%s': no host", url);
		return -1;
	}
	if (colon) {
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (errno || end == colon + 1 || (slash ? end != slash : *end) || port < 1 || port > 65535) {
			snprintf(err, n, "'%s': the port is not a number in 1..65535", url);
			return -1;
		}
	}
	if (slash) {
		errno = 0;
		db = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || db < 0 || db > 15) {
			snprintf(err, n, "'%s': the database is not a number in 0..15", url);
			return -1;
		}
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, n, "out of memory");
		return -1;
	}
	memcpy(r->host, p, (size_t)((colon ? colon : slash ? slash : p + strlen(p)) - p));
	r->port = (int)port;
	r->db = (int)db;
	memcpy(r->k, key, PXY_REDIS_KEY_LEN);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	/* the thread takes no signals: they are the io loop's (through its signalfd) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	started = r->event_fd >= 0 && pthread_create(&r->thread, NULL, thread_main, r) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!started) {
		snprintf(err, n, "cannot start the redis thread: %s", strerror(errno));
		if (r->event_fd >= 0)
			close(r->event_fd);
		pxy_wipe(r->k, sizeof(r->k));
		free(r);
		return -1;
	}
	*out = r;
	return 0;
}

void pxy_redis_free(struct pxy_redis *r)
{
	struct found *f, *next;

	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	while (r->q_head) {
		struct req *q = r->q_head;
		r->q_head = q->next;
		pxy_wipe(q, sizeof(*q));
		free(q);
	}
	for (f = r->f_head; f; f = next) {
		next = f->next;
		pxy_wipe(f, sizeof(*f));
		free(f);
	}
	close(r->event_fd);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	pxy_wipe(r->k, sizeof(r->k));
	free(r);
}
